"""A store that never lies and never deletes what it does not own (issue 10), on local disk:
no partial publish, outputs that hold someone else's data refused, leftovers cleaned up.
The same faults against a real S3 server are in tests/test_s3.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr

from builder.catalog import expand_trials, load_catalog
from builder.errors import BuilderError, StoreError
from builder.store.staging import trial_key
from builder.store.versions import VersionedOutput

from helpers import build_store, copy_demo_subset, demo_catalog

pytestmark = pytest.mark.cluster


@pytest.fixture
def one_subject(demo_root: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """The demo's subject S01 copied: (raw folder, its catalogue, the output to build)."""
    raw = copy_demo_subset(demo_root, tmp_path / "raw", ("S01",))
    return raw, demo_catalog(tmp_path, raw), tmp_path / "gait.zarr"


def staged_npz(output: Path, catalog: Path, name: str) -> Path:
    """Where the build stages the strides of the raw file called ``name``."""
    specs, _ = expand_trials(load_catalog(str(catalog)), {})
    (spec,) = [s for s in specs if s.url.endswith(name)]
    return Path(f"{output}.build") / "trials" / f"{trial_key(spec)}.npz"


def test_a_trial_that_could_not_be_staged_blocks_the_publish_and_a_rerun_finishes(
    one_subject: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    raw, catalog, output = one_subject
    first = build_store(catalog, output, workers=1)

    new = raw / "S01" / "walk_v0.80_i+0_t03.c3d"
    new.write_bytes((raw / "S01" / "walk_v0.80_i+0_t01.c3d").read_bytes())
    # A storage fault on exactly this trial's staged result: its path cannot be written.
    blocked = staged_npz(output, catalog, new.name)
    blocked.mkdir(parents=True)
    with pytest.raises(StoreError) as failure:
        build_store(catalog, output, workers=1)
    message = str(failure.value)
    assert "\n" not in message
    assert "1 trial(s) could not be processed or staged" in message
    assert f"version {first.version} stays current" in message and "re-run" in message
    ds = xr.open_zarr(output)
    assert ds.attrs["build_version"] == first.version and ds.sizes["stride"] == first.n_strides

    blocked.rmdir()  # the storage answers again
    finished = build_store(catalog, output, workers=1)
    assert finished.n_strides == first.n_strides + 16 and not finished.report.trials_left_out
    assert xr.open_zarr(output).sizes["stride"] == finished.n_strides


def test_fewer_strides_from_the_same_catalogue_are_never_published_silently(
    one_subject: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    raw, catalog, output = one_subject
    first = build_store(catalog, output, workers=1)
    for path in sorted((raw / "S01").glob("*.c3d"))[:2]:
        path.unlink()  # e.g. an unmounted folder: the files are simply not there
    with pytest.raises(StoreError, match="fewer than the 160 of version v0001") as failure:
        build_store(catalog, output, workers=1)
    assert "--allow-partial" in str(failure.value)
    assert xr.open_zarr(output).sizes["stride"] == first.n_strides

    cli = [sys.executable, "-m", "builder", "run", "--no-progress", "--workers", "1"]
    args = ["--catalog", str(catalog), "--output", str(output), "--allow-partial"]
    done = subprocess.run(cli + args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert xr.open_zarr(output).sizes["stride"] == first.n_strides - 32


def test_run_refuses_an_output_holding_other_data_or_a_users_link(
    one_subject: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, catalog, _ = one_subject
    cli = [sys.executable, "-m", "builder", "run", "--no-progress", "--catalog", str(catalog)]

    theirs = tmp_path / "results"
    theirs.mkdir()
    (theirs / "thesis.tex").write_text("years of work")
    refused = subprocess.run([*cli, "--output", str(theirs)], capture_output=True, text=True)
    assert refused.returncode == 1
    assert refused.stderr.strip().count("\n") == 0, refused.stderr
    assert "holds data the builder did not create" in refused.stderr
    assert os.listdir(theirs) == ["thesis.tex"] and not Path(f"{theirs}.versions").exists()

    link = tmp_path / "gait.zarr"
    link.symlink_to(theirs)
    refused = subprocess.run([*cli, "--output", str(link)], capture_output=True, text=True)
    assert refused.returncode == 1 and "is a symbolic link" in refused.stderr
    assert os.readlink(link) == str(theirs)  # not re-pointed
    assert os.listdir(theirs) == ["thesis.tex"]


def test_staged_results_of_files_gone_and_temporary_files_are_removed(
    one_subject: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    raw, catalog, output = one_subject
    gone = sorted((raw / "S01").glob("*.c3d"))[0]
    staged = staged_npz(output, catalog, gone.name)
    build_store(catalog, output, workers=1)
    assert staged.exists() and staged.with_suffix(".json").exists()
    trials = staged.parent
    torn = trials / ".abc.json.0123.tmp"
    torn.write_bytes(b"half a write")

    gone.unlink()
    build_store(catalog, output, workers=1, allow_partial=True)
    assert not staged.exists() and not staged.with_suffix(".json").exists()
    assert not torn.exists()
    assert len(list(trials.glob("*.json"))) == 9 and not list(trials.glob(".*"))


def test_a_build_fails_with_one_line_when_the_lock_is_held(tmp_path: Path) -> None:
    from builder.store.staging import Staging

    catalog = demo_catalog(tmp_path, tmp_path / "raw")
    busy = pytest.raises(BuilderError, match=r"another build \(pid \d+")
    with Staging(str(tmp_path / "gait.zarr")).lock(), busy:
        build_store(catalog, tmp_path / "gait.zarr", workers=1)


def test_a_build_that_died_right_after_its_switch_never_rewrites_the_published_version(
    one_subject: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, catalog, output = one_subject
    publish = VersionedOutput.publish

    def switch_then_die(self: VersionedOutput, version: str) -> None:
        publish(self, version)
        raise RuntimeError("the client died right after the switch")

    monkeypatch.setattr(VersionedOutput, "publish", switch_then_die)
    with pytest.raises(RuntimeError, match="right after the switch"):
        build_store(catalog, output, workers=1)
    monkeypatch.undo()
    version = Path(f"{output}.versions") / "v0001"
    written = {p: p.stat().st_mtime_ns for p in version.rglob("*") if p.is_file()}

    again = build_store(catalog, output, workers=1)
    assert again.up_to_date and again.version == "v0001"
    assert {p: p.stat().st_mtime_ns for p in version.rglob("*") if p.is_file()} == written

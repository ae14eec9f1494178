"""Versioned outputs: readers only ever see a complete build, or a clear 'under way' error."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from builder.errors import BuilderError, StoreError
from builder.store import staging as staging_module
from builder.store.layout import ARRAYS, create_template
from builder.store.reader import open_store, pin_version
from builder.store.staging import Staging, TrialOutcome
from builder.store.versions import (
    SAFE_PUBLISHES_1D,
    SAFE_PUBLISHES_ND,
    VersionedOutput,
    versioned_output,
)

from helpers import SMALL_LAYOUT


def write_version(path: str, value: float) -> None:
    group = zarr.open_group(path, mode="w", zarr_format=3)
    array = group.create_array("x", shape=(3,), chunks=(3,), dtype="f4", dimension_names=["i"])
    array[:] = value
    group.attrs["build_version"] = os.path.basename(path)
    zarr.consolidate_metadata(path)


def publish_store(output: VersionedOutput, n_strides: int, seed: int) -> dict[str, np.ndarray]:
    """A version with the real store layout (its encodings and chunk sizes) and random
    values, published; returns its arrays as a reader loads them."""
    version = output.new_version()
    group = zarr.open_group(output.version_url(version), mode="w", zarr_format=3)
    create_template(group, n_strides, n_strides * 10, SMALL_LAYOUT, version)
    rng = np.random.default_rng(seed)
    for spec in ARRAYS:
        if spec.partition == "coord":
            continue
        array = group[spec.name]
        if spec.dtype == "str":
            values = rng.choice(["S01", "S02", "walk", "run"], size=array.shape).astype(object)
        else:
            values = rng.integers(0, 100, size=array.shape).astype(array.dtype)
        array[...] = values
    group.attrs["build_version"] = version
    zarr.consolidate_metadata(group.store)
    output.publish(version)
    return {
        name: values.values for name, values in xr.open_zarr(output.url).load().variables.items()
    }


def test_before_the_first_build_completes_readers_get_a_clear_error(tmp_path: Path) -> None:
    output = versioned_output(str(tmp_path / "gait.zarr"))
    output.new_version()
    with pytest.raises(
        ValueError, match="no complete build of this store exists yet; a build is under way"
    ):
        xr.open_zarr(tmp_path / "gait.zarr")
    with pytest.raises(StoreError, match="no complete build yet"):
        open_store(str(tmp_path / "gait.zarr"))


def test_publish_switches_the_name_and_readers_keep_the_old_build_meanwhile(tmp_path: Path) -> None:
    url = str(tmp_path / "gait.zarr")
    output = versioned_output(url)
    first = output.new_version()
    write_version(output.version_path(first), 1.0)
    output.publish(first)
    assert xr.open_zarr(url).x.values.tolist() == [1.0, 1.0, 1.0]

    second = output.new_version()
    write_version(output.version_path(second), 2.0)
    # Not yet published: readers still get the first build, whole.
    assert xr.open_zarr(url).x.values.tolist() == [1.0, 1.0, 1.0]
    output.publish(second)
    assert xr.open_zarr(url).x.values.tolist() == [2.0, 2.0, 2.0]
    # A real folder, not a link: it copies whole (cp -r) and readers never re-resolve it.
    assert output.published() == second and not os.path.islink(url)


@pytest.mark.parametrize("where", ["local", "copied"])
def test_a_reader_of_the_name_keeps_its_version_across_the_next_publishes(
    tmp_path: Path, where: str
) -> None:
    output = versioned_output(str(tmp_path / "gait.zarr"))
    if where == "copied":  # the object-store path (copies, no links), on local files
        output._place = lambda sources, targets: [  # type: ignore[method-assign]
            shutil.copyfile(s, t)
            for s, t in zip(sources, targets, strict=True)
            if os.makedirs(os.path.dirname(t), exist_ok=True) is None
        ]
    expected = publish_store(output, 300, seed=0)
    reader = xr.open_zarr(output.url)  # lazily: nothing read yet but the metadata
    for i in range(1, SAFE_PUBLISHES_1D + 1):
        publish_store(output, 300 - 37 * i, seed=i)  # other shapes, other values
    loaded = reader.load()
    for name, values in expected.items():
        np.testing.assert_array_equal(loaded[name].values, values, err_msg=name)

    reader = xr.open_zarr(output.url)
    expected = {name: v.values for name, v in reader.load().variables.items()}
    reader = xr.open_zarr(output.url)
    for i in range(SAFE_PUBLISHES_ND):
        publish_store(output, 200 + 11 * i, seed=10 + i)
    for name, values in expected.items():  # every array of 2+ dims, exactly
        if values.ndim >= 2:
            np.testing.assert_array_equal(reader[name].values, values, err_msg=name)
    # The third publish re-used the 1-D keys with another chunk size: reading them fails
    # loudly; the reader never gets another version's stride table.
    with pytest.raises(ValueError):
        reader["subject"].load()


def test_publish_touches_only_what_the_builder_put_there(tmp_path: Path) -> None:
    output = versioned_output(str(tmp_path / "gait.zarr"))
    output.claim()
    for i in range(6):
        publish_store(output, 64, seed=i)
    names = set(os.listdir(output.path))
    (tmp_path / "gait.zarr" / "notes.txt").write_text("mine")
    (tmp_path / "gait.zarr" / "emg" / "c.9.9").write_text("looks like a chunk key")
    publish_store(output, 64, seed=7)
    assert (tmp_path / "gait.zarr" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "gait.zarr" / "emg" / "c.9.9").read_text() == "looks like a chunk key"
    assert names <= set(os.listdir(output.path))
    # Only the keys of the last 4 publishes stay (those a reader of the name may still read).
    assert output.published_history() == ["v0004", "v0005", "v0006", "v0007"]


def test_versions_are_removed_only_by_prune(tmp_path: Path) -> None:
    output = versioned_output(str(tmp_path / "gait.zarr"))
    made = [output.new_version() for _ in range(4)]
    for version in made:
        write_version(output.version_path(version), 0.0)
    output.publish(made[2])
    assert output.versions() == made
    removed = output.prune(keep=2)
    assert removed == made[:2] and output.versions() == made[2:]


def test_refuses_an_output_that_holds_someone_elses_data(tmp_path: Path) -> None:
    (tmp_path / "gait.zarr").mkdir()
    (tmp_path / "gait.zarr" / "thesis.tex").write_text("years of work")
    with pytest.raises(BuilderError, match="holds data the builder did not create"):
        versioned_output(str(tmp_path / "gait.zarr")).claim()
    assert (tmp_path / "gait.zarr" / "thesis.tex").read_text() == "years of work"


def test_staged_outcomes_round_trip_and_torn_files_count_as_unfinished(tmp_path: Path) -> None:
    staging = Staging(str(tmp_path / "gait.zarr"))
    outcome = TrialOutcome(
        key="abc",
        ok=True,
        notes=("L: 1 stride beyond the recording dropped",),
        event_source="events",
        emg_lengths=(1000, 1010),
        side=("L", "R"),
        start_s=(0.5, 1.0),
        duration_s=(1.0, 1.01),
        envelope_peak=((1e-4, np.nan), (2e-4, np.nan)),
        columns={"subject": ("S01", "S01"), "speed_mps": (np.nan, 1.2)},
    )
    staging.save_outcome(outcome)
    loaded = staging.load_outcome("abc")
    assert loaded == outcome
    np.testing.assert_array_equal(loaded.peaks_array(2), [[1e-4, np.nan], [2e-4, np.nan]])

    torn = tmp_path / "gait.zarr.build" / "trials" / "def.json"
    torn.write_text('{"key": "def", "ok": tr')
    assert staging.load_outcome("def") is None


def test_one_build_per_output_and_a_dead_builds_lock_is_taken_over(tmp_path: Path) -> None:
    staging = Staging(str(tmp_path / "gait.zarr"))
    busy = pytest.raises(StoreError, match=r"another build \(pid \d+ on .*\) is writing")
    with staging.lock() as taken_over, busy, staging.lock():
        assert taken_over is None
    info = tmp_path / "gait.zarr.build" / "lock.json"
    assert not info.exists()  # released
    # A build killed while holding it: the kernel released its lock, its note remains.
    info.write_text(json.dumps({"host": socket.gethostname(), "pid": 2**22 + 12345}))
    with staging.lock() as taken_over:
        assert json.loads(info.read_text())["pid"] == os.getpid()
    assert taken_over and "took over the build lock of pid 4206649" in taken_over


def test_two_builds_taking_over_a_dead_builds_lock_never_both_hold_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old take-over read the dead holder, removed its file and created one: two builds
    that both read the dead holder both got the lock. Here both are made to read it first."""
    with Staging(str(tmp_path / "gait.zarr")).lock():
        pass  # the staging folder exists, as after any earlier build
    dead = {"host": socket.gethostname(), "pid": 2**22 + 12345}
    for name in ("lock", "lock.json"):
        (tmp_path / "gait.zarr.build" / name).write_text(json.dumps(dead))
    both_read = threading.Barrier(2)
    read = staging_module._read_json

    def read_after_the_other(path: str):
        holder = read(path)
        with contextlib.suppress(threading.BrokenBarrierError):
            both_read.wait(timeout=5)  # the old code: both read the dead holder first
        return holder

    monkeypatch.setattr(staging_module, "_read_json", read_after_the_other)
    holders, refused = [], []
    inside = threading.Lock()

    def take() -> None:
        try:
            with Staging(str(tmp_path / "gait.zarr")).lock():
                if not inside.acquire(blocking=False):
                    holders.append("both at once")
                holders.append("held")
                threading.Event().wait(0.2)  # hold it a while (the result does not depend on it)
                inside.release()
        except StoreError:
            refused.append(True)

    threads = [threading.Thread(target=take) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert "both at once" not in holders
    assert len(holders) + len(refused) == 2 and holders


def test_an_output_from_before_ownership_markers_is_adopted(tmp_path: Path) -> None:
    """Earlier builders made <output> a link into <output>.versions/: taken over, not refused."""
    versions = tmp_path / "gait.zarr.versions"
    write_version(str(versions / "v0003"), 3.0)
    (tmp_path / "gait.zarr").symlink_to(Path("gait.zarr.versions") / "v0003")
    output = versioned_output(str(tmp_path / "gait.zarr"))
    output.claim()
    assert not os.path.islink(output.path) and output.published() == "v0003"
    assert xr.open_zarr(output.url).x.values.tolist() == [3.0, 3.0, 3.0]


def test_the_builders_own_readers_pin_the_version(tmp_path: Path) -> None:
    output = versioned_output(str(tmp_path / "gait.zarr"))
    expected = publish_store(output, 120, seed=1)
    assert pin_version(output.url) == output.version_url("v0001")
    assert pin_version(output.version_url("v0001")) == output.version_url("v0001")
    ds = open_store(output.url)  # lazily, through the version's URL
    for i in range(2 * SAFE_PUBLISHES_ND):  # far beyond what the moving name guarantees
        publish_store(output, 90 + i, seed=20 + i)
    for name, values in expected.items():
        np.testing.assert_array_equal(ds[name].values, values, err_msg=name)
    assert pin_version(output.url) == output.version_url(f"v{1 + 2 * SAFE_PUBLISHES_ND:04d}")

"""A build killed mid-way (SIGKILL of the CLI and its workers) resumes to the clean result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xarray as xr

from builder.store.layout import ChunkLayout

from helpers import assert_same_arrays, build_store, copy_demo_subset, demo_catalog

pytestmark = pytest.mark.cluster


def run_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "builder", "run", "--no-progress", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the kill takes the workers too
    )


def outcome_files(output: Path) -> dict[str, int]:
    trials = Path(f"{output}.build") / "trials"
    if not trials.is_dir():
        return {}
    return {p.name: p.stat().st_mtime_ns for p in trials.iterdir() if p.suffix in (".json", ".npz")}


def test_killed_build_resumes_without_redoing_finished_trials(
    demo_root: Path, tmp_path: Path
) -> None:
    raw = copy_demo_subset(demo_root, tmp_path / "raw", ("S01", "S03"))
    catalog = demo_catalog(tmp_path, raw)
    output = tmp_path / "gait.zarr"
    args = ("--catalog", str(catalog), "--output", str(output), "--workers", "1")

    victim = run_cli(*args)
    deadline = time.monotonic() + 900  # a guard against a hang, not a timing assertion
    while sum(name.endswith(".json") for name in outcome_files(output)) < 4:
        assert victim.poll() is None, victim.stdout.read() if victim.stdout else ""
        assert time.monotonic() < deadline, "the build made no progress"
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    finished_before = outcome_files(output)
    n_finished = sum(name.endswith(".json") for name in finished_before)
    assert 4 <= n_finished < 20

    # Nobody reads the half-built store as complete.
    with pytest.raises(ValueError, match="a build is under way or was interrupted"):
        xr.open_zarr(output)

    resumed = run_cli(*args)
    log, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, log
    assert f"{n_finished} trials already processed; {20 - n_finished} to go" in log
    after = outcome_files(output)
    assert all(after[name] == mtime for name, mtime in finished_before.items())  # not redone

    clean = build_store(catalog, tmp_path / "clean.zarr", workers=2, layout=ChunkLayout())
    assert_same_arrays(output, tmp_path / "clean.zarr")
    assert xr.open_zarr(output).sizes["stride"] == clean.n_strides == 20 * 16

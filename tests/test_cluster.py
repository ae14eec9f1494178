"""``--cluster ADDRESS``: a build through a real `dask scheduler` and `dask worker` processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import xarray as xr
from dask.distributed import Client

from builder.catalog import expand_trials, load_catalog
from builder.store.reader import read_report
from builder.store.staging import trial_key

from helpers import assert_same_arrays, build_store, copy_demo_subset, demo_catalog

pytestmark = pytest.mark.cluster
DASK = str(Path(sys.executable).with_name("dask"))  # the `dask` command of this environment


@contextlib.contextmanager
def dask_processes(folder: Path, *, nanny: bool, log: Path | None = None) -> Iterator[str]:
    """A `dask scheduler` and two single-threaded `dask worker` processes on loopback (each
    worker under a nanny that restarts it if it dies, or alone); yields the scheduler address.
    ``log``: where the scheduler's log goes."""
    scheduler_file = folder / "scheduler.json"
    common = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder)
    with open(log or os.devnull, "w") as scheduler_log:
        processes = [
            subprocess.Popen(
                [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0",
                 "--no-dashboard", "--scheduler-file", str(scheduler_file)],
                **{**common, "stderr": scheduler_log},
            )
        ]  # fmt: skip
    try:
        address = scheduler_address_from(scheduler_file)
        for _ in range(2):
            processes.append(
                subprocess.Popen(
                    [DASK, "worker", address, "--nthreads", "1", "--no-dashboard",
                     "--nanny" if nanny else "--no-nanny"],
                    **common,
                )
            )  # fmt: skip
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for process in reversed(processes):  # workers first, while the scheduler still answers
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def scheduler_address_from(scheduler_file: Path) -> str:
    """The address in the scheduler's file, once it is there and whole (the deadline only
    guards against a scheduler that never starts)."""
    deadline = time.monotonic() + 120
    while True:
        with contextlib.suppress(OSError, ValueError, KeyError):
            return str(json.loads(scheduler_file.read_text())["address"])
        assert time.monotonic() < deadline, "the scheduler did not start"
        time.sleep(0.1)


@pytest.fixture
def scheduler_address(tmp_path: Path) -> Iterator[str]:
    """A scheduler and two single-threaded worker processes (no nannies) on loopback."""
    with dask_processes(tmp_path, nanny=False) as address:
        yield address


@pytest.fixture
def nanny_cluster(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A scheduler and two nanny-managed single-threaded workers: (address, scheduler log)."""
    log = tmp_path / "scheduler.log"
    with dask_processes(tmp_path, nanny=True, log=log) as address:
        yield address, log


def test_build_on_an_existing_scheduler_equals_a_local_build(
    scheduler_address: str, demo_root: Path, tmp_path: Path
) -> None:
    raw = copy_demo_subset(demo_root, tmp_path / "raw", ("S02",))
    catalog = demo_catalog(tmp_path, raw)
    log = subprocess.run(
        [sys.executable, "-m", "builder", "run", "--catalog", str(catalog),
         "--output", str(tmp_path / "remote.zarr"), "--cluster", scheduler_address, "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert log.returncode == 0, log.stderr + log.stdout
    local = build_store(catalog, tmp_path / "local.zarr", workers=1)
    assert xr.open_zarr(tmp_path / "remote.zarr").sizes["stride"] == local.n_strides == 10 * 16
    assert_same_arrays(tmp_path / "remote.zarr", tmp_path / "local.zarr")


def test_bare_cluster_builds_on_the_scheduler_the_environment_names(
    scheduler_address: str, demo_root: Path, tmp_path: Path
) -> None:
    """``--cluster`` with no value and DASK_SCHEDULER_ADDRESS set: the build runs its trials
    on that scheduler's workers."""
    raw = copy_demo_subset(demo_root, tmp_path / "raw", ("S02",))
    catalog = demo_catalog(tmp_path, raw)
    env = {**os.environ, "DASK_SCHEDULER_ADDRESS": scheduler_address}
    env.pop("DASK_BUILDER__CLUSTER", None)
    log = subprocess.run(
        [sys.executable, "-m", "builder", "run", "--cluster", "--catalog", str(catalog),
         "--output", str(tmp_path / "remote.zarr"), "--no-progress"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert log.returncode == 0, log.stderr + log.stdout
    with Client(scheduler_address, timeout=60) as client:
        prefixes = client.run_on_scheduler(
            lambda dask_scheduler: sorted(dask_scheduler.task_prefixes)
        )
    assert "trial" in prefixes, prefixes  # the trials ran there
    assert xr.open_zarr(tmp_path / "remote.zarr").sizes["stride"] == 10 * 16


def staged_outcomes(output: Path) -> set[str]:
    """Trial keys whose outcome is staged beside ``output``."""
    trials = Path(f"{output}.build") / "trials"
    return {p.stem for p in trials.glob("*.json")} if trials.is_dir() else set()


def test_a_worker_killed_mid_build_changes_nothing(
    nanny_cluster: tuple[str, Path], demo_root: Path, tmp_path: Path
) -> None:
    """SIGKILL of one worker process while it runs a trial: its tasks run again elsewhere,
    the build finishes with every trial, and the store equals a clean local build.

    The victim is held on its trial, whatever the machine's speed: the trial's file is a FIFO
    at first (its reader blocks in open until we act), and the real file by the time the trial
    runs again."""
    address, scheduler_log = nanny_cluster
    raw = copy_demo_subset(demo_root, tmp_path / "raw", ("S01", "S03"))
    catalog = demo_catalog(tmp_path, raw)
    held = raw / "S03" / "rampup_v1.00_i+6_t01.c3d"
    content = held.read_bytes()
    held.unlink()
    os.mkfifo(held)
    specs, _ = expand_trials(load_catalog(catalog))
    held_task = "trial-" + trial_key(next(s for s in specs if s.url == str(held)))
    output = tmp_path / "remote.zarr"
    build = subprocess.Popen(
        [sys.executable, "-m", "builder", "run", "--catalog", str(catalog),
         "--output", str(output), "--cluster", address, "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    orphans: list[psutil.Process] = []
    try:
        with Client(address, timeout=60) as client:
            deadline = time.monotonic() + 300  # only against a build that never gets there
            while True:
                assert build.poll() is None, build.communicate()[0]
                running = client.run(
                    lambda dask_worker: [str(ts.key) for ts in dask_worker.state.executing]
                )
                holding = [worker for worker, keys in running.items() if held_task in keys]
                if holding:
                    break
                assert time.monotonic() < deadline, "the build never ran the held trial"
                time.sleep(0.05)
            (victim,) = holding
            pids = client.run(os.getpid)  # worker processes, not their nannies
            # Its reader child, blocked on the FIFO, outlives it: ours to stop in the end.
            orphans = psutil.Process(pids[victim]).children()
            copy = tmp_path / "held.c3d"
            copy.write_bytes(content)
            os.replace(copy, held)  # its next run reads the file; this one stays blocked
            os.kill(pids[victim], signal.SIGKILL)
            staged_at_kill = staged_outcomes(output)
            log, _ = build.communicate(timeout=600)
            removed = [
                event
                for _, event in client.get_events(victim)
                if isinstance(event, dict) and event.get("action") == "remove-worker"
            ]
            client.wait_for_workers(2, timeout=120)  # the nanny started a fresh worker
            assert victim not in client.nthreads()
    finally:
        if build.poll() is None:
            build.kill()
            build.wait()
        for orphan in orphans:
            with contextlib.suppress(psutil.NoSuchProcess):
                orphan.kill()
    assert build.returncode == 0, log

    # The scheduler saw the worker die with the trial on it, and it ran again elsewhere.
    assert f"Remove worker addr: {victim}" in scheduler_log.read_text()
    (event,) = removed
    assert event["expected"] is False
    lost = {k.removeprefix("trial-") for k in event["processing-tasks"] if k.startswith("trial-")}
    assert held_task.removeprefix("trial-") in lost - staged_at_kill
    assert lost <= staged_outcomes(output)

    report = read_report(str(output))
    assert report["n_trials_left_out"] == 0 and report["n_trials_built"] == 20, log
    clean = build_store(catalog, tmp_path / "clean.zarr", workers=2)
    assert_same_arrays(output, tmp_path / "clean.zarr")
    assert xr.open_zarr(output).sizes["stride"] == clean.n_strides == 20 * 16

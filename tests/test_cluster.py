"""``--cluster ADDRESS``: a build through a real `dask scheduler` and `dask worker` processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import xarray as xr

from helpers import assert_same_arrays, build_store, copy_demo_subset, demo_catalog

pytestmark = pytest.mark.cluster
DASK = str(Path(sys.executable).with_name("dask"))  # the `dask` command of this environment


@pytest.fixture
def scheduler_address(tmp_path: Path) -> Iterator[str]:
    """A scheduler and two single-threaded worker processes on loopback."""
    scheduler_file = tmp_path / "scheduler.json"
    common = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    processes = [
        subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard", "--scheduler-file", str(scheduler_file)],
            **common,
        )
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.1)
        time.sleep(0.2)  # the file is written in one go, but give the JSON a moment
        address = json.loads(scheduler_file.read_text())["address"]
        for _ in range(2):
            processes.append(
                subprocess.Popen(
                    [DASK, "worker", address, "--nthreads", "1",
                     "--no-dashboard", "--no-nanny"],
                    **common,
                )
            )  # fmt: skip
        from dask.distributed import Client

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

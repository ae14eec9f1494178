"""Object storage: raw files in one bucket, the store in another, on a real S3-compatible server
over HTTP (moto's ThreadedMotoServer on port 0), behind a proxy that can answer 503 SlowDown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import s3fs
import xarray as xr
import yaml
import zarr
from s3proxy import FaultyProxy

from builder.datasets import catalog_files
from builder.errors import BuilderError
from builder.pipeline.run import BuildOptions, build
from builder.store.layout import ARRAYS
from builder.store.versions import SAFE_PUBLISHES_1D, SAFE_PUBLISHES_ND, VersionedOutput

from helpers import MiniatureFactory, copy_demo_subset, demo_catalog, moto_server

pytestmark = pytest.mark.cluster

SECRET = "s3cr3t-that-must-never-be-written"
KEY_ID = "AKIATESTKEYID000"
MINIATURES = ("siat_llmd2023", "embry2018")  # CSV files and one MAT v7.3 (HDF5) file


@dataclass
class S3:
    endpoint: str  # the server itself
    proxy: FaultyProxy  # in front of it: the builder talks to this one
    raw: Path  # the same raw files on local disk, for reference builds

    def options(self, through_proxy: bool = True) -> dict:
        return {"endpoint_url": self.proxy.url if through_proxy else self.endpoint}

    def fs(self) -> s3fs.S3FileSystem:
        return s3fs.S3FileSystem(endpoint_url=self.endpoint, key=KEY_ID, secret=SECRET)


@pytest.fixture(scope="module")
def s3(
    demo_root: Path, miniature: MiniatureFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[S3]:
    # Credentials from the usual place (the environment), never from the catalogue.
    credentials = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
    with moto_server(credentials, ("raw", "stores")) as endpoint:
        raw = tmp_path_factory.mktemp("raw")
        copy_demo_subset(demo_root, raw / "demo", ("S01",))
        for source in MINIATURES:
            miniature(source).copy(raw / "datasets")
        fs = s3fs.S3FileSystem(endpoint_url=endpoint, key=KEY_ID, secret=SECRET)
        fs.put(str(raw) + "/", "raw/", recursive=True)
        proxy = FaultyProxy(endpoint)
        yield S3(endpoint, proxy, raw)
        proxy.close()


def catalogue(folder: Path, root: str) -> Path:
    """The demo's C3D source (subject S01) and two miniature datasets, all under ``root``."""
    demo = yaml.safe_load(demo_catalog(folder, f"{root}/demo").read_text())
    datasets: dict[str, dict] = {}  # every registered driver's own catalog.yaml
    for entries in catalog_files():
        datasets |= yaml.safe_load(entries.read_text())["sources"]
    for source in MINIATURES:
        entry = datasets[source]
        for key in ("urlpath", "root"):
            entry["args"][key] = entry["args"][key].replace(
                "{{ env(GAIT_DATA_ROOT) }}", f"{root}/datasets"
            )
        demo["sources"][source] = entry
    path = folder / "catalog.yaml"
    path.write_text(yaml.safe_dump(demo, sort_keys=False))
    return path


def build_here(catalog: Path, output: str, storage_options: dict, **changes) -> object:
    options = BuildOptions(
        output=output,
        workers=2,
        progress=False,
        dashboard_address=":0",
        storage_options=storage_options,
        **changes,
    )
    return build(str(catalog), options)


def assert_same_store(a: zarr.Group, b: zarr.Group) -> None:
    for spec in ARRAYS:
        if spec.name == "source_path":  # s3://raw/... versus a local path
            continue
        x, y = a[spec.name][...], b[spec.name][...]
        if x.dtype.kind == "f":
            np.testing.assert_array_equal(x, y, err_msg=spec.name)
        else:
            assert (np.asarray(x) == np.asarray(y)).all(), spec.name


@pytest.fixture(scope="module")
def reference(s3: S3, tmp_path_factory: pytest.TempPathFactory) -> zarr.Group:
    folder = tmp_path_factory.mktemp("reference")
    build_here(catalogue(folder, str(s3.raw)), str(folder / "gait.zarr"), {})
    return zarr.open_group(str(folder / "gait.zarr"), mode="r")


def test_build_from_one_bucket_into_another_through_503s(s3: S3, reference, tmp_path) -> None:
    """The CLI with credentials from the environment, every tenth request answered 503."""
    s3.proxy.policy = lambda method, path, n: n % 10 == 0
    catalog = catalogue(tmp_path, "s3://raw")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    log = subprocess.run(
        [sys.executable, "-m", "builder", "run", "--catalog", str(catalog),
         "--output", "s3://stores/gait.zarr", "--workers", "2", "--no-progress",
         "--storage-option", f"endpoint_url={s3.proxy.url}"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    s3.proxy.policy = lambda method, path, n: False
    assert log.returncode == 0, log.stderr[-3000:]
    assert s3.proxy.failed > 20  # the 503s happened, and were retried

    ds = xr.open_zarr("s3://stores/gait.zarr", storage_options=s3.options(through_proxy=False))
    assert set(ds.dataset.values.tolist()) == {"demo", "SIAT-LLMD", "Embry2018"}
    assert all(p.startswith("s3://raw/") for p in set(ds.source_path.values.tolist()))
    remote = zarr.open_group(
        "s3://stores/gait.zarr", mode="r", storage_options=s3.options(through_proxy=False)
    )
    assert_same_store(remote, reference)

    # The credentials are nowhere: not in the store, its report, the resume state, the logs.
    fs = s3.fs()
    for path in fs.find("stores/"):
        assert SECRET.encode() not in fs.cat_file(path), path
    assert SECRET not in log.stdout + log.stderr

    info = subprocess.run(
        [sys.executable, "-m", "builder", "info", "s3://stores/gait.zarr",
         "--storage-option", f"endpoint_url={s3.endpoint}"],
        capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip
    assert info.returncode == 0 and "SIAT-LLMD" in info.stdout, info.stderr


def test_readers_of_the_name_and_of_a_version_keep_their_data_across_publishes(
    s3: S3, tmp_path
) -> None:
    """Issue 10, item 1: the same handle used to read the newer version's chunks under the
    old shapes after the second publish."""
    catalog = catalogue(tmp_path, "s3://raw")
    output = "s3://stores/readers.zarr"
    so = s3.options(False)
    first = build_here(catalog, output, s3.options())
    expected = {k: v.values for k, v in xr.open_zarr(output, storage_options=so).load().items()}
    by_name = xr.open_zarr(output, storage_options=so)  # lazily: metadata only
    pinned_url = f"{output}.versions/{first.version}"
    by_version = xr.open_zarr(pinned_url, storage_options=so)
    fs = s3.fs()
    # Objects of someone else's under the store's prefix, one of them shaped like a chunk key.
    fs.pipe_file("stores/readers.zarr/notes.txt", b"mine")
    fs.pipe_file("stores/readers.zarr/emg/c.7.7", b"mine too")

    source, added = "raw/demo/S01/walk_v0.80_i+0_t01.c3d", []
    try:
        for i in range(SAFE_PUBLISHES_ND):  # 3 publishes, each with one more trial
            added.append(f"raw/demo/S01/walk_v0.80_i+0_t0{i + 3}.c3d")
            fs.copy(source, added[-1])
            result = build_here(catalog, output, s3.options())
            assert result.n_strides == first.n_strides + 16 * (i + 1)
            # Each .values reads the store again (nothing is cached by the handle).
            for name, values in expected.items():
                if i < SAFE_PUBLISHES_1D or values.ndim >= 2:
                    np.testing.assert_array_equal(by_name[name].values, values, err_msg=name)
    finally:
        fs.rm(added)
    with pytest.raises(ValueError):  # past the 1-D window: an error, never other values
        by_name["subject"].load()
    for name, values in expected.items():
        np.testing.assert_array_equal(by_version[name].values, values, err_msg=name)
    assert fs.cat_file("stores/readers.zarr/notes.txt") == b"mine"
    assert fs.cat_file("stores/readers.zarr/emg/c.7.7") == b"mine too"
    latest = xr.open_zarr(output, storage_options=so)
    assert latest.attrs["build_version"] == result.version
    assert latest.sizes["stride"] == result.n_strides


def test_interrupted_publish_never_shows_a_half_store_and_the_next_run_finishes(
    s3: S3, tmp_path, monkeypatch
) -> None:
    catalog = catalogue(tmp_path, "s3://raw")
    output = "s3://stores/interrupted.zarr"

    def crash_before_the_switch(self: VersionedOutput, version: str) -> None:
        source = self.version_path(version)
        body = [p for p in self.fs.find(source) if not p.endswith(f"{version}/zarr.json")]
        self.fs.copy(
            body[: len(body) // 2], [self.path + p[len(source) :] for p in body[: len(body) // 2]]
        )
        raise ConnectionError("the client died while publishing")

    monkeypatch.setattr(VersionedOutput, "publish", crash_before_the_switch)
    with pytest.raises((ConnectionError, BuilderError)):
        build_here(catalog, output, s3.options())
    # Nothing complete was ever published: readers get the clear "under way" error.
    with pytest.raises(ValueError, match="no complete build of this store exists yet"):
        xr.open_zarr(output, storage_options=s3.options(False))
    monkeypatch.undo()

    finished = build_here(catalog, output, s3.options())  # resumes: every trial is staged
    ds = xr.open_zarr(output, storage_options=s3.options(False))
    assert (
        ds.sizes["stride"] == finished.n_strides and ds.attrs["build_version"] == finished.version
    )


def test_persistent_storage_errors_fail_clearly_and_keep_the_previous_version(
    s3: S3, tmp_path
) -> None:
    catalog = catalogue(tmp_path, "s3://raw")
    output = "s3://stores/persistent.zarr"
    first = build_here(catalog, output, s3.options())

    fs = s3.fs()
    fs.copy("raw/demo/S01/walk_v0.80_i+0_t01.c3d", "raw/demo/S01/walk_v0.80_i+0_t04.c3d")
    s3.proxy.policy = lambda method, path, n: (
        method in ("PUT", "POST", "DELETE") and path.startswith("/stores/")
    )
    # Fewer botocore retries than its default only to keep the test short.
    impatient = {**s3.options(), "config_kwargs": {"retries": {"max_attempts": 2}}}
    try:
        with pytest.raises(BuilderError, match="storage") as info:
            build_here(catalog, output, impatient)
        assert "\n" not in str(info.value) and "previous version is intact" in str(info.value)
    finally:
        s3.proxy.policy = lambda method, path, n: False
        fs.rm_file("raw/demo/S01/walk_v0.80_i+0_t04.c3d")
    ds = xr.open_zarr(output, storage_options=s3.options(False))
    assert ds.attrs["build_version"] == first.version and ds.sizes["stride"] == first.n_strides


def test_an_outage_while_trials_are_processed_never_publishes_a_partial_version(
    s3: S3, tmp_path
) -> None:
    """Issue 10, item 2: staging writes failing mid-build published 704 -> 176 strides, exit 0."""
    catalog = catalogue(tmp_path, "s3://raw")
    output = "s3://stores/partial.zarr"
    first = build_here(catalog, output, s3.options())
    fs = s3.fs()
    fs.copy("raw/demo/S01/walk_v0.80_i+0_t01.c3d", "raw/demo/S01/walk_v0.80_i+0_t05.c3d")
    staged_puts = []

    def outage_after_four_trials(method: str, path: str, n: int) -> bool:
        if method == "PUT" and "/partial.zarr.build/trials/" in path:
            staged_puts.append(path)
            return len(staged_puts) > 8  # each trial stages two objects
        return False

    s3.proxy.policy = outage_after_four_trials
    impatient = {**s3.options(), "config_kwargs": {"retries": {"max_attempts": 2}}}
    try:
        with pytest.raises(BuilderError) as failure:
            build_here(catalog, output, impatient, fresh=True)
    finally:
        s3.proxy.policy = lambda method, path, n: False
    message = str(failure.value)
    assert "\n" not in message and "could not be processed or staged" in message
    assert f"version {first.version} stays current" in message
    ds = xr.open_zarr(output, storage_options=s3.options(False))
    assert ds.attrs["build_version"] == first.version and ds.sizes["stride"] == first.n_strides

    try:
        finished = build_here(catalog, output, s3.options())  # the storage answers again
    finally:
        fs.rm_file("raw/demo/S01/walk_v0.80_i+0_t05.c3d")
    assert finished.n_strides == first.n_strides + 16
    assert not any(entry.retry for entry in finished.report.trials_left_out)
    ds = xr.open_zarr(output, storage_options=s3.options(False))
    assert ds.attrs["build_version"] == finished.version


def test_an_output_prefix_holding_other_objects_is_refused(s3: S3, tmp_path) -> None:
    fs = s3.fs()
    fs.pipe_file("stores/theirs.zarr/data.csv", b"a,b\n1,2\n")
    fs.pipe_file("stores/theirs.zarr/emg/c/0/0", b"shaped like a chunk key")
    with pytest.raises(BuilderError, match="holds data the builder did not create") as failure:
        build_here(catalogue(tmp_path, "s3://raw"), "s3://stores/theirs.zarr", s3.options())
    assert "\n" not in str(failure.value)
    assert sorted(fs.find("stores/theirs.zarr")) == [
        "stores/theirs.zarr/data.csv",
        "stores/theirs.zarr/emg/c/0/0",
    ]
    assert not fs.exists("stores/theirs.zarr.versions")


def test_a_lock_left_by_a_build_that_failed_while_storage_was_down(s3: S3, tmp_path) -> None:
    """Issue 10, item 4: it blocked re-runs for 300 s with "another build is writing"."""
    catalog = catalogue(tmp_path, "s3://raw")
    output = "s3://stores/locked.zarr"
    build_here(catalog, output, s3.options())
    fs = s3.fs()
    fs.copy("raw/demo/S01/walk_v0.80_i+0_t01.c3d", "raw/demo/S01/walk_v0.80_i+0_t06.c3d")
    # Storage down for writes: the build fails, and so does the removal of its lock.
    s3.proxy.policy = lambda method, path, n: (
        path.startswith("/stores/locked.zarr")
        and method in ("PUT", "POST", "DELETE")
        and not (method == "PUT" and path.split("?")[0].endswith("/lock"))
    )
    cli = [sys.executable, "-m", "builder", "run", "--no-progress", "--workers", "1"]
    args = ["--catalog", str(catalog), "--output", output]
    endpoint = ["--storage-option", f"endpoint_url={s3.proxy.url}"]
    retries = ["--storage-option", 'config_kwargs={"retries": {"max_attempts": 2}}']
    try:
        failed = subprocess.run(cli + args + endpoint + retries, capture_output=True, text=True)
    finally:
        s3.proxy.policy = lambda method, path, n: False
    try:
        assert failed.returncode == 1, failed.stderr
        assert fs.exists("stores/locked.zarr.build/lock")  # left behind
        rerun = subprocess.run(cli + args + endpoint, capture_output=True, text=True)
    finally:
        fs.rm_file("raw/demo/S01/walk_v0.80_i+0_t06.c3d")
    assert rerun.returncode == 0, rerun.stderr
    assert "took over the build lock of pid" in rerun.stderr
    assert "its process is gone" in rerun.stderr

    # A lock refreshed moments ago by a build on another host: refused, saying how long.
    fs.pipe_file(
        "stores/locked.zarr.build/lock",
        json.dumps({"host": "elsewhere", "pid": 7, "heartbeat": time.time()}).encode(),
    )
    try:
        busy = subprocess.run(cli + args + endpoint, capture_output=True, text=True)
    finally:
        fs.rm_file("stores/locked.zarr.build/lock")
    assert busy.returncode == 1
    assert "another build (pid 7 on elsewhere) is writing" in busy.stderr
    assert "counts as stale in" in busy.stderr

"""StoreLocation: one URL and its options give the filesystem, versions, staging, pinned
version, zarr group, dataset and build report that the old separate paths gave, opening the
filesystem once; on local disk and on an S3-compatible server (moto over HTTP)."""

from __future__ import annotations

import ast
import json
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest
import xarray as xr
import zarr

import builder.store
from builder.errors import StoreError
from builder.store import reader
from builder.store.layout import ARRAYS, REPORT_NAME, TABLE_COLUMNS, create_template
from builder.store.location import StoreLocation
from builder.store.staging import Staging
from builder.store.versions import versioned_output

from helpers import SMALL_LAYOUT, moto_server

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIALOCATION0000", "AWS_SECRET_ACCESS_KEY": "location-secret"}


def publish(location: StoreLocation, n_strides: int, seed: int) -> tuple[str, dict[str, Any]]:
    """A version with the real store layout, random values and a report, published through
    the location alone; returns (version, report)."""
    output = location.versions
    output.claim()
    version = output.new_version()
    group = location.open_group("w", version=version)
    create_template(group, n_strides, n_strides * 10, SMALL_LAYOUT, version)
    rng = np.random.default_rng(seed)
    for spec in ARRAYS:
        if spec.partition == "coord":
            continue
        array = group[spec.name]
        assert isinstance(array, zarr.Array)
        if spec.dtype == "str":
            values = rng.choice(["S01", "S02", "walk", "run"], size=array.shape).astype(object)
        else:
            values = rng.integers(0, 100, size=array.shape).astype(array.dtype)
        array[...] = values
    group.attrs["build_version"] = version
    zarr.consolidate_metadata(group.store)
    report = {"version": version, "n_strides": n_strides, "seed": seed}
    location.fs.pipe_file(
        f"{output.version_path(version)}/{REPORT_NAME}", json.dumps(report).encode()
    )
    output.publish(version)
    return version, report


def assert_reads_like_the_old_paths(location: StoreLocation, version: str, report: dict) -> None:
    """Every reader path gives what the location gives, for the published ``version``."""
    url, options = location.url, location.storage_options
    pinned = location.pin()
    assert pinned == f"{url}.versions/{version}"
    assert reader.pin_version(url, options) == pinned
    assert location.published_version() == version
    assert location.read_report() == report
    assert location.read_report(version) == report
    assert reader.read_report(url, options) == report
    assert reader.read_report(pinned, options) == report  # a version URL pins to itself

    group = location.open_group()
    old_group = zarr.open_group(pinned, mode="r", storage_options=options or None)
    assert group.attrs["build_version"] == version
    for name in TABLE_COLUMNS:
        np.testing.assert_array_equal(group[name][...], old_group[name][...])
    same_version = location.open_group(version=version)
    np.testing.assert_array_equal(same_version["kinematics"][...], old_group["kinematics"][...])

    table = reader.stride_table(url, options)
    assert table.equals(reader.group_stride_table(group))
    assert len(table) == report["n_strides"]

    ds = location.open_dataset()
    xr.testing.assert_identical(ds, reader.open_store(url, options))
    # open_store is xarray.open_zarr's dataset with the table in memory and one more index
    assert ds.sel(gait_cycle_pct=50.0, method="nearest").sizes["stride"] == len(table)
    plain = ds.drop_indexes("gait_cycle_pct")
    xr.testing.assert_identical(plain, xr.open_zarr(pinned, storage_options=options or None))


# --- local disk ---------------------------------------------------------------------------


def test_one_location_gives_the_filesystem_versions_and_staging(tmp_path: Path) -> None:
    url = str(tmp_path / "gait.zarr")
    location = StoreLocation(url + "/")  # a trailing slash names the same output
    fs, path = fsspec.core.url_to_fs(url)
    assert location.url == url
    assert location.fs == fs and location.path == path and location.is_local
    assert location.versions.fs is location.fs and location.staging.fs is location.fs
    assert location.versions.path == path
    assert location.versions.versions_path == f"{path}.versions"
    assert location.versions is location.versions  # made once, like the filesystem
    assert location.staging.url == f"{url}.build"
    assert location.staging.root == fsspec.core.url_to_fs(f"{url}.build")[1]
    assert location.staging.location is location
    # The old constructors give the same objects' answers.
    old_staging, old_output = Staging(url), versioned_output(url)
    assert (old_staging.url, old_staging.root, old_staging.local) == (
        location.staging.url,
        location.staging.root,
        location.staging.local,
    )
    assert old_output.version_url("v0007") == location.version_url("v0007")
    assert location.version_url("v0007") == f"{path}.versions/v0007"
    assert old_output.location == location and hash(old_output.location) == hash(location)
    with pytest.raises(TypeError, match="carries its own storage options"):
        StoreLocation.of(location, {"anon": True})
    assert StoreLocation.of(location) is location


def test_a_relative_path_is_the_folder_it_names_now(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    location = StoreLocation("gait.zarr")
    assert location.path == str(tmp_path / "gait.zarr")
    assert location.staging.root == str(tmp_path / "gait.zarr.build")


def test_a_published_store_reads_the_same_through_the_location(tmp_path: Path) -> None:
    location = StoreLocation(str(tmp_path / "gait.zarr"))
    version, report = publish(location, n_strides=40, seed=1)
    assert_reads_like_the_old_paths(location, version, report)

    # A pinned location keeps its version across a publish; the moving name moves on.
    held = StoreLocation(location.pin())
    before = held.open_group()["kinematics"][...]
    second, second_report = publish(location, n_strides=24, seed=2)
    assert location.published_version() == second
    assert location.read_report() == second_report
    assert held.pin() == held.url and held.read_report() == report
    np.testing.assert_array_equal(held.open_group()["kinematics"][...], before)
    assert_reads_like_the_old_paths(location, second, second_report)


def test_one_location_opens_its_filesystem_once(tmp_path: Path, monkeypatch) -> None:
    location = StoreLocation(str(tmp_path / "gait.zarr"))
    publish(location, n_strides=8, seed=3)
    calls: list[str] = []
    url_to_fs = fsspec.core.url_to_fs

    def counted(url: str, **options: Any) -> Any:
        calls.append(url)
        return url_to_fs(url, **options)

    monkeypatch.setattr(fsspec.core, "url_to_fs", counted)
    again = StoreLocation(location.url)
    again.pin()
    again.published_version()
    again.read_report()
    again.open_group()
    again.open_dataset()
    again.versions.published()
    again.versions.versions()
    again.staging.read_manifest()
    with again.staging.lock():
        pass
    assert reader.group_stride_table(again.open_group()).shape[0] == 8
    assert calls == [again.url]
    # The reader's functions: one filesystem per call (they used to open two or three).
    calls.clear()
    reader.read_report(location.url)
    assert calls == [location.url]


def test_no_complete_store_is_a_clear_error(tmp_path: Path) -> None:
    location = StoreLocation(str(tmp_path / "gait.zarr"))
    with pytest.raises(StoreError, match="no store here"):
        location.pin()
    location.versions.claim()
    version = location.versions.new_version()  # a build under way: the placeholder
    with pytest.raises(StoreError, match="no complete build yet"):
        location.open_group()
    location.staging.write_manifest({"state": "failed", "failed": "today", "failure": "disk"})
    with pytest.raises(StoreError, match="the last build failed at today: disk"):
        location.read_report()
    assert reader.last_build(location.url) == location.staging.last_build()
    with pytest.raises(StoreError, match=f"no {REPORT_NAME}"):
        location.read_report(version)


def test_a_location_travels_as_its_url_and_options(tmp_path: Path) -> None:
    """Dask and DataLoader workers get the URL and options and open their own filesystem."""
    location = StoreLocation(str(tmp_path / "gait.zarr"))
    _, report = publish(location, n_strides=8, seed=4)
    staging = location.staging
    staging.write_manifest({"state": "done"})
    copy = pickle.loads(pickle.dumps(staging))
    assert copy.location == location and copy.read_manifest() == {"state": "done"}
    assert pickle.loads(pickle.dumps(location)).read_report() == report
    assert repr(location) == f"StoreLocation({location.url!r}, {{}})"


def test_training_source_reads_through_the_pinned_location(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="PyTorch not installed (extra: train)")
    from builder.training.data import StoreSource

    location = StoreLocation(str(tmp_path / "gait.zarr"))
    version, _ = publish(location, n_strides=40, seed=5)
    source = StoreSource(location.url)
    assert source.url == location.pin() and source.location == StoreLocation(location.pin())
    assert source.table().equals(reader.stride_table(location.url))
    publish(location, n_strides=16, seed=6)  # training keeps reading its version
    assert source.table().equals(reader.stride_table(location.version_url(version)))
    assert source.array("stride").shape == (40,)


def test_only_the_location_turns_a_url_into_a_filesystem() -> None:
    """Supplement to the behavioural tests above: no other store module (nor the training
    data module) builds a filesystem or opens the store itself."""
    opening = {"url_to_fs", "filesystem", "open_group", "open_zarr"}

    def calls(path: Path) -> list[str]:
        tree = ast.parse(path.read_text())
        return [
            f"{path.name}:{node.lineno}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name | ast.Attribute)
            and node.func.attr in opening
            and ast.unparse(node.func.value) in ("fsspec", "fsspec.core", "zarr", "xr")
        ]

    package = Path(builder.store.__file__).parent
    files = [*package.glob("*.py"), package.parent / "training" / "data.py"]
    assert [hit for path in files if path.name != "location.py" for hit in calls(path)] == []
    assert len(calls(package / "location.py")) == 3  # url_to_fs, zarr and xarray


# --- an S3-compatible server ----------------------------------------------------------------


@pytest.fixture(scope="module")
def bucket() -> Iterator[dict[str, str]]:
    """Storage options for a moto server with an empty bucket ``location-stores``."""
    with moto_server(CREDENTIALS, ("location-stores",)) as endpoint:
        yield {"endpoint_url": endpoint}


def test_on_s3_one_location_gives_what_the_old_paths_gave(bucket: dict[str, str]) -> None:
    url = "s3://location-stores/gait.zarr"
    location = StoreLocation(url, bucket)
    fs, path = fsspec.core.url_to_fs(url, **bucket)
    assert not location.is_local and location.fs == fs and location.path == path
    assert location.staging.root == fsspec.core.url_to_fs(f"{url}.build", **bucket)[1]
    assert location.version_url("v0001") == f"{url}.versions/v0001"
    assert Staging(url, bucket).root == location.staging.root
    assert versioned_output(url, bucket).version_url("v0002") == location.version_url("v0002")

    version, report = publish(location, n_strides=40, seed=7)
    assert_reads_like_the_old_paths(location, version, report)
    with location.staging.lock():  # the object-store lock, on the same filesystem
        assert location.fs.exists(f"{location.staging.root}/lock")
    second, second_report = publish(location, n_strides=16, seed=8)
    assert_reads_like_the_old_paths(location, second, second_report)
    assert StoreLocation(f"{url}.versions/{version}", bucket).read_report() == report
    travelled = pickle.loads(pickle.dumps(location))  # with its options, as workers get it
    assert travelled == location and travelled.read_report() == second_report

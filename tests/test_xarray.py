"""The store as xarray users expect it: chunks that xarray accepts in every version, the
``gait`` engine (stride table in memory, signals lazy, pinned), units that pint parses, and
root attributes that netCDF takes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

from builder.conventions import JOINTS, MUSCLES, PLANES
from builder.store.layout import (
    ARRAYS,
    DATA_VARIABLES,
    JSON_ROOT_ATTRS,
    STRING,
    TABLE_COLUMNS,
    ChunkLayout,
    create_template,
    decode_root_attrs,
    encode_root_attrs,
)
from builder.store.location import StoreLocation
from builder.store.reader import open_store
from builder.store.versions import one_dim_chunk_halved, versioned_output
from builder.store.xarray_backend import IN_MEMORY, GaitBackendEntrypoint

from helpers import (
    SMALL_LAYOUT,
    moto_server,
    requires_cf_xarray,
    requires_h5netcdf,
    requires_moto,
    requires_pint,
)

DATASETS = {"lab": {"licence": "CC-BY-4.0", "citation": "Lab et al. 2024"}}
ACTIVITIES = ["walk", "run", "ramp_ascent"]


def publish(location: StoreLocation, n_strides: int, seed: int) -> str:
    """A version with the real layout (chunks, encodings, attributes) and random values of the
    right kinds, published at ``location``; returns the version."""
    output = location.versions
    version = output.new_version()
    group = location.open_group("w", version=version)
    create_template(group, n_strides, n_strides * 10, SMALL_LAYOUT, version)
    rng = np.random.default_rng(seed)
    for spec in ARRAYS:
        if spec.partition == "coord":
            continue
        array = group[spec.name]
        assert isinstance(array, zarr.Array)
        if spec.dtype == STRING:
            values: np.ndarray = rng.choice(ACTIVITIES, size=array.shape).astype(object)
        elif spec.name in ("stride_starts", "stride_ends", "stride"):
            values = np.arange(n_strides) * 10 + (10 if spec.name == "stride_ends" else 0)
            values = values if spec.name != "stride" else np.arange(n_strides)
        else:
            values = (rng.random(size=array.shape) * 2).astype(array.dtype)
        array[...] = values
    group.attrs.update(
        encode_root_attrs({"build_version": version, "joints": list(JOINTS), "datasets": DATASETS})
    )
    zarr.consolidate_metadata(group.store)
    output.publish(version)
    return version


@pytest.fixture
def store(tmp_path: Path) -> str:
    url = str(tmp_path / "gait.zarr")
    publish(StoreLocation(url), 300, seed=1)
    return url


# --- 1. chunks: one chunking along stride, in every version --------------------------------


def test_consecutive_versions_chunk_every_stride_array_alike(tmp_path: Path) -> None:
    location = StoreLocation(str(tmp_path / "gait.zarr"))
    for i, n_strides in enumerate((300, 250, 130, 90), start=1):
        version = publish(location, n_strides, seed=i)
        assert version == f"v{i:04d}"
        chunk = SMALL_LAYOUT.strides_per_chunk // (2 if one_dim_chunk_halved(version) else 1)
        ds = xr.open_zarr(location.url)  # plain xarray, the documented baseline
        assert ds.attrs["build_version"] == version
        expected = tuple(min(chunk, n_strides - s) for s in range(0, n_strides, chunk))
        assert ds.chunks["stride"] == expected, version
        group = location.open_group()
        for spec in ARRAYS:
            if spec.partition == "stride":
                array = group[spec.name]
                assert isinstance(array, zarr.Array)
                assert array.chunks[0] == chunk, (version, spec.name)
                assert array.shards is not None
                assert array.shards[0] == SMALL_LAYOUT.strides_per_shard, (version, spec.name)
    # Both sizes occur among v0001..v0004 (the halving of issue 10 is still there).
    assert {one_dim_chunk_halved(f"v{i:04d}") for i in range(1, 5)} == {True, False}


def test_chunk_sizes_stay_even_so_that_halving_changes_them() -> None:
    with pytest.raises(ValueError, match="even"):
        ChunkLayout(strides_per_chunk=33, strides_per_shard=99)


# --- 2. the gait engine and open_store ------------------------------------------------------


def test_open_store_holds_the_table_in_memory_and_the_signals_in_dask(store: str) -> None:
    ds = open_store(store)
    for name in IN_MEMORY:
        assert isinstance(ds[name].data, np.ndarray), name
    for name in ("emg", "emg_envelope", "kinematics", "kinetics", "emg_scale", "emg_mask"):
        assert isinstance(ds[name].data, da.Array), name
    assert ds.chunks["stride"] == (32,) * 9 + (12,)

    table = pd.DataFrame({n: ds[n].values for n in ("activity", "speed_mps", "stride_starts")})
    means = ds.kinematics.groupby("activity").mean("stride")
    assert sorted(means.activity.values.tolist()) == sorted(set(table.activity))
    for activity, rows in table.groupby("activity"):
        np.testing.assert_allclose(
            means.sel(activity=activity).values,
            ds.kinematics.values[rows.index].mean(axis=0),
            rtol=1e-5,
        )
    fast = table.index[table.speed_mps > 1].to_numpy()
    assert ds.kinematics.where(ds.speed_mps > 1, drop=True).stride.values.tolist() == list(fast)
    assert ds.query(stride="speed_mps > 1").stride.values.tolist() == list(fast)
    assert ds.stride_starts[7].item() == 70 and ds.stride_ends[7].item() == 80
    middle = ds.kinematics.sel(gait_cycle_pct=50.0, method="nearest")  # indexes sample
    assert middle.sample.item() in (99, 100) and middle.dims == ("stride", "joint", "plane")
    # xarray.open_zarr's dataset, but for the table in memory and the gait_cycle_pct index.
    plain = ds.drop_indexes("gait_cycle_pct")
    xr.testing.assert_identical(plain, xr.open_zarr(StoreLocation(store).pin()))


def test_the_gait_engine_opens_the_pinned_version_lazily(tmp_path: Path) -> None:
    location = StoreLocation(str(tmp_path / "gait.zarr"))
    first = publish(location, 300, seed=1)
    expected = open_store(location.url).load()

    ds = xr.open_dataset(location.url, engine="gait")  # chunks=None: xarray's lazy arrays
    assert ds.encoding["source"] == location.version_url(first)
    for name in IN_MEMORY:
        assert not ds[name].chunks, name
    assert not ds.kinematics.variable._in_memory  # nothing of the signals read yet
    assert ds.groupby("activity").count().kinematics.sizes["activity"] == len(ACTIVITIES)
    assert ds.stride_starts[3].item() == 30
    middle = ds.sel(gait_cycle_pct=50.0, method="nearest")  # gait_cycle_pct indexes sample
    assert middle.sample.item() in (99, 100) and ds.sel(gait_cycle_pct=100.0).sample.item() == 199

    chunked = xr.open_dataset(location.url, engine="gait", chunks={})
    assert isinstance(chunked.kinematics.data, da.Array)
    assert chunked.chunks["stride"] == (32,) * 9 + (12,)  # xarray chunks the table too

    publish(location, 200, seed=2)  # a later publish changes neither
    xr.testing.assert_identical(ds.load(), expected)
    xr.testing.assert_identical(chunked.load(), expected)
    assert xr.open_dataset(location.url, engine="gait").sizes["stride"] == 200


def test_xarray_guesses_the_engine_for_builder_stores_only(store: str, tmp_path: Path) -> None:
    entry = GaitBackendEntrypoint()
    version_url = StoreLocation(store).pin()
    assert entry.guess_can_open(store) and entry.guess_can_open(Path(version_url))
    ds = xr.open_dataset(store)  # no engine named: xarray's guess picks gait
    assert "gait_cycle_pct" in ds.xindexes and ds.encoding["source"] == version_url

    plain = tmp_path / "plain.zarr"
    xr.Dataset({"x": ("i", np.arange(3))}).to_zarr(plain, zarr_format=3, consolidated=True)
    assert not entry.guess_can_open(plain)
    assert xr.open_dataset(plain).x.values.tolist() == [0, 1, 2]  # zarr's engine, as before

    building = versioned_output(str(tmp_path / "building.zarr"))
    building.new_version()  # a placeholder root: the zarr engine says a build is under way
    assert not entry.guess_can_open(building.url)
    assert not entry.guess_can_open("s3://bucket/gait.zarr")  # no options to look with
    assert not entry.guess_can_open(str(tmp_path / "nothing.zarr"))
    with pytest.raises(TypeError, match="engine 'gait' opens a store URL or path"):
        entry.open_dataset(b"gait.zarr")  # type: ignore[arg-type]


CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIAXARRAY00000", "AWS_SECRET_ACCESS_KEY": "xarray-secret"}


@pytest.fixture(scope="module")
def bucket() -> Iterator[dict[str, str]]:
    """Storage options for a moto server (S3 over HTTP on localhost) with a bucket."""
    with moto_server(CREDENTIALS, ("xarray-stores",)) as endpoint:
        yield {"endpoint_url": endpoint}


@requires_moto
def test_the_gait_engine_passes_storage_options_to_object_storage(
    bucket: dict[str, str],
) -> None:
    location = StoreLocation("s3://xarray-stores/gait.zarr", bucket)
    version = publish(location, 60, seed=3)
    ds = xr.open_dataset(location.url, engine="gait", storage_options=bucket, chunks={})
    assert ds.encoding["source"] == location.version_url(version)
    assert ds.sizes["stride"] == 60 and isinstance(ds.kinematics.data, da.Array)
    expected = open_store(location.url, bucket).load()
    xr.testing.assert_identical(ds.load(), expected)


# --- 3. attributes ---------------------------------------------------------------------------


def _units(ds: xr.Dataset) -> dict[str, str]:
    return {str(n): v.attrs["units"] for n, v in ds.variables.items() if "units" in v.attrs}


def test_every_variable_is_described_and_quantities_have_units(store: str) -> None:
    ds = open_store(store)
    for name, variable in ds.variables.items():
        assert variable.attrs.get("description"), name
        if variable.attrs.get("units") == "1":
            assert variable.attrs.get("units_comment"), f"{name}: what is dimensionless here"
    units = _units(ds)
    assert {k: units[k] for k in ("speed_mps", "incline_deg", "duration_s", "source_start_s")} == {
        "speed_mps": "m/s",
        "incline_deg": "degree",
        "duration_s": "s",
        "source_start_s": "s",
    }
    assert units["gait_cycle_pct"] == "%" and units["emg_scale"] == "V"
    assert units["emg"] == units["emg_envelope"] == "1"
    for name, dtype in TABLE_COLUMNS.items():
        assert (name in units) == (dtype != STRING and name != "patient_id"), name
    for name in ("emg_mask", "kinematics_mask", "kinetics_mask", "joint", "plane", "muscle"):
        assert name not in units, name
    assert set(DATA_VARIABLES) - {"emg_mask", "kinematics_mask", "kinetics_mask"} <= set(units)


@requires_pint
@requires_cf_xarray
def test_pint_and_cf_xarray_parse_every_units_attribute(store: str) -> None:
    import cf_xarray.units
    import pint

    registries = (pint.UnitRegistry(), cf_xarray.units.units)
    units = _units(open_store(store))
    assert len(units) >= 12
    for registry in registries:
        parsed = {name: registry.Unit(text) for name, text in units.items()}
        assert parsed["speed_mps"] == registry.Unit("meter / second")
        assert parsed["kinetics"] == registry.Unit("newton * meter / kilogram")
        assert parsed["kinematics"] == parsed["incline_deg"] == registry.Unit("degree")
        assert parsed["emg"].dimensionless and parsed["gait_cycle_pct"] == registry.Unit("percent")


def test_root_attributes_are_netcdf_attributes_and_decode(store: str) -> None:
    attrs = open_store(store).attrs
    assert all(isinstance(v, str | int | float) for v in attrs.values()), attrs
    decoded = decode_root_attrs(attrs)
    assert decoded["datasets"] == DATASETS and decoded["joints"] == list(JOINTS)
    assert decode_root_attrs({"muscles": list(MUSCLES)})["muscles"] == list(MUSCLES)  # old form
    assert set(JSON_ROOT_ATTRS) >= {"datasets", "joints", "planes", "muscles"}
    with pytest.raises(TypeError, match="'extra' is not a scalar"):
        encode_root_attrs({"extra": [1, 2]})


@requires_h5netcdf
def test_a_subset_round_trips_through_netcdf(store: str, tmp_path: Path) -> None:
    subset = open_store(store).isel(stride=slice(0, 5)).drop_vars("emg")
    subset.to_netcdf(tmp_path / "subset.nc", engine="h5netcdf")
    back = xr.open_dataset(tmp_path / "subset.nc", engine="h5netcdf").load()
    xr.testing.assert_equal(back, subset.load().drop_indexes("gait_cycle_pct"))
    assert back.attrs == subset.attrs
    for name, variable in subset.variables.items():
        assert back[name].attrs == variable.attrs, name


@requires_h5netcdf
def test_stores_built_before_json_attributes_still_write_netcdf(store: str, tmp_path: Path) -> None:
    group = zarr.open_group(StoreLocation(store).pin(), mode="r+")
    group.attrs.update({"planes": list(PLANES), "datasets": DATASETS})  # as before issue 12
    zarr.consolidate_metadata(group.store)
    ds = open_store(store)
    assert decode_root_attrs(ds.attrs)["planes"] == list(PLANES)
    ds.isel(stride=slice(0, 2)).drop_vars("emg").to_netcdf(tmp_path / "old.nc", engine="h5netcdf")


# --- the demo store ---------------------------------------------------------------------------


@requires_pint
def test_the_demo_store_reads_as_documented(demo_store: tuple[Path, Any]) -> None:
    import pint

    path, report = demo_store
    ds = xr.open_dataset(path, engine="gait", chunks={})
    assert sum(ds.chunks["stride"]) == report.n_strides  # consistent chunks, or it raises
    ds = open_store(str(path))
    registry = pint.UnitRegistry()
    for text in _units(ds).values():
        registry.Unit(text)  # raises on a unit pint does not know
    counts = ds.activity.to_series().value_counts().to_dict()
    assert {str(k): g.sizes["stride"] for k, g in ds.groupby("activity")} == counts
    walk = ds.query(stride="activity == 'walk' and side == 'L'")
    assert walk.sizes["stride"] == ((ds.activity == "walk") & (ds.side == "L")).sum().item()
    first = ds.emg[ds.stride_starts[0].item() : ds.stride_ends[0].item()]
    np.testing.assert_allclose(first.sizes["emg_sample"], ds.duration_s[0].item() * 1000, atol=1)

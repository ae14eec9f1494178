"""The store's arrays: names, dims, dtypes, units, chunk and shard shapes, and write regions.

Every per-stride array shares one stride partition (``strides_per_shard``), and the ragged
``emg`` rows have their own (``emg_rows_per_shard``). A write task owns exactly one region of
one partition, so no two tasks ever write the same chunk or shard.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle

from builder.conventions import JOINTS, MUSCLES, PLANES, SAMPLES_PER_STRIDE
from builder.errors import StoreError
from builder.store.versions import chunk_key_encoding, one_dim_chunk_halved

REPORT_NAME = "build_report.json"  # beside the arrays in every version
INDEX_NAME = "stride_index.h5"
STRING = "str"  # zarr 3 variable-length UTF-8 strings; xarray reads them as strings

# Stride-table columns: name -> dtype. Order is the order users see.
TABLE_COLUMNS: dict[str, Any] = {
    "patient_id": np.int32,
    "dataset": STRING,
    "subject": STRING,
    "activity": STRING,
    "trial": STRING,
    "subtrial": STRING,
    "side": STRING,
    "speed_mps": np.float32,
    "incline_deg": np.float32,
    "condition": STRING,
    "population": STRING,
    "emg_kind": STRING,
    "duration_s": np.float64,
    "source_path": STRING,
    "source_start_s": np.float64,
    "event_source": STRING,
    "licence": STRING,
}

# Stride-table columns: name -> (description, units or None). Units are strings pint and
# cf_xarray parse; labels and identifiers have none.
TABLE_COLUMN_ATTRS: dict[str, tuple[str, str | None]] = {
    "patient_id": ("the subject across the whole store: one integer per (dataset, subject)", None),
    "dataset": ("source dataset (its catalogue name; the root attribute datasets cites it)", None),
    "subject": ("the subject's identifier in the source dataset", None),
    "activity": ("activity, from the controlled vocabulary (walk, ramp_ascent, run, ...)", None),
    "trial": ("the trial's identifier in the source dataset", None),
    "subtrial": ("part of the trial the source names (empty where none)", None),
    "side": ("leg of the stride: L or R", None),
    "speed_mps": ("walking or running speed (NaN where the source gives none)", "m/s"),
    "incline_deg": ("ground incline, positive uphill (NaN where the source gives none)", "degree"),
    "condition": ("experimental condition, as the source names it", None),
    "population": ("participant population (healthy, older_adults, stroke, ...)", None),
    "emg_kind": (
        "raw: EMG filtered from raw signals in this pipeline; envelope: the source ships "
        "only processed envelopes",
        None,
    ),
    "duration_s": ("stride duration, heel strike to the next heel strike of the same leg", "s"),
    "source_path": ("URL of the source file the stride was read from", None),
    "source_start_s": (
        "time of the stride's first heel strike in the source file's own time base "
        "(NaN where the source gives durations only)",
        "s",
    ),
    "event_source": ("which detectors gave the stride's two heel strikes", None),
    "licence": ("licence of the source dataset", None),
}


def _column_attrs(name: str) -> dict[str, Any]:
    description, units = TABLE_COLUMN_ATTRS[name]
    attrs = {"long_name": f"stride table: {name}", "description": description}
    return attrs if units is None else {**attrs, "units": units}


# An index into an array: dimensionless ("1"), and not a physical quantity.
def _index_attrs(long_name: str, description: str) -> dict[str, Any]:
    return {
        "long_name": long_name,
        "description": description,
        "units": "1",
        "units_comment": "a 0-based index (a count), not a physical quantity",
    }


@dataclass(frozen=True)
class ArraySpec:
    name: str
    dims: tuple[str, ...]
    dtype: Any
    attrs: dict[str, Any]
    partition: str  # "stride": chunked along strides; "emg": along EMG rows; "coord": fixed


_MUSCLE = len(MUSCLES)
_KIN_DIMS = ("stride", "sample", "joint", "plane")

_NORMALISED = (
    "dimensionless: divided by emg_scale (per subject and muscle, the median over strides of "
    "the envelope peak); multiply by emg_scale for volts"
)
_MASK = "True where the component is present; absent components are NaN in the data, never 0"

ARRAYS: tuple[ArraySpec, ...] = (
    ArraySpec(
        "emg",
        ("emg_sample", "muscle"),
        np.float32,
        {
            "long_name": "processed EMG, all strides' rows concatenated",
            "description": (
                "processed EMG at 1 kHz (see emg_kind); stride i is rows "
                "stride_starts[i]:stride_ends[i]"
            ),
            "units": "1",
            "units_comment": _NORMALISED,
            "sampling_rate_hz": 1000.0,
        },
        "emg",
    ),
    ArraySpec(
        "emg_envelope",
        ("stride", "sample", "muscle"),
        np.float32,
        {
            "long_name": "EMG linear envelope, time-normalised",
            "description": "rectified, low-passed (~6 Hz, zero-phase) EMG, 200 samples per stride",
            "units": "1",
            "units_comment": _NORMALISED,
        },
        "stride",
    ),
    ArraySpec(
        "kinematics",
        _KIN_DIMS,
        np.float32,
        {
            "long_name": "joint angles",
            "description": (
                "joint angles, 200 samples per stride; flexion/dorsiflexion, adduction and "
                "internal rotation positive"
            ),
            "units": "deg",
        },
        "stride",
    ),
    ArraySpec(
        "kinetics",
        _KIN_DIMS,
        np.float32,
        {
            "long_name": "internal net joint moments",
            "description": (
                "internal net joint moments normalised by body mass, 200 samples per stride; "
                "the same axis signs as kinematics"
            ),
            "units": "N.m/kg",
        },
        "stride",
    ),
    ArraySpec(
        "emg_mask",
        ("stride", "muscle"),
        np.bool_,
        {"long_name": "EMG channel present", "description": _MASK},
        "stride",
    ),
    ArraySpec(
        "kinematics_mask",
        ("stride", "joint", "plane"),
        np.bool_,
        {"long_name": "kinematic component present", "description": _MASK},
        "stride",
    ),
    ArraySpec(
        "kinetics_mask",
        ("stride", "joint", "plane"),
        np.bool_,
        {"long_name": "kinetic component present", "description": _MASK},
        "stride",
    ),
    ArraySpec(
        "emg_scale",
        ("stride", "muscle"),
        np.float32,
        {
            "long_name": "EMG normalisation scale (median stride envelope peak of the subject)",
            "description": (
                "volts per normalised unit of emg and emg_envelope, per subject and muscle "
                "(NaN where the subject has no such channel)"
            ),
            "units": "V",
        },
        "stride",
    ),
    ArraySpec(
        "stride_starts",
        ("stride",),
        np.int64,
        _index_attrs("first row of the stride in emg", "the stride's first row of emg"),
        "stride",
    ),
    ArraySpec(
        "stride_ends",
        ("stride",),
        np.int64,
        _index_attrs("row after the stride's last row in emg", "one past the stride's last row"),
        "stride",
    ),
    *(
        ArraySpec(name, ("stride",), dtype, _column_attrs(name), "stride")
        for name, dtype in TABLE_COLUMNS.items()
    ),
    ArraySpec(
        "stride",
        ("stride",),
        np.int64,
        _index_attrs("stride index", "the stride's position in the store"),
        "stride",
    ),
    ArraySpec(
        "sample",
        ("sample",),
        np.int32,
        _index_attrs(
            "sample of the time-normalised stride",
            "sample of the 200 per stride, evenly spaced in gait_cycle_pct",
        ),
        "coord",
    ),
    ArraySpec(
        "gait_cycle_pct",
        ("sample",),
        np.float32,
        {
            "long_name": "gait cycle from heel strike to heel strike",
            "description": "percent of the stride, 0 at its first heel strike, 100 at the next",
            "units": "%",
        },
        "coord",
    ),
    ArraySpec(
        "joint",
        ("joint",),
        STRING,
        {"long_name": "joint", "description": "joint of kinematics and kinetics (SPEC.md order)"},
        "coord",
    ),
    ArraySpec(
        "plane",
        ("plane",),
        STRING,
        {"long_name": "plane", "description": "plane of motion of the joint angle or moment"},
        "coord",
    ),
    ArraySpec(
        "muscle",
        ("muscle",),
        STRING,
        {"long_name": "muscle", "description": "the 13 canonical muscles, in SPEC.md order"},
        "coord",
    ),
)
ARRAY_BY_NAME = {a.name: a for a in ARRAYS}
DATA_VARIABLES = (
    "emg",
    "emg_envelope",
    "kinematics",
    "kinetics",
    "emg_mask",
    "kinematics_mask",
    "kinetics_mask",
    "emg_scale",
    "stride_starts",
    "stride_ends",
)
# Non-dimension coordinates along ``stride`` (xarray's "coordinates" attribute lists them).
STRIDE_COORDINATES = tuple(TABLE_COLUMNS)


# The root attributes the builder writes as JSON text (see encode_root_attrs).
JSON_ROOT_ATTRS = ("joints", "planes", "muscles", "datasets")


def encode_root_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Root attributes as the store keeps them: the lists and mappings of
    :data:`JSON_ROOT_ATTRS` as JSON text, so that every attribute is a netCDF one
    (``Dataset.to_netcdf``); any other attribute must be a scalar."""
    encoded = {}
    for name, value in attrs.items():
        if name in JSON_ROOT_ATTRS:
            value = json.dumps(value)
        elif not isinstance(value, str | bool | int | float):
            raise TypeError(f"root attribute {name!r} is not a scalar (add it to JSON_ROOT_ATTRS)")
        encoded[name] = value
    return encoded


def decode_root_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The root attributes with the JSON ones (:data:`JSON_ROOT_ATTRS`) decoded; stores built
    before they were JSON text hold the values themselves, which pass as they are."""
    decoded = dict(attrs)
    for name in JSON_ROOT_ATTRS:
        if isinstance(decoded.get(name), str):
            decoded[name] = json.loads(decoded[name])
    return decoded


@dataclass(frozen=True)
class ChunkLayout:
    """Chunk and shard sizes; tests use small ones to exercise many regions."""

    strides_per_chunk: int = 256
    strides_per_shard: int = 2048
    emg_rows_per_chunk: int = 65_536
    emg_rows_per_shard: int = 1_048_576

    def __post_init__(self) -> None:
        if self.strides_per_shard % self.strides_per_chunk:
            raise ValueError("strides_per_shard must be a multiple of strides_per_chunk")
        if self.strides_per_chunk % 2:  # halved on alternate versions (see _geometry)
            raise ValueError("strides_per_chunk must be even")
        if self.emg_rows_per_shard % self.emg_rows_per_chunk:
            raise ValueError("emg_rows_per_shard must be a multiple of emg_rows_per_chunk")


def coordinate_values() -> dict[str, np.ndarray]:
    return {
        "sample": np.arange(SAMPLES_PER_STRIDE, dtype=np.int32),
        "gait_cycle_pct": np.linspace(0, 100, SAMPLES_PER_STRIDE, dtype=np.float32),
        "joint": np.array(JOINTS, dtype=object),
        "plane": np.array(PLANES, dtype=object),
        "muscle": np.array(MUSCLES, dtype=object),
    }


def create_template(
    group: zarr.Group,
    n_strides: int,
    n_emg_rows: int,
    layout: ChunkLayout,
    version: str = "v0001",
) -> None:
    """Create every array (metadata only) and write the small fixed coordinates, once.

    ``version`` picks the chunk-key encodings and, for the stride partition, the chunk size
    (see store/versions.py: consecutive versions never share chunk keys in the moving name).
    """
    fixed = coordinate_values()
    for spec in ARRAYS:
        shape, chunks, shards = _geometry(spec, n_strides, n_emg_rows, layout, version)
        attrs = dict(spec.attrs)
        if spec.name in DATA_VARIABLES and "stride" in spec.dims:
            attrs["coordinates"] = " ".join(STRIDE_COORDINATES)
        if spec.name in ("emg_envelope", "kinematics", "kinetics"):
            attrs["coordinates"] = " ".join((*STRIDE_COORDINATES, "gait_cycle_pct"))
        array = group.create_array(
            spec.name,
            shape=shape,
            chunks=chunks,
            shards=shards,
            dtype=spec.dtype,
            fill_value=_fill_value(spec.dtype),
            compressors=_compressors(spec.dtype),
            dimension_names=spec.dims,
            attributes=attrs,
            chunk_key_encoding=chunk_key_encoding(version, len(shape)),
        )
        if spec.name in fixed:
            array[...] = fixed[spec.name]


def _geometry(
    spec: ArraySpec, n_strides: int, n_emg_rows: int, layout: ChunkLayout, version: str
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...] | None]:
    """Shape, chunks and shards of ``spec`` in ``version``.

    Every array of the stride partition, 1-D columns included, has the same chunks and shards
    along ``stride`` (xarray's ``Dataset.chunks`` needs one chunking per dimension), and on the
    versions :func:`one_dim_chunk_halved` names all of them have half-size chunks in the same
    shards: a reader holding another version's metadata then reads a shard index of another
    length, and its checksum fails, instead of decoding another version's 1-D chunks.
    """
    trailing = {"sample": SAMPLES_PER_STRIDE, "joint": 3, "plane": 3, "muscle": _MUSCLE}
    if spec.partition == "coord":
        shape = tuple(trailing[d] for d in spec.dims)
        return shape, shape, None
    if spec.partition == "emg":
        length, chunk, shard = n_emg_rows, layout.emg_rows_per_chunk, layout.emg_rows_per_shard
    else:
        length, chunk, shard = n_strides, layout.strides_per_chunk, layout.strides_per_shard
        if one_dim_chunk_halved(version):
            chunk = _halved(chunk)
    rest = tuple(trailing[d] for d in spec.dims[1:])
    return (length, *rest), (chunk, *rest), (shard, *rest)


def _halved(chunk: int) -> int:
    """Half of ``chunk`` (ChunkLayout keeps it even), so it still divides the shard."""
    return chunk // 2


def _fill_value(dtype: Any) -> Any:
    if dtype == STRING:
        return ""
    if np.dtype(dtype).kind == "f":
        return np.nan
    return np.dtype(dtype).type(0)


def _compressors(dtype: Any) -> Any:
    if dtype == STRING:
        return "auto"
    itemsize = np.dtype(dtype).itemsize
    return (BloscCodec(cname="zstd", clevel=3, shuffle=BloscShuffle.shuffle, typesize=itemsize),)


def regions(length: int, size: int) -> list[slice]:
    """Consecutive [start, stop) regions of ``size`` covering ``length`` (the last may be short)."""
    return [slice(start, min(start + size, length)) for start in range(0, length, size)]


def expected_chunk_keys(group: zarr.Group) -> set[str]:
    """Store keys of every chunk (or shard) the arrays' grids define."""
    keys = set()
    for spec in ARRAYS:
        array = store_array(group, spec.name)
        grid_shape = array.shards or array.chunks
        counts = [-(-s // c) for s, c in zip(array.shape, grid_shape, strict=True)]
        for index in np.ndindex(*counts):
            keys.add(f"{spec.name}/{array.metadata.encode_chunk_key(index)}")
    return keys


def store_array(group: zarr.Group, name: str) -> zarr.Array:
    """The array ``name`` of a store group (StoreError when that is missing or a group)."""
    node = group.get(name)
    if not isinstance(node, zarr.Array):
        raise StoreError(f"{group.store_path}: has no array {name!r} (not a builder store?)")
    return node

"""The store's arrays: names, dims, dtypes, units, chunk and shard shapes, and write regions.

Every per-stride array shares one stride partition (``strides_per_shard``), and the ragged
``emg`` rows have their own (``emg_rows_per_shard``). A write task owns exactly one region of
one partition, so no two tasks ever write the same chunk or shard.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class ArraySpec:
    name: str
    dims: tuple[str, ...]
    dtype: Any
    attrs: dict[str, Any]
    partition: str  # "stride": chunked along strides; "emg": along EMG rows; "coord": fixed


_MUSCLE = len(MUSCLES)
_KIN_DIMS = ("stride", "sample", "joint", "plane")

ARRAYS: tuple[ArraySpec, ...] = (
    ArraySpec(
        "emg",
        ("emg_sample", "muscle"),
        np.float32,
        {
            "long_name": "processed EMG, all strides' rows concatenated",
            "units": "1 (divide-by-scale normalised; multiply by emg_scale for volts)",
            "sampling_rate_hz": 1000.0,
        },
        "emg",
    ),
    ArraySpec(
        "emg_envelope",
        ("stride", "sample", "muscle"),
        np.float32,
        {"long_name": "EMG linear envelope, time-normalised", "units": "1 (normalised)"},
        "stride",
    ),
    ArraySpec(
        "kinematics",
        _KIN_DIMS,
        np.float32,
        {"long_name": "joint angles", "units": "deg"},
        "stride",
    ),
    ArraySpec(
        "kinetics",
        _KIN_DIMS,
        np.float32,
        {"long_name": "internal net joint moments", "units": "N.m/kg"},
        "stride",
    ),
    ArraySpec(
        "emg_mask", ("stride", "muscle"), np.bool_, {"long_name": "EMG channel present"}, "stride"
    ),
    ArraySpec(
        "kinematics_mask",
        ("stride", "joint", "plane"),
        np.bool_,
        {"long_name": "kinematic component present"},
        "stride",
    ),
    ArraySpec(
        "kinetics_mask",
        ("stride", "joint", "plane"),
        np.bool_,
        {"long_name": "kinetic component present"},
        "stride",
    ),
    ArraySpec(
        "emg_scale",
        ("stride", "muscle"),
        np.float32,
        {
            "long_name": "EMG normalisation scale (median stride envelope peak of the subject)",
            "units": "V",
        },
        "stride",
    ),
    ArraySpec(
        "stride_starts",
        ("stride",),
        np.int64,
        {"long_name": "first row of the stride in emg"},
        "stride",
    ),
    ArraySpec(
        "stride_ends",
        ("stride",),
        np.int64,
        {"long_name": "row after the stride's last row in emg"},
        "stride",
    ),
    *(
        ArraySpec(name, ("stride",), dtype, {"long_name": f"stride table: {name}"}, "stride")
        for name, dtype in TABLE_COLUMNS.items()
    ),
    ArraySpec("stride", ("stride",), np.int64, {"long_name": "stride index"}, "stride"),
    ArraySpec(
        "sample",
        ("sample",),
        np.int32,
        {"long_name": "sample of the time-normalised stride"},
        "coord",
    ),
    ArraySpec(
        "gait_cycle_pct",
        ("sample",),
        np.float32,
        {"long_name": "gait cycle from heel strike to heel strike", "units": "%"},
        "coord",
    ),
    ArraySpec("joint", ("joint",), STRING, {}, "coord"),
    ArraySpec("plane", ("plane",), STRING, {}, "coord"),
    ArraySpec("muscle", ("muscle",), STRING, {}, "coord"),
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

    ``version`` picks the chunk-key encodings and 1-D chunk sizes (see store/versions.py:
    consecutive versions never share chunk keys in the moving name).
    """
    fixed = coordinate_values()
    for spec in ARRAYS:
        shape, chunks, shards = _geometry(spec, n_strides, n_emg_rows, layout)
        if len(shape) == 1 and spec.partition == "stride" and one_dim_chunk_halved(version):
            chunks = (_halved(chunks[0]),)
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
    spec: ArraySpec, n_strides: int, n_emg_rows: int, layout: ChunkLayout
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...] | None]:
    trailing = {"sample": SAMPLES_PER_STRIDE, "joint": 3, "plane": 3, "muscle": _MUSCLE}
    if spec.partition == "coord":
        shape = tuple(trailing[d] for d in spec.dims)
        return shape, shape, None
    if spec.partition == "emg":
        length, chunk, shard = n_emg_rows, layout.emg_rows_per_chunk, layout.emg_rows_per_shard
    else:
        length, chunk, shard = n_strides, layout.strides_per_chunk, layout.strides_per_shard
    rest = tuple(trailing[d] for d in spec.dims[1:])
    if not rest:  # 1-D columns are small: one chunk per region, no sharding needed
        return (length,), (shard,), None
    return (length, *rest), (chunk, *rest), (shard, *rest)


def _halved(chunk: int) -> int:
    """A chunk size that differs from ``chunk`` and divides it (regions stay whole chunks)."""
    return chunk // 2 if chunk > 1 and chunk % 2 == 0 else chunk


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

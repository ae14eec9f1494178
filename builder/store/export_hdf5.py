"""HDF5 export of selected strides with their signals, for MATLAB (``h5read``) and h5py.

MATLAB reads Zarr v2 only and the stride index (``stride_index.h5``) holds no signals, so this
writes one self-contained HDF5 file of the strides a pandas query over the stride table picks:

- ``/emg_envelope``, ``/kinematics``, ``/kinetics`` (stride, sample, ...), ``/emg_scale`` and the
  masks (``uint8`` 0/1: MATLAB reads HDF5 booleans, which are enums, as text);
- ``/emg``: the raw EMG rows of the selected strides, concatenated in stride order, with
  ``/stride_starts`` and ``/stride_ends`` as new 0-based, end-exclusive offsets into it;
- ``/stride_metadata/<column>``: the stride table (numbers as numbers, text as fixed-length,
  null-padded UTF-8), and ``/stride_index``: each stride's index in the store;
- ``/joint``, ``/plane``, ``/muscle``, ``/gait_cycle_pct``: the coordinate vectors.

Every dataset is chunked and gzip-compressed (with shuffle), the filters MATLAB's HDF5 library
has; each carries the store array's attributes (``units``, ``long_name``, ...) as scalar strings
and ``dims``/``matlab_dims``: HDF5 stores arrays row-major and MATLAB reads them column-major, so
an array of shape (stride, sample, joint, plane) arrives in MATLAB as (plane, joint, sample,
stride). The export streams: it reads one store chunk of strides (one span of EMG rows) at a
time and never holds the whole selection in memory.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import zarr

from builder._version import __version__
from builder.errors import BuilderError, StoreError, one_line
from builder.store.layout import store_array
from builder.store.location import StoreLocation
from builder.store.reader import group_stride_table

STRIDE_ARRAYS = (
    "emg_envelope",
    "kinematics",
    "kinetics",
    "emg_scale",
    "emg_mask",
    "kinematics_mask",
    "kinetics_mask",
)
COORDINATES = ("joint", "plane", "muscle", "gait_cycle_pct")
DIMS = {  # the store's dimension names, for stores written before dimension_names were kept
    "emg": ("emg_sample", "muscle"),
    "emg_envelope": ("stride", "sample", "muscle"),
    "kinematics": ("stride", "sample", "joint", "plane"),
    "kinetics": ("stride", "sample", "joint", "plane"),
    "emg_scale": ("stride", "muscle"),
    "emg_mask": ("stride", "muscle"),
    "kinematics_mask": ("stride", "joint", "plane"),
    "kinetics_mask": ("stride", "joint", "plane"),
    "joint": ("joint",),
    "plane": ("plane",),
    "muscle": ("muscle",),
    "gait_cycle_pct": ("sample",),
}
CHUNK_BYTES = 1 << 20  # about 1 MiB per HDF5 chunk
GZIP_LEVEL = 4
EMG_SPAN_ROWS = 1 << 18  # EMG rows read from the store at once (13.6 MB of float32 x 13)
# Store attributes that describe the store itself, not the exported arrays.
_SKIPPED_ARRAY_ATTRS = {"coordinates", "_ARRAY_DIMENSIONS"}
_SKIPPED_ROOT_ATTRS = {"build_report", "stride_index", "n_strides", "n_trials"}


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    n_strides: int
    n_emg_rows: int
    size_bytes: int
    store_url: str  # the pinned version the export read
    build_version: str | None


def export_hdf5(
    url: str,
    path: str | os.PathLike[str],
    query: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> ExportSummary:
    """Write the strides of the store at ``url`` that ``query`` (a pandas query over the stride
    table, e.g. ``"dataset == 'demo' and activity == 'walk'"``; all when None) selects to the
    local HDF5 file ``path``; the file appears only when complete."""
    location = StoreLocation(url, storage_options)
    pinned = location.pin()
    group = StoreLocation(pinned, storage_options).open_group()
    table = group_stride_table(group)
    selected = select_strides(table, query, url)
    target = Path(path)
    if target.is_dir():
        raise BuilderError(f"{target}: is a folder; give an HDF5 file name")
    if not target.parent.is_dir():
        raise BuilderError(f"{target}: the folder {target.parent} does not exist")
    scratch = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")  # h5py creates it
    try:
        with h5py.File(scratch, "w") as f:
            _root_attrs(f, group, url, pinned, query, len(selected))
            _write_stride_arrays(f, group, selected)
            n_rows = _write_emg(f, group, selected)
            _write_table(f, group, table.iloc[selected], selected)
            _write_coordinates(f, group)
            f.attrs["n_emg_rows"] = n_rows
        os.replace(scratch, target)
    except OSError as exc:
        raise BuilderError(f"{target}: cannot write HDF5 ({one_line(exc)})") from None
    finally:
        scratch.unlink(missing_ok=True)
    version = group.attrs.get("build_version")
    return ExportSummary(
        target,
        len(selected),
        n_rows,
        target.stat().st_size,
        pinned,
        version if isinstance(version, str) else None,
    )


def select_strides(table: pd.DataFrame, query: str | None, url: str) -> np.ndarray:
    """The store indices (ascending) of the strides ``query`` selects; BuilderError naming the
    expression and the problem for a bad query or an empty selection."""
    if query is None or not query.strip():
        selected = np.arange(len(table))
    else:
        try:
            keep = table.eval(query)
        except Exception as exc:  # pandas raises NameError, SyntaxError, TypeError, ...
            columns = ", ".join(table.columns)
            raise BuilderError(
                f"{url}: bad --query {query!r}: {type(exc).__name__}: {one_line(exc)} "
                f"(columns: {columns})"
            ) from None
        if not isinstance(keep, pd.Series) or keep.dtype != bool:
            raise BuilderError(
                f"{url}: bad --query {query!r}: it gives {getattr(keep, 'dtype', type(keep))} "
                "values, not true/false per stride"
            )
        selected = np.flatnonzero(keep.to_numpy())
    if len(selected) == 0:
        raise BuilderError(f"{url}: --query {query!r} selects no strides (of {len(table)})")
    return selected


# --- the file's parts ---------------------------------------------------------------------------
def _root_attrs(
    f: h5py.File, group: zarr.Group, url: str, pinned: str, query: str | None, n: int
) -> None:
    for name, value in group.attrs.items():
        if name not in _SKIPPED_ROOT_ATTRS:
            f.attrs[name] = _attr_value(value)
    f.attrs["store_url"] = url
    f.attrs["store_version_url"] = pinned
    f.attrs["store_n_strides"] = int(store_array(group, "stride_starts").shape[0])
    f.attrs["query"] = query or ""
    f.attrs["exported_by"] = f"gait-builder {__version__}"
    f.attrs["exported"] = datetime.now(UTC).isoformat(timespec="seconds")
    f.attrs["n_strides"] = n
    f.attrs["description"] = (
        "strides selected from a gait stride store: stride i of every stride array is "
        "stride_metadata row i and emg rows stride_starts(i):stride_ends(i) (0-based, end "
        "exclusive); every dataset's dims attribute gives its axes in h5py/C order and "
        "matlab_dims in the order MATLAB's h5read returns them (reversed)"
    )


def _write_stride_arrays(f: h5py.File, group: zarr.Group, selected: np.ndarray) -> None:
    for name in STRIDE_ARRAYS:
        source = store_array(group, name)
        is_mask = source.dtype == np.bool_
        out = _create(
            f,
            name,
            (len(selected), *source.shape[1:]),
            np.uint8 if is_mask else source.dtype,
            _dims(source, name),
            _array_attrs(source) | ({"values": "1 present, 0 absent"} if is_mask else {}),
        )
        written = 0
        for block in _by_store_chunk(selected, int(source.chunks[0])):
            data = np.asarray(source[int(block[0]) : int(block[-1]) + 1])[block - block[0]]
            out[written : written + len(block)] = data.astype(np.uint8) if is_mask else data
            written += len(block)


def _write_emg(f: h5py.File, group: zarr.Group, selected: np.ndarray) -> int:
    """``/emg`` (the selected strides' rows, concatenated) and its new stride offsets."""
    source = store_array(group, "emg")
    starts = np.asarray(store_array(group, "stride_starts")[:], np.int64)[selected]
    ends = np.asarray(store_array(group, "stride_ends")[:], np.int64)[selected]
    lengths = ends - starts
    new_ends = np.cumsum(lengths)
    new_starts = new_ends - lengths
    n_rows = int(new_ends[-1])
    out = _create(
        f,
        "emg",
        (n_rows, *source.shape[1:]),
        source.dtype,
        _dims(source, "emg"),
        _array_attrs(source),
    )
    for batch in _emg_spans(starts, ends):
        lo, hi = int(starts[batch].min()), int(ends[batch].max())
        span = np.asarray(source[lo:hi])
        rows = np.concatenate([span[starts[i] - lo : ends[i] - lo] for i in batch])
        first = int(new_starts[batch[0]])
        out[first : first + len(rows)] = rows
    offsets = {
        "stride_starts": (new_starts, "first row of the stride in emg (0-based)"),
        "stride_ends": (new_ends, "row after the stride's last row in emg (0-based)"),
    }
    for name, (values, long_name) in offsets.items():
        _create(f, name, values.shape, np.int64, ("stride",), {"long_name": long_name})[:] = values
    return n_rows


def _write_table(
    f: h5py.File, group: zarr.Group, table: pd.DataFrame, selected: np.ndarray
) -> None:
    meta = f.create_group("stride_metadata")
    meta.attrs["description"] = "the stride table: row i describes stride i"
    for name in table.columns:
        column = table[name].to_numpy()
        attrs = {"long_name": f"stride table: {name}"} | _array_attrs(store_array(group, name))
        if column.dtype.kind in "OUST":  # object, str, bytes, numpy StringDType
            _create_text(meta, name, column, ("stride",), attrs)
        else:
            _create(meta, name, column.shape, column.dtype, ("stride",), attrs)[:] = column
    index = _create(
        f,
        "stride_index",
        selected.shape,
        np.int64,
        ("stride",),
        {"long_name": "the stride's index in the store (0-based)"},
    )
    index[:] = selected


def _write_coordinates(f: h5py.File, group: zarr.Group) -> None:
    for name in COORDINATES:
        source = store_array(group, name)
        values = np.asarray(source[:])
        dims, attrs = _dims(source, name), _array_attrs(source)
        if values.dtype.kind in "OUST":
            _create_text(f, name, values, dims, attrs)
        else:
            _create(f, name, values.shape, values.dtype, dims, attrs)[:] = values


# --- helpers ------------------------------------------------------------------------------------
def _create(
    parent: h5py.Group,
    name: str,
    shape: tuple[int, ...],
    dtype: Any,
    dims: tuple[str, ...],
    attrs: dict[str, Any],
) -> h5py.Dataset:
    """A chunked, gzip+shuffle dataset of about ``CHUNK_BYTES`` per chunk along its first axis,
    labelled with its dims (C order and MATLAB's order) and ``attrs``."""
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
    rows = max(1, min(shape[0], CHUNK_BYTES // max(row_bytes, 1)))
    dataset = parent.create_dataset(
        name,
        shape=shape,
        dtype=dtype,
        chunks=(rows, *shape[1:]),
        maxshape=None if shape[0] else (None, *shape[1:]),  # HDF5 chunks cannot be empty
        compression="gzip",
        compression_opts=GZIP_LEVEL,
        shuffle=True,
    )
    for key, value in attrs.items():
        dataset.attrs[key] = _attr_value(value)
    dataset.attrs["dims"] = ",".join(dims)
    dataset.attrs["matlab_dims"] = ",".join(reversed(dims))
    for axis, label in enumerate(dims):
        dataset.dims[axis].label = label  # HDF5's DIMENSION_LABELS, shown by h5disp
    return dataset


def _create_text(
    parent: h5py.Group, name: str, values: np.ndarray, dims: tuple[str, ...], attrs: dict[str, Any]
) -> None:
    """Text as fixed-length, null-padded UTF-8: the string type every HDF5 reader takes."""
    encoded = [str(v).encode("utf-8") for v in values]
    length = max([1, *(len(b) for b in encoded)])
    dtype = h5py.string_dtype("utf-8", length)
    _create(parent, name, values.shape, dtype, dims, attrs)[:] = np.array(encoded, dtype)


def _by_store_chunk(selected: np.ndarray, chunk: int) -> Iterator[np.ndarray]:
    """The selected indices (ascending) grouped by the store chunk they fall in."""
    keys = selected // chunk
    bounds = np.flatnonzero(np.diff(keys)) + 1
    yield from np.split(selected, bounds)


def _emg_spans(starts: np.ndarray, ends: np.ndarray) -> Iterator[list[int]]:
    """Consecutive selected strides whose rows lie in one span of at most ``EMG_SPAN_ROWS``
    store rows (a stride longer than that is a span of its own)."""
    batch: list[int] = []
    lo = hi = 0
    for i, (start, end) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        if batch and max(hi, end) - min(lo, start) <= EMG_SPAN_ROWS:
            batch.append(i)
            lo, hi = min(lo, start), max(hi, end)
            continue
        if batch:
            yield batch
        batch, lo, hi = [i], start, end
    if batch:
        yield batch


def _dims(source: zarr.Array, name: str) -> tuple[str, ...]:
    names = getattr(source.metadata, "dimension_names", None)
    if names and all(isinstance(n, str) for n in names):
        return tuple(names)
    if name not in DIMS:
        raise StoreError(f"{source.store_path}: array {name!r} has no dimension names")
    return DIMS[name]


def _array_attrs(source: zarr.Array) -> dict[str, Any]:
    return {k: v for k, v in source.attrs.items() if k not in _SKIPPED_ARRAY_ATTRS}


def _attr_value(value: Any) -> Any:
    """A scalar HDF5 attribute: strings and numbers as they are, anything else as JSON text."""
    if isinstance(value, bool | np.bool_):
        return int(value)  # h5py writes booleans as an enum, which MATLAB reads as text
    if isinstance(value, str | int | float | np.number):
        return value
    return json.dumps(value)

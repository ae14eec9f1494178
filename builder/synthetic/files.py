"""Deterministic MATLAB files for the miniature generators (one writer for v5 and v7.3).

MATLAB, scipy and mat-io all write the creation time into the 116-byte description text that
opens a MAT file (in v7.3 files it sits in the HDF5 user block), so two generations of the same
content would differ in those bytes. Every generator writes its MAT files here, with a fixed
description (:func:`matlab_header` builds the one MATLAB's ``save`` writes), so that the same
content always gives the same bytes:

- :func:`write_mat`: a dict of variables as MAT v5 (scipy or mat-io) or v7.3 (mat-io);
- :func:`mat_v73`: a v7.3 file laid out object by object with h5py (:class:`MatV73`), where
  the layout itself (field order, ``#refs#``, empty arrays) is what a miniature reproduces;
- :func:`cell` and :func:`struct_array`: MATLAB cell and struct arrays as numpy object /
  record arrays, which both writers understand.
"""

from __future__ import annotations

import io
import string
import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import count, product
from pathlib import Path
from typing import Any, Final, Literal

import h5py
import matio
import numpy as np
import scipy.io

DESCRIPTION_BYTES: Final = 116  # the header's text; then subsystem offset, version, 'IM'
USERBLOCK_BYTES: Final = 512  # where a v7.3 file keeps its MAT header, before the HDF5 data
# Recorded values are quantised (an ADC's or a storage format's resolution): steps that are
# powers of two keep the doubles exact and let compressed files shrink.
LSB: Final = {"emg": 2.0**-23, "deg": 2.0**-16, "N.m": 2.0**-12, "m": 2.0**-20, "pct": 2.0**-12}


def matlab_header(created: str, *, version: str = "5.0", platform: str = "PCWIN64") -> str:
    """The description text MATLAB's ``save`` writes, with a fixed creation date, e.g.
    ``MATLAB 5.0 MAT-file, Platform: PCWIN64, Created on: Mon Jan 15 10:00:00 2018``
    (version ``7.3`` adds `` HDF5 schema 1.00 .``, as MATLAB does)."""
    text = f"MATLAB {version} MAT-file, Platform: {platform}, Created on: {created}"
    return f"{text} HDF5 schema 1.00 ." if version == "7.3" else text


# The description text mat-io writes itself (``MATLAB 5.0`` also in v7.3 files), with a fixed
# creation time and the h5py version of the environment that first wrote these miniatures.
MATIO_HEADER: Final = {
    "5": "MATLAB 5.0 MAT-file Platform. Created on: 2024-01-01 00:00:00 UTC by matio with scipy",
    "7.3": "MATLAB 5.0 MAT-file Platform. Created on: 2024-01-01 00:00:00 UTC by matio using "
    "h5py v3.16.0",
}


def _description(text: str) -> bytes:
    return text.encode("ascii")[:DESCRIPTION_BYTES].ljust(DESCRIPTION_BYTES, b" ")


def write_mat(
    path: Path,
    variables: dict[str, Any],
    *,
    header: str,
    version: Literal["5", "7.3"] = "5",
    writer: Literal["scipy", "mat-io"] = "scipy",
    compress: bool = True,
    oned_as: Literal["row", "column"] = "column",
) -> None:
    """Write ``variables`` to ``path`` (parent folders created) with the description text
    ``header`` in place of the creation time, so the same content gives the same bytes.

    ``writer="scipy"`` writes MAT v5 only (structs as dicts or :func:`struct_array` records,
    cells as :func:`cell` arrays); ``writer="mat-io"`` writes v5 or v7.3 (HDF5, where
    ``compress`` does not apply) and MATLAB tables from pandas DataFrames (MCOS objects, which
    scipy cannot write). Only the description text is replaced: mat-io's subsystem offset (where
    its tables live) is kept.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if writer == "scipy":
        if version != "5":
            raise ValueError("scipy writes MAT v5 only: use writer='mat-io' for v7.3")
        buffer = io.BytesIO()
        scipy.io.savemat(buffer, variables, format="5", do_compression=compress, oned_as=oned_as)
        data = bytearray(buffer.getvalue())
        data[:DESCRIPTION_BYTES] = _description(header)
        path.write_bytes(bytes(data))
        return
    matio.save_to_mat(
        str(path),
        variables,
        version="v7" if version == "5" else "v7.3",
        do_compression=compress,
        oned_as="col" if oned_as == "column" else "row",
    )
    with open(path, "r+b") as f:
        f.write(_description(header))


def quantise(values: np.ndarray, kind: str) -> np.ndarray:
    """``values`` rounded to the recording resolution :data:`LSB` ``[kind]`` (float64)."""
    return np.round(np.asarray(values, dtype=np.float64) / LSB[kind]) * LSB[kind]


def cell(items: Sequence[Any], shape: tuple[int, int] | None = None) -> np.ndarray:
    """A MATLAB cell array: a 1 × N object array of ``items`` (or ``shape``, filled row by
    row). Each item is stored as it is: numpy never stacks or broadcasts arrays, lists or
    strings into it (mat-io would write a list of str as one char matrix)."""
    out = np.empty(shape or (1, len(items)), dtype=object)
    if out.size != len(items):
        raise ValueError(f"{len(items)} items do not fill a {out.shape} cell array")
    for index, item in zip(np.ndindex(out.shape), items, strict=True):
        out[index] = item
    return out


def struct_array(records: list[dict[str, Any]]) -> np.ndarray:
    """A 1 × n MATLAB struct array (every record has the same fields, in the same order)."""
    names = list(records[0])
    out = np.empty((1, len(records)), dtype=[(name, object) for name in names])
    for i, record in enumerate(records):
        for name in names:
            out[0, i][name] = record[name]
    return out


# --- MATLAB v7.3 laid out by hand -----------------------------------------------------------


class MatV73:
    """Writes MATLAB v7.3 structures with h5py the way MATLAB lays them out: structs are groups
    with ``MATLAB_class`` and ``MATLAB_fields``; doubles are stored transposed (column-major);
    chars are uint16 with ``MATLAB_int_decode = 2``; cells are object references into
    ``#refs#``; empty arrays hold their dims with ``MATLAB_empty = 1``."""

    def __init__(self, h5: h5py.File) -> None:
        self.h5 = h5
        self._names = self._refnames()

    @staticmethod
    def _refnames() -> Iterator[str]:
        letters = string.ascii_lowercase + string.ascii_uppercase
        yield from letters
        for size in count(2):
            for combo in product(letters, repeat=size):
                yield "".join(combo)

    @staticmethod
    def _class(obj: h5py.HLObject, name: str) -> None:
        obj.attrs.create("MATLAB_class", np.bytes_(name))

    def struct(self, parent: h5py.Group, name: str, fields: list[str]) -> h5py.Group:
        """A scalar struct; ``fields`` in MATLAB's order (written to MATLAB_fields)."""
        group = parent.create_group(name)
        self._class(group, "struct")
        names = np.empty(len(fields), dtype=h5py.vlen_dtype(np.dtype("S1")))
        for i, field in enumerate(fields):
            names[i] = np.array([c.encode("ascii") for c in field], dtype="S1")
        group.attrs.create("MATLAB_fields", names)
        return group

    def double(self, parent: h5py.Group, name: str, matlab: np.ndarray) -> h5py.Dataset:
        """A double array given in MATLAB's (rows, columns) orientation."""
        matlab = np.atleast_2d(np.asarray(matlab, dtype=np.float64))
        if matlab.size == 0:
            dset = parent.create_dataset(name, data=np.array(matlab.shape, dtype=np.uint64))
            dset.attrs.create("MATLAB_empty", np.int32(1))
        else:
            dset = parent.create_dataset(name, data=matlab.T)
        self._class(dset, "double")
        return dset

    def char(self, parent: h5py.Group, name: str, text: str) -> h5py.Dataset:
        """A 1 × n char row (uint16 code units)."""
        codes = np.array([[ord(c) for c in text]], dtype=np.uint16)
        dset = parent.create_dataset(name, data=codes.T)
        self._class(dset, "char")
        dset.attrs.create("MATLAB_int_decode", np.int32(2))
        return dset

    def cell(self, parent: h5py.Group, name: str, rows: list[list[Any]]) -> h5py.Dataset:
        """A cell array from its MATLAB rows; items go to ``#refs#`` as object references."""
        refs_group = self.h5.require_group("#refs#")
        refs = np.empty((len(rows), len(rows[0])), dtype=h5py.ref_dtype)
        for r, row in enumerate(rows):
            for c, item in enumerate(row):
                refname = next(self._names)
                if isinstance(item, str):
                    target = self.char(refs_group, refname, item)
                else:
                    target = self.double(refs_group, refname, np.array([[item]]))
                target.attrs.create("H5PATH", np.bytes_(f"{parent.name}/{name}"))
                refs[r, c] = target.ref
        dset = parent.create_dataset(name, data=refs.T, dtype=h5py.ref_dtype)
        self._class(dset, "cell")
        return dset


@contextmanager
def mat_v73(path: Path, *, header: str) -> Iterator[MatV73]:
    """Open ``path`` as a new MATLAB v7.3 file to lay out with :class:`MatV73`; on closing,
    write MATLAB's 128-byte header (``header`` text, version 0x0200, 'IM') into the 512-byte
    user block that precedes the HDF5 data."""
    with h5py.File(path, "w", userblock_size=USERBLOCK_BYTES, libver="earliest") as h5:
        yield MatV73(h5)
    with open(path, "r+b") as f:
        f.write(_description(header) + struct.pack("<QH", 0, 0x0200) + b"IM")

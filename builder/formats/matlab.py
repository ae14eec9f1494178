"""MATLAB files as plain Python, whatever their version: v4–v7 (scipy-compatible), v7.3
(HDF5) and MATLAB ``table``/``string`` objects (MCOS), all through mat-io.

``load_mat`` returns structs as dicts, struct arrays and cell arrays as lists, char arrays as
str, numeric arrays squeezed (a 1×1 becomes a float) and tables as pandas DataFrames.
``field`` walks a dotted path with an error that names the file and the missing field.
:class:`CycleTable` reads one (points, channels, cycles) array of gait cycles with its names.

:class:`LazyMat` reads a v7.3 file part by part: the names inside a struct (HDF5 group names,
no data), or one struct's subtree, converted by mat-io's own v7.3 reader and simplified as
``load_mat`` does — so ``LazyMat(f).load("a/b")`` equals ``field(load_mat(f), "a.b")`` while
only that subtree's datasets are read. A multi-GB file is then read one subject or trial at a
time, locally or through an fsspec file object (HDF5 reads only the byte ranges it needs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO, Any, Self

import fsspec
import h5py
import matio
import numpy as np
import pandas as pd
from matio.v7.matreader7 import MatRead7, read_subsystem

from builder.errors import SourceError, one_line
from builder.formats.files import FileAccess


def load_mat(path: str, url: str | None = None, variables: Sequence[str] | None = None) -> dict:
    """Every variable of a MAT-file (or only ``variables``), simplified; ``url`` names the file
    in errors (defaults to ``path``)."""
    try:
        raw = matio.load_from_mat(path, variable_names=list(variables) if variables else None)
    except Exception as exc:  # mat-io raises many kinds for a damaged file
        raise SourceError(url or path, f"not a readable MATLAB file ({one_line(exc)})") from None
    return {name: simplify(value) for name, value in raw.items() if not name.startswith("__")}


class LazyMat:
    """A MATLAB v7.3 (HDF5) file opened for reading part by part (see the module docstring).

    ``source`` is a local path or a binary file object (e.g. ``FileAccess.open``); ``url``
    names the file in errors. A file that is not HDF5 (MAT v4-v7) is a SourceError: use
    :func:`load_mat` for those (:func:`is_mat_v73` tells them apart).
    """

    def __init__(self, source: str | IO[bytes], url: str) -> None:
        self.url = url
        self._owned: IO[bytes] | None = None
        try:
            self.h5 = h5py.File(source, "r")
        except OSError as error:
            raise SourceError(url, f"not a MATLAB v7.3 (HDF5) file ({one_line(error)})") from None
        self._reader: MatRead7 | None = None

    @classmethod
    def open(cls, files: FileAccess, url: str) -> LazyMat | None:
        """``url`` opened lazily if it is a v7.3 file, else None (MAT v4-v7: read it whole
        with :func:`load_mat`). A remote file is read through an fsspec file object, by byte
        ranges, never copied whole."""
        protocol, _ = fsspec.core.split_protocol(url)
        source: str | IO[bytes] = (
            files.local_path(url) if protocol in (None, "file", "local") else files.open(url)
        )
        if not is_mat_v73(source):
            if not isinstance(source, str):
                source.close()
            return None
        try:
            lazy = cls(source, url)
        except SourceError:
            if not isinstance(source, str):
                source.close()
            raise
        lazy._owned = None if isinstance(source, str) else source
        return lazy

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.h5.close()
        if self._owned is not None:
            self._owned.close()

    def node(self, path: str) -> h5py.Group | h5py.Dataset:
        """The HDF5 object at ``path`` ("a/b" or "a.b"); SourceError naming what is missing."""
        try:
            found = self.h5[path.replace(".", "/")]
        except KeyError:
            raise SourceError(self.url, f"no field {path.replace('/', '.')}") from None
        if not isinstance(found, h5py.Group | h5py.Dataset):
            raise SourceError(self.url, f"{path} is not a MATLAB value")
        return found

    def has(self, path: str) -> bool:
        return path.replace(".", "/") in self.h5

    def names(self, path: str = "") -> list[str]:
        """Field names of the scalar struct at ``path`` (the file's variables for ""), in
        the file's (alphabetical) order; no data is read."""
        group = self.h5 if not path else self.node(path)
        if not isinstance(group, h5py.Group):
            raise SourceError(self.url, f"{path} is not a struct")
        return [name for name in group if not name.startswith("#")]

    def is_struct(self, path: str) -> bool:
        """Whether ``path`` is a scalar struct (a group whose names are its fields)."""
        found = self.h5.get(path.replace(".", "/"))
        return isinstance(found, h5py.Group) and matlab_class(found) == "struct"

    def load(self, path: str) -> Any:
        """The value at ``path``, simplified as :func:`load_mat` simplifies it."""
        node = self.node(path)
        try:
            return simplify(self._matio().read_h5_data(node))
        except SourceError:
            raise
        except Exception as exc:  # mat-io raises many kinds for a damaged file
            raise SourceError(self.url, f"{path}: not readable ({one_line(exc)})") from None

    def _matio(self) -> MatRead7:
        if self._reader is None:  # MATLAB objects (tables, strings) need the subsystem
            self._reader = MatRead7(self.h5, read_subsystem(self.h5, "<", False, False))
        return self._reader


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_mat_v73(source: str | IO[bytes]) -> bool:
    """Whether a local path or file object holds a MATLAB v7.3 (HDF5) file: the HDF5
    signature at byte 512 (after MATLAB's user block), or at 0 (a bare HDF5 file)."""
    try:
        if isinstance(source, str):
            with open(source, "rb") as f:
                return _has_signature(f)
        position = source.tell()
        try:
            return _has_signature(source)
        finally:
            source.seek(position)
    except OSError:
        return False


def _has_signature(f: IO[bytes]) -> bool:
    for offset in (512, 0):
        f.seek(offset)
        if f.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE:
            return True
    return False


def matlab_class(node: h5py.HLObject) -> str:
    """The MATLAB class a v7.3 file records for an HDF5 object ("" where none)."""
    value = node.attrs.get("MATLAB_class", b"")
    return value.decode() if isinstance(value, bytes) else str(value)


def simplify(value: Any) -> Any:
    """mat-io's scipy-style arrays to dicts, lists, str, float and squeezed arrays."""
    if isinstance(value, pd.DataFrame | str | float | int):
        return value
    if not isinstance(value, np.ndarray):
        return value
    if value.dtype.names:  # a struct, or a struct array
        records = [
            {name: simplify(record[name]) for name in value.dtype.names}
            for record in value.ravel(order="F")
        ]
        return records[0] if value.size == 1 else records
    if value.dtype == object:  # a cell array
        return [simplify(item) for item in value.ravel(order="F")]
    if value.dtype.kind in "US":
        return "".join(np.asarray(value, dtype=str).ravel(order="F").tolist()).rstrip("\x00 ")
    squeezed = np.squeeze(value)
    return squeezed.item() if squeezed.ndim == 0 else squeezed


def field(container: Any, path: str, url: str, *, why: str = "") -> Any:
    """``container["a"]["b"]…`` for ``path = "a.b…"``; a missing step is a SourceError that
    names the file and the field (and ``why`` the adapter expected it)."""
    node = container
    walked: list[str] = []
    for step in path.split("."):
        walked.append(step)
        if not isinstance(node, dict) or step not in node:
            have = sorted(node)[:12] if isinstance(node, dict) else type(node).__name__
            expected = f" ({why})" if why else ""
            raise SourceError(url, f"no field {'.'.join(walked)}{expected}; found {have}")
        node = node[step]
    return node


class CycleTable:
    """One (points, channels, cycles) array of a struct with its channel names: the layout of
    gait-cycle-normalised exports (3dpredictsim's ``ExperimentalData.mat`` and many like it),
    ``<path>.<data_field>`` beside ``<path>.<names_field>``. A (points, channels) or (points,)
    array is one cycle; a (points, cycles) array with one name is one channel."""

    def __init__(
        self, root: Any, path: str, url: str, *, data_field: str, names_field: str
    ) -> None:
        node = field(root, path, url)
        self.path, self.url = path, url
        raw_names = field(node, names_field, url, why="channel names")
        self.names = [raw_names] if isinstance(raw_names, str) else [str(n) for n in raw_names]
        array = np.asarray(field(node, data_field, url), dtype=float)
        n = len(self.names)
        if array.ndim == 1:
            array = array[:, None, None]
        elif array.ndim == 2:
            array = array[:, :, None] if array.shape[1] == n else array[:, None, :]
        if array.ndim != 3 or array.shape[1] != n:
            raise SourceError(
                url,
                f"{path}.{data_field} has shape {array.shape}, expected (points, "
                f"{n} channels, cycles)",
            )
        self.data = array

    @property
    def n_points(self) -> int:
        return int(self.data.shape[0])

    @property
    def n_cycles(self) -> int:
        return int(self.data.shape[2])

    def column(self, name: str, why: str) -> np.ndarray:
        """(cycles, points) of channel ``name``; ``why`` says in the error what it is for."""
        if name not in self.names:
            raise SourceError(
                self.url, f"{self.path}: no channel {name!r} ({why}); found {self.names}"
            )
        return self.data[:, self.names.index(name), :].T

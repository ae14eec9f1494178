"""MATLAB files as plain Python, whatever their version: v4–v7 (scipy-compatible), v7.3
(HDF5) and MATLAB ``table``/``string`` objects (MCOS), all through mat-io.

``load_mat`` returns structs as dicts, struct arrays and cell arrays as lists, char arrays as
str, numeric arrays squeezed (a 1×1 becomes a float) and tables as pandas DataFrames.
``field`` walks a dotted path with an error that names the file and the missing field.
:class:`CycleTable` reads one (points, channels, cycles) array of gait cycles with its names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matio
import numpy as np
import pandas as pd

from builder.errors import SourceError, one_line


def load_mat(path: str, url: str | None = None, variables: Sequence[str] | None = None) -> dict:
    """Every variable of a MAT-file (or only ``variables``), simplified; ``url`` names the file
    in errors (defaults to ``path``)."""
    try:
        raw = matio.load_from_mat(path, variable_names=list(variables) if variables else None)
    except Exception as exc:  # mat-io raises many kinds for a damaged file
        raise SourceError(url or path, f"not a readable MATLAB file ({one_line(exc)})") from None
    return {name: simplify(value) for name, value in raw.items() if not name.startswith("__")}


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

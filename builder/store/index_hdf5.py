"""HDF5 export of the stride index, readable by h5py and MATLAB (``h5read``).

Layout: ``/stride_starts`` and ``/stride_ends`` (int64 rows into the store's ``emg``) and
``/stride_metadata/<column>`` for every stride-table column (numbers as numbers, text as
variable-length UTF-8 strings, which MATLAB reads as cell arrays of char).
"""

from __future__ import annotations

from collections.abc import Mapping

import h5py
import numpy as np


def write_stride_index(
    path: str, stride_starts: np.ndarray, stride_ends: np.ndarray, table: Mapping[str, np.ndarray]
) -> None:
    """Write the index to a local file (h5py cannot write to object-store file objects)."""
    with h5py.File(path, "w") as f:
        f.attrs["n_strides"] = len(stride_starts)
        f.attrs["description"] = (
            "gait stride index: stride i is rows stride_starts[i]:stride_ends[i] of the store's "
            "emg array (0-based, end exclusive); stride_metadata holds the stride table"
        )
        f.create_dataset("stride_starts", data=np.asarray(stride_starts, np.int64))
        f.create_dataset("stride_ends", data=np.asarray(stride_ends, np.int64))
        meta = f.create_group("stride_metadata")
        for name, column in table.items():
            column = np.asarray(column)
            if column.dtype.kind in "OUST":  # object, str, bytes, numpy StringDType
                data = np.array([str(v) for v in column], dtype=h5py.string_dtype("utf-8"))
                meta.create_dataset(name, data=data, dtype=h5py.string_dtype("utf-8"))
            else:
                meta.create_dataset(name, data=column)

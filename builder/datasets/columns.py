"""A table's named columns to the canonical arrays (the catalogue's ``EmgMap`` / ``JointMap``),
for the adapters of tabular sources (SIAT-LLMD, Hu/ENABL3S). Reading the table and its columns
is :mod:`builder.formats.tables`'s."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from builder.conventions import Side
from builder.datasets.mapping import joint_array, muscle_matrix
from builder.datasets.options import JointMap
from builder.formats.tables import numeric, require_columns


def emg_matrix(
    table: pd.DataFrame, names: Mapping[str, list[str]], url: str, why: str
) -> np.ndarray:
    """(T, 13) EMG from named columns (``EmgMap.names(side)``); several names are averaged."""
    require_columns(table, [n for ns in names.values() for n in ns], url, why)
    columns = {
        muscle: numeric(table, ns[0], url) if len(ns) == 1 else [numeric(table, n, url) for n in ns]
        for muscle, ns in names.items()
    }
    return muscle_matrix(columns, (len(table),))


def joint_matrix(
    table: pd.DataFrame, joints: JointMap, side: Side, url: str, why: str, factor: float = 1.0
) -> np.ndarray | None:
    """(T, 3, 3) from the named columns of ``side`` (``JointMap.columns``), canonical signs,
    times ``factor``; None when the side has no column."""
    columns = joints.component_columns(side)
    if not columns:
        return None
    require_columns(table, [str(c) for c in columns.values()], url, why)
    values = {key: numeric(table, str(col), url) for key, col in columns.items()}
    return joint_array(values, (len(table),), signs=joints.sign, factor=factor)

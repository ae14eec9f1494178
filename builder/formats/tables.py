"""Tabular source files, shared by the adapters: delimited text tables (CSV, TSV) and the
sibling files a trial's table points to.

- :func:`read_table`, :func:`require_columns`, :func:`numeric`: a delimited text table with one
  header row, its columns checked and read as numbers, every error a SourceError naming the
  file (SIAT-LLMD, Hu/ENABL3S, Moreira, Moghadam). Mapping named columns onto the canonical
  arrays is the datasets' (:mod:`builder.datasets.columns`).
- :func:`rate_from_times`: the sampling rate of a printed time column.
- :func:`sibling_url`, :func:`url_exists`: files next to the matched one, for local paths and
  fsspec URLs alike.
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Iterable
from typing import Any

import fsspec
import numpy as np
import pandas as pd

from builder.errors import SourceError, one_line
from builder.formats.files import FileAccess

# Relative spread of the sample interval a "uniform" time column may show (rounding of the
# printed times); a dropped or duplicated sample is a 100 % jump.
TIME_JITTER = 0.05


# --- sibling files ---------------------------------------------------------------------------


def sibling_url(url: str, relative: str) -> str:
    """The URL of ``relative`` (``../x/y``) next to ``url``, for local paths and fsspec URLs."""
    protocol, path = fsspec.core.split_protocol(url)
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(path), relative))
    return joined if protocol in (None, "file", "local") else f"{protocol}://{joined}"


def url_exists(files: FileAccess, url: str) -> bool:
    fs, path = files.filesystem(url)
    return bool(fs.exists(path))


# --- delimited text tables -------------------------------------------------------------------


def read_table(
    files: FileAccess, url: str, *, sep: str | None = ",", what: str = "CSV file", **kwargs: Any
) -> pd.DataFrame:
    """A delimited text table with a header row (``sep=None`` sniffs the delimiter, with
    ``engine="python"``), column names stripped; a SourceError names the file when it cannot
    be read."""
    try:
        with files.open(url, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise SourceError(url, f"{what} not found") from None
    try:
        table = pd.read_csv(io.BytesIO(raw), sep=sep, **kwargs)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise SourceError(url, f"not a readable {what} ({one_line(exc)})") from None
    table.columns = [str(c).strip() for c in table.columns]
    return table


def require_columns(table: pd.DataFrame, names: Iterable[str], url: str, why: str) -> None:
    """Every column of ``names`` is in ``table``; otherwise a SourceError names the missing
    ones and ``why`` they are expected."""
    missing = [n for n in dict.fromkeys(names) if n not in table.columns]
    if missing:
        have = ", ".join(list(table.columns)[:8])
        raise SourceError(url, f"missing column(s) {missing} ({why}); found {have}, …")


def numeric(table: pd.DataFrame, column: str, url: str) -> np.ndarray:
    """A column as float64; text that is not a number is an error naming the column."""
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(np.float64)
    bad = np.isnan(values) & table[column].notna().to_numpy()
    if bad.any():
        example = table[column][bad].iloc[0]
        raise SourceError(url, f"column {column!r} holds non-numeric values such as {example!r}")
    return values


def rate_from_times(times: np.ndarray, url: str, column: str) -> tuple[float, float]:
    """(rate Hz, first time s) of a time column that must be finite, increasing and uniform
    (each step within :data:`TIME_JITTER` of the median step); the rate is the least-squares
    slope, as printed times are rounded."""
    t = np.asarray(times, dtype=np.float64)
    if t.size < 3 or not np.isfinite(t).all():
        raise SourceError(url, f"time column {column!r} is too short or has gaps")
    steps = np.diff(t)
    dt = float(np.median(steps))
    if not dt > 0:
        raise SourceError(url, f"time column {column!r} does not increase")
    worst = float(np.max(np.abs(steps - dt)) / dt)
    if worst > TIME_JITTER:
        where = int(np.argmax(np.abs(steps - dt)))
        raise SourceError(
            url,
            f"time column {column!r} is not uniformly sampled: step {steps[where]:.6g} s at "
            f"row {where + 1} vs median {dt:.6g} s (dropped or repeated samples?)",
        )
    # The printed times are rounded: a least-squares line gives the rate to ~1e-6.
    slope = float(np.polyfit(np.arange(t.size, dtype=np.float64), t - t[0], 1)[0])
    return 1.0 / slope, float(t[0])

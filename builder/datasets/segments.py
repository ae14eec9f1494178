"""Cutting recordings: :func:`cycle_sides` for sources that ship strides already cut (one
:class:`SideRecording` per stride), :func:`crop` for a stretch of a continuous recording.

Each stride becomes a tiny recording that spans exactly its two heel strikes, so the ordinary
pipeline (EMG chain, time normalisation, masks) handles it with no special case:

- time-normalised arrays (P points from heel strike to the next, both included — the
  layout of 1001-, 150-, 101-point exports) get the rate ``(P - 1) / duration``;
- EMG sampled in real time within each stride keeps its own rate.

When the source gives durations but no times, strides are laid end to end from t = 0 and
the recording says ``times_absolute=False`` (they then carry no ``source_start_s``).

Continuous sources that make one recording per run of strides crop each stream to the run
plus a margin (:data:`CROP_MARGIN_S`), so that the EMG filters' edge effects stay outside it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from builder.conventions import ANGLE_UNITS, MOMENT_UNITS, Side
from builder.records import SideRecording, TimeSeries

# Margin kept around the strides when a recording is cropped (filter edge effects stay out).
CROP_MARGIN_S = 1.0


def crop(series: TimeSeries | None, start_s: float, end_s: float) -> TimeSeries | None:
    """The samples of ``series`` from the last one at or before ``start_s`` to the first one
    at or after ``end_s`` (clipped to the recording), with their start time; None stays None."""
    if series is None:
        return None
    first = max(0, int(np.floor((start_s - series.start_s) * series.rate_hz)))
    stop = min(series.n_samples, int(np.ceil((end_s - series.start_s) * series.rate_hz)) + 1)
    start = series.start_s + first / series.rate_hz
    return TimeSeries(series.data[first:stop], series.rate_hz, start, series.units)


def cycle_sides(
    side: Side,
    durations_s: np.ndarray,
    *,
    kinematics: np.ndarray | None = None,
    kinetics: np.ndarray | None = None,
    emg: np.ndarray | Sequence[np.ndarray] | None = None,
    emg_rate_hz: float | None = None,
    emg_units: str = "V",
    starts_s: np.ndarray | None = None,
) -> list[SideRecording]:
    """One recording per stride of one leg.

    - ``kinematics`` / ``kinetics``: (N, P, 3, 3) time-normalised, canonical units and signs;
    - ``emg``: (N, P, 13) time-normalised (``emg_rate_hz`` None), or N arrays (T_i, 13)
      sampled at ``emg_rate_hz`` from the stride's heel strike to its end, both included
      (T_i ≥ duration × rate + 1, else the stride is not covered and is dropped);
    - ``starts_s``: (N,) stride start times, or None (laid end to end).
    """
    durations = np.asarray(durations_s, dtype=np.float64)
    if durations.ndim != 1 or not (durations > 0).all():
        raise ValueError("stride durations must be a 1-D array of positive seconds")
    starts = (
        np.concatenate([[0.0], np.cumsum(durations)[:-1]])
        if starts_s is None
        else np.asarray(starts_s, dtype=np.float64)
    )
    recordings = []
    for i, (start, duration) in enumerate(zip(starts, durations, strict=True)):
        recordings.append(
            SideRecording(
                side=side,
                emg=_emg(emg, i, start, duration, emg_rate_hz, emg_units),
                kinematics=_normalised(kinematics, i, start, duration, ANGLE_UNITS),
                kinetics=_normalised(kinetics, i, start, duration, MOMENT_UNITS),
                heel_strikes_s=np.array([start, start + duration]),
            )
        )
    return recordings


def _normalised(
    curves: np.ndarray | None, i: int, start: float, duration: float, units: str
) -> TimeSeries | None:
    if curves is None:
        return None
    stride = np.asarray(curves[i], dtype=np.float64)
    return TimeSeries(stride, (stride.shape[0] - 1) / duration, start, units)


def _emg(
    emg: np.ndarray | Sequence[np.ndarray] | None,
    i: int,
    start: float,
    duration: float,
    rate_hz: float | None,
    units: str,
) -> TimeSeries | None:
    if emg is None:
        return None
    stride = np.asarray(emg[i], dtype=np.float64)
    rate = (stride.shape[0] - 1) / duration if rate_hz is None else rate_hz
    return TimeSeries(stride, rate, start, units)

"""Stride segmentation and time normalisation (pure, vectorised over strides and channels)."""

from __future__ import annotations

import numpy as np

from builder.records import TimeSeries

# A gait cycle shorter or longer than this is an event-detection artefact, not a stride.
MIN_STRIDE_S = 0.4
MAX_STRIDE_S = 4.0
# Interpolation weights at or below this are negligible: the neighbour they weigh may be NaN
# without spoiling the value (it is the other neighbour's to within 0.1 % of a sample step).
NEGLIGIBLE_WEIGHT = 1e-3


def snapped_position(times_s: np.ndarray, series: TimeSeries) -> np.ndarray:
    """Fractional sample index of ``times_s`` in ``series``, snapped to the sample where the
    time is within one float32 step of it: C3D and many other files store event times as
    float32, so 1.0833 s lands at frame 65.0000024 of a 60 Hz series instead of 65."""
    times_s = np.asarray(times_s, dtype=np.float64)
    position = (times_s - series.start_s) * series.rate_hz
    slack = np.spacing(np.abs(times_s).astype(np.float32)).astype(np.float64) * series.rate_hz
    nearest = np.round(position)
    return np.where(np.abs(position - nearest) <= np.maximum(slack, 1e-9), nearest, position)


def stride_windows(
    heel_strikes_s: np.ndarray, *, min_s: float = MIN_STRIDE_S, max_s: float = MAX_STRIDE_S
) -> tuple[np.ndarray, np.ndarray, int]:
    """Consecutive heel strikes of one leg as (starts, ends, number rejected for duration)."""
    hs = np.sort(np.asarray(heel_strikes_s, dtype=np.float64))
    starts, ends = hs[:-1], hs[1:]
    keep = ((ends - starts) >= min_s) & ((ends - starts) <= max_s)
    return starts[keep], ends[keep], int((~keep).sum())


def covered(series: TimeSeries, starts_s: np.ndarray, ends_s: np.ndarray) -> np.ndarray:
    """Which windows lie entirely within the series' recorded time range (half a sample slack)."""
    slack = 0.5 / series.rate_hz
    return (starts_s >= series.start_s - slack) & (ends_s <= series.end_s + slack)


def time_normalise(
    series: TimeSeries, starts_s: np.ndarray, ends_s: np.ndarray, n_samples: int
) -> np.ndarray:
    """Resample each window [start, end] onto ``n_samples`` equally spaced points (inclusive).

    Linear interpolation, evaluated for all strides at once: returns (N, n_samples, *channels).
    Points more than one sample outside the recording are NaN; within one sample of its ends
    they take the end value (a rational resampling to 1 kHz can end up to one output sample
    before the input did, and a stride ending there must keep its last point). A NaN sample
    only spoils its neighbours (unlike a global spline). For ~100 Hz kinematics of ~1 s strides
    the interpolation error is far below measurement noise (≈0.05° on a knee curve).
    """
    starts_s = np.asarray(starts_s, dtype=np.float64)
    ends_s = np.asarray(ends_s, dtype=np.float64)
    fraction = np.linspace(0.0, 1.0, n_samples)
    query_s = starts_s[:, None] + (ends_s - starts_s)[:, None] * fraction[None, :]
    position = snapped_position(query_s, series)  # fractional sample index
    last = series.n_samples - 1
    inside = (position >= -1.0) & (position <= last + 1.0)
    position = np.clip(position, 0.0, last)
    left = np.clip(np.floor(position).astype(np.int64), 0, max(last - 1, 0))
    weight = np.clip(position - left, 0.0, 1.0)
    data = np.asarray(series.data, dtype=np.float64)
    right = np.minimum(left + 1, last)
    extra = (1,) * (data.ndim - 1)
    w = weight.reshape(weight.shape + extra)
    before, after = data[left], data[right]
    with np.errstate(invalid="ignore"):
        out = before * (1.0 - w) + after * w
    # A NaN neighbour with a negligible weight must not spoil a value the other one gives.
    out = np.where((w <= NEGLIGIBLE_WEIGHT) & np.isnan(after), before, out)
    out = np.where((w >= 1.0 - NEGLIGIBLE_WEIGHT) & np.isnan(before), after, out)
    out[~inside] = np.nan
    return out


def sample_ranges(series: TimeSeries, starts_s: np.ndarray, ends_s: np.ndarray) -> np.ndarray:
    """(N, 2) half-open sample index ranges [first, stop) of each window in ``series``.

    A stride keeps the samples at times t with start <= t < end, so consecutive strides of one
    leg tile the signal without overlap.
    """
    first = np.ceil(snapped_position(starts_s, series))
    stop = np.ceil(snapped_position(ends_s, series))
    ranges = np.stack([first, stop], axis=1).astype(np.int64)
    return np.clip(ranges, 0, series.n_samples)

"""Stride segmentation and time normalisation (pure, vectorised over strides and channels)."""

from __future__ import annotations

import numpy as np

from builder.records import TimeSeries

# A gait cycle shorter or longer than this is an event-detection artefact, not a stride.
MIN_STRIDE_S = 0.4
MAX_STRIDE_S = 4.0


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
    position = (query_s - series.start_s) * series.rate_hz  # fractional sample index
    last = series.n_samples - 1
    inside = (position >= -1.0) & (position <= last + 1.0)
    position = np.clip(position, 0.0, last)
    left = np.clip(np.floor(position).astype(np.int64), 0, max(last - 1, 0))
    weight = np.clip(position - left, 0.0, 1.0)
    data = np.asarray(series.data, dtype=np.float64)
    right = np.minimum(left + 1, last)
    extra = (1,) * (data.ndim - 1)
    w = weight.reshape(weight.shape + extra)
    out = data[left] * (1.0 - w) + data[right] * w
    out[~inside] = np.nan
    return out


def sample_ranges(series: TimeSeries, starts_s: np.ndarray, ends_s: np.ndarray) -> np.ndarray:
    """(N, 2) half-open sample index ranges [first, stop) of each window in ``series``.

    A stride keeps the samples at times t with start <= t < end, so consecutive strides of one
    leg tile the signal without overlap.
    """
    first = np.ceil((np.asarray(starts_s) - series.start_s) * series.rate_hz - 1e-9)
    stop = np.ceil((np.asarray(ends_s) - series.start_s) * series.rate_hz - 1e-9)
    ranges = np.stack([first, stop], axis=1).astype(np.int64)
    return np.clip(ranges, 0, series.n_samples)

"""Stride segmentation and vectorised time normalisation against known curves."""

from __future__ import annotations

import numpy as np

from builder.processing.strides import sample_ranges, stride_windows, time_normalise
from builder.records import TimeSeries


def gait_like(phase: np.ndarray) -> np.ndarray:
    """A smooth knee-like curve over one cycle (degrees)."""
    return 30 - 25 * np.cos(2 * np.pi * phase) + 8 * np.sin(4 * np.pi * phase)


def test_known_curve_is_recovered_from_strides_of_different_durations() -> None:
    rate = 100.0
    durations = np.array([1.05, 0.97, 1.12, 1.01])
    heel_strikes = 0.37 + np.concatenate([[0], np.cumsum(durations)])
    t = np.arange(0, heel_strikes[-1] + 0.5, 1 / rate)
    stride = np.clip(np.searchsorted(heel_strikes, t, side="right") - 1, 0, len(durations) - 1)
    phase = (t - heel_strikes[stride]) / durations[stride]
    series = TimeSeries(gait_like(phase)[:, None], rate, 0.0, "deg")

    starts, ends, rejected = stride_windows(heel_strikes)
    curves = time_normalise(series, starts, ends, 200)

    assert rejected == 0 and curves.shape == (4, 200, 1)
    expected = gait_like(np.linspace(0, 1, 200))
    # Linear interpolation of a 100 Hz curve: error bound h²/8·max|f''| ≈ 0.03° here.
    np.testing.assert_allclose(
        curves[:, 1:-1, 0], np.broadcast_to(expected[1:-1], (4, 198)), atol=0.05
    )


def test_vectorised_equals_per_stride_interpolation_and_keeps_channels() -> None:
    rng = np.random.default_rng(3)
    series = TimeSeries(rng.normal(size=(1000, 3, 3)), 100.0, 2.5, "deg")
    starts = np.array([3.0, 4.1, 5.3])
    ends = np.array([4.1, 5.3, 6.4])
    curves = time_normalise(series, starts, ends, 50)
    times = series.times()
    for i, (a, b) in enumerate(zip(starts, ends, strict=True)):
        query = np.linspace(a, b, 50)
        np.testing.assert_allclose(
            curves[i, :, 2, 1], np.interp(query, times, series.data[:, 2, 1])
        )


def test_points_outside_the_recording_are_nan_not_extrapolated() -> None:
    series = TimeSeries(np.arange(101.0)[:, None], 100.0, 1.0, "deg")  # covers 1.0 … 2.0 s
    curves = time_normalise(series, np.array([0.5, 1.0]), np.array([1.5, 2.0]), 11)
    assert np.isnan(curves[0, :5]).all() and np.isfinite(curves[0, 5:]).all()
    assert np.isfinite(curves[1]).all()  # exactly the recorded span
    # Within one sample past an end the end value holds; further out is NaN.
    near = time_normalise(series, np.array([0.995]), np.array([2.009]), 2)
    assert near[0, :, 0].tolist() == [0.0, 100.0]
    far = time_normalise(series, np.array([0.985]), np.array([2.015]), 2)
    assert np.isnan(far).all()


def test_nan_spoils_only_neighbouring_points() -> None:
    data = np.linspace(0, 10, 1001)[:, None].copy()
    data[500] = np.nan
    curves = time_normalise(
        TimeSeries(data, 100.0, 0.0, "deg"), np.array([0.0]), np.array([10.0]), 201
    )
    assert np.isnan(curves[0, 100]).all() and np.isfinite(np.delete(curves[0], 100)).all()


def test_stride_windows_drop_implausible_cycles() -> None:
    starts, ends, rejected = stride_windows(np.array([5.0, 1.0, 2.1, 2.2, 3.3, 9.5]))
    # sorted: 1.0, 2.1, 2.2, 3.3, 5.0, 9.5 → cycles of 1.1, 0.1 (too short), 1.1, 1.7, 4.5 (too long)
    np.testing.assert_allclose(starts, [1.0, 2.2, 3.3])
    np.testing.assert_allclose(ends, [2.1, 3.3, 5.0])
    assert rejected == 2


def test_sample_ranges_tile_the_signal_without_overlap() -> None:
    series = TimeSeries(np.zeros((5000, 13)), 1000.0, 0.25, "V")
    starts = np.array([0.5, 1.5004, 2.6])
    ends = np.array([1.5004, 2.6, 3.71])
    ranges = sample_ranges(series, starts, ends)
    assert ranges[0, 1] == ranges[1, 0] and ranges[1, 1] == ranges[2, 0]
    np.testing.assert_array_equal(ranges[:, 1] - ranges[:, 0], [1001, 1099, 1110])
    assert ranges[0, 0] == 250  # first sample at or after the heel strike


def test_float32_event_times_next_to_a_nan_frame_keep_the_stride() -> None:
    """Issue 9, defect 7: C3D event times are float32. 65/60 s stored as float32 lands at
    frame 65.0000024; the frame after the stride's end is NaN (the foot left the plate, the
    moments stop). A weight of 2e-6 on that NaN must not cost the stride its moments."""
    rate = 60.0
    data = np.sin(np.linspace(0, 3, 130))[:, None]
    data[66:] = np.nan  # moments end at frame 65
    series = TimeSeries(data, rate, 0.0, "N.m/kg")
    start = float(np.float32(5 / rate))
    end = float(np.float32(65 / rate))
    assert (end * rate) % 1 > 0  # a hair past frame 65
    curve = time_normalise(series, np.array([start]), np.array([end]), 200)
    assert np.isfinite(curve).all()
    assert curve[0, -1, 0] == data[65, 0] and curve[0, 0, 0] == data[5, 0]  # snapped
    # The EMG rows of the stride start and stop at the frames too.
    emg = TimeSeries(np.zeros((2000, 1)), 1000.0, 0.0, "V")
    ((first, stop),) = sample_ranges(emg, np.array([float(np.float32(0.9))]), np.array([1.7]))
    assert (first, stop) == (900, 1700)
    # A real share of a NaN neighbour still spoils the value: nothing is made up.
    late = time_normalise(series, np.array([start]), np.array([65.3 / rate]), 200)
    assert np.isnan(late[0, -1, 0])


def test_negligible_weights_never_carry_a_nan() -> None:
    data = np.array([0.0, 1.0, 2.0, np.nan, 4.0])[:, None]
    series = TimeSeries(data, 1.0, 0.0, "deg")
    near = time_normalise(series, np.array([0.0]), np.array([2.0005]), 3)
    assert near[0, -1, 0] == 2.0
    assert np.isnan(time_normalise(series, np.array([0.0]), np.array([2.01]), 3)[0, -1, 0])

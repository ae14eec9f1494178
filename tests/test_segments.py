"""Pre-segmented, time-normalised strides go through the ordinary pipeline unchanged."""

from __future__ import annotations

import numpy as np
from scipy import signal

from builder.conventions import MUSCLES
from builder.datasets.mapping import joint_array, muscle_matrix
from builder.datasets.segments import cycle_sides
from builder.processing.emg import EmgProcessing
from builder.processing.trial import build_strides
from builder.records import TrialRecording


def test_time_normalised_strides_keep_their_curves_envelopes_and_masks() -> None:
    n, points = 3, 1001
    phase = np.linspace(0.0, 1.0, points)
    knee = np.stack([30 - 25 * np.cos(2 * np.pi * phase) * (1 + 0.1 * i) for i in range(n)])
    kinematics = joint_array({("knee", "flexion"): knee}, (n, points))
    soleus = np.stack([np.sin(np.pi * phase) ** 2 * 1e-4] * n)
    # A different shape: the quality gate leaves out a muscle that copies another.
    tibialis = np.stack([np.sin(np.pi * phase) ** 6 * 1e-4] * n)
    emg = muscle_matrix(
        {"soleus": soleus, "tibialis_anterior": [tibialis, 3 * tibialis]}, (n, points)
    )
    # Durations that are not whole milliseconds: the 1 kHz grid must still reach each end.
    durations = np.array([1.3077, 1.1111, 0.9999])
    sides = cycle_sides("L", durations, kinematics=kinematics, emg=emg)
    recording = TrialRecording(tuple(sides), "envelope", "pre_segmented", times_absolute=False)

    strides = build_strides(recording, EmgProcessing())
    batch, notes = strides.batch, strides.notes

    assert batch.n_strides == n and notes == []
    np.testing.assert_allclose(batch.duration_s, durations)
    at = np.linspace(0.0, 1.0, 200)
    expected = np.stack([30 - 25 * np.cos(2 * np.pi * at) * (1 + 0.1 * i) for i in range(n)])
    np.testing.assert_allclose(batch.kinematics[:, :, 1, 2], expected, atol=0.01)
    assert batch.kinematics_mask[:, 1, 2].all() and not batch.kinematics_mask[:, 0].any()
    recorded = np.isin(MUSCLES, ["soleus", "tibialis_anterior"])
    assert (batch.emg_mask == recorded).all()  # every stride keeps its EMG, whatever its length
    np.testing.assert_allclose(np.diff(batch.emg_offsets), np.ceil(durations * 1000 - 1e-9), atol=1)
    ta = MUSCLES.index("tibialis_anterior")
    np.testing.assert_allclose(batch.envelope_peak[:, ta], 2e-4, rtol=1e-3)  # mean of 1x and 3x
    assert np.isnan(batch.emg[:, ~recorded]).all()


def test_raw_emg_cut_per_stride_keeps_every_channel() -> None:
    """Raw 2 kHz EMG per cycle (as Angelidou ships it): resampling to 1 kHz may end a fraction
    of a millisecond early; the stride must keep its EMG anyway."""
    rng = np.random.default_rng(0)
    lengths = (2201, 2202, 2203)
    band = signal.butter(4, (20, 450), "bandpass", fs=2000.0, output="sos")  # sEMG's band
    emg = [
        muscle_matrix({"soleus": signal.sosfilt(band, rng.normal(0, 1e-4, n))}, (n,))
        for n in lengths
    ]
    durations = np.array([(n - 1) / 2000 for n in lengths])
    sides = cycle_sides("R", durations, emg=emg, emg_rate_hz=2000.0)
    batch = build_strides(
        TrialRecording(tuple(sides), "raw", "pre_segmented"), EmgProcessing()
    ).batch
    assert batch.n_strides == 3
    assert batch.emg_mask[:, MUSCLES.index("soleus")].all()


def test_each_stride_records_the_detectors_of_its_two_heel_strikes() -> None:
    from builder.records import SideRecording, TimeSeries

    rng = np.random.default_rng(2)
    t = np.arange(0, 6.0, 0.01)
    knee = 30 - 25 * np.cos(2 * np.pi * t)
    kinematics = joint_array({("knee", "flexion"): knee}, (t.size,))
    side = SideRecording(
        "L",
        None,
        TimeSeries(kinematics + rng.normal(0, 0.01, kinematics.shape), 100.0, 0.0, "deg"),
        None,
        heel_strikes_s=np.array([1.0, 3.0, 2.0, 4.0]),  # unsorted, as merged detectors give
        heel_strike_sources=("force_plate", "kinematics", "force_plate", "force_plate"),
    )
    batch = build_strides(
        TrialRecording((side,), "raw", "force_plate+kinematics"), EmgProcessing()
    ).batch
    assert batch.start_s.tolist() == [1.0, 2.0, 3.0]
    assert batch.event_source.tolist() == [
        "force_plate",
        "force_plate+kinematics",
        "force_plate+kinematics",
    ]
    without = SideRecording("L", None, side.kinematics, None, heel_strikes_s=np.array([1.0, 2.0]))
    batch = build_strides(TrialRecording((without,), "raw", "events"), EmgProcessing()).batch
    assert batch.event_source.tolist() == ["events"]

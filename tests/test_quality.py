"""The quality gate (builder.processing.quality): a clean trial passes untouched, and every
check trips on the defect it is for, leaving out only the components and strides concerned."""

from __future__ import annotations

import dataclasses
from functools import cache

import numpy as np
import pytest
from scipy import signal

from builder.conventions import JOINTS, MUSCLES, PLANES
from builder.processing import quality
from builder.processing.emg import EmgProcessing, linear_envelope
from builder.processing.trial import TrialStrides, build_strides
from builder.records import SideRecording, TimeSeries, TrialRecording
from builder.synthetic import gait_model as gm

_KNEE, _HIP, _ANKLE = JOINTS.index("knee"), JOINTS.index("hip"), JOINTS.index("ankle")
_FLEX, _ADD = PLANES.index("flexion"), PLANES.index("adduction")
GASTROCNEMIUS = MUSCLES.index("gastrocnemius_medialis")
SOLEUS = MUSCLES.index("soleus")
TIBIALIS = MUSCLES.index("tibialis_anterior")


@cache
def simulated() -> gm.SimulatedTrial:
    subject = gm.SubjectParams.generate("S01", 1.75, 70.0, seed=1)
    return gm.simulate_trial(
        subject=subject, activity="walk", speed_mps=1.2, incline_deg=0.0, n_strides=6, seed=3
    )


def recording(emg_kind: str = "raw") -> TrialRecording:
    """A continuous walking trial (6 strides per leg): raw 2 kHz EMG of 10 muscles, 100 Hz
    angles and moments, stored events."""
    sim = simulated()
    sides = []
    for side in "LR":
        emg = np.full((sim.n_analog, len(MUSCLES)), np.nan)
        emg[:, [MUSCLES.index(m) for m in sim.muscles]] = sim.emg[side]
        sides.append(
            SideRecording(
                side,  # type: ignore[arg-type]
                TimeSeries(emg, sim.analog_rate_hz, sim.start_s, "V"),
                TimeSeries(sim.kinematics[side].copy(), sim.point_rate_hz, sim.start_s, "deg"),
                TimeSeries(sim.kinetics[side].copy(), sim.point_rate_hz, sim.start_s, "N.m/kg"),
                heel_strikes_s=sim.heel_strikes[side],
            )
        )
    return TrialRecording(tuple(sides), emg_kind, "events")  # type: ignore[arg-type]


def changed(rec: TrialRecording, side: str, **series: np.ndarray) -> TrialRecording:
    """``rec`` with new data for some of ``side``'s series (emg=, kinematics=, kinetics=)."""
    sides = []
    for s in rec.sides:
        if s.side == side:
            s = dataclasses.replace(
                s,
                **{
                    name: dataclasses.replace(getattr(s, name), data=data)
                    for name, data in series.items()
                },
            )
        sides.append(s)
    return dataclasses.replace(rec, sides=tuple(sides))


def side_of(rec: TrialRecording, side: str) -> SideRecording:
    return next(s for s in rec.sides if s.side == side)


def build(rec: TrialRecording, activity: str = "walk", **settings) -> TrialStrides:
    return build_strides(rec, EmgProcessing(**settings), activity=activity)


@cache
def clean() -> TrialStrides:
    return build(recording())


def stride_samples(series: TimeSeries, batch, index: int, margin: int = 3) -> np.ndarray:
    """Sample indices of ``series`` well inside stride ``index``."""
    t = series.times()
    start, end = batch.start_s[index], batch.start_s[index] + batch.duration_s[index]
    inside = np.flatnonzero((t > start) & (t < end))
    return inside[margin:-margin]


def unchanged_except(result: TrialStrides, name: str, where: tuple) -> None:
    """Every mask of ``result`` equals the clean trial's, except ``name`` at ``where``."""
    for mask in ("emg_mask", "kinematics_mask", "kinetics_mask"):
        got, expected = getattr(result.batch, mask).copy(), getattr(clean().batch, mask).copy()
        if mask == name:
            assert not got[where].any() and expected[where].all()
            got[where] = expected[where]
        np.testing.assert_array_equal(got, expected, err_msg=mask)


def test_a_clean_trial_passes_untouched() -> None:
    result = clean()
    assert result.batch.n_strides == 12 and result.quality == {}
    assert not [n for n in result.notes if "quality gate" in n]
    assert result.batch.kinematics_mask.all() and result.batch.kinetics_mask.all()
    recorded = np.isin(MUSCLES, simulated().muscles)
    assert (result.batch.emg_mask == recorded).all()


def test_range_leaves_out_an_angle_beyond_the_joint(capsys) -> None:
    rec = recording()
    left = side_of(rec, "L")
    batch = clean().batch
    stride = int(np.flatnonzero(batch.side == "L")[2])
    angles = left.kinematics.data.copy()
    angles[stride_samples(left.kinematics, batch, stride)[:2], _KNEE, _FLEX] = 200.0  # degrees
    result = build(changed(rec, "L", kinematics=angles))
    unchanged_except(result, "kinematics_mask", (stride, _KNEE, _FLEX))
    assert result.quality == {"range": {"kinematics": 1}}
    assert np.isnan(result.batch.kinematics[stride, :, _KNEE, _FLEX]).all()
    (note,) = [n for n in result.notes if "quality gate" in n]
    assert "range: L knee flexion angle left out of 1 of 6" in note and "-30..170" in note


def test_range_leaves_out_moments_in_the_wrong_unit() -> None:
    rec = recording()
    moments = side_of(rec, "R").kinetics.data * 1000.0  # N·mm/kg stored as N·m/kg
    result = build(changed(rec, "R", kinetics=moments))
    right = result.batch.side == "R"
    # Every sagittal and frontal moment is far beyond; small transverse ones may stay inside.
    assert not result.batch.kinetics_mask[right][:, :, [_ADD, _FLEX]].any()
    assert result.batch.kinetics_mask[~right].all()
    assert result.quality["range"]["kinetics"] >= 6 * 6


def test_constant_run_of_five_exact_zeros_trips_and_four_do_not() -> None:
    rec = recording()
    left = side_of(rec, "L")
    batch = clean().batch
    stride = int(np.flatnonzero(batch.side == "L")[3])
    inside = stride_samples(left.kinematics, batch, stride)
    for run, tripped in ((4, False), (5, True)):
        angles = left.kinematics.data.copy()
        angles[inside[10 : 10 + run], _HIP, _FLEX] = 0.0
        result = build(changed(rec, "L", kinematics=angles))
        if tripped:
            unchanged_except(result, "kinematics_mask", (stride, _HIP, _FLEX))
            assert result.quality == {"constant_run": {"kinematics": 1}}
            assert any("5 samples of exact zeros" in n for n in result.notes), result.notes
        else:
            assert result.quality == {}


def test_constant_run_of_a_frozen_emg_value() -> None:
    rec = recording()
    right = side_of(rec, "R")
    batch = clean().batch
    stride = int(np.flatnonzero(batch.side == "R")[1])
    emg = right.emg.data.copy()
    inside = stride_samples(right.emg, batch, stride, margin=100)
    emg[inside[:40], TIBIALIS] = emg[inside[0], TIBIALIS]  # the last value held for 20 ms
    result = build(changed(rec, "R", emg=emg))
    unchanged_except(result, "emg_mask", (stride, TIBIALIS))
    assert result.quality == {"constant_run": {"emg": 1}}
    assert np.isnan(result.batch.emg_envelope[stride, :, TIBIALIS]).all()
    rows = slice(result.batch.emg_offsets[stride], result.batch.emg_offsets[stride + 1])
    assert np.isnan(result.batch.emg[rows, TIBIALIS]).all()


def test_constant_runs_a_quantisation_explains_are_not_defects() -> None:
    # A slow ramp stored with one decimal: each value repeats for 10 samples, a step apart.
    quantised = np.round(np.linspace(0.0, 1.0, 101), 1)
    assert quantised.tolist().count(0.5) >= 5
    assert quality.constant_runs(quantised) == []
    # The same run between values two steps away is a frozen value.
    frozen = np.array([0.0, 0.1, 0.3, 0.5, 0.5, 0.5, 0.5, 0.5, 0.9, 1.0])
    assert quality.constant_runs(frozen) == [(3, 7)]
    # A smooth signal resampled to a finer grid stretches a quantised extremum into a run it
    # enters and leaves at its own pace (Moreira's 1001-point strides); noise-like raw EMG
    # does not move so, and a dropout leaves with a jump.
    resampled = np.array([0.1, 0.3, 0.5, 0.7, 0.8, 0.8, 0.8, 0.8, 0.8, 0.79, 0.78, 0.77])
    assert quality.constant_runs(resampled) == []
    assert quality.constant_runs(resampled, smooth=False) == [(4, 8)]
    dropout = np.array([0.5, 0.6, 0.7, 0.0, 0.0, 0.0, 0.0, 0.0, 0.7, 0.6, 0.5])
    assert quality.constant_runs(dropout) == [(3, 7)]
    # An envelope clipped at 0 where its low-pass undershoots rests on its floor.
    envelope = np.concatenate(
        [np.linspace(1.0, 0.008, 40), np.zeros(8), 0.006 + 1e-4 * np.arange(40)]
    )
    assert quality.constant_runs(envelope, smooth=False) == [(40, 47)]
    assert quality.constant_runs(envelope, smooth=False, floor_clipped=True) == []
    assert quality.constant_runs(np.array([0.0, 0.0, 0.0, 0.0, 1.0])) == []  # 4 < 5


def test_flat_emg_is_left_out() -> None:
    rec = recording()
    left = side_of(rec, "L")
    emg = left.emg.data.copy()
    emg[:, SOLEUS] *= 1e-12  # nanovolt noise: nothing to normalise
    result = build(changed(rec, "L", emg=emg))
    on_left = result.batch.side == "L"
    assert not result.batch.emg_mask[on_left, SOLEUS].any()
    assert result.quality == {"flat": {"emg": int(on_left.sum())}}


def test_one_channel_for_both_legs_is_a_duplicate() -> None:
    """Issue 9, defect 1: the right leg's stride carries the left gastrocnemius."""
    rec = recording()
    emg = side_of(rec, "R").emg.data.copy()
    emg[:, GASTROCNEMIUS] = side_of(rec, "L").emg.data[:, GASTROCNEMIUS]
    result = build(changed(rec, "R", emg=emg))
    assert not result.batch.emg_mask[:, GASTROCNEMIUS].any()  # both copies, both sides
    assert result.quality == {"duplicate": {"emg": 12}}
    notes = [n for n in result.notes if "duplicate" in n]
    assert any(
        "R gastrocnemius_medialis" in n and "L gastrocnemius_medialis (bit" in n for n in notes
    )
    others = np.ones(len(MUSCLES), bool)
    others[GASTROCNEMIUS] = False
    np.testing.assert_array_equal(
        result.batch.emg_mask[:, others], clean().batch.emg_mask[:, others]
    )


def test_two_muscle_slots_with_one_signal_and_a_copied_angle() -> None:
    rec = recording()
    left = side_of(rec, "L")
    emg = left.emg.data.copy()
    emg[:, SOLEUS] = -2.0 * emg[:, TIBIALIS]  # a scaled, inverted copy still is one signal
    angles = side_of(rec, "R").kinematics.data.copy()
    angles[:, _HIP, _FLEX] = left.kinematics.data[:, _HIP, _FLEX]
    result = build(changed(changed(rec, "L", emg=emg), "R", kinematics=angles))
    on_left = result.batch.side == "L"
    assert not result.batch.emg_mask[on_left][:, [SOLEUS, TIBIALIS]].any()
    assert result.batch.emg_mask[~on_left][:, [SOLEUS, TIBIALIS]].all()
    assert not result.batch.kinematics_mask[:, _HIP, _FLEX].any()
    assert result.quality == {"duplicate": {"emg": 12, "kinematics": 12}}


def test_muscles_the_catalogue_feeds_from_one_channel_are_no_duplicates() -> None:
    """C3D ``emg.shared``: one electrode over both gastrocnemius heads, declared."""
    rec = recording()
    emg = side_of(rec, "L").emg.data.copy()
    lateral = MUSCLES.index("gastrocnemius_lateralis")
    emg[:, lateral] = emg[:, GASTROCNEMIUS]
    copied = changed(rec, "L", emg=emg)
    assert build(copied).quality == {"duplicate": {"emg": 12}}
    group = frozenset({"gastrocnemius_medialis", "gastrocnemius_lateralis"})
    declared = build(dataclasses.replace(copied, shared_emg=(group,)))
    assert declared.quality == {}


def _rectified(x: np.ndarray) -> np.ndarray:
    return np.abs(x)


def test_raw_emg_that_is_rectified_or_an_envelope_is_left_out() -> None:
    rec = recording()
    left = side_of(rec, "L")
    emg = left.emg.data.copy()
    emg[:, TIBIALIS] = _rectified(emg[:, TIBIALIS])
    low_pass = signal.butter(4, 6.0, fs=left.emg.rate_hz, output="sos")
    emg[:, SOLEUS] = signal.sosfiltfilt(low_pass, np.abs(emg[:, SOLEUS])) + 1e-6
    result = build(changed(rec, "L", emg=emg))
    on_left = result.batch.side == "L"
    assert not result.batch.emg_mask[on_left][:, [TIBIALIS, SOLEUS]].any()
    assert result.quality == {"emg_kind": {"emg": 12}}
    notes = " ".join(result.notes)
    assert "L tibialis_anterior" in notes and "declared raw but one-sided" in notes
    assert "L soleus" in notes


def test_emg_that_cannot_be_processed_costs_only_the_emg() -> None:
    """Issue 9, defect 12: EMG that cannot be processed as raw is absent, the trial stays."""
    rec = recording()
    sides = []
    for s in rec.sides:
        decimated = np.abs(s.emg.data[::5])  # 400 Hz, already rectified
        sides.append(dataclasses.replace(s, emg=TimeSeries(decimated, 400.0, s.emg.start_s, "V")))
    result = build(dataclasses.replace(rec, sides=tuple(sides)))
    assert result.batch.n_strides == 12 and not result.batch.emg_mask.any()
    assert result.batch.kinematics_mask.all() and result.batch.kinetics_mask.all()
    assert result.quality == {"emg_processing": {"emg": 12 * len(simulated().muscles)}}
    assert any(
        "EMG could not be processed (no usable EMG band at 400 Hz" in n for n in result.notes
    )
    # At 1 kHz the chain runs, and the gate sees that the signal is rectified.
    sides = []
    for s in rec.sides:
        decimated = np.abs(s.emg.data[::2])
        sides.append(dataclasses.replace(s, emg=TimeSeries(decimated, 1000.0, s.emg.start_s, "V")))
    result = build(dataclasses.replace(rec, sides=tuple(sides)))
    assert not result.batch.emg_mask.any() and result.batch.kinematics_mask.all()
    assert result.quality == {"emg_kind": {"emg": 12 * len(simulated().muscles)}}


def test_an_envelope_source_that_ships_raw_emg_is_left_out() -> None:
    rec = recording(emg_kind="envelope")
    result = build(rec)
    assert not result.batch.emg_mask.any()
    assert any("declared envelope but" in n and "not an envelope" in n for n in result.notes)
    # Its real envelopes pass.
    sides = []
    for s in rec.sides:
        envelope = np.full_like(s.emg.data, np.nan)
        recorded = np.isfinite(s.emg.data).all(axis=0)
        envelope[:, recorded] = linear_envelope(np.abs(s.emg.data[:, recorded]), 2000.0, 6.0, 4)
        sides.append(dataclasses.replace(s, emg=dataclasses.replace(s.emg, data=envelope)))
    result = build(dataclasses.replace(rec, sides=tuple(sides)))
    assert result.quality == {}
    assert result.batch.emg_mask.sum() == 12 * len(simulated().muscles)


def test_emg_kind_figures_separate_raw_rectified_and_envelopes() -> None:
    rng = np.random.default_rng(1)
    band = signal.butter(4, (20, 450), "bandpass", fs=2000.0, output="sos")
    raw = signal.sosfilt(band, rng.normal(size=20000)) * (1 + np.sin(np.linspace(0, 30, 20000)))
    raw_with_offset = raw + 5.0  # an ADC offset does not make a signal one-sided
    envelope = linear_envelope(np.abs(raw)[:, None], 2000.0, 6.0, 4)[:, 0]
    assert quality.emg_kind_problem(raw, 2000.0, "raw") is None
    assert quality.emg_kind_problem(raw_with_offset, 2000.0, "raw") is None
    assert "one-sided" in str(quality.emg_kind_problem(np.abs(raw), 2000.0, "raw"))
    assert quality.emg_kind_problem(envelope, 2000.0, "raw") is not None
    assert quality.emg_kind_problem(envelope, 2000.0, "envelope") is None
    assert "not an envelope" in str(quality.emg_kind_problem(raw, 2000.0, "envelope"))
    assert "not an envelope" in str(quality.emg_kind_problem(np.abs(raw), 2000.0, "envelope"))
    assert "too slow" in str(quality.emg_kind_problem(raw[::50], 40.0, "raw"))


def test_emg_dominated_by_hum_after_the_notch_is_left_out() -> None:
    rec = recording()
    left = side_of(rec, "L")
    t = left.emg.times()
    emg = left.emg.data.copy()
    emg[:, TIBIALIS] += 5e-3 * np.sin(2 * np.pi * 50.0 * t)  # 10× the muscle's amplitude
    hummed = changed(rec, "L", emg=emg)
    kept = build(hummed, mains_hz=50.0)  # the notch removes it
    assert kept.quality == {}
    result = build(hummed, mains_hz=50.0, notch="never")  # e.g. a source whose notch is off
    on_left = result.batch.side == "L"
    assert not result.batch.emg_mask[on_left, TIBIALIS].any()
    assert result.quality == {"mains_hum": {"emg": 6}}
    assert any("50 Hz mains hum after the notch" in n for n in result.notes)
    assert (
        quality.hum_shares(np.sin(2 * np.pi * 50 * np.arange(4000) / 1000)[None], 1000.0, 50.0)[0]
        > 0.99
    )


def test_a_mirrored_side_fails_the_left_right_sign_check() -> None:
    rec = recording()
    angles = side_of(rec, "R").kinematics.data.copy()
    angles[:, _HIP, _ADD] *= -1  # the right hip's adduction sign rule is wrong
    result = build(changed(rec, "R", kinematics=angles))
    assert not result.batch.kinematics_mask[:, _HIP, _ADD].any()
    assert result.quality == {"lr_sign": {"kinematics": 12}}
    assert any("mirror images" in n for n in result.notes)


def test_kinetics_outside_force_plate_windows_are_left_out() -> None:
    rec = recording()
    batch = clean().batch
    right = np.flatnonzero(batch.side == "R")
    # One plate under the right foot's third stride.
    on = batch.start_s[right[2]]
    sides = tuple(
        dataclasses.replace(s, kinetics_valid_s=np.array([[on + 0.01, on + 0.6]]))
        if s.side == "R"
        else s
        for s in rec.sides
    )
    result = build(dataclasses.replace(rec, sides=sides))
    mask = result.batch.kinetics_mask
    assert mask[right[2]].all() and not mask[np.delete(right, 2)].any()
    assert mask[batch.side == "L"].all()
    assert result.quality == {"no_contact": {"kinetics": 5 * 9}}


def test_kinetics_without_a_ground_reaction_are_left_out_of_gait_strides() -> None:
    rec = recording()
    left = side_of(rec, "L")
    batch = clean().batch
    stride = int(np.flatnonzero(batch.side == "L")[1])
    moments = left.kinetics.data.copy()
    t = left.kinetics.times()
    start, end = batch.start_s[stride], batch.start_s[stride] + batch.duration_s[stride]
    stance = (t >= start) & (t < start + 0.62 * (end - start))
    moments[stance] *= 0.01  # inverse dynamics without the ground reaction: inertia only
    result = build(changed(rec, "L", kinetics=moments))
    unchanged_except(result, "kinetics_mask", (stride,))
    assert result.quality == {"no_contact": {"kinetics": 9}}
    # Sitting down is no gait: the stance rule does not apply.
    assert build(changed(rec, "L", kinetics=moments), activity="stand_to_sit").quality == {}


def test_the_gate_never_marks_present_what_it_left_out() -> None:
    rec = recording()
    angles = side_of(rec, "R").kinematics.data.copy()
    angles[:, _ANKLE, _FLEX] = 0.0
    result = build(changed(rec, "R", kinematics=angles))
    batch = result.batch
    for values, mask in (
        (batch.kinematics, batch.kinematics_mask),
        (batch.kinetics, batch.kinetics_mask),
    ):
        assert np.isnan(values[np.broadcast_to(~mask[:, None], values.shape)]).all()
        assert np.isfinite(values[np.broadcast_to(mask[:, None], values.shape)]).all()
    assert np.isnan(batch.envelope_peak[~batch.emg_mask]).all()


@pytest.mark.parametrize("check", quality.CHECKS)
def test_every_check_is_documented(check: str) -> None:
    assert f"``{check}``" in (quality.__doc__ or "")


def test_constant_runs_in_text_written_with_significant_digits() -> None:
    """%.4g text changes resolution at 1.0 (SIAT-LLMD's CSV): -1.001 held between -1.002 and
    -1.000 is a plateau of the written signal, though 0.9999 nearby has a finer step."""
    written = np.array([-1.004, -1.003, -1.002, -1.001, -1.001, -1.001, -1.001, -1.001, -1.0])
    written = np.concatenate([written, [-0.9999, -0.9998, -0.9997]])
    assert quality.constant_runs(written) == []
    assert quality.decimal_resolution(np.array([0.25, -1.001, 3.0])) == 0.001
    frozen = np.concatenate([written[:8], [-0.995, -0.9949, -0.9948]])  # leaves with a jump
    assert quality.constant_runs(frozen) == [(3, 7)]


@pytest.mark.cluster
def test_what_the_gate_left_out_is_in_the_report_info_and_html(demo_root, tmp_path) -> None:
    """A catalogue that calls raw EMG envelopes: the build goes on, the gate leaves the EMG out
    and every reader of the build report says so, per dataset and check."""
    import subprocess
    import sys

    import yaml

    from builder.report import write_report

    from helpers import build_store, copy_demo_subset, demo_catalog

    raw = copy_demo_subset(demo_root, tmp_path / "raw", ("S03",))
    for extra in sorted((raw / "S03").glob("*.c3d"))[2:]:
        extra.unlink()  # two trials are enough
    path = demo_catalog(tmp_path, raw)
    catalog = yaml.safe_load(path.read_text())
    catalog["sources"]["demo"]["metadata"]["emg_kind"] = "envelope"
    path.write_text(yaml.safe_dump(catalog, sort_keys=False))
    result = build_store(path, tmp_path / "gait.zarr", workers=1)

    removed = result.n_strides * 10  # a stride is one leg: its 10 muscles
    assert result.report.quality == {"demo": {"emg_kind": {"emg": removed}}}
    assert all(e.quality for e in result.report.trials_built)
    info = subprocess.run(
        [sys.executable, "-m", "builder", "info", str(tmp_path / "gait.zarr")],
        capture_output=True,
        text=True,
    )
    assert info.returncode == 0, info.stderr
    assert "Left out by the quality gate" in info.stdout
    assert any(
        [cell.strip() for cell in line.split("│")[1:4]] == ["demo", "emg_kind", str(removed)]
        for line in info.stdout.splitlines()
        if line.count("│") >= 4
    ), info.stdout
    html = write_report(str(tmp_path / "gait.zarr"), tmp_path / "report").read_text()
    assert 'id="quality"' in html
    assert f'<td>demo</td><td>emg_kind</td><td class="num">{removed}</td>' in html

"""Moghadam 2023 adapter: on its real trial (../shared/data/real/moghadam, P11 trial 16) with
exact values at given times, and on its miniature (written in the real layout) through the
real catalogue entry; the kinematic heel-strike detector on simulated gait with known events;
and a SourceError (or an absent component with a note) for every assumption that breaks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import builder.datasets.moghadam.adapter  # noqa: F401 (registers)
from builder.catalog import expand_trials, load_catalog
from builder.conventions import ANGLE_UNITS, MOMENT_UNITS, MUSCLES
from builder.datasets import read_recordings
from builder.datasets.moghadam import miniature
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.formats.opensim import read_storage
from builder.pipeline.trial import process_trial
from builder.processing.emg import EmgProcessing, process_emg
from builder.processing.gait_events import kinematic_heel_strikes
from builder.processing.trial import build_strides
from builder.records import SideRecording, TrialRecording, TrialSpec
from builder.store.staging import Staging, trial_key
from builder.synthetic.gait_model import SubjectParams, simulate_trial

from contract import AdapterContract
from helpers import (
    ADD,
    ANKLE,
    FLEX,
    HIP,
    KNEE,
    MINIATURE_MAX_BYTES,
    REAL_DATA,
    REAL_DATA_MISSING,
    ROT,
    Miniature,
    MiniatureFactory,
    relocated,
    requires_real_data,
)

SOURCE = "moghadam2023"
ENTRIES = Path(miniature.__file__).with_name("catalog.yaml")  # the driver's catalogue entries
REAL = REAL_DATA / "moghadam" / "P11Data"


def _read(spec: TrialSpec) -> TrialRecording:
    (recording,) = read_recordings(spec, FileAccess())
    return recording


def _side(recording: TrialRecording, name: str) -> SideRecording:
    (found,) = [s for s in recording.sides if s.side == name]
    return found


def _with_masses(spec: TrialSpec, masses: dict[str, float]) -> TrialSpec:
    """``spec`` with ``kinetics.body_mass`` filled in (the catalogue has none to give)."""
    options = dict(spec.options)
    options["kinetics"] = {**options["kinetics"], "body_mass": dict(masses)}
    return dataclasses.replace(spec, options=options)


def _at(series, t: float) -> np.ndarray:
    """The sample of a TimeSeries at time ``t`` (which must be a sample time)."""
    index = round((t - series.start_s) * series.rate_hz)
    assert abs(series.start_s + index / series.rate_hz - t) < 1e-6
    return series.data[index]


# === the real trial ===========================================================================


def _real_spec(folder: Path) -> TrialSpec:
    """The real trial through the bundled catalogue entry, pointed at the real copy's folder
    (it lacks the repository's top folder, Gait_Time_Series/ or Data/)."""
    entry = yaml.safe_load(ENTRIES.read_text())["sources"][SOURCE]
    entry["args"]["urlpath"] = str(REAL_DATA / "moghadam" / "{subject}Data" / "EMG" / "{trial}.csv")
    entry["args"]["root"] = str(REAL_DATA / "moghadam")
    path = folder / "real.yaml"
    catalog = {"metadata": {"version": 1}, "sources": {SOURCE: entry}}
    path.write_text(yaml.safe_dump(catalog, sort_keys=False))
    (spec,), unavailable = expand_trials(load_catalog(path))
    assert not unavailable
    return spec


@pytest.fixture(scope="module")
def real_spec(tmp_path_factory: pytest.TempPathFactory) -> TrialSpec:
    if not REAL_DATA.is_dir():
        pytest.skip(REAL_DATA_MISSING)
    return _real_spec(tmp_path_factory.mktemp("real"))


@requires_real_data
@pytest.mark.real_data
def test_real_trial_emg_is_raw_1000_hz_mapped_by_name(real_spec: TrialSpec) -> None:
    assert (real_spec.subject, real_spec.trial, real_spec.emg_kind) == ("P11", "16", "raw")
    recording = _read(real_spec)
    assert recording.emg_kind == "raw" and recording.event_source == "kinematics"
    left, right = _side(recording, "L"), _side(recording, "R")
    for side in (left, right):
        assert side.emg.rate_hz == pytest.approx(1000.0)
        assert side.emg.start_s == pytest.approx(2.460) and side.emg.end_s == pytest.approx(4.805)
        assert side.emg.n_samples == 2346
    # Row "3,0.0732648,0.0297522,…" of EMG/16.csv, whose columns are NOT in the catalogue's
    # muscle order (RTibialisAnterior, RSoleus, LGastrocnemiusMedialis, …).
    at3 = {s.side: _at(s.emg, 3.000) for s in (left, right)}
    assert at3["R"][MUSCLES.index("tibialis_anterior")] == 0.0732648
    assert at3["R"][MUSCLES.index("soleus")] == 0.0297522
    assert at3["L"][MUSCLES.index("gastrocnemius_medialis")] == 0.0429852
    assert at3["R"][MUSCLES.index("rectus_femoris")] == 0.323384
    assert at3["L"][MUSCLES.index("soleus")] == -0.0119839
    assert at3["L"][MUSCLES.index("rectus_femoris")] == 0.0273328
    assert _at(right.emg, 3.500)[MUSCLES.index("gluteus_maximus")] == -0.0906076
    # Every mapped slot holds the column of its name, whatever the file's order.
    table = pd.read_csv(REAL / "EMG" / "16.csv")
    channels = yaml.safe_load(ENTRIES.read_text())["sources"][SOURCE]
    for muscle, names in channels["args"]["emg"]["channels"].items():
        for side in (left, right):
            column = table[names[side.side]].to_numpy()
            np.testing.assert_array_equal(side.emg.data[:, MUSCLES.index(muscle)], column)
    # Muscles the study did not record are NaN, never zero.
    absent = [i for i, m in enumerate(MUSCLES) if m not in channels["args"]["emg"]["channels"]]
    assert np.isnan(left.emg.data[:, absent]).all() and len(absent) == 5


@requires_real_data
@pytest.mark.real_data
def test_real_trial_angles_are_canonical_degrees_on_their_own_time_base(real_spec) -> None:
    recording = _read(real_spec)
    left, right = _side(recording, "L"), _side(recording, "R")
    for side in (left, right):
        assert side.kinematics.units == ANGLE_UNITS
        assert side.kinematics.rate_hz == pytest.approx(200.0)
        assert side.kinematics.start_s == pytest.approx(2.960)
        assert side.kinematics.end_s == pytest.approx(4.305)
    # 16.mot at t = 3.000: knee_angle_r -32.48787865 (flexion-negative in the file),
    # hip_flexion_r 28.86426304, ankle_angle_r 3.59046135, hip_adduction_l -6.52274762.
    r3, l3 = _at(right.kinematics, 3.000), _at(left.kinematics, 3.000)
    assert r3[KNEE, FLEX] == pytest.approx(32.48787865, abs=1e-8)
    assert r3[HIP, FLEX] == pytest.approx(28.86426304, abs=1e-8)
    assert r3[ANKLE, FLEX] == pytest.approx(3.59046135, abs=1e-8)
    assert r3[HIP, ROT] == pytest.approx(-0.51332881, abs=1e-8)
    assert l3[HIP, ADD] == pytest.approx(-6.52274762, abs=1e-8)
    assert l3[KNEE, FLEX] == pytest.approx(64.29533194, abs=1e-8)
    # The file's knee_angle_r spans -73..-8 deg: canonical knee flexion 8..73, swing peak.
    knee = right.kinematics.data[:, KNEE, FLEX]
    assert 72 < knee.max() < 74 and 7.5 < knee.min() < 8.5
    # Sagittal only for knee and ankle: their other planes are absent (NaN), never zero.
    assert np.isnan(right.kinematics.data[:, KNEE, :FLEX]).all()


@requires_real_data
@pytest.mark.real_data
def test_real_trial_moments_need_a_body_mass(real_spec: TrialSpec) -> None:
    """N·m in the .sto; no file gives the mass, so without kinetics.body_mass no kinetics."""
    recording = _read(real_spec)
    assert all(s.kinetics is None for s in recording.sides)
    assert any("no body mass for subject P11" in n for n in recording.notes)
    mass = 70.0  # a test value: the real mass is unknown
    weighed = _read(_with_masses(real_spec, {"P11": mass}))
    left, right = _side(weighed, "L"), _side(weighed, "R")
    assert any("moments in N.m" in n and "70 kg" in n for n in weighed.notes)
    assert right.kinetics.units == MOMENT_UNITS and right.kinetics.start_s == pytest.approx(2.96)
    # 16.sto at 3.000: knee_angle_r_moment 108.74277832 (extensor, positive in the file's
    # flexion-negative coordinate) -> canonical -108.74277832 / mass; ankle -17.08570418.
    r3 = _at(right.kinetics, 3.000)
    assert r3[KNEE, FLEX] == pytest.approx(-108.74277832 / mass, rel=1e-9)
    assert r3[ANKLE, FLEX] == pytest.approx(-17.08570418 / mass, rel=1e-9)
    assert r3[HIP, ADD] == pytest.approx(-64.90230643 / mass, rel=1e-9)
    l35 = _at(left.kinetics, 3.500)  # left mid-stance: plantarflexor ankle, extensor knee
    assert l35[ANKLE, FLEX] == pytest.approx(-28.79520431 / mass, rel=1e-9)
    assert l35[KNEE, FLEX] == pytest.approx(-83.49193833 / mass, rel=1e-9)
    with pytest.raises(SourceError, match=r"kinetics\.body_mass of P11"):
        _read(_with_masses(real_spec, {"P11": 700.0}))


@requires_real_data
@pytest.mark.real_data
def test_real_trial_heel_strikes_match_the_loading_in_the_moments(real_spec) -> None:
    """One heel strike per leg inside the 1.345 s force-plate window; each within 10 ms of
    the moment the inverse dynamics show the foot loaded (the ankle moment jumps from the
    swing's small plantarflexor value to the heel's dorsiflexor one)."""
    recording = _read(real_spec)
    moments = read_storage(str(REAL / "Joints_Kinetics" / "16.sto")).table
    time = moments["time"].to_numpy()
    for side, window in (("L", (3.2, 3.5)), ("R", (3.7, 4.0))):
        (found,) = _side(recording, side).heel_strikes_s
        ankle = moments[f"ankle_angle_{side.lower()}_moment"].to_numpy()
        inside = np.flatnonzero((time >= window[0]) & (time <= window[1]))
        rise = next(i for i in inside if ankle[i - 1] < 0 <= ankle[i])
        assert abs(found - time[rise]) <= 0.010, (side, found, time[rise])
    np.testing.assert_allclose(_side(recording, "L").heel_strikes_s, [3.3143], atol=0.002)
    np.testing.assert_allclose(_side(recording, "R").heel_strikes_s, [3.8249], atol=0.002)


@requires_real_data
@pytest.mark.real_data
def test_real_trial_through_the_pipeline(real_spec: TrialSpec, tmp_path: Path) -> None:
    """The real trial holds no complete stride: the kinematics are cut to the force-plate
    window (1.345 s) and each leg's second heel strike lies outside it. The trial is left out
    with that reason; its EMG goes through the raw chain (offset removed, 1 kHz)."""
    recording = _read(_with_masses(real_spec, {"P11": 70.0}))
    settings = EmgProcessing.model_validate(real_spec.processing)
    strides = build_strides(recording, settings, activity="walk")
    assert strides.batch.n_strides == 0
    outcome = process_trial(
        real_spec, key := trial_key(real_spec), Staging(str(tmp_path / "s.zarr")), isolate=False
    )
    assert not outcome.ok and not outcome.retry and outcome.key == key
    assert "no complete stride" in outcome.reason and "L 1, R 1" in outcome.reason
    assert "\n" not in outcome.reason
    raw = _side(recording, "R").emg
    processed, envelope, _ = process_emg(raw, settings)
    recorded = [MUSCLES.index(m) for m in ("soleus", "rectus_femoris", "gluteus_maximus")]
    assert processed.rate_hz == pytest.approx(1000.0) and processed.start_s == raw.start_s
    assert np.isfinite(processed.data[:, recorded]).all()
    assert np.nanmean(raw.data[:, recorded]) > 0.04  # the file's channels sit on an offset…
    assert np.abs(processed.data[:, recorded].mean(axis=0)).max() < 0.005  # …the band-pass removes
    assert (envelope.data[:, recorded] >= 0).mean() > 0.99


# === the kinematic heel-strike detector on simulated gait =====================================

# Tolerance (detected − true): level walking within 15 ms, ramps up to ±10° within 35 ms
# (the detector is early: the knee's terminal-swing minimum precedes contact).
TOLERANCE_S = {0.0: 0.015, 5.0: 0.035, -5.0: 0.035, 10.0: 0.035, -10.0: 0.035}


@pytest.mark.parametrize("incline", [0.0, 5.0, -5.0, 10.0, -10.0])
@pytest.mark.parametrize("speed", [0.8, 1.2, 1.6])
def test_kinematic_heel_strikes_match_the_true_ones(incline: float, speed: float) -> None:
    activity = "walk" if incline == 0 else ("ramp_ascent" if incline > 0 else "ramp_descent")
    rng = np.random.default_rng(int(10 * speed + incline + 20))
    variants = [(100.0, 0.0), (100.0, 1.0)] + ([(200.0, 0.5)] if speed == 1.2 else [])
    for rate, noise_deg in variants:
        trial = simulate_trial(
            subject=SubjectParams.generate("S", 1.75, 70.0, 4),
            activity=activity,
            speed_mps=speed,
            incline_deg=incline,
            n_strides=5,
            seed=9,
            point_rate_hz=rate,
            analog_rate_hz=10 * rate,
        )
        for side in "LR":
            angles = trial.kinematics[side]
            hip = angles[:, HIP, FLEX] + rng.normal(0.0, noise_deg, len(angles))
            knee = angles[:, KNEE, FLEX] + rng.normal(0.0, noise_deg, len(angles))
            found = kinematic_heel_strikes(hip, knee, rate, trial.start_s)
            truth = trial.heel_strikes[side]
            # Every true heel strike whose swing lies in the recording (> 0.6 s in) is found.
            expected = truth[truth > trial.start_s + 0.6]
            nearest = np.abs(found[:, None] - truth[None, :]).argmin(axis=1)
            errors = found - truth[nearest]
            assert np.all(np.abs(errors) <= TOLERANCE_S[incline]), (side, rate, errors)
            assert set(truth[nearest]) >= set(expected)
            assert len(found) == len(set(nearest))  # no extra or duplicate events
            assert np.all(errors <= 0.005)  # early (or within noise), never late


def test_kinematic_heel_strikes_bridge_short_gaps_and_split_long_ones() -> None:
    trial = simulate_trial(
        subject=SubjectParams.generate("S", 1.75, 70.0, 4),
        activity="walk",
        speed_mps=1.2,
        incline_deg=0.0,
        n_strides=6,
        seed=3,
    )
    hip, knee = trial.kinematics["L"][:, HIP, FLEX], trial.kinematics["L"][:, KNEE, FLEX]
    clean = kinematic_heel_strikes(hip, knee, 100.0, trial.start_s)
    gappy_knee = knee.copy()
    gappy_knee[300:305] = np.nan  # 50 ms: bridged
    np.testing.assert_allclose(
        kinematic_heel_strikes(hip, gappy_knee, 100.0, trial.start_s), clean, atol=0.003
    )
    gappy_knee[300:400] = np.nan  # 1 s: no event is invented inside it
    found = kinematic_heel_strikes(hip, gappy_knee, 100.0, trial.start_s)
    assert not np.any((found > trial.start_s + 3.0) & (found < trial.start_s + 4.0))
    assert set(np.round(found, 6)) <= set(np.round(clean, 6))
    with pytest.raises(ValueError):
        kinematic_heel_strikes(hip, knee[:-1], 100.0)


def test_kinematic_heel_strikes_in_a_window_that_starts_mid_swing() -> None:
    """A recording cut to a force-plate window may start after the knee began to flex for
    swing: the heel strike after that swing peak is still found (if the peak is inside), and
    nothing is found for a swing whose peak lies before the start."""
    trial = simulate_trial(
        subject=SubjectParams.generate("S", 1.75, 70.0, 4),
        activity="walk",
        speed_mps=1.2,
        incline_deg=0.0,
        n_strides=4,
        seed=5,
        point_rate_hz=200.0,
        analog_rate_hz=1000.0,
    )
    phase, rate = trial.phase["L"], 200.0
    hip, knee = trial.kinematics["L"][:, HIP, FLEX], trial.kinematics["L"][:, KNEE, FLEX]
    truth = trial.heel_strikes["L"]
    peak = int(np.argmax(np.where((phase > 1.5) & (phase < 2.0), knee, -np.inf)))
    # 50 ms before its swing peak the knee is within ~6° of it: no prominence on that side.
    for first, expect_first in ((peak - 10, True), (peak + 10, False)):
        found = kinematic_heel_strikes(hip[first:], knee[first:], rate, first / rate)
        assert (abs(found[0] - truth[truth > first / rate][0]) < 0.015) == expect_first
        assert np.abs(found[:, None] - truth[None, :]).min(axis=1).max() < 0.015


# === the miniature through the real catalogue entry ============================================

_SPECS: dict[Path, list[TrialSpec]] = {}  # the trial table of each generated root


@pytest.fixture(scope="module")
def generated(miniature: MiniatureFactory) -> tuple[Path, dict]:
    written = miniature(SOURCE)
    _SPECS[written.root] = written.specs()
    return written.root, written.facts


def _copy(generated: tuple[Path, dict], tmp_path: Path) -> Path:
    root, facts = generated
    Miniature(SOURCE, root, facts).copy(tmp_path)
    _SPECS[tmp_path] = [relocated(s, root, tmp_path) for s in _SPECS[root]]
    return tmp_path


def _spec(root: Path, subject: str = "P1", trial: str = "1") -> TrialSpec:
    return next(s for s in _SPECS[root] if (s.subject, s.trial) == (subject, trial))


def _files(root: Path, subject: str = "P1", trial: str = "1") -> dict[str, Path]:
    folder = root / SOURCE / "Gait_Time_Series" / f"{subject}Data"
    return {
        "emg": folder / "EMG" / f"{trial}.csv",
        "mot": folder / "Joints_Kinematics" / f"{trial}.mot",
        "sto": folder / "Joints_Kinetics" / f"{trial}.sto",
        "imu": folder / "IMU" / f"{trial}.csv",
    }


def test_miniature_is_deterministic_and_in_the_real_layout(generated, tmp_path: Path) -> None:
    first, second = generated[0] / SOURCE, tmp_path
    miniature.write(second)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    assert sum((first / f).stat().st_size for f in files) < MINIATURE_MAX_BYTES
    headers = set()
    emg_files = list(first.rglob("EMG/*.csv"))
    for path in emg_files:
        lines = path.read_text().splitlines()
        header = lines[0].split(",")
        assert header[0] == "Time" and len(header) == 17
        headers.add(tuple(header))
        zeros = [line for line in lines[1:40] if set(line.split(",")[1:]) == {"0"}]
        assert len(zeros) == generated[1]["leading_zero_rows"]
        assert lines[2].startswith("0.001,")
    assert len(headers) == len(emg_files) == len(generated[1]["trials"])  # an order per file
    real_like = (first / "Gait_Time_Series/P10Data/EMG/1.csv").read_text().splitlines()[0]
    assert real_like.split(",")[1:] == list(miniature.REAL_ORDER)
    mot = _files(generated[0])["mot"].read_text().splitlines()
    assert mot[:5] == ["Coordinates", "version=1", mot[2], "nColumns=24", "inDegrees=yes"]
    assert mot[6:10] == [
        "Units are S.I. units (second, meters, Newtons, ...)",
        "Angles are in degrees.",
        "",
        "endheader",
    ]
    assert len(mot[11].split("\t")[1]) == 16  # %16.8f, tab-separated
    sto = _files(generated[0])["sto"].read_text().splitlines()
    assert sto[0] == "Inverse Dynamics Generalized Forces" and sto[5] == "endheader"


def test_every_trial_builds_with_the_true_strides(generated, tmp_path: Path) -> None:
    root, facts = generated
    specs = _SPECS[root]
    assert sorted((s.subject, s.trial) for s in specs) == sorted(
        tuple(key.split("/")) for key in facts["trials"]
    )
    staging = Staging(str(tmp_path / "s.zarr"))
    muscles = np.isin(MUSCLES, facts["muscles"])
    for spec in specs:
        truth = facts["trials"][f"{spec.subject}/{spec.trial}"]
        outcome = process_trial(spec, key := trial_key(spec), staging)
        assert outcome.ok, outcome.reason
        assert outcome.event_source == "kinematics" and spec.emg_kind == "raw"
        assert any("no body mass" in n for n in outcome.notes)  # the catalogue gives none
        batch = staging.load_batch(key)
        for side in "LR":
            n_true = len(truth["heel_strikes_s"][side]) - 1
            mine = batch.side == side
            assert mine.sum() == n_true >= 1, (spec.subject, spec.trial, side)
            np.testing.assert_allclose(
                batch.start_s[mine], truth["heel_strikes_s"][side][:-1], atol=0.015
            )
        assert (batch.emg_mask == muscles).all()
        assert not batch.kinetics_mask.any() and np.isnan(batch.kinetics).all()
        assert outcome.columns["activity"] == ("walk",) * batch.n_strides
        assert set(outcome.columns["subject"]) == {spec.subject}
        expected_kinematics = np.zeros((3, 3), bool)
        expected_kinematics[HIP] = True
        expected_kinematics[KNEE, FLEX] = expected_kinematics[ANKLE, FLEX] = True
        assert (batch.kinematics_mask == expected_kinematics).all()


def test_values_are_canonical_with_body_masses(generated, tmp_path: Path) -> None:
    root, facts = generated
    staging = Staging(str(tmp_path / "s.zarr"))
    kinetics, kinematics, envelopes = [], [], []
    for spec in _SPECS[root]:
        spec = _with_masses(spec, facts["body_mass_kg"])
        truth = facts["trials"][f"{spec.subject}/{spec.trial}"]
        outcome = process_trial(spec, key := trial_key(spec), staging, isolate=False)
        assert outcome.ok, outcome.reason
        batch = staging.load_batch(key)
        for side in "LR":
            loaded = batch.kinetics_mask[batch.side == side][:, ANKLE, FLEX]
            assert loaded.sum() == truth["loaded_strides"][side], (spec.subject, spec.trial)
        kinetics.append(batch.kinetics[batch.kinetics_mask[:, ANKLE, FLEX]])
        kinematics.append(batch.kinematics)
        envelopes.append(batch.emg_envelope[:, :, MUSCLES.index("soleus")])
    kin, mom = np.concatenate(kinematics).mean(axis=0), np.concatenate(kinetics).mean(axis=0)
    knee = kin[:, KNEE, FLEX]
    assert 50 < knee.max() < 75 and knee[120:].argmax() > 0  # swing peak, in swing
    assert 15 < kin[0, HIP, FLEX] < 40  # flexed at heel strike
    assert kin[:, ANKLE, FLEX].max() > 5  # dorsiflexion positive in late stance
    hip_moment = mom[:, HIP, FLEX]
    assert hip_moment[:30].min() < -0.4 and hip_moment[60:130].max() > 0.4  # ext. then flex.
    assert mom[5:40, KNEE, FLEX].min() < -0.3  # knee extensor (negative) in loading response
    assert -2.2 < mom[:, ANKLE, FLEX].min() < -1.0  # plantarflexor, N·m/kg
    assert mom[:, HIP, ADD].min() < -0.4  # abductor moment in stance
    envelope = np.nanmean(np.concatenate(envelopes), axis=0)
    assert envelope[60:110].mean() > 2 * envelope[150:].mean()  # soleus active in stance


def test_emg_columns_are_mapped_by_name_whatever_their_order(generated) -> None:
    root, facts = generated
    for subject, trial in (("P1", "1"), ("P10", "1"), ("P2", "2")):
        order = facts["trials"][f"{subject}/{trial}"]["emg_columns"]
        table = pd.read_csv(_files(root, subject, trial)["emg"])
        recording = _read(_spec(root, subject, trial))
        first = facts["leading_zero_rows"]
        for side in recording.sides:
            for name in ("Soleus", "RectusFemoris", "GluteusMaximus"):
                column = table[f"{side.side}{name}"].to_numpy()[first:]
                slot = {"Soleus": "soleus", "RectusFemoris": "rectus_femoris"}.get(
                    name, "gluteus_maximus"
                )
                np.testing.assert_array_equal(side.emg.data[:, MUSCLES.index(slot)], column)
        assert list(table.columns[1:]) == order


def test_leading_zeros_are_not_recorded(generated) -> None:
    root, facts = generated
    recording = _read(_spec(root))
    first = facts["leading_zero_rows"]
    for side in recording.sides:
        assert side.emg.start_s == pytest.approx(first / 1000)
        assert np.all(side.emg.data[0][~np.isnan(side.emg.data[0])] != 0)
    assert any(f"{first} leading" in n and "not recorded" in n for n in recording.notes)


def test_kinetics_are_per_kg_with_the_catalogues_body_mass(generated) -> None:
    root, facts = generated
    mass = facts["body_mass_kg"]["P1"]
    recording = _read(_with_masses(_spec(root), {"P1": mass}))
    storage = read_storage(str(_files(root)["sto"])).table
    t = float(storage["time"].iloc[100])
    right = _at(_side(recording, "R").kinetics, t)
    assert right[KNEE, FLEX] == pytest.approx(-storage["knee_angle_r_moment"].iloc[100] / mass)
    assert right[HIP, ROT] == pytest.approx(storage["hip_rotation_r_moment"].iloc[100] / mass)
    assert any(f"divided by the body mass {mass:g} kg" in n for n in recording.notes)


# --- each assumption, broken ----------------------------------------------------------------


def _rewrite_emg(path: Path, header=None, values=None, time=None) -> None:
    table = pd.read_csv(path)
    if values is not None:
        table.iloc[:, 1:] = values(table.iloc[:, 1:].to_numpy())
    if time is not None:
        table["Time"] = time(table["Time"].to_numpy())
    if header is not None:
        table.columns = header(list(table.columns))
    table.to_csv(path, index=False, float_format="%.6G")


def _rewrite_storage(path: Path, columns: tuple[str, ...] | None, change) -> None:
    """Apply ``change`` to data columns of an OpenSim file (all but time, or ``columns``),
    keeping its header lines."""
    lines = path.read_text().splitlines()
    end = lines.index("endheader")
    names = lines[end + 1].split("\t")
    rows = np.array([[float(v) for v in line.split("\t")] for line in lines[end + 2 :]])
    for name in columns or names[1:]:
        rows[:, names.index(name)] = change(rows[:, names.index(name)])
    body = ["\t".join(f"{v:16.8f}" for v in row) for row in rows]
    path.write_text("\n".join([*lines[: end + 2], *body]) + "\n")


def test_a_missing_emg_column_is_an_absent_muscle(generated, tmp_path: Path) -> None:
    root = _copy(generated, tmp_path)
    path = _files(root)["emg"]
    table = pd.read_csv(path).drop(columns=["LSoleus"])
    table.to_csv(path, index=False, float_format="%.6G")
    recording = _read(_spec(root))
    assert any("['LSoleus'] not in the file" in n for n in recording.notes)
    soleus = MUSCLES.index("soleus")
    assert np.isnan(_side(recording, "L").emg.data[:, soleus]).all()
    assert np.isfinite(_side(recording, "R").emg.data[:, soleus]).all()


def test_unnamed_emg_columns_are_refused_never_taken_by_position(generated, tmp_path) -> None:
    root = _copy(generated, tmp_path)
    _rewrite_emg(
        _files(root)["emg"], header=lambda h: [h[0]] + [f"EMG{k}" for k in range(1, len(h))]
    )
    with pytest.raises(SourceError, match="never taken by position"):
        _read(_spec(root))


def test_two_columns_naming_one_channel_are_refused(generated, tmp_path: Path) -> None:
    root = _copy(generated, tmp_path)
    _rewrite_emg(
        _files(root)["emg"],
        header=lambda h: [("R_Soleus" if c == "LSoleus" else c) for c in h],
    )
    with pytest.raises(SourceError, match="name the same channel"):
        _read(_spec(root))


def test_an_emg_rate_other_than_1000_hz_is_refused(generated, tmp_path: Path) -> None:
    root = _copy(generated, tmp_path)
    _rewrite_emg(_files(root)["emg"], time=lambda t: 10 * t)
    with pytest.raises(SourceError, match="EMG time column gives 100 Hz, the catalogue says 1000"):
        _read(_spec(root))


def test_rectified_emg_is_refused_as_raw(generated, tmp_path: Path) -> None:
    root = _copy(generated, tmp_path)
    _rewrite_emg(_files(root)["emg"], values=np.abs)
    with pytest.raises(SourceError, match=r"is raw \(signed\) EMG.*not signed raw EMG"):
        _read(_spec(root))


def test_knee_flexion_positive_files_are_refused(generated, tmp_path: Path) -> None:
    """The files' knee_angle is flexion-negative; a flexion-positive model would need
    another sign rule."""
    root = _copy(generated, tmp_path)
    _rewrite_storage(_files(root)["mot"], ("knee_angle_r", "knee_angle_l"), np.negative)
    with pytest.raises(SourceError, match="knee flexion"):
        _read(_spec(root))


def test_external_moments_are_refused(generated, tmp_path: Path) -> None:
    root = _copy(generated, tmp_path)
    _rewrite_storage(_files(root)["sto"], None, np.negative)
    with pytest.raises(SourceError, match="ankle moment"):
        _read(_spec(root))


def test_moments_per_kg_contradict_the_declared_n_m(generated, tmp_path: Path) -> None:
    root = _copy(generated, tmp_path)
    mass = generated[1]["body_mass_kg"]["P1"]
    _rewrite_storage(_files(root)["sto"], None, lambda v: v / mass)
    with pytest.raises(SourceError, match=r"kinetics\.units says N\.m but .* looks N\.m/kg"):
        _read(_spec(root))


def test_a_truncated_storage_file_is_refused(generated, tmp_path: Path) -> None:
    root = _copy(generated, tmp_path)
    path = _files(root)["mot"]
    path.write_text("\n".join(path.read_text().splitlines()[:-40]) + "\n")
    with pytest.raises(SourceError, match=r"nRows=\d+ but the table has"):
        _read(_spec(root))


def test_a_trial_without_plate_contact_keeps_emg_and_kinematics(generated, tmp_path) -> None:
    root = _copy(generated, tmp_path)
    # No ground reaction: only the foot's inertia (~2 N·m).
    _rewrite_storage(_files(root)["sto"], None, lambda v: np.clip(v, -2.0, 2.0))
    recording = _read(_with_masses(_spec(root), generated[1]["body_mass_kg"]))
    assert any("no stride on a force plate" in n for n in recording.notes)
    assert all(s.kinetics is None and s.kinematics is not None for s in recording.sides)
    assert all(len(s.heel_strikes_s) >= 2 for s in recording.sides)


def test_heel_strikes_do_not_come_from_the_imu(generated, tmp_path: Path) -> None:
    """The upstream segmentation (IMU vertical-acceleration peaks) is not used: scrambling
    the IMU file changes nothing."""
    root = _copy(generated, tmp_path)
    before = _read(_spec(root))
    _files(root)["imu"].write_text("Time,RF_accel.y\n0,1\n")
    after = _read(_spec(root))
    for a, b in zip(before.sides, after.sides, strict=True):
        np.testing.assert_array_equal(a.heel_strikes_s, b.heel_strikes_s)


class TestContract(AdapterContract):
    driver = "moghadam"
    source = SOURCE

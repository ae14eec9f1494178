"""Moghadam 2023 adapter on its miniature: kinematic heel strikes (accuracy on simulated gait
with known events), OpenSim conventions, N·m → N·m/kg with the study summary's mass, 100 Hz
envelopes, and a SourceError for every assumption that breaks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import builder.sources.moghadam  # noqa: F401 (registers)
from builder.build import process_trial
from builder.conventions import JOINTS, MUSCLES, PLANES
from builder.demo.datasets import moghadam as miniature
from builder.demo.gait_model import SubjectParams, simulate_trial
from builder.errors import SourceError
from builder.records import TrialSpec
from builder.sources import FileAccess, get_adapter
from builder.sources.gait_events import kinematic_heel_strikes
from builder.sources.opensim import read_storage, write_storage
from builder.sources.tables import read_xlsx
from builder.store.staging import Staging, trial_key

from helpers import copy_miniature, miniature_specs, relocated

SOURCE = "moghadam2023"
HIP, KNEE, ANKLE = (JOINTS.index(j) for j in ("hip", "knee", "ankle"))
ADD, ROT, FLEX = (PLANES.index(p) for p in ("adduction", "rotation", "flexion"))


_SPECS: dict[Path, list[TrialSpec]] = {}  # the trial table of each generated root


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("data")
    facts, _SPECS[root] = miniature_specs(root, SOURCE)
    return root, facts


def _specs(root: Path) -> list[TrialSpec]:
    return _SPECS[root]


def _copy(generated: tuple[Path, dict], tmp_path: Path) -> Path:
    root, _ = generated
    copy_miniature(root, SOURCE, tmp_path)
    _SPECS[tmp_path] = [relocated(s, root, tmp_path) for s in _SPECS[root]]
    return tmp_path


def _read(spec: TrialSpec):
    (recording,) = get_adapter("moghadam").read_trial(spec, FileAccess())
    return recording


def _spec(root: Path, subject: str = "P1", trial: str = "1") -> TrialSpec:
    return next(s for s in _specs(root) if (s.subject, s.trial) == (subject, trial))


# --- the heel-strike detector on simulated gait with known heel strikes ------------------------

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


# --- the miniature through the real catalogue entry -------------------------------------------


def test_miniature_is_deterministic_and_small(generated, tmp_path: Path) -> None:
    first, second = generated[0] / SOURCE, tmp_path
    miniature.write(second)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    assert sum((first / f).stat().st_size for f in files) < 5e6
    assert (first / "Study Summary.xlsx").is_file()


def test_every_trial_builds_with_the_true_strides(generated, tmp_path: Path) -> None:
    root, facts = generated
    specs = _specs(root)
    assert sorted((s.subject, s.trial) for s in specs) == sorted(
        tuple(key.split("/")) for key in facts["trials"]
    )
    staging = Staging(str(tmp_path / "s.zarr"))
    muscles = np.isin(MUSCLES, facts["muscles"])
    for spec in specs:
        truth = facts["trials"][f"{spec.subject}/{spec.trial}"]
        outcome = process_trial(spec, key := trial_key(spec), staging)
        assert outcome.ok, outcome.reason
        assert outcome.event_source == "kinematics"
        batch = staging.load_batch(key)
        for side in "LR":
            n_true = len(truth["heel_strikes_s"][side]) - 1
            mine = batch.side == side
            assert mine.sum() == n_true, (spec.subject, spec.trial, side)
            np.testing.assert_allclose(
                batch.start_s[mine], truth["heel_strikes_s"][side][:-1], atol=0.03
            )
            assert batch.kinetics_mask[mine][:, ANKLE, FLEX].sum() == truth["loaded_strides"][side]
        assert (batch.emg_mask == muscles).all()
        assert outcome.columns["activity"] == ("walk",) * batch.n_strides
        assert set(outcome.columns["subject"]) == {spec.subject}
        assert spec.emg_kind == "envelope"
        expected_kinematics = np.zeros((3, 3), bool)
        expected_kinematics[HIP] = True
        expected_kinematics[KNEE, FLEX] = expected_kinematics[ANKLE, FLEX] = True
        assert (batch.kinematics_mask == expected_kinematics).all()


def test_values_are_canonical(generated, tmp_path: Path) -> None:
    root, _ = generated
    spec = _spec(root, "P2", "2")
    staging = Staging(str(tmp_path / "s.zarr"))
    key = trial_key(spec)
    assert process_trial(spec, key, staging).ok
    batch = staging.load_batch(key)
    kin, mom = batch.kinematics.mean(axis=0), batch.kinetics.mean(axis=0)  # mean stride
    knee = kin[:, KNEE, FLEX]
    assert 50 < knee.max() < 75 and knee[120:].argmax() > 0  # swing peak, in swing
    assert 15 < kin[0, HIP, FLEX] < 40  # flexed at heel strike
    assert kin[:, ANKLE, FLEX].max() > 5  # dorsiflexion positive in late stance
    hip_moment = mom[:, HIP, FLEX]
    assert hip_moment[:30].min() < -0.4 and hip_moment[60:130].max() > 0.4  # ext. then flex.
    assert -2.2 < mom[:, ANKLE, FLEX].min() < -1.0  # plantarflexor, N·m/kg
    assert mom[:, HIP, ADD].min() < -0.4  # abductor moment in stance
    envelope = batch.emg_envelope[:, :, MUSCLES.index("soleus")].mean(axis=0)
    assert envelope[60:110].mean() > 2 * envelope[150:].mean()  # soleus active in stance


def test_unnamed_emg_columns_use_the_documented_order(generated) -> None:
    root, facts = generated
    assert facts["emg_columns"]["P10"] == "unnamed"
    named = _read(_spec(root, "P1")).notes
    unnamed = _read(_spec(root, "P10")).notes
    assert not any("emg.order" in n for n in named)
    assert any("emg.order" in n for n in unnamed)


def test_moments_per_kg_are_recognised_by_magnitude(generated, tmp_path: Path) -> None:
    root = _copy(generated, tmp_path)
    spec = _spec(root, "P1")
    before = _read(spec)
    path = root / SOURCE / "Gait_Time_Series/P1Data/Joints_Kinetics/1.sto"
    _scale_storage(path, 1 / generated[1]["body_mass_kg"]["P1"])
    after = _read(spec)
    assert any("N.m/kg" in n for n in after.notes)
    for a, b in zip(before.sides, after.sides, strict=True):
        np.testing.assert_allclose(a.kinetics.data, b.kinetics.data, rtol=1e-5, atol=1e-6)


def test_a_trial_without_plate_contact_keeps_emg_and_kinematics(generated, tmp_path) -> None:
    root = _copy(generated, tmp_path)
    path = root / SOURCE / "Gait_Time_Series/P1Data/Joints_Kinetics/1.sto"
    _scale_storage(path, 1.0, clip=2.0)  # no ground reaction: only the foot's inertia (~2 N·m)
    recording = _read(_spec(root, "P1"))
    assert any("no stride on a force plate" in n for n in recording.notes)
    assert all(s.kinetics is None and s.kinematics is not None for s in recording.sides)
    assert all(len(s.heel_strikes_s) >= 4 for s in recording.sides)


def test_body_mass_comes_from_the_summary_or_the_catalogue(generated, tmp_path: Path) -> None:
    root = _copy(generated, tmp_path)
    rows = read_xlsx(str(root / SOURCE / "Study Summary.xlsx"), "summary")
    assert rows[0][:3] == ["ID", None, "Participant Info"] and rows[2][0] == "P1"
    spec = _spec(root, "P1")
    (root / SOURCE / "Study Summary.xlsx").unlink()
    with pytest.raises(SourceError, match=r"not a readable \.xlsx"):
        _read(spec)
    options = dict(spec.options)
    options["kinetics"] = {**options["kinetics"], "body_mass": {"P1": 62.5}}
    recording = _read(_replace(spec, options=options))
    assert any("62.5 kg" in n for n in recording.notes)
    miniature._write_summary(root / SOURCE / "Study Summary.xlsx")
    with pytest.raises(SourceError, match="P3 is not in the study summary"):
        _read(_replace(_spec(root, "P1"), subject="P3"))


# --- each assumption, broken ----------------------------------------------------------------


def test_knee_extension_positive_is_refused(generated, tmp_path: Path) -> None:
    root = _copy(generated, tmp_path)
    path = root / SOURCE / "Gait_Time_Series/P1Data/Joints_Kinematics/1.mot"
    _scale_storage(path, -1.0, columns=("knee_angle_r", "knee_angle_l"))
    with pytest.raises(SourceError, match="knee flexion"):
        _read(_spec(root))


def test_external_moments_are_refused(generated, tmp_path: Path) -> None:
    root = _copy(generated, tmp_path)
    _scale_storage(root / SOURCE / "Gait_Time_Series/P1Data/Joints_Kinetics/1.sto", -1.0)
    with pytest.raises(SourceError, match="ankle moment"):
        _read(_spec(root))


def test_raw_emg_is_refused(generated, tmp_path: Path) -> None:
    root = _copy(generated, tmp_path)
    path = root / SOURCE / "Gait_Time_Series/P1Data/EMG/1.csv"
    lines = path.read_text().splitlines()
    flipped = [lines[0]] + [
        ",".join([cells[0]] + [str(-float(c) if i % 2 else float(c)) for c in cells[1:]])
        for i, cells in enumerate(line.split(",") for line in lines[1:])
    ]
    path.write_text("\n".join(flipped) + "\n")
    with pytest.raises(SourceError, match="not the documented 100 Hz envelope"):
        _read(_spec(root))


def test_an_emg_rate_other_than_100_hz_is_refused(generated, tmp_path: Path) -> None:
    root = _copy(generated, tmp_path)
    path = root / SOURCE / "Gait_Time_Series/P1Data/EMG/1.csv"
    lines = path.read_text().splitlines()
    slowed = [lines[0]] + [
        ",".join([f"{2 * float(line.split(',')[0]):.6f}", *line.split(",")[1:]])
        for line in lines[1:]
    ]
    path.write_text("\n".join(slowed) + "\n")
    with pytest.raises(SourceError, match="catalogue says 100 Hz"):
        _read(_spec(root))


def test_unmatched_emg_columns_are_refused(generated, tmp_path: Path) -> None:
    root = _copy(generated, tmp_path)
    path = root / SOURCE / "Gait_Time_Series/P10Data/EMG/1.csv"
    text = path.read_text().splitlines()
    header = text[0].split(",")
    path.write_text(
        "\n".join([",".join(header[:-1])] + [",".join(t.split(",")[:-1]) for t in text[1:]]) + "\n"
    )
    with pytest.raises(SourceError, match="not found"):
        _read(_spec(root, "P10"))


def test_heel_strikes_do_not_come_from_the_imu(generated, tmp_path: Path) -> None:
    """The upstream segmentation (IMU vertical-acceleration peaks) is not used: scrambling
    the IMU file changes nothing."""
    root = _copy(generated, tmp_path)
    spec = _spec(root)
    before = _read(spec)
    (root / SOURCE / "Gait_Time_Series/P1Data/IMU/1.csv").write_text("Time,RF_accel.y\n0,1\n")
    after = _read(spec)
    for a, b in zip(before.sides, after.sides, strict=True):
        np.testing.assert_array_equal(a.heel_strikes_s, b.heel_strikes_s)


# --- helpers -----------------------------------------------------------------------------------


def _replace(spec: TrialSpec, **changes) -> TrialSpec:
    return dataclasses.replace(spec, **changes)


def _scale_storage(
    path: Path, factor: float, columns: tuple[str, ...] | None = None, clip: float | None = None
) -> None:
    """Multiply (and clip to ±``clip``) data columns of an OpenSim storage file (all but
    time, or ``columns``)."""
    storage = read_storage(str(path))
    table = storage.table.copy()
    for name in columns or [c for c in table.columns if c != "time"]:
        table[name] = table[name] * factor
        if clip is not None:
            table[name] = table[name].clip(-clip, clip)
    write_storage(
        str(path), table, name=storage.header["name"], in_degrees=bool(storage.in_degrees)
    )

"""Angelidou adapter on its miniature: every participant read (the foundation stopped after
nine), one stride per cell with the cell's duration, units from the file's unit struct,
external N·mm/kg moments to internal N·m/kg, terrain stiffness and speed in the stride table,
and a SourceError for every assumption that breaks (cells = single gait cycles, sagittal
column, units, sign, raw EMG)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.io

import builder.datasets.angelidou.adapter as angelidou
from builder.conventions import MUSCLES
from builder.datasets import read_recordings
from builder.datasets.angelidou import miniature
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.pipeline.trial import process_trial
from builder.records import TrialSpec
from builder.store.staging import Staging, trial_key

from contract import AdapterContract
from helpers import ANKLE, FLEX, HIP, KNEE, MINIATURE_MAX_BYTES, MiniatureFactory

SOURCE = "angelidou"
_SPECS: dict[Path, list[TrialSpec]] = {}


@pytest.fixture(scope="module")
def generated(miniature: MiniatureFactory) -> tuple[Path, dict]:
    written = miniature(SOURCE)
    _SPECS[written.root] = written.specs()
    return written.root, written.facts


def _spec(root: Path, participant: str = "P0001") -> TrialSpec:
    return next(s for s in _SPECS[root] if s.subject == participant)


def _read(spec: TrialSpec):
    return read_recordings(spec, FileAccess())


def _mutate(monkeypatch, participant: str, change: Callable[[dict], None]) -> None:
    """Apply ``change`` to data.<participant> as load_mat returns it."""
    real = angelidou.load_mat

    def load(path, url=None, variables=None):
        content = real(path, url, variables)
        if participant in content["data"]:
            change(content["data"][participant])
        return content

    monkeypatch.setattr(angelidou, "load_mat", load)


def _each_cell(data: dict, group: str, names: tuple[str, ...], change: Callable) -> None:
    for speed, conditions in data.items():
        if speed in ("participantInfo", "gaitEvents", "unit"):
            continue
        for condition in conditions.values():
            for name in names:
                condition[group][name] = [change(c) for c in condition[group][name]]


# --- the miniature through the real catalogue entry -------------------------------------------


def test_miniature_is_deterministic_and_small(generated, tmp_path: Path) -> None:
    first = generated[0] / SOURCE
    miniature.write(tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted(p.name for p in first.iterdir()) and len(files) == 10
    assert all((tmp_path / f).read_bytes() == (first / f).read_bytes() for f in files)
    assert sum((tmp_path / f).stat().st_size for f in files) < MINIATURE_MAX_BYTES


def test_every_participant_and_cycle_becomes_a_stride(generated, tmp_path: Path) -> None:
    root, facts = generated
    specs = _SPECS[root]
    assert [s.subject for s in specs] == [f"P{n:04d}" for n in range(1, 11)]  # all ten
    staging = Staging(str(tmp_path / "s.zarr"))
    muscles = np.isin(MUSCLES, facts["muscles"])
    sagittal = np.zeros((3, 3), bool)
    sagittal[:, FLEX] = True
    durations: dict[str, list[float]] = {}
    for spec in specs:
        key = trial_key(spec)
        outcome = process_trial(spec, key, staging)
        assert outcome.ok, outcome.reason
        assert outcome.event_source == "pre_segmented"
        batch = staging.load_batch(key)
        cols = outcome.columns
        for i in range(batch.n_strides):
            where = f"{cols['subject'][i]}/{cols['trial'][i]}/{batch.side[i]}"
            durations.setdefault(where, []).append(float(batch.duration_s[i]))
        assert all(np.isnan(outcome.start_s))  # durations, but no absolute times
        assert (batch.emg_mask == muscles).all()
        assert (batch.kinematics_mask == sagittal).all()
        nan_stride = spec.subject == "P0004"
        assert (batch.kinetics_mask == sagittal).all(axis=(1, 2)).sum() == (
            batch.n_strides - nan_stride
        )
        assert set(cols["activity"]) == {"walk"} and spec.emg_kind == "raw"
        for trial, speed, condition in zip(
            cols["trial"], cols["speed_mps"], cols["condition"], strict=True
        ):
            token_speed, token_stiffness = trial.split("_")
            assert speed == miniature.SPEEDS[token_speed]
            assert condition == f"terrain_stiffness_{int(token_stiffness[1:])}kN/m"
    assert durations.keys() == facts["cycles"].keys()
    for where, values in durations.items():
        np.testing.assert_allclose(sorted(values), sorted(facts["cycles"][where]), atol=1e-9)


def test_values_are_canonical(generated, tmp_path: Path) -> None:
    root, _ = generated
    spec = _spec(root, "P0003")
    staging = Staging(str(tmp_path / "s.zarr"))
    key = trial_key(spec)
    assert process_trial(spec, key, staging).ok
    batch = staging.load_batch(key)
    kin, mom = batch.kinematics.mean(axis=0), batch.kinetics.mean(axis=0)
    knee = kin[:, KNEE, FLEX]
    assert 50 < knee.max() < 75 and 110 < knee.argmax() < 170 and knee[0] < 15
    assert 15 < kin[0, HIP, FLEX] < 40
    assert kin[:, ANKLE, FLEX].max() > 5
    assert -2.2 < mom[:, ANKLE, FLEX].min() < -1.0  # internal plantarflexor, N·m/kg
    assert mom[:30, HIP, FLEX].min() < -0.4 and mom[60:130, HIP, FLEX].max() > 0.4
    ta = batch.emg_envelope[:, :, MUSCLES.index("tibialis_anterior")].mean(axis=0)
    ga = batch.emg_envelope[:, :, MUSCLES.index("gastrocnemius_medialis")].mean(axis=0)
    assert ga[60:110].mean() > 2 * ga[150:].mean()  # plantarflexor fires in stance
    assert ta[:15].mean() > ta[60:100].mean()  # TA lowers the foot after heel strike


# --- each assumption, broken ----------------------------------------------------------------


def test_cells_cut_at_the_other_legs_heel_strike_are_refused(generated, monkeypatch) -> None:
    root, _ = generated

    def half_a_cycle_off(cell: np.ndarray) -> np.ndarray:
        return np.roll(cell, len(cell) // 2, axis=0)

    _mutate(
        monkeypatch,
        "P0001",
        lambda d: _each_cell(d, "jointAngles", ("LHip", "LKnee", "LAnkle"), half_a_cycle_off),
    )
    with pytest.raises(SourceError, match="do not start at this leg's heel strike"):
        _read(_spec(root))


def test_cells_that_are_not_gait_cycles_are_refused(generated, monkeypatch) -> None:
    root, _ = generated

    def shorten(cell: np.ndarray) -> np.ndarray:  # the foundation's "each emg element is 300x1"
        return cell[:300]

    emg = tuple(f"{s}{m}" for s in "LR" for m in miniature.MUSCLES)
    _mutate(monkeypatch, "P0001", lambda d: _each_cell(d, "EMG", emg, shorten))
    with pytest.raises(SourceError, match="not single gait cycles"):
        _read(_spec(root))


def test_angle_cells_of_other_cycles_are_refused(generated, monkeypatch) -> None:
    root, _ = generated

    def drop_first(data: dict) -> None:
        condition = data["v0p8"]["k1000"]["jointAngles"]
        condition["RKnee"] = condition["RKnee"][1:]

    _mutate(monkeypatch, "P0001", drop_first)
    with pytest.raises(SourceError, match="RKnee has 1 cycles, the EMG 2"):
        _read(_spec(root))


def test_gait_events_that_disagree_with_the_cells_are_refused(generated, monkeypatch) -> None:
    root, _ = generated

    def stretch(data: dict) -> None:
        data["gaitEvents"]["v1p2"]["k1000"]["RHS"] = (
            data["gaitEvents"]["v1p2"]["k1000"]["RHS"] * 1.1
        )

    _mutate(monkeypatch, "P0001", stretch)
    with pytest.raises(SourceError, match=r"gaitEvents\.v1p2\.k1000\.RHS"):
        _read(_spec(root))


def test_gait_events_in_another_layout_only_give_a_note(generated, monkeypatch) -> None:
    root, _ = generated
    _mutate(monkeypatch, "P0001", lambda d: d.update(gaitEvents={"frames": np.arange(4.0)}))
    (recording, *_) = _read(_spec(root))
    assert any("gaitEvents layout not recognised" in n for n in recording.notes)


def test_a_sagittal_column_that_is_not_the_largest_is_refused(generated, monkeypatch) -> None:
    root, _ = generated
    names = tuple(f"{s}{j}" for s in "LR" for j in miniature.JOINTS)

    def swap(cell: np.ndarray) -> np.ndarray:
        return cell[:, [1, 0, 2]]

    _mutate(monkeypatch, "P0001", lambda d: _each_cell(d, "jointAngles", names, swap))
    with pytest.raises(SourceError, match="not the sagittal column 0"):
        _read(_spec(root))


def test_a_unit_struct_that_contradicts_the_magnitudes_is_refused(
    generated, tmp_path: Path, monkeypatch
) -> None:
    root, _ = generated
    path = tmp_path / "P0001.mat"
    content = scipy.io.loadmat(root / SOURCE / "P0001.mat")
    content["data"][0, 0]["P0001"][0, 0]["unit"][0, 0]["jointMoments"] = np.array(["Nm/kg"])
    scipy.io.savemat(path, {"data": content["data"]})
    spec = dataclasses.replace(_spec(root), url=str(path))
    with pytest.raises(SourceError, match="the stated unit is wrong"):
        _read(spec)
    _mutate(monkeypatch, "P0001", lambda d: d.pop("unit"))
    with pytest.raises(SourceError, match="no 'unit' struct"):
        _read(spec)


def test_internal_moments_with_the_external_sign_rule_are_refused(generated, monkeypatch) -> None:
    root, _ = generated
    names = tuple(f"{s}{j}" for s in "LR" for j in miniature.JOINTS)
    _mutate(monkeypatch, "P0001", lambda d: _each_cell(d, "jointMoments", names, np.negative))
    with pytest.raises(SourceError, match="ankle moment"):
        _read(_spec(root))


def test_rectified_emg_is_refused(generated, monkeypatch) -> None:
    root, _ = generated
    _mutate(monkeypatch, "P0001", lambda d: _each_cell(d, "EMG", ("RGA",), np.abs))
    with pytest.raises(SourceError, match="not raw EMG"):
        _read(_spec(root))


class TestContract(AdapterContract):
    driver = "angelidou"
    source = SOURCE

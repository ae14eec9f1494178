"""Grimmer stairs adapter on its miniature: the four files of a subject gathered by trailing
number, touchdown frames converted to time with the derived kinematics rate (the foundation's
EMG-sliced-with-kinematic-indices bug not repeated), canonical values, metadata, and a
SourceError for every assumption that breaks."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.io

import builder.datasets.grimmer.adapter as grimmer
from builder.conventions import MUSCLES
from builder.datasets import read_recordings
from builder.datasets.grimmer import miniature
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.pipeline.trial import process_trial
from builder.records import TrialSpec
from builder.store.staging import Staging, trial_key

from contract import AdapterContract
from helpers import ADD, ANKLE, FLEX, HIP, KNEE, MINIATURE_MAX_BYTES, MiniatureFactory, relocated

SOURCE = "grimmer"


@pytest.fixture(scope="module")
def generated(miniature: MiniatureFactory) -> tuple[Path, dict]:
    written = miniature(SOURCE)
    _SPECS[written.root] = written.specs()
    return written.root, written.facts


_SPECS: dict[Path, list[TrialSpec]] = {}  # the trial table of each generated root


def _specs(root: Path) -> list[TrialSpec]:
    return _SPECS[root]


def _spec(root: Path, number: str = "1", moved_to: Path | None = None) -> TrialSpec:
    """Subject ``number``'s trial-table row (for a copy of the data under ``moved_to``)."""
    spec = next(s for s in _specs(root) if s.subject == f"Kinematics_P{number}")
    if moved_to is None:
        return spec
    return relocated(spec, root, moved_to)


def _read(spec: TrialSpec):
    return read_recordings(spec, FileAccess())


def _mutate(monkeypatch, file_prefix: str, change: Callable[[dict], None]) -> None:
    """Apply ``change`` to what load_mat returns for the files whose name starts with
    ``file_prefix`` (e.g. 'EMG_P1.'), as if the file held that content."""
    real = grimmer.load_mat

    def load(path, url=None, variables=None):
        content = real(path, url, variables)
        if Path(path).name.startswith(file_prefix):
            change(content)
        return content

    monkeypatch.setattr(grimmer, "load_mat", load)


def _first_trial(content: dict, variable: str) -> dict:
    return next(t for cell in content[variable] for t in cell if isinstance(t, dict))


# --- the miniature through the real catalogue entry -------------------------------------------


def test_miniature_is_deterministic_and_small(generated, tmp_path: Path) -> None:
    first = generated[0] / SOURCE
    miniature.write(tmp_path)
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert len(files) == 12  # 3 subjects x 4 modalities
    assert all((tmp_path / f).read_bytes() == (first / f).read_bytes() for f in files)
    assert sum((tmp_path / f).stat().st_size for f in files) < MINIATURE_MAX_BYTES


def test_every_stride_is_built_at_its_touchdowns(generated, tmp_path: Path) -> None:
    root, facts = generated
    specs = _specs(root)
    assert len(specs) == 3  # one per subject; subject 1 does not pick up subject 10's files
    staging = Staging(str(tmp_path / "s.zarr"))
    expected_muscles = np.isin(MUSCLES, facts["muscles"])
    expected_joints = np.zeros((3, 3), bool)
    expected_joints[HIP] = expected_joints[KNEE, FLEX] = expected_joints[ANKLE, FLEX] = True
    tokens = {"stair_ascent": "TD_ascent", "stair_descent": "TD_descent"}
    found: dict[tuple[str, str, str, str], list[float]] = {}
    for spec in specs:
        outcome = process_trial(spec, key := trial_key(spec), staging)
        assert outcome.ok, outcome.reason
        assert outcome.event_source == "touchdowns"
        batch = staging.load_batch(key)
        cols = outcome.columns
        for i in range(batch.n_strides):
            where = (cols["subject"][i], cols["trial"][i], tokens[cols["activity"][i]])
            assert cols["subtrial"][i] == where[2].removeprefix("TD_")
            found.setdefault((*where, str(batch.side[i])), []).append(float(batch.start_s[i]))
        assert (batch.emg_mask == expected_muscles).all()
        assert (batch.kinematics_mask == expected_joints).all()
        assert (batch.kinetics_mask == expected_joints).all()
        assert set(cols["condition"]) <= {f"stair_inclination_{k}" for k in range(1, 7)}
        assert all(np.isnan(cols["incline_deg"]))
        assert spec.emg_kind == "raw"
    expected = {
        (*key.split("/"), token, side): heel_strikes[:-1]
        for key, directions in facts["trials"].items()
        for token, sides in directions.items()
        for side, heel_strikes in sides.items()
        if len(heel_strikes) > 1
    }
    assert found.keys() == expected.keys()
    for where, starts in found.items():
        np.testing.assert_allclose(sorted(starts), expected[where], atol=1e-6, err_msg=str(where))


def test_emg_is_cut_by_time_not_by_kinematic_frame_indices(generated, tmp_path: Path) -> None:
    """The foundation used the touchdown frame indices on the 1111 Hz EMG as well: its EMG
    strides were ~5.6x too short and from the wrong part of the trial. Here each stride's EMG
    spans its duration and the soleus fires in stance, the tibialis anterior in swing."""
    root, _ = generated
    spec = _spec(root, "10")
    staging = Staging(str(tmp_path / "s.zarr"))
    key = trial_key(spec)
    assert process_trial(spec, key, staging).ok
    batch = staging.load_batch(key)
    rows = np.diff(batch.emg_offsets)
    np.testing.assert_allclose(rows, batch.duration_s * 1000.0, atol=2)
    assert batch.duration_s.min() > 1.2  # stair strides, not 1/5.6 of them
    sol = batch.emg_envelope[:, :, MUSCLES.index("soleus")].mean(axis=0)
    ta = batch.emg_envelope[:, :, MUSCLES.index("tibialis_anterior")].mean(axis=0)
    assert sol[40:110].mean() > 2 * sol[140:190].mean()
    assert ta[140:190].mean() > ta[60:100].mean()
    (recording, *_) = _read(spec)
    assert "derived" in recording.notes[0] and "200 Hz" in recording.notes[0]


def test_values_are_canonical(generated, tmp_path: Path) -> None:
    root, _ = generated
    spec = _spec(root, "1")
    staging = Staging(str(tmp_path / "s.zarr"))
    outcome = process_trial(spec, key := trial_key(spec), staging)
    batch = staging.load_batch(key)
    ascent = np.array(outcome.columns["activity"]) == "stair_ascent"
    kin, mom = batch.kinematics[ascent].mean(axis=0), batch.kinetics[ascent].mean(axis=0)
    assert 50 < kin[:, KNEE, FLEX].max() < 110 and kin[:, KNEE, FLEX].argmax() > 100
    assert kin[0, HIP, FLEX] > 30  # hip well flexed at stair contact
    assert kin[:, ANKLE, FLEX].max() > 5
    assert -3.5 < mom[:, ANKLE, FLEX].min() < -1.0  # plantarflexor, N·m/kg
    assert mom[:40, HIP, FLEX].min() < -0.5  # hip extensor pulls the body up
    assert mom[:, HIP, ADD].min() < -0.3


# --- each assumption, broken ----------------------------------------------------------------


def test_several_files_for_one_subject_number_are_refused(generated, tmp_path: Path) -> None:
    root, _ = generated
    shutil.copytree(root / SOURCE, tmp_path / SOURCE)
    emg = tmp_path / SOURCE / "Preprocessed/EMG"
    shutil.copy(emg / "EMG_P1.mat", emg / "EMG_backup_01.mat")
    spec = _spec(root, "1", moved_to=tmp_path)
    with pytest.raises(SourceError, match="expected one Preprocessed/EMG/ file for subject 1"):
        _read(spec)
    (emg / "EMG_backup_01.mat").unlink()
    (emg / "EMG_P1.mat").unlink()
    with pytest.raises(SourceError, match="found 0"):
        _read(spec)


def test_trials_disagreeing_on_the_kinematics_rate_are_refused(generated, monkeypatch) -> None:
    root, _ = generated

    def cut_emg(content: dict) -> None:  # trial 2's EMG loses 15 %
        trial = [t for t in content["Emg"][5] if isinstance(t, dict)][1]
        for name in trial:
            trial[name] = trial[name][: int(0.85 * len(trial[name]))]

    _mutate(monkeypatch, "EMG_P10.", cut_emg)
    with pytest.raises(SourceError, match="disagrees between trials"):
        _read(_spec(root, "10"))


def test_a_catalogue_rate_that_contradicts_the_lengths_is_refused(generated) -> None:
    root, _ = generated
    spec = _spec(root, "2")
    options = {**spec.options, "rates": {**spec.options["rates"], "kinematics_hz": 100.0}}
    with pytest.raises(SourceError, match="kinematics_hz is 100 Hz but the lengths give 200"):
        _read(dataclasses.replace(spec, options=options))


def test_touchdowns_that_are_not_kinematic_frames_are_refused(generated, tmp_path: Path) -> None:
    """The touchdown file rewritten with EMG sample indices (what the foundation's slicing
    would have needed): they overrun the kinematics and are refused."""
    root, _ = generated
    shutil.copytree(root / SOURCE, tmp_path / SOURCE)
    path = tmp_path / SOURCE / "Processed/Touchdowns/Touchdowns_P2.mat"
    content = scipy.io.loadmat(path)
    struct = content["TD_ascent"][1, 0][0, 0]  # inclination 2, trial 1
    frames = struct["tdR"][0, 0]
    struct["tdR"][0, 0] = np.round((frames - 1) * 1111.1111 / 200.0) + 1
    scipy.io.savemat(path, {k: v for k, v in content.items() if not k.startswith("__")})
    with pytest.raises(SourceError, match="not kinematic frame indices"):
        _read(_spec(root, "2", moved_to=tmp_path))


def test_touchdown_intervals_that_are_no_strides_are_refused(generated, monkeypatch) -> None:
    root, _ = generated

    def halve(content: dict) -> None:
        trial = _first_trial(content, "TD_ascent")
        trial["tdL"] = np.round((trial["tdL"] - 1) / 5) + 1  # e.g. indices at a 5x lower rate

    _mutate(monkeypatch, "Touchdowns_P2.", halve)
    with pytest.raises(SourceError, match="not a stride"):
        _read(_spec(root, "2"))


def test_kinetics_of_another_length_are_refused(generated, monkeypatch) -> None:
    root, _ = generated

    def shorten(content: dict) -> None:
        trial = _first_trial(content, "Joint_Kinetics")
        for name in trial:
            trial[name] = trial[name][:-10]

    _mutate(monkeypatch, "Kinetics_P2.", shorten)
    with pytest.raises(SourceError, match="kinetics frames for"):
        _read(_spec(root, "2"))


def test_moment_units_are_decided_by_magnitude(generated, monkeypatch) -> None:
    root, facts = generated
    spec = _spec(root, "2")
    reference = _read(spec)[0].sides[0].kinetics.data

    def scale(factor: float):
        def change(content: dict) -> None:
            for cell in content["Joint_Kinetics"]:
                for trial in cell:
                    if isinstance(trial, dict):
                        for name in trial:
                            trial[name] = trial[name] * factor

        return change

    _mutate(monkeypatch, "Kinetics_P2.", scale(1000.0))  # N.mm/kg
    (recording, *_) = _read(spec)
    assert "moments in N.mm/kg" in " ".join(recording.notes)
    np.testing.assert_allclose(recording.sides[0].kinetics.data, reference, rtol=1e-9)
    monkeypatch.undo()
    mass = facts["body_mass_kg"]["2"]
    _mutate(monkeypatch, "Kinetics_P2.", scale(mass))  # N.m, and no mass in the files
    with pytest.raises(SourceError, match="need the body mass"):
        _read(spec)
    options = {**spec.options, "kinetics": {**spec.options["kinetics"], "body_mass": {"2": mass}}}
    (recording, *_) = _read(dataclasses.replace(spec, options=options))
    np.testing.assert_allclose(recording.sides[0].kinetics.data, reference, rtol=1e-9)


def test_external_moments_are_refused(generated, monkeypatch) -> None:
    root, _ = generated

    def flip(content: dict) -> None:
        trial = _first_trial(content, "Joint_Kinetics")
        for name in trial:
            trial[name] = -trial[name]

    _mutate(monkeypatch, "Kinetics_P2.", flip)
    with pytest.raises(SourceError, match="ankle moment"):
        _read(_spec(root, "2"))


def test_knee_extension_positive_is_refused(generated, monkeypatch) -> None:
    root, _ = generated

    def flip(content: dict) -> None:
        trial = _first_trial(content, "Joint_Kinematics")
        trial["knee_angle_flexion_r"] = -trial["knee_angle_flexion_r"]

    _mutate(monkeypatch, "Kinematics_P2.", flip)
    with pytest.raises(SourceError, match="knee flexion"):
        _read(_spec(root, "2"))


def test_rectified_emg_is_refused(generated, monkeypatch) -> None:
    root, _ = generated

    def rectify(content: dict) -> None:
        trial = _first_trial(content, "Emg")
        trial["sol_l"] = np.abs(trial["sol_l"])

    _mutate(monkeypatch, "EMG_P2.", rectify)
    with pytest.raises(SourceError, match="not raw EMG"):
        _read(_spec(root, "2"))


class TestContract(AdapterContract):
    driver = "grimmer"
    source = SOURCE

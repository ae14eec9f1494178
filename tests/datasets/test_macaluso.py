"""Macaluso 2020 through its real catalogue entry, on the miniature per-subject MAT v5 files:
strides and metadata per (group, trial), the perturbation condition, canonical values against
the simulation, EMG never paired blindly with cycles of another count, and the assumption
checks."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io

import builder.datasets.macaluso.adapter  # noqa: F401 (registers)
from builder.conventions import JOINTS, MUSCLES, PLANES, SAMPLES_PER_STRIDE
from builder.datasets import read_recordings
from builder.datasets.macaluso import miniature as gen
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.pipeline.trial import process_trial
from builder.records import TrialRecording, TrialSpec
from builder.store.staging import Staging, trial_key

from contract import AdapterContract
from helpers import (
    ANKLE,
    FLEX,
    HIP,
    KNEE,
    MINIATURE_MAX_BYTES,
    Miniature,
    MiniatureFactory,
    process_all,
    relocated,
)

SOURCE = "macaluso2020"
RECORDED = {"rectus_femoris", "tibialis_anterior", "biceps_femoris", "gastrocnemius_medialis"}
# The module's miniature (the catalogue's root) and the real entry's trial table over it.
GENERATED: list[tuple[Path, list[TrialSpec]]] = []


@pytest.fixture(scope="module")
def generated(miniature: MiniatureFactory) -> tuple[Path, dict]:
    written = miniature(SOURCE)
    GENERATED[:] = [(written.root, written.specs())]
    return written.root, written.facts


def _specs(root: Path) -> dict[str, TrialSpec]:
    """The real entry's trial table for files under ``root`` (expanded once: copies of the
    miniature differ only in their folder)."""
    generated_root, specs = GENERATED[0]
    return {s.subject: relocated(s, generated_root, root) for s in specs}


def _read(root: Path, subject: str) -> list[TrialRecording]:
    spec = _specs(root)[subject]
    return read_recordings(spec, FileAccess())


@pytest.fixture(scope="module")
def built(generated, tmp_path_factory: pytest.TempPathFactory):
    """Every subject file through builder.pipeline.trial.process_trial: {subject: (outcome, batch)}."""
    root, _ = generated
    processed = process_all(_specs(root), tmp_path_factory.mktemp("store"))
    return {subject: (outcome, batch) for subject, (_, outcome, batch) in processed.items()}


def _copy(generated, tmp_path: Path) -> Path:
    root, facts = generated
    return Miniature(SOURCE, root, facts).copy(tmp_path)


def _rewrite(root: Path, subject: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Load a subject file as nested dicts, change it, save it back (MAT v5)."""
    path = root / SOURCE / f"{subject}.mat"
    content = scipy.io.loadmat(path, simplify_cells=True)[subject]
    content.pop("subjectdetails")
    change(content)
    scipy.io.savemat(path, {subject: content}, oned_as="column")


def _trials(content: dict[str, Any]):
    for group in gen.GROUP_SIGN:
        for name, trial in content.get(group, {}).items():
            if "part" in name:
                yield group, name, trial


def _all(content: dict[str, Any], modality: str, change: Callable[[np.ndarray], np.ndarray]):
    """Apply ``change`` to every array of ``modality`` (emg, kinematics, kinetics)."""

    def walk(node: dict[str, Any]) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value)
            else:
                node[key] = change(np.asarray(value, dtype=float))

    for _, _, trial in _trials(content):
        walk(trial[modality])


# --- the miniature ---------------------------------------------------------------------------


def test_miniature_is_deterministic_and_small(generated, tmp_path: Path) -> None:
    root, facts = generated
    gen.write(tmp_path)
    total = 0
    for name in facts["files"].values():
        first = (root / SOURCE / name).read_bytes()
        assert (
            hashlib.sha256(first).digest()
            == hashlib.sha256((tmp_path / name).read_bytes()).digest()
        )
        assert first.startswith(b"MATLAB 5.0 MAT-file") and first[124:128] == b"\x00\x01IM"
        total += len(first)
    assert total < MINIATURE_MAX_BYTES


def test_files_have_the_documented_structure(generated) -> None:
    root, _ = generated
    mat = scipy.io.loadmat(root / SOURCE / "AB01.mat", simplify_cells=True)
    subject = mat["AB01"]
    assert set(subject) == {"subjectdetails", "downhill", "uphill", "level"}
    trial = subject["uphill"]["i7x5_part1"]
    assert trial["emg"]["right"]["RRF_norm"].shape == (3000, 3)  # points x strides
    assert trial["cycles"]["left"]["time"].shape == (150, 3)
    assert trial["kinematics"]["jointangles"]["left"]["knee"]["x_norm"].shape == (150, 3)
    assert set(trial["kinetics"]["jointmoment"]["right"]["ankle"]) == {"x_norm", "y_norm", "z_norm"}


# --- through the catalogue and the build task -----------------------------------------------


def test_stride_table_metadata_and_masks(built, generated) -> None:
    _, facts = generated
    total = 0
    for subject, (outcome, batch) in built.items():
        total += batch.n_strides
        columns = outcome.columns
        for i in range(batch.n_strides):
            trial = facts["trials"][f"{subject}/{columns['trial'][i]}"]
            assert columns["subject"][i] == subject
            assert columns["activity"][i] == trial["activity"]
            assert columns["incline_deg"][i] == trial["incline_deg"]
            assert columns["condition"][i] == "perturbation"
            assert math.isnan(columns["speed_mps"][i])  # not stated in the files
        for row in batch.emg_mask[batch.emg_mask.any(axis=1)]:
            assert {MUSCLES[m] for m in np.flatnonzero(row)} == RECORDED
        assert batch.kinematics_mask.all() and batch.kinetics_mask.all()
        per_trial = {}
        for i in range(batch.n_strides):
            key = (columns["trial"][i], str(batch.side[i]))
            count, with_emg = per_trial.get(key, (0, 0))
            per_trial[key] = (count + 1, with_emg + int(batch.emg_mask[i].any()))
        for (trial, side), (count, with_emg) in per_trial.items():
            expected = facts["trials"][f"{subject}/{trial}"]
            assert count == expected["strides"][side]
            assert with_emg == expected["emg_strides"][side]
    assert total == facts["strides"]


def test_emg_is_never_paired_blindly(generated) -> None:
    """The foundation truncated EMG and cycles to the shorter list; here the EMG of a side
    whose stride count differs is left out and its strides keep kinematics and kinetics."""
    root, _ = generated
    subject, group, trial, side = gen.SHORT_EMG
    recording = next(r for r in _read(root, subject) if r.meta["trial"] == f"{group}.{trial}")
    strides = [s for s in recording.sides if s.side == side]
    assert len(strides) == 3 and all(s.emg is None for s in strides)
    assert all(s.kinematics is not None and s.kinetics is not None for s in strides)
    assert any("never truncated" in n for n in recording.notes)


def test_canonical_values_match_the_simulation(built) -> None:
    outcome, batch = built["AB01"]
    truth = gen.truth("AB01", "downhill", "d7x5_part1")
    fraction = np.linspace(0.0, 1.0, gen.POINTS)
    target = np.linspace(0.0, 1.0, SAMPLES_PER_STRIDE)
    for side in "LR":
        rows = [
            i
            for i in range(batch.n_strides)
            if outcome.columns["trial"][i] == "downhill.d7x5_part1" and batch.side[i] == side
        ]
        expected = truth[side]
        np.testing.assert_allclose(batch.start_s[rows], expected.time[:3, 0])
        np.testing.assert_allclose(batch.duration_s[rows], np.ptp(expected.time[:3], axis=1))
        for k, i in enumerate(rows):
            for name, curves in (
                ("kinematics", expected.kinematics),
                ("kinetics", expected.kinetics),
            ):
                want = np.stack(
                    [
                        np.interp(target, fraction, curves[k][:, j, p])
                        for j in range(len(JOINTS))
                        for p in range(len(PLANES))
                    ],
                    axis=1,
                ).reshape(SAMPLES_PER_STRIDE, 3, 3)
                np.testing.assert_allclose(getattr(batch, name)[i], want, atol=0.05, err_msg=name)


def test_gait_is_physiological_in_canonical_conventions(built) -> None:
    fraction = np.linspace(0.0, 1.0, SAMPLES_PER_STRIDE)
    for outcome, batch in built.values():
        level = np.array([a == "walk" for a in outcome.columns["activity"]])
        kin = np.nanmean(batch.kinematics[level], axis=0)
        mom = np.nanmean(batch.kinetics[level], axis=0)
        assert 50 < kin[fraction > 0.6, KNEE, FLEX].max() < 70
        assert 20 < kin[0, HIP, FLEX] < 40
        assert mom[fraction < 0.15, HIP, FLEX].min() < -0.5
        assert mom[(fraction > 0.35) & (fraction < 0.6), HIP, FLEX].max() > 0.5
        assert -2.0 < mom[:, ANKLE, FLEX].min() < -1.2
        assert any("moments read as N.m/kg" in n for n in outcome.notes)


def test_single_stride_trials_and_missing_groups(generated) -> None:
    root, _ = generated
    recordings = _read(root, "AB02")
    assert {r.meta["trial"] for r in recordings} == {
        "level.i0_part1",
        "level.i0_part2",
        "uphill.i10_part1",
    }
    single = next(r for r in recordings if r.meta["trial"] == "level.i0_part2")
    assert sum(s.side == "R" for s in single.sides) == 1
    assert any("no downhill trials" in n for n in recordings[0].notes)


# --- assumption checks ---------------------------------------------------------------------


def _swap_knee_axes(content: dict[str, Any]) -> None:
    for _, _, trial in _trials(content):
        for side in ("left", "right"):
            knee = trial["kinematics"]["jointangles"][side]["knee"]
            knee["x_norm"], knee["y_norm"] = knee["y_norm"], knee["x_norm"]


def _short_emg_points(content: dict[str, Any]) -> None:
    _all(content, "emg", lambda a: a[:-1])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: _all(c, "kinetics", lambda a: 60.0 * a), "moment units"),
        (lambda c: _all(c, "kinetics", lambda a: -a), "[I] moments have Plug-in Gait signs"),
        (lambda c: _all(c, "emg", lambda a: a - a.mean()), "[C] EMG is a processed"),
        (_swap_knee_axes, "[F] x is the sagittal plane"),
        (_short_emg_points, "[C] 3000 EMG points per stride"),
    ],
)
def test_broken_assumptions_are_refused_by_name(generated, tmp_path: Path, change, message) -> None:
    root = _copy(generated, tmp_path)
    _rewrite(root, "AB02", change)
    with pytest.raises(SourceError) as error:
        _read(root, "AB02")
    assert message in error.value.problem and "none of 3 trial(s)" in error.value.problem
    _read(root, "AB01")  # the other subject's file is unaffected


def test_incline_must_match_its_group(generated, tmp_path: Path) -> None:
    root = _copy(generated, tmp_path)

    def mislabel(content: dict[str, Any]) -> None:
        content["uphill"]["d10_part1"] = content["uphill"].pop("i10_part1")

    _rewrite(root, "AB02", mislabel)
    recordings = _read(root, "AB02")
    assert len(recordings) == 2
    assert any(
        "left out uphill.d10_part1: incline -10 deg does not match its group's sign" in n
        for n in recordings[0].notes
    )


def test_a_file_without_the_subject_struct_is_refused(generated, tmp_path: Path) -> None:
    root = _copy(generated, tmp_path)
    path = root / SOURCE / "AB02.mat"
    scipy.io.savemat(path, {"a": np.zeros(3), "b": np.ones(2)})
    spec = _specs(root)["AB02"]
    outcome = process_trial(spec, trial_key(spec), Staging(str(tmp_path / "s.zarr")))
    assert not outcome.ok and "[C] no struct variable named 'AB02'" in outcome.reason


class TestContract(AdapterContract):
    driver = "macaluso"
    source = SOURCE

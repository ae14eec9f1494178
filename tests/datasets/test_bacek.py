"""Bacek et al. 2024 through its real catalogue entry, on the miniature of its segmented files:
envelopes and sagittal angles on their own gait events, test conditions (knee orthosis, speed,
cadence), right-leg strides re-cut at right heel strikes (the foundation bug not repeated),
and every assumption check."""

from __future__ import annotations

from pathlib import Path

import h5py
import matio
import numpy as np
import pytest

import builder.datasets.bacek.adapter  # noqa: F401 (registers)
from builder.conventions import MUSCLES
from builder.datasets.bacek import miniature as mini
from builder.errors import SourceError
from builder.formats.matlab import load_mat
from builder.pipeline.trial import process_trial
from builder.records import TrialSpec
from builder.store.staging import Staging, trial_key

from contract import AdapterContract
from helpers import (
    ANKLE,
    FLEX,
    HIP,
    KNEE,
    MINIATURE_MAX_BYTES,
    MiniatureFactory,
    spec_reader,
    trial_specs,
)

SOURCE = "bacek2024"
BACEK_MUSCLES = {
    "vastus_lateralis",
    "rectus_femoris",
    "tibialis_anterior",
    "biceps_femoris",
    "semitendinosus",
    "gastrocnemius_medialis",
    "gastrocnemius_lateralis",
    "gluteus_maximus",
}


@pytest.fixture(scope="module")
def generated(miniature: MiniatureFactory) -> tuple[Path, dict]:
    written = miniature(SOURCE)
    return written.root, written.facts


@pytest.fixture(scope="module")
def catalogue_specs(generated: tuple[Path, dict]) -> list[TrialSpec]:
    """The trial table of the real catalogue entry over the miniature (read once)."""
    return trial_specs(generated[0], SOURCE)


@pytest.fixture
def copy(miniature: MiniatureFactory, tmp_path: Path) -> Path:
    """A private copy of the miniature to break an assumption in."""
    return miniature(SOURCE).copy(tmp_path)


@pytest.fixture
def read(generated: tuple[Path, dict], catalogue_specs: list[TrialSpec]):
    """read(root, subject, **spec changes): the adapter's recordings of one subject's file
    under ``root`` (the miniature or a copy), through the catalogue's trial spec."""
    return spec_reader(catalogue_specs, generated[0], "Sub1")


def mutate(path: Path, variable: str, change) -> None:
    """Load a MAT file as plain Python, change it, write it back in the same MAT version."""
    tree = load_mat(str(path))[variable]
    change(tree)
    version = "v7.3" if h5py.is_hdf5(path) else "v7"
    matio.save_to_mat(str(path), {variable: tree}, version=version)


# --- the miniature ---------------------------------------------------------------------------


def test_miniature_is_deterministic_and_small(
    generated: tuple[Path, dict], tmp_path: Path
) -> None:
    facts = mini.write(tmp_path / "a")
    earlier = generated[0] / SOURCE  # the module's copy, written before: same bytes
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == [
        "Sub1_segEnergetics.mat",
        "Sub1_segMechanics.mat",
        "Sub2_segEnergetics.mat",
        "Sub2_segMechanics.mat",
        "Subjects_Info.mat",
    ]
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (earlier / name).read_bytes(), name
    assert sum((tmp_path / "a" / n).stat().st_size for n in files) < MINIATURE_MAX_BYTES
    assert facts["strides"] == {"L": 20, "R": 15}
    # The documented formats: mechanics MAT v5, energetics MAT v7.3 (HDF5).
    assert (tmp_path / "a" / "Sub1_segEnergetics.mat").read_bytes()[512:516] == b"\x89HDF"
    assert (tmp_path / "a" / "Sub1_segMechanics.mat").read_bytes()[512:516] != b"\x89HDF"


# --- through the catalogue -------------------------------------------------------------------


def test_builds_through_the_catalogue(
    generated: tuple[Path, dict], catalogue_specs: list[TrialSpec], tmp_path: Path
) -> None:
    facts = generated[1]
    staging = Staging(str(tmp_path / "s.zarr"))
    found = {"L": 0, "R": 0}
    for spec in catalogue_specs:
        assert spec.emg_kind == "envelope" and spec.activity == "walk"
        outcome = process_trial(spec, trial_key(spec), staging)
        assert outcome.ok, outcome.reason
        batch = staging.load_batch(trial_key(spec))
        columns = outcome.columns
        for side in "LR":
            found[side] += int(np.sum(batch.side == side))
        # Masks: the dataset's 8 muscles, sagittal angles only, no moments.
        present = {m for m, on in zip(MUSCLES, batch.emg_mask.all(axis=0), strict=True) if on}
        assert present == BACEK_MUSCLES and not (batch.emg_mask & ~batch.emg_mask[0]).any()
        expected = np.zeros((3, 3), bool)
        expected[:, FLEX] = True
        assert (batch.kinematics_mask == expected).all()
        assert not batch.kinetics_mask.any() and np.isnan(batch.kinetics).all()
        # Per-stride metadata from the test table.
        for i, trial in enumerate(columns["trial"]):
            test = facts["tests"][f"{spec.subject}/{trial}"]
            assert columns["speed_mps"][i] == test["speed_mps"]
            flag = "knee_orthosis" if test["orthosis"] else "free"
            assert columns["condition"][i].split(";")[0] == flag
            assert columns["incline_deg"][i] == 0.0 and columns["activity"][i] == "walk"
        # Canonical signs and magnitudes on legs whose knee is free.
        free = np.array(
            [
                not (facts["tests"][f"{spec.subject}/{t}"]["orthosis"] and s == "L")
                for t, s in zip(columns["trial"], batch.side, strict=True)
            ]
        )
        knee = batch.kinematics[free, :, KNEE, FLEX]
        assert (knee[:, 110:].max(axis=1) > 45).all() and (knee.max(axis=1) < 75).all()
        assert (np.abs(batch.kinematics[:, 0, HIP, FLEX] - 30) < 12).all()  # flexed at HS
        ankle = batch.kinematics[:, :, ANKLE, FLEX].mean(axis=0)
        assert ankle[80:105].max() > 5 and ankle[115:150].min() < -10  # dorsi- then plantar
        locked = batch.kinematics[~free, :, KNEE, FLEX]
        assert locked.size and np.ptp(locked, axis=1).max() < 5  # the orthosis' locked knee
    assert found == facts["strides"]


def test_right_strides_are_cut_at_right_heel_strikes(generated: tuple[Path, dict], read) -> None:
    """Not the foundation's bug: left-HS arrays of the right leg are not stretched over RHS
    intervals; right strides span RHS -> RHS and their curves are the right leg's cycle."""
    root, facts = generated
    raw = load_mat(str(root / SOURCE / "Sub1_segMechanics.mat"))["segMechanics"]["T3"]
    stored = raw["Angles"]["Knee_Right"][0]
    # In the file, the right knee's swing peak sits ~25 % into the LEFT cycle ...
    assert 0.1 < np.argmax(stored) / (stored.size - 1) < 0.4
    test = read(root)[0]
    rhs = (np.array(facts["tests"]["Sub1/T3"]["rhs_1khz"]) - 1) / 1000.0
    right = [s for s in test.sides if s.side == "R"]
    assert len(right) == facts["tests"]["Sub1/T3"]["strides"]["R"]
    for j, stride in enumerate(right):
        np.testing.assert_allclose(stride.heel_strikes_s, rhs[j : j + 2])
        knee = stride.kinematics.data[:, KNEE, FLEX]
        # ... and in a right stride it sits in the right leg's swing, ~75 % (stretching the
        # left-cut array over the RHS interval would leave it at ~25 %).
        assert 0.65 < np.argmax(knee) / (knee.size - 1) < 0.85
        ta = stride.emg.data[:, MUSCLES.index("tibialis_anterior")]
        peak = np.argmax(ta) / (ta.size - 1)
        assert peak < 0.1 or peak > 0.9  # TA bursts at the right heel strike


def test_recut_matches_arrays_cut_at_right_heel_strikes(
    generated: tuple[Path, dict], tmp_path: Path, read
) -> None:
    """Arrays written cut at right heel strikes (as the sample MATLAB code cuts them) are
    detected and used over their RHS intervals; the re-cut of left-cut arrays gives the same
    curves."""
    mini._write(tmp_path / SOURCE, right_cut="right", subjects=("Sub1",))
    recut = read(generated[0])[0]
    direct = read(tmp_path)[0]
    assert any("angles right-HS, EMG right-HS" in n for n in direct.notes)
    assert any("re-cut at right heel strikes" in n for n in recut.notes)
    by_start = {round(s.heel_strikes_s[0], 6): s for s in direct.sides if s.side == "R"}
    right = [s for s in recut.sides if s.side == "R"]
    assert right
    for stride in right:
        other = by_start[round(stride.heel_strikes_s[0], 6)]
        np.testing.assert_allclose(other.heel_strikes_s, stride.heel_strikes_s)
        a = stride.kinematics.data[:, :, FLEX]
        b = other.kinematics.data[:, :, FLEX]
        assert np.sqrt(np.mean((a - b) ** 2)) < 1.0  # degrees
        e, f = stride.emg.data, other.emg.data
        finite = np.isfinite(e).all(axis=0)
        assert (
            np.sqrt(np.mean((e[:, finite] - f[:, finite]) ** 2)) < 0.05 * np.abs(f[:, finite]).max()
        )


def test_test_conditions_and_orthosis(generated: tuple[Path, dict], read) -> None:
    root, facts = generated
    for subject in ("Sub1", "Sub2"):
        for recording in read(root, subject):
            test = facts["tests"][f"{subject}/{recording.meta['trial']}"]
            assert recording.meta["speed_mps"] == test["speed_mps"]
            pct = test["cadence_pct"]
            cadence = "preferred" if pct == 0 else f"{pct:+d}%"
            flag = "knee_orthosis" if test["orthosis"] else "free"
            assert recording.meta["condition"] == f"{flag};cadence={cadence}"
            assert recording.times_absolute and recording.emg_kind == "envelope"
            left = [s for s in recording.sides if s.side == "L"]
            lhs = (np.array(test["lhs_1khz"]) - 1) / 1000.0
            np.testing.assert_allclose([s.heel_strikes_s for s in left], np.c_[lhs[:-1], lhs[1:]])


# --- assumption checks -----------------------------------------------------------------------


def test_subject_info_must_agree_with_the_test_table(copy: Path, read) -> None:
    def swap(tree: dict) -> None:
        session = tree["Sub1"]["Session2"]
        session["ConditionOrder"] = 3 - session["ConditionOrder"]  # free <-> orthosis

    mutate(copy / SOURCE / "Subjects_Info.mat", "SubjectInfo", swap)
    with pytest.raises(SourceError, match=r"T3: the README test table says 1.1 m/s, free"):
        read(copy)


def test_gait_index_must_be_1khz_samples(copy: Path, read) -> None:
    def tenth(tree: dict) -> None:
        for name in ("LHS_1kHz", "RHS_1kHz"):
            tree["T3"]["GaitIndex"][name] = np.round(tree["T3"]["GaitIndex"][name] / 10.0)

    mutate(copy / SOURCE / "Sub1_segMechanics.mat", "segMechanics", tenth)
    with pytest.raises(
        SourceError, match=r"T3: median stride .* the index rate or the test mapping"
    ):
        read(copy)


def test_ambiguous_right_leg_cut_is_refused(copy: Path, read) -> None:
    def quarter(tree: dict) -> None:
        activity = tree["T3"]["EMG"]["Activity"]
        for name in [n for n in activity if n.startswith("Right_")]:
            activity[name] = np.roll(activity[name], 250, axis=1)  # a quarter cycle off

    mutate(copy / SOURCE / "Sub1_segEnergetics.mat", "segEnergetics", quarter)
    with pytest.raises(
        SourceError, match=r"T3: cannot tell which heel strikes cut the right-leg EMG"
    ):
        read(copy)


def test_angle_signs_are_checked(copy: Path, read) -> None:
    def flip(tree: dict) -> None:
        for name in ("Knee_Left", "Knee_Right"):
            tree["T3"]["Angles"][name] = -tree["T3"]["Angles"][name]

    mutate(copy / SOURCE / "Sub1_segMechanics.mat", "segMechanics", flip)
    with pytest.raises(SourceError, match=r"T3: L sagittal angle signs .*knee swing peak"):
        read(copy)


def test_cycle_counts_must_match_the_gait_index(copy: Path, read) -> None:
    def drop(tree: dict) -> None:
        for name, value in tree["T3"]["Angles"].items():
            tree["T3"]["Angles"][name] = value[:-1]

    mutate(copy / SOURCE / "Sub1_segMechanics.mat", "segMechanics", drop)
    with pytest.raises(
        SourceError, match=r"T3: Angles \(left\) has 3 cycles, GaitIndex.LHS_1kHz 4"
    ):
        read(copy)


def test_emg_must_be_an_envelope(copy: Path, read) -> None:
    def centre(tree: dict) -> None:
        activity = tree["T3"]["EMG"]["Activity"]
        activity["Left_TibAnt"] = activity["Left_TibAnt"] - activity["Left_TibAnt"].mean()

    mutate(copy / SOURCE / "Sub1_segEnergetics.mat", "segEnergetics", centre)
    with pytest.raises(SourceError, match=r"T3: EMG has negative values"):
        read(copy)
    with pytest.raises(SourceError, match=r"emg_kind 'raw' is not one the bacek driver reads"):
        read(copy, emg_kind="raw")


def test_missing_sibling_is_named(copy: Path, read) -> None:
    (copy / SOURCE / "Sub2_segEnergetics.mat").unlink()
    with pytest.raises(SourceError, match=r"sibling file not found .*Sub2_segEnergetics.mat"):
        read(copy, "Sub2")


class TestContract(AdapterContract):
    driver = "bacek"
    source = SOURCE

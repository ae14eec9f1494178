"""K2MUSE through its real catalogue entry, on the miniature of its processed MAT v7.3 files:
raw EMG on the dataset's own stride events, Plug-in Gait angles and moments in canonical
signs and units, conditions and cohorts, and every assumption check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import matio
import numpy as np
import pytest

import builder.datasets.k2muse.adapter  # noqa: F401 (registers)
from builder.conventions import MUSCLES
from builder.datasets.k2muse import miniature as mini
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

SOURCE = "k2muse2025"
RIGHT_MUSCLES = {
    "vastus_lateralis",
    "rectus_femoris",
    "vastus_medialis",
    "tibialis_anterior",
    "biceps_femoris",
    "semitendinosus",
    "gastrocnemius_medialis",
    "gastrocnemius_lateralis",
    "soleus",
}
LEFT_MUSCLES = {"rectus_femoris", "tibialis_anterior", "biceps_femoris", "gastrocnemius_lateralis"}
O1_TRIAL = ("InterDay", "LG_0", "S_0x5", "T1")


@pytest.fixture(scope="module")
def generated(miniature: MiniatureFactory) -> tuple[Path, dict]:
    written = miniature(SOURCE)
    return written.root, written.facts


@pytest.fixture(scope="module")
def catalogue_specs(generated: tuple[Path, dict]) -> list[TrialSpec]:
    return trial_specs(generated[0], SOURCE)


@pytest.fixture
def copy(miniature: MiniatureFactory, tmp_path: Path) -> Path:
    return miniature(SOURCE).copy(tmp_path)


@pytest.fixture
def read(generated: tuple[Path, dict], catalogue_specs: list[TrialSpec]):
    """read(root, subject, **spec changes): the adapter's recordings of one participant."""
    return spec_reader(catalogue_specs, generated[0], "O1")


def _to_mat(value: Any) -> Any:
    """load_mat's plain Python back to what mat-io writes (lists -> 1 × n cells)."""
    if isinstance(value, dict):
        return {k: _to_mat(v) for k, v in value.items()}
    if isinstance(value, list):
        cells = np.empty((1, len(value)), dtype=object)
        for i, item in enumerate(value):
            cells[0, i] = _to_mat(item)
        return cells
    return value


def mutate(path: Path, change, version: str | None = None) -> None:
    """Load a participant file as plain Python, change it, write it back."""
    tree = load_mat(str(path))
    change(tree)
    version = version or ("v7.3" if h5py.is_hdf5(path) else "v7")
    matio.save_to_mat(str(path), _to_mat(tree), version=version)


def o1(tree: dict, group: str = "OriginalData") -> dict:
    node = tree[group]
    for key in O1_TRIAL:
        node = node[key]
    return node


# --- the miniature ---------------------------------------------------------------------------


def test_miniature_is_deterministic_and_small(
    generated: tuple[Path, dict], tmp_path: Path
) -> None:
    facts = mini.write(tmp_path / "a")
    earlier = generated[0] / SOURCE  # the module's copy, written before: same bytes
    files = sorted(
        p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*.mat")
    )
    assert files == ["ProcessedData/O1.mat", "ProcessedData/P1.mat", "ProcessedData/P2.mat"]
    for name in files:
        a, b = (tmp_path / "a" / name).read_bytes(), (earlier / name).read_bytes()
        assert a == b, name
        assert a[512:516] == b"\x89HDF"  # MAT v7.3
    assert sum((tmp_path / "a" / n).stat().st_size for n in files) < MINIATURE_MAX_BYTES
    assert facts["strides"] == {"L": 8, "R": 9}


# --- through the catalogue -------------------------------------------------------------------


def test_builds_through_the_catalogue(
    generated: tuple[Path, dict], catalogue_specs: list[TrialSpec], tmp_path: Path
) -> None:
    facts = generated[1]
    staging = Staging(str(tmp_path / "s.zarr"))
    found = {"L": 0, "R": 0}
    seen_trials = set()
    assert [s.subject for s in catalogue_specs] == ["O1", "P1", "P2"]
    for spec in catalogue_specs:
        assert spec.emg_kind == "raw"
        outcome = process_trial(spec, trial_key(spec), staging)
        assert outcome.ok, outcome.reason
        batch = staging.load_batch(trial_key(spec))
        columns = outcome.columns
        for side in "LR":
            found[side] += int(np.sum(batch.side == side))
        for i, side in enumerate(batch.side):
            present = {m for m, on in zip(MUSCLES, batch.emg_mask[i], strict=True) if on}
            assert present == (LEFT_MUSCLES if side == "L" else RIGHT_MUSCLES)
            trial = facts["trials"][f"{spec.subject}/{columns['trial'][i]}"]
            seen_trials.add(f"{spec.subject}/{columns['trial'][i]}")
            assert columns["activity"][i] == trial["activity"]
            assert columns["speed_mps"][i] == trial["speed_mps"]
            assert columns["incline_deg"][i] == trial["incline_deg"]
            flags = {
                "InterDay": "inter_day",
                "Ideal": "ideal",
                "Fatigue": "fatigue",
                "ShiftUpward": "electrode_shift;shift=upward",
            }
            assert columns["condition"][i] == flags[trial["condition"]]
            population = "older_adults" if spec.subject.startswith("O") else "healthy"
            assert columns["population"][i] == population
        assert batch.kinematics_mask.all() and batch.kinetics_mask.all()
        # Canonical signs and magnitudes (SPEC: internal moments, flexion positive).
        kin, mom = batch.kinematics, batch.kinetics
        assert (
            (kin[:, 110:, KNEE, FLEX].max(axis=1) > 45) & (kin[:, :, KNEE, FLEX].max(axis=1) < 75)
        ).all()
        assert (np.abs(kin[:, 0, HIP, FLEX] - 27) < 12).all()  # hip flexed at heel strike
        ankle_moment = mom[:, :, ANKLE, FLEX].min(axis=1)
        assert ((ankle_moment < -1.0) & (ankle_moment > -2.2)).all()  # plantarflexor ~ -1.5
        hip = mom[:, :, HIP, FLEX].mean(axis=0)
        assert hip[:40].min() < -0.4 and hip[80:120].max() > 0.5  # extensor, then flexor
        ankle = kin[:, :, ANKLE, FLEX].mean(axis=0)
        assert ankle[80:110].max() > 5 and ankle[115:150].min() < -10
        # EMG kept its 2 kHz content through the chain: 1 kHz rows, ~duration x 1000 each.
        lengths = np.diff(batch.emg_offsets)
        np.testing.assert_allclose(lengths, batch.duration_s * 1000, atol=2)
    assert found == facts["strides"]
    assert seen_trials == {k for k, v in facts["trials"].items() if v["normalized"]}


def test_strides_are_the_dataset_events(generated: tuple[Path, dict], read) -> None:
    root = generated[0]
    events = o1(load_mat(str(root / SOURCE / "ProcessedData" / "O1.mat")), "NormalizedData")[
        "Events"
    ]
    (recording,) = read(root, "O1")
    for side in "LR":
        (part,) = [s for s in recording.sides if s.side == side]
        starts, ends = events[f"{side}StartFrame"], events[f"{side}EndFrame"]
        frames = np.append(starts, ends[-1])
        np.testing.assert_allclose(part.heel_strikes_s, (frames - 1) / 100.0)  # 1-based frames
        assert part.emg.rate_hz == 2000.0 and part.kinematics.rate_hz == 100.0
        assert part.emg.data.shape[1] == len(MUSCLES) and recording.mains_hz == 50.0
    # A stride missing in the middle of the events is not bridged.
    (fatigue, _) = read(root, "P2")
    left = [s for s in fatigue.sides if s.side == "L"]
    assert len(left) == 2 and all(len(s.heel_strikes_s) == 2 for s in left)
    assert any("1 gap(s)" in n for n in fatigue.notes)
    # A trial without NormalizedData is reported, not dropped silently.
    (ideal,) = read(root, "P1")
    assert any("Ideal/AS_10/S_0x5/T2: no NormalizedData" in n for n in ideal.notes)


def test_mat_v5_files_read_the_same(copy: Path, generated: tuple[Path, dict], read) -> None:
    mutate(copy / SOURCE / "ProcessedData" / "O1.mat", lambda tree: None, version="v7")
    assert not h5py.is_hdf5(copy / SOURCE / "ProcessedData" / "O1.mat")
    (v5,) = read(copy)
    (v73,) = read(generated[0])
    for a, b in zip(v5.sides, v73.sides, strict=True):
        np.testing.assert_allclose(a.heel_strikes_s, b.heel_strikes_s)
        np.testing.assert_allclose(a.kinetics.data, b.kinetics.data)
        np.testing.assert_array_equal(a.emg.data, b.emg.data)


# --- assumption checks -----------------------------------------------------------------------


def test_moments_in_nmm_per_kg_are_recognised(
    copy: Path, generated: tuple[Path, dict], read
) -> None:
    def to_nmm(tree: dict) -> None:
        moments = o1(tree)["Moments"]
        for name in moments:
            moments[name] = moments[name] * 1000.0

    mutate(copy / SOURCE / "ProcessedData" / "O1.mat", to_nmm)
    (recording,) = read(copy)
    (reference,) = read(generated[0])
    assert any("moments are N.mm/kg by magnitude" in n for n in recording.notes)
    for a, b in zip(recording.sides, reference.sides, strict=True):
        np.testing.assert_allclose(a.kinetics.data, b.kinetics.data, rtol=1e-6, atol=1e-9)


def test_implausible_moment_units_are_refused(copy: Path, read) -> None:
    def scale(tree: dict) -> None:
        moments = o1(tree)["Moments"]
        for name in moments:
            moments[name] = moments[name] * 40.0

    mutate(copy / SOURCE / "ProcessedData" / "O1.mat", scale)
    with pytest.raises(SourceError, match=r"moment units: .* fits neither N.m/kg nor N.mm/kg"):
        read(copy)


def test_internal_moments_in_the_file_are_refused(copy: Path, read) -> None:
    def internal(tree: dict) -> None:
        moments = o1(tree)["Moments"]
        for name in moments:
            moments[name] = -moments[name]

    mutate(copy / SOURCE / "ProcessedData" / "O1.mat", internal)
    with pytest.raises(SourceError, match=r"internal ankle moment .* moments are external"):
        read(copy)


def test_angle_signs_are_checked(copy: Path, read) -> None:
    def flip(tree: dict) -> None:  # knee extension positive, consistently in both structs
        angles = o1(tree)["Angles"]
        angles["LKneeAngles"] = angles["LKneeAngles"] * np.array([-1.0, 1.0, 1.0])
        resampled = o1(tree, "NormalizedData")["Angles"]["LKneeAngles"]
        resampled["rsGaitData"] = resampled["rsGaitData"] * np.array([-1.0, 1.0, 1.0])[:, None]

    mutate(copy / SOURCE / "ProcessedData" / "O1.mat", flip)
    with pytest.raises(SourceError, match=r"L angle signs .*knee swing peak"):
        read(copy)


def test_zero_based_event_frames_contradict_the_catalogue(copy: Path, read) -> None:
    def zero_based(tree: dict) -> None:
        events = o1(tree, "NormalizedData")["Events"]
        for name in events:
            events[name] = events[name] - 1.0

    mutate(copy / SOURCE / "ProcessedData" / "O1.mat", zero_based)
    with pytest.raises(SourceError, match=r"events are 0-based frames .* index_base 1"):
        read(copy)


def test_events_that_do_not_delimit_the_strides_are_refused(copy: Path, read) -> None:
    def shift(tree: dict) -> None:
        events = o1(tree, "NormalizedData")["Events"]
        for name in events:
            events[name] = events[name] + 6.0

    mutate(copy / SOURCE / "ProcessedData" / "O1.mat", shift)
    with pytest.raises(
        SourceError, match=r"event frames do not delimit the NormalizedData strides"
    ):
        read(copy)


def test_emg_column_split_is_checked(copy: Path, read) -> None:
    def left_first(tree: dict) -> None:
        trial = o1(tree)
        trial["EMGData"] = np.concatenate([trial["EMGData"][:, 9:], trial["EMGData"][:, :9]], 1)

    mutate(copy / SOURCE / "ProcessedData" / "O1.mat", left_first)
    with pytest.raises(
        SourceError, match=r"EMGData.Right\{1\} is not OriginalData EMG columns 1-9"
    ):
        read(copy)


def test_emg_must_be_raw(copy: Path, read) -> None:
    def rectify(tree: dict) -> None:
        trial = o1(tree)
        trial["EMGData"] = np.abs(trial["EMGData"])

    mutate(copy / SOURCE / "ProcessedData" / "O1.mat", rectify)
    with pytest.raises(SourceError, match=r"\[I\] OriginalData EMG is raw"):
        read(copy)
    with pytest.raises(SourceError, match=r"emg_kind 'envelope'"):
        read(copy, emg_kind="envelope")


def test_emg_units_by_magnitude(copy: Path, generated: tuple[Path, dict], read) -> None:
    def millivolts(tree: dict) -> None:
        trial = o1(tree)
        trial["EMGData"] = trial["EMGData"] * 1e-3

    mutate(copy / SOURCE / "ProcessedData" / "O1.mat", millivolts)
    with pytest.raises(SourceError, match=r"\[I\] EMG units unknown"):
        read(copy)
    (reference,) = read(generated[0])
    assert "EMG units: uV (by magnitude)" in reference.notes
    emg = reference.sides[0].emg.data
    recorded = np.isfinite(emg).all(axis=0)
    rms = np.sqrt(np.mean(emg[:, recorded] ** 2, axis=0))
    assert recorded.sum() == 4 and rms.max() < 1e-3  # volts


def test_tokens_and_cohorts_are_checked(copy: Path, read) -> None:
    (spec_path,) = [copy / SOURCE / "ProcessedData" / "O1.mat"]
    with pytest.raises(SourceError, match=r"participant 'X1' matches no cohort pattern"):
        read(copy, subject="X1")  # the same file under a participant id of no cohort

    def rename(tree: dict) -> None:
        tree["OriginalData"]["Tired"] = tree["OriginalData"].pop("InterDay")

    mutate(spec_path, rename)
    with pytest.raises(SourceError, match=r"condition 'Tired' is not one of"):
        read(copy)


class TestContract(AdapterContract):
    driver = "k2muse"
    source = SOURCE

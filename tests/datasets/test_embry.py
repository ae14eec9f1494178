"""Embry 2018 through its real catalogue entry, on the miniature ``InclineExperiment.mat``:
MATLAB v7.3 layout, strides and metadata per (subject, trial), canonical values against the
simulation, the foundation's bugs not repeated, and every assumption check."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

import builder.datasets.embry.adapter  # noqa: F401 (registers)
from builder.conventions import JOINTS, MUSCLES, PLANES, SAMPLES_PER_STRIDE
from builder.datasets import read_recordings
from builder.datasets.embry import miniature as gen
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.formats.matlab import load_mat
from builder.records import TrialSpec

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

SOURCE = "embry2018"
RECORDED = {"rectus_femoris", "tibialis_anterior", "biceps_femoris", "gastrocnemius_medialis"}
# The module's miniature (the catalogue's root) and the real entry's trial-table row over it.
GENERATED: list[tuple[Path, TrialSpec]] = []


@pytest.fixture(scope="module")
def generated(miniature: MiniatureFactory) -> tuple[Path, dict]:
    written = miniature(SOURCE)
    (spec,) = written.specs()
    GENERATED[:] = [(written.root, spec)]
    return written.root, written.facts


def _spec(root: Path) -> TrialSpec:
    """The real entry's trial-table row for the file under ``root`` (expanded once: copies of
    the miniature differ only in their folder)."""
    generated_root, spec = GENERATED[0]
    return relocated(spec, generated_root, root)


@pytest.fixture(scope="module")
def built(generated, tmp_path_factory: pytest.TempPathFactory):
    """The file through builder.pipeline.trial.process_trial: outcome and staged strides."""
    root, _ = generated
    return process_all({SOURCE: _spec(root)}, tmp_path_factory.mktemp("store"))[SOURCE]


def _copy(generated, tmp_path: Path) -> Path:
    root, facts = generated
    return Miniature(SOURCE, root, facts).copy(tmp_path)


def _mutate(root: Path, where: str, change: Callable[[str, np.ndarray], np.ndarray]) -> None:
    """Rewrite every dataset whose path contains ``where`` (in h5py orientation)."""
    with h5py.File(root / SOURCE / gen.FILE_NAME, "r+") as h5:
        names: list[str] = []
        h5["Gaitcycle"].visititems(
            lambda name, node: names.append(name) if isinstance(node, h5py.Dataset) else None
        )
        for name in names:
            if where in name:
                node = h5["Gaitcycle"][name]
                node[...] = change(name, node[()])


def _read(root: Path):
    spec = _spec(root)
    return read_recordings(spec, FileAccess())


# --- the miniature ---------------------------------------------------------------------------


def test_miniature_is_deterministic_and_small(generated, tmp_path: Path) -> None:
    root, _ = generated
    gen.write(tmp_path)
    first = (root / SOURCE / gen.FILE_NAME).read_bytes()
    again = (tmp_path / gen.FILE_NAME).read_bytes()
    assert hashlib.sha256(first).digest() == hashlib.sha256(again).digest()
    assert len(first) < MINIATURE_MAX_BYTES


def test_file_has_matlab_v73_layout(generated) -> None:
    root, _ = generated
    path = root / SOURCE / gen.FILE_NAME
    header = path.read_bytes()[:128]
    assert header.startswith(b"MATLAB 7.3 MAT-file") and header[124:128] == b"\x00\x02IM"
    with h5py.File(path, "r") as h5:
        assert h5.userblock_size == 512
        trial = h5["Gaitcycle/AB01/s1i10"]
        assert trial.attrs["MATLAB_class"] == b"struct"
        knee = trial["kinematics/jointangles/left/knee/x"]
        assert knee.attrs["MATLAB_class"] == b"double" and knee.shape == (4, 150)  # transposed
        description = trial["description"]
        assert description.attrs["MATLAB_class"] == b"cell"
        assert description.dtype == h5py.ref_dtype
        assert h5[description[0, 0]].attrs["MATLAB_class"] == b"char"
        assert h5["Gaitcycle/AB01/s1i10/stepsout/left"].attrs["MATLAB_empty"] == 1
    # mat-io (MATLAB's own reading rules) reads it as the same structure
    mat = load_mat(str(path))
    ab01 = mat["Gaitcycle"]["AB01"]
    assert ab01["subjectdetails"][:2] == ["gender", "age"]
    assert ab01["s1i10"]["description"] == ["speed", "incline", 1.0, 10.0]
    assert ab01["s1i10"]["cycles"]["left"]["time"].shape == (150, 4)
    assert set(mat["Continuous"]["AB01"]) == set(gen.TRIALS["AB01"])


# --- through the catalogue and the build task -----------------------------------------------


def test_one_recording_per_subject_and_trial(generated) -> None:
    root, facts = generated
    recordings = _read(root)
    assert len(recordings) == len(facts["trials"])
    for recording in recordings:
        meta = recording.meta
        expected = facts["trials"][f"{meta['subject']}/{meta['trial']}"]
        assert recording.emg_kind == "envelope" and recording.event_source == "pre_segmented"
        assert recording.times_absolute
        assert (meta["speed_mps"], meta["incline_deg"]) == (
            expected["speed_mps"],
            expected["incline_deg"],
        )
        for side in "LR":
            n = sum(s.side == side for s in recording.sides)
            assert n == expected["strides"][side]


def test_stride_table_and_masks(built, generated) -> None:
    _, facts = generated
    spec, outcome, batch = built
    assert outcome.n_strides == facts["strides"] == batch.n_strides
    columns = outcome.columns
    for i in range(batch.n_strides):
        trial = facts["trials"][f"{columns['subject'][i]}/{columns['trial'][i]}"]
        assert columns["activity"][i] == trial["activity"]
        assert columns["speed_mps"][i] == trial["speed_mps"]
        assert columns["incline_deg"][i] == trial["incline_deg"]
        assert columns["population"][i] == "healthy"
    assert spec.emg_kind == "envelope"
    # EMG: exactly the four recorded muscles, wherever EMG could be paired with the cycles
    with_emg = batch.emg_mask.any(axis=1)
    for row in batch.emg_mask[with_emg]:
        assert {MUSCLES[m] for m in np.flatnonzero(row)} == RECORDED
    assert with_emg.sum() == sum(sum(t["emg_strides"].values()) for t in facts["trials"].values())
    assert batch.kinematics_mask.all()
    kinetic = batch.kinetics_mask.all(axis=(1, 2))
    assert (kinetic | ~batch.kinetics_mask.any(axis=(1, 2))).all()  # a stride has all or none
    assert kinetic.sum() == sum(
        sum(t["kinetics_strides"].values()) for t in facts["trials"].values()
    )


def test_canonical_values_match_the_simulation(built) -> None:
    """x lands in the flexion slot (the foundation put it in adduction), moments come from
    jointmoment (not jointforce) in N·m/kg with internal signs, durations from cycles time."""
    _, outcome, batch = built
    subject, trial = "AB01", "s1x2d7x5"
    truth = gen.truth(subject, trial)
    rows = [
        i
        for i in range(batch.n_strides)
        if outcome.columns["subject"][i] == subject and outcome.columns["trial"][i] == trial
    ]
    fraction = np.linspace(0.0, 1.0, gen.POINTS)
    target = np.linspace(0.0, 1.0, SAMPLES_PER_STRIDE)
    for side in "LR":
        mine = [i for i in rows if batch.side[i] == side]
        expected = truth[side]
        np.testing.assert_allclose(batch.start_s[mine], expected.time[:, 0])
        np.testing.assert_allclose(batch.duration_s[mine], np.ptp(expected.time, axis=1))
        for k, i in enumerate(mine):
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
    _, outcome, batch = built
    level = np.array([a == "walk" for a in outcome.columns["activity"]])
    kin = np.nanmean(batch.kinematics[level], axis=0)
    mom = np.nanmean(batch.kinetics[level & batch.kinetics_mask.all(axis=(1, 2))], axis=0)
    fraction = np.linspace(0.0, 1.0, SAMPLES_PER_STRIDE)
    swing, stance = fraction > 0.6, fraction < 0.6
    assert 50 < kin[swing, KNEE, FLEX].max() < 70
    assert 20 < kin[0, HIP, FLEX] < 40  # flexed at heel strike
    assert kin[stance, ANKLE, FLEX].max() > 5  # dorsiflexion positive in stance
    assert mom[fraction < 0.15, HIP, FLEX].min() < -0.5  # extensor at loading response
    assert mom[(fraction > 0.35) & (fraction < 0.6), HIP, FLEX].max() > 0.5  # flexor late stance
    assert -2.0 < mom[:, ANKLE, FLEX].min() < -1.2  # plantarflexor, N·m/kg not N·mm/kg
    assert np.nanmax(np.abs(batch.kinetics)) < 5  # not forces, not N·mm
    env = batch.emg_envelope[batch.emg_mask.any(axis=1)]
    assert np.nanmin(env) >= 0


def test_quirks_of_the_real_file_are_handled(generated) -> None:
    root, _ = generated
    recordings = {(r.meta["subject"], r.meta["trial"]): r for r in _read(root)}
    outlier = recordings[gen.OUTLIER[:2]]
    assert sum(s.side == "R" for s in outlier.sides) == gen.N_STRIDES - 1
    assert any("stride(s) 2 left out (listed as outliers" in n for n in outlier.notes)
    padded = recordings[gen.EXTRA_ZERO_KINETICS[:2]]  # extra all-zero stride dropped
    assert all(s.kinetics is not None for s in padded.sides)
    zero_filled = recordings[gen.ZERO_KINETICS_STRIDE[:2]]
    left = [s for s in zero_filled.sides if s.side == "L"]
    assert np.isnan(left[-1].kinetics.data).all() and np.isfinite(left[0].kinetics.data).all()
    short = recordings[gen.SHORT_EMG[:2]]
    right = [s for s in short.sides if s.side == "R"]
    assert all(s.emg is None for s in right) and all(s.kinematics is not None for s in right)
    assert any("never truncated" in n for n in short.notes)
    for recording in recordings.values():
        assert any("moments read as N.mm/kg" in n for n in recording.notes)


# --- assumption checks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "change", "message"),
    [
        ("jointmoment", lambda n, v: 7.0 * v, "moment units"),
        ("jointmoment", lambda n, v: -v, "[I] moments have Plug-in Gait signs"),
        ("emgdata", lambda n, v: v - v.mean(), "[C] EMG is a processed (non-negative) envelope"),
        ("knee/x", lambda n, v: -v, "[I] knee flexion is positive"),
        ("ankle/x", lambda n, v: -v, "[I] ankle dorsiflexion is positive"),
    ],
)
def test_broken_assumptions_are_refused_by_name(
    generated, tmp_path: Path, where, change, message
) -> None:
    root = _copy(generated, tmp_path)
    _mutate(root, where, change)
    with pytest.raises(SourceError) as error:
        _read(root)
    assert message in error.value.problem and "none of 6 trial(s)" in error.value.problem


def test_x_must_be_the_sagittal_axis(generated, tmp_path: Path) -> None:
    """Swap x and y of every knee, as a file with the foundation's axis reading would be."""
    root = _copy(generated, tmp_path)
    with h5py.File(root / SOURCE / gen.FILE_NAME, "r+") as h5:
        for subject, trials in gen.TRIALS.items():
            for trial in trials:
                for side in ("left", "right"):
                    knee = h5[f"Gaitcycle/{subject}/{trial}/kinematics/jointangles/{side}/knee"]
                    x, y = knee["x"][()], knee["y"][()]
                    knee["x"][...], knee["y"][...] = y, x
    with pytest.raises(SourceError, match=r"\[F\] x is the sagittal plane \(in degrees\)"):
        _read(root)


def test_moments_in_n_m_per_kg_are_accepted_by_magnitude(generated, tmp_path: Path) -> None:
    root = _copy(generated, tmp_path)
    _mutate(root, "jointmoment", lambda n, v: v / 1000.0)
    recordings = _read(root)
    assert all(any("moments read as N.m/kg" in n for n in r.notes) for r in recordings)


def test_one_broken_trial_is_left_out_with_a_note(generated, tmp_path: Path) -> None:
    root = _copy(generated, tmp_path)
    with h5py.File(root / SOURCE / gen.FILE_NAME, "r+") as h5:
        description = h5["Gaitcycle/AB02/s1i0/description"]
        h5[description[1, 0]][...] = 1.2  # the speed value: the name says 1.0
    recordings = _read(root)
    assert len(recordings) == 5
    assert any(
        "left out AB02/s1i0: [C] trial name 's1i0' says speed 1" in n for n in recordings[0].notes
    )


def test_a_file_that_is_not_hdf5_is_refused(generated, tmp_path: Path) -> None:
    (tmp_path / SOURCE).mkdir()
    (tmp_path / SOURCE / gen.FILE_NAME).write_bytes(b"MATLAB 5.0 MAT-file" + b"\0" * 200)
    with pytest.raises(SourceError, match=r"not a MATLAB v7\.3"):
        _read(tmp_path)


class TestContract(AdapterContract):
    driver = "embry"
    source = SOURCE

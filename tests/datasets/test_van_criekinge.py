"""Van Criekinge 2023 through its real catalogue entry, on the miniature MAT files."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import builder.datasets.van_criekinge.adapter  # noqa: F401 (registers)
from builder.conventions import MUSCLES
from builder.datasets import read_recordings
from builder.datasets.miniatures import MINIATURES
from builder.datasets.van_criekinge import miniature as generator
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.pipeline.trial import process_trial
from builder.records import TrialSpec
from builder.store.staging import Staging, trial_key

from contract import AdapterContract
from helpers import (
    ADD,
    ANKLE,
    FLEX,
    HIP,
    KNEE,
    MINIATURE_MAX_BYTES,
    MiniatureFactory,
    process_all,
    trial_specs,
)

SOURCE = "van_criekinge2023"
EMG_SET = {
    "vastus_lateralis",
    "rectus_femoris",
    "tibialis_anterior",
    "biceps_femoris",
    "semitendinosus",
    "gastrocnemius_medialis",
}


def specs_for(root: Path) -> dict[str, TrialSpec]:
    return {s.population: s for s in trial_specs(root, SOURCE)}


@pytest.fixture(scope="module")
def generated(miniature: MiniatureFactory) -> tuple[Path, dict[str, Any]]:
    """This module's miniature (the session's, written once): (root, facts)."""
    written = miniature(SOURCE)
    return written.root, written.facts


@pytest.fixture(scope="module")
def built(generated, tmp_path_factory) -> dict[str, Any]:
    root, _ = generated
    processed = process_all(specs_for(root), tmp_path_factory.mktemp("store"))
    return {token: (outcome, batch) for token, (_, outcome, batch) in processed.items()}


def strides_of(outcome, batch, subject: str, side: str | None = None) -> np.ndarray:
    subjects = np.array(outcome.columns["subject"])
    pick = subjects == subject
    if side is not None:
        pick &= np.array(outcome.side) == side
    return np.flatnonzero(pick)


def test_generator_is_registered_deterministic_and_small(tmp_path: Path) -> None:
    assert MINIATURES[SOURCE] is generator.write
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    generator.write(tmp_path / "a")
    generator.write(tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(generator.FILES.values())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert sum(p.stat().st_size for p in (tmp_path / "a").iterdir()) < MINIATURE_MAX_BYTES


def test_strides_sides_and_metadata(generated, built) -> None:
    _, facts = generated
    for token, population in (("AbleBodiedAdults", None), ("PostStrokeAdults", "stroke")):
        outcome, batch = built[token]
        assert set(outcome.columns["activity"]) == {"walk"}
        assert set(outcome.columns["trial"]) == {"3"}
        for subject in {s for s in outcome.columns["subject"]}:
            sid = {"AB001": "AB01", "AB002": "AB02", "PS001": "PS01", "PS002": "PS02"}[subject]
            for side, n in facts["strides"][sid].items():
                assert strides_of(outcome, batch, subject, side).size == n, (subject, side)
        if population:
            assert set(outcome.columns["population"]) == {"stroke"}
    ab, _ = built["AbleBodiedAdults"]
    pops = dict(zip(ab.columns["subject"], ab.columns["population"], strict=True))
    assert pops == {"AB001": "healthy", "AB002": "older_adults"}  # 34 y / 71 y
    # Durations are (ICstop - ICstart) / 100 Hz and starts are ICstart / 100 (times known).
    assert all(0.9 < d < 1.6 for d in ab.duration_s)
    assert np.allclose(np.array(ab.start_s) * 100, np.round(np.array(ab.start_s) * 100))
    # EMG rows are the stride's real duration at 1 kHz (re-timed with 100 Hz frames).
    assert np.allclose(ab.emg_lengths, np.array(ab.duration_s) * 1000, atol=1)


def test_stroke_paretic_side_maps_to_left_right(generated, built) -> None:
    _, facts = generated
    outcome, batch = built["PostStrokeAdults"]
    conditions = np.array(outcome.columns["condition"])
    sides = np.array(outcome.side)
    subjects = np.array(outcome.columns["subject"])
    for subject, sid in (("PS001", "PS01"), ("PS002", "PS02")):
        paretic = facts["paretic"][sid]
        mine = subjects == subject
        assert set(sides[mine & np.char.endswith(conditions, "; paretic leg")]) == {paretic}
        assert paretic not in set(sides[mine & np.char.endswith(conditions, "non-paretic leg")])
    # The 0 s stride of PS02's non-paretic leg is left out, with a note.
    assert any("stop frame is not after its start" in n for n in outcome.notes)
    # The paretic leg walks with a stiffer knee than the other one (as generated).
    knee_peak = np.nanmax(batch.kinematics[:, 100:180, KNEE, FLEX], axis=1)
    paretic = np.char.endswith(conditions, "; paretic leg")
    assert knee_peak[paretic].mean() < knee_peak[~paretic].mean() - 8


def test_canonical_values(built) -> None:
    _, batch = built["AbleBodiedAdults"]
    kin = batch.kinematics
    assert batch.kinematics_mask.all()
    knee_peak = np.max(kin[:, 100:180, KNEE, FLEX], axis=1)
    assert ((knee_peak > 50) & (knee_peak < 75)).all()
    assert (np.argmax(kin[:, :, KNEE, FLEX], axis=1) > 110).all()  # in swing
    assert ((kin[:, 0, HIP, FLEX] > 20) & (kin[:, 0, HIP, FLEX] < 40)).all()  # at heel strike
    assert (kin[:, 80:100, ANKLE, FLEX].mean(axis=1) > 0).all()  # dorsiflexion in late stance
    # Frontal axis: hip adducts in stance (the y component), abducts in swing.
    assert (kin[:, 20:60, HIP, ADD].mean(axis=1) > kin[:, 140:180, HIP, ADD].mean(axis=1)).all()
    mom = batch.kinetics
    with_kinetics = batch.kinetics_mask.all(axis=(1, 2))
    assert with_kinetics.any()
    m = mom[with_kinetics]
    assert (m[:, 5:20, HIP, FLEX].mean(axis=1) < -0.2).all()  # internal extensor at loading
    assert (m[:, 95:115, HIP, FLEX].mean(axis=1) > 0.2).all()  # flexor in late stance
    ankle_min = m[:, :, ANKLE, FLEX].min(axis=1)
    assert ((ankle_min < -1.2) & (ankle_min > -2.2)).all()  # plantarflexor, N.m/kg


def test_kinetics_only_for_good_force_plate_strides(generated, built) -> None:
    _, facts = generated
    for token in ("AbleBodiedAdults", "PostStrokeAdults"):
        outcome, batch = built[token]
        has = batch.kinetics_mask.any(axis=(1, 2))
        assert np.isnan(batch.kinetics[~has]).all()
        for subject, sid in {
            "AB001": "AB01",
            "AB002": "AB02",
            "PS001": "PS01",
            "PS002": "PS02",
        }.items():
            if subject not in outcome.columns["subject"]:
                continue
            for side, n in facts["kinetic_strides"][sid].items():
                assert has[strides_of(outcome, batch, subject, side)].sum() == n


def test_emg_masks_never_zero_filled(built) -> None:
    outcome, batch = built["AbleBodiedAdults"]
    expected = np.array([m in EMG_SET for m in MUSCLES])
    for subject, present in (("AB001", expected), ("AB002", np.zeros(13, bool))):
        rows = strides_of(outcome, batch, subject)
        assert (batch.emg_mask[rows] == present).all(), subject
    absent = ~batch.emg_mask
    assert np.isnan(
        batch.emg_envelope[np.broadcast_to(absent[:, None, :], batch.emg_envelope.shape)]
    ).all()
    stroke, sbatch = built["PostStrokeAdults"]
    conditions = np.array(stroke.columns["condition"])
    subjects = np.array(stroke.columns["subject"])
    lost_ta = (subjects == "PS002") & np.char.endswith(conditions, "; paretic leg")
    ta = MUSCLES.index("tibialis_anterior")
    assert not sbatch.emg_mask[lost_ta, ta].any() and sbatch.emg_mask[~lost_ta, ta].all()


def test_emg_kind_is_the_catalogues(generated) -> None:
    root, _ = generated
    spec = specs_for(root)["AbleBodiedAdults"]
    recordings = read_recordings(spec, FileAccess())
    assert spec.emg_kind == "envelope"
    assert {r.emg_kind for r in recordings} == {"envelope"}


# --- assumption checks: a mutated file breaks one assumption -----------------------------


def mutated(tmp_path: Path, monkeypatch, change: Callable[[dict], None]) -> dict[str, TrialSpec]:
    """The miniature written with ``change`` applied to every subject record."""
    original = generator._write_mat

    def write(path: Path, variables: dict) -> None:
        subjects = variables["Sub"]
        for i in range(subjects.shape[1]):
            record = {name: subjects[0, i][name] for name in subjects.dtype.names}
            change(record)
            for name in subjects.dtype.names:
                subjects[0, i][name] = record[name]
        original(path, variables)

    monkeypatch.setattr(generator, "_write_mat", write)
    monkeypatch.setattr(generator, "_subject", _cached_subject)
    folder = tmp_path / SOURCE
    folder.mkdir()
    generator.write(folder)
    return specs_for(tmp_path)


_SIMULATED: dict[str, Any] = {}
_simulate_subject = generator._subject


def _cached_subject(sid: str, *args, **kwargs):
    """The generator's subject, simulated once per test session (mutations copy it)."""
    if sid not in _SIMULATED:
        _SIMULATED[sid] = _simulate_subject(sid, *args, **kwargs)
    return copy.deepcopy(_SIMULATED[sid])


def side_structs(record: dict) -> list[dict]:
    return [v for k, v in record.items() if k.endswith("Data")]


def read(spec: TrialSpec):
    return read_recordings(spec, FileAccess())


def test_locohub_axes_are_detected(tmp_path: Path, monkeypatch) -> None:
    def swap_y_z(record: dict) -> None:
        for data in side_structs(record):
            for name in ("HipAngles", "KneeAngles", "AnkleAngles"):
                data[name]["y"], data[name]["z"] = data[name]["z"], data[name]["y"]

    spec = mutated(tmp_path, monkeypatch, swap_y_z)["AbleBodiedAdults"]
    with pytest.raises(SourceError, match=r"axes conflict .*HipAngles\.z behaves as the frontal"):
        read(spec)


def test_moments_already_per_kg_are_refused(tmp_path: Path, monkeypatch) -> None:
    def newton_metres_per_kg(record: dict) -> None:
        for data in side_structs(record):
            for name in ("HipMoment", "KneeMoment", "AnkleMoment"):
                data[name] = {k: v / 1000.0 for k, v in data[name].items()}

    spec = mutated(tmp_path, monkeypatch, newton_metres_per_kg)["AbleBodiedAdults"]
    with pytest.raises(SourceError, match=r"N\.mm/kg .*peak \|hip flexion moment\| of 0\.00"):
        read(spec)


def test_internal_moments_are_refused(tmp_path: Path, monkeypatch) -> None:
    def internal(record: dict) -> None:
        for data in side_structs(record):
            for name in ("HipMoment", "KneeMoment", "AnkleMoment"):
                data[name] = {k: -v for k, v in data[name].items()}

    spec = mutated(tmp_path, monkeypatch, internal)["PostStrokeAdults"]
    with pytest.raises(SourceError, match=r"PiG external .*look external"):
        read(spec)


def test_emg_of_1000_points_is_refused(tmp_path: Path, monkeypatch) -> None:
    def thousand(record: dict) -> None:
        for data in side_structs(record):
            for name in ("GASnorm", "TAnorm", "RFnorm", "VLnorm", "BFnorm", "STnorm"):
                if data[name]["n"].size:
                    data[name]["n"] = data[name]["n"][:1000]

    spec = mutated(tmp_path, monkeypatch, thousand)["AbleBodiedAdults"]
    with pytest.raises(SourceError, match=r"1001 points per stride .*emg arrays have \[1000\]"):
        read(spec)


def test_signed_emg_is_not_an_envelope(tmp_path: Path, monkeypatch) -> None:
    def signed(record: dict) -> None:
        for data in side_structs(record):
            if data["TAnorm"]["n"].size:
                data["TAnorm"]["n"] = data["TAnorm"]["n"] - 0.5

    spec = mutated(tmp_path, monkeypatch, signed)["AbleBodiedAdults"]
    with pytest.raises(SourceError, match=r"EMG is raw, not an envelope"):
        read(spec)


def test_event_frames_must_be_100_hz(tmp_path: Path, monkeypatch) -> None:
    def rate(record: dict) -> None:
        record["meas_char"] = {**record["meas_char"], "VideoFrameRate": 120.0}

    spec = mutated(tmp_path, monkeypatch, rate)["PostStrokeAdults"]
    with pytest.raises(SourceError, match=r"event frames at 100 Hz: .*VideoFrameRate is 120"):
        read(spec)


def test_paretic_side_is_read_never_guessed(tmp_path: Path, monkeypatch) -> None:
    def drop_side(record: dict) -> None:
        record["sub_char"] = {k: v for k, v in record["sub_char"].items() if k != "ParSide"}

    spec = mutated(tmp_path, monkeypatch, drop_side)["PostStrokeAdults"]
    with pytest.raises(SourceError, match=r"paretic side: no subject has sub_char\.ParSide"):
        read(spec)


def test_a_subject_without_paretic_side_is_left_out_with_a_note(tmp_path, monkeypatch) -> None:
    def blank_first(record: dict) -> None:
        if record["sub_char"].get("ParSide") == "L":  # PS01
            record["sub_char"] = {**record["sub_char"], "ParSide": "?"}

    spec = mutated(tmp_path, monkeypatch, blank_first)["PostStrokeAdults"]
    recordings = read(spec)
    assert {r.meta["subject"] for r in recordings if r.sides} == {"PS002"}
    assert any("PS001 left out: no usable paretic side" in n for r in recordings for n in r.notes)
    spec = dataclasses.replace(spec)
    outcome = process_trial(spec, trial_key(spec), Staging(str(tmp_path / "s.zarr")))
    assert outcome.ok and set(outcome.columns["subject"]) == {"PS002"}
    assert any("PS001 left out" in n for n in outcome.notes)


def test_a_leg_whose_arrays_disagree_is_left_out_with_a_note(tmp_path, monkeypatch) -> None:
    def drop_column(record: dict) -> None:
        data = record.get("LsideSegm_LsideData")
        if data is not None and record["sub_char"]["Age"] < 50:  # AB01
            data["KneeAngles"] = {**data["KneeAngles"], "x": data["KneeAngles"]["x"][:, :-1]}

    spec = mutated(tmp_path, monkeypatch, drop_column)["AbleBodiedAdults"]
    recordings = read(spec)
    kept = {(r.meta["subject"], r.sides[0].side) for r in recordings if r.sides}
    assert kept == {("AB001", "R"), ("AB002", "L"), ("AB002", "R")}
    assert any(
        "AB001 L left out: KneeAngles.x has 2 strides, not 3" in n
        for r in recordings
        for n in r.notes
    )


def test_a_v73_hdf5_copy_reads_the_same(generated, built, tmp_path: Path, monkeypatch) -> None:
    """The real files may be MATLAB v7.3 (Sub is ~8 GB): the adapter reads both formats."""
    import h5py
    import matio

    original = generator._write_mat

    def write_v73(path: Path, variables: dict) -> None:
        original(path, variables)
        matio.save_to_mat(str(path), variables, version="v7.3")

    monkeypatch.setattr(generator, "_write_mat", write_v73)
    monkeypatch.setattr(generator, "_subject", _cached_subject)
    (tmp_path / SOURCE).mkdir()
    generator.write(tmp_path / SOURCE)
    spec = specs_for(tmp_path)["PostStrokeAdults"]
    assert h5py.is_hdf5(spec.url)
    outcome = process_trial(spec, trial_key(spec), Staging(str(tmp_path / "s.zarr")))
    assert outcome.ok, outcome.reason
    batch = Staging(str(tmp_path / "s.zarr")).load_batch(trial_key(spec))
    v5_outcome, v5_batch = built["PostStrokeAdults"]
    for name in ("subject", "trial", "population", "condition", "activity"):
        assert outcome.columns[name] == v5_outcome.columns[name]
    assert outcome.side == v5_outcome.side and outcome.duration_s == v5_outcome.duration_s
    np.testing.assert_array_equal(batch.kinematics, v5_batch.kinematics)
    np.testing.assert_array_equal(batch.emg_mask, v5_batch.emg_mask)


class TestContract(AdapterContract):
    driver = "van_criekinge"
    source = SOURCE

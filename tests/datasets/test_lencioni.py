"""Lencioni 2019 through its real catalogue entry, on the miniature per-subject MAT files."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.io import loadmat, savemat

import builder.datasets.lencioni.adapter  # noqa: F401 (registers)
from builder.conventions import MUSCLES
from builder.datasets import read_recordings
from builder.datasets.lencioni import miniature as generator
from builder.datasets.miniatures import MINIATURES
from builder.errors import SourceError
from builder.formats.files import FileAccess
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
    process_all,
    trial_specs,
)

SOURCE = "lencioni2019"
EMG_SET = {
    "rectus_femoris",
    "vastus_medialis",
    "tibialis_anterior",
    "biceps_femoris",
    "gastrocnemius_medialis",
    "soleus",
    "peroneus_longus",
    "gluteus_maximus",
}
ACTIVITY = {
    "Walking": "walk",
    "WalkingSlow": "walk",
    "WalkingFast": "walk",
    "ToeWalking": "walk",
    "HeelWalking": "walk",
    "StepUp": "stair_ascent",
    "StepDown": "stair_descent",
}


def specs_for(root: Path) -> dict[str, TrialSpec]:
    return {s.subject: s for s in trial_specs(root, SOURCE)}


@pytest.fixture(scope="module")
def generated(miniature: MiniatureFactory) -> tuple[Path, dict[str, Any]]:
    """This module's miniature (the session's, written once): (root, facts)."""
    written = miniature(SOURCE)
    return written.root, written.facts


@pytest.fixture(scope="module")
def built(generated, tmp_path_factory) -> dict[str, Any]:
    root, _ = generated
    processed = process_all(specs_for(root), tmp_path_factory.mktemp("store"))
    return {subject: (outcome, batch) for subject, (_, outcome, batch) in processed.items()}


def read(spec: TrialSpec):
    return read_recordings(spec, FileAccess())


def test_generator_is_registered_deterministic_and_small(tmp_path: Path) -> None:
    assert MINIATURES[SOURCE] is generator.write
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    generator.write(tmp_path / "a")
    generator.write(tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["S01.mat", "S02.mat", "S03.mat"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert sum(p.stat().st_size for p in (tmp_path / "a").iterdir()) < MINIATURE_MAX_BYTES


def test_one_stride_per_entry_on_the_recorded_side(generated, built) -> None:
    _, facts = generated
    for subject, (outcome, _) in built.items():
        assert outcome.n_strides == facts["entries"][subject]
        assert set(outcome.side) == {facts["side"][subject]}
        assert list(outcome.columns["activity"]) == [ACTIVITY[t] for t in facts["tasks"][subject]]
        assert list(outcome.columns["trial"]) == [
            f"Data{i:02d}" for i in range(1, outcome.n_strides + 1)
        ]
        assert all(np.isnan(outcome.start_s))  # lone cycles carry no time
        # Duration = (EMG samples - 1) / EMGFeq; EMG rows at 1 kHz match it.
        assert np.allclose(outcome.emg_lengths, np.array(outcome.duration_s) * 1000, atol=1)


def test_metadata_population_and_conditions(built) -> None:
    populations = {s: set(o.columns["population"]) for s, (o, _) in built.items()}
    assert populations == {"S01": {"healthy"}, "S02": {"children"}, "S03": {"healthy"}}
    outcome, _ = built["S01"]
    conditions = dict(zip(outcome.columns["trial"], outcome.columns["condition"], strict=True))
    assert conditions["Data01"] == "self-selected speed"
    assert conditions["Data05"] == "toe walking" and conditions["Data06"] == "heel walking"
    assert conditions["Data07"] == "step up"


def test_canonical_values_and_masks(built) -> None:
    for outcome, batch in built.values():
        walking = np.array(outcome.columns["condition"]) == "self-selected speed"
        kin = batch.kinematics[walking]
        knee_peak = kin[:, :, KNEE, FLEX].max(axis=1)
        assert ((knee_peak > 45) & (knee_peak < 75)).all()
        assert (np.argmax(kin[:, :, KNEE, FLEX], axis=1) > 110).all()
        assert ((kin[:, 0, HIP, FLEX] > 15) & (kin[:, 0, HIP, FLEX] < 40)).all()
        mom = batch.kinetics[walking]
        assert (mom[:, 5:20, HIP, FLEX].mean(axis=1) < -0.2).all()
        assert (mom[:, :, ANKLE, FLEX].min(axis=1) < -1.2).all()
        assert batch.kinematics_mask.all() and batch.kinetics_mask.all()
        expected = np.array([m in EMG_SET for m in MUSCLES])
        assert (batch.emg_mask == expected).all()
        assert np.isnan(batch.emg_envelope[:, :, ~expected]).all()
    # Toe walking is more plantarflexed than walking (the generator shifted it by -15 deg).
    outcome, batch = built["S01"]
    trials = list(outcome.columns["trial"])
    ankle = batch.kinematics[:, :, ANKLE, FLEX].mean(axis=1)
    assert ankle[trials.index("Data05")] < ankle[trials.index("Data01")] - 10


def test_emg_row_order_is_respected(built) -> None:
    """TA peaks in swing, soleus in terminal stance, in the canonical slots."""
    _, batch = built["S01"]
    env = batch.emg_envelope[:2]  # level walking
    ta, sol = MUSCLES.index("tibialis_anterior"), MUSCLES.index("soleus")
    assert env[:, 130:170, ta].mean() > 1.3 * env[:, 30:90, ta].mean()
    assert env[:, 60:110, sol].mean() > 2 * env[:, 130:180, sol].mean()


# --- assumption checks on a mutated copy of S01 ------------------------------------------------


def mutated(generated, tmp_path: Path, change: Callable[[dict], None]) -> TrialSpec:
    root, _ = generated
    spec = specs_for(root)["S01"]
    s = loadmat(spec.url)["s"][0, 0]
    fields = {name: s[name] for name in s.dtype.names}
    change(fields)
    target = tmp_path / "S01.mat"
    savemat(target, {"s": fields}, do_compression=True)
    return dataclasses.replace(spec, url=str(target), root=str(target.parent))


def each_entry(fields: dict, name: str, change: Callable[[np.ndarray], np.ndarray]) -> None:
    data = fields["Data"]
    for i in range(data.shape[1]):
        data[0, i][name] = change(data[0, i][name])


def test_swapped_emg_rows_are_refused(generated, tmp_path: Path) -> None:
    spec = mutated(
        generated, tmp_path, lambda f: each_entry(f, "EMG", lambda e: e[[1, 0, *range(2, 8)]])
    )
    with pytest.raises(SourceError, match=r"\[C\] EMG row order TA, SOL.* row 1 \(TA\)"):
        read(spec)


def test_raw_signed_emg_disagrees_with_envelope(generated, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    spec = mutated(
        generated,
        tmp_path,
        lambda f: each_entry(f, "EMG", lambda e: e * rng.standard_normal(e.shape)),
    )
    with pytest.raises(SourceError, match=r"Data\(i\)\.EMG is processed: the EMG is raw"):
        read(spec)
    # With emg_kind raw the same file is accepted as raw EMG.
    recordings = read(dataclasses.replace(spec, emg_kind="raw"))
    assert {r.emg_kind for r in recordings} == {"raw"}


def test_rectified_unsmoothed_emg_is_not_an_envelope(generated, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    spec = mutated(
        generated,
        tmp_path,
        lambda f: each_entry(f, "EMG", lambda e: np.abs(e * rng.standard_normal(e.shape))),
    )
    with pytest.raises(SourceError, match=r"the EMG is rectified, not an envelope"):
        read(spec)


def test_recorded_side_is_read_never_guessed(generated, tmp_path: Path) -> None:
    spec = mutated(generated, tmp_path, lambda f: f.pop("Side"))
    with pytest.raises(SourceError, match=r"\[I\] the recorded \(dominant\) side .*s\.Side"):
        read(spec)


def test_moment_units_are_decided_by_magnitude(generated, built, tmp_path: Path) -> None:
    spec = mutated(generated, tmp_path, lambda f: each_entry(f, "Mom", lambda m: m * 1000.0))
    outcome = process_trial(spec, trial_key(spec), Staging(str(tmp_path / "s.zarr")))
    assert outcome.ok, outcome.reason
    assert any("moment units decided by magnitude: N.mm/kg" in n for n in outcome.notes)
    batch = Staging(str(tmp_path / "s.zarr")).load_batch(trial_key(spec))
    _, original = built["S01"]
    np.testing.assert_allclose(batch.kinetics, original.kinetics, rtol=1e-5, atol=1e-5)


def test_moments_in_newton_metres_use_the_body_mass(generated, built, tmp_path: Path) -> None:
    mass = 74.0  # S01
    spec = mutated(generated, tmp_path, lambda f: each_entry(f, "Mom", lambda m: m * mass))
    recordings = read(spec)
    assert any("decided by magnitude: N.m " in n for r in recordings for n in r.notes)
    spec = mutated(
        generated, tmp_path, lambda f: (each_entry(f, "Mom", lambda m: m * mass), f.pop("Mass"))
    )
    with pytest.raises(SourceError, match=r"need the body mass"):
        read(spec)


def test_undecidable_or_external_moments_are_refused(generated, tmp_path: Path) -> None:
    spec = mutated(generated, tmp_path, lambda f: each_entry(f, "Mom", lambda m: m * 0.05))
    with pytest.raises(SourceError, match=r"moment units unknown and not decidable"):
        read(spec)
    spec = mutated(generated, tmp_path, lambda f: each_entry(f, "Mom", lambda m: -m))
    with pytest.raises(SourceError, match=r"internal sign: .*look external"):
        read(spec)


def test_time_normalised_emg_is_refused(generated, tmp_path: Path) -> None:
    def normalise(emg: np.ndarray) -> np.ndarray:
        grid = np.linspace(0, 1, 101)
        phase = np.linspace(0, 1, emg.shape[1])
        return np.stack([np.interp(grid, phase, row) for row in emg])

    spec = mutated(generated, tmp_path, lambda f: each_entry(f, "EMG", normalise))
    with pytest.raises(SourceError, match=r"EMG looks time-normalised"):
        read(spec)


def test_wrong_angle_shapes_are_refused(generated, tmp_path: Path) -> None:
    spec = mutated(generated, tmp_path, lambda f: each_entry(f, "Ang", lambda a: a[:, :50]))
    with pytest.raises(SourceError, match=r"\[C\] Data\(1\)\.Ang is >= 12 rows x 101 points"):
        read(spec)
    # A transposed copy (101 x 12) is unambiguous and accepted.
    spec = mutated(generated, tmp_path, lambda f: each_entry(f, "Ang", lambda a: a.T))
    assert len(read(spec)) == 8


def test_emg_at_another_rate_keeps_every_channel(generated, built, tmp_path: Path) -> None:
    """EMGFeq 2000 Hz with cycles that are not whole milliseconds long: EMG still present."""

    def upsample(fields: dict) -> None:
        fields["EMGFeq"] = np.array([[2000.0]])

        def to_2k(emg: np.ndarray) -> np.ndarray:
            n = emg.shape[1]
            fine = np.linspace(0, n - 1, 2 * n)  # (2n - 1) / 2000 s: half a millisecond off
            return np.stack([np.interp(fine, np.arange(n), row) for row in emg])

        each_entry(fields, "EMG", to_2k)

    spec = mutated(generated, tmp_path, upsample)
    outcome = process_trial(spec, trial_key(spec), Staging(str(tmp_path / "s.zarr")))
    assert outcome.ok, outcome.reason
    batch = Staging(str(tmp_path / "s.zarr")).load_batch(trial_key(spec))
    expected = np.array([m in EMG_SET for m in MUSCLES])
    assert (batch.emg_mask == expected).all()
    original, _ = built["S01"]
    np.testing.assert_allclose(outcome.duration_s, original.duration_s, atol=1.01e-3)


class TestContract(AdapterContract):
    driver = "lencioni"
    source = SOURCE

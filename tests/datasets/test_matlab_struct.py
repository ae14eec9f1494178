"""The generic gait-cycle MATLAB struct adapter on a REAL file: 3dpredictsim's
ExperimentalData.mat (Falisse et al. 2019), through catalogs/experimental_data.yaml."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from scipy.io import loadmat, savemat

import builder.datasets.matlab_struct.adapter  # noqa: F401 (registers)
from builder.catalog import bundled_catalog, expand_trials, load_catalog
from builder.conventions import MUSCLES
from builder.datasets import read_recordings
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.formats.matlab import load_mat
from builder.pipeline.trial import process_trial
from builder.processing.checks import emg_signal_kind, moment_units_by_magnitude
from builder.records import TrialSpec
from builder.store.staging import Staging, trial_key

from contract import AdapterContract
from helpers import (
    ADD,
    ANKLE,
    FLEX,
    HIP,
    KNEE,
    REAL_DATA,
    REAL_DATA_MISSING,
    requires_real_data,
)

REAL_FILE = REAL_DATA / "ExperimentalData.mat"
# Source muscle -> canonical slot, as the catalogue maps them (adductor longus, TFL unused).
MAPPED = {
    "Hamstrings-lateralis": "biceps_femoris",
    "Hamstrings-medialis": "semitendinosus",
    "Tibialis-anterior": "tibialis_anterior",
    "Peroneus-longus": "peroneus_longus",
    "Peroneus-brevis": "peroneus_brevis",
    "Gastrocnemius-medialis": "gastrocnemius_medialis",
    "Gastrocnemius-lateralis": "gastrocnemius_lateralis",
    "Soleus": "soleus",
    "Vastus-lateralis": "vastus_lateralis",
    "Vastus-medialis": "vastus_medialis",
    "Rectus-femoris": "rectus_femoris",
    "Gluteus-medialis": "gluteus_medius",
}
BODY_MASS = 62.0


def real_spec(folder: Path = REAL_DATA) -> TrialSpec:
    catalog = load_catalog(bundled_catalog("experimental_data"), {"GAIT_REAL_DATA": str(folder)})
    (spec,), unavailable = expand_trials(catalog)
    assert unavailable == []
    return spec


def test_catalogue_is_valid_and_unavailable_without_the_data() -> None:
    catalog = load_catalog(bundled_catalog("experimental_data"), {"GAIT_REAL_DATA": "/nowhere"})
    source = catalog.sources["falisse2019_experimental"]
    assert source.entry.metadata.licence == "MIT"
    assert "Rapid predictive simulations" in source.entry.metadata.citation
    specs, unavailable = expand_trials(catalog)
    assert specs == [] and unavailable[0].source == "falisse2019_experimental"


def test_shared_checks_classify_signals_and_units() -> None:
    t = np.linspace(0, 1, 1001)
    envelope = (1 + np.sin(2 * np.pi * 2 * t))[:, None]
    noise = np.random.default_rng(0).standard_normal((1001, 1))
    assert emg_signal_kind([envelope])[0] == "envelope"
    assert emg_signal_kind([np.abs(noise)])[0] == "rectified"
    assert emg_signal_kind([noise])[0] == "raw"
    assert [moment_units_by_magnitude(p) for p in (1.1, 950.0, 70.0, 0.01)] == [
        "N.m/kg",
        "N.mm/kg",
        "N.m",
        None,
    ]


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    if not REAL_FILE.is_file():
        pytest.skip(REAL_DATA_MISSING)
    spec = real_spec()
    staging = Staging(str(tmp_path_factory.mktemp("store") / "s.zarr"))
    outcome = process_trial(spec, trial_key(spec), staging)
    assert outcome.ok, outcome.reason
    raw = load_mat(str(REAL_FILE))["ExperimentalData"]
    return spec, outcome, staging.load_batch(trial_key(spec)), raw


@requires_real_data
def test_eleven_right_cycles_with_derived_durations_and_speeds(real) -> None:
    _, outcome, _, raw = real
    assert outcome.n_strides == 11 and set(outcome.side) == {"R"}
    assert set(outcome.columns["subject"]) == {"subject1"}
    assert set(outcome.columns["activity"]) == {"walk"}
    durations = np.array(outcome.duration_s)
    assert ((durations > 0.95) & (durations < 1.15)).all()
    # Independent estimate: stride length over the mean forward pelvis velocity.
    q = raw["Q"]["subject1"]
    tx = q["Qdots"]["colheaders"].index("pelvis_tx")
    speed = q["Qdots"]["all"][:, tx, :].mean(axis=0)
    by_length = raw["StrideLength"]["subject1"]["all"] / speed
    np.testing.assert_allclose(durations, by_length, rtol=0.06)
    np.testing.assert_allclose(outcome.columns["speed_mps"], speed)
    assert all(np.isnan(outcome.start_s))  # durations but no times
    assert np.allclose(outcome.emg_lengths, durations * 1000, atol=1)


@requires_real_data
def test_kinematics_signs_and_values(real) -> None:
    _, _, batch, raw = real
    kin = batch.kinematics
    assert batch.kinematics_mask[:, HIP].all() and batch.kinematics_mask[:, :, FLEX].all()
    assert not batch.kinematics_mask[:, KNEE:, ADD:FLEX].any()  # only sagittal knee/ankle
    knee = kin[:, :, KNEE, FLEX]
    peak = knee.max(axis=1)
    assert ((peak > 55) & (peak < 75)).all()  # knee_angle is negative in flexion: negated
    assert (np.argmax(knee, axis=1) > 120).all()  # the peak is in swing (> 60 %)
    assert ((kin[:, 0, HIP, FLEX] > 20) & (kin[:, 0, HIP, FLEX] < 35)).all()  # at heel strike
    ankle = kin[:, :, ANKLE, FLEX]
    assert (ankle[:, 80:110].mean(axis=1) > 5).all()  # dorsiflexion in terminal stance
    assert (ankle[:, 120:140].min(axis=1) < -8).all()  # plantarflexion after toe off
    # Same numbers as the file (time-normalised 100 -> 200 points keeps the curve).
    q = raw["Q"]["subject1"]["Qs"]
    hip = q["all"][:, q["colheaders"].index("hip_flexion"), :].T
    np.testing.assert_allclose(kin[:, 0, HIP, FLEX], hip[:, 0], atol=1e-4)
    np.testing.assert_allclose(kin[:, -1, HIP, FLEX], hip[:, -1], atol=1e-4)


@requires_real_data
def test_torques_internal_per_kg(real) -> None:
    _, _, batch, raw = real
    mom = batch.kinetics
    assert batch.kinetics_mask[:, :, FLEX].all()
    assert (mom[:, 0:10, HIP, FLEX].mean(axis=1) < -0.2).all()  # extensor at loading
    assert (mom[:, 100:125, HIP, FLEX].max(axis=1) > 0.2).all()  # flexor in late stance
    assert (mom[:, 10:40, KNEE, FLEX].min(axis=1) < -0.2).all()  # knee extensor (flexion +)
    ankle_min = mom[:, :, ANKLE, FLEX].min(axis=1)
    assert ((ankle_min < -1.1) & (ankle_min > -1.9)).all()  # plantarflexor, N.m/kg
    assert (np.argmin(mom[:, :, ANKLE, FLEX], axis=1) > 80).all()  # in terminal stance
    t = raw["Torques"]["subject1"]
    ankle = t["all"][:, t["colheaders"].index("ankle_angle"), :].T / BODY_MASS
    np.testing.assert_allclose(mom[:, 0, ANKLE, FLEX], ankle[:, 0], atol=1e-5)


@requires_real_data
def test_emg_mask_is_the_muscles_with_data(real) -> None:
    _, _, batch, raw = real
    emg = raw["EMG"]["subject1"]
    names = emg["colheaders"]
    for k in range(11):
        recorded = {
            MAPPED[n]
            for i, n in enumerate(names)
            if n in MAPPED and np.isfinite(emg["all"][:, i, k]).all()
        }
        expected = np.array([m in recorded for m in MUSCLES])
        assert (batch.emg_mask[k] == expected).all(), k
        assert np.isnan(batch.emg_envelope[k][:, ~expected]).all()
        assert np.isfinite(batch.emg_envelope[k][:, expected]).all()
    assert not batch.emg_mask[:, MUSCLES.index("gluteus_maximus")].any()
    assert batch.emg_mask.sum() < 11 * 12  # some cycles miss muscles: masked, not zero


# --- assumption checks on mutated copies of the real file ---------------------------------


def mutated_copy(tmp_path: Path, change) -> TrialSpec:
    data = loadmat(str(REAL_FILE))
    change(data["ExperimentalData"][0, 0])
    savemat(tmp_path / "ExperimentalData.mat", {"ExperimentalData": data["ExperimentalData"]})
    return real_spec(tmp_path)


def block(root, *path: str):
    node = root
    for name in path:
        node = node[name][0, 0]
    return node


def read(spec: TrialSpec):
    return read_recordings(spec, FileAccess())


@requires_real_data
def test_wrong_knee_sign_is_refused(tmp_path: Path) -> None:
    def flip(root) -> None:  # knee_angle and its velocity, as a flexion-positive model has them
        block(root, "Q", "subject1", "Qs")["all"][:, 9, :] *= -1
        block(root, "Q", "subject1", "Qdots")["all"][:, 9, :] *= -1

    with pytest.raises(SourceError, match=r"knee flexion sign .* peak swing knee flexion"):
        read(mutated_copy(tmp_path, flip))


@requires_real_data
def test_torques_in_the_wrong_unit_are_refused(tmp_path: Path) -> None:
    def to_nmm(root) -> None:
        block(root, "Torques", "subject1")["all"][:] *= 1000

    with pytest.raises(SourceError, match=r"kinetics units/body mass/sign"):
        read(mutated_copy(tmp_path, to_nmm))


@requires_real_data
def test_cycles_of_the_other_leg_are_refused(tmp_path: Path) -> None:
    def shift(root) -> None:  # GRF of a cycle that starts half a cycle later
        grf = block(root, "GRFs", "subject1")["all"]
        grf[:] = np.roll(grf, 50, axis=0)

    with pytest.raises(SourceError, match=r"do not start at this leg's heel strike"):
        read(mutated_copy(tmp_path, shift))


@requires_real_data
def test_velocities_that_are_not_derivatives_are_refused(tmp_path: Path) -> None:
    def scramble(root) -> None:
        qdots = block(root, "Q", "subject1", "Qdots")["all"]
        qdots[:] = np.random.default_rng(0).permutation(qdots, axis=0)

    with pytest.raises(SourceError, match=r"velocities are not the time derivative"):
        read(mutated_copy(tmp_path, scramble))


@requires_real_data
def test_fixed_durations_are_an_option() -> None:
    spec = real_spec()
    events = {"durations_from": "fixed", "stride_duration_s": 1.1}
    options = {**spec.options, "events": events}
    recordings = read(dataclasses.replace(spec, options=options))
    assert len(recordings) == 11
    spans = [np.diff(r.sides[0].heel_strikes_s) for r in recordings]
    np.testing.assert_allclose(np.concatenate(spans), 1.1)


class TestContract(AdapterContract):
    driver = "matlab_struct"
    source = None  # reads a real file (../shared/data/real), not a miniature
    single_file = True

    @pytest.fixture(scope="class")
    @classmethod
    def specs(cls) -> list[TrialSpec]:
        if not REAL_FILE.is_file():
            pytest.skip(REAL_DATA_MISSING)
        return [real_spec()]

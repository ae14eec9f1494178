"""SIAT-LLMD adapter on its miniature, through the real ``siat_llmd2023`` catalogue entry:
rates from the Time column, label-file strides per Group, left-leg EMG with the TA merge,
canonical values, and every data assumption checked by breaking it."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

import builder.datasets.siat_llmd.adapter  # noqa: F401 (registers)
from builder.conventions import MUSCLES
from builder.datasets import read_recordings
from builder.datasets.siat_llmd.miniature import write
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.pipeline.trial import process_trial
from builder.records import TrialSpec
from builder.store.staging import Staging, trial_key

from contract import AdapterContract
from helpers import ADD, ANKLE, FLEX, HIP, KNEE, MINIATURE_MAX_BYTES, MiniatureFactory, relocated

SOURCE = "siat_llmd2023"
LEFT_MUSCLES = {
    "rectus_femoris",
    "vastus_medialis",
    "tibialis_anterior",
    "semitendinosus",
    "gastrocnemius_medialis",
    "gastrocnemius_lateralis",
    "soleus",
}


@pytest.fixture(scope="module")
def generated(miniature: MiniatureFactory) -> tuple[Path, dict]:
    """This module's miniature (the session's, written once): (root, facts)."""
    written = miniature(SOURCE)
    root, facts, specs = written.root, written.facts, written.specs()
    _SPECS[root] = {f"{s.subject}/{Path(s.url).name.split('_')[1]}": s for s in specs}
    return root, facts


_SPECS: dict[Path, dict[str, TrialSpec]] = {}


def _specs(root: Path) -> dict[str, TrialSpec]:
    """The trial table of the real catalogue entry over ``root`` (loaded once per root)."""
    return _SPECS[root]


def _copy(generated: tuple[Path, dict], tmp_path: Path, name: str = "Sub02/WAK") -> TrialSpec:
    """The spec of trial ``name`` over a copy of its subject's files in ``tmp_path``."""
    root, spec = generated[0], _specs(generated[0])[name]
    subject = root / SOURCE / "SIAT_LLMD20230404" / name.split("/")[0]
    shutil.copytree(subject, tmp_path / subject.relative_to(root))
    return relocated(spec, root, tmp_path)


def _with(spec: TrialSpec, group: str, **changes) -> TrialSpec:
    """``spec`` with catalogue ``args.<group>`` keys changed."""
    options = {**spec.options, group: {**spec.options[group], **changes}}
    return dataclasses.replace(spec, options=options)


def _file(root: Path, subject: str, movement: str, kind: str) -> Path:
    folder = "Data" if kind == "Data" else "Labels"
    return (
        root / SOURCE / "SIAT_LLMD20230404" / subject / folder / f"{subject}_{movement}_{kind}.csv"
    )


def _read(spec: TrialSpec):
    return read_recordings(spec, FileAccess())


def _built(spec: TrialSpec, tmp_path: Path):
    staging = Staging(str(tmp_path / "s.zarr"))
    outcome = process_trial(spec, trial_key(spec), staging)
    assert outcome.ok, outcome.reason
    return outcome, staging.load_batch(outcome.key)


def test_every_movement_file_is_a_trial_and_non_gait_ones_say_why(generated, tmp_path) -> None:
    specs = _specs(generated[0])
    assert sorted(specs) == ["Sub01/STDUP", "Sub01/UPS", "Sub01/WAK", "Sub02/WAK"]
    assert specs["Sub01/UPS"].activity == "stair_ascent"
    assert specs["Sub01/STDUP"].activity == "sit_to_stand"
    outcome = process_trial(specs["Sub01/STDUP"], "k", Staging(str(tmp_path / "s.zarr")))
    assert not outcome.ok and "non-gait" in outcome.reason and "A/R" in outcome.reason


def test_strides_follow_the_labels_per_group_and_leg(generated, tmp_path) -> None:
    root, facts = generated
    for name, spec in _specs(root).items():
        if name in facts["non_gait"]:
            continue
        _, batch = _built(spec, tmp_path / name.replace("/", "_"))
        for side in "LR":
            expected = facts["durations_s"][name][side]
            got = sorted(d for s, d in zip(batch.side, batch.duration_s, strict=True) if s == side)
            # Labels are sampled: heel strikes move by up to one sample (0.52 ms).
            np.testing.assert_allclose(got, sorted(expected), atol=1.1 / 1920)
        assert spec.emg_kind == "raw" and _read(spec)[0].emg_kind == "raw"
    # Sub02's two left groups are separate passes: their cycles are never joined into a third
    # stride across the gap (the foundation parser paired heel strikes across groups).
    _, batch = _built(_specs(root)["Sub02/WAK"], tmp_path / "gap")
    assert list(batch.side).count("L") == 2 and (batch.duration_s < 1.3).all()


def test_rate_comes_from_the_time_column(generated) -> None:
    root, facts = generated
    for name in ("Sub01/WAK", "Sub02/WAK"):
        (recording,) = _read(_specs(root)[name])
        rate = recording.sides[0].kinematics.rate_hz
        assert rate == pytest.approx(facts["rates_hz"][name.split("/")[0]], abs=0.01)
        assert any(f"{rate:.3f} Hz" in note for note in recording.notes)


def test_left_emg_slots_and_the_tibialis_anterior_merge(generated) -> None:
    root, _ = generated
    (recording,) = _read(_specs(root)["Sub01/WAK"])
    left = [s for s in recording.sides if s.side == "L"]
    data = pd.read_csv(_file(root, "Sub01", "WAK", "Data"))
    emg = left[0].emg
    first = round((emg.start_s - data["Time"].iloc[0]) * emg.rate_hz)
    rows = data.iloc[first : first + emg.n_samples]
    ta = emg.data[:, MUSCLES.index("tibialis_anterior")]
    merged = (rows["sEMG: upper tibialis anterior"] + rows["sEMG: lower tibialis anterior"]) / 2
    np.testing.assert_allclose(ta, merged.to_numpy())
    np.testing.assert_allclose(
        emg.data[:, MUSCLES.index("semitendinosus")], rows["sEMG: semimembranosus"].to_numpy()
    )
    present = {m for i, m in enumerate(MUSCLES) if np.isfinite(emg.data[:, i]).all()}
    assert present == LEFT_MUSCLES  # tensor fascia lata has no slot
    assert all(s.emg is None for s in recording.sides if s.side == "R")  # left leg only


def test_canonical_values_masks_and_metadata(generated, tmp_path) -> None:
    root, _ = generated
    outcome, batch = _built(_specs(root)["Sub02/WAK"], tmp_path)
    assert set(outcome.columns["activity"]) == {"walk"}
    assert set(outcome.columns["population"]) == {"healthy"}
    for i, side in enumerate(batch.side):
        expected = {MUSCLES.index(m) for m in LEFT_MUSCLES} if side == "L" else set()
        assert set(np.flatnonzero(batch.emg_mask[i])) == expected
        present = {(HIP, ADD), (HIP, FLEX), (KNEE, FLEX), (ANKLE, FLEX)}
        assert set(zip(*np.nonzero(batch.kinematics_mask[i]), strict=True)) == present
        assert set(zip(*np.nonzero(batch.kinetics_mask[i]), strict=True)) == present
        knee, hip = batch.kinematics[i, :, KNEE, FLEX], batch.kinematics[i, :, HIP, FLEX]
        assert 50 < knee.max() < 75 and 110 < np.argmax(knee) < 170  # swing peak, 55-85 %
        assert 15 < hip[0] < 40 and hip[90:110].mean() < 0  # flexed at HS, extended at 50 %
        hip_m, ankle_m = batch.kinetics[i, :, HIP, FLEX], batch.kinetics[i, :, ANKLE, FLEX]
        assert -1.4 < hip_m[:40].min() < -0.6 and 0.6 < hip_m[80:130].max() < 1.5
        assert -2.0 < ankle_m.min() < -1.1  # plantarflexor, N·m/kg
    (stairs,) = _read(_specs(root)["Sub01/UPS"])
    assert {s.side for s in stairs.sides} == {"L", "R"}


def _mutated(spec: TrialSpec, kind: str, change) -> None:
    path = Path(spec.url)
    if kind == "Label":
        path = path.parent.parent / "Labels" / path.name.replace("_Data", "_Label")
    change(pd.read_csv(path, dtype=str, keep_default_na=False)).to_csv(path, index=False)


def _columns_times(factor: float, match):
    """A change that multiplies the columns whose name ``match`` accepts by ``factor``."""

    def change(table: pd.DataFrame) -> pd.DataFrame:
        scaled = {c: (factor * table[c].astype(float)).map(repr) for c in table if match(c)}
        return table.assign(**scaled)

    return change


@pytest.mark.parametrize(
    ("kind", "change", "message"),
    [
        ("Data", lambda t: t.drop(index=1500), "not uniformly sampled"),
        ("Label", lambda t: t.drop(index=1500), "time base"),
        (
            "Label",
            lambda t: t.assign(
                Group=t["Group"].replace({"6.0": "1.0", "7.0": "1.0", "1.0": "6.0"})
            ),
            "Group 1-5 right, 6-10 left: at the heel strikes.*the other leg strikes",
        ),
        (
            "Label",
            lambda t: t.assign(Group=t["Group"].replace({"7.0": "11.0"})),
            r"group\(s\) \[11\]",
        ),
    ],
    ids=["time-gap", "label-rows", "group-sides", "group-11"],
)
def test_broken_file_assumptions_are_named(generated, tmp_path, kind, change, message) -> None:
    spec = _copy(generated, tmp_path)
    _mutated(spec, kind, change)
    with pytest.raises(SourceError, match=message):
        _read(spec)


@pytest.mark.parametrize(
    ("group", "changes", "message"),
    [
        ("kinematics", {"sign": {"knee": -1}}, "OpenSim angle signs .* flexion is not positive"),
        ("kinematics", {"sign": {"ankle": -1}}, "dorsiflexion is not positive"),
        ("kinematics", {"sign": {"hip": -1}}, "hip is not flexed at heel strike"),
        ("kinetics", {"sign": {"*": -1}}, "internal moments.*external"),
        ("kinetics", {"units": "N.m"}, "declared N.m but their magnitude is that of N.m/kg"),
    ],
    ids=["knee-sign", "ankle-sign", "hip-sign", "external", "units"],
)
def test_conventions_that_contradict_the_data_are_named(generated, group, changes, message):
    spec = _with(_specs(generated[0])["Sub02/WAK"], group, **changes)
    with pytest.raises(SourceError, match=message):
        _read(spec)


def test_moments_in_newton_metres_need_and_use_the_body_mass(generated, tmp_path) -> None:
    reference = _read(_specs(generated[0])["Sub02/WAK"])[0]
    spec = _copy(generated, tmp_path)
    _mutated(spec, "Data", _columns_times(55.0, lambda c: c.startswith("Kinetic:")))
    with pytest.raises(SourceError, match=r"N.m .*body mass"):
        _read(spec)
    (recording,) = _read(_with(spec, "kinetics", body_mass={"Sub02": 55.0}))
    for got, want in zip(recording.sides, reference.sides, strict=True):
        np.testing.assert_allclose(got.kinetics.data, want.kinetics.data, rtol=1e-3, atol=1e-3)


def test_miniature_is_deterministic_and_small(generated, tmp_path) -> None:
    first, second = generated[0] / SOURCE, tmp_path / SOURCE
    write(second)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    assert sum((first / f).stat().st_size for f in files) < MINIATURE_MAX_BYTES


class TestContract(AdapterContract):
    driver = "siat_llmd"
    source = SOURCE
    refused: ClassVar = {"Sub01_STDUP_Data.csv": "non-gait movement"}

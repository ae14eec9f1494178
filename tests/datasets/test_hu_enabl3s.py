"""Hu/ENABL3S adapter on its miniature, through the real ``hu2018_enabl3s`` catalogue entry:
1-based event lists, per-stride activities from the Mode column (transitions included),
goniometer signs, bilateral EMG that needs no notch, and the data assumptions broken one by
one."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import builder.datasets.hu_enabl3s.adapter  # noqa: F401 (registers)
from builder.conventions import MUSCLES
from builder.datasets import read_recordings
from builder.datasets.hu_enabl3s.miniature import write
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.pipeline.trial import process_trial
from builder.records import TrialSpec
from builder.store.staging import Staging, trial_key

from contract import AdapterContract
from helpers import ANKLE, FLEX, KNEE, MINIATURE_MAX_BYTES, MiniatureFactory

SOURCE = "hu2018_enabl3s"
ACTIVITY = {"1": "walk", "2": "ramp_ascent", "5": "stair_descent", "transition": "transition"}
EMG = {
    "vastus_lateralis",
    "rectus_femoris",
    "tibialis_anterior",
    "biceps_femoris",
    "semitendinosus",
    "gastrocnemius_medialis",
    "soleus",
}


@pytest.fixture(scope="module")
def generated(miniature: MiniatureFactory) -> tuple[Path, dict, dict[str, TrialSpec]]:
    """This module's miniature (the session's, written once): (root, facts, specs by name)."""
    written = miniature(SOURCE)
    root, facts, specs = written.root, written.facts, written.specs()
    by_name = {Path(s.url).name.removesuffix("_post.csv"): s for s in specs}
    return root, facts, by_name


def _read(spec: TrialSpec):
    return read_recordings(spec, FileAccess())


def _copy(generated, tmp_path: Path, name: str = "AB156_Circuit_001") -> TrialSpec:
    spec = generated[2][name]
    target = tmp_path / Path(spec.url).name
    shutil.copy(spec.url, target)
    return dataclasses.replace(spec, url=str(target), root=str(target.parent))


def _edit(spec: TrialSpec, change) -> None:
    table = pd.read_csv(spec.url, dtype=str, keep_default_na=False)
    change(table).to_csv(spec.url, index=False)


def test_one_trial_per_circuit_with_strides_labelled_by_mode(generated, tmp_path) -> None:
    _, facts, specs = generated
    assert sorted(specs) == sorted(facts["circuits"])
    for name, spec in specs.items():
        assert spec.subject == name[:5] and spec.trial == "001" and spec.activity == "other"
        staging = Staging(str(tmp_path / f"{name}.zarr"))
        outcome = process_trial(spec, trial_key(spec), staging)
        assert outcome.ok, outcome.reason
        for side in "LR":
            got: dict[str, int] = {}
            for s, activity in zip(outcome.side, outcome.columns["activity"], strict=True):
                if s == side:
                    got[activity] = got.get(activity, 0) + 1
            expected = {ACTIVITY[k]: v for k, v in facts["circuits"][name]["strides"][side].items()}
            assert got == expected, (name, side)
        inclines = {
            a: i
            for a, i in zip(
                outcome.columns["activity"], outcome.columns["incline_deg"], strict=True
            )
        }
        assert inclines.get("ramp_ascent", 10.0) == 10.0 and inclines["walk"] == 0.0
        # the processed EMG is already notched: the hum detector finds nothing to notch
        assert not any("notch" in note for note in outcome.notes)


def test_heel_strikes_are_the_listed_1_based_samples(generated) -> None:
    _, _, specs = generated
    name = "AB185_Circuit_001"
    recordings = _read(specs[name])
    for side in "LR":
        got = sorted(
            {t for r in recordings for s in r.sides if s.side == side for t in s.heel_strikes_s}
        )
        table = pd.read_csv(specs[name].url)
        column = table["Left_Heel_Contact" if side == "L" else "Right_Heel_Contact"].dropna()
        np.testing.assert_allclose(got, (column.to_numpy() - 1) / 1000.0)
        assert all(r.emg_kind == "raw" for r in recordings)


def test_canonical_values_and_masks(generated, tmp_path) -> None:
    spec = generated[2]["AB156_Circuit_001"]
    staging = Staging(str(tmp_path / "s.zarr"))
    outcome = process_trial(spec, trial_key(spec), staging)
    batch = staging.load_batch(outcome.key)
    expected_emg = {MUSCLES.index(m) for m in EMG}
    for i, activity in enumerate(outcome.columns["activity"]):
        assert set(np.flatnonzero(batch.emg_mask[i])) == expected_emg
        assert set(zip(*np.nonzero(batch.kinematics_mask[i]), strict=True)) == {
            (KNEE, FLEX),
            (ANKLE, FLEX),
        }  # goniometers only: no hip angle
        assert not batch.kinetics_mask[i].any()  # no kinetics
        knee, ankle = batch.kinematics[i, :, KNEE, FLEX], batch.kinematics[i, :, ANKLE, FLEX]
        if activity == "walk":
            assert 50 < knee.max() < 80 and 110 < np.argmax(knee) < 170  # swing, 55-85 %
            assert ankle[110:150].min() < ankle[70:110].max() - 10  # plantarflexion after TO


def test_an_index_list_read_as_1_based_when_it_is_0_based_is_caught(generated, tmp_path) -> None:
    spec = _copy(generated, tmp_path)

    def shift(table: pd.DataFrame) -> pd.DataFrame:
        columns = ["Right_Heel_Contact", "Right_Toe_Off", "Left_Heel_Contact", "Left_Toe_Off"]
        shifted = {
            c: table[c].map(lambda v: "" if v == "" else str(int(float(v)) - 1)) for c in columns
        }
        return table.assign(**shifted)

    _edit(spec, shift)
    with pytest.raises(
        SourceError, match=r"1-based event indices: .* as if the indices were 0-based"
    ):
        _read(spec)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda t: t.assign(
                Left_Heel_Contact=t["Left_Heel_Contact"].replace({t["Left_Heel_Contact"][0]: "0"})
            ),
            "1-based sample indices: 'Left_Heel_Contact' holds 0",
        ),
        (
            lambda t: t.assign(Left_Toe_Off=t["Left_Toe_Off"].where(t.index != 40, "5000")),
            "first rows then blanks",
        ),
        (lambda t: t.assign(Mode=t["Mode"].replace({"2": "7"})), r"Mode codes .*found \[7.0\]"),
        (
            lambda t: t.assign(
                Right_Heel_Contact_Trigger=t["Right_Heel_Contact_Trigger"].replace({"1311": "1391"})
            ),
            "trigger codes are not 4-digit mode codes",
        ),
        (
            lambda t: t.assign(Right_Knee=(-t["Right_Knee"].astype(float)).map(repr)),
            "goniometer signs .*R leg",
        ),
        (
            lambda t: t.assign(Left_Knee=(np.deg2rad(t["Left_Knee"].astype(float))).map(repr)),
            "knee flexion spans",
        ),
    ],
    ids=["index-0", "not-a-list", "mode-code", "trigger", "knee-sign", "radians"],
)
def test_broken_assumptions_are_named(generated, tmp_path, change, message) -> None:
    spec = _copy(generated, tmp_path)
    _edit(spec, change)
    with pytest.raises(SourceError, match=message):
        _read(spec)


def test_miniature_is_deterministic_and_small(generated, tmp_path) -> None:
    first, second = generated[0] / SOURCE, tmp_path / SOURCE
    write(second)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    assert sum((first / f).stat().st_size for f in files) < MINIATURE_MAX_BYTES


class TestContract(AdapterContract):
    driver = "hu_enabl3s"
    source = SOURCE

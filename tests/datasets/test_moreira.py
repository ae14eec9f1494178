"""Moreira adapter on its miniature, through the real ``moreira2021`` (MAT copy) and
``moreira2021_ascii`` entries: cycle-normalised strides with their durations, speeds, the
envelope (never the aliased filtered EMG), torque units and signs, both copies agreeing, and
the data assumptions broken one by one."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import builder.datasets.moreira.adapter  # noqa: F401 (registers)
from builder.conventions import MUSCLES
from builder.datasets import read_recordings
from builder.datasets.moreira import miniature as generator
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.pipeline.trial import process_trial
from builder.records import TrialSpec
from builder.store.staging import Staging, trial_key

from contract import AdapterContract
from helpers import ANKLE, FLEX, HIP, KNEE, MINIATURE_MAX_BYTES, ROT, MiniatureFactory, trial_specs

SOURCES = ("moreira2021", "moreira2021_ascii")
EMG = {"vastus_lateralis", "tibialis_anterior", "biceps_femoris", "gastrocnemius_lateralis"}


@pytest.fixture(scope="module")
def generated(miniature: MiniatureFactory) -> tuple[Path, dict, list[TrialSpec]]:
    """This module's miniature (the session's, written once): (root, facts, the specs
    of both entries)."""
    written = miniature("moreira2021")
    return written.root, written.facts, written.specs(*SOURCES)


def _read(spec: TrialSpec):
    return read_recordings(spec, FileAccess())


def _with(spec: TrialSpec, group: str, **changes) -> TrialSpec:
    return dataclasses.replace(
        spec, options={**spec.options, group: {**spec.options[group], **changes}}
    )


def _spec(generated, subject: str, side: str | None = None) -> TrialSpec:
    return next(
        s for s in generated[2] if s.subject == subject and (side is None or f"/{side}/" in s.url)
    )


def test_both_copies_give_every_stride_with_its_duration_and_speed(generated, tmp_path) -> None:
    _, facts, specs = generated
    assert sorted((s.source, s.subject) for s in specs) == [
        ("moreira2021", "Participant1"),
        ("moreira2021", "Participant2"),
        ("moreira2021_ascii", "Participant3"),
        ("moreira2021_ascii", "Participant3"),
    ]
    got: dict[str, list[float]] = {}
    for i, spec in enumerate(specs):
        staging = Staging(str(tmp_path / f"{i}.zarr"))
        outcome = process_trial(spec, trial_key(spec), staging)
        assert outcome.ok, outcome.reason
        assert all(np.isnan(outcome.start_s))  # durations only: no absolute times
        c = outcome.columns
        for side, trial, speed, duration in zip(
            outcome.side, c["trial"], c["speed_mps"], outcome.duration_s, strict=True
        ):
            code = trial.split("_")[0]
            assert speed == pytest.approx(generator.SPEEDS_KMH[code] / 3.6, abs=1e-4)
            got.setdefault(f"{spec.subject}/{trial}/{side}", []).append(duration)
        assert set(c["activity"]) == {"walk"}
    assert {k: len(v) for k, v in got.items()} == facts["strides"]  # incl. a 1-stride trial
    for key, durations in got.items():
        np.testing.assert_allclose(sorted(durations), sorted(facts["durations"][key]), atol=1e-9)


def test_canonical_values_masks_and_envelopes(generated, tmp_path) -> None:
    spec = _spec(generated, "Participant2")
    staging = Staging(str(tmp_path / "s.zarr"))
    outcome = process_trial(spec, trial_key(spec), staging)
    batch = staging.load_batch(outcome.key)
    assert spec.emg_kind == "envelope" and _read(spec)[0].emg_kind == "envelope"
    expected = {MUSCLES.index(m) for m in EMG}
    for i in range(batch.side.size):
        assert set(np.flatnonzero(batch.emg_mask[i])) == expected
        assert batch.kinematics_mask[i].all() and batch.kinetics_mask[i].all()
        knee, hip = batch.kinematics[i, :, KNEE, FLEX], batch.kinematics[i, :, HIP, FLEX]
        assert 50 < knee.max() < 75 and 110 < np.argmax(knee) < 170
        assert 15 < hip[0] < 40
        hip_m, ankle_m = batch.kinetics[i, :, HIP, FLEX], batch.kinetics[i, :, ANKLE, FLEX]
        assert hip_m[:40].min() < -0.4 and hip_m[80:130].max() > 0.4
        assert -2.0 < ankle_m.min() < -1.0  # internal plantarflexor moment, N·m/kg
        envelope = batch.emg_envelope[i][:, sorted(expected)]
        assert (envelope >= 0).all()


def test_hip_rotation_torque_sign_and_the_tables_columns(generated) -> None:
    """The file's hip Z torque is external rotation positive: it is negated into the canonical
    internal rotation slot; angles and the other torques keep their signs."""
    spec = _spec(generated, "Participant3", "R")
    (recording,) = _read(spec)
    folder = Path(spec.url).parent.parent
    torques = pd.read_csv(folder / "Torques_Norm" / "T3.txt", sep="\t")
    angles = pd.read_csv(folder / "Angles" / "T3.txt", sep="\t")
    first = recording.sides[0]
    np.testing.assert_allclose(first.kinetics.data[:, HIP, ROT], -torques["St1_Hip_Z"], rtol=1e-6)
    np.testing.assert_allclose(first.kinetics.data[:, KNEE, FLEX], torques["St1_Knee_X"], rtol=1e-6)
    np.testing.assert_allclose(first.kinematics.data[:, HIP, ROT], angles["St1_Hip_Z"], rtol=1e-6)


def test_the_mat_and_ascii_copies_agree_and_never_both_count(generated, tmp_path) -> None:
    """Write participant 1 in both copies: the ASCII reading equals the MAT reading, and with
    both copies present the ASCII entry leaves the participant out (no stride twice)."""
    root = tmp_path / "raw"
    shutil.copytree(generated[0] / "moreira2021", root / "moreira2021")
    p1 = generator.PARTICIPANTS[0]
    generator._write_ascii(root / "moreira2021", p1, generator._participant_tables(p1))
    specs = [s for s in trial_specs(root, *SOURCES) if s.subject == "Participant1"]
    mat = next(s for s in specs if s.source == "moreira2021")
    ascii_specs = [s for s in specs if s.source == "moreira2021_ascii"]
    assert len(ascii_specs) == 2
    for spec in ascii_specs:
        with pytest.raises(SourceError, match="MAT copy of Participant1 is also present"):
            _read(spec)
        options = {**spec.options, "layout": {**spec.options["layout"], "mat_copy": None}}
        (from_ascii,) = _read(dataclasses.replace(spec, options=options))
        side = "R" if "/R/" in spec.url else "L"
        from_mat = [s for r in _read(mat) for s in r.sides if s.side == side]
        assert len(from_ascii.sides) == len(from_mat)
        for a, m in zip(from_ascii.sides, from_mat, strict=True):
            np.testing.assert_allclose(a.kinematics.data, m.kinematics.data, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(a.kinetics.data, m.kinetics.data, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(a.emg.data, m.emg.data, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(a.heel_strikes_s, m.heel_strikes_s)


def test_the_aliased_filtered_emg_is_refused_as_an_envelope(generated) -> None:
    # What the foundation read: EMGs_filt, the band-passed EMG at 1001 points per stride.
    spec = _with(_spec(generated, "Participant1"), "emg", container="EMGs_filt")
    with pytest.raises(SourceError, match=r"should be the envelope.*negative"):
        _read(spec)


def test_torque_units_are_checked_and_newton_metres_use_the_body_mass(generated) -> None:
    spec = _spec(generated, "Participant2")
    # 'Torques' holds N·m: reading it as N·m/kg (the foundation's assumption) is refused ...
    with pytest.raises(SourceError, match=r"torques N.m/kg .*declared N.m/kg but .* N.m"):
        _read(_with(spec, "kinetics", container="Torques"))
    # ... and as N·m it is divided by Metadata.txt's body mass, giving Torques_Norm.
    reference = [s for r in _read(spec) for s in r.sides]
    converted = [
        s for r in _read(_with(spec, "kinetics", container="Torques", units="N.m")) for s in r.sides
    ]
    for a, b in zip(converted, reference, strict=True):
        np.testing.assert_allclose(a.kinetics.data, b.kinetics.data, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    ("feature", "change", "message"),
    [
        ("Stride_Time", lambda t: t.assign(St2_Time=np.nan), r"strides \[1, 2\] have \[.*nan\]"),
        ("Angles", lambda t: t.iloc[:-1], "1001 points per stride: .* has 1000 rows"),
        ("EMGs_env", lambda t: t.rename(columns={"St1_GAL": "St1_GL"}), "no column 'St1_GAL'"),
        (
            "Torques_Norm",
            lambda t: t.assign(**{c: -t[c] for c in t if c.endswith("_X")}),
            "internal torques",
        ),
    ],
    ids=["stride-time", "points", "muscle-name", "external-torques"],
)
def test_broken_assumptions_are_named(generated, tmp_path, feature, change, message) -> None:
    spec = _spec(generated, "Participant3", "L")
    leg = tmp_path / "V25" / "L"  # the adapter reads the speed and leg from the folders
    shutil.copytree(Path(spec.url).parent.parent, leg)
    path = leg / feature / "T3.txt"
    change(pd.read_csv(path, sep="\t")).to_csv(path, sep="\t", index=False)
    with pytest.raises(SourceError, match=message):
        _read(dataclasses.replace(spec, url=str(leg / "Angles" / "T3.txt")))


def test_a_file_of_another_participant_or_speed_is_refused(generated, tmp_path) -> None:
    spec = _spec(generated, "Participant1")
    with pytest.raises(SourceError, match="no variable 'Subject9_pro' for Participant9"):
        _read(dataclasses.replace(spec, subject="Participant9"))
    layout = {**spec.options["layout"], "speed_codes": {"V1": 0.2778}}
    with pytest.raises(SourceError, match=r"speed codes \['V1'\]: found \['V15'\]"):
        _read(dataclasses.replace(spec, options={**spec.options, "layout": layout}))


def test_miniature_is_deterministic_and_small(generated, tmp_path) -> None:
    first, second = generated[0] / "moreira2021", tmp_path / "moreira2021"
    generator.write(second)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    assert sum((first / f).stat().st_size for f in files) < MINIATURE_MAX_BYTES


class TestContract(AdapterContract):
    driver = "moreira"
    source = "moreira2021"
    sources = SOURCES  # the MAT and the ASCII copy

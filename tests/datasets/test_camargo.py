"""Camargo 2021 through its real catalogue entry, on the miniature written in its own layout."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import builder.datasets.camargo.adapter  # noqa: F401 (registers)
from builder.conventions import MUSCLES
from builder.datasets import read_recordings
from builder.datasets.camargo.miniature import save_mat, write
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
    MiniatureFactory,
    process_all,
    relocated,
    trial_specs,
)

SOURCE = "camargo2021"
RECORDED = {
    "vastus_lateralis",
    "rectus_femoris",
    "vastus_medialis",
    "tibialis_anterior",
    "biceps_femoris",
    "semitendinosus",
    "gastrocnemius_medialis",
    "soleus",
    "gluteus_medius",
}


@pytest.fixture(scope="module")
def generated(miniature: MiniatureFactory) -> tuple[Path, dict]:
    """This module's miniature (the session's, written once): (root, facts)."""
    written = miniature(SOURCE)
    return written.root, written.facts


def specs_of(root: Path) -> dict[str, TrialSpec]:
    return {s.url.split(f"{SOURCE}/", 1)[1]: s for s in trial_specs(root, SOURCE)}


@pytest.fixture(scope="module")
def built(specs, tmp_path_factory) -> dict[str, tuple]:
    """Every trial through the worker task: {relative path: (spec, outcome, batch)}."""
    return process_all(specs, tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def specs(generated) -> dict[str, TrialSpec]:
    root, _ = generated
    return specs_of(root)


@pytest.fixture
def copy(
    miniature: MiniatureFactory, generated, specs, tmp_path: Path
) -> tuple[Path, dict[str, TrialSpec]]:
    """A private copy of the miniature (and its specs), for tests that break a file."""
    root, _ = generated
    miniature(SOURCE).copy(tmp_path)
    return tmp_path, {name: relocated(spec, root, tmp_path) for name, spec in specs.items()}


def read(spec: TrialSpec):
    return read_recordings(spec, FileAccess())


def sibling(root: Path, name: str, sensor: str) -> Path:
    return root / SOURCE / name.replace("/emg/", f"/{sensor}/")


def rewrite_table(path: Path, change) -> None:
    variables = load_mat(str(path))
    variables["data"] = change(variables["data"].copy())
    save_mat(path, variables)


LEVEL = "AB06/10_09_18/levelground/emg/levelground_ccw_normal_01_01.mat"
TREADMILL = "AB06/10_09_18/treadmill/emg/treadmill_01_01.mat"
RAMP = "AB07/10_14_18/ramp/emg/ramp_1_r_01_01.mat"
STAIR = "AB07/10_16_18/stair/emg/stair_1_l_01_01.mat"


# --- the trial table and strides --------------------------------------------------------


def test_every_date_folder_of_a_subject_is_read(generated, built) -> None:
    """The foundation read only the first date folder: AB07's second session must be built."""
    _, facts = generated
    assert set(built) == set(facts["trials"]) == {LEVEL, TREADMILL, RAMP, STAIR}
    trials = {name: set(out.columns["trial"]) for name, (_, out, _) in built.items()}
    assert trials[RAMP] == {"10_14_18/ramp_1_r_01_01"}
    assert trials[STAIR] == {"10_16_18/stair_1_l_01_01"}
    assert {s.subject for s, _, _ in built.values()} == {"AB06", "AB07"}


def test_strides_per_leg_and_activity_are_those_generated(generated, built) -> None:
    _, facts = generated
    for name, (spec, outcome, _) in built.items():
        expected = Counter(
            {
                (side, activity): n
                for side, counts in facts["trials"][name]["strides"].items()
                for activity, n in counts.items()
            }
        )
        assert Counter(zip(outcome.side, outcome.columns["activity"], strict=True)) == expected
        assert outcome.event_source == "events" and spec.emg_kind == "raw"


def test_heel_strikes_come_from_the_phase_ramps(generated, specs) -> None:
    """Wraps (treadmill) and a ramp leaving a flat zero (overground) give the true events."""
    _, facts = generated
    for name in (TREADMILL, LEVEL):
        recordings = read(specs[name])
        for side in ("L", "R"):
            found = np.unique(
                np.concatenate(
                    [s.heel_strikes_s for r in recordings for s in r.sides if s.side == side]
                )
            )
            truth = np.asarray(facts["trials"][name]["heel_strikes"][side])
            np.testing.assert_allclose(found, truth, atol=1e-3)


# --- values in the canonical conventions ------------------------------------------------


def strides(built, *, activity: str, names=(LEVEL, TREADMILL, RAMP, STAIR)):
    """(side, kinematics, kinetics, kinetics mask, emg mask, envelope) of matching strides."""
    for name in names:
        _, out, batch = built[name]
        for i, act in enumerate(out.columns["activity"]):
            if act == activity:
                yield (
                    out.side[i],
                    batch.kinematics[i],
                    batch.kinetics[i],
                    batch.kinetics_mask[i],
                    batch.emg_mask[i],
                    batch.emg_envelope[i],
                )


def test_walking_angles_and_moments_have_canonical_signs_and_sizes(built) -> None:
    walking = [s for s in strides(built, activity="walk") if s[3][HIP, FLEX]]
    assert len(walking) >= 10
    for _, kin, kinetics, kmask, _, _ in walking:
        knee = kin[:, KNEE, FLEX]
        assert 50 < knee.max() < 75 and 110 < np.argmax(knee) < 170  # swing peak, ~+60°
        assert 20 < kin[0, HIP, FLEX] < 40  # hip flexed ~+30° at heel strike
        assert kin[60:110, ANKLE, FLEX].max() > 5  # dorsiflexion in stance is positive
        hip_moment = kinetics[:, HIP, FLEX]
        assert -1.2 < hip_moment[:24].mean() < -0.2  # internal extensor at loading
        assert hip_moment[90:130].max() > 0.4  # flexor late in stance
        ankle = kinetics[:, ANKLE, FLEX]
        assert -2.2 < ankle.min() < -1.1 and 70 < np.argmin(ankle) < 120  # plantarflexor
        # The ankle moment is filled (the foundation's loop-variable bug left it zero);
        # the 1-DoF knee and ankle have no frontal / transverse components.
        assert kmask.tolist() == [[True, True, True], [False, False, True], [False, False, True]]


def test_ramp_and_stair_strides_differ_from_level_walking(built) -> None:
    def hip_at_strike(activity: str) -> float:
        return float(np.mean([s[1][0, HIP, FLEX] for s in strides(built, activity=activity)]))

    level = hip_at_strike("walk")
    assert hip_at_strike("ramp_ascent") > level + 3  # more hip flexion going up
    assert hip_at_strike("stair_ascent") > hip_at_strike("ramp_ascent") + 5
    assert hip_at_strike("stair_descent") < level


def test_moments_are_divided_by_the_subject_mass(copy) -> None:
    root, specs = copy
    (before,) = [r for r in read(specs[TREADMILL]) if r.sides]
    info = root / SOURCE / "SubjectInfo.mat"
    rewrite_table(info, lambda t: t.assign(Weight=np.where(t.Subject == "AB06", 132.0, t.Weight)))
    (after,) = [r for r in read(specs[TREADMILL]) if r.sides]
    np.testing.assert_allclose(
        after.sides[0].kinetics.data, before.sides[0].kinetics.data * 66.0 / 132.0
    )


def test_strides_without_moments_are_masked(generated, built) -> None:
    _, facts = generated
    _, out, batch = built[LEVEL]
    right = np.array(out.side) == "R"
    missing = ~batch.kinetics_mask[right].any(axis=(1, 2))
    assert missing.sum() == facts["trials"][LEVEL]["no_moments_R"] == 1
    assert batch.kinematics_mask[right].any(axis=(1, 2)).all()


# --- EMG --------------------------------------------------------------------------------


def test_emg_is_the_right_legs_nine_mapped_muscles(built) -> None:
    expected = np.array([m in RECORDED for m in MUSCLES])
    for _, out, batch in built.values():
        for i, side in enumerate(out.side):
            assert (batch.emg_mask[i] == (expected if side == "R" else False)).all()
            assert abs(out.emg_lengths[i] - 1000 * out.duration_s[i]) <= 1


def test_emg_timing_follows_the_gait_cycle(built) -> None:
    soleus, tibialis = MUSCLES.index("soleus"), MUSCLES.index("tibialis_anterior")
    right = [s for s in strides(built, activity="walk") if s[0] == "R"]
    assert len(right) >= 5
    for _, _, _, _, _, envelope in right:
        assert 60 <= np.argmax(envelope[:, soleus]) <= 120  # push-off, late stance
        ta = envelope[:, tibialis]
        assert ta[:20].mean() > ta[60:100].mean()  # TA after heel strike, quiet in stance


def test_mains_hum_is_notched_where_present(built) -> None:
    _, out, _ = built[RAMP]
    assert any("mains notch at 60 Hz" in note for note in out.notes)
    _, out, _ = built[TREADMILL]
    assert not any("mains notch" in note for note in out.notes)


# --- metadata ---------------------------------------------------------------------------


def test_speed_incline_and_condition_per_stride(built) -> None:
    _, out, _ = built[TREADMILL]
    assert set(out.columns["speed_mps"]) == {1.1} and set(out.columns["condition"]) == {"treadmill"}
    _, out, _ = built[RAMP]
    by_activity = {
        act: {
            inc
            for a, inc in zip(out.columns["activity"], out.columns["incline_deg"], strict=True)
            if a == act
        }
        for act in set(out.columns["activity"])
    }
    assert by_activity["ramp_ascent"] == {5.2} and by_activity["ramp_descent"] == {-5.2}
    assert by_activity["walk"] == {0.0}
    assert all(np.isnan(v) for v in by_activity["transition"])
    assert set(out.columns["condition"]) == {"ramp 5.2 deg"}
    _, out, _ = built[STAIR]
    assert set(out.columns["condition"]) == {"stairs 4 in"}
    _, out, _ = built[LEVEL]
    assert set(out.columns["condition"]) == {"overground ccw normal"}
    assert all(np.isnan(v) for v in out.columns["speed_mps"])
    assert set(out.columns["population"]) == {"healthy"}


# --- other encodings the adapter accepts ------------------------------------------------


def test_event_lists_give_the_same_strides_as_phase_ramps(copy) -> None:
    root, specs = copy
    ramps = read(specs[TREADMILL])
    path = sibling(root, TREADMILL, "gcLeft")
    heel = [s.heel_strikes_s for r in ramps for s in r.sides if s.side == "L"]
    times = np.unique(np.concatenate(heel))
    save_mat(path, {"data": pd.DataFrame({"HeelStrike": times, "ToeOff": times + 0.7})})
    lists = read(specs[TREADMILL])
    again = np.unique(
        np.concatenate([s.heel_strikes_s for r in lists for s in r.sides if s.side == "L"])
    )
    np.testing.assert_allclose(again, times)


def test_label_intervals_work_like_per_sample_labels(copy) -> None:
    root, specs = copy

    def activities() -> Counter:
        return Counter((s.side, r.meta["activity"]) for r in read(specs[RAMP]) for s in r.sides)

    per_sample = activities()
    path = sibling(root, RAMP, "conditions")
    variables = load_mat(str(path))
    labels = variables["labels"]
    change = np.flatnonzero(labels.Label.to_numpy()[1:] != labels.Label.to_numpy()[:-1]) + 1
    begin = np.concatenate([[0], change])
    step = float(labels.Header.iloc[1] - labels.Header.iloc[0])
    variables["labels"] = pd.DataFrame(
        {
            "Start": labels.Header.to_numpy()[begin],
            "End": np.append(labels.Header.to_numpy()[begin[1:]], labels.Header.iloc[-1] + step),
            "Label": labels.Label.to_numpy()[begin].tolist(),
        }
    )
    save_mat(path, variables)
    assert activities() == per_sample


# --- assumptions checked on the data ----------------------------------------------------


def test_a_flexion_negative_knee_is_refused(copy) -> None:
    root, specs = copy
    knees = ["knee_angle_r", "knee_angle_l"]
    rewrite_table(sibling(root, LEVEL, "ik"), lambda t: t.assign(**{k: -t[k] for k in knees}))
    with pytest.raises(SourceError, match="knee_angle does not look flexion-positive"):
        read(specs[LEVEL])


def test_external_moments_are_refused(copy) -> None:
    """LocoHub multiplies Camargo's moments by -1: if the file needed that, we must notice."""
    root, specs = copy

    def flip(table: pd.DataFrame) -> pd.DataFrame:
        moments = [c for c in table.columns if c.endswith("_moment")]
        return table.assign(**{c: -table[c] for c in moments})

    rewrite_table(sibling(root, TREADMILL, "id"), flip)
    with pytest.raises(SourceError, match="internal hip moment is flexor in loading response"):
        read(specs[TREADMILL])


def test_moments_already_per_kilogram_are_refused(copy) -> None:
    root, specs = copy

    def per_kg(table: pd.DataFrame) -> pd.DataFrame:
        moments = [c for c in table.columns if c.endswith("_moment")]
        return table.assign(**{c: table[c] / 66.0 for c in moments})

    rewrite_table(sibling(root, TREADMILL, "id"), per_kg)
    with pytest.raises(SourceError, match="the id units are not N·m"):
        read(specs[TREADMILL])


def test_a_subject_missing_from_subject_info_is_refused(copy) -> None:
    root, specs = copy
    rewrite_table(root / SOURCE / "SubjectInfo.mat", lambda t: t[t.Subject != "AB07"])
    with pytest.raises(SourceError, match="no body mass for subject 'AB07'"):
        read(specs[RAMP])


def test_a_ramp_trial_without_labels_is_refused(copy) -> None:
    root, specs = copy
    path = sibling(root, RAMP, "conditions")
    variables = load_mat(str(path))
    del variables["labels"]
    save_mat(path, variables)
    with pytest.raises(SourceError, match="ascent cannot be told from descent"):
        read(specs[RAMP])


def test_an_unmapped_label_is_refused(copy) -> None:
    root, specs = copy
    path = sibling(root, STAIR, "conditions")
    variables = load_mat(str(path))
    variables["labels"]["Label"] = variables["labels"]["Label"].replace("walk", "turn")
    save_mat(path, variables)
    with pytest.raises(SourceError, match=r"label 'turn'.*activity_map"):
        read(specs[STAIR])


def test_emg_on_another_clock_than_ik_is_refused(copy) -> None:
    root, specs = copy
    rewrite_table(root / SOURCE / TREADMILL, lambda t: t.assign(Header=t.Header + 100.0))
    with pytest.raises(SourceError, match="not one clock"):
        read(specs[TREADMILL])


def test_gait_phase_that_is_not_a_percent_ramp_is_refused(copy) -> None:
    root, specs = copy
    rewrite_table(
        sibling(root, LEVEL, "gcRight"), lambda t: t.assign(HeelStrike=t.HeelStrike * 3.6)
    )
    with pytest.raises(SourceError, match="should be a 0–100 % phase ramp"):
        read(specs[LEVEL])


# --- the miniature itself ---------------------------------------------------------------


def test_the_miniature_is_reproducible_small_and_scipy_sees_only_tables(
    generated, tmp_path: Path
) -> None:
    import scipy.io

    root, _ = generated
    write(tmp_path / SOURCE)
    first = sorted(p for p in (root / SOURCE).rglob("*") if p.is_file())
    second = sorted(p for p in (tmp_path / SOURCE).rglob("*") if p.is_file())
    assert [p.relative_to(root) for p in first] == [p.relative_to(tmp_path) for p in second]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, second, strict=True))
    assert sum(p.stat().st_size for p in first) < MINIATURE_MAX_BYTES
    seen = scipy.io.loadmat(str(root / SOURCE / TREADMILL))  # a table is opaque to scipy
    assert "__function_workspace__" in seen and "data" not in seen


class TestContract(AdapterContract):
    driver = "camargo"
    source = SOURCE

"""Gait120 through its real catalogue entry, on the miniature written in its own layout."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import builder.datasets.gait120.adapter  # noqa: F401 (registers)
from builder.conventions import MUSCLES
from builder.datasets import read_recordings
from builder.datasets.gait120.miniature import EMG_COLUMNS, save_mat, write
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.formats.matlab import load_mat
from builder.formats.opensim import read_storage, write_storage
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

SOURCE = "gait120"
S001 = "Gait120_001_to_010/S001/EMG/RawData.mat"
S061 = "Gait120_061_to_070/S061/EMG/RawData.mat"
ACTIVITY = {
    "LevelWalking": "walk",
    "StairAscent": "stair_ascent",
    "SlopeDescent": "ramp_descent",
    "SitToStand": "sit_to_stand",
}


@pytest.fixture(scope="module")
def generated(miniature: MiniatureFactory) -> tuple[Path, dict]:
    """This module's miniature (the session's, written once): (root, facts)."""
    written = miniature(SOURCE)
    return written.root, written.facts


@pytest.fixture(scope="module")
def specs(generated) -> dict[str, TrialSpec]:
    root, _ = generated
    return {s.url.split(f"{SOURCE}/", 1)[1]: s for s in trial_specs(root, SOURCE)}


@pytest.fixture(scope="module")
def built(specs, tmp_path_factory) -> dict[str, tuple]:
    return process_all(specs, tmp_path_factory.mktemp("store"))


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


def steps_of(root: Path, subject_path: str, task: str) -> list[Path]:
    home = root / SOURCE / Path(subject_path).parent.parent
    return sorted((home / "JointAngle" / task).glob("Trial*/step*.mot"))


def rewrite_mot(path: Path, change) -> None:
    storage = read_storage(str(path))
    write_storage(str(path), change(storage.table.copy()), name=storage.header["name"])


# --- the trial table --------------------------------------------------------------------


def test_one_row_per_subject_keyed_on_raw_data(specs) -> None:
    assert sorted(specs) == [S001, S061]
    assert [(s.subject, s.activity, s.emg_kind) for s in specs.values()] == [
        ("S001", "other", "raw"),
        ("S061", "other", "raw"),
    ]


def test_every_step_is_one_stride_with_its_task_trial_and_population(generated, built) -> None:
    _, facts = generated
    for name, (_, out, _) in built.items():
        subject = name.split("/")[1]
        expected = Counter()
        for trial, n in facts["subjects"][subject]["steps"].items():
            expected[(ACTIVITY[trial.split("/")[0]], trial)] = n
        assert Counter(zip(out.columns["activity"], out.columns["trial"], strict=True)) == expected
        assert set(out.columns["population"]) == {facts["subjects"][subject]["population"]}
        assert set(out.side) == {"R"} and out.event_source == "pre_segmented"
        assert set(out.columns["subtrial"]) <= {"step01", "step02"}
    _, out, _ = built[S061]
    assert set(out.columns["population"]) == {"older_adults"}
    inclines = dict(zip(out.columns["activity"], out.columns["incline_deg"], strict=True))
    assert inclines["walk"] == 0.0 and np.isnan(inclines["ramp_descent"])  # not documented


def test_angle_folders_without_raw_data_are_left_out_with_a_note(generated, built) -> None:
    _, facts = generated
    assert facts["left_out"] == ["S061/LevelWalking/Trial02"]
    _, out, _ = built[S061]
    assert "LevelWalking/Trial02" not in out.columns["trial"]
    assert any("trial02 have no trial in RawData" in note for note in out.notes)


# --- values -----------------------------------------------------------------------------


def gait_strides(built, activity: str = "walk"):
    for _, out, batch in built.values():
        for i, act in enumerate(out.columns["activity"]):
            if act == activity:
                yield out, i, batch


def test_walking_angles_have_canonical_signs(built) -> None:
    walking = list(gait_strides(built))
    assert len(walking) == 6
    for _, i, batch in walking:
        kin = batch.kinematics[i]
        knee = kin[:, KNEE, FLEX]
        assert 50 < knee.max() < 75 and 110 < np.argmax(knee) < 170  # +60° swing peak
        assert knee[:10].mean() < 15  # nearly straight at heel strike (knee negated)
        assert 20 < kin[0, HIP, FLEX] < 40
        assert kin[60:110, ANKLE, FLEX].max() > 5
        mask = batch.kinematics_mask[i].tolist()
        assert mask == [[True, True, True], [False, False, True], [False, False, True]]
        assert not batch.kinetics_mask[i].any()  # Gait120 has no joint moments


def test_sit_to_stand_is_one_movement(built) -> None:
    (out, i, batch), *_ = list(gait_strides(built, "sit_to_stand"))
    assert out.duration_s[i] == pytest.approx(1.8)
    knee = batch.kinematics[i][:, KNEE, FLEX]
    assert knee[0] > 80 and knee[-1] < 10  # seated flexed, then standing


def test_emg_has_all_eleven_lower_leg_and_thigh_slots(built) -> None:
    expected = np.array([m not in ("gluteus_medius", "gluteus_maximus") for m in MUSCLES])
    for _, out, batch in built.values():
        assert (batch.emg_mask == expected).all()
        for length, duration in zip(out.emg_lengths, out.duration_s, strict=True):
            assert abs(length - 1000 * duration) <= 1


def test_step_emg_is_cut_by_target_frame_in_emg_samples(generated, specs) -> None:
    """TargetFrame is in 100 Hz frames; the EMG at 2 kHz is sliced at frame × 20 (Grimmer's
    bug used the frame index as the EMG sample index)."""
    root, _ = generated
    raw = load_mat(str(root / SOURCE / S001))
    trial = raw["LevelWalking"]["Trial03"]
    start, end = trial["Step02"]["TargetFrame"]
    recordings = read(specs[S001])
    (recording,) = [
        r
        for r in recordings
        if r.meta["trial"] == "LevelWalking/Trial03" and r.meta["subtrial"] == "step02"
    ]
    (side,) = recording.sides
    assert side.heel_strikes_s.tolist() == pytest.approx([(start - 1) / 100, (end - 1) / 100])
    emg = side.emg
    assert emg.rate_hz == 2000 and emg.start_s <= side.heel_strikes_s[0]
    assert emg.end_s >= side.heel_strikes_s[1]
    sample = round((side.heel_strikes_s[0] - emg.start_s) * emg.rate_hz)
    table = trial["EMGs_raw"]
    row = int((start - 1) * 20)
    tib = MUSCLES.index("tibialis_anterior")
    assert emg.data[sample, tib] == table["TibialisAnterior"].iloc[row]
    soleus = MUSCLES.index("soleus")  # the explicit merge of both soleus heads
    mean = (table["SoleusMedialis"].iloc[row] + table["SoleusLateralis"].iloc[row]) / 2
    assert emg.data[sample, soleus] == pytest.approx(mean)
    assert side.kinematics.start_s == side.heel_strikes_s[0]


def test_emg_timing_follows_the_gait_cycle(built) -> None:
    soleus, tibialis = MUSCLES.index("soleus"), MUSCLES.index("tibialis_anterior")
    for _, i, batch in gait_strides(built):
        envelope = batch.emg_envelope[i]
        assert 50 <= np.argmax(envelope[:, soleus]) <= 120  # push-off in late stance
        ta = envelope[:, tibialis]
        assert ta[:20].mean() > ta[60:100].mean()


def test_mains_hum_is_notched_where_present(built) -> None:
    _, out, _ = built[S061]
    assert any("mains notch at 60 Hz" in note for note in out.notes)
    _, out, _ = built[S001]
    assert not any("mains notch" in note for note in out.notes)


# --- assumptions checked on the data ----------------------------------------------------


def test_a_step_file_that_does_not_match_target_frame_is_refused(copy) -> None:
    root, specs = copy
    step = steps_of(root, S001, "StairAscent")[1]
    rewrite_mot(step, lambda t: t.iloc[:-3])
    with pytest.raises(SourceError, match="does not match its RawData step"):
        read(specs[S001])


def test_a_missing_step_file_is_refused(copy) -> None:
    root, specs = copy
    steps_of(root, S061, "SlopeDescent")[0].unlink()
    with pytest.raises(SourceError, match=r"no step file step01\.mot"):
        read(specs[S061])


def test_a_flexion_positive_knee_in_the_files_is_refused(copy) -> None:
    """The source is documented as knee-extension positive; if it is not, negating is wrong."""
    root, specs = copy
    for step in root.glob(f"{SOURCE}/Gait120_061_to_070/S061/JointAngle/*/*/step*.mot"):
        rewrite_mot(step, lambda t: t.assign(knee_angle_r=-t.knee_angle_r))
    with pytest.raises(SourceError, match="not flexion-positive"):
        read(specs[S061])


def test_steps_that_are_not_right_leg_cycles_are_refused(copy) -> None:
    root, specs = copy

    def half_cycle_later(table):
        angles = [c for c in table.columns if c != "time"]
        shift = len(table) // 2
        table[angles] = np.roll(table[angles].to_numpy(), shift, axis=0)
        return table

    for step in root.glob(f"{SOURCE}/Gait120_061_to_070/S061/JointAngle/*/*/step*.mot"):
        rewrite_mot(step, half_cycle_later)
    with pytest.raises(SourceError, match="not right-leg gait cycles"):
        read(specs[S061])


def test_emg_that_does_not_span_the_trial_frames_is_refused(copy) -> None:
    root, specs = copy
    path = root / SOURCE / S061
    raw = load_mat(str(path))
    raw["LevelWalking"]["Trial01"]["TotalFrame"] *= 2
    save_mat(path, raw)
    with pytest.raises(SourceError, match="rates or frame counts disagree"):
        read(specs[S061])


# --- the miniature itself ---------------------------------------------------------------


def test_the_miniature_is_reproducible_and_small(generated, tmp_path: Path) -> None:
    root, _ = generated
    write(tmp_path / SOURCE)
    first = sorted(p for p in (root / SOURCE).rglob("*") if p.is_file())
    second = sorted(p for p in (tmp_path / SOURCE).rglob("*") if p.is_file())
    assert [p.relative_to(root) for p in first] == [p.relative_to(tmp_path) for p in second]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, second, strict=True))
    assert sum(p.stat().st_size for p in first) < MINIATURE_MAX_BYTES
    raw = load_mat(str(root / SOURCE / S001))
    assert raw["EMGs_info"]["ChannelNames"] == list(EMG_COLUMNS)
    assert list(raw["LevelWalking"]["AvailableTrialIdx"]) == [1.0, 3.0]


class TestContract(AdapterContract):
    driver = "gait120"
    source = SOURCE

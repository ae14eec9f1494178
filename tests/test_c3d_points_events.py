"""The C3D adapter's points, events and force plates on altered copies of real recordings.

Each fixture reads a real file of ../shared/data/real with ezc3d, changes what other writers and
labs do differently (dropouts written as (0, 0, 0), residual words written unsigned, Davis /
Helen Hayes / CAST marker names, Left/Right or G/D or Sx/Dx side tokens, a Y-up lab, plate zero
offsets, plates without analog samples), writes it to a temporary folder with ezc3d and checks
with ezc3d that the written file says what the fixture meant, before reading it through the
adapter. Ground truth is the unaltered file (the same trial) and gait-pig.c3d's Vicon events.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path

import ezc3d
import numpy as np
import pytest

from builder.errors import SourceError
from builder.records import TrialRecording

from helpers import REAL_DATA as REAL
from helpers import read_c3d, requires_real_data, side

pytestmark = [pytest.mark.real_data, requires_real_data]

PIG, RAW, EMG_FILE = "gait-pig.c3d", "gait-raw.c3d", "Gait with EMG.c3d"
# gait-pig.c3d's stored (Vicon) events: the truth for gait-raw.c3d, the same trial.
PIG_HEEL_STRIKES = {"L": [0.570, 1.520, 2.480], "R": [1.036, 2.000]}
PIG_TOE_OFFS = {"L": [1.153, 2.120], "R": [1.611]}  # 2.600 is beyond Zeni's reach in gait-raw
ONE_FRAME_50HZ = 0.02


@cache
def _real(name: str, options_json: str = "{}") -> TrialRecording:
    return read_c3d(REAL / name, **json.loads(options_json))


def real(name: str, **options) -> TrialRecording:
    """An unaltered real file through the adapter (cached)."""
    return _real(name, json.dumps(options, sort_keys=True))


def altered(
    name: str, tmp_path: Path, change: Callable[[ezc3d.c3d], None], stem: str = "altered"
) -> Path:
    """A copy of a real file with ``change`` applied, written by ezc3d; its path."""
    c3d = ezc3d.c3d(str(REAL / name))
    change(c3d)
    path = tmp_path / f"{stem}.c3d"
    c3d.write(str(path))
    return path


@cache
def _copy(name: str, options_json: str, folder: Path) -> TrialRecording:
    return read_c3d(altered(name, folder, lambda c3d: None, "copy"), **json.loads(options_json))


def copy(name: str, tmp_path_factory: pytest.TempPathFactory, **options) -> TrialRecording:
    """A real file rewritten by ezc3d unchanged (float32, as the altered copies are), read
    through the adapter: what an altered copy is compared with."""
    folder = tmp_path_factory.getbasetemp() / f"copy-{Path(name).stem}"
    folder.mkdir(exist_ok=True)
    return _copy(name, json.dumps(options, sort_keys=True), folder)


def point_labels(c3d: ezc3d.c3d) -> list[str]:
    return list(c3d["parameters"]["POINT"]["LABELS"]["value"])


def point_scale(c3d: ezc3d.c3d) -> float:
    return abs(float(np.ravel(c3d["parameters"]["POINT"]["SCALE"]["value"])[0]))


def set_frames(
    c3d: ezc3d.c3d, label: str, frames: slice, xyz: tuple[float, float, float], residual: float
) -> None:
    """Write ``xyz`` and ``residual`` (as ezc3d holds it: word x |POINT:SCALE|) into frames."""
    i = point_labels(c3d).index(label)
    points = c3d["data"]["points"]
    residuals = c3d["data"]["meta_points"]["residuals"]
    points[:3, i, frames] = np.asarray(xyz, dtype=float)[:, None]
    residuals[0, i, frames] = residual
    c3d["data"]["points"] = points
    c3d["data"]["meta_points"]["residuals"] = residuals


def rename_points(c3d: ezc3d.c3d, names: dict[str, str]) -> None:
    labels = point_labels(c3d)
    c3d["parameters"]["POINT"]["LABELS"]["value"] = [names.get(label, label) for label in labels]


def nearest_errors(detected: np.ndarray, truths: list[float]) -> np.ndarray:
    detected = np.asarray(detected)
    return np.array([detected[np.argmin(np.abs(detected - t))] - t for t in truths])


# --- defect 2: invalid point frames -------------------------------------------------------

# (0, 0, 0) with a positive residual (dropouts written so); the residual word -1 written
# unsigned (65535: ezc3d reads the high byte 0xFF = 255 as a positive residual) over garbage.
DROPOUTS = {
    "zeros, positive residual": (lambda scale: ((0.0, 0.0, 0.0), 2.0 * scale)),
    "residual word 65535": (lambda scale: ((5000.0, -5000.0, 5000.0), 65535.0 * scale)),
}


@pytest.mark.parametrize("style", list(DROPOUTS))
def test_invalid_model_output_frames_are_missing_short_gaps_bridged(
    style: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    short, long = slice(60, 62), slice(90, 100)  # 40 ms (bridged) and 200 ms (left missing)

    def drop(c3d: ezc3d.c3d) -> None:
        xyz, residual = DROPOUTS[style](point_scale(c3d))
        for frames in (short, long):
            set_frames(c3d, "A22:LKneeAngles", frames, xyz, residual)

    path = altered(PIG, tmp_path, drop)
    written = ezc3d.c3d(str(path))  # ezc3d itself keeps these frames as valid data
    knee = written["data"]["points"][:3, point_labels(written).index("A22:LKneeAngles")]
    assert np.isfinite(knee[:, long]).all() and np.isfinite(knee[:, short]).all()
    residual = written["data"]["meta_points"]["residuals"][0, :, 95]
    assert residual[point_labels(written).index("A22:LKneeAngles")] > 0

    recording = read_c3d(path)
    unaltered = side(copy(PIG, tmp_path_factory), "L").kinematics.data
    original = unaltered[:, 1]  # (T, plane) of the knee
    knee = side(recording, "L").kinematics.data[:, 1]
    assert np.isnan(knee[long]).all()  # 200 ms: that joint is absent from the stride
    assert np.isfinite(knee[short]).all()
    ends = original[[59, 62]]  # bridged linearly between the valid neighbours
    np.testing.assert_allclose(knee[60], ends[0] + (ends[1] - ends[0]) / 3)
    np.testing.assert_array_equal(knee[62:90], original[62:90])  # the rest untouched
    hip_and_ankle = side(recording, "L").kinematics.data[:, [0, 2]]
    np.testing.assert_array_equal(hip_and_ankle, unaltered[:, [0, 2]])
    notes = " | ".join(recording.notes)
    assert "kinematics L LKneeAngles: 1 gap(s) of up to 40 ms filled" in notes
    assert "1 gap(s) longer than 50 ms (up to 200 ms) left missing" in notes


@pytest.mark.parametrize("style", list(DROPOUTS))
def test_kinematic_detection_ignores_invalid_pelvis_frames(
    style: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Three frames of the sacrum at (0, 0, 0) (2.6 m behind it at 2 s) would put both feet
    metres ahead of the pelvis (a fake heel strike); read as missing they are bridged like any
    short marker gap."""

    def drop(c3d: ezc3d.c3d) -> None:
        xyz, residual = DROPOUTS[style](point_scale(c3d))
        set_frames(c3d, "SACR", slice(100, 103), xyz, residual)

    path = altered(RAW, tmp_path, drop)
    written = ezc3d.c3d(str(path))
    assert np.isfinite(written["data"]["points"][:3, 0, 100:103]).all()  # SACR is point 0
    kinematic_only = {"detect": ["kinematics"]}
    recording = read_c3d(path, events=kinematic_only)
    for foot in "LR":
        np.testing.assert_allclose(
            side(recording, foot).heel_strikes_s,
            side(copy(RAW, tmp_path_factory, events=kinematic_only), foot).heel_strikes_s,
            atol=0.005,
        )


# --- defect 3: the reasons for no heel strike -----------------------------------------------


def test_no_heel_strike_reason_names_what_was_found_on_the_way() -> None:
    no_markers = {"markers": {"heel": [], "ankle": [], "toe": [], "pelvis": []}}
    with pytest.raises(SourceError) as error:
        read_c3d(REAL / RAW, events=no_markers)
    reason = error.value.problem
    assert "\n" not in reason
    assert reason.startswith("no heel strikes found by any enabled method")
    assert "force plate 1 contact 0.570-1.151 s not assigned to a foot (no foot markers)" in reason
    assert "force plate 2 contact" in reason
    assert "kinematic event detection: no pelvis markers" in reason


# --- defect 4 and 10: marker presets, side tokens, Y-up labs --------------------------------

# gait-raw.c3d's markers (Plug-in Gait) as other marker sets name them; its heels have no data,
# so the ankle markers give heel strikes.
PRESET_NAMES = {
    "davis": {
        "SACR": "sacrum",
        "LASI": "l asis",
        "RASI": "r asis",
        "LANK": "l mall",
        "RANK": "r mall",
        "LTOE": "l met",
        "RTOE": "r met",
        "LHEE": "l heel",
        "RHEE": "r heel",
    },
    "helen-hayes": {
        "SACR": "V.Sacral",
        "LASI": "L.ASIS",
        "RASI": "R.ASIS",
        "LANK": "L.Ankle",
        "RANK": "R.Ankle",
        "LTOE": "L.Toe",
        "RTOE": "R.Toe",
        "LHEE": "L.Heel",
        "RHEE": "R.Heel",
    },
    "cast": {
        "SACR": "S1",  # CAST has no sacrum marker: the ASIS pair is the pelvis
        "LASI": "L_IAS",
        "RASI": "R_IAS",
        "LANK": "L_FAL",
        "RANK": "R_FAL",
        "LTOE": "L_FM2",
        "RTOE": "R_FM2",
        "LHEE": "L_FCC",
        "RHEE": "R_FCC",
    },
}


def assert_detection_matches_vicon(recording: TrialRecording) -> None:
    """gait-raw.c3d's events against gait-pig.c3d's: plate onsets within a frame, the
    lag-corrected kinematic ones within 15 ms."""
    for foot, truths in PIG_HEEL_STRIKES.items():
        errors = nearest_errors(side(recording, foot).heel_strikes_s, truths)
        assert np.all(np.abs(errors) <= 0.015), (foot, errors)
    np.testing.assert_allclose(side(recording, "L").kinetics_valid_s[0, 0], 0.570, atol=0.02)
    np.testing.assert_allclose(side(recording, "R").kinetics_valid_s[0, 0], 1.036, atol=0.02)


def assert_same_events(recording: TrialRecording, expected: TrialRecording) -> None:
    for foot in "LR":
        for name in ("heel_strikes_s", "toe_offs_s", "kinetics_valid_s", "heel_strike_sources"):
            np.testing.assert_array_equal(
                getattr(side(recording, foot), name), getattr(side(expected, foot), name)
            )


# The Plug-in Gait pelvis each renamed file keeps (CAST has no sacrum: the ASIS pair).
PRESET_PELVIS = {"davis": [["SACR"]], "helen-hayes": [["SACR"]], "cast": [["LASI", "RASI"]]}


@pytest.mark.parametrize("preset", list(PRESET_NAMES))
def test_marker_presets_are_chosen_from_the_labels(
    preset: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = altered(RAW, tmp_path, lambda c3d: rename_points(c3d, PRESET_NAMES[preset]))
    assert set(PRESET_NAMES[preset].values()) <= set(point_labels(ezc3d.c3d(str(path))))
    recording = read_c3d(path)
    assert recording.event_source == "force_plate+kinematics"
    assert any(f"event markers: the {preset} preset" in n for n in recording.notes)
    # the same events as the Plug-in-Gait file with the same pelvis markers
    same_pelvis = {"markers": {"pelvis": PRESET_PELVIS[preset]}}
    assert_same_events(recording, copy(RAW, tmp_path_factory, events=same_pelvis))
    # naming the preset in the catalogue gives the same; Plug-in Gait's names find no pelvis
    assert_same_events(read_c3d(path, events={"markers": preset}), recording)
    try:  # the toe of Helen Hayes (L.Toe) is Plug-in Gait's LTOE: plates are still assigned
        found = str(read_c3d(path, events={"markers": "plug-in-gait"}).notes)
    except SourceError as error:
        found = error.problem
    assert "kinematic event detection: no pelvis markers" in found


def test_plug_in_gait_files_keep_their_events() -> None:
    recording = real(RAW)
    assert not any("event markers:" in n for n in recording.notes)
    assert_detection_matches_vicon(recording)


SIDE_TOKENS = {"Left/Right": ("Left", "Right"), "G/D": ("G", "D"), "Sx/Dx": ("Sx", "Dx")}


def _side_renamed(labels: list[str], tokens: tuple[str, str]) -> dict[str, str]:
    """L.../R... labels (after any A22: prefix) with the side tokens ``tokens``."""
    names = {}
    for label in labels:
        prefix, _, bare = label.rpartition(":")
        if len(bare) > 1 and bare[0] in "LR" and bare[1].isupper():
            token = tokens[0] if bare[0] == "L" else tokens[1]
            names[label] = f"{prefix}:{token}{bare[1:]}" if prefix else f"{token}{bare[1:]}"
    return names


@pytest.mark.parametrize("tokens", list(SIDE_TOKENS))
def test_side_tokens_of_model_outputs(
    tokens: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    def rename(c3d: ezc3d.c3d) -> None:
        rename_points(c3d, _side_renamed(point_labels(c3d), SIDE_TOKENS[tokens]))

    path = altered(PIG, tmp_path, rename)
    left, right = SIDE_TOKENS[tokens]
    assert f"A22:{left}HipAngles" in point_labels(ezc3d.c3d(str(path)))
    recording = read_c3d(path)
    unaltered = copy(PIG, tmp_path_factory)
    for foot in "LR":
        np.testing.assert_array_equal(
            side(recording, foot).kinematics.data, side(unaltered, foot).kinematics.data
        )
        np.testing.assert_array_equal(
            side(recording, foot).kinetics.data, side(unaltered, foot).kinetics.data
        )
    assert any(f"point labels name the sides {left}/{right}" in n for n in recording.notes)


@pytest.mark.parametrize("tokens", list(SIDE_TOKENS))
def test_side_tokens_of_markers(
    tokens: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    def rename(c3d: ezc3d.c3d) -> None:
        rename_points(c3d, _side_renamed(point_labels(c3d), SIDE_TOKENS[tokens]))

    path = altered(RAW, tmp_path, rename)
    assert f"{SIDE_TOKENS[tokens][1]}ANK" in point_labels(ezc3d.c3d(str(path)))
    assert_same_events(read_c3d(path), copy(RAW, tmp_path_factory))


def y_up(c3d: ezc3d.c3d) -> None:
    """The lab turned so that Y is up: (x, y, z) -> (x, z, -y), markers and plate corners."""
    turn = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    points = c3d["data"]["points"]
    points[:3] = np.einsum("ij,jpt->ipt", turn, points[:3])
    c3d["data"]["points"] = points
    corners = c3d["parameters"]["FORCE_PLATFORM"]["CORNERS"]
    corners["value"] = np.einsum("ij,jcp->icp", turn, corners["value"])


def test_a_y_up_lab_gives_the_same_events(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = altered(RAW, tmp_path, y_up)
    written = ezc3d.c3d(str(path), extract_forceplat_data=True)
    sacrum = written["data"]["points"][:3, point_labels(written).index("SACR")]
    assert np.nanmean(sacrum[1]) > 900 and abs(np.nanmean(sacrum[2])) < 800  # ~0.95 m up Y
    force = written["data"]["platform"][0]["force"]
    assert np.abs(force[1]).max() > 600 > np.abs(force[2]).max()  # body weight along Y
    recording = read_c3d(path)
    original = copy(RAW, tmp_path_factory)
    for foot in "LR":
        np.testing.assert_allclose(
            side(recording, foot).heel_strikes_s, side(original, foot).heel_strikes_s, atol=1e-6
        )
        np.testing.assert_array_equal(
            side(recording, foot).kinetics_valid_s, side(original, foot).kinetics_valid_s
        )
    assert "vertical axis Y (the pelvis markers lie above the feet)" in recording.notes


def test_a_y_up_lab_without_pelvis_markers_takes_the_vertical_from_the_plates(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No pelvis: plates are assigned to the foot nearest the centre of pressure in the
    horizontal plane, which the plate corners give."""

    def y_up_without_pelvis(c3d: ezc3d.c3d) -> None:
        y_up(c3d)
        rename_points(c3d, {"SACR": "X1", "LASI": "X2", "RASI": "X3"})

    recording = read_c3d(
        altered(RAW, tmp_path, y_up_without_pelvis), events={"detect": ["force_plate"]}
    )
    original = copy(RAW, tmp_path_factory, events={"detect": ["force_plate"]})
    for foot in "LR":
        np.testing.assert_array_equal(
            side(recording, foot).kinetics_valid_s, side(original, foot).kinetics_valid_s
        )
    assert "vertical axis Y (normal to the plates)" in recording.notes


# --- defect 8: force plates as labs record them ----------------------------------------------


def add_offset(newtons: float) -> Callable[[ezc3d.c3d], None]:
    """A zero offset of ``newtons`` on both plates' vertical force, in the lab frame (the
    FZ channels point down: +150 N on the channel is -150 N up)."""

    def change(c3d: ezc3d.c3d) -> None:
        labels = list(c3d["parameters"]["ANALOG"]["LABELS"]["value"])
        analogs = c3d["data"]["analogs"]
        for channel in ("FZ1", "FZ2"):
            analogs[0, labels.index(channel)] -= newtons
        c3d["data"]["analogs"] = analogs

    return change


@pytest.mark.parametrize("offset", [-150.0, 120.0])
def test_plate_zero_offsets_are_removed(
    offset: float, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = altered(RAW, tmp_path, add_offset(offset))
    written = ezc3d.c3d(str(path), extract_forceplat_data=True)
    unaltered = ezc3d.c3d(str(REAL / RAW), extract_forceplat_data=True)
    plates = zip(written["data"]["platform"], unaltered["data"]["platform"], strict=True)
    for plate, before in plates:
        np.testing.assert_allclose(plate["force"][2] - before["force"][2], offset, atol=1e-3)
    recording = read_c3d(path)
    original = copy(RAW, tmp_path_factory)
    for foot in "LR":
        np.testing.assert_allclose(
            side(recording, foot).kinetics_valid_s,
            side(original, foot).kinetics_valid_s,
            atol=0.0013,  # one analog sample at 800 Hz
        )
        np.testing.assert_allclose(
            side(recording, foot).heel_strikes_s, side(original, foot).heel_strikes_s, atol=0.0013
        )
    # the note gives the whole offset: the one added and the plates' own (+3 to +9 N)
    removed = re.findall(r"force plate \d: zero offset ([-+]\d+) N removed", str(recording.notes))
    assert len(removed) == 2 and all(0 <= float(r) - offset <= 10 for r in removed)


def third_plate_without_channels(c3d: ezc3d.c3d) -> None:
    """FORCE_PLATFORM:USED 3, the third plate's CHANNEL entries beyond the 30 analogs."""
    plates = c3d["parameters"]["FORCE_PLATFORM"]
    channel = np.asarray(plates["CHANNEL"]["value"])
    plates["CHANNEL"]["value"] = np.concatenate([channel, np.arange(31, 37)[:, None]], axis=1)
    corners = np.asarray(plates["CORNERS"]["value"])
    plates["CORNERS"]["value"] = np.concatenate([corners, corners[..., :1] + 600.0], axis=2)
    origin = np.asarray(plates["ORIGIN"]["value"])
    plates["ORIGIN"]["value"] = np.concatenate([origin, origin[:, :1]], axis=1)
    plates["USED"]["value"] = np.array([3])
    plates["TYPE"]["value"] = np.array([2, 2, 2])


def no_analog_channels(c3d: ezc3d.c3d) -> None:
    """Two plates declared, the analog channels gone (the header keeps 16 samples a frame)."""
    c3d["data"]["analogs"] = np.zeros((1, 0, c3d["data"]["analogs"].shape[2]))
    c3d["parameters"]["ANALOG"]["USED"]["value"] = np.array([0])
    c3d["parameters"]["ANALOG"]["LABELS"]["value"] = []


def no_analog_samples(c3d: ezc3d.c3d) -> None:
    """Two plates declared, no analog data at all (ANALOG:RATE 0)."""
    no_analog_channels(c3d)
    c3d["data"]["analogs"] = np.zeros((1, 0, 0))
    c3d["parameters"]["ANALOG"]["RATE"]["value"] = np.array([0.0])
    c3d["header"]["analogs"]["frame_rate"] = 0.0


# What ezc3d makes of each: an error, or plates with no samples.
UNREADABLE_PLATES = {
    "third plate beyond the channels": (third_plate_without_channels, "Subframe::channel"),
    "no analog channels": (no_analog_channels, "Subframe::channel"),
    "no analog samples": (no_analog_samples, None),
}


@pytest.mark.parametrize("case", list(UNREADABLE_PLATES))
def test_unreadable_plates_turn_plate_detection_off(
    case: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    change, ezc3d_error = UNREADABLE_PLATES[case]
    path = altered(RAW, tmp_path, change)
    if ezc3d_error:
        with pytest.raises(ValueError, match=ezc3d_error):
            ezc3d.c3d(str(path), extract_forceplat_data=True)
    else:
        plates = ezc3d.c3d(str(path), extract_forceplat_data=True)["data"]["platform"]
        assert [p["force"].shape for p in plates] == [(3, 0), (3, 0)]
    recording = read_c3d(path)
    assert recording.event_source == "kinematics"
    assert any("plate detection off for this file" in n for n in recording.notes)
    for foot in "LR":
        assert side(recording, foot).kinetics_valid_s.shape == (0, 2)  # no moment trusted
        expected = copy(RAW, tmp_path_factory, events={"detect": ["kinematics"]})
        np.testing.assert_array_equal(
            side(recording, foot).heel_strikes_s, side(expected, foot).heel_strikes_s
        )


# --- defect 9: one detector's bias per stride ------------------------------------------------


@pytest.mark.parametrize("name", [RAW, EMG_FILE])
def test_spliced_strides_last_as_long_as_single_detector_strides(name: str) -> None:
    """A stride from a plate onset to a kinematic heel strike lasts as long as the same stride
    with Zeni's heel strike at both ends (its lead cancels there), within half a frame."""
    mixed, kinematic = real(name), real(name, events={"detect": ["kinematics"]})
    half_frame = 0.5 / {RAW: 50.0, EMG_FILE: 60.0}[name]
    spliced = 0
    for foot in "LR":
        events = side(mixed, foot)
        on_plate = np.isin(events.heel_strikes_s, events.kinetics_valid_s[:, 0])
        zeni = side(kinematic, foot).heel_strikes_s
        for k in np.flatnonzero(on_plate[:-1] != on_plate[1:]):
            start, end = events.heel_strikes_s[k : k + 2]
            i = int(np.argmin(np.abs(zeni - start)))
            assert end - start == pytest.approx(zeni[i + 1] - zeni[i], abs=half_frame)
            spliced += 1
        # each heel strike names its detector
        expected = tuple("force_plate" if p else "kinematics" for p in on_plate)
        assert events.heel_strike_sources == expected
    assert spliced >= 2
    lag = next(n for n in mixed.notes if n.startswith("kinematic heel strikes shifted by"))
    assert re.search(r"shifted by \+\d+ ms \(median lag behind 2 plate onset", lag)


def test_stored_events_are_the_source_of_their_strides() -> None:
    recording = real(PIG)
    for foot in "LR":
        events = side(recording, foot)
        assert events.heel_strike_sources == ("events",) * len(events.heel_strikes_s)


def test_gait_raw_events_against_vicon() -> None:
    """Every heel strike of gait-raw.c3d within 15 ms of gait-pig.c3d's (the kinematic ones
    ran 18-34 ms early before their lag was corrected), toe offs within 5 ms (plate offsets
    ran 14 ms early at 50 N with the plate's +8 N offset left in)."""
    recording = real(RAW)
    assert_detection_matches_vicon(recording)
    for foot, truths in PIG_TOE_OFFS.items():
        errors = nearest_errors(side(recording, foot).toe_offs_s, truths)
        assert np.all(np.abs(errors) <= 0.005), (foot, errors)

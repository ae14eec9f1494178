"""Gait events without the real recordings: pure-array detection, and small C3D files written
with ezc3d that code their events the ways real files do."""

from __future__ import annotations

import struct
from pathlib import Path

import ezc3d
import numpy as np
import pytest

from builder.conventions import MUSCLES
from builder.datasets.c3d.adapter import PLUG_IN_GAIT_MOMENTS
from builder.errors import SourceError
from builder.formats.c3d import classify_event, parse_event_name
from builder.processing import gait_events as ge

from helpers import read_c3d, side

STRIDE_S = 1.1
HEEL_STRIKE_0 = {"L": 0.30, "R": 0.85}  # first heel strike of each foot
TOE_OFF_PHASE = 0.62  # toe off at 62 % of the stride


# --- a synthetic walker -----------------------------------------------------------------


def walker(
    rate_hz: float,
    n_frames: int,
    start_s: float = 0.0,
    speed_mps: float = 1.2,
    heading: tuple[float, float] = (1.0, 0.0),
    up_axis: int = 2,
) -> dict[str, np.ndarray]:
    """Markers (T, 3) in metres of someone walking along ``heading`` (horizontal unit vector):
    each heel is furthest ahead of the sacrum exactly at its heel strikes, each toe furthest
    behind exactly at its toe offs (Zeni's definition), strides of STRIDE_S."""
    t = start_s + np.arange(n_frames) / rate_hz
    horizontal = [axis for axis in range(3) if axis != up_axis]
    forward, lateral = np.zeros(3), np.zeros(3)
    forward[horizontal] = heading
    lateral[horizontal] = (-heading[1], heading[0])
    up = np.eye(3)[up_axis]
    sacrum = (speed_mps * t)[:, None] * forward + 0.95 * up
    markers = {"SACR": sacrum}
    for leg, offset in (("L", 0.1), ("R", -0.1)):
        heel_strike = HEEL_STRIKE_0[leg]
        toe_off = heel_strike + TOE_OFF_PHASE * STRIDE_S
        heel = 0.3 * np.cos(2 * np.pi * (t - heel_strike) / STRIDE_S)
        toe = 0.25 - 0.3 * np.cos(2 * np.pi * (t - toe_off) / STRIDE_S)
        base = sacrum - 0.95 * up + offset * lateral
        markers[f"{leg}HEE"] = base + heel[:, None] * forward + 0.05 * up
        markers[f"{leg}TOE"] = base + toe[:, None] * forward + 0.03 * up
    return markers


def true_heel_strikes(side: str, start_s: float, end_s: float, phase: float = 0.0) -> np.ndarray:
    """The walker's events at ``phase`` of the stride, not within 0.05 s of the edges."""
    times = HEEL_STRIKE_0[side] + STRIDE_S * (phase + np.arange(-5, 60))
    return times[(times > start_s + 0.05) & (times < end_s - 0.05)]


def true_toe_offs(side: str, start_s: float, end_s: float) -> np.ndarray:
    return true_heel_strikes(side, start_s, end_s, phase=TOE_OFF_PHASE)


# --- a minimal C3D writer ---------------------------------------------------------------


def write_c3d(
    path: Path,
    markers: dict[str, np.ndarray],
    *,
    rate_hz: float = 100.0,
    first_frame: int = 0,
    point_units: str = "mm",
    analogs: dict[str, np.ndarray] | None = None,
    analog_ratio: int = 10,
    analog_units: list[str] | None = None,
    analog_descriptions: list[str] | None = None,
    events: dict[str, list] | None = None,
    parameters: dict[tuple[str, str], object] | None = None,
) -> Path:
    """A C3D file as a recording system would write it. ``markers`` in metres are stored in
    ``point_units``; ``events`` maps EVENT parameters (LABELS, CONTEXTS, TIMES, USED)."""
    c3d = ezc3d.c3d()
    labels = list(markers)
    n_frames = len(next(iter(markers.values())))
    scale = {"mm": 1000.0, "m": 1.0}[point_units]
    points = np.ones((4, len(labels), n_frames))
    points[:3] = np.stack([markers[label].T * scale for label in labels], axis=1)
    c3d["parameters"]["POINT"]["RATE"]["value"] = [rate_hz]
    c3d["parameters"]["POINT"]["LABELS"]["value"] = labels
    c3d.add_parameter("POINT", "UNITS", [point_units])
    c3d["data"]["points"] = points
    analogs = analogs or {"EMG1": np.zeros(n_frames * analog_ratio)}
    c3d["parameters"]["ANALOG"]["RATE"]["value"] = [rate_hz * analog_ratio]
    c3d["parameters"]["ANALOG"]["LABELS"]["value"] = list(analogs)
    c3d["data"]["analogs"] = np.stack(list(analogs.values()))[None]
    c3d.add_parameter("ANALOG", "UNITS", analog_units or ["V"] * len(analogs))
    c3d.add_parameter("ANALOG", "DESCRIPTIONS", analog_descriptions or [""] * len(analogs))
    c3d["header"]["points"]["first_frame"] = first_frame
    for name, value in (events or {}).items():
        c3d.add_parameter("EVENT", name, value)
    for (group, name), value in (parameters or {}).items():
        c3d.add_parameter(group, name, value)
    c3d.write(str(path))
    return path


def times(minutes_and_seconds: list[float]) -> np.ndarray:
    """EVENT:TIMES (2, n) for events in the first minute."""
    return np.array([[0.0] * len(minutes_and_seconds), minutes_and_seconds])


# --- plate contacts ---------------------------------------------------------------------


def stance_force(rate_hz: float, n: int, on_s: float, off_s: float, seed: int = 0) -> np.ndarray:
    """Vertical force: a 700 N stance between on_s and off_s on top of ±27 N uniform noise
    (the noise walking2.c3d's plate 2 carries)."""
    t = np.arange(n) / rate_hz
    rng = np.random.default_rng(seed)
    force = rng.uniform(-27.0, 27.0, n)
    inside = (t >= on_s) & (t <= off_s)
    force[inside] += 700.0 * np.sin(np.pi * (t[inside] - on_s) / (off_s - on_s)) ** 0.3
    return force


def test_plate_contact_rises_above_noise_at_the_onset() -> None:
    rate = 1000.0
    force = stance_force(rate, 3000, on_s=1.0, off_s=1.6)
    contacts = ge.plate_contacts(force, rate, start_s=0.5, threshold_n=50.0)
    assert len(contacts) == 1
    contact = contacts[0]
    # 0.3 power: the force passes 77 N (50 N + the noise's 27 N) within ~1 ms of contact.
    assert contact.on_s == pytest.approx(1.5, abs=0.002)
    assert contact.off_s == pytest.approx(2.1, abs=0.002)
    assert contact.on_observed and contact.off_observed


def test_plate_noise_alone_gives_no_contact_but_a_low_threshold_would() -> None:
    noise = stance_force(1000.0, 5000, on_s=10.0, off_s=11.0)  # contact beyond the recording
    assert ge.plate_contacts(noise, 1000.0, 0.0, threshold_n=50.0) == []
    assert len(ge.contact_intervals(noise, threshold=20.0)) > 100  # why 50 N is the default


def test_contacts_cut_by_the_recording_are_flagged() -> None:
    force = np.r_[np.full(300, 600.0), np.zeros(400), np.full(300, 600.0)]
    first, last = ge.plate_contacts(force, 1000.0, 0.0, threshold_n=50.0)
    assert (first.on_observed, first.off_observed) == (False, True)
    assert (last.on_observed, last.off_observed) == (True, False)
    assert first.off_s == pytest.approx(0.299) and last.on_s == pytest.approx(0.7)


def test_short_spikes_are_dropped_and_short_dips_bridged() -> None:
    force = np.zeros(2000)
    force[100:130] = 400.0  # a 30 ms knock
    force[500:1100] = 600.0
    force[800:810] = 10.0  # a 10 ms dip inside the stance
    intervals = ge.contact_intervals(force, 50.0, min_samples=100, max_gap_samples=20)
    np.testing.assert_array_equal(intervals, [[500, 1100]])


def test_vertical_component_is_the_axis_carrying_body_weight() -> None:
    force = np.zeros((100, 3))
    force[:, 1] = np.linspace(0, 700, 100)  # Y-up lab
    force[:, 0] = np.linspace(0, -140, 100)  # shear
    np.testing.assert_array_equal(ge.vertical_component(force), force[:, 1])


# --- which foot -------------------------------------------------------------------------


def test_contact_goes_to_the_foot_nearest_the_centre_of_pressure() -> None:
    n = 60
    cop = np.column_stack((np.linspace(1.0, 1.2, n), np.full(n, 0.1), np.zeros(n)))
    left_heel = cop + np.array([-0.03, 0.02, 0.06])  # over the plate, 6 cm up
    left_toe = cop + np.array([0.15, 0.0, 0.03])
    right_heel = cop + np.array([0.6, -0.2, 0.3])  # swinging past
    distances = {
        "L": ge.foot_cop_distance(cop, [left_heel, left_toe], up_axis=2),
        "R": ge.foot_cop_distance(cop, [right_heel], up_axis=2),
    }
    assert distances["L"] == pytest.approx(np.hypot(0.03, 0.02))  # height does not count
    assert ge.assign_contact(distances) == "L"


def test_ambiguous_or_far_contacts_stay_unassigned() -> None:
    assert ge.assign_contact({"L": 0.05, "R": 0.07}) is None  # both feet on the plate
    assert ge.assign_contact({"L": 0.5, "R": 0.9}) is None  # neither foot near
    assert ge.assign_contact({"L": float("nan"), "R": float("nan")}) is None  # no markers
    assert ge.assign_contact({"L": 0.04, "R": float("nan")}) == "L"  # one foot tracked


# --- Zeni -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("heading", "up_axis"),
    [((1.0, 0.0), 2), ((0.0, -1.0), 2), ((0.6, 0.8), 1)],
    ids=["+X, Z up", "-Y, Z up", "diagonal, Y up"],
)
def test_zeni_finds_the_known_heel_strikes_and_toe_offs(heading, up_axis) -> None:
    rate, n = 100.0, 600
    markers = walker(rate, n, heading=heading, up_axis=up_axis)
    feet = [markers[name] for name in ("LHEE", "LTOE", "RHEE", "RTOE")]
    assert ge.vertical_axis(markers["SACR"], feet) == up_axis
    direction = ge.progression_direction(markers["SACR"], rate, up_axis)
    for foot in "LR":
        heel_ahead = ge.anterior_position(markers[f"{foot}HEE"], markers["SACR"], direction)
        toe_ahead = ge.anterior_position(markers[f"{foot}TOE"], markers["SACR"], direction)
        heel_strikes = ge.zeni_heel_strikes(heel_ahead, rate, 0.0)
        toe_offs = ge.zeni_toe_offs(toe_ahead, rate, 0.0)
        np.testing.assert_allclose(heel_strikes, true_heel_strikes(foot, 0.0, 6.0), atol=0.002)
        np.testing.assert_allclose(toe_offs, true_toe_offs(foot, 0.0, 6.0), atol=0.002)


def test_on_a_treadmill_the_feet_give_the_direction() -> None:
    rate = 100.0
    markers = walker(rate, 500, speed_mps=0.0)
    foot_axes = [markers["LTOE"] - markers["LHEE"], markers["RTOE"] - markers["RHEE"]]
    direction = ge.progression_direction(markers["SACR"], rate, 2, foot_axes)
    np.testing.assert_allclose(direction, np.tile([1.0, 0.0, 0.0], (500, 1)), atol=1e-9)
    heel_ahead = ge.anterior_position(markers["LHEE"], markers["SACR"], direction)
    np.testing.assert_allclose(
        ge.zeni_heel_strikes(heel_ahead, rate, 0.0), true_heel_strikes("L", 0, 5), atol=0.002
    )


def test_a_peak_just_before_a_gap_counts_but_a_rising_edge_does_not() -> None:
    rate = 100.0
    t = np.arange(300) / rate
    signal = 0.3 * np.cos(2 * np.pi * (t - 0.5) / STRIDE_S)  # maxima at 0.5 and 1.6 s
    cut_after_peak = signal.copy()
    cut_after_peak[165:] = np.nan  # 50 ms after the 1.6 s peak
    np.testing.assert_allclose(ge.peak_times(cut_after_peak, rate, 0.0), [0.5, 1.6], atol=0.002)
    cut_before_peak = signal.copy()
    cut_before_peak[155:] = np.nan  # still rising towards 1.6 s
    np.testing.assert_allclose(ge.peak_times(cut_before_peak, rate, 0.0), [0.5], atol=0.002)


def test_noise_does_not_make_extra_events() -> None:
    rate = 200.0
    t = np.arange(1200) / rate
    rng = np.random.default_rng(1)
    signal = 0.3 * np.cos(2 * np.pi * (t - 0.5) / STRIDE_S) + rng.normal(0, 0.002, t.size)
    expected = 0.5 + STRIDE_S * np.arange(6)
    np.testing.assert_allclose(
        ge.peak_times(signal, rate, 0.0), expected[expected < 5.9], atol=0.02
    )


def test_short_marker_gaps_are_bridged_long_ones_kept() -> None:
    x = np.arange(20.0)[:, None].repeat(3, axis=1)
    x[3:5] = np.nan  # 2 samples: bridged
    x[10:16] = np.nan  # 6 samples: kept
    x[:1] = np.nan  # edge: kept
    filled = ge.fill_gaps(x, max_gap=3)
    np.testing.assert_allclose(filled[3:5, 0], [3.0, 4.0])
    assert np.isnan(filled[10:16]).all() and np.isnan(filled[0]).all()


def test_pelvis_reference_keeps_to_one_marker_group() -> None:
    n = 100
    sacrum = np.zeros((n, 3))
    asis = [np.ones((n, 3)), np.ones((n, 3))]
    asis[0][:30] = np.nan  # ASIS midpoint covers 70 %
    chosen = ge.reference_point([[sacrum], asis])
    np.testing.assert_array_equal(chosen, sacrum)
    sacrum_gappy = sacrum.copy()
    sacrum_gappy[:60] = np.nan  # now the sacrum covers 40 %
    np.testing.assert_array_equal(ge.reference_point([[sacrum_gappy], asis])[40:], 1.0)
    assert ge.reference_point([]) is None


def test_plate_events_replace_nearby_kinematic_ones() -> None:
    kinematic = np.array([0.54, 1.48, 2.46])
    plate = np.array([0.5725])
    np.testing.assert_allclose(ge.merge_events(plate, kinematic), [0.5725, 1.48, 2.46])
    np.testing.assert_allclose(ge.merge_events([], kinematic), kinematic)
    np.testing.assert_allclose(ge.merge_events(plate, []), plate)


def test_merged_events_say_which_detector_gave_them() -> None:
    times, from_plate = ge.merge_with_sources([0.5725, 2.44], [0.54, 1.48, 2.46, 3.40])
    np.testing.assert_allclose(times, [0.5725, 1.48, 2.44, 3.40])
    assert from_plate.tolist() == [True, False, True, False]


def test_kinematic_lag_behind_plate_events() -> None:
    plate = np.array([0.57, 2.44, 4.0])
    kinematic = np.array([0.542, 1.48, 2.405, 3.70])  # 4.0 has no kinematic event within 0.15 s
    np.testing.assert_allclose(ge.event_lags(plate, kinematic), [0.028, 0.035])
    assert ge.event_lags(plate, []).size == 0 and ge.event_lags([], kinematic).size == 0


# --- plate zero offsets -------------------------------------------------------------------


@pytest.mark.parametrize("offset", [-210.0, -70.0, 0.0, 150.0])
def test_plate_baseline_is_the_unloaded_level(offset: float) -> None:
    rate, n = 1000.0, 4000
    force = stance_force(rate, n, 1.2, 1.9) + offset  # ±27 N noise, unloaded 3.3 of 4 s
    assert ge.plate_baseline(force, rate, 50.0) == pytest.approx(offset, abs=3.0)
    # with it removed the contact is where it was; without, it spans (nearly) the whole trial
    (contact,) = ge.plate_contacts(force - ge.plate_baseline(force, rate, 50.0), rate, 0.0, 50.0)
    assert contact.on_s == pytest.approx(1.2, abs=0.01)
    if abs(offset) > 100:
        assert ge.plate_contacts(force, rate, 0.0, 50.0)[0].on_s < 0.1


def test_plate_baseline_of_a_plate_stood_on_at_the_start() -> None:
    """Standing still on the plate (quiet, like an unloaded plate) before stepping off: the
    unloaded level is the quiet level on the far side from the stance peaks."""
    rate = 1000.0
    rng = np.random.default_rng(3)
    standing = 700.0 + rng.normal(0.0, 3.0, 1500)
    stance = stance_force(rate, 1500, 0.4, 1.0, seed=4)
    stance[400:1001] += 150.0 * np.sin(np.pi * np.arange(601) / 600)  # peaks above standing
    force = np.concatenate((standing, rng.normal(0.0, 1.0, 1000), stance)) - 80.0
    assert ge.plate_baseline(force, rate, 50.0) == pytest.approx(-80.0, abs=3.0)
    assert ge.plate_baseline(np.full(50, 3.0), rate, 50.0) is None  # shorter than a window


def test_contact_ends_at_the_edge_level() -> None:
    """The threshold finds the contact; its ends are where the load crosses the edge level."""
    rate = 1000.0
    t = np.arange(2000) / rate
    force = np.clip(1900.0 * (t - 0.5), 0.0, 700.0) * (t < 1.2)  # 20 N at 0.5105, 50 N 0.5263
    (plain,) = ge.plate_contacts(force, rate, 0.0, 50.0)
    (edged,) = ge.plate_contacts(force, rate, 0.0, 50.0, edge_n=20.0)
    assert plain.on_s == pytest.approx(0.527, abs=1e-9)
    assert edged.on_s == pytest.approx(0.511, abs=1e-9)
    assert edged.off_s == plain.off_s  # a sharp release
    assert ge.plate_contacts(stance_force(rate, 2000, 5.0, 6.0) * 0.5, rate, 0.0, 50.0, 20.0) == []


# --- the lab's vertical axis ----------------------------------------------------------------


def test_vertical_axis_from_markers_plates_or_load() -> None:
    markers = walker(100.0, 300, up_axis=1)
    feet = [markers[name] for name in ("LHEE", "LTOE", "RHEE", "RTOE")]
    assert ge.marker_vertical_axis(markers["SACR"], feet) == 1
    assert ge.marker_vertical_axis(None, feet) is None
    assert ge.marker_vertical_axis(markers["SACR"], []) is None
    floor = np.array([[[0.5, 0.0, 0.9], [0.0, 0.0, 0.9], [0.0, 0.0, 0.3], [0.5, 0.0, 0.3]]])
    assert ge.plate_vertical_axis(floor) == 1  # plates in the X-Z plane: Y up
    assert ge.plate_vertical_axis(np.zeros((1, 4, 3))) is None  # corners not filled in
    tilted = floor.copy()
    tilted[0, :2, 1] = 0.5
    assert ge.plate_vertical_axis(tilted) is None
    force = np.zeros((1000, 3))
    force[200:800, 1] = 700.0
    force[200:800, 0] = 120.0  # shear
    assert ge.load_vertical_axis([force], 50.0) == 1
    assert ge.load_vertical_axis([np.zeros((1000, 3))], 50.0) is None  # never loaded


def test_missing_runs_tell_interior_gaps_from_edges() -> None:
    x = np.arange(20.0)[:, None].repeat(3, axis=1)
    x[:2] = np.nan
    x[5:7, 1] = np.nan  # one component missing is a missing sample
    x[15:] = np.nan
    np.testing.assert_array_equal(ge.missing_runs(x), [[0, 2, 0], [5, 7, 1], [15, 20, 0]])
    assert ge.missing_runs(np.ones((5, 3))).shape == (0, 3)


# --- event labels -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Foot Strike", (None, "heel_strike")),
        ("foot strike", (None, "heel_strike")),
        ("HEEL STRIKE", (None, "heel_strike")),
        ("HS", (None, "heel_strike")),
        ("FS", (None, "heel_strike")),
        ("IC", (None, "heel_strike")),
        ("Initial Contact", (None, "heel_strike")),
        ("Foot Off", (None, "toe_off")),
        ("Toe Off", (None, "toe_off")),
        ("toe-off", (None, "toe_off")),
        ("TO", (None, "toe_off")),
        ("FO", (None, "toe_off")),
        ("LHS", ("L", "heel_strike")),
        ("Left Foot Strike", ("L", "heel_strike")),
        ("R_HS", ("R", "heel_strike")),
        ("hs_l", ("L", "heel_strike")),
        ("RTO", ("R", "toe_off")),
        ("Right Foot Off", ("R", "toe_off")),
        ("L FO", ("L", "toe_off")),
        ("Left-FP", (None, None)),
        ("Left", ("L", None)),
        ("General", (None, None)),
    ],
)
def test_event_names(text, expected) -> None:
    assert parse_event_name(text) == expected


def test_event_contexts() -> None:
    assert classify_event("Foot Strike", "Left") == ("L", "heel_strike")
    assert classify_event("foot off", "right") == ("R", "toe_off")
    assert classify_event("", "LHS") == ("L", "heel_strike")  # coded in CONTEXTS
    assert classify_event("Foot Strike", "General") is None  # no side anywhere
    assert classify_event("Foot Strike", "Invalid") is None
    assert classify_event("RHS", "General") == ("R", "heel_strike")  # the label names it
    assert classify_event("RHS", "Left") is None  # contradiction: trust neither
    assert classify_event("Left-FP", "General") is None  # not a gait event


# --- whole synthetic files --------------------------------------------------------------


def test_events_coded_in_contexts_with_empty_labels(tmp_path: Path) -> None:
    path = write_c3d(
        tmp_path / "contexts.c3d",
        walker(100.0, 300),
        events={
            "USED": 5,
            "LABELS": [""] * 5,
            "CONTEXTS": ["LHS", "RHS", "LTO", "RTO", "LHS"],
            "TIMES": times([0.30, 0.85, 0.98, 1.53, 1.40]),
        },
    )
    recording = read_c3d(path)
    assert recording.event_source == "events"
    np.testing.assert_allclose(side(recording, "L").heel_strikes_s, [0.30, 1.40], atol=1e-6)
    np.testing.assert_allclose(side(recording, "L").toe_offs_s, [0.98], atol=1e-6)
    np.testing.assert_allclose(side(recording, "R").heel_strikes_s, [0.85], atol=1e-6)
    np.testing.assert_allclose(side(recording, "R").toe_offs_s, [1.53], atol=1e-6)


def test_labels_without_a_contexts_parameter(tmp_path: Path) -> None:
    path = write_c3d(
        tmp_path / "labels.c3d",
        walker(100.0, 300),
        events={
            "USED": 6,
            "LABELS": ["Left Foot Strike", "R_HS", "LTO", "Right Toe Off", "FS", "lhs"],
            "TIMES": times([0.30, 0.85, 0.98, 1.53, 1.0, 1.40]),
        },
    )
    recording = read_c3d(path)
    np.testing.assert_allclose(side(recording, "L").heel_strikes_s, [0.30, 1.40], atol=1e-6)
    np.testing.assert_allclose(side(recording, "R").heel_strikes_s, [0.85], atol=1e-6)
    np.testing.assert_allclose(side(recording, "L").toe_offs_s, [0.98], atol=1e-6)
    np.testing.assert_allclose(side(recording, "R").toe_offs_s, [1.53], atol=1e-6)
    assert any("FS (no context)" in note for note in recording.notes)  # sideless: ignored


def test_lower_case_labels_general_context_and_event_used(tmp_path: Path) -> None:
    path = write_c3d(
        tmp_path / "cases.c3d",
        walker(100.0, 300),
        events={
            "USED": 6,  # the seventh entry is a leftover and must be ignored
            "LABELS": [
                "foot strike",
                "HEEL STRIKE",
                "Initial Contact",
                "fo",
                "Foot Strike",
                "Event",
                "Foot Strike",
            ],
            "CONTEXTS": ["left", "Right", "LEFT", "right", "General", "Left", "Left"],
            "TIMES": times([0.30, 0.85, 1.40, 1.53, 0.5, 0.6, 2.0]),
        },
    )
    recording = read_c3d(path)
    np.testing.assert_allclose(side(recording, "L").heel_strikes_s, [0.30, 1.40], atol=1e-6)
    np.testing.assert_allclose(side(recording, "R").heel_strikes_s, [0.85], atol=1e-6)
    np.testing.assert_allclose(side(recording, "R").toe_offs_s, [1.53], atol=1e-6)
    (note,) = [n for n in recording.notes if n.startswith("events ignored")]
    assert "Foot Strike (General)" in note and "Event (Left)" in note


def test_first_frame_and_analog_ratio_set_the_start_times(tmp_path: Path) -> None:
    n = 300
    emg = np.sin(np.arange(n * 10) / 7.0)
    path = write_c3d(
        tmp_path / "offset.c3d",
        walker(100.0, n, start_s=0.62),
        first_frame=62,
        analogs={"EMG1": emg},
        events={"USED": 2, "LABELS": ["LHS", "RHS"], "TIMES": times([1.40, 1.95])},
    )
    options = {"emg": {"channels": {"tibialis_anterior": {"L": "EMG1"}}}}
    recording = read_c3d(path, **options)
    left = side(recording, "L")
    assert left.emg.start_s == pytest.approx(0.62)  # analog first frame 620 at 1 kHz
    assert left.emg.rate_hz == 1000.0 and left.emg.n_samples == n * 10
    np.testing.assert_allclose(left.heel_strikes_s, [1.40], atol=1e-6)  # absolute, as stored


def test_event_minutes_row_and_events_outside_the_recording(tmp_path: Path) -> None:
    path = write_c3d(
        tmp_path / "minutes.c3d",
        walker(100.0, 300, start_s=60.0),
        first_frame=6000,  # the recording runs 60.0-62.99 s
        events={
            "USED": 3,
            "LABELS": ["LHS", "LHS", "RHS"],
            "TIMES": np.array([[1.0, 1.0, 0.0], [0.5, 1.6, 0.85]]),  # 60.5, 61.6 and 0.85 s
        },
    )
    recording = read_c3d(path)
    np.testing.assert_allclose(side(recording, "L").heel_strikes_s, [60.5, 61.6], atol=1e-5)
    assert any("1 event(s) outside" in note for note in recording.notes)
    # the right foot had no event inside the recording: kinematics found its heel strikes
    assert recording.event_source == "events+kinematics"
    np.testing.assert_allclose(
        side(recording, "R").heel_strikes_s, true_heel_strikes("R", 60.0, 63.0), atol=0.002
    )


def test_no_events_no_plates_kinematic_detection_in_m_and_mm(tmp_path: Path) -> None:
    markers = walker(100.0, 500)
    for units in ("mm", "m"):
        recording = read_c3d(write_c3d(tmp_path / f"walk_{units}.c3d", markers, point_units=units))
        assert recording.event_source == "kinematics"
        for foot in "LR":
            detected = side(recording, foot)
            np.testing.assert_allclose(
                detected.heel_strikes_s, true_heel_strikes(foot, 0.0, 5.0), atol=0.002
            )
            assert detected.kinetics_valid_s is None  # no plates: moments would be trusted


def test_nothing_to_find_heel_strikes_with(tmp_path: Path) -> None:
    path = write_c3d(tmp_path / "still.c3d", {"MARKER": np.zeros((200, 3))})
    with pytest.raises(SourceError, match=r"still\.c3d: no heel strikes found by any enabled"):
        read_c3d(path)


def test_emg_channels_units_alternatives_and_missing(tmp_path: Path) -> None:
    n = 200
    signals = {
        name: np.full(n * 10, value) for name, value in (("LTA", 2.0), ("RTA", 0.5), ("X", 1.0))
    }
    path = write_c3d(
        tmp_path / "emg.c3d",
        walker(100.0, n),
        analogs=signals,
        analog_units=["mV", "V", "uV"],
        analog_descriptions=["Left Tib Ant", "Right Tib Ant", "Left Soleus"],
        events={"USED": 2, "LABELS": ["LHS", "RHS"], "TIMES": times([0.3, 0.85])},
    )
    by_label = {
        "tibialis_anterior": {"L": ["lta_old", "lta"], "R": "RTA"},
        "soleus": {"L": "LSOL"},
    }
    # Constant channels: not signed raw EMG, so the file declares envelopes.
    recording = read_c3d(path, "envelope", emg={"match": "label", "channels": by_label})
    left, right = side(recording, "L").emg, side(recording, "R").emg
    ta, sol = MUSCLES.index("tibialis_anterior"), MUSCLES.index("soleus")
    np.testing.assert_allclose(left.data[:, ta], 2.0e-3, rtol=1e-6)  # mV -> V, second alternative
    np.testing.assert_allclose(right.data[:, ta], 0.5, rtol=1e-6)
    assert np.isnan(left.data[:, sol]).all() and np.isnan(np.delete(right.data, ta, axis=1)).all()
    assert any("L soleus: no analog channel with label LSOL" in n for n in recording.notes)

    by_description = {"soleus": {"L": "left soleus"}}
    left = side(
        read_c3d(path, "envelope", emg={"match": "description", "channels": by_description}), "L"
    ).emg
    np.testing.assert_allclose(left.data[:, sol], 1.0e-6, rtol=1e-6)  # uV -> V

    force = {"soleus": {"L": "X"}}
    force_path = write_c3d(
        tmp_path / "force.c3d",
        walker(100.0, n),
        analogs={"X": np.zeros(n * 10)},
        analog_units=["N"],
        events={"USED": 1, "LABELS": ["LHS"], "TIMES": times([0.3])},
    )
    with pytest.raises(SourceError, match="EMG channel 'X' is in 'N', not a voltage unit"):
        read_c3d(force_path, emg={"channels": force})


def test_model_outputs_prefix_axes_units_and_body_mass(tmp_path: Path) -> None:
    n = 200
    markers = walker(100.0, n)
    angles = np.column_stack((np.full(n, 0.5), np.full(n, 0.1), np.full(n, -0.2)))  # X, Y, Z rad
    moments = np.tile([800.0, -150.0, 40.0], (n, 1))  # external, N.mm
    outputs = {"S1:LKneeAngles": angles / 1000.0, "S1:LKneeMoment": moments / 1000.0}  # /1000: mm
    path = write_c3d(
        tmp_path / "model.c3d",
        {**markers, **outputs},
        events={"USED": 1, "LABELS": ["LHS"], "TIMES": times([0.3])},
        parameters={
            ("POINT", "ANGLE_UNITS"): ["rad"],
            ("POINT", "MOMENT_UNITS"): ["Nmm"],
            ("PROCESSING", "Bodymass"): 80.0,
        },
    )
    # Plug-in-Gait moments in N·mm (not per kg), knee flexion stored with the opposite sign.
    sign = {"*": -1.0, "knee.flexion": 1.0}
    pig_moments_per_mass = PLUG_IN_GAIT_MOMENTS.model_copy(
        update={"units": "N.mm", "sign": sign}
    ).model_dump()
    recording = read_c3d(path, kinetics=pig_moments_per_mass)
    left = side(recording, "L")
    knee_angles = left.kinematics.data[:, 1]  # (T, plane): adduction, rotation, flexion
    np.testing.assert_allclose(
        knee_angles, np.tile(np.degrees([0.1, -0.2, 0.5]), (n, 1)), rtol=1e-5
    )
    assert np.isnan(left.kinematics.data[:, [0, 2]]).all()  # hip and ankle absent
    knee_moments = left.kinetics.data[:, 1]
    np.testing.assert_allclose(knee_moments, np.tile([0.15, -0.04, 0.8], (n, 1)) / 80.0, rtol=1e-5)
    assert side(recording, "R").kinematics is None

    with pytest.raises(SourceError, match="need the body mass"):
        read_c3d(
            write_c3d(
                tmp_path / "no_mass.c3d",
                {**markers, **outputs},
                events={"USED": 1, "LABELS": ["LHS"], "TIMES": times([0.3])},
            ),
            kinetics=pig_moments_per_mass,
        )
    per_kg_as_if_nm = {**pig_moments_per_mass, "units": "N.m/kg"}
    with pytest.raises(SourceError, match=r"reach 800 N·m/kg .* units are probably wrong"):
        read_c3d(path, kinetics=per_kg_as_if_nm)


def test_truncated_and_garbage_files(tmp_path: Path) -> None:
    whole = write_c3d(tmp_path / "whole.c3d", walker(100.0, 300))
    data = whole.read_bytes()
    truncated = tmp_path / "truncated.c3d"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(SourceError, match=r"truncated\.c3d: file is truncated: \d+ of 300"):
        read_c3d(truncated)
    garbage = tmp_path / "garbage.c3d"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(SourceError, match=r"garbage\.c3d: not a readable C3D file"):
        read_c3d(garbage)


def test_analog_rate_not_a_multiple_of_the_point_rate(tmp_path: Path) -> None:
    path = write_c3d(tmp_path / "rates.c3d", walker(100.0, 100))
    data = path.read_bytes()
    assert data.count(struct.pack("<f", 1000.0)) == 1  # ANALOG:RATE, the only 1000.0
    path.write_bytes(data.replace(struct.pack("<f", 1000.0), struct.pack("<f", 1050.0)))
    with pytest.raises(
        SourceError, match="analog rate 1050 Hz is not a multiple of the point rate 100 Hz"
    ):
        read_c3d(path)


def test_bad_options_are_a_source_error(tmp_path: Path) -> None:
    path = write_c3d(tmp_path / "opts.c3d", walker(100.0, 100))
    with pytest.raises(SourceError, match=r"invalid c3d options: events\.force_threshold_n"):
        read_c3d(path, events={"force_threshold_n": -1})

"""The C3D adapter's analog EMG on real files rewritten the way other writers lay them out.

Each fixture is a real recording from ../shared/data/real read with ezc3d, a few parameters or
samples changed as Vicon Nexus and other writers produce them (left and right channels with
one DESCRIPTIONS text and the side in an EMG group, two channels with one label, EMG stored as
integer ADC counts labelled volts, unit spellings such as 'Volts' and the fixed-width 'mete'),
written back with ezc3d and read through the adapter.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from pathlib import Path

import ezc3d
import numpy as np
import pytest

from builder.conventions import MUSCLES
from builder.errors import SourceError
from builder.records import TrialRecording

from helpers import REAL_DATA as REAL
from helpers import read_c3d, requires_real_data, side

pytestmark = [pytest.mark.real_data, requires_real_data]

EMG_FILE = "Gait with EMG.c3d"
RAW = "gait-raw.c3d"
# "Gait with EMG.c3d": analog channels 12-19 (0-based) are the EMG, all in V, ±10 V.
EMG_LABELS = ("RVAS", "RLAT", "RGAS", "RTIB", "LVAS", "LLAT", "LGAS", "LTIB")
CHANNEL = {label: 12 + i for i, label in enumerate(EMG_LABELS)}
GM = MUSCLES.index("gastrocnemius_medialis")
TA = MUSCLES.index("tibialis_anterior")
GMAX, GMED = MUSCLES.index("gluteus_maximus"), MUSCLES.index("gluteus_medius")
# A 12-bit ADC over ±10 V (ANALOG:GAIN code 1): c3d.org's SCALE = 20 V / 2^12.
VOLTS_PER_COUNT_12BIT = 20.0 / 4096


@cache
def _source_analogs(name: str) -> np.ndarray:
    return ezc3d.c3d(str(REAL / name))["data"]["analogs"][0]


def analog(label: str) -> np.ndarray:
    """An EMG channel of the unmodified "Gait with EMG.c3d", volts."""
    return _source_analogs(EMG_FILE)[CHANNEL[label]]


def set_param(c3d: ezc3d.c3d, group: str, name: str, value) -> None:
    if group in c3d["parameters"] and name in c3d["parameters"][group]:
        c3d["parameters"][group][name]["value"] = value
    else:
        c3d.add_parameter(group, name, value)


def set_entries(c3d: ezc3d.c3d, group: str, name: str, entries: dict[int, str]) -> None:
    """Change some entries of a list-of-strings parameter (ANALOG:LABELS, ...)."""
    values = list(c3d["parameters"][group][name]["value"])
    for index, value in entries.items():
        values[index] = value
    set_param(c3d, group, name, values)


def rewrite(folder: Path, name: str, edit: Callable[[ezc3d.c3d], None], source=EMG_FILE) -> Path:
    """A real file with ``edit`` applied, written by ezc3d into ``folder``."""
    c3d = ezc3d.c3d(str(REAL / source))
    edit(c3d)
    path = folder / name
    c3d.write(str(path))
    return path


def emg_notes(recording: TrialRecording) -> list[str]:
    return [note for note in recording.notes if note.startswith("EMG")]


# --- the fixtures ------------------------------------------------------------------------


def one_gastrocnemius_description(c3d: ezc3d.c3d) -> None:
    """Vicon Nexus style: left and right gastrocnemius share one DESCRIPTIONS text."""
    set_entries(c3d, "ANALOG", "DESCRIPTIONS", {CHANNEL["RGAS"]: "Gastrocnemius"})
    set_entries(c3d, "ANALOG", "DESCRIPTIONS", {CHANNEL["LGAS"]: "Gastrocnemius"})


def sideless_gastrocnemius(c3d: ezc3d.c3d) -> None:
    """... and labels that do not say the side either (EMG3, EMG7 as gait-pig.c3d's)."""
    one_gastrocnemius_description(c3d)
    set_entries(c3d, "ANALOG", "LABELS", {CHANNEL["RGAS"]: "EMG3", CHANNEL["LGAS"]: "EMG7"})


def emg_group_sides(c3d: ezc3d.c3d) -> None:
    """... with the side in an EMG group (Italian Dx/Sx: destra, sinistra)."""
    sideless_gastrocnemius(c3d)
    c3d.add_parameter("EMG", "LABELS", ["EMG3", "EMG7"])
    c3d.add_parameter("EMG", "SIDE", ["Dx", "Sx"])


def adc_counts(units: str, gain: list[int] | None, bits: int) -> Callable[[ezc3d.c3d], None]:
    """The EMG stored as integer counts of a 12-bit ±10 V ADC with SCALE 1, labelled ``units``,
    with ANALOG:GAIN ``gain`` (none when None) and ANALOG:BITS ``bits``."""

    def edit(c3d: ezc3d.c3d) -> None:
        analogs = c3d["data"]["analogs"]
        emg = analogs[0, 12:20]
        analogs[0, 12:20] = np.clip(np.round(emg / VOLTS_PER_COUNT_12BIT), -2048, 2047)
        c3d["data"]["analogs"] = analogs
        set_entries(c3d, "ANALOG", "UNITS", dict.fromkeys(range(12, 20), units))
        set_param(c3d, "ANALOG", "BITS", [bits])
        if gain is not None:
            set_param(c3d, "ANALOG", "GAIN", gain)

    return edit


def test_written_fixtures_keep_the_parameters_set(tmp_path: Path) -> None:
    """ezc3d writes what the tests set (so each test reads the layout it claims)."""
    grouped = ezc3d.c3d(str(rewrite(tmp_path, "group.c3d", emg_group_sides)))
    analog_group = grouped["parameters"]["ANALOG"]
    assert [analog_group["DESCRIPTIONS"]["value"][CHANNEL[x]] for x in ("RGAS", "LGAS")] == [
        "Gastrocnemius",
        "Gastrocnemius",
    ]
    assert [analog_group["LABELS"]["value"][CHANNEL[x]] for x in ("RGAS", "LGAS")] == [
        "EMG3",
        "EMG7",
    ]
    assert grouped["parameters"]["EMG"]["SIDE"]["value"] == ["Dx", "Sx"]
    assert grouped["parameters"]["EMG"]["LABELS"]["value"] == ["EMG3", "EMG7"]
    np.testing.assert_array_equal(grouped["data"]["analogs"][0], _source_analogs(EMG_FILE))

    counts = ezc3d.c3d(str(rewrite(tmp_path, "counts.c3d", adc_counts("Volts", [1] * 32, 12))))
    samples = counts["data"]["analogs"][0, 12:20]
    np.testing.assert_array_equal(samples, np.round(samples))
    assert samples.min() >= -2048 and samples.max() <= 2047 and np.ptp(samples) > 2000
    analog_group = counts["parameters"]["ANALOG"]
    assert list(analog_group["UNITS"]["value"][12:20]) == ["Volts"] * 8
    assert list(analog_group["GAIN"]["value"]) == [1] * 32
    assert list(analog_group["BITS"]["value"]) == [12]
    assert list(analog_group["SCALE"]["value"][12:20]) == [1.0] * 8
    assert analog_group["GEN_SCALE"]["value"][0] == 1.0

    mete = rewrite(tmp_path, "mete.c3d", lambda c: set_param(c, "POINT", "UNITS", ["mete"]))
    assert ezc3d.c3d(str(mete))["parameters"]["POINT"]["UNITS"]["value"] == ["mete"]


# --- issue 9 defect 1: one description on both legs ---------------------------------------

BOTH_GASTROCNEMII = {"gastrocnemius_medialis": {"L": "Gastrocnemius", "R": "Gastrocnemius"}}


def test_one_description_for_both_legs_is_told_apart_by_the_emg_group(tmp_path: Path) -> None:
    path = rewrite(tmp_path, "group.c3d", emg_group_sides)
    recording = read_c3d(path, emg={"match": "description", "channels": BOTH_GASTROCNEMII})
    np.testing.assert_array_equal(side(recording, "L").emg.data[:, GM], analog("LGAS"))
    np.testing.assert_array_equal(side(recording, "R").emg.data[:, GM], analog("RGAS"))
    assert any(
        "EMG L gastrocnemius_medialis: description 'Gastrocnemius' is on 2 channels" in note
        and "'EMG7' (analog 19, 'Gastrocnemius') chosen by its side (EMG:SIDE)" in note
        for note in recording.notes
    )


@pytest.mark.parametrize(
    ("right", "left"),
    [
        ("RGAS", "LGAS"),  # the file's own labels
        ("GAS_D", "GAS_G"),  # French: droite, gauche
        ("Gastroc Dx", "Gastroc Sx"),  # Italian: destra, sinistra
        ("RightGastroc", "LeftGastroc"),
        ("Rt gastroc", "Lt gastroc"),  # as newwalk.c3d's descriptions
    ],
)
def test_one_description_for_both_legs_is_told_apart_by_side_in_labels(
    tmp_path: Path, right: str, left: str
) -> None:
    def edit(c3d: ezc3d.c3d) -> None:
        one_gastrocnemius_description(c3d)
        set_entries(c3d, "ANALOG", "LABELS", {CHANNEL["RGAS"]: right, CHANNEL["LGAS"]: left})

    path = rewrite(tmp_path, "labels.c3d", edit)
    recording = read_c3d(path, emg={"match": "description", "channels": BOTH_GASTROCNEMII})
    np.testing.assert_array_equal(side(recording, "L").emg.data[:, GM], analog("LGAS"))
    np.testing.assert_array_equal(side(recording, "R").emg.data[:, GM], analog("RGAS"))


def test_upper_case_descriptions_are_no_side_codes(tmp_path: Path) -> None:
    """Old writers' upper-case descriptions ('LATERAL GASTROCNEMIUS') do not read as 'L' + code:
    the labels RGAS / LGAS still tell the legs apart."""

    def edit(c3d: ezc3d.c3d) -> None:
        text = "LATERAL GASTROCNEMIUS"
        set_entries(c3d, "ANALOG", "DESCRIPTIONS", {CHANNEL["RGAS"]: text, CHANNEL["LGAS"]: text})

    channels = {
        "gastrocnemius_lateralis": {"L": "lateral gastrocnemius", "R": "LATERAL GASTROCNEMIUS"}
    }
    recording = read_c3d(
        rewrite(tmp_path, "upper.c3d", edit), emg={"match": "description", "channels": channels}
    )
    gl = MUSCLES.index("gastrocnemius_lateralis")
    np.testing.assert_array_equal(side(recording, "L").emg.data[:, gl], analog("LGAS"))
    np.testing.assert_array_equal(side(recording, "R").emg.data[:, gl], analog("RGAS"))


def test_one_description_for_both_legs_without_side_is_refused(tmp_path: Path) -> None:
    path = rewrite(tmp_path, "sideless.c3d", sideless_gastrocnemius)
    channels = {
        **BOTH_GASTROCNEMII,
        "tibialis_anterior": {"L": "Left Tibialis Anterior", "R": "Right Tibialis Anterior"},
    }
    recording = read_c3d(path, emg={"match": "description", "channels": channels})
    for leg, ta in (("L", "LTIB"), ("R", "RTIB")):
        emg = side(recording, leg).emg
        assert np.isnan(emg.data[:, GM]).all()  # absent, never the other leg's muscle
        np.testing.assert_array_equal(emg.data[:, TA], analog(ta))
        (note,) = [n for n in recording.notes if n.startswith(f"EMG {leg} gastrocnemius")]
        assert note == (
            f"EMG {leg} gastrocnemius_medialis: description 'Gastrocnemius' is on 2 channels, "
            "'EMG3' (analog 15, 'Gastrocnemius') and 'EMG7' (analog 19, 'Gastrocnemius'), and "
            "the file does not tell which (neither an EMG group nor their labels or "
            "descriptions give their sides; no description names gastrocnemius_medialis "
            "apart): left out"
        )

    required = {"match": "description", "channels": channels, "required": True}
    with pytest.raises(
        SourceError,
        match=r"sideless\.c3d: EMG L gastrocnemius_medialis: .*"
        r"'EMG3' \(analog 15.* and 'EMG7' \(analog 19.*\(emg\.required\)",
    ):
        read_c3d(path, emg=required)


def test_one_channel_never_fills_two_slots_unless_shared() -> None:
    path = REAL / EMG_FILE
    channels = {
        "gastrocnemius_medialis": {"R": "RGAS", "L": "LGAS"},
        "gastrocnemius_lateralis": {"R": "rgas"},  # the same channel, another slot
        "tibialis_anterior": {"L": "RTIB", "R": "RTIB"},  # the same channel on both legs
    }
    recording = read_c3d(path, emg={"channels": channels})
    gl = MUSCLES.index("gastrocnemius_lateralis")
    assert side(recording, "R").emg is None  # RGAS twice and RTIB twice: nothing is left
    left = side(recording, "L").emg
    assert np.isnan(left.data[:, TA]).all()
    np.testing.assert_array_equal(left.data[:, GM], analog("LGAS"))
    assert (
        "EMG R gastrocnemius_lateralis: channel 'RGAS' (analog 15, 'Right Gastrocnemius') would "
        "also fill R gastrocnemius_medialis; one channel fills one slot unless emg.shared lists "
        "it: left out"
    ) in recording.notes
    assert any(n.startswith("EMG L tibialis_anterior: channel 'RTIB'") for n in recording.notes)

    # One electrode over both heads, declared: the catalogue says so explicitly.
    shared = read_c3d(path, emg={"channels": channels, "shared": ["RGAS"]})
    right = side(shared, "R").emg
    np.testing.assert_array_equal(right.data[:, GM], analog("RGAS"))
    np.testing.assert_array_equal(right.data[:, gl], analog("RGAS"))
    assert np.isnan(right.data[:, TA]).all()  # RTIB on both legs is still not declared
    # ... and tells the quality gate, which leaves out one signal in two slots, to let it be
    # (tests/test_quality.py).
    assert shared.shared_emg == (frozenset({"gastrocnemius_medialis", "gastrocnemius_lateralis"}),)

    with pytest.raises(SourceError, match=r"emg\.shared: .*\['RSOL'\], which no entry"):
        read_c3d(path, emg={"channels": channels, "shared": ["RSOL"]})


# --- issue 9 defect 11: two channels with one label -----------------------------------------


def two_rglu(descriptions: tuple[str, str]) -> Callable[[ezc3d.c3d], None]:
    """Channels RVAS and RLAT relabelled RGLU, RGLU (gluteus maximus and medius)."""

    def edit(c3d: ezc3d.c3d) -> None:
        set_entries(c3d, "ANALOG", "LABELS", {CHANNEL["RVAS"]: "RGLU", CHANNEL["RLAT"]: "RGLU"})
        entries = dict(zip((CHANNEL["RVAS"], CHANNEL["RLAT"]), descriptions, strict=True))
        set_entries(c3d, "ANALOG", "DESCRIPTIONS", entries)

    return edit


GLUTEI = {"gluteus_maximus": {"R": "RGLU"}, "gluteus_medius": {"R": "RGLU"}}


def test_duplicate_labels_are_told_apart_by_their_descriptions(tmp_path: Path) -> None:
    edit = two_rglu(("Right Gluteus Maximus", "R. glut. med."))
    recording = read_c3d(rewrite(tmp_path, "rglu.c3d", edit), emg={"channels": GLUTEI})
    right = side(recording, "R").emg
    np.testing.assert_array_equal(right.data[:, GMAX], analog("RVAS"))
    np.testing.assert_array_equal(right.data[:, GMED], analog("RLAT"))
    assert any(
        "EMG R gluteus_medius: label 'RGLU' is on 2 channels" in note
        and "'RGLU' (analog 14, 'R. glut. med.') chosen by its description naming gluteus_medius"
        in note
        for note in recording.notes
    )


def test_duplicate_labels_that_nothing_tells_apart_are_refused(tmp_path: Path) -> None:
    edit = two_rglu(("Right Gluteus", "Right Gluteus"))
    recording = read_c3d(rewrite(tmp_path, "rglu.c3d", edit), emg={"channels": GLUTEI})
    assert side(recording, "R").emg is None  # every mapped channel refused
    for muscle in ("gluteus_maximus", "gluteus_medius"):
        assert (
            f"EMG R {muscle}: label 'RGLU' is on 2 channels, 'RGLU' (analog 13, 'Right "
            "Gluteus') and 'RGLU' (analog 14, 'Right Gluteus'), and the file does not tell "
            f"which (all are R channels; no description names {muscle} apart): left out"
        ) in recording.notes


# --- issue 9 defect 10: ADC counts labelled volts, unit spellings ---------------------------

EMG_BY_LABEL = {
    "tibialis_anterior": {"L": "LTIB", "R": "RTIB"},
    "gastrocnemius_medialis": {"L": "LGAS", "R": "RGAS"},
}


@pytest.mark.parametrize("units", ["V", "Volts"])
def test_adc_counts_are_scaled_by_the_files_adc_range(tmp_path: Path, units: str) -> None:
    path = rewrite(tmp_path, "counts.c3d", adc_counts(units, [1] * 32, 12))
    recording = read_c3d(path, emg={"channels": EMG_BY_LABEL})
    for leg in "LR":
        emg = side(recording, leg).emg
        assert emg.units == "V"
        for muscle, column in (("tibialis_anterior", TA), ("gastrocnemius_medialis", GM)):
            original = analog(EMG_BY_LABEL[muscle][leg])
            unclipped = np.abs(original) < 10.0 - VOLTS_PER_COUNT_12BIT
            # Back in volts within half a count of what the file held before.
            np.testing.assert_allclose(
                emg.data[unclipped, column], original[unclipped], atol=VOLTS_PER_COUNT_12BIT / 2
            )
    assert (
        f"EMG channel 'LTIB' (analog 20, 'Left Tibialis Anterior') holds integer ADC counts "
        f"(-770 to 789) labelled {units!r}: scaled by 0.00488281 V per count (±10 V from "
        "ANALOG:GAIN 1, ANALOG:BITS 12)"
    ) in recording.notes


@pytest.mark.parametrize(
    ("gain", "bits", "reason"),
    [
        (None, 12, "the file gives no ANALOG:GAIN to scale them by"),
        ([0] * 32, 12, r"the file gives ANALOG:GAIN 0 \(no known range\) to scale them by"),
        ([1] * 32, 10, "they span 4094 counts, more than a 10-bit ADC gives"),
    ],
)
def test_adc_counts_without_a_credible_scale_are_refused(
    tmp_path: Path, gain: list[int] | None, bits: int, reason: str
) -> None:
    path = rewrite(tmp_path, "counts.c3d", adc_counts("V", gain, bits))
    recording = read_c3d(path, emg={"channels": EMG_BY_LABEL})
    assert side(recording, "L").emg is None and side(recording, "R").emg is None
    notes = emg_notes(recording)
    assert len(notes) == 4
    (rgas,) = [n for n in notes if n.startswith("EMG R gastrocnemius_medialis")]
    pattern = (
        r"EMG R gastrocnemius_medialis: channel 'RGAS' \(analog 15, 'Right Gastrocnemius'\) "
        rf"holds integer ADC counts \(-2047 to 2047\) labelled 'V' and {reason}: left out"
    )
    assert re.fullmatch(pattern, rgas), rgas
    with pytest.raises(SourceError, match=r"counts\.c3d: EMG L tibialis_anterior: .*LTIB"):
        read_c3d(path, emg={"channels": EMG_BY_LABEL, "required": True})


@pytest.mark.parametrize(("units", "factor"), [("Volts", 1.0), ("millivolts", 1e-3)])
def test_emg_unit_spellings(tmp_path: Path, units: str, factor: float) -> None:
    def edit(c3d: ezc3d.c3d) -> None:
        set_entries(c3d, "ANALOG", "UNITS", dict.fromkeys(range(12, 20), units))

    recording = read_c3d(rewrite(tmp_path, "units.c3d", edit), emg={"channels": EMG_BY_LABEL})
    np.testing.assert_allclose(side(recording, "L").emg.data[:, TA], analog("LTIB") * factor)
    assert not emg_notes(recording)


@pytest.mark.parametrize(
    ("source", "units"),
    [
        (EMG_FILE, "mete"),  # 'meters' cut to a 4-character fixed-width string
        (EMG_FILE, "Meters"),
        (RAW, "millimeters"),
        (RAW, "MM"),
    ],
)
def test_marker_unit_spellings_read_as_the_files_own(
    tmp_path: Path, source: str, units: str
) -> None:
    """Plate feet and kinematic events depend on the marker units: the rewritten file gives
    what the same file with its own spelling gives."""
    own = read_c3d(rewrite(tmp_path, "own.c3d", lambda c: None, source))
    spelled = rewrite(
        tmp_path, "spelled.c3d", lambda c: set_param(c, "POINT", "UNITS", [units]), source
    )
    recording = read_c3d(spelled)
    assert recording.event_source == own.event_source == "force_plate+kinematics"
    for leg in "LR":
        expected, got = side(own, leg), side(recording, leg)
        np.testing.assert_array_equal(got.heel_strikes_s, expected.heel_strikes_s)
        np.testing.assert_array_equal(got.toe_offs_s, expected.toe_offs_s)
        np.testing.assert_array_equal(got.kinetics_valid_s, expected.kinetics_valid_s)

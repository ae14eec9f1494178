"""The one tolerant unit parser (builder.conventions) behind angle_factor, moment_factor,
emg_factor and length_factor: unit strings as real writers spell them, and loud errors for the
rest."""

from __future__ import annotations

import math

import pytest

from builder import conventions
from builder.conventions import angle_factor, emg_factor, length_factor, moment_factor

DEG_PER_RAD = 180.0 / math.pi


@pytest.mark.parametrize(
    ("text", "metres"),
    [
        ("m", 1.0),
        ("M", 1.0),
        ("mete", 1.0),  # 'meters' in a 4-character fixed-width C3D string
        ("meter", 1.0),
        ("meters", 1.0),
        ("Metres", 1.0),
        ("mm", 1e-3),
        ("MM", 1e-3),
        ("millimeters", 1e-3),
        ("millimetres", 1e-3),
        ("millim", 1e-3),  # truncated
        ("cm", 1e-2),
        ("centimetres", 1e-2),
        (" mm\x00 ", 1e-3),  # padding as fixed-width strings carry it
        ("[mm]", 1e-3),
    ],
)
def test_length_spellings(text: str, metres: float) -> None:
    assert length_factor(text) == pytest.approx(metres)


@pytest.mark.parametrize(
    ("text", "volts"),
    [
        ("V", 1.0),
        ("v", 1.0),
        ("Volt", 1.0),
        ("Volts", 1.0),
        ("VOLTS", 1.0),
        ("mV", 1e-3),
        ("millivolts", 1e-3),
        ("milli", 1e-3),  # 'millivolts' cut short: only volts are expected here
        ("uV", 1e-6),
        ("µV", 1e-6),  # micro sign U+00B5
        ("μV", 1e-6),  # Greek mu U+03BC
        ("microvolts", 1e-6),
        ("(mV)", 1e-3),
    ],
)
def test_emg_spellings(text: str, volts: float) -> None:
    assert emg_factor(text) == pytest.approx(volts)


@pytest.mark.parametrize(
    ("text", "degrees"),
    [
        ("deg", 1.0),
        ("DEG", 1.0),
        ("degree", 1.0),
        ("Degrees", 1.0),
        ("degs", 1.0),
        ("°", 1.0),
        ("degr", 1.0),  # truncated
        ("rad", DEG_PER_RAD),
        ("radian", DEG_PER_RAD),
        ("Radians", DEG_PER_RAD),
    ],
)
def test_angle_spellings(text: str, degrees: float) -> None:
    assert angle_factor(text) == pytest.approx(degrees)


@pytest.mark.parametrize(
    ("text", "per_kg_factor"),
    [
        ("Nm/kg", 1.0),
        ("N.m/kg", 1.0),
        ("N·m/kg", 1.0),
        ("N*m/kg", 1.0),
        ("N m/kg", 1.0),
        ("N-m/kg", 1.0),
        ("N.m.kg-1", 1.0),
        ("N m kg^-1", 1.0),
        ("Nm kg⁻¹", 1.0),
        ("Nm per kg", 1.0),
        ("newton metres/kg", 1.0),
        ("Nmm/kg", 1e-3),
        ("N.mm/kg", 1e-3),
        ("N·mm/kg", 1e-3),
        ("NMM/KG", 1e-3),
    ],
)
def test_per_kg_moment_spellings(text: str, per_kg_factor: float) -> None:
    assert moment_factor(text) == pytest.approx(per_kg_factor)


@pytest.mark.parametrize(("text", "newton_metres"), [("Nm", 1.0), ("N.m", 1.0), ("Nmm", 1e-3)])
def test_absolute_moments_need_the_body_mass(text: str, newton_metres: float) -> None:
    assert moment_factor(text, 80.0) == pytest.approx(newton_metres / 80.0)
    with pytest.raises(ValueError, match=f"moments in {text} need the body mass"):
        moment_factor(text)


def test_parse_unit_says_what_a_unit_measures() -> None:
    parse_unit, Unit = conventions.parse_unit, conventions.Unit
    assert parse_unit("Volts") == Unit("voltage", 1.0)
    assert parse_unit("mete") == Unit("length", 1.0)
    assert parse_unit("N.mm/kg") == Unit("moment", 1e-3, per_kg=True)
    assert parse_unit("N") == Unit("force", 1.0)
    assert parse_unit("rad").factor == pytest.approx(DEG_PER_RAD)
    # A truncation two quantities share is settled only by what the caller expects.
    with pytest.raises(ValueError, match="unknown unit 'milli'"):
        parse_unit("milli")
    assert parse_unit("milli", "length") == Unit("length", 1e-3)


@pytest.mark.parametrize(
    ("factor", "text", "message"),
    [
        (angle_factor, "deg/s", r"unknown angle unit 'deg/s' \(known: deg, rad\)"),
        (angle_factor, "mm", "'mm' is a length unit, not an angle unit"),
        (length_factor, "met", "unknown length unit 'met'"),  # too short to guess from
        (length_factor, "inches", "unknown length unit 'inches'"),
        (length_factor, "nm", "'nm' is a moment unit"),  # never nanometres
        (emg_factor, "N", "'N' is a force unit, not a voltage unit"),
        (emg_factor, "normalised", "unknown voltage unit 'normalised'"),
        (emg_factor, "V/kg", "unknown voltage unit 'V/kg'"),
        (emg_factor, "%MVC", "unknown voltage unit '%MVC'"),
        (emg_factor, "", "unknown voltage unit ''"),
        (moment_factor, "Nm/s", "unknown moment unit 'Nm/s'"),
        (moment_factor, "%BW*H", "unknown moment unit"),
        (moment_factor, "V", "'V' is a voltage unit, not a moment unit"),
    ],
)
def test_unknown_units_stay_errors(factor, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factor(text)

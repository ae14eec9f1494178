"""The canonical stride record's fixed vocabulary (SPEC.md, "Canonical stride record").

Everything an adapter converts *to* lives here: joint, plane and muscle order, sides, the
activity vocabulary, target rates and sample counts, and the unit conversions adapters need.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Final, Literal

JOINTS: Final = ("hip", "knee", "ankle")
# The order the foundation dataset fixed: adduction, rotation, flexion.
PLANES: Final = ("adduction", "rotation", "flexion")

# The 13 canonical muscle slots, in order. Keys are the names used in catalogues.
MUSCLES: Final = (
    "vastus_lateralis",
    "rectus_femoris",
    "vastus_medialis",
    "tibialis_anterior",
    "biceps_femoris",
    "semitendinosus",  # semitendinosus or semimembranosus
    "gastrocnemius_medialis",
    "gastrocnemius_lateralis",
    "soleus",
    "peroneus_longus",
    "peroneus_brevis",
    "gluteus_medius",
    "gluteus_maximus",
)
MUSCLE_ABBREVIATIONS: Final = {
    "vastus_lateralis": "VL",
    "rectus_femoris": "RF",
    "vastus_medialis": "VM",
    "tibialis_anterior": "TA",
    "biceps_femoris": "BF",
    "semitendinosus": "ST",
    "gastrocnemius_medialis": "GM",
    "gastrocnemius_lateralis": "GL",
    "soleus": "SOL",
    "peroneus_longus": "PL",
    "peroneus_brevis": "PB",
    "gluteus_medius": "GMED",
    "gluteus_maximus": "GMAX",
}

Side = Literal["L", "R"]
SIDES: Final[tuple[Side, Side]] = ("L", "R")

ACTIVITIES: Final = (
    "walk",
    "ramp_ascent",
    "ramp_descent",
    "stair_ascent",
    "stair_descent",
    "run",
    "sit_to_stand",
    "stand_to_sit",
    "transition",
    "other",
)

# Who the strides come from (the stride table's ``population``). Conditions (``condition``)
# are free text built from documented flags: knee_orthosis, fatigue, electrode_shift,
# perturbation, terrain_stiffness=<value>, paretic leg, ... (see the catalogue entries).
POPULATIONS: Final = ("healthy", "older_adults", "children", "stroke")

EmgKind = Literal["raw", "envelope"]
EMG_KINDS: Final = ("raw", "envelope")

EMG_RATE_HZ: Final = 1000.0
SAMPLES_PER_STRIDE: Final = 200

# Units every array is converted to before it reaches the store.
ANGLE_UNITS: Final = "deg"
MOMENT_UNITS: Final = "N.m/kg"

# --- units as files write them -----------------------------------------------------------
#
# One tolerant parser for every unit string an adapter meets: case ("MM", "Volts"), plurals
# and spellings ("millimetres", "degrees"), micro signs ("µV", "μV", "uV"), product and
# per-mass notations ("N.mm/kg", "Nmm/kg", "N·m/kg", "N m kg^-1", "Nm per kg"), brackets
# ("[mV]") and the truncations of C3D's fixed-width strings ("mete" for "meters": a parameter's
# strings are cut to the width its writer declared). Anything else stays an error.

UnitQuantity = Literal["angle", "length", "voltage", "force", "moment"]


@dataclass(frozen=True)
class Unit:
    """A parsed unit: what it measures, the multiplier to the base unit (deg, m, V, N, N·m)
    and whether it is per kilogram of body mass (moments only)."""

    quantity: UnitQuantity
    factor: float
    per_kg: bool = False


_DEG_PER_RAD: Final = 57.29577951308232
# Symbols take symbol prefixes ("mm", "uV"); words take word or symbol prefixes ("millimetre",
# "mvolt"). Only the prefixes these quantities really use, so "nm" never means nanometre.
_SYMBOLS: Final[dict[UnitQuantity, dict[str, float]]] = {
    "angle": {"deg": 1.0, "degs": 1.0, "°": 1.0, "rad": _DEG_PER_RAD, "rads": _DEG_PER_RAD},
    "length": {"m": 1.0},
    "voltage": {"v": 1.0},
    "force": {"n": 1.0},
}
_WORDS: Final[dict[UnitQuantity, dict[str, float]]] = {
    "angle": {
        "degree": 1.0,
        "degrees": 1.0,
        "radian": _DEG_PER_RAD,
        "radians": _DEG_PER_RAD,
    },
    "length": {"meter": 1.0, "meters": 1.0, "metre": 1.0, "metres": 1.0},
    "voltage": {"volt": 1.0, "volts": 1.0},
    "force": {"newton": 1.0, "newtons": 1.0},
}
_PREFIXES: Final[dict[UnitQuantity, dict[str, tuple[str, float]]]] = {
    # quantity -> symbol prefix -> (word prefix, multiplier)
    "angle": {},
    "length": {"m": ("milli", 1e-3), "c": ("centi", 1e-2)},
    "voltage": {"m": ("milli", 1e-3), "u": ("micro", 1e-6)},
    "force": {},
}


def _atoms() -> dict[str, tuple[UnitQuantity, float]]:
    atoms: dict[str, tuple[UnitQuantity, float]] = {}
    for quantity in _SYMBOLS:
        for symbol, factor in _SYMBOLS[quantity].items():
            atoms[symbol] = (quantity, factor)
            for prefix, (_, scale) in _PREFIXES[quantity].items():
                atoms[prefix + symbol] = (quantity, factor * scale)
        for word, factor in _WORDS[quantity].items():
            atoms[word] = (quantity, factor)
            for prefix, (long, scale) in _PREFIXES[quantity].items():
                atoms[prefix + word] = atoms[long + word] = (quantity, factor * scale)
    return atoms


_ATOMS: Final = _atoms()
# Spelled-out names a fixed-width C3D string may have cut short ("mete", "degr", "millim").
_LONG_NAMES: Final = {name: unit for name, unit in _ATOMS.items() if len(name) >= 5}
_MIN_TRUNCATED: Final = 4  # "met", "deg"-length stubs are too ambiguous to guess from
_PER_KG: Final = ("kg", "kgs", "kilogram", "kilograms")


def _normalise_unit(unit: str) -> str:
    text = unit.strip().strip("\x00").strip()
    if len(text) > 2 and text[0] + text[-1] in ("[]", "()", "{}"):
        text = text[1:-1].strip()
    text = text.replace("µ", "u").replace("μ", "u").casefold()  # micro sign, Greek mu
    text = text.replace("⁻¹", "-1").replace("^", "")
    text = re.sub(r"[\s·⋅*×_]+", ".", text)  # every product notation becomes "."
    text = re.sub(r"\.?per\.", "/", text)
    text = re.sub(r"\.?(kgs?|kilograms?)-1$", r"/\1", text)  # "Nm kg^-1" -> "nm/kg"
    text = text.replace("-", ".")  # "N-m", "newton-metre"
    text = re.sub(r"\.*/\.*", "/", text)
    return re.sub(r"\.{2,}", ".", text).strip(".")


def _atom(text: str, expect: UnitQuantity | None = None) -> tuple[UnitQuantity, float] | None:
    """One simple unit, exact or a fixed-width truncation of a spelled-out one; ``expect``
    settles a truncation two quantities share ("milli": millimetres or millivolts)."""
    if text in _ATOMS:
        return _ATOMS[text]
    if len(text) < _MIN_TRUNCATED:
        return None
    matches = {unit for name, unit in _LONG_NAMES.items() if name.startswith(text)}
    if len(matches) > 1 and expect is not None:
        matches = {unit for unit in matches if unit[0] == expect}
    return matches.pop() if len(matches) == 1 else None


def _moment_atom(text: str) -> float | None:
    """Force times length written as one word ("nmm", "nm", "newtonmetre"): the length factor."""
    for force in ("newtons", "newton", "n"):
        rest = text.removeprefix(force)
        if rest != text and (unit := _atom(rest, "length")) and unit[0] == "length":
            return unit[1]
    return None


def parse_unit(unit: str, expect: UnitQuantity | None = None) -> Unit:
    """What a unit string as a file or catalogue writes it means; ValueError when unknown.
    ``expect`` (the quantity the caller wants) only settles ambiguous truncations."""
    text = _normalise_unit(unit)
    numerator, _, denominator = text.partition("/")
    if denominator and denominator not in _PER_KG:
        raise ValueError(f"unknown unit {unit!r}")
    parts = [p for p in numerator.split(".") if p]
    parsed: Unit | None = None
    if len(parts) == 1 and (simple := _atom(parts[0], expect)):
        parsed = Unit(*simple)
    elif len(parts) == 1 and (moment_length := _moment_atom(parts[0])) is not None:
        parsed = Unit("moment", moment_length)
    elif len(parts) == 2:
        force, length = _atom(parts[0], "force"), _atom(parts[1], "length")
        if force and length and force[0] == "force" and length[0] == "length":
            parsed = Unit("moment", force[1] * length[1])
    if parsed is None:
        raise ValueError(f"unknown unit {unit!r}")
    if denominator:
        if parsed.quantity != "moment":
            raise ValueError(f"unknown unit {unit!r} (only moments may be per kg)")
        parsed = dataclasses.replace(parsed, per_kg=True)
    return parsed


def _factor(unit: str, quantity: UnitQuantity, known: str) -> Unit:
    try:
        parsed = parse_unit(unit, quantity)
    except ValueError:
        raise ValueError(f"unknown {quantity} unit {unit!r} (known: {known})") from None
    if parsed.quantity != quantity:
        article = "an" if quantity[0] in "aeiou" else "a"
        raise ValueError(f"{unit!r} is a {parsed.quantity} unit, not {article} {quantity} unit")
    return parsed


def angle_factor(unit: str) -> float:
    """Multiplier that converts angles in ``unit`` to degrees."""
    return _factor(unit, "angle", "deg, rad").factor


def moment_factor(unit: str, body_mass_kg: float | None = None) -> float:
    """Multiplier that converts moments in ``unit`` to N·m/kg.

    Units without ``/kg`` need the body mass; a missing mass is an error, never a guess.
    """
    parsed = _factor(unit, "moment", "N.m/kg, N.mm/kg, N.m, N.mm")
    if parsed.per_kg:
        return parsed.factor
    if body_mass_kg is None or not body_mass_kg > 0:
        raise ValueError(f"moments in {unit} need the body mass, and none was given")
    return parsed.factor / body_mass_kg


def emg_factor(unit: str) -> float:
    """Multiplier that converts EMG in ``unit`` to volts."""
    return _factor(unit, "voltage", "V, mV, uV").factor


def length_factor(unit: str) -> float:
    """Multiplier that converts lengths in ``unit`` to metres."""
    return _factor(unit, "length", "m, cm, mm").factor

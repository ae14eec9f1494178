"""The canonical stride record's fixed vocabulary (SPEC.md, "Canonical stride record").

Everything an adapter converts *to* lives here: joint, plane and muscle order, sides, the
activity vocabulary, target rates and sample counts, and the unit conversions adapters need.
"""

from __future__ import annotations

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

_ANGLE_TO_DEG: Final = {"deg": 1.0, "degree": 1.0, "degrees": 1.0, "rad": 57.29577951308232}
# Moment units: (factor to N·m, whether already divided by body mass).
_MOMENT_TO_NM: Final = {  # keys without the dot: "N.mm/kg" and "Nmm/kg" are the same unit
    "nm/kg": (1.0, True),
    "nmm/kg": (1e-3, True),
    "nm": (1.0, False),
    "nmm": (1e-3, False),
}
_EMG_TO_V: Final = {"v": 1.0, "mv": 1e-3, "uv": 1e-6, "µv": 1e-6}
_LENGTH_TO_M: Final = {"m": 1.0, "mm": 1e-3, "cm": 1e-2}


def _normalise_unit(unit: str) -> str:
    return unit.strip().lower().replace("·", ".").replace(" ", "").replace("*", ".")


def angle_factor(unit: str) -> float:
    """Multiplier that converts angles in ``unit`` to degrees."""
    try:
        return _ANGLE_TO_DEG[_normalise_unit(unit)]
    except KeyError:
        raise ValueError(f"unknown angle unit {unit!r} (known: deg, rad)") from None


def moment_factor(unit: str, body_mass_kg: float | None = None) -> float:
    """Multiplier that converts moments in ``unit`` to N·m/kg.

    Units without ``/kg`` need the body mass; a missing mass is an error, never a guess.
    """
    try:
        to_nm, per_kg = _MOMENT_TO_NM[_normalise_unit(unit).replace(".", "")]
    except KeyError:
        raise ValueError(
            f"unknown moment unit {unit!r} (known: N.m/kg, N.mm/kg, N.m, N.mm)"
        ) from None
    if per_kg:
        return to_nm
    if body_mass_kg is None or not body_mass_kg > 0:
        raise ValueError(f"moments in {unit} need the body mass, and none was given")
    return to_nm / body_mass_kg


def emg_factor(unit: str) -> float:
    """Multiplier that converts EMG in ``unit`` to volts."""
    try:
        return _EMG_TO_V[_normalise_unit(unit)]
    except KeyError:
        raise ValueError(f"unknown EMG unit {unit!r} (known: V, mV, uV)") from None


def length_factor(unit: str) -> float:
    """Multiplier that converts lengths in ``unit`` to metres."""
    try:
        return _LENGTH_TO_M[_normalise_unit(unit)]
    except KeyError:
        raise ValueError(f"unknown length unit {unit!r} (known: m, cm, mm)") from None

"""C3D source adapter (ezc3d): Plug-in-Gait-style model outputs, analog EMG, events.

Catalogue ``args`` for ``driver: c3d`` (validated by :class:`C3DOptions`)::

    emg:
      match: label            # or: description (ANALOG:DESCRIPTIONS)
      channels:               # canonical muscle -> side -> channel name(s), case-insensitive
        tibialis_anterior: {L: LTIB, R: [RTIB, "R Tib Ant"]}
    kinematics: plug-in-gait  # preset, or {labels, axes, sign, units}
    kinetics: plug-in-gait    # preset: external moments in N.mm/kg -> internal N.m/kg
    events:
      detect: [events, force_plate, kinematics]
      force_threshold_n: 50
      markers: auto           # plug-in-gait | helen-hayes | davis | cast | {heel, ankle, ...}
    body_mass_kg: null        # only needed for moments in N.m / N.mm

Reading the file (parameters, timing, points, analog channels in volts, stored events, force
plates, and what ezc3d leaves to the reader) is :mod:`builder.formats.c3d`'s; this module is
the driver: its catalogue options, the mapping onto canonical records, and event detection.

What it returns: per side, EMG (T, 13) volts at the analog rate, angles and internal moments
(T, 3, 3) at the point rate, each starting at its stream's ``first_frame / rate``; heel strikes
and toe offs from the first ``events.detect`` step that finds heel strikes for that side
(stored events; else plate onsets/offsets merged with Zeni's kinematic events, shifted by
their median lag behind the plate events of the trial, see :mod:`builder.processing.gait_events`)
and the detector of each heel strike (``heel_strike_sources``); ``kinetics_valid_s`` = the
side's stance intervals on a plate when the file has plates (a stride's moments are
trustworthy when its stance lies in one; swing moments need no plate), ``None`` when it has
none. Labels are found whatever their subject prefix, case, separators and side tokens
(L/R, Left/Right, G/D, Sx/Dx); the event markers' preset is chosen from the labels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Literal

import ezc3d
import numpy as np
from pydantic import Field, field_validator

from builder.conventions import (
    ANGLE_UNITS,
    JOINTS,
    MOMENT_UNITS,
    MUSCLES,
    PLANES,
    SIDES,
    Side,
    angle_factor,
    moment_factor,
)
from builder.datasets.base import AdapterOptions, SourceAdapter
from builder.datasets.mapping import sign_for
from builder.datasets.options import known_muscles
from builder.errors import SourceError
from builder.formats.c3d import (
    Analogs,
    Events,
    Plate,
    Points,
    Timing,
    emg_volts,
    expand_label,
    marker_scale,
    names_muscle,
    param_number,
    param_strings,
    plate_corners,
    read_events,
    read_plates,
    read_timing,
)

# The names C3DAdapter calls.
from builder.formats.c3d import declared_frames as _declared_frames
from builder.formats.c3d import load_c3d as _load
from builder.formats.files import FileAccess
from builder.processing import gait_events as ge
from builder.records import SideRecording, TimeSeries, TrialRecording, TrialSpec

Axis = Literal["X", "Y", "Z"]


class EmgOptions(AdapterOptions):
    """Analog channels per canonical muscle and side, matched by label or description
    (case-insensitive); a list gives alternative names (files of one lab name a channel
    differently), the first that names any channel wins.

    A name that several channels carry (Vicon Nexus gives left and right channels the same
    DESCRIPTIONS; two ``RGLU`` labels for gluteus maximus and medius) is settled by what the
    file says: the side in an EMG parameter group (``EMG:SIDE`` or ``EMG:CONTEXT``, entries
    matched to channels by ``EMG:LABELS`` or ``EMG:CHANNEL``), else a side word in the
    channels' labels and descriptions (L/R, Lt/Rt, Left/Right, G/D, Gauche/Droite, Sx/Dx,
    Sinistra/Destra, ``RGAS``), then a description that names the muscle. Otherwise that
    muscle is left out with the candidate channels in the recording's notes. One channel never
    fills two (side, muscle) slots unless ``shared`` lists its name (one electrode over both
    gastrocnemius heads). Refused or missing channels leave their muscle absent (NaN) with the
    reason in the notes; ``required: true`` makes any of them an error for the trial instead.
    """

    match: Literal["label", "description"] = "label"
    channels: dict[str, dict[Literal["L", "R"], str | list[str]]] = Field(default_factory=dict)
    shared: list[str] = Field(default_factory=list)
    required: bool = False

    _known_muscles = field_validator("channels")(known_muscles)

    @field_validator("shared")
    @classmethod
    def _shared_names_are_mapped(cls, value: list[str], info) -> list[str]:
        named = {
            name.casefold()
            for per_side in (info.data.get("channels") or {}).values()
            for wanted in per_side.values()
            for name in ([wanted] if isinstance(wanted, str) else wanted)
        }
        unknown = [name for name in value if name.casefold() not in named]
        if unknown:
            raise ValueError(f"shared names {unknown}, which no entry of channels names")
        return value


class ModelOutputOptions(AdapterOptions):
    """Where joint angles or moments live among the C3D points, and how to convert them.

    ``labels`` map each joint to a point label with a ``{side}`` placeholder ("L"/"R"); a
    subject prefix such as ``A22:`` is matched automatically. ``axes`` say which point
    component holds each canonical plane. ``sign`` multiplies components after the axis map:
    keys ``"<joint>.<plane>"``, ``"<joint>"``, ``"<plane>"`` or ``"*"``; the most specific wins.
    ``units`` overrides the file's POINT:ANGLE_UNITS / POINT:MOMENT_UNITS.
    """

    labels: dict[str, str]
    axes: dict[str, Axis]
    sign: dict[str, float] = Field(default_factory=dict)
    units: str | None = None

    @field_validator("labels")
    @classmethod
    def _known_joints(cls, value: dict) -> dict:
        unknown = sorted(set(value) - set(JOINTS))
        if unknown:
            raise ValueError(f"unknown joint(s) {unknown}; joints are {list(JOINTS)}")
        return value

    @field_validator("axes")
    @classmethod
    def _all_planes(cls, value: dict) -> dict:
        if set(value) != set(PLANES):
            raise ValueError(f"axes must map exactly the planes {list(PLANES)}")
        return value


# Plug-in Gait / CGM: X flexion (dorsiflexion), Y adduction, Z internal rotation, degrees,
# the same clinical signs on both sides. Moments are an *external* description in N·mm/kg
# (MOMENT_UNITS says "Nmm" but values are per kg): internal = -external, so every component
# flips. Checked on gait-pig.c3d and the CGM2.4 sample: hip X +0.8 at loading (extensor),
# ankle X +1.6 at 50 % (plantarflexor).
PLUG_IN_GAIT_ANGLES = ModelOutputOptions(
    labels={"hip": "{side}HipAngles", "knee": "{side}KneeAngles", "ankle": "{side}AnkleAngles"},
    axes={"adduction": "Y", "rotation": "Z", "flexion": "X"},
)
PLUG_IN_GAIT_MOMENTS = ModelOutputOptions(
    labels={"hip": "{side}HipMoment", "knee": "{side}KneeMoment", "ankle": "{side}AnkleMoment"},
    axes={"adduction": "Y", "rotation": "Z", "flexion": "X"},
    sign={"*": -1.0},
    units="N.mm/kg",
)
_PRESETS = {
    "kinematics": {"plug-in-gait": PLUG_IN_GAIT_ANGLES},
    "kinetics": {"plug-in-gait": PLUG_IN_GAIT_MOMENTS},
}


class EventMarkers(AdapterOptions):
    """Marker labels for kinematic event detection and for telling which foot hit a plate.

    ``{side}`` becomes the file's side token (``L``/``R``, ``Left``/``Right``, ``G``/``D`` or
    ``Sx``/``Dx``: one set per file, the one its labels use); in ``pelvis`` groups ``{left}``
    and ``{right}`` name the two sides. A subject prefix (``A22:``), case, spaces, ``_``, ``.``
    and ``-`` are ignored (``{side}_FCC`` finds ``L_FCC`` and ``LFCC``; ``{side} heel`` finds
    ``r heel``). Lists are in order of preference: the heel marker (or, lacking one, the ankle
    marker) gives heel strikes, the toe marker toe offs; ``pelvis`` lists groups whose
    midpoint is the pelvis reference (one group is used for the whole trial).
    """

    # Defaults: Plug-in Gait / CGM (Vicon), with the spellings of labs that extend it: IST's
    # CAL/LMA/PM1 (Gait with EMG.c3d), OpenSim's MT2/LMAL/AJC (walking2.c3d).
    heel: tuple[str, ...] = ("{side}HEE", "{side}HEEL", "{side}CAL")
    ankle: tuple[str, ...] = ("{side}ANK", "{side}LMAL", "{side}LMA", "{side}AJC")
    toe: tuple[str, ...] = ("{side}TOE", "{side}MT2", "{side}FMH", "{side}MT1", "{side}PM1")
    pelvis: tuple[tuple[str, ...], ...] = (
        ("SACR",),
        ("VSAC",),
        ("{left}PSI", "{right}PSI"),
        ("{left}ASI", "{right}ASI"),
    )

    def templates(self) -> list[str]:
        return [*self.heel, *self.ankle, *self.toe, *(n for group in self.pelvis for n in group)]


# Marker sets (the ``events.markers`` presets), in order of preference when files tie.
MARKER_PRESETS: dict[str, EventMarkers] = {
    "plug-in-gait": EventMarkers(),
    # Helen Hayes (Kadaba 1990) as Motion Analysis Cortex names it: R.Heel, R.Ankle, V.Sacral.
    "helen-hayes": EventMarkers(
        heel=("{side}.Heel",),
        ankle=("{side}.Ankle", "{side}.Ankle.Lateral"),
        toe=("{side}.Toe", "{side}.Met5", "{side}.5th.Met"),
        pelvis=(("V.Sacral",), ("{left}.PSIS", "{right}.PSIS"), ("{left}.ASIS", "{right}.ASIS")),
    ),
    # Davis (1991) as BTS SMART names it: lower case with spaces (r heel, r mall, r met, sacrum).
    "davis": EventMarkers(
        heel=("{side} heel",),
        ankle=("{side} mall", "{side} malleolus"),
        toe=("{side} toe", "{side} met", "{side} 5th met"),
        pelvis=(("sacrum",), ("{left} psis", "{right} psis"), ("{left} asis", "{right} asis")),
    ),
    # CAST / IOR gait (Cappozzo, Leardini) as Qualisys names the landmarks: L_FCC calcaneus,
    # L_FM1/2/5 metatarsal heads, L_FAL lateral malleolus, L_IAS/L_IPS iliac spines.
    "cast": EventMarkers(
        heel=("{side}_FCC",),
        ankle=("{side}_FAL", "{side}_TAM"),
        toe=("{side}_FM2", "{side}_FM1", "{side}_FM5"),
        pelvis=(("{left}_IPS", "{right}_IPS"), ("{left}_IAS", "{right}_IAS")),
    ),
}
MarkerPreset = Literal["auto", "plug-in-gait", "helen-hayes", "davis", "cast"]
Detector = Literal["events", "force_plate", "kinematics"]
DETECTORS: tuple[Detector, ...] = ("events", "force_plate", "kinematics")


class EventOptions(AdapterOptions):
    # Tried in order until one gives heel strikes for a side; force_plate and kinematics are
    # one step together (plate onsets replace nearby kinematic heel strikes of the same foot).
    detect: list[Detector] = Field(default_factory=lambda: list(DETECTORS))
    force_threshold_n: float = Field(default=50.0, gt=0)
    # "auto": the preset with most of its labels in the file; a preset name; or the labels.
    markers: MarkerPreset | EventMarkers = "auto"


class C3DOptions(AdapterOptions):
    emg: EmgOptions | None = None
    kinematics: ModelOutputOptions | None = PLUG_IN_GAIT_ANGLES
    kinetics: ModelOutputOptions | None = PLUG_IN_GAIT_MOMENTS
    events: EventOptions = Field(default_factory=EventOptions)
    body_mass_kg: float | None = Field(default=None, gt=0)

    @field_validator("kinematics", "kinetics", mode="before")
    @classmethod
    def _preset(cls, value, info):
        if isinstance(value, str):
            presets = _PRESETS[info.field_name]
            if value not in presets:
                raise ValueError(f"unknown preset {value!r}; known: {sorted(presets)}")
            return presets[value]
        return value


# Internal moments above this (N·m/kg) do not happen in human movement (running peaks ~4).
MAX_PLAUSIBLE_MOMENT = 10.0
# Joint-angle and moment gaps up to this long are bridged linearly (as EMG gaps are): over
# 50 ms a swing knee curve departs from its chord by ~2°; longer gaps stay missing.
MAX_MODEL_GAP_S = 0.05
# A plate zero offset of at least this fraction of the contact threshold gets a note (smaller
# ones move a contact's ends by about a millisecond).
OFFSET_NOTE_FRACTION = 0.2


# --- model outputs ----------------------------------------------------------------------


def _model_output(
    points: Points,
    options: ModelOutputOptions,
    side: Side,
    factor: float,
    rate_hz: float,
    notes: list[str],
    what: str,
) -> tuple[np.ndarray | None, list[str]]:
    """(T, 3, 3) in canonical axes, signs and units, or None when no label is present;
    and the labels that are missing. Interior gaps of up to MAX_MODEL_GAP_S are bridged
    linearly; longer ones stay NaN, so that joint is absent from the strides they touch
    (both with a note in ``notes``, ``what`` naming the output)."""
    out = np.full((points.data.shape[1], len(JOINTS), len(PLANES)), np.nan)
    missing = []
    max_gap = int(MAX_MODEL_GAP_S * rate_hz + 1e-9)
    for j, joint in enumerate(JOINTS):
        if joint not in options.labels:
            continue
        label = expand_label(options.labels[joint], points.tokens, side)
        xyz = points.get(label)
        if xyz is None:
            missing.append(label)
            continue
        notes += _gap_notes(xyz, max_gap, rate_hz, f"{what} {side} {label}")
        xyz = ge.fill_gaps(xyz, max_gap)
        for p, plane in enumerate(PLANES):
            out[:, j, p] = xyz[:, "XYZ".index(options.axes[plane])] * sign_for(
                options.sign, joint, plane
            )
    found = len(missing) < sum(joint in options.labels for joint in JOINTS)
    return (out * factor if found else None), missing


def _gap_notes(xyz: np.ndarray, max_gap: int, rate_hz: float, name: str) -> list[str]:
    """What gap filling does to one trajectory's interior gaps (edges stay missing silently:
    model outputs usually start and end where the markers do)."""
    runs = ge.missing_runs(xyz)
    lengths = (runs[:, 1] - runs[:, 0])[runs[:, 2] == 1]
    short, long = lengths[lengths <= max_gap], lengths[lengths > max_gap]
    notes = []
    if short.size:
        notes.append(
            f"{name}: {short.size} gap(s) of up to {1000 * short.max() / rate_hz:.0f} ms filled "
            "by linear interpolation"
        )
    if long.size:
        notes.append(
            f"{name}: {long.size} gap(s) longer than {1000 * MAX_MODEL_GAP_S:.0f} ms (up to "
            f"{1000 * long.max() / rate_hz:.0f} ms) left missing: strides across them lack it"
        )
    return notes


def _angle_factor(c3d: ezc3d.c3d, options: ModelOutputOptions, path: str) -> float:
    unit = options.units or next(iter(param_strings(c3d, "POINT", "ANGLE_UNITS")), "") or "deg"
    try:
        return angle_factor(unit)
    except ValueError as error:
        raise SourceError(path, f"joint angles: {error}") from None


def _body_mass(c3d: ezc3d.c3d, options: C3DOptions) -> float | None:
    """The catalogue's body mass, else PROCESSING:Bodymass (Vicon Nexus writes it there)."""
    if options.body_mass_kg is not None:
        return options.body_mass_kg
    names = c3d["parameters"].get("PROCESSING", ())
    name = next((n for n in names if n.casefold().replace("_", "") == "bodymass"), None)
    mass = param_number(c3d, "PROCESSING", name) if name else None
    return mass if mass and mass > 0 else None


def _moment_factor(
    c3d: ezc3d.c3d, kinetics: ModelOutputOptions, body_mass_kg: float | None, path: str
) -> tuple[float, str]:
    """Multiplier to N·m/kg, and the unit it converts from."""
    unit = kinetics.units or next(iter(param_strings(c3d, "POINT", "MOMENT_UNITS")), "")
    if not unit:
        raise SourceError(path, "joint moments have no units: set kinetics.units in the catalogue")
    try:
        return moment_factor(unit, body_mass_kg), unit
    except ValueError as error:
        raise SourceError(
            path, f"joint moments: {error} (set body_mass_kg or PROCESSING:Bodymass)"
        ) from None


def _check_moments(
    moments: TimeSeries, windows: np.ndarray | None, unit: str, side: Side, path: str
) -> None:
    """Refuse moments no human produces: the units are then almost surely wrong."""
    times = moments.times()
    trusted: np.ndarray
    if windows is None:
        trusted = np.ones(len(times), bool)
    else:  # only moments that can be trusted: PiG writes junk for a foot off the plates
        inside = (times[:, None] >= windows[:, 0]) & (times[:, None] <= windows[:, 1])
        trusted = np.asarray(inside.any(axis=1))
    peak = np.nanmax(np.abs(moments.data[trusted]), initial=0.0)
    if peak > MAX_PLAUSIBLE_MOMENT:
        raise SourceError(
            path,
            f"{side} joint moments reach {peak:.0f} N·m/kg after converting from {unit}: "
            "the units are probably wrong (check kinetics.units / body_mass_kg)",
        )


# --- EMG --------------------------------------------------------------------------------


def _pick(
    analogs: Analogs, candidates: list[int], side: Side, muscle: str
) -> tuple[int | None, str]:
    """One of several channels that carry the catalogue's name, and how it was told apart; or
    None and why the file does not tell. The side goes first (channels of the other leg drop
    out; one left whose side is known wins), then a description naming the muscle."""
    sides = {i: analogs.side(i) for i in candidates}
    remaining = [i for i in candidates if sides[i] in (side, None)]
    if not remaining:
        return None, f"none is on the {side} side"
    if len(remaining) == 1 and sides[remaining[0]] == side:
        source = analogs.group_source if remaining[0] in analogs.group_sides else ""
        return remaining[0], f"its side ({source or 'in its label or description'})"
    text = {i: f"{analogs.labels[i]} {analogs.descriptions[i]}" for i in remaining}
    named = [i for i in remaining if names_muscle(text[i], muscle)]
    if len(named) == 1:
        return named[0], f"its description naming {muscle}"
    unknown = [i for i in remaining if sides[i] is None]
    if len(unknown) == len(remaining):
        why = ["neither an EMG group nor their labels or descriptions give their sides"]
    elif unknown:
        why = [f"{' and '.join(repr(analogs.labels[i]) for i in unknown)} give no side"]
    else:
        why = [f"all are {side} channels"]
    if analogs.group_source and not analogs.group_sides:
        why.append(analogs.group_source)
    why.append(f"no description names {muscle} apart")
    return None, "; ".join(why)


def _emg_slots(
    analogs: Analogs, options: EmgOptions
) -> tuple[dict[tuple[Side, str], int], dict[tuple[Side, str], str], dict[tuple[Side, str], str]]:
    """The analog channel of every (side, muscle) slot the catalogue names; the reason for each
    slot left without one; notes on channels told apart among several of the same name."""
    keys = analogs.labels if options.match == "label" else analogs.descriptions
    by_name: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if key:
            by_name.setdefault(key.casefold(), []).append(i)
    chosen: dict[tuple[Side, str], int] = {}
    names: dict[tuple[Side, str], str] = {}
    refused: dict[tuple[Side, str], str] = {}
    told: dict[tuple[Side, str], str] = {}
    for muscle, per_side in options.channels.items():
        for side, wanted in per_side.items():
            slot = (side, muscle)
            alternatives = [wanted] if isinstance(wanted, str) else list(wanted)
            name = next((a for a in alternatives if a.casefold() in by_name), None)
            if name is None:
                refused[slot] = (
                    f"EMG {side} {muscle}: no analog channel with {options.match} "
                    f"{' / '.join(alternatives)}"
                )
                continue
            candidates = by_name[name.casefold()]
            names[slot] = name
            if len(candidates) == 1:
                chosen[slot] = candidates[0]
                continue
            listing = " and ".join(analogs.describe(i) for i in candidates)
            picked, how = _pick(analogs, candidates, side, muscle)
            if picked is None:
                refused[slot] = (
                    f"EMG {side} {muscle}: {options.match} {name!r} is on {len(candidates)} "
                    f"channels, {listing}, and the file does not tell which ({how}): left out"
                )
            else:
                chosen[slot] = picked
                told[slot] = (
                    f"EMG {side} {muscle}: {options.match} {name!r} is on {len(candidates)} "
                    f"channels, {listing}; {analogs.describe(picked)} chosen by {how}"
                )
    # One channel in two slots is the bug of a first-match-wins lookup, unless declared.
    shared = {name.casefold() for name in options.shared}
    users: dict[int, list[tuple[Side, str]]] = {}
    for slot, channel in chosen.items():
        users.setdefault(channel, []).append(slot)
    for channel, slots in users.items():
        if len(slots) < 2 or all(names[slot].casefold() in shared for slot in slots):
            continue
        for slot in slots:
            others = ", ".join(f"{s} {m}" for s, m in slots if (s, m) != slot)
            del chosen[slot]
            told.pop(slot, None)
            refused[slot] = (
                f"EMG {slot[0]} {slot[1]}: channel {analogs.describe(channel)} would also fill "
                f"{others}; one channel fills one slot unless emg.shared lists it: left out"
            )
    return chosen, refused, told


def _shared_emg(options: EmgOptions | None) -> tuple[frozenset[str], ...]:
    """Muscles fed from one channel on purpose (``emg.shared``), per shared name: the quality
    gate must not leave them out as duplicates."""
    if options is None or not options.shared:
        return ()
    groups = []
    for shared in {name.casefold() for name in options.shared}:
        muscles = {
            muscle
            for muscle, per_side in options.channels.items()
            for wanted in per_side.values()
            if shared in {w.casefold() for w in ([wanted] if isinstance(wanted, str) else wanted)}
        }
        if len(muscles) > 1:
            groups.append(frozenset(muscles))
    return tuple(sorted(groups, key=sorted))


def _emg(
    c3d: ezc3d.c3d, options: EmgOptions, side: Side, timing: Timing, path: str
) -> tuple[TimeSeries | None, list[str]]:
    """(T, 13) volts in canonical muscle order (NaN columns for muscles not found or refused),
    or None when no channel of this side is read; and notes on channels missing, refused,
    told apart or rescaled. With ``options.required`` a missing or refused channel is a
    SourceError instead."""
    analogs = Analogs.of(c3d)
    chosen, refused, told = _emg_slots(analogs, options)
    data = np.full((analogs.data.shape[1], len(MUSCLES)), np.nan)
    notes, found = [], False
    for muscle in options.channels:
        slot = (side, muscle)
        if slot in told:
            notes.append(told[slot])
        if slot in chosen:
            volts, note = emg_volts(analogs, chosen[slot], c3d, path)
            if volts is None:
                refused[slot] = f"EMG {side} {muscle}: {note}: left out"
            else:
                notes += [note] if note and note not in notes else []  # a shared channel
                data[:, MUSCLES.index(muscle)] = volts
                found = True
        if slot in refused:
            if options.required:
                raise SourceError(path, f"{refused[slot]} (emg.required)")
            notes.append(refused[slot])
    if not found:
        return None, notes
    return TimeSeries(data, timing.analog_rate, timing.analog_start_s, "V"), notes


# --- markers for detection --------------------------------------------------------------


@dataclass(frozen=True)
class _Body:
    """The marker trajectories event detection uses: metres, (T, 3), short gaps bridged."""

    pelvis: np.ndarray | None
    heel: dict[Side, np.ndarray | None]  # the heel, or the ankle where no heel has data
    toe: dict[Side, np.ndarray | None]
    feet: dict[Side, list[np.ndarray]]  # every foot marker with data, for plate assignment
    up_axis: int


def _marker_set(
    points: Points, choice: MarkerPreset | EventMarkers
) -> tuple[EventMarkers, str | None]:
    """The event markers: the catalogue's, its preset, or ("auto") the preset with most of its
    labels among the points (ties go to the earlier preset); a note names an automatic choice
    other than Plug-in Gait."""
    if isinstance(choice, EventMarkers):
        return choice, None
    if choice != "auto":
        return MARKER_PRESETS[choice], None
    counts = {
        name: points.count(m.templates(), points.tokens) for name, m in MARKER_PRESETS.items()
    }
    best = max(counts, key=counts.__getitem__)  # the first of equals
    note = None
    if best != "plug-in-gait":
        note = f"event markers: the {best} preset ({counts[best]} of its labels found)"
    return MARKER_PRESETS[best], note


def _marker(
    points: Points,
    names: Sequence[str],
    scale: float,
    max_gap: int,
    side: Side | None = None,
) -> list[np.ndarray]:
    """Every one of ``names`` with data, in metres and gaps bridged, in order of preference."""
    found = [points.find(name, side) for name in names]
    return [
        ge.fill_gaps(m * scale, max_gap) for m in found if m is not None and np.isfinite(m).any()
    ]


def _best(candidates: list[np.ndarray]) -> np.ndarray | None:
    """The first candidate with at least half the coverage of the best-covered one."""
    if not candidates:
        return None
    coverage = [np.isfinite(c).all(axis=1).mean() for c in candidates]
    return next(
        c for c, cov in zip(candidates, coverage, strict=True) if cov >= 0.5 * max(coverage)
    )


def _body(points: Points, markers: EventMarkers, scale: float, timing: Timing) -> _Body:
    """The detection markers; ``up_axis`` is Z until :func:`_up_axis` settles it."""
    max_gap = round(ge.MAX_MARKER_GAP_S * timing.point_rate)
    heel, toe, feet = {}, {}, {}
    for side in SIDES:
        heels = _marker(points, markers.heel, scale, max_gap, side)
        ankles = _marker(points, markers.ankle, scale, max_gap, side)
        toes = _marker(points, markers.toe, scale, max_gap, side)
        heel[side] = _best(heels) if heels else _best(ankles)
        toe[side] = _best(toes)
        feet[side] = heels + ankles + toes
    found = [_marker(points, names, scale, max_gap) for names in markers.pelvis]
    complete = [
        group
        for group, names in zip(found, markers.pelvis, strict=True)
        if len(group) == len(names)
    ]
    return _Body(ge.reference_point(complete), heel, toe, feet, 2)


def _up_axis(
    body: _Body, c3d: ezc3d.c3d, forces: Sequence[np.ndarray], threshold_n: float
) -> tuple[int, str | None]:
    """The lab's vertical axis, from the first that tells it: the pelvis markers above the
    feet, the plates' corners (the floor plane), the axis along which the plates carry body
    weight (gravity); Z (the C3D default) when none does. A note names any other axis and
    what told it."""
    plates = plate_corners(c3d)
    feet = [m for side in SIDES for m in body.feet[side]]
    candidates = (
        (ge.marker_vertical_axis(body.pelvis, feet), "the pelvis markers lie above the feet"),
        (ge.plate_vertical_axis(plates) if plates is not None else None, "normal to the plates"),
        (ge.load_vertical_axis(forces, threshold_n), "the plates carry body weight along it"),
    )
    for axis, why in candidates:
        if axis is not None:
            return axis, None if axis == 2 else f"vertical axis {'XYZ'[axis]} ({why})"
    return 2, None


def _kinematic_events(body: _Body, timing: Timing) -> tuple[dict[Side, Events], list[str]]:
    """Zeni et al. (2008) heel strikes and toe offs per side."""
    empty = {side: Events(np.empty(0), np.empty(0)) for side in SIDES}
    if body.pelvis is None:
        return empty, ["kinematic event detection: no pelvis markers"]
    foot_axes = [
        toe - heel
        for s in SIDES
        if (toe := body.toe[s]) is not None and (heel := body.heel[s]) is not None
    ]
    direction = ge.progression_direction(body.pelvis, timing.point_rate, body.up_axis, foot_axes)
    events, notes = {}, []
    for side in SIDES:
        heel, toe = body.heel[side], body.toe[side]
        if heel is None and toe is None:
            notes.append(f"kinematic event detection: no {side} heel, ankle or toe marker")
        events[side] = Events(
            _zeni(ge.zeni_heel_strikes, heel, body.pelvis, direction, timing),
            _zeni(ge.zeni_toe_offs, toe, body.pelvis, direction, timing),
        )
    return events, notes


def _zeni(
    detector: Callable[[np.ndarray, float, float], np.ndarray],
    marker: np.ndarray | None,
    pelvis: np.ndarray,
    direction: np.ndarray,
    timing: Timing,
) -> np.ndarray:
    if marker is None:
        return np.empty(0)
    ahead = ge.anterior_position(marker, pelvis, direction)
    return detector(ahead, timing.point_rate, timing.point_start_s)


# --- force plates -----------------------------------------------------------------------


@dataclass(frozen=True)
class _PlateContact:
    plate: int  # 1-based, as FORCE_PLATFORM numbers them
    contact: ge.Contact
    side: Side | None


def _plate_contacts(
    plates: list[Plate],
    timing: Timing,
    threshold_n: float,
    body: _Body,
    file_events: dict[Side, Events],
) -> tuple[list[_PlateContact], list[str]]:
    """Every foot contact on every plate, with the foot that made it where it can be told.
    Each plate's zero offset (:func:`~builder.processing.gait_events.plate_baseline`) is removed
    before the threshold."""
    contacts, notes = [], []
    for plate in plates:
        vertical = ge.vertical_component(plate.force)
        baseline = ge.plate_baseline(vertical, timing.analog_rate, threshold_n)
        if baseline is None:
            notes.append(f"force plate {plate.number}: never unloaded, zero offset not removed")
        else:
            vertical = vertical - baseline
            if abs(baseline) >= OFFSET_NOTE_FRACTION * threshold_n:
                notes.append(f"force plate {plate.number}: zero offset {baseline:+.0f} N removed")
        edge = min(ge.CONTACT_EDGE_N, threshold_n)
        for contact in ge.plate_contacts(
            vertical, timing.analog_rate, timing.analog_start_s, threshold_n, edge_n=edge
        ):
            side, why = _contact_side(contact, plate.cop, body, timing, file_events)
            if side is None:
                notes.append(
                    f"force plate {plate.number} contact {contact.on_s:.3f}-{contact.off_s:.3f} s "
                    f"not assigned to a foot ({why})"
                )
            contacts.append(_PlateContact(plate.number, contact, side))
    return contacts, notes


def _contact_side(
    contact: ge.Contact,
    cop: np.ndarray,
    body: _Body,
    timing: Timing,
    file_events: dict[Side, Events],
) -> tuple[Side | None, str]:
    """The foot nearest the centre of pressure; without foot markers, the side with a stored
    heel strike at the contact's onset."""
    ratio = round(timing.analog_rate / timing.point_rate)
    frames = np.arange(-(-contact.start // ratio), -(-contact.stop // ratio))
    frames = frames[frames < timing.n_frames]
    distances: dict[str, float] = {
        side: ge.foot_cop_distance(
            cop[frames * ratio], [m[frames] for m in body.feet[side]], body.up_axis
        )
        for side in SIDES
    }
    if any(np.isfinite(d) for d in distances.values()):
        nearest = ge.assign_contact(distances)  # one of the sides, or None
        detail = ", ".join(f"{s} foot {d:.2f} m" for s, d in distances.items())
        return next((s for s in SIDES if s == nearest), None), f"centre of pressure to {detail}"
    tolerance = 2.0 / timing.point_rate
    sides = [
        side
        for side in SIDES
        if contact.on_observed
        and np.any(np.abs(file_events[side].heel_strikes - contact.on_s) <= tolerance)
    ]
    return (sides[0] if len(sides) == 1 else None), "no foot markers"


def _windows(contacts: list[_PlateContact], side: Side) -> np.ndarray:
    """(K, 2) stance intervals of ``side`` on a plate: where its joint moments can be trusted."""
    spans = sorted((c.contact.on_s, c.contact.off_s) for c in contacts if c.side == side)
    return np.array(spans, dtype=float).reshape(-1, 2)


# --- choosing the events ----------------------------------------------------------------


def _lag_corrected(
    kinematic: dict[Side, Events], contacts: list[_PlateContact]
) -> tuple[dict[Side, Events], list[str]]:
    """Kinematic heel strikes shifted by their median lag behind the plate onsets of the same
    foot in this trial (both feet pooled), so that a stride whose two ends come from different
    detectors is not shortened by Zeni's lead (10-100 ms). Toe offs are left as detected:
    Zeni's toe off has no consistent lag (+2 and -27 ms on gait-raw.c3d) and ends no stride."""
    plate = {
        side: [c.contact.on_s for c in contacts if c.side == side and c.contact.on_observed]
        for side in SIDES
    }
    lags = np.concatenate(
        [ge.event_lags(np.array(plate[side]), kinematic[side].heel_strikes) for side in SIDES]
    )
    if not lags.size:
        spliced = any(plate[s] and kinematic[s].heel_strikes.size for s in SIDES)
        window = f"{1000 * ge.MAX_KINEMATIC_LAG_S:.0f} ms"
        note = f"kinematic heel strikes not corrected: none within {window} of a plate onset"
        return kinematic, [note] if spliced else []
    lag = float(np.median(lags))
    corrected = {
        side: dataclasses.replace(events, heel_strikes=events.heel_strikes + lag)
        for side, events in kinematic.items()
    }
    note = (
        f"kinematic heel strikes shifted by {1000 * lag:+.0f} ms (median lag behind "
        f"{lags.size} plate onset(s) of the same foot)"
    )
    return corrected, [note]


def _steps(detect: Sequence[str]) -> list[tuple[str, ...]]:
    """Detection steps in order; force_plate and kinematics merge into one step."""
    steps: list[tuple[str, ...]] = []
    combined = tuple(m for m in detect if m in ("force_plate", "kinematics"))
    for method in detect:
        if method == "events":
            steps.append(("events",))
        elif combined and combined not in steps:
            steps.append(combined)
    return steps


def _detect(
    side: Side,
    detect: Sequence[str],
    file_events: dict[Side, Events],
    contacts: list[_PlateContact],
    kinematic: Callable[[bool], dict[Side, Events]],
) -> tuple[Events, tuple[str, ...]]:
    """The first detection step that finds heel strikes for ``side``, and the methods used.
    ``kinematic(with_plates)`` gives Zeni's events, lag-corrected against the plates when
    both are used."""
    for step in _steps(detect):
        if step == ("events",):
            found = file_events[side]
            if found.heel_strikes.size:
                sources = ("events",) * found.heel_strikes.size
                return dataclasses.replace(found, heel_strike_sources=sources), step
            continue
        with_plates = "force_plate" in step
        mine = [c.contact for c in contacts if c.side == side] if with_plates else []
        plate_hs = np.array([c.on_s for c in mine if c.on_observed])
        plate_to = np.array([c.off_s for c in mine if c.off_observed])
        kin = (
            kinematic(with_plates)[side]
            if "kinematics" in step
            else Events(np.empty(0), np.empty(0))
        )
        heel_strikes, from_plate = ge.merge_with_sources(plate_hs, kin.heel_strikes)
        toe_offs = ge.merge_events(plate_to, kin.toe_offs)
        if heel_strikes.size:
            used = []
            if plate_hs.size or plate_to.size:
                used.append("force_plate")
            if heel_strikes.size + toe_offs.size > plate_hs.size + plate_to.size:
                used.append("kinematics")  # some kinematic event survived the merge
            sources = tuple("force_plate" if p else "kinematics" for p in from_plate)
            return Events(heel_strikes, toe_offs, sources), tuple(used)
    return Events(np.empty(0), np.empty(0)), ()


# --- the adapter ------------------------------------------------------------------------


class C3DAdapter(SourceAdapter[C3DOptions]):
    name = "c3d"
    options_model = C3DOptions
    emg_kinds = frozenset({"envelope", "raw"})

    def read(self, spec: TrialSpec, options: C3DOptions, files: FileAccess) -> list[TrialRecording]:
        local = files.local_path(spec.url)
        c3d, plate_note = _load(local, spec.url)
        notes = [plate_note] if plate_note else []
        recording = _read(c3d, _declared_frames(local), options, spec.url, notes)
        # The C3D holds whatever the catalogue says it holds: raw EMG or envelopes.
        return [
            dataclasses.replace(
                recording, emg_kind=spec.emg_kind, shared_emg=_shared_emg(options.emg)
            )
        ]


def _read(
    c3d: ezc3d.c3d, declared_frames: int | None, options: C3DOptions, path: str, notes: list[str]
) -> TrialRecording:
    """The whole trial; ``path`` names the file in errors, ``notes`` collects findings."""
    timing = read_timing(c3d, declared_frames, path)
    points = Points.of(c3d)
    if duplicates := points.duplicates():
        notes.append(
            f"duplicate point labels {', '.join(duplicates)}: the copy with most valid frames is used"
        )
    notes += [note] if (note := points.dropout_note()) else []
    scale, unit_note = marker_scale(c3d, path)
    notes += [unit_note] if unit_note else []
    threshold = options.events.force_threshold_n
    # What event detection finds on the way: notes, and the reason when it finds nothing.
    why: list[str] = []
    points, token_note = points.with_side_tokens(_templates(options))
    markers, preset_note = _marker_set(points, options.events.markers)
    why += [n for n in (token_note, preset_note) if n]
    plates, has_plates, plate_notes = read_plates(c3d, timing, scale)
    why += plate_notes
    body = _body(points, markers, scale, timing)
    up_axis, up_note = _up_axis(body, c3d, [p.force for p in plates], threshold)
    body = dataclasses.replace(body, up_axis=up_axis)
    why += [up_note] if up_note else []
    file_events, event_notes = read_events(c3d, timing)
    why += event_notes
    contacts, contact_notes = _plate_contacts(plates, timing, threshold, body, file_events)
    why += contact_notes

    @cache
    def kinematic(with_plates: bool) -> dict[Side, Events]:
        if with_plates:
            events, lag_notes = _lag_corrected(kinematic(False), contacts)
            why.extend(lag_notes)
            return events
        events, kin_notes = _kinematic_events(body, timing)
        why.extend(kin_notes)
        return events

    sides, methods, unfound = [], set(), []
    for side in SIDES:
        events, used = _detect(side, options.events.detect, file_events, contacts, kinematic)
        methods |= set(used)
        if not events.heel_strikes.size:
            unfound.append(f"no {side} heel strikes found by {', '.join(options.events.detect)}")
        windows = _windows(contacts, side) if has_plates else None
        sides.append(_side(c3d, options, points, side, timing, events, windows, path, notes))
    if not methods:
        raise SourceError(
            path,
            f"no heel strikes found by any enabled method ({', '.join(options.events.detect)})"
            + "".join(f"; {note}" for note in dict.fromkeys(why)),
        )
    notes += why + unfound
    source = "+".join(m for m in ("events", "force_plate", "kinematics") if m in methods)
    return TrialRecording(
        sides=tuple(sides), emg_kind="raw", event_source=source, notes=tuple(notes)
    )


def _templates(options: C3DOptions) -> list[str]:
    """Every label template the trial may look up: model outputs and event markers (all
    presets when the preset is chosen from the file)."""
    outputs = [o for o in (options.kinematics, options.kinetics) if o is not None]
    choice = options.events.markers
    marker_sets = (
        [choice]
        if isinstance(choice, EventMarkers)
        else list(MARKER_PRESETS.values())
        if choice == "auto"
        else [MARKER_PRESETS[choice]]
    )
    return [
        *(label for output in outputs for label in output.labels.values()),
        *(t for markers in marker_sets for t in markers.templates()),
    ]


def _side(
    c3d: ezc3d.c3d,
    options: C3DOptions,
    points: Points,
    side: Side,
    timing: Timing,
    events: Events,
    windows: np.ndarray | None,
    path: str,
    notes: list[str],
) -> SideRecording:
    """One leg's signals in canonical form, with its events and trusted-kinetics windows."""
    emg = None
    if options.emg is not None:
        emg, emg_notes = _emg(c3d, options.emg, side, timing, path)
        notes += emg_notes
    kinematics = _angles(c3d, options, points, side, timing, path, notes)
    kinetics = _moments(c3d, options, points, side, timing, windows, path, notes)
    return SideRecording(
        side=side,
        emg=emg,
        kinematics=kinematics,
        kinetics=kinetics,
        heel_strikes_s=events.heel_strikes,
        toe_offs_s=events.toe_offs,
        kinetics_valid_s=windows,
        heel_strike_sources=events.heel_strike_sources,
    )


def _angles(
    c3d: ezc3d.c3d,
    options: C3DOptions,
    points: Points,
    side: Side,
    timing: Timing,
    path: str,
    notes: list[str],
) -> TimeSeries | None:
    if options.kinematics is None:
        return None
    factor = _angle_factor(c3d, options.kinematics, path)
    angles, missing = _model_output(
        points, options.kinematics, side, factor, timing.point_rate, notes, "kinematics"
    )
    if missing:
        notes.append(f"kinematics {side}: no {', '.join(missing)} among the points")
    if angles is None:
        return None
    return TimeSeries(angles, timing.point_rate, timing.point_start_s, ANGLE_UNITS)


def _moments(
    c3d: ezc3d.c3d,
    options: C3DOptions,
    points: Points,
    side: Side,
    timing: Timing,
    windows: np.ndarray | None,
    path: str,
    notes: list[str],
) -> TimeSeries | None:
    """Internal moments in N·m/kg; refused when they are more than a human makes."""
    if options.kinetics is None:
        return None
    factor, unit = _moment_factor(c3d, options.kinetics, _body_mass(c3d, options), path)
    moments, missing = _model_output(
        points, options.kinetics, side, factor, timing.point_rate, notes, "kinetics"
    )
    if missing:
        notes.append(f"kinetics {side}: no {', '.join(missing)} among the points")
    if moments is None:
        return None
    kinetics = TimeSeries(moments, timing.point_rate, timing.point_start_s, MOMENT_UNITS)
    _check_moments(kinetics, windows, unit, side, path)
    return kinetics

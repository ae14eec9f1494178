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
    body_mass_kg: null        # only needed for moments in N.m / N.mm

What the reader relies on (checked on the real files in ../shared/data/real):

- ezc3d returns analog samples already scaled: (raw - ANALOG:OFFSET) * ANALOG:SCALE *
  ANALOG:GEN_SCALE (decoding gait-pig.c3d's integer samples by hand gives ezc3d's values
  exactly), so ANALOG:UNITS applies to them directly. Points are scaled by POINT:SCALE too,
  and are NaN where the residual is negative (invalid frames).
- ``extract_forceplat_data=True`` gives each plate's force, moment and centre of pressure in
  the lab frame, following FORCE_PLATFORM:CHANNEL (gait-pig's interleaved channel order
  included) and the calibration matrix of type-4 plates.
- ezc3d reads a truncated file without complaint: it returns fewer frames and rewrites its
  copy of the header and POINT:FRAMES to match, so the reader compares the frames with the
  header bytes on disk and refuses the file.
- Event times (EVENT:TIMES, minutes row + seconds row) are absolute, like ``first_frame / rate``.

What it returns: per side, EMG (T, 13) volts at the analog rate, angles and internal moments
(T, 3, 3) at the point rate, each starting at its stream's ``first_frame / rate``; heel strikes
and toe offs from the first ``events.detect`` step that finds heel strikes for that side
(stored events; else plate onsets/offsets merged with Zeni's kinematic events, see
:mod:`builder.sources.gait_events`); ``kinetics_valid_s`` = the side's stance intervals on a
plate when the file has plates (a stride's moments are trustworthy when its stance lies in
one; swing moments need no plate), ``None`` when it has none.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

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
    emg_factor,
    length_factor,
    moment_factor,
)
from builder.errors import SourceError
from builder.records import SideRecording, TimeSeries, TrialRecording, TrialSpec
from builder.sources import gait_events as ge
from builder.sources import register_adapter
from builder.sources.base import AdapterOptions, FileAccess, SourceAdapter
from builder.sources.mapping import sign_for
from builder.sources.options import known_muscles

Axis = Literal["X", "Y", "Z"]


class EmgOptions(AdapterOptions):
    """Analog channels per canonical muscle and side, matched by label or description; a list
    gives alternative names (files of one lab name a channel differently), the first found wins.
    """

    match: Literal["label", "description"] = "label"
    channels: dict[str, dict[Literal["L", "R"], str | list[str]]] = Field(default_factory=dict)

    _known_muscles = field_validator("channels")(known_muscles)


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

    ``{side}`` becomes L or R; a subject prefix (``A22:``) and case are ignored. Lists are in
    order of preference: the heel marker (or, lacking one, the ankle marker) gives heel
    strikes, the toe marker toe offs; ``pelvis`` lists groups whose midpoint is the pelvis
    reference (one group is used for the whole trial).
    """

    heel: tuple[str, ...] = ("{side}HEE", "{side}HEEL", "{side}CAL")
    ankle: tuple[str, ...] = ("{side}ANK", "{side}LMAL", "{side}LMA", "{side}AJC")
    toe: tuple[str, ...] = ("{side}TOE", "{side}MT2", "{side}FMH", "{side}MT1", "{side}PM1")
    pelvis: tuple[tuple[str, ...], ...] = (("SACR",), ("VSAC",), ("LPSI", "RPSI"), ("LASI", "RASI"))


class EventOptions(AdapterOptions):
    # Tried in order until one gives heel strikes for a side; force_plate and kinematics are
    # one step together (plate onsets replace nearby kinematic heel strikes of the same foot).
    detect: list[Literal["events", "force_plate", "kinematics"]] = Field(
        default_factory=lambda: ["events", "force_plate", "kinematics"]
    )
    force_threshold_n: float = Field(50.0, gt=0)
    markers: EventMarkers = Field(default_factory=EventMarkers)


class C3DOptions(AdapterOptions):
    emg: EmgOptions | None = None
    kinematics: ModelOutputOptions | None = PLUG_IN_GAIT_ANGLES
    kinetics: ModelOutputOptions | None = PLUG_IN_GAIT_MOMENTS
    events: EventOptions = Field(default_factory=EventOptions)
    body_mass_kg: float | None = Field(None, gt=0)

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
# Heel-strike / toe-off names, compared without case, spaces or punctuation.
_HEEL_STRIKE = frozenset(
    {"footstrike", "heelstrike", "hs", "fs", "ic", "initialcontact", "footcontact", "heelcontact"}
)
_TOE_OFF = frozenset({"footoff", "toeoff", "to", "fo"})
_SIDE_WORDS: tuple[tuple[str, Side], ...] = (("left", "L"), ("right", "R"), ("l", "L"), ("r", "R"))
EventKind = Literal["heel_strike", "toe_off"]


# --- parameters -------------------------------------------------------------------------


def _param(c3d: ezc3d.c3d, group: str, name: str) -> Any:
    """A parameter's value, or None when the group or parameter is absent."""
    try:
        return c3d["parameters"][group][name]["value"]
    except KeyError:
        return None


def _strings(c3d: ezc3d.c3d, group: str, name: str) -> list[str]:
    """A list-of-strings parameter with its continuations (LABELS, LABELS2, ...), stripped."""
    values: list[str] = []
    suffix = ""
    while (part := _param(c3d, group, f"{name}{suffix}")) is not None:
        values += [str(v).strip() for v in part]
        suffix = str(int(suffix or 1) + 1)
    return values


def _number(c3d: ezc3d.c3d, group: str, name: str) -> float | None:
    value = _param(c3d, group, name)
    array = np.asarray(value if value is not None else [], dtype=float).ravel()
    return float(array[0]) if array.size else None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


# --- file, timing -----------------------------------------------------------------------


def _load(path: str, url: str) -> tuple[ezc3d.c3d, str | None]:
    """The parsed file with force-plate data, and a note when only the plates were unreadable."""
    try:
        return ezc3d.c3d(path, extract_forceplat_data=True), None
    except Exception as plate_error:  # ezc3d raises bare C++ errors (RuntimeError, OSError...)
        try:
            c3d = ezc3d.c3d(path)
        except Exception as error:
            raise SourceError(url, f"not a readable C3D file ({_one_line(error)})") from None
        return c3d, f"force plates could not be extracted ({_one_line(plate_error)})"


def _declared_frames(path: str) -> int | None:
    """How many frames the file's own header declares.

    ezc3d reads a truncated file without complaint and rewrites its copy of the header and
    POINT:FRAMES to the frames it got, so only the bytes on disk tell what is missing.
    """
    with open(path, "rb") as file:
        head = file.read(516)
    if len(head) < 516:
        return None
    order = (
        ">" if head[515] == 86 else "<"
    )  # parameter-section processor: 84 Intel, 85 DEC, 86 MIPS
    first, last = struct.unpack_from(f"{order}HH", head, 6)  # header words 4 and 5, 1-based
    return last - first + 1 if last >= first and last != 0xFFFF else None


@dataclass(frozen=True)
class _Timing:
    point_rate: float
    point_start_s: float
    n_frames: int
    analog_rate: float
    analog_start_s: float
    n_samples: int

    @property
    def point_end_s(self) -> float:
        return self.point_start_s + (self.n_frames - 1) / self.point_rate


def _timing(c3d: ezc3d.c3d, declared_frames: int | None, path: str) -> _Timing:
    """Rates and first samples, after checking the data are complete and the rates agree."""
    header = c3d["header"]
    point_rate = float(header["points"]["frame_rate"])
    if not point_rate > 0:
        raise SourceError(path, f"the point rate is {point_rate} Hz")
    first, last = int(header["points"]["first_frame"]), int(header["points"]["last_frame"])
    expected = declared_frames or last - first + 1
    n_points, n_frames = c3d["data"]["points"].shape[1:]
    n_channels, n_samples = c3d["data"]["analogs"].shape[1:]
    if n_points and n_frames != expected:
        raise SourceError(path, f"file is truncated: {n_frames} of {expected} point frames")
    if not n_channels:
        return _Timing(point_rate, first / point_rate, expected, point_rate, first / point_rate, 0)
    # The header stores samples per frame; ANALOG:RATE is what the recording system claims.
    per_frame = round(float(header["analogs"]["frame_rate"]) / point_rate)
    analog_rate = _number(c3d, "ANALOG", "RATE") or per_frame * point_rate
    ratio = analog_rate / point_rate
    if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
        raise SourceError(
            path,
            f"analog rate {analog_rate:g} Hz is not a multiple of the point rate {point_rate:g} Hz",
        )
    if round(ratio) != per_frame:
        raise SourceError(
            path,
            f"ANALOG:RATE {analog_rate:g} Hz disagrees with the header's {per_frame} analog "
            f"samples per {point_rate:g} Hz frame",
        )
    if n_samples != expected * per_frame:
        raise SourceError(
            path, f"file is truncated: {n_samples} of {expected * per_frame} analog samples"
        )
    return _Timing(
        point_rate,
        first / point_rate,
        expected,
        analog_rate,
        first * per_frame / analog_rate,
        n_samples,
    )


# --- points -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Points:
    """Point trajectories by label; a subject prefix (``A22:``) and case are ignored."""

    labels: tuple[str, ...]
    data: np.ndarray  # (P, T, 3) in file units, NaN where invalid
    prefixes: frozenset[str]  # declared subject prefixes, casefolded, without ':'; '' included

    @classmethod
    def of(cls, c3d: ezc3d.c3d) -> _Points:
        labels = _strings(c3d, "POINT", "LABELS")
        data = np.transpose(np.asarray(c3d["data"]["points"][:3], dtype=float), (1, 2, 0))
        prefixes = {""}
        if _number(c3d, "SUBJECTS", "USES_PREFIXES"):
            prefixes |= {
                p.rstrip(":").casefold() for p in _strings(c3d, "SUBJECTS", "LABEL_PREFIXES")
            }
        return cls(tuple(labels[: len(data)]), data, frozenset(prefixes))

    def get(self, name: str) -> np.ndarray | None:
        """(T, 3) trajectory of ``name``; among duplicates, the copy with most valid frames."""
        wanted = name.casefold()
        matches = [
            i
            for i, label in enumerate(self.labels)
            if wanted in (label.casefold(), label.casefold().rpartition(":")[2])
        ]
        declared = [
            i for i in matches if self.labels[i].casefold().rpartition(":")[0] in self.prefixes
        ]
        pool = declared or matches
        if not pool:
            return None
        valid = [int(np.isfinite(self.data[i]).all(axis=1).sum()) for i in pool]
        return self.data[pool[int(np.argmax(valid))]]

    def duplicates(self) -> list[str]:
        names, counts = np.unique([label.casefold() for label in self.labels], return_counts=True)
        return [str(n) for n in names[counts > 1] if n]


# --- model outputs ----------------------------------------------------------------------


def _model_output(
    points: _Points, options: ModelOutputOptions, side: Side, factor: float
) -> tuple[np.ndarray | None, list[str]]:
    """(T, 3, 3) in canonical axes, signs and units, or None when no label is present;
    and the labels that are missing."""
    out = np.full((points.data.shape[1], len(JOINTS), len(PLANES)), np.nan)
    missing = []
    for j, joint in enumerate(JOINTS):
        if joint not in options.labels:
            continue
        label = options.labels[joint].format(side=side)
        xyz = points.get(label)
        if xyz is None:
            missing.append(label)
            continue
        for p, plane in enumerate(PLANES):
            out[:, j, p] = xyz[:, "XYZ".index(options.axes[plane])] * sign_for(
                options.sign, joint, plane
            )
    found = len(missing) < sum(joint in options.labels for joint in JOINTS)
    return (out * factor if found else None), missing


def _angle_factor(c3d: ezc3d.c3d, options: ModelOutputOptions, path: str) -> float:
    unit = options.units or next(iter(_strings(c3d, "POINT", "ANGLE_UNITS")), "") or "deg"
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
    mass = _number(c3d, "PROCESSING", name) if name else None
    return mass if mass and mass > 0 else None


def _moment_factor(
    c3d: ezc3d.c3d, kinetics: ModelOutputOptions, body_mass_kg: float | None, path: str
) -> tuple[float, str]:
    """Multiplier to N·m/kg, and the unit it converts from."""
    unit = kinetics.units or next(iter(_strings(c3d, "POINT", "MOMENT_UNITS")), "")
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
    if windows is None:
        trusted = np.ones(len(times), bool)
    else:  # only moments that can be trusted: PiG writes junk for a foot off the plates
        trusted = ((times[:, None] >= windows[:, 0]) & (times[:, None] <= windows[:, 1])).any(
            axis=1
        )
    peak = np.nanmax(np.abs(moments.data[trusted]), initial=0.0)
    if peak > MAX_PLAUSIBLE_MOMENT:
        raise SourceError(
            path,
            f"{side} joint moments reach {peak:.0f} N·m/kg after converting from {unit}: "
            "the units are probably wrong (check kinetics.units / body_mass_kg)",
        )


# --- EMG --------------------------------------------------------------------------------


def _emg(
    c3d: ezc3d.c3d, options: EmgOptions, side: Side, timing: _Timing, path: str
) -> tuple[TimeSeries | None, list[str]]:
    """(T, 13) volts in canonical muscle order (NaN columns for muscles not found), or None
    when no channel of this side is found; and notes on channels not found."""
    analogs = np.asarray(c3d["data"]["analogs"][0], dtype=float)  # (C, S)
    names = _strings(c3d, "ANALOG", "LABELS" if options.match == "label" else "DESCRIPTIONS")
    units = _strings(c3d, "ANALOG", "UNITS")
    index: dict[str, int] = {}
    for i, name in enumerate(names[: len(analogs)]):
        if name:
            index.setdefault(name.casefold(), i)
    data = np.full((analogs.shape[1], len(MUSCLES)), np.nan)
    notes, found = [], False
    for muscle, per_side in options.channels.items():
        if side not in per_side:
            continue
        wanted = per_side[side]
        alternatives = [wanted] if isinstance(wanted, str) else list(wanted)
        channel = next((index[a.casefold()] for a in alternatives if a.casefold() in index), None)
        if channel is None:
            notes.append(
                f"EMG {side} {muscle}: no analog channel with {options.match} {' / '.join(alternatives)}"
            )
            continue
        unit = units[channel] if channel < len(units) else ""
        if not unit:
            notes.append(f"EMG channel {names[channel]!r} has no ANALOG:UNITS entry; assumed volts")
        try:
            data[:, MUSCLES.index(muscle)] = analogs[channel] * emg_factor(unit or "V")
        except ValueError:
            raise SourceError(
                path, f"EMG channel {names[channel]!r} is in {unit!r}, not a voltage unit"
            ) from None
        found = True
    if not found:
        return None, notes
    return TimeSeries(data, timing.analog_rate, timing.analog_start_s, "V"), notes


# --- events stored in the file ----------------------------------------------------------


def _compact(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def _kind(compact: str) -> EventKind | None:
    if compact in _HEEL_STRIKE:
        return "heel_strike"
    if compact in _TOE_OFF:
        return "toe_off"
    return None


def _side_word(text: str) -> Side | None:
    """'Left' / 'L' / 'right' ... as a side; anything else (General, Invalid, '') is none."""
    return next((side for word, side in _SIDE_WORDS if _compact(text) == word), None)


def parse_event_name(text: str) -> tuple[Side | None, EventKind | None]:
    """Side and kind named by an event label such as 'Foot Strike', 'LHS', 'Left Foot Off',
    'R_HS', 'hs_l' or 'RTO'. Case, spaces and punctuation do not matter."""
    compact = _compact(text)
    if kind := _kind(compact):
        return None, kind
    for word, side in _SIDE_WORDS:
        for rest in (compact.removeprefix(word), compact.removesuffix(word)):
            if rest != compact and (kind := _kind(rest)):
                return side, kind
    return _side_word(text), None


def classify_event(label: str, context: str) -> tuple[Side, EventKind] | None:
    """What one EVENT entry means, or None when it is no side-specific heel strike/toe off.

    The context names the side ('Left'/'Right'); 'General', 'Invalid' or no context leave it
    to the label ('LHS', 'Left Foot Strike'). Events coded in CONTEXTS ('RHS') with an empty
    label are read from the context.
    """
    context_side = _side_word(context)
    label_side, kind = parse_event_name(label if label else context)
    if kind is None or (context_side and label_side and context_side != label_side):
        return None
    side = context_side or label_side
    return (side, kind) if side else None


@dataclass(frozen=True)
class _Events:
    heel_strikes: np.ndarray
    toe_offs: np.ndarray


def _event_entries(c3d: ezc3d.c3d) -> list[tuple[float, str, str]]:
    """(time, label, context) of the first EVENT:USED events; TIMES is (2, n): minutes, seconds."""
    raw = _param(c3d, "EVENT", "TIMES")
    times = np.asarray(raw if raw is not None else [], dtype=float).reshape(2, -1, order="F")
    seconds = (60.0 * times[0] + times[1]).tolist()
    used = _number(c3d, "EVENT", "USED")
    n = len(seconds) if used is None else min(int(used), len(seconds))
    labels = [*_strings(c3d, "EVENT", "LABELS"), *[""] * n][:n]
    contexts = [*_strings(c3d, "EVENT", "CONTEXTS"), *[""] * n][:n]
    return list(zip(seconds[:n], labels, contexts, strict=True))


def _file_events(c3d: ezc3d.c3d, timing: _Timing) -> tuple[dict[Side, _Events], list[str]]:
    """Heel strikes and toe offs per side from the EVENT group (absolute times), and notes."""
    found: dict[tuple[Side, EventKind], list[float]] = {}
    ignored, outside = set(), 0
    margin = 1.0 / timing.point_rate
    for time, label, context in _event_entries(c3d):
        meaning = classify_event(label, context)
        if meaning is None:
            ignored.add(f"{label or '-'} ({context or 'no context'})")
        elif not timing.point_start_s - margin <= time <= timing.point_end_s + margin:
            outside += 1
        else:
            found.setdefault(meaning, []).append(time)
    notes = []
    if ignored:
        notes.append(
            f"events ignored (no side's heel strike / toe off): {', '.join(sorted(ignored))}"
        )
    if outside:
        notes.append(f"{outside} event(s) outside the recorded time range ignored")
    events = {
        side: _Events(
            _unique(found.get((side, "heel_strike"), []), timing),
            _unique(found.get((side, "toe_off"), []), timing),
        )
        for side in SIDES
    }
    return events, notes


def _unique(times: Sequence[float], timing: _Timing) -> np.ndarray:
    """Sorted times with repeats (within half a frame) removed."""
    ordered = np.sort(np.asarray(times, dtype=float))
    keep = np.diff(ordered, prepend=-np.inf) > 0.5 / timing.point_rate
    return ordered[keep]


# --- markers for detection --------------------------------------------------------------


@dataclass(frozen=True)
class _Body:
    """The marker trajectories event detection uses: metres, (T, 3), short gaps bridged."""

    pelvis: np.ndarray | None
    heel: dict[Side, np.ndarray | None]  # the heel, or the ankle where no heel has data
    toe: dict[Side, np.ndarray | None]
    feet: dict[Side, list[np.ndarray]]  # every foot marker with data, for plate assignment
    up_axis: int


def _marker_scale(c3d: ezc3d.c3d, path: str) -> tuple[float, str | None]:
    unit = next(iter(_strings(c3d, "POINT", "UNITS")), "")
    if not unit:
        return 1e-3, "POINT:UNITS is empty; markers assumed in mm"
    try:
        return length_factor(unit), None
    except ValueError as error:
        raise SourceError(path, f"markers: {error}") from None


def _marker(
    points: _Points, names: Sequence[str], scale: float, max_gap: int, side: str = ""
) -> list[np.ndarray]:
    """Every one of ``names`` with data, in metres and gaps bridged, in order of preference."""
    found = [points.get(name.format(side=side)) for name in names]
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


def _body(points: _Points, markers: EventMarkers, scale: float, timing: _Timing) -> _Body:
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
    pelvis = ge.reference_point(complete)
    up_axis = (
        ge.vertical_axis(pelvis, [m for side in SIDES for m in feet[side]])
        if pelvis is not None
        else 2
    )
    return _Body(pelvis, heel, toe, feet, up_axis)


def _kinematic_events(body: _Body, timing: _Timing) -> tuple[dict[Side, _Events], list[str]]:
    """Zeni et al. (2008) heel strikes and toe offs per side."""
    empty = {side: _Events(np.empty(0), np.empty(0)) for side in SIDES}
    if body.pelvis is None:
        return empty, ["kinematic event detection: no pelvis markers"]
    foot_axes = [
        body.toe[s] - body.heel[s]
        for s in SIDES
        if body.toe[s] is not None and body.heel[s] is not None
    ]
    direction = ge.progression_direction(body.pelvis, timing.point_rate, body.up_axis, foot_axes)
    events, notes = {}, []
    for side in SIDES:
        heel, toe = body.heel[side], body.toe[side]
        if heel is None and toe is None:
            notes.append(f"kinematic event detection: no {side} heel, ankle or toe marker")
        events[side] = _Events(
            _zeni(ge.zeni_heel_strikes, heel, body.pelvis, direction, timing),
            _zeni(ge.zeni_toe_offs, toe, body.pelvis, direction, timing),
        )
    return events, notes


def _zeni(
    detector: Callable[[np.ndarray, float, float], np.ndarray],
    marker: np.ndarray | None,
    pelvis: np.ndarray,
    direction: np.ndarray,
    timing: _Timing,
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
    c3d: ezc3d.c3d,
    timing: _Timing,
    threshold_n: float,
    body: _Body,
    file_events: dict[Side, _Events],
    marker_scale: float,
) -> tuple[list[_PlateContact], list[str]]:
    """Every foot contact on every plate, with the foot that made it where it can be told."""
    contacts, notes = [], []
    for number, plate in enumerate(c3d["data"]["platform"], start=1):
        if str(plate["unit_force"]).strip().casefold() not in ("n", ""):
            notes.append(f"force plate {number}: forces in {plate['unit_force']!r}, read as N")
        vertical = ge.vertical_component(np.asarray(plate["force"], dtype=float).T)
        try:
            cop_scale = length_factor(str(plate["unit_position"]))
        except ValueError:  # ezc3d copies POINT:UNITS; empty there means as the markers
            cop_scale = marker_scale
        cop = np.asarray(plate["center_of_pressure"], dtype=float).T * cop_scale
        for contact in ge.plate_contacts(
            vertical, timing.analog_rate, timing.analog_start_s, threshold_n
        ):
            side, why = _contact_side(contact, cop, body, timing, file_events)
            if side is None:
                notes.append(
                    f"force plate {number} contact {contact.on_s:.3f}-{contact.off_s:.3f} s "
                    f"not assigned to a foot ({why})"
                )
            contacts.append(_PlateContact(number, contact, side))
    return contacts, notes


def _contact_side(
    contact: ge.Contact,
    cop: np.ndarray,
    body: _Body,
    timing: _Timing,
    file_events: dict[Side, _Events],
) -> tuple[Side | None, str]:
    """The foot nearest the centre of pressure; without foot markers, the side with a stored
    heel strike at the contact's onset."""
    ratio = round(timing.analog_rate / timing.point_rate)
    frames = np.arange(-(-contact.start // ratio), -(-contact.stop // ratio))
    frames = frames[frames < timing.n_frames]
    distances = {
        side: ge.foot_cop_distance(
            cop[frames * ratio], [m[frames] for m in body.feet[side]], body.up_axis
        )
        for side in SIDES
    }
    if any(np.isfinite(d) for d in distances.values()):
        side = ge.assign_contact(distances)
        detail = ", ".join(f"{s} foot {d:.2f} m" for s, d in distances.items())
        return side, f"centre of pressure to {detail}"
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
    file_events: dict[Side, _Events],
    contacts: list[_PlateContact],
    kinematic: Callable[[], dict[Side, _Events]],
) -> tuple[_Events, tuple[str, ...]]:
    """The first detection step that finds heel strikes for ``side``, and the methods used."""
    for step in _steps(detect):
        if step == ("events",):
            if file_events[side].heel_strikes.size:
                return file_events[side], step
            continue
        mine = [c.contact for c in contacts if c.side == side] if "force_plate" in step else []
        plate_hs = np.array([c.on_s for c in mine if c.on_observed])
        plate_to = np.array([c.off_s for c in mine if c.off_observed])
        kin = kinematic()[side] if "kinematics" in step else _Events(np.empty(0), np.empty(0))
        heel_strikes = ge.merge_events(plate_hs, kin.heel_strikes)
        toe_offs = ge.merge_events(plate_to, kin.toe_offs)
        if heel_strikes.size:
            used = []
            if plate_hs.size or plate_to.size:
                used.append("force_plate")
            if heel_strikes.size + toe_offs.size > plate_hs.size + plate_to.size:
                used.append("kinematics")  # some kinematic event survived the merge
            return _Events(heel_strikes, toe_offs), tuple(used)
    return _Events(np.empty(0), np.empty(0)), ()


# --- the adapter ------------------------------------------------------------------------


@register_adapter
class C3DAdapter(SourceAdapter):
    name = "c3d"
    options_model = C3DOptions

    def read_trial(self, spec: TrialSpec, files: FileAccess) -> list[TrialRecording]:
        options = C3DOptions.of(spec)
        local = files.local_path(spec.url)
        c3d, plate_note = _load(local, spec.url)
        notes = [plate_note] if plate_note else []
        recording = _read(c3d, _declared_frames(local), options, spec.url, notes)
        # The C3D holds whatever the catalogue says it holds: raw EMG or envelopes.
        return [dataclasses.replace(recording, emg_kind=spec.emg_kind)]


def _read(
    c3d: ezc3d.c3d, declared_frames: int | None, options: C3DOptions, path: str, notes: list[str]
) -> TrialRecording:
    """The whole trial; ``path`` names the file in errors, ``notes`` collects findings."""
    timing = _timing(c3d, declared_frames, path)
    points = _Points.of(c3d)
    if duplicates := points.duplicates():
        notes.append(
            f"duplicate point labels {', '.join(duplicates)}: the copy with most valid frames is used"
        )
    scale, unit_note = _marker_scale(c3d, path)
    notes += [unit_note] if unit_note else []
    body = _body(points, options.events.markers, scale, timing)

    file_events, event_notes = _file_events(c3d, timing)
    notes += event_notes
    contacts, plate_notes = _plate_contacts(
        c3d, timing, options.events.force_threshold_n, body, file_events, scale
    )
    notes += plate_notes
    has_plates = bool(c3d["data"]["platform"]) or bool(_number(c3d, "FORCE_PLATFORM", "USED"))

    @cache
    def kinematic() -> dict[Side, _Events]:
        events, kin_notes = _kinematic_events(body, timing)
        notes.extend(kin_notes)
        return events

    sides, methods = [], set()
    for side in SIDES:
        events, used = _detect(side, options.events.detect, file_events, contacts, kinematic)
        methods |= set(used)
        if not events.heel_strikes.size:
            notes.append(f"no {side} heel strikes found by {', '.join(options.events.detect)}")
        windows = _windows(contacts, side) if has_plates else None
        sides.append(_side(c3d, options, points, side, timing, events, windows, path, notes))
    if not methods:
        raise SourceError(
            path,
            f"no heel strikes found by any enabled method ({', '.join(options.events.detect)})",
        )
    source = "+".join(m for m in ("events", "force_plate", "kinematics") if m in methods)
    return TrialRecording(
        sides=tuple(sides), emg_kind="raw", event_source=source, notes=tuple(notes)
    )


def _side(
    c3d: ezc3d.c3d,
    options: C3DOptions,
    points: _Points,
    side: Side,
    timing: _Timing,
    events: _Events,
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
    )


def _angles(
    c3d: ezc3d.c3d,
    options: C3DOptions,
    points: _Points,
    side: Side,
    timing: _Timing,
    path: str,
    notes: list[str],
) -> TimeSeries | None:
    if options.kinematics is None:
        return None
    factor = _angle_factor(c3d, options.kinematics, path)
    angles, missing = _model_output(points, options.kinematics, side, factor)
    if missing:
        notes.append(f"kinematics {side}: no {', '.join(missing)} among the points")
    if angles is None:
        return None
    return TimeSeries(angles, timing.point_rate, timing.point_start_s, ANGLE_UNITS)


def _moments(
    c3d: ezc3d.c3d,
    options: C3DOptions,
    points: _Points,
    side: Side,
    timing: _Timing,
    windows: np.ndarray | None,
    path: str,
    notes: list[str],
) -> TimeSeries | None:
    """Internal moments in N·m/kg; refused when they are more than a human makes."""
    if options.kinetics is None:
        return None
    factor, unit = _moment_factor(c3d, options.kinetics, _body_mass(c3d, options), path)
    moments, missing = _model_output(points, options.kinetics, side, factor)
    if missing:
        notes.append(f"kinetics {side}: no {', '.join(missing)} among the points")
    if moments is None:
        return None
    kinetics = TimeSeries(moments, timing.point_rate, timing.point_start_s, MOMENT_UNITS)
    _check_moments(kinetics, windows, unit, side, path)
    return kinetics

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

What the reader relies on (checked on the real files in ../shared/data/real):

- ezc3d returns analog samples already scaled: (raw - ANALOG:OFFSET) * ANALOG:SCALE *
  ANALOG:GEN_SCALE (decoding gait-pig.c3d's integer samples by hand gives ezc3d's values
  exactly), so ANALOG:UNITS applies to them directly. Points are scaled by POINT:SCALE too,
  and are NaN where the residual is negative (invalid frames). It does not see every invalid
  frame: it reads the residual from the high byte of the residual/camera word and keeps it
  positive in float files, so a word -1 written unsigned (65535) reads as residual 255; and
  some systems write dropouts as (0, 0, 0) with a positive residual. The reader treats both
  as missing (:class:`_Points`).
- ezc3d does not remove plate zero offsets (FORCE_PLATFORM:ZERO is not applied; the real
  plates sit -20 to +23 N off zero unloaded) and raises when a plate's channels are not among
  the analogs (no analog samples): plate detection is then off for the file, with a note.
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
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, cached_property
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
from builder.datasets.base import AdapterOptions, SourceAdapter
from builder.datasets.mapping import sign_for
from builder.datasets.options import known_muscles
from builder.errors import SourceError, one_line
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


class EventOptions(AdapterOptions):
    # Tried in order until one gives heel strikes for a side; force_plate and kinematics are
    # one step together (plate onsets replace nearby kinematic heel strikes of the same foot).
    detect: list[Literal["events", "force_plate", "kinematics"]] = Field(
        default_factory=lambda: ["events", "force_plate", "kinematics"]
    )
    force_threshold_n: float = Field(50.0, gt=0)
    # "auto": the preset with most of its labels in the file; a preset name; or the labels.
    markers: MarkerPreset | EventMarkers = "auto"


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
# Joint-angle and moment gaps up to this long are bridged linearly (as EMG gaps are): over
# 50 ms a swing knee curve departs from its chord by ~2°; longer gaps stay missing.
MAX_MODEL_GAP_S = 0.05
# A plate zero offset of at least this fraction of the contact threshold gets a note (smaller
# ones move a contact's ends by about a millisecond).
OFFSET_NOTE_FRACTION = 0.2
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


# --- file, timing -----------------------------------------------------------------------


def _load(path: str, url: str) -> tuple[ezc3d.c3d, str | None]:
    """The parsed file with force-plate data, and a note when only the plates were unreadable."""
    try:
        return ezc3d.c3d(path, extract_forceplat_data=True), None
    except Exception as plate_error:  # ezc3d raises bare C++ errors (RuntimeError, OSError...)
        try:
            c3d = ezc3d.c3d(path)
        except Exception as error:
            raise SourceError(url, f"not a readable C3D file ({one_line(error)})") from None
        return c3d, f"force plates could not be extracted ({one_line(plate_error)})"


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


# Side tokens of point labels, one set per file: English, French (gauche/droite), Italian
# (sinistra/destra). The first set is the default when a file's labels use none.
SIDE_TOKENS: tuple[dict[Side, str], ...] = (
    {"L": "L", "R": "R"},
    {"L": "Left", "R": "Right"},
    {"L": "G", "R": "D"},
    {"L": "Sx", "R": "Dx"},
)
# ezc3d reads a point's residual from the high byte of its residual/camera word (checked by
# writing words into a copy of gait-raw.c3d) and leaves it positive in float-format files; that
# byte at or above 128 is a word with its sign bit set, which c3d.org defines as an invalid
# frame. Writers that store the word -1 unsigned (65535, or the float 65535.0) produce it.
_SIGN_BIT_RESIDUAL = 128


def _label_key(label: str) -> str:
    """A label as compared: without case, spaces, '_', '.' and '-' ('L_FCC' is 'LFCC')."""
    return "".join(ch for ch in label.casefold() if ch not in " _.-")


def _expand(template: str, tokens: dict[Side, str], side: Side | None = None) -> str:
    """A label template with ``{side}`` (and ``{left}`` / ``{right}``) as the file spells them."""
    text = template.replace("{left}", tokens["L"]).replace("{right}", tokens["R"])
    return text.replace("{side}", tokens[side]) if side else text


@dataclass(frozen=True)
class _Points:
    """Point trajectories by label; a subject prefix (``A22:``), case and separators are
    ignored; ``{side}`` templates use the file's side tokens.

    A frame is missing (NaN) where ezc3d says so (negative residual), where the point is
    exactly (0, 0, 0) (systems write dropouts so, whatever the residual says; no marker or
    model output is exactly at the origin on all three axes), and where the residual byte has
    the sign bit set (see ``_SIGN_BIT_RESIDUAL``).
    """

    labels: tuple[str, ...]
    data: np.ndarray  # (P, T, 3) in file units, NaN where missing
    prefixes: frozenset[str]  # declared subject prefixes, casefolded, without ':'; '' included
    dropouts: dict[str, tuple[int, int]]  # label -> frames at (0, 0, 0), frames flagged
    tokens: dict[Side, str] = dataclasses.field(default_factory=lambda: dict(SIDE_TOKENS[0]))

    @classmethod
    def of(cls, c3d: ezc3d.c3d) -> _Points:
        labels = _strings(c3d, "POINT", "LABELS")
        data = np.transpose(np.asarray(c3d["data"]["points"][:3], dtype=float), (1, 2, 0))
        residuals = np.asarray(c3d["data"]["meta_points"]["residuals"], dtype=float)
        with np.errstate(invalid="ignore"):
            zero = (data == 0.0).all(axis=2)
            flagged = np.zeros_like(zero)
            declared = _param(c3d, "POINT", "SCALE")
            try:
                scale = np.abs(np.ravel(declared if declared is not None else []).astype(float))
            except (TypeError, ValueError):  # not a number: the residual cannot be decoded
                scale = np.empty(0)
            if residuals.shape[1:] == zero.shape and scale.size and scale[0] > 0:
                per_point = scale if scale.size == len(data) else np.full(len(data), scale[0])
                byte = residuals[0] / per_point[:, None]
                flagged = np.isfinite(data).all(axis=2) & (byte >= _SIGN_BIT_RESIDUAL - 0.5)
        data[zero | flagged] = np.nan
        dropouts = {
            labels[i]: (int(zero[i].sum()), int((flagged[i] & ~zero[i]).sum()))
            for i in np.flatnonzero((zero | flagged).any(axis=1))
            if i < len(labels)
        }
        prefixes = {""}
        if _number(c3d, "SUBJECTS", "USES_PREFIXES"):
            prefixes |= {
                p.rstrip(":").casefold() for p in _strings(c3d, "SUBJECTS", "LABEL_PREFIXES")
            }
        return cls(tuple(labels[: len(data)]), data, frozenset(prefixes), dropouts)

    @cached_property
    def _index(self) -> dict[str, list[int]]:
        """Points by compared label, with and without their subject prefix."""
        index: dict[str, list[int]] = {}
        for i, label in enumerate(self.labels):
            for key in dict.fromkeys((_label_key(label), _label_key(label.rpartition(":")[2]))):
                index.setdefault(key, []).append(i)
        return index

    def get(self, name: str) -> np.ndarray | None:
        """(T, 3) trajectory of ``name``; among duplicates, the copy with most valid frames."""
        matches = self._index.get(_label_key(name), [])
        declared = [
            i for i in matches if self.labels[i].casefold().rpartition(":")[0] in self.prefixes
        ]
        pool = declared or matches
        if not pool:
            return None
        valid = [int(np.isfinite(self.data[i]).all(axis=1).sum()) for i in pool]
        return self.data[pool[int(np.argmax(valid))]]

    def find(self, template: str, side: Side | None = None) -> np.ndarray | None:
        """``get`` of a label template in the file's side tokens."""
        return self.get(_expand(template, self.tokens, side))

    def count(self, templates: Sequence[str], tokens: dict[Side, str]) -> int:
        """How many of ``templates`` (each side of a ``{side}`` one) name a point."""
        names = {
            _expand(t, tokens, side)
            for t in templates
            for side in (SIDES if "{side}" in t else (None,))
        }
        return sum(self.get(name) is not None for name in names)

    def with_side_tokens(self, templates: Sequence[str]) -> tuple[_Points, str | None]:
        """These points reading ``{side}`` as the token set most of ``templates`` use (ties go
        to the earlier set of SIDE_TOKENS), and a note when it is not L/R or is a tie."""
        sided = [t for t in templates if "{" in t]
        counts = [self.count(sided, tokens) for tokens in SIDE_TOKENS]
        best = int(np.argmax(counts))
        tokens = SIDE_TOKENS[best]
        note = None
        if counts.count(counts[best]) > 1 and counts[best] > 0:
            tied = [
                f"{t['L']}/{t['R']}"
                for t, c in zip(SIDE_TOKENS, counts, strict=True)
                if c == counts[best]
            ]
            note = f"point labels use side tokens {' and '.join(tied)} equally: {tied[0]} used"
        elif best:
            note = f"point labels name the sides {tokens['L']}/{tokens['R']}"
        return dataclasses.replace(self, tokens=dict(tokens)), note

    def duplicates(self) -> list[str]:
        names, counts = np.unique([label.casefold() for label in self.labels], return_counts=True)
        return [str(n) for n in names[counts > 1] if n]

    def dropout_note(self) -> str | None:
        """Which labels had frames read as missing by the rules above, or None."""
        if not self.dropouts:
            return None
        zeros = sum(z for z, _ in self.dropouts.values())
        flagged = sum(f for _, f in self.dropouts.values())
        names = sorted(self.dropouts)
        shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        return (
            f"point frames read as missing: {zeros} at exactly (0, 0, 0), {flagged} with the "
            f"residual word's sign bit set ({shown})"
        )


# --- model outputs ----------------------------------------------------------------------


def _model_output(
    points: _Points,
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
        label = _expand(options.labels[joint], points.tokens, side)
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

# Side words of EMG channel names and EMG-group entries: English, French (gauche/droite) and
# Italian (sinistra/destra) with their short forms; "Lt"/"Rt" as newwalk.c3d's descriptions.
_EMG_SIDE_WORDS: dict[str, Side] = {
    **dict.fromkeys(("l", "lt", "left", "g", "gauche", "sx", "sinistra", "sinistro"), "L"),
    **dict.fromkeys(("r", "rt", "right", "d", "droite", "droit", "dx", "destra", "destro"), "R"),
}
_EMG_GROUP_SIDE = ("SIDE", "SIDES", "CONTEXT", "CONTEXTS")
# ANALOG:GAIN codes (c3d.org, "ANALOG:GAIN"): the ADC input range, ± volts.
_ADC_RANGE_V = {1: 10.0, 2: 5.0, 3: 2.5, 4: 1.25}
_DEFAULT_ADC_BITS = 12  # c3d.org: "if ANALOG:BITS does not exist it is usually safe to assume 12"
# Samples that are whole volts with at least this many levels are ADC counts: a step of 1 V is
# coarser than any EMG ADC (12 bits over ±10 V step by 4.9 mV); fewer levels are a flat line.
_MIN_COUNT_LEVELS = 3


def _tokens(text: str) -> list[str]:
    """Words of a channel name, split at punctuation, spaces and lower-to-upper case changes
    ('LeftGastroc' -> Left, Gastroc; 'GAS_Dx' -> GAS, Dx)."""
    tokens: list[str] = []
    current = ""
    for ch in text:
        if not ch.isalnum() or (current and current[-1].islower() and ch.isupper()):
            if current:
                tokens.append(current)
            current = ""
        if ch.isalnum():
            current += ch
    return [*tokens, current] if current else tokens


def _name_side(text: str, code: bool = False) -> Side | None:
    """The side a channel label or description names: a side word, or for a label (``code``)
    the L/R initial of a short upper-case code ('RGAS', 'LTIB', 'LGMED'; not 'RECTUS', which
    old files write as descriptions); None when it names none or both."""
    tokens = _tokens(text)
    sides = {_EMG_SIDE_WORDS[t.casefold()] for t in tokens if t.casefold() in _EMG_SIDE_WORDS}
    first = tokens[0] if tokens else ""
    if code and 3 <= len(first) <= 5 and first.isupper() and first[0] in "LR" and first.isalpha():
        sides.add("L" if first[0] == "L" else "R")
    return sides.pop() if len(sides) == 1 else None


def _names_muscle(text: str, muscle: str) -> bool:
    """Whether a description names the canonical muscle: each word of its name ('gluteus',
    'maximus') begun by a word of the text ('Glut. max.', 'Gluteus Maximus')."""
    words = [t.casefold() for t in _tokens(text) if len(t) >= 3]
    return all(any(part.startswith(w) for w in words) for part in muscle.split("_"))


def _numbers(c3d: ezc3d.c3d, group: str, name: str) -> list[float]:
    """A numeric array parameter with its continuations (SCALE, SCALE2, ...)."""
    values: list[float] = []
    suffix = ""
    while (part := _param(c3d, group, f"{name}{suffix}")) is not None:
        values += [float(v) for v in np.ravel(part)]
        suffix = str(int(suffix or 1) + 1)
    return values


@dataclass(frozen=True)
class _Analogs:
    """The analog channels as the EMG reader sees them."""

    data: np.ndarray  # (C, S), as ezc3d scales them
    labels: list[str]
    descriptions: list[str]
    units: list[str]
    group_sides: dict[int, Side]  # from an EMG parameter group
    group_source: str  # "EMG:SIDE", or why the group's sides could not be used, or ""

    @classmethod
    def of(cls, c3d: ezc3d.c3d) -> _Analogs:
        data = np.asarray(c3d["data"]["analogs"][0], dtype=float)
        n = len(data)

        def padded(values: list[str]) -> list[str]:
            return (values + [""] * n)[:n]

        labels = padded(_strings(c3d, "ANALOG", "LABELS"))
        sides, source = _emg_group_sides(c3d, labels)
        return cls(
            data,
            labels,
            padded(_strings(c3d, "ANALOG", "DESCRIPTIONS")),
            padded(_strings(c3d, "ANALOG", "UNITS")),
            sides,
            source,
        )

    def describe(self, i: int) -> str:
        label, description = self.labels[i], self.descriptions[i]
        extra = f", {description!r}" if description and description != label else ""
        return f"{label!r} (analog {i + 1}{extra})" if label else f"analog {i + 1}{extra[1:]}"

    def side(self, i: int) -> Side | None:
        """The channel's side: the EMG group's, else one its label and description agree on."""
        if i in self.group_sides:
            return self.group_sides[i]
        named = {_name_side(self.labels[i], code=True), _name_side(self.descriptions[i])} - {None}
        return named.pop() if len(named) == 1 else None


def _emg_group_sides(c3d: ezc3d.c3d, labels: list[str]) -> tuple[dict[int, Side], str]:
    """Analog channel -> side from an EMG parameter group (SIDE or CONTEXT, matched to channels
    by the group's CHANNEL numbers or LABELS, or one entry per analog channel), and its name;
    no sides and why when the entries cannot be matched to channels."""
    group = next((g for g in c3d["parameters"] if str(g).casefold() == "emg"), None)
    key = next((k for k in _EMG_GROUP_SIDE if group and _param(c3d, group, k) is not None), None)
    if group is None or key is None:
        return {}, ""
    source = f"{group}:{key}"
    sides = [_EMG_SIDE_WORDS.get(value.casefold()) for value in _strings(c3d, group, key)]
    numbers = next(
        (
            _numbers(c3d, group, k)
            for k in ("CHANNEL", "CHANNELS")
            if _param(c3d, group, k) is not None
        ),
        None,
    )
    if numbers is not None:
        channels = [int(n) - 1 for n in numbers]  # 1-based analog channel numbers
    elif _param(c3d, group, "LABELS") is not None:
        folded = [label.casefold() for label in labels]
        channels = [
            folded.index(name.casefold()) if folded.count(name.casefold()) == 1 else -1
            for name in _strings(c3d, group, "LABELS")
        ]
    elif len(sides) == len(labels):
        channels = list(range(len(labels)))
    else:
        return {}, (
            f"{source} has {len(sides)} entries for {len(labels)} analog channels and no "
            f"{group}:LABELS or {group}:CHANNEL to match them"
        )
    if len(channels) != len(sides):
        return {}, f"{source} has {len(sides)} entries for {len(channels)} EMG channels"
    found = {c: s for c, s in zip(channels, sides, strict=True) if s and 0 <= c < len(labels)}
    return found, (source if found else f"{source} gives no side to any analog channel")


def _pick(
    analogs: _Analogs, candidates: list[int], side: Side, muscle: str
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
    named = [i for i in remaining if _names_muscle(text[i], muscle)]
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
    analogs: _Analogs, options: EmgOptions
) -> tuple[dict[tuple[Side, str], int], dict[tuple[Side, str], str], dict[tuple[Side, str], str]]:
    """The analog channel of every (side, muscle) slot the catalogue names; the reason for each
    slot left without one; notes on channels told apart among several of the same name."""
    keys = analogs.labels if options.match == "label" else analogs.descriptions
    by_name: dict[str, list[int]] = {}
    for i, name in enumerate(keys):
        if name:
            by_name.setdefault(name.casefold(), []).append(i)
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


def _emg_volts(
    analogs: _Analogs, channel: int, c3d: ezc3d.c3d, path: str
) -> tuple[np.ndarray | None, str | None]:
    """The channel in volts (None when refused) and a note: a missing unit, ADC counts scaled
    by the file's ADC range, or why counts could not be scaled."""
    name = analogs.labels[channel] or analogs.descriptions[channel]
    unit, row, note = analogs.units[channel], analogs.data[channel], None
    if not unit:
        note = f"EMG channel {name!r} has no ANALOG:UNITS entry; assumed volts"
    try:
        volts = row * emg_factor(unit or "V")
    except ValueError:
        # A force or angle channel named as EMG is a catalogue error, not a file quirk.
        raise SourceError(
            path, f"EMG channel {name!r} is in {unit!r}, not a voltage unit"
        ) from None
    finite = volts[np.isfinite(volts)]
    if not (
        finite.size
        and np.array_equal(finite, np.round(finite))
        and np.unique(finite).size >= _MIN_COUNT_LEVELS
    ):
        return volts, note
    counts = (
        f"integer ADC counts ({finite.min():.0f} to {finite.max():.0f}) labelled {unit or 'V'!r}"
    )
    per_count, how = _volts_per_count(c3d, channel, float(finite.max() - finite.min()))
    if per_count is None:
        return None, f"channel {analogs.describe(channel)} holds {counts} and {how}"
    return row * per_count, f"EMG channel {analogs.describe(channel)} holds {counts}: {how}"


def _volts_per_count(c3d: ezc3d.c3d, channel: int, span: float) -> tuple[float | None, str]:
    """Volts per ADC count from the file's ADC range (ANALOG:GAIN code) and resolution
    (ANALOG:BITS, 12 when absent), as c3d.org's SCALE formula: range / 2^bits; or None and
    why no credible scale exists."""
    scales = _numbers(c3d, "ANALOG", "SCALE")
    scale = (scales[channel] if channel < len(scales) else 1.0) * (
        _number(c3d, "ANALOG", "GEN_SCALE") or 1.0
    )
    if abs(abs(scale) - 1.0) > 1e-9:
        return None, f"ANALOG:SCALE x GEN_SCALE is {scale:g}, so they are no plain counts"
    gains = _numbers(c3d, "ANALOG", "GAIN")
    code = int(gains[channel]) if channel < len(gains) else None
    if code not in _ADC_RANGE_V:
        given = "no ANALOG:GAIN" if code is None else f"ANALOG:GAIN {code} (no known range)"
        return None, f"the file gives {given} to scale them by"
    bits = _number(c3d, "ANALOG", "BITS")
    resolution = int(bits) if bits else _DEFAULT_ADC_BITS
    if span >= 2**resolution:
        return None, f"they span {span:.0f} counts, more than a {resolution}-bit ADC gives"
    per_count = 2 * _ADC_RANGE_V[code] / 2**resolution
    bits_note = f"ANALOG:BITS {resolution}" if bits else f"{resolution} bits (no ANALOG:BITS)"
    return per_count, (
        f"scaled by {per_count:.6g} V per count (±{_ADC_RANGE_V[code]:g} V from ANALOG:GAIN "
        f"{code}, {bits_note})"
    )


def _emg(
    c3d: ezc3d.c3d, options: EmgOptions, side: Side, timing: _Timing, path: str
) -> tuple[TimeSeries | None, list[str]]:
    """(T, 13) volts in canonical muscle order (NaN columns for muscles not found or refused),
    or None when no channel of this side is read; and notes on channels missing, refused,
    told apart or rescaled. With ``options.required`` a missing or refused channel is a
    SourceError instead."""
    analogs = _Analogs.of(c3d)
    chosen, refused, told = _emg_slots(analogs, options)
    data = np.full((analogs.data.shape[1], len(MUSCLES)), np.nan)
    notes, found = [], False
    for muscle in options.channels:
        slot = (side, muscle)
        if slot in told:
            notes.append(told[slot])
        if slot in chosen:
            volts, note = _emg_volts(analogs, chosen[slot], c3d, path)
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
    heel_strike_sources: tuple[str, ...] = ()  # the detector of each heel strike


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


def _marker_set(
    points: _Points, choice: MarkerPreset | EventMarkers
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
    points: _Points,
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


def _body(points: _Points, markers: EventMarkers, scale: float, timing: _Timing) -> _Body:
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
    used = _plates_declared(c3d)
    declared = _param(c3d, "FORCE_PLATFORM", "CORNERS") if used else None
    try:  # CORNERS is (3, 4, plates): Fortran order puts each corner's x, y, z together
        corners = np.ravel(np.asarray(declared if declared is not None else [], float), order="F")
    except (TypeError, ValueError):
        corners = np.empty(0)
    plates = corners.reshape(-1, 4, 3)[:used] if corners.size and corners.size % 12 == 0 else None
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


# Without its plates a trial cannot tell when a foot was on one: no stride's moments are trusted.
_UNTRUSTED = ", joint moments not trusted"


def _plates_declared(c3d: ezc3d.c3d) -> int:
    """FORCE_PLATFORM:USED, 0 when absent or not a count."""
    try:
        used = _number(c3d, "FORCE_PLATFORM", "USED")
    except (TypeError, ValueError):
        return 0
    return int(used) if used is not None and np.isfinite(used) and used > 0 else 0


@dataclass(frozen=True)
class _Plate:
    number: int  # 1-based, as FORCE_PLATFORM numbers them
    force: np.ndarray  # (S, 3) newtons in the lab frame, at the analog rate
    cop: np.ndarray  # (S, 3) centre of pressure, metres


@dataclass(frozen=True)
class _PlateContact:
    plate: int  # 1-based, as FORCE_PLATFORM numbers them
    contact: ge.Contact
    side: Side | None


def _plates(
    c3d: ezc3d.c3d, timing: _Timing, marker_scale: float
) -> tuple[list[_Plate], bool, list[str]]:
    """The file's force plates, whether it declares any, and notes. One plate the reader cannot
    use (not extracted, no analog samples) turns plate detection off for the whole file: its
    contacts could not be told from the others', so no moment can be trusted either."""
    declared = _plates_declared(c3d)
    try:
        platforms = list(c3d["data"]["platform"])
    except KeyError:  # _load could not extract them (its note says why)
        return [], declared > 0, [f"plate detection off for this file{_UNTRUSTED}"]
    plates, notes = [], []
    for number, plate in enumerate(platforms, start=1):
        force = np.asarray(plate["force"], dtype=float).T
        problem = (
            f"force plate {number} has no analog samples"
            if not len(force)
            else f"force plate {number} has {len(force)} of {timing.n_samples} analog samples"
            if force.shape != (timing.n_samples, 3)
            else f"force plate {number} has no finite sample"
            if not np.isfinite(force).any()
            else None
        )
        if problem:
            return [], True, [f"{problem}: plate detection off for this file{_UNTRUSTED}"]
        if str(plate["unit_force"]).strip().casefold() not in ("n", ""):
            notes.append(f"force plate {number}: forces in {plate['unit_force']!r}, read as N")
        try:
            cop_scale = length_factor(str(plate["unit_position"]))
        except ValueError:  # ezc3d copies POINT:UNITS; empty there means as the markers
            cop_scale = marker_scale
        cop = np.asarray(plate["center_of_pressure"], dtype=float).T * cop_scale
        plates.append(_Plate(number, force, cop))
    return plates, bool(platforms) or declared > 0, notes


def _plate_contacts(
    plates: list[_Plate],
    timing: _Timing,
    threshold_n: float,
    body: _Body,
    file_events: dict[Side, _Events],
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


def _lag_corrected(
    kinematic: dict[Side, _Events], contacts: list[_PlateContact]
) -> tuple[dict[Side, _Events], list[str]]:
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
    file_events: dict[Side, _Events],
    contacts: list[_PlateContact],
    kinematic: Callable[[bool], dict[Side, _Events]],
) -> tuple[_Events, tuple[str, ...]]:
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
            else _Events(np.empty(0), np.empty(0))
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
            return _Events(heel_strikes, toe_offs, sources), tuple(used)
    return _Events(np.empty(0), np.empty(0)), ()


# --- the adapter ------------------------------------------------------------------------


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
        return [
            dataclasses.replace(
                recording, emg_kind=spec.emg_kind, shared_emg=_shared_emg(options.emg)
            )
        ]


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
    notes += [note] if (note := points.dropout_note()) else []
    scale, unit_note = _marker_scale(c3d, path)
    notes += [unit_note] if unit_note else []
    threshold = options.events.force_threshold_n
    # What event detection finds on the way: notes, and the reason when it finds nothing.
    why: list[str] = []
    points, token_note = points.with_side_tokens(_templates(options))
    markers, preset_note = _marker_set(points, options.events.markers)
    why += [n for n in (token_note, preset_note) if n]
    plates, has_plates, plate_notes = _plates(c3d, timing, scale)
    why += plate_notes
    body = _body(points, markers, scale, timing)
    up_axis, up_note = _up_axis(body, c3d, [p.force for p in plates], threshold)
    body = dataclasses.replace(body, up_axis=up_axis)
    why += [up_note] if up_note else []
    file_events, event_notes = _file_events(c3d, timing)
    why += event_notes
    contacts, contact_notes = _plate_contacts(plates, timing, threshold, body, file_events)
    why += contact_notes

    @cache
    def kinematic(with_plates: bool) -> dict[Side, _Events]:
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
        heel_strike_sources=events.heel_strike_sources,
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

"""C3D files as ezc3d reads them, and what ezc3d leaves to the reader: parameters with their
continuations, frame timing, point trajectories by label, analog channels in volts, the
events the file stores and its force plates. What the file holds, not what a catalogue maps
it to: the ``c3d`` driver (:mod:`builder.datasets.c3d.adapter`) maps these onto canonical
records and detects events.

What the reader relies on (checked on the real files in ../shared/data/real):

- ezc3d returns analog samples already scaled: (raw - ANALOG:OFFSET) * ANALOG:SCALE *
  ANALOG:GEN_SCALE (decoding gait-pig.c3d's integer samples by hand gives ezc3d's values
  exactly), so ANALOG:UNITS applies to them directly. Points are scaled by POINT:SCALE too,
  and are NaN where the residual is negative (invalid frames). It does not see every invalid
  frame: it reads the residual from the high byte of the residual/camera word and keeps it
  positive in float files, so a word -1 written unsigned (65535) reads as residual 255; and
  some systems write dropouts as (0, 0, 0) with a positive residual. The reader treats both
  as missing (:class:`Points`).
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
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import ezc3d
import numpy as np

from builder.conventions import SIDES, Side, emg_factor, length_factor
from builder.errors import SourceError, one_line

# --- parameters -------------------------------------------------------------------------


def param(c3d: ezc3d.c3d, group: str, name: str) -> Any:
    """A parameter's value, or None when the group or parameter is absent."""
    try:
        return c3d["parameters"][group][name]["value"]
    except KeyError:
        return None


def param_strings(c3d: ezc3d.c3d, group: str, name: str) -> list[str]:
    """A list-of-strings parameter with its continuations (LABELS, LABELS2, ...), stripped."""
    values: list[str] = []
    suffix = ""
    while (part := param(c3d, group, f"{name}{suffix}")) is not None:
        values += [str(v).strip() for v in part]
        suffix = str(int(suffix or 1) + 1)
    return values


def param_number(c3d: ezc3d.c3d, group: str, name: str) -> float | None:
    value = param(c3d, group, name)
    array = np.asarray(value if value is not None else [], dtype=float).ravel()
    return float(array[0]) if array.size else None


def param_numbers(c3d: ezc3d.c3d, group: str, name: str) -> list[float]:
    """A numeric array parameter with its continuations (SCALE, SCALE2, ...)."""
    values: list[float] = []
    suffix = ""
    while (part := param(c3d, group, f"{name}{suffix}")) is not None:
        values += [float(v) for v in np.ravel(part)]
        suffix = str(int(suffix or 1) + 1)
    return values


# --- file, timing -----------------------------------------------------------------------


def load_c3d(path: str, url: str) -> tuple[ezc3d.c3d, str | None]:
    """The parsed file with force-plate data, and a note when only the plates were unreadable."""
    try:
        return ezc3d.c3d(path, extract_forceplat_data=True), None
    except Exception as plate_error:  # ezc3d raises bare C++ errors (RuntimeError, OSError...)
        try:
            c3d = ezc3d.c3d(path)
        except Exception as error:
            raise SourceError(url, f"not a readable C3D file ({one_line(error)})") from None
        return c3d, f"force plates could not be extracted ({one_line(plate_error)})"


def declared_frames(path: str) -> int | None:
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
class Timing:
    point_rate: float
    point_start_s: float
    n_frames: int
    analog_rate: float
    analog_start_s: float
    n_samples: int

    @property
    def point_end_s(self) -> float:
        return self.point_start_s + (self.n_frames - 1) / self.point_rate


def read_timing(c3d: ezc3d.c3d, declared_frames: int | None, path: str) -> Timing:
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
        return Timing(point_rate, first / point_rate, expected, point_rate, first / point_rate, 0)
    # The header stores samples per frame; ANALOG:RATE is what the recording system claims.
    per_frame = round(float(header["analogs"]["frame_rate"]) / point_rate)
    analog_rate = param_number(c3d, "ANALOG", "RATE") or per_frame * point_rate
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
    return Timing(
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


def expand_label(template: str, tokens: dict[Side, str], side: Side | None = None) -> str:
    """A label template with ``{side}`` (and ``{left}`` / ``{right}``) as the file spells them."""
    text = template.replace("{left}", tokens["L"]).replace("{right}", tokens["R"])
    return text.replace("{side}", tokens[side]) if side else text


@dataclass(frozen=True)
class Points:
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
    def of(cls, c3d: ezc3d.c3d) -> Points:
        labels = param_strings(c3d, "POINT", "LABELS")
        data = np.transpose(np.asarray(c3d["data"]["points"][:3], dtype=float), (1, 2, 0))
        residuals = np.asarray(c3d["data"]["meta_points"]["residuals"], dtype=float)
        with np.errstate(invalid="ignore"):
            zero = (data == 0.0).all(axis=2)
            flagged = np.zeros_like(zero)
            declared = param(c3d, "POINT", "SCALE")
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
        if param_number(c3d, "SUBJECTS", "USES_PREFIXES"):
            prefixes |= {
                p.rstrip(":").casefold() for p in param_strings(c3d, "SUBJECTS", "LABEL_PREFIXES")
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
        return self.get(expand_label(template, self.tokens, side))

    def count(self, templates: Sequence[str], tokens: dict[Side, str]) -> int:
        """How many of ``templates`` (each side of a ``{side}`` one) name a point."""
        names = {
            expand_label(t, tokens, side)
            for t in templates
            for side in (SIDES if "{side}" in t else (None,))
        }
        return sum(self.get(name) is not None for name in names)

    def with_side_tokens(self, templates: Sequence[str]) -> tuple[Points, str | None]:
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


def marker_scale(c3d: ezc3d.c3d, path: str) -> tuple[float, str | None]:
    """Metres per POINT:UNITS unit (mm when empty, with a note)."""
    unit = next(iter(param_strings(c3d, "POINT", "UNITS")), "")
    if not unit:
        return 1e-3, "POINT:UNITS is empty; markers assumed in mm"
    try:
        return length_factor(unit), None
    except ValueError as error:
        raise SourceError(path, f"markers: {error}") from None


# --- analog channels --------------------------------------------------------------------


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


def names_muscle(text: str, muscle: str) -> bool:
    """Whether a description names the canonical muscle: each word of its name ('gluteus',
    'maximus') begun by a word of the text ('Glut. max.', 'Gluteus Maximus')."""
    words = [t.casefold() for t in _tokens(text) if len(t) >= 3]
    return all(any(part.startswith(w) for w in words) for part in muscle.split("_"))


@dataclass(frozen=True)
class Analogs:
    """The analog channels as the EMG reader sees them."""

    data: np.ndarray  # (C, S), as ezc3d scales them
    labels: list[str]
    descriptions: list[str]
    units: list[str]
    group_sides: dict[int, Side]  # from an EMG parameter group
    group_source: str  # "EMG:SIDE", or why the group's sides could not be used, or ""

    @classmethod
    def of(cls, c3d: ezc3d.c3d) -> Analogs:
        data = np.asarray(c3d["data"]["analogs"][0], dtype=float)
        n = len(data)

        def padded(values: list[str]) -> list[str]:
            return (values + [""] * n)[:n]

        labels = padded(param_strings(c3d, "ANALOG", "LABELS"))
        sides, source = _emg_group_sides(c3d, labels)
        return cls(
            data,
            labels,
            padded(param_strings(c3d, "ANALOG", "DESCRIPTIONS")),
            padded(param_strings(c3d, "ANALOG", "UNITS")),
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
    key = next((k for k in _EMG_GROUP_SIDE if group and param(c3d, group, k) is not None), None)
    if group is None or key is None:
        return {}, ""
    source = f"{group}:{key}"
    sides = [_EMG_SIDE_WORDS.get(value.casefold()) for value in param_strings(c3d, group, key)]
    numbers = next(
        (
            param_numbers(c3d, group, k)
            for k in ("CHANNEL", "CHANNELS")
            if param(c3d, group, k) is not None
        ),
        None,
    )
    if numbers is not None:
        channels = [int(n) - 1 for n in numbers]  # 1-based analog channel numbers
    elif param(c3d, group, "LABELS") is not None:
        folded = [label.casefold() for label in labels]
        channels = [
            folded.index(name.casefold()) if folded.count(name.casefold()) == 1 else -1
            for name in param_strings(c3d, group, "LABELS")
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


def emg_volts(
    analogs: Analogs, channel: int, c3d: ezc3d.c3d, path: str
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
    scales = param_numbers(c3d, "ANALOG", "SCALE")
    scale = (scales[channel] if channel < len(scales) else 1.0) * (
        param_number(c3d, "ANALOG", "GEN_SCALE") or 1.0
    )
    if abs(abs(scale) - 1.0) > 1e-9:
        return None, f"ANALOG:SCALE x GEN_SCALE is {scale:g}, so they are no plain counts"
    gains = param_numbers(c3d, "ANALOG", "GAIN")
    code = int(gains[channel]) if channel < len(gains) else None
    if code not in _ADC_RANGE_V:
        given = "no ANALOG:GAIN" if code is None else f"ANALOG:GAIN {code} (no known range)"
        return None, f"the file gives {given} to scale them by"
    bits = param_number(c3d, "ANALOG", "BITS")
    resolution = int(bits) if bits else _DEFAULT_ADC_BITS
    if span >= 2**resolution:
        return None, f"they span {span:.0f} counts, more than a {resolution}-bit ADC gives"
    per_count = 2 * _ADC_RANGE_V[code] / 2**resolution
    bits_note = f"ANALOG:BITS {resolution}" if bits else f"{resolution} bits (no ANALOG:BITS)"
    return per_count, (
        f"scaled by {per_count:.6g} V per count (±{_ADC_RANGE_V[code]:g} V from ANALOG:GAIN "
        f"{code}, {bits_note})"
    )


# --- events stored in the file ----------------------------------------------------------


# Heel-strike / toe-off names, compared without case, spaces or punctuation.
_HEEL_STRIKE = frozenset(
    {"footstrike", "heelstrike", "hs", "fs", "ic", "initialcontact", "footcontact", "heelcontact"}
)
_TOE_OFF = frozenset({"footoff", "toeoff", "to", "fo"})
_SIDE_WORDS: tuple[tuple[str, Side], ...] = (("left", "L"), ("right", "R"), ("l", "L"), ("r", "R"))
EventKind = Literal["heel_strike", "toe_off"]


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
class Events:
    """One side's heel strikes and toe offs (seconds, sorted), with the detector of each heel
    strike once the driver has chosen them."""

    heel_strikes: np.ndarray
    toe_offs: np.ndarray
    heel_strike_sources: tuple[str, ...] = ()  # the detector of each heel strike


def _event_entries(c3d: ezc3d.c3d) -> list[tuple[float, str, str]]:
    """(time, label, context) of the first EVENT:USED events; TIMES is (2, n): minutes, seconds."""
    raw = param(c3d, "EVENT", "TIMES")
    times = np.asarray(raw if raw is not None else [], dtype=float).reshape(2, -1, order="F")
    seconds = (60.0 * times[0] + times[1]).tolist()
    used = param_number(c3d, "EVENT", "USED")
    n = len(seconds) if used is None else min(int(used), len(seconds))
    labels = [*param_strings(c3d, "EVENT", "LABELS"), *[""] * n][:n]
    contexts = [*param_strings(c3d, "EVENT", "CONTEXTS"), *[""] * n][:n]
    return list(zip(seconds[:n], labels, contexts, strict=True))


def read_events(c3d: ezc3d.c3d, timing: Timing) -> tuple[dict[Side, Events], list[str]]:
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
        side: Events(
            _unique(found.get((side, "heel_strike"), []), timing),
            _unique(found.get((side, "toe_off"), []), timing),
        )
        for side in SIDES
    }
    return events, notes


def _unique(times: Sequence[float], timing: Timing) -> np.ndarray:
    """Sorted times with repeats (within half a frame) removed."""
    ordered = np.sort(np.asarray(times, dtype=float))
    keep = np.diff(ordered, prepend=-np.inf) > 0.5 / timing.point_rate
    return ordered[keep]


# --- force plates -----------------------------------------------------------------------


# Without its plates a trial cannot tell when a foot was on one: no stride's moments are trusted.
_UNTRUSTED = ", joint moments not trusted"


def _plates_declared(c3d: ezc3d.c3d) -> int:
    """FORCE_PLATFORM:USED, 0 when absent or not a count."""
    try:
        used = param_number(c3d, "FORCE_PLATFORM", "USED")
    except (TypeError, ValueError):
        return 0
    return int(used) if used is not None and np.isfinite(used) and used > 0 else 0


@dataclass(frozen=True)
class Plate:
    number: int  # 1-based, as FORCE_PLATFORM numbers them
    force: np.ndarray  # (S, 3) newtons in the lab frame, at the analog rate
    cop: np.ndarray  # (S, 3) centre of pressure, metres


def read_plates(
    c3d: ezc3d.c3d, timing: Timing, point_scale: float
) -> tuple[list[Plate], bool, list[str]]:
    """The file's force plates, whether it declares any, and notes; ``point_scale`` (metres per
    POINT:UNITS unit, :func:`marker_scale`) scales a centre of pressure without units. One plate the reader cannot
    use (not extracted, no analog samples) turns plate detection off for the whole file: its
    contacts could not be told from the others', so no moment can be trusted either."""
    declared = _plates_declared(c3d)
    try:
        platforms = list(c3d["data"]["platform"])
    except KeyError:  # load_c3d could not extract them (its note says why)
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
            cop_scale = point_scale
        cop = np.asarray(plate["center_of_pressure"], dtype=float).T * cop_scale
        plates.append(Plate(number, force, cop))
    return plates, bool(platforms) or declared > 0, notes


def plate_corners(c3d: ezc3d.c3d) -> np.ndarray | None:
    """(plates, 4, 3) FORCE_PLATFORM:CORNERS of the plates in use, in file units; None when the
    file declares no plate or its corners are missing or malformed."""
    used = _plates_declared(c3d)
    declared = param(c3d, "FORCE_PLATFORM", "CORNERS") if used else None
    try:  # CORNERS is (3, 4, plates): Fortran order puts each corner's x, y, z together
        corners = np.ravel(np.asarray(declared if declared is not None else [], float), order="F")
    except (TypeError, ValueError):
        corners = np.empty(0)
    return corners.reshape(-1, 4, 3)[:used] if corners.size and corners.size % 12 == 0 else None

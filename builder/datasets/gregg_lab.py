"""Gregg-lab gait-cycle datasets: what Embry et al. 2018 (:mod:`builder.datasets.embry.adapter`) and
Macaluso et al. 2020 (:mod:`builder.datasets.macaluso.adapter`) share. Not an adapter: the two adapters
read their files (HDF5 / MAT v5) and hand each trial's arrays to :func:`gregg_recording`.

Both ship strides already cut and time-normalised, per leg, as (points × strides) arrays:
``cycles.<side>.time`` (the time stamp of every point of every stride), joint angles and
moments as ``<joint>.{x,y,z}`` and EMG envelopes per muscle. What the shared part does, per
(subject, trial) and leg:

- strides are the columns of ``cycles.<side>.time``: start = first point, duration = last −
  first point (the points include both heel strikes, as ``linspace(0, 1, 150)`` in the
  dataset's own example script); rows of all-zero time are not strides;
- every other array must have one stride per time column: a trailing all-zero stride beyond
  them is dropped (some ``jointmoment`` arrays carry one), any other mismatch leaves the trial
  out; a stride whose joint curve is more than a third exact zeros (zero-filled, as public
  readers found in ``jointmoment``) or whose EMG is all zero is absent (NaN, mask False);
- EMG with a different stride count than the cycles is never paired blindly (the foundation
  truncated both lists to the shorter one): the strides keep their kinematics and kinetics,
  the EMG is left out with a note;
- axes: ``x`` is the sagittal plane (flexion), ``y`` frontal (adduction), ``z`` transverse
  (rotation) — the foundation put ``x`` in the adduction slot, a bug not repeated here; signs
  of angles are Plug-in Gait's (the lab's model), which are the canonical ones; moments use
  Plug-in Gait's signs (extensor, plantarflexor, abductor positive — as real PiG output has
  them: ``../shared/data/real/gait-pig.c3d``), so every component flips to reach internal
  canonical moments (the catalogue's ``sign``); that these files carry PiG signs is [I],
  checked on the ankle;
- units: angles in degrees; moments in N·m/kg or N·mm/kg, decided by magnitude (the median
  stride's largest |sagittal moment| is 0.3–5 N·m/kg in walking); anything else is refused.

What is checked on the data (a failed check leaves the trial out, naming the assumption; when
no trial of a file can be read the file is refused with the first reason):

- [F] ``x`` is sagittal: the knee's largest excursion is in ``x`` and exceeds 30°;
- [I] signs: knee flexion in swing is positive (> 30°), the hip is more flexed at heel strike
  than at mid stance, the ankle plantarflexes after toe off (40–50 % → 62–72 % of the cycle);
- units and signs of moments: magnitude as above; the internal ankle moment over 30–55 % of
  the cycle is plantarflexor (negative) after the sign rule;
- [C] EMG is a processed envelope: no channel goes below −5 % of its peak (a raw signal would
  swing as far negative as positive; 5 % allows filter undershoot);
- [I] the points of a stride are equally spaced in time, and consecutive strides share their
  heel strike (not one sample apart); [F] points per stride where the catalogue states them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from builder.conventions import (
    ANGLE_UNITS,
    EMG_RATE_HZ,
    JOINTS,
    PLANES,
    Side,
    angle_factor,
    moment_factor,
)
from builder.datasets.mapping import joint_array, muscle_matrix
from builder.datasets.options import DatasetOptions
from builder.datasets.segments import cycle_sides
from builder.errors import SourceError
from builder.processing.checks import (
    check_envelope_undershoot,
    median_stride,
    moment_units_by_magnitude,
    phase_window,
)
from builder.records import SideRecording, TrialRecording, TrialSpec

SIDE_WORDS: dict[Side, str] = {"L": "left", "R": "right"}
HIP, KNEE, ANKLE = (JOINTS.index(j) for j in JOINTS)
FLEX = PLANES.index("flexion")
EMG_UNITS = "normalised"

# Moment magnitudes: the median stride's largest |sagittal moment| in walking (N·m/kg), for
# each unit the files may hold.
_MOMENT_PEAK_RANGE = (0.3, 5.0)
_MOMENT_UNITS = ("N.m/kg", "N.mm/kg")
_ZERO_FILLED_SHARE = 1 / 3  # a stride curve with more exact zeros than this is zero-filled
_ENVELOPE_UNDERSHOOT = 0.05  # of the channel's peak
_MAX_NOTED_PROBLEMS = 20


class TrialProblem(Exception):
    """One (subject, trial) that cannot be read, and why."""


class GreggLabOptions(DatasetOptions):
    """The shared catalogue ``args`` of the Gregg-lab entries, with the shape they rely on."""

    layout: dict[str, Any] = Field(default_factory=dict)
    events: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _gregg_layout(self) -> GreggLabOptions:
        if self.kinematics is None or self.emg is None:
            raise ValueError("kinematics and emg are required")
        if "{side}" not in (self.emg.container or ""):
            raise ValueError("emg.container must hold a {side} placeholder (left/right)")
        for name, joints in (("kinematics", self.kinematics), ("kinetics", self.kinetics)):
            if joints is None:
                continue
            if not joints.labels or set(joints.axes or ()) != set(PLANES):
                raise ValueError(f"{name}: labels and axes of all planes {list(PLANES)} needed")
            for joint, per_side in joints.labels.items():
                if not isinstance(per_side, dict) or set(self.sides) - set(per_side):
                    raise ValueError(f"{name}.labels.{joint} needs a container per side")
        if self.kinematics.units is None:
            raise ValueError("kinematics.units is required (deg or rad)")
        angle_factor(self.kinematics.units)
        if self.kinetics is not None and self.kinetics.units not in (None, *_MOMENT_UNITS):
            raise ValueError(
                f"kinetics.units must be null (decided by magnitude) or one of "
                f"{list(_MOMENT_UNITS)}"
            )
        durations = self.events.get("durations_from")
        if not isinstance(durations, dict) or set(self.sides) - set(durations):
            raise ValueError("events.durations_from needs the stride-time array of every side")
        return self


# --- one trial ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialSource:
    """Where one trial's arrays come from: ``fetch(path)`` gives a (strides, points) float
    array or raises :class:`TrialProblem`; ``sep`` joins a container and a component."""

    fetch: Callable[[str], np.ndarray]
    sep: str

    def join(self, *parts: str) -> str:
        return self.sep.join(parts)


@dataclass
class _Side:
    side: Side
    starts: np.ndarray  # (N,)
    durations: np.ndarray  # (N,)
    kinematics: np.ndarray  # (N, P, 3, 3) canonical degrees
    kinetics: np.ndarray | None  # (N, P, 3, 3) canonical signs, source units
    emg: np.ndarray | None  # (N, P_emg, 13)
    absolute: bool


def gregg_recording(
    source: TrialSource,
    options: GreggLabOptions,
    spec: TrialSpec,
    meta: dict[str, Any],
    outliers: dict[Side, np.ndarray] | None = None,
) -> TrialRecording:
    """One trial's strides of every side as a recording (raises :class:`TrialProblem`)."""
    notes: list[str] = []
    read = [
        _read_side(source, options, side, (outliers or {}).get(side), notes)
        for side in options.sides
    ]
    sides = [s for s in read if s is not None]
    if not sides:
        raise TrialProblem("no stride on any side")
    factor = _moment_factor(sides, options, notes)
    absolute = all(s.absolute for s in sides)
    if not absolute:
        notes.append("stride times are not increasing: strides laid end to end from t = 0")
    recordings: list[SideRecording] = []
    for data in sides:
        kinetics = None if data.kinetics is None else data.kinetics * factor
        if kinetics is not None:
            _check_ankle_moment(kinetics, data.side)
        recordings += cycle_sides(
            data.side,
            data.durations,
            kinematics=data.kinematics,
            kinetics=kinetics,
            emg=None if data.emg is None else _emg_at_target_rate(data.emg, data.durations),
            emg_rate_hz=EMG_RATE_HZ,
            emg_units=(options.emg.units if options.emg else None) or EMG_UNITS,
            starts_s=data.starts if absolute else None,
        )
    return TrialRecording(
        sides=tuple(recordings),
        emg_kind=spec.emg_kind,
        event_source="pre_segmented",
        notes=tuple(notes),
        meta=meta,
        times_absolute=absolute,
    )


def _emg_at_target_rate(emg: np.ndarray, durations: np.ndarray) -> list[np.ndarray]:
    """Time-normalised envelopes (N, P, 13) as N arrays at 1 kHz covering each whole stride.

    Linear interpolation (an envelope stays non-negative); the grid ends on the first sample at
    or after the next heel strike, which holds the last value for under a millisecond. Handing
    ``cycle_sides`` the (N, P, 13) arrays directly loses the EMG of every stride whose duration
    is not a whole number of milliseconds: the 1 kHz grid it is interpolated onto ends before
    the stride does, and the stride's envelope is then incomplete (mask False).
    """
    out = []
    points = emg.shape[1]
    for stride, duration in zip(emg, durations, strict=True):
        n = int(np.ceil(duration * EMG_RATE_HZ - 1e-9)) + 1
        at = np.arange(n) / EMG_RATE_HZ
        source = np.linspace(0.0, duration, points)
        out.append(np.stack([np.interp(at, source, channel) for channel in stride.T], axis=1))
    return out


def finish(
    recordings: list[TrialRecording], problems: list[str], url: str, what: str
) -> list[TrialRecording]:
    """The recordings of a file; trials left out become notes of the first recording. A file
    with no readable trial is refused with the first problem."""
    if not recordings:
        if not problems:
            raise SourceError(url, f"no {what} found")
        raise SourceError(
            url, f"none of {len(problems)} {what}(s) could be read; first: {problems[0]}"
        )
    if problems:
        shown = [f"left out {p}" for p in problems[:_MAX_NOTED_PROBLEMS]]
        if len(problems) > _MAX_NOTED_PROBLEMS:
            shown.append(f"... and {len(problems) - _MAX_NOTED_PROBLEMS} more {what}(s)")
        first = recordings[0]
        recordings[0] = dataclasses.replace(first, notes=(*shown, *first.notes))
    return recordings


def _read_side(
    source: TrialSource,
    options: GreggLabOptions,
    side: Side,
    outliers: np.ndarray | None,
    notes: list[str],
) -> _Side | None:
    time_path = options.events["durations_from"][side]
    time = _trim_trailing_zero_rows(source.fetch(time_path))
    if time.ndim != 2 or time.shape[1] < 2:
        raise TrialProblem(f"{time_path}: expected points x strides, found shape {time.shape}")
    n = time.shape[0]
    keep = np.isfinite(time).all(axis=1) & (time[:, -1] > time[:, 0])
    if (~keep).any():
        notes.append(f"{side}: {int((~keep).sum())} stride(s) without valid times left out")
    if outliers is not None and outliers.size:
        if outliers.min() < 0 or outliers.max() >= n:
            raise TrialProblem(f"{side}: outlier strides {outliers + 1} beyond the {n} strides")
        keep[outliers] = False
        notes.append(
            f"{side}: stride(s) {', '.join(str(i + 1) for i in outliers)} left out "
            "(listed as outliers by the authors)"
        )
    if not keep.any():
        return None
    _check_time(time[keep], time_path, side)
    starts, durations = time[keep, 0], time[keep, -1] - time[keep, 0]

    kinematics = _joints(source, options, "kinematics", side, n, keep, notes)
    assert kinematics is not None and options.kinematics is not None  # required by the options
    kinematics *= angle_factor(options.kinematics.units or ANGLE_UNITS)
    _check_angles(kinematics, side)
    kinetics = _joints(source, options, "kinetics", side, n, keep, notes)
    emg = _emg(source, options, side, n, keep, notes)
    absolute = bool(starts.size < 2 or (np.diff(starts) > 0).all())
    return _Side(side, starts, durations, kinematics, kinetics, emg, absolute)


def _trim_trailing_zero_rows(values: np.ndarray) -> np.ndarray:
    end = values.shape[0]
    while end > 0 and not np.any(values[end - 1]):
        end -= 1
    return values[:end]


def _rows(values: np.ndarray, n: int, path: str) -> np.ndarray:
    """``values`` as (n, P), one row per stride of the cycles; extra all-zero rows dropped."""
    if values.ndim != 2:
        raise TrialProblem(f"{path}: expected points x strides, found shape {values.shape}")
    if values.shape[0] > n and not np.any(values[n:]):
        values = values[:n]
    if values.shape[0] != n:
        raise TrialProblem(
            f"{path} has {values.shape[0]} strides, the cycles {n}: they cannot be paired"
        )
    return values


def _check_time(time: np.ndarray, path: str, side: Side) -> None:
    """[I] equally spaced points; consecutive strides share a heel strike."""
    spacing = np.diff(time, axis=1)
    mean = spacing.mean(axis=1, keepdims=True)
    worst = float(np.max(np.abs(spacing - mean) / mean))
    if worst > 0.01:
        raise TrialProblem(
            f"[I] the points of a stride are equally spaced in time (time-normalised): "
            f"{side} {path} spacing varies by {100 * worst:.0f} %"
        )
    if time.shape[0] < 2:
        return
    gaps = (time[1:, 0] - time[:-1, -1]) / mean[:-1, 0]
    near = gaps[np.abs(gaps) < 1.5]
    if near.size and float(np.median(near)) > 0.5:
        raise TrialProblem(
            f"[I] a stride's points include both heel strikes: {side} strides in {path} "
            f"start {float(np.median(near)):.2f} samples after the previous one ends"
        )


def _joints(
    source: TrialSource,
    options: GreggLabOptions,
    which: Literal["kinematics", "kinetics"],
    side: Side,
    n: int,
    keep: np.ndarray,
    notes: list[str],
) -> np.ndarray | None:
    """(N, P, 3, 3) in canonical axes and signs (source units), or None without a map."""
    joints = getattr(options, which)
    if joints is None:
        return None
    expected = options.rates.points_per_stride.get(which)
    columns, zero_filled, points = {}, 0, set()
    for joint, per_side in (joints.labels or {}).items():
        curves = {}
        for plane, component in (joints.axes or {}).items():
            path = source.join(per_side[side], component)
            curves[plane] = _rows(source.fetch(path), n, path)[keep]
            points.add(curves[plane].shape[1])
        # A zero-filled sagittal curve means the joint has no data in that stride.
        sagittal = curves["flexion"]
        no_data = (sagittal == 0).sum(axis=1) > _ZERO_FILLED_SHARE * sagittal.shape[1]
        for plane, values in curves.items():
            absent = no_data | ~np.any(values, axis=1)
            zero_filled += int(absent.sum())
            columns[(joint, plane)] = np.where(absent[:, None], np.nan, values)
    if len(points) != 1:
        raise TrialProblem(f"{side} {which}: components differ in points per stride {points}")
    (p,) = points
    if expected and p != expected:
        raise TrialProblem(f"[F] {expected} points per stride: {side} {which} have {p}")
    if zero_filled:
        notes.append(f"{side}: {zero_filled} zero-filled {which} stride curve(s) marked absent")
    return joint_array(columns, (int(keep.sum()), p), signs=joints.sign)


def _emg(
    source: TrialSource,
    options: GreggLabOptions,
    side: Side,
    n: int,
    keep: np.ndarray,
    notes: list[str],
) -> np.ndarray | None:
    """(N, P_emg, 13) envelopes paired with the cycles' strides, or None."""
    emg = options.emg
    assert emg is not None
    container = (emg.container or "").replace("{side}", SIDE_WORDS[side])
    channels: dict[str, list[np.ndarray]] = {}
    for muscle, names in emg.names(side).items():
        channels[muscle] = [source.fetch(source.join(container, name)) for name in names]
    if not channels:
        return None
    arrays = [a for values in channels.values() for a in values]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or arrays[0].ndim != 2:
        raise TrialProblem(f"{side} EMG channels differ in shape: {sorted(shapes)}")
    expected = options.rates.points_per_stride.get("emg")
    count, points = arrays[0].shape
    if expected and points != expected:
        raise TrialProblem(f"[C] {expected} EMG points per stride: {side} EMG has {points}")
    for muscle, values in channels.items():
        _check_envelope(values, muscle, side)
    if count > n and not any(np.any(a[n:]) for a in arrays):
        count = n
    if count != n:
        notes.append(
            f"{side}: EMG has {count} strides, the cycles {n}; they cannot be paired by "
            "time, so EMG is left out of these strides (never truncated to the shorter list)"
        )
        return None
    columns: dict[str, list[np.ndarray]] = {}
    silent = 0
    for muscle, values in channels.items():
        rows = []
        for a in values:
            a = a[:n][keep]
            empty = ~np.any(a, axis=1)
            silent += int(empty.sum())
            rows.append(np.where(empty[:, None], np.nan, a))
        columns[muscle] = rows
    if silent:
        notes.append(f"{side}: {silent} all-zero EMG stride channel(s) marked absent")
    return muscle_matrix(columns, (int(keep.sum()), points))


# --- checks ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _trial_check() -> Iterator[None]:
    """A shared check (:mod:`builder.processing.checks`) refuses with a SourceError; here a
    broken assumption leaves one trial out, so it becomes a :class:`TrialProblem` saying the
    same."""
    try:
        yield
    except SourceError as error:
        raise TrialProblem(error.problem) from None


# The angle and moment checks below stay with the family: they judge the median stride (robust
# to the zero-filled strides these files carry), name the family's axis layout ([F] x is
# sagittal) and leave one trial out (TrialProblem) rather than refuse the file. The shared
# checks closest to them (checks.check_sagittal_signs, checks.check_internal_moments) use other
# windows and bounds: merging would loosen one side or the other.


def _check_angles(angles: np.ndarray, side: Side) -> None:
    """[F] x sagittal; [I] canonical signs of hip, knee and ankle flexion."""
    curve = median_stride(angles)
    if curve is None:
        return
    knee = curve[:, KNEE, :]
    if np.isfinite(knee).all(axis=0).all():
        excursion = np.ptp(knee, axis=0)
        others = [excursion[p] for p in range(len(PLANES)) if p != FLEX]
        if not (excursion[FLEX] > 30.0 and excursion[FLEX] > max(others)):
            raise TrialProblem(
                f"[F] x is the sagittal plane (in degrees): {side} knee excursion is "
                f"{excursion[FLEX]:.0f} deg in the flexion slot vs {max(others):.0f} deg in "
                "another plane"
            )
    swing = float(np.max(phase_window(knee[:, FLEX], 0.55, 0.9), initial=-np.inf))
    if np.isfinite(swing) and swing < 30.0:
        raise TrialProblem(
            f"[I] knee flexion is positive: {side} knee peaks at {swing:.0f} deg in swing"
        )
    hip = curve[:, HIP, FLEX]
    lift = float(np.mean(phase_window(hip, 0.0, 0.05)) - np.mean(phase_window(hip, 0.4, 0.6)))
    if np.isfinite(lift) and lift < 5.0:
        raise TrialProblem(
            f"[I] hip flexion is positive: {side} hip is {lift:.0f} deg more flexed at heel "
            "strike than at mid stance (expected > 5)"
        )
    ankle = curve[:, ANKLE, FLEX]
    drop = float(np.mean(phase_window(ankle, 0.62, 0.72)) - np.mean(phase_window(ankle, 0.4, 0.5)))
    if np.isfinite(drop) and drop > 0.0:
        raise TrialProblem(
            f"[I] ankle dorsiflexion is positive: {side} ankle rises by {drop:.0f} deg after "
            "toe off (it plantarflexes)"
        )


def _moment_factor(sides: list[_Side], options: GreggLabOptions, notes: list[str]) -> float:
    """Multiplier to N·m/kg, decided by magnitude (checked against the catalogue's units)."""
    curves = [s.kinetics[..., FLEX] for s in sides if s.kinetics is not None]
    if not curves:
        return 1.0
    sagittal = np.abs(np.concatenate(curves))  # (N, P, 3)
    finite = np.isfinite(sagittal).any(axis=(1, 2))
    if not finite.any():
        return 1.0
    peak = float(np.median(np.nanmax(sagittal[finite], axis=(1, 2))))
    lo, hi = _MOMENT_PEAK_RANGE
    bands = dict.fromkeys(_MOMENT_UNITS, _MOMENT_PEAK_RANGE)
    decided = moment_units_by_magnitude(peak, bands, per_kg=True)
    if decided is None:
        raise TrialProblem(
            f"moment units: the median stride's largest |sagittal moment| is {peak:.3g}; "
            f"neither N.m/kg ({lo}-{hi}) nor N.mm/kg ({lo * 1000:g}-{hi * 1000:g}) fits"
        )
    declared = options.kinetics.units if options.kinetics else None
    if declared is not None and declared != decided:
        raise TrialProblem(
            f"moment units: the catalogue says {declared}, magnitudes say {decided} "
            f"(median stride peak {peak:.3g})"
        )
    notes.append(f"moments read as {decided} (median stride peak {peak:.3g})")
    return moment_factor(decided)


def _check_ankle_moment(kinetics: np.ndarray, side: Side) -> None:
    """The internal ankle moment in mid and late stance is plantarflexor (negative)."""
    curve = median_stride(kinetics)
    if curve is None:
        return
    stance = float(np.mean(phase_window(curve[:, ANKLE, FLEX], 0.3, 0.55)))
    if np.isfinite(stance) and stance > -0.2:
        raise TrialProblem(
            f"[I] moments have Plug-in Gait signs (plantarflexor positive, flipped by the "
            f"catalogue's sign): {side} internal ankle moment averages {stance:+.2f} N.m/kg over "
            "30-55 % of the cycle, expected the plantarflexor moment (< -0.2)"
        )


def _check_envelope(values: Iterable[np.ndarray], muscle: str, side: Side) -> None:
    for a in values:
        with _trial_check():
            check_envelope_undershoot(
                a,
                "",
                assumption=f"[C] EMG is a processed (non-negative) envelope: {side} {muscle} "
                "swings negative, as raw EMG would",
                max_undershoot=_ENVELOPE_UNDERSHOOT,
            )


# --- names and descriptions -------------------------------------------------------------------


_NUMBER = re.compile(r"^\d+(?:x\d+)?$")


def token_value(token: str) -> float:
    """'7x5' -> 7.5 (the Gregg lab writes the decimal point as 'x')."""
    if not _NUMBER.match(token):
        raise ValueError(f"not a number token: {token!r}")
    return float(token.replace("x", "."))


def described(names: list[Any], values: list[Any]) -> dict[str, float]:
    """{'speed': v, 'incline': deg} from a {name, value} cell; positions when unnamed."""
    out: dict[str, float] = {}
    for name, value in zip(names, values, strict=False):
        key = str(name).strip().lower()
        for wanted in ("speed", "incline"):
            if wanted in key and isinstance(value, int | float | np.number):
                out[wanted] = float(value)
    if (
        not out
        and len(values) >= 2
        and all(isinstance(v, int | float | np.number) for v in values[:2])
    ):
        out = {"speed": float(values[0]), "incline": float(values[1])}  # as public readers do
    return out

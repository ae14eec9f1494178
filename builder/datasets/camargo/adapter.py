"""Camargo et al. 2021 (J Biomech 119:110320): lower-limb biomechanics on level ground, ramps,
stairs and a treadmill, with raw EMG, OpenSim inverse kinematics and dynamics, and gait phase.

Layout (one trial-table row per EMG file; every other sensor folder holds a file of the same
stem)::

    <root>/SubjectInfo.mat                                   body mass per subject
    <root>/ABxx/<MM_DD_YY>/<mode>/emg/<mode>_<cond>_<rep>.mat   the row's file
                                /ik/  /id/  /gcLeft/  /gcRight/  /conditions/  <same stem>.mat

Every file is a MATLAB ``table`` (MCOS; scipy sees only ``__function_workspace__``) in the
variable ``data``, read with mat-io (:func:`builder.formats.matlab.load_mat`); the ``Header``
column is the time in seconds. A subject may have several date folders: the catalogue pattern
matches all of them, and the date is kept in the ``trial`` column (``<date>/<stem>``) so that
two sessions never look like one trial.

What the adapter converts, and the assumptions it checks on the data (SourceError otherwise):

- EMG: the right leg only, 11 columns at 1 kHz (rate from ``Header``); the catalogue maps 9 of
  them to canonical slots (gracilis and the right external oblique are not used). Left-leg
  strides carry kinematics and kinetics with an all-absent EMG mask. Every time column must
  be uniformly sampled, and the EMG and ik ``Header`` must be one clock (they must overlap).
- ik: OpenSim coordinates in degrees (flexion, adduction, internal rotation and dorsiflexion
  positive). The knee must show swing flexion as a positive peak (gait2392-style models have
  the knee flexion-negative): the peak after the catalogue's sign must be > +20° and larger
  than the deepest negative value, else the file is refused. Still [I] for Camargo's model;
  both real OpenSim outputs in ../shared/data/real (Moghadam P11/16 .mot, ExperimentalData.mat)
  are flexion-negative, and their moments follow the coordinate (knee extensor positive), so a
  refused file needs the knee sign flipped in kinematics AND kinetics.
- id: ``<coordinate>_moment`` in N·m, divided here by the body mass of ``SubjectInfo.mat``
  (variable ``data``: a table with a ``Subject`` column, e.g. 'AB06', and a ``Weight`` column
  in kg; a struct of equal-length fields works too; names are catalogue options). OpenSim
  generalised forces are internal moments with the coordinate's sign; LocoHub flips them
  (×−1). Checked on walking / ascending strides: the internal hip moment must be extensor
  (negative) in loading response (0–12 % of the stride) and the ankle moment plantarflexor
  (negative) in 30–55 %; the peak must look like N·m/kg after the division (0.2–10). The
  ankle moment is read from ``ankle_angle_<side>_moment`` (the foundation never filled it).
- gcLeft / gcRight: ``Header`` + ``HeelStrike`` (and ``ToeOff``) as 0–100 % phase ramps.
  A heel strike is where the ramp wraps (100 → 0) or where it starts rising from a flat 0 (a
  leg at rest); its time is extrapolated along the ramp between samples. Tables without
  ``Header`` whose ``HeelStrike`` column is strictly increasing are read as event times (s).
- conditions: ``labels`` = a table of ``Header`` + ``Label`` (one label per sample) or of
  ``Start`` / ``End`` / ``Label`` intervals. Labels are activity tokens ('walk', 'rampascent',
  'stairdescent', 'idle', …, mapped by the catalogue's ``activity_map``); a label joining two
  tokens ('walk-rampascent') is a transition. Each stride takes the one label it lies in, or
  ``transition`` when it spans several or a transition label. Treadmill trials have ``speed``
  (``Header`` + ``Speed`` in m/s): a stride's speed is the belt's mean over it, to 0.01 m/s.
  Ramp trials give the incline (``rampIncline``, degrees; else the catalogue's code for the
  trial name's level), stair trials the step height (``stairHeight``, inches). Ramp and stair
  trials without labels are refused (ascent cannot be told from descent without guessing).

One :class:`TrialRecording` per (activity, speed, incline) found in the trial; each holds one
:class:`SideRecording` per run of consecutive strides of a leg, cut to the run (± 0.5 s).
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from typing import Any

import fsspec
import numpy as np
import pandas as pd
from pydantic import Field, ValidationError, model_validator

from builder.conventions import ACTIVITIES, Side, angle_factor, emg_factor, moment_factor
from builder.datasets.base import AdapterOptions, SourceAdapter
from builder.datasets.mapping import joint_array, muscle_matrix
from builder.datasets.options import DatasetOptions, JointMap, per_side
from builder.datasets.segments import crop
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.formats.matlab import load_mat
from builder.formats.tables import sibling_url, url_exists
from builder.processing.checks import check_body_mass, check_knee_flexion_percentiles
from builder.processing.strides import stride_windows, time_normalise
from builder.records import SideRecording, TimeSeries, TrialRecording, TrialSpec

# A ramp wrap is a drop of more than this many percent between two samples.
_WRAP_DROP_PCT = 50.0
# A new cycle starts from below this phase (percent).
_CYCLE_START_PCT = 5.0
# Seconds kept on either side of a run of strides (EMG filters settle outside the strides).
_RUN_PAD_S = 0.5
# Activities whose strides show the walking moment pattern the sign check relies on.
_SIGN_CHECK_ACTIVITIES = ("walk", "ramp_ascent", "stair_ascent")
_TRANSITION = "transition"


class ConditionsLayout(AdapterOptions):
    """Where a trial's activity labels, belt speed, ramp incline and stair height live."""

    labels: str = "labels"  # variable: Header + Label per sample, or Start/End/Label
    label_column: str = "Label"
    interval_columns: tuple[str, str] = ("Start", "End")
    speed: str = "speed"  # variable: Header + Speed (m/s), treadmill trials
    speed_column: str = "Speed"
    incline: str = "rampIncline"  # scalar, degrees
    stair_height: str = "stairHeight"  # scalar, inches
    transition_separator: str = "-"
    required_for: list[str] = Field(default_factory=lambda: ["ramp", "stair"])


class CamargoLayout(AdapterOptions):
    format: str = "mat-table"
    per_file: str = "trial"
    inside: str | None = None
    variable: str = "data"  # the table variable of every sensor file
    time_column: str = "Header"
    # Sibling files of the matched EMG file ({trial} = its stem), relative to its folder.
    siblings: dict[str, str] = Field(
        default_factory=lambda: {
            "ik": "../ik/{trial}.mat",
            "id": "../id/{trial}.mat",
            "gcLeft": "../gcLeft/{trial}.mat",
            "gcRight": "../gcRight/{trial}.mat",
            "conditions": "../conditions/{trial}.mat",
        }
    )
    activity_from: str = "path"
    conditions: ConditionsLayout = Field(default_factory=ConditionsLayout)
    incline_codes: dict[str, float] = Field(default_factory=dict)  # ramp level -> degrees
    stair_height_codes: dict[str, float] = Field(default_factory=dict)  # stair level -> inches


class BodyMass(AdapterOptions):
    """The subject file: relative to the folder that holds the subject folders."""

    file: str = "SubjectInfo.mat"
    variable: str = "data"
    subject_column: str = "Subject"
    mass_column: str = "Weight"
    units: str = "kg"


class CamargoEvents(AdapterOptions):
    kind: str = "phase_ramp"
    files: dict[Side, str] = Field(default_factory=per_side("gcLeft", "gcRight"))
    time_column: str = "Header"
    heel_strike: str = "HeelStrike"
    toe_off: str = "ToeOff"


class CamargoOptions(DatasetOptions):
    layout: CamargoLayout = Field(default_factory=CamargoLayout)
    events: CamargoEvents = Field(default_factory=CamargoEvents)

    @model_validator(mode="after")
    def _consistent(self) -> CamargoOptions:
        needed = {"ik", *self.events.files.values()} | ({"id"} if self.kinetics else set())
        if missing := sorted(needed - set(self.layout.siblings)):
            raise ValueError(f"layout.siblings lacks {missing} (needed by ik/id/events.files)")
        if self.kinetics is not None:
            BodyMass.model_validate(self.kinetics.body_mass or {})
        return self


# --- paths and files --------------------------------------------------------------------


@dataclass(frozen=True)
class _TrialPaths:
    emg: str
    siblings: dict[str, str]
    root: str  # the folder holding the subject folders
    mode: str  # levelground | ramp | stair | treadmill (the mode folder)
    date: str
    stem: str


def _within(folder: str, relative: str) -> str:
    """``relative`` resolved against the folder URL ``folder``."""
    protocol, path = fsspec.core.split_protocol(folder)
    return _with_protocol(protocol, posixpath.join(path, relative))


def _with_protocol(protocol: str | None, path: str) -> str:
    path = posixpath.normpath(path)
    return path if protocol in (None, "file", "local") else f"{protocol}://{path}"


def _paths(url: str, layout: CamargoLayout) -> _TrialPaths:
    _, path = fsspec.core.split_protocol(url)
    parts = path.rstrip("/").split("/")
    if len(parts) < 6:
        raise SourceError(url, "expected <subject>/<date>/<mode>/emg/<trial>.mat")
    stem = posixpath.splitext(parts[-1])[0]
    siblings = {
        key: sibling_url(url, rel.format(trial=stem)) for key, rel in layout.siblings.items()
    }
    return _TrialPaths(
        emg=url,
        siblings=siblings,
        root=sibling_url(url, "../../../.."),
        mode=parts[-3],
        date=parts[-4],
        stem=stem,
    )


def _variables(files: FileAccess, url: str) -> dict[str, Any]:
    return load_mat(files.local_path(url), url)


def _table(files: FileAccess, url: str, variable: str, what: str) -> pd.DataFrame:
    found = _variables(files, url)
    table = found.get(variable)
    if not isinstance(table, pd.DataFrame):
        have = sorted(found) or "nothing"
        raise SourceError(url, f"{what}: no MATLAB table in variable {variable!r} (found {have})")
    return table


# --- time bases -------------------------------------------------------------------------


def _time_base(
    table: pd.DataFrame, column: str, url: str, what: str, nominal_hz: float | None
) -> tuple[float, float, list[str]]:
    """(rate, start) of a table's time column, checked to be uniform; and notes."""
    if column not in table.columns:
        raise SourceError(url, f"{what}: no time column {column!r} (columns {list(table)[:8]})")
    time = np.asarray(table[column], dtype=np.float64)
    if time.size < 2 or not np.isfinite(time).all():
        raise SourceError(url, f"{what}: the {column} time column is too short or has NaN")
    steps = np.diff(time)
    step = float(np.median(steps))
    if not step > 0 or np.max(np.abs(steps - step)) > 0.01 * step:
        raise SourceError(
            url,
            f"{what}: {column} is not uniformly sampled (steps {steps.min():.6g}–"
            f"{steps.max():.6g} s)",
        )
    rate = 1.0 / step
    notes = []
    if nominal_hz is not None and abs(rate - nominal_hz) > 0.01 * nominal_hz:
        notes.append(f"{what}: {rate:.6g} Hz from {column} (catalogue says {nominal_hz:g} Hz)")
    return rate, float(time[0]), notes


# --- subject mass -----------------------------------------------------------------------


@lru_cache(maxsize=8)
def _subject_masses(
    local: str, stamp: tuple[int, int], url: str, options: BodyMass
) -> dict[str, float]:
    """{subject: mass in kg}; ``stamp`` (mtime, size) keeps the cache honest."""
    found = load_mat(local, url)
    data = found.get(options.variable)
    if isinstance(data, dict):
        try:
            data = pd.DataFrame({k: np.atleast_1d(v) for k, v in data.items()})
        except ValueError:
            data = None
    if not isinstance(data, pd.DataFrame):
        raise SourceError(url, f"no table or struct {options.variable!r} of subjects")
    columns = {str(c).casefold(): c for c in data.columns}
    missing = [
        c for c in (options.subject_column, options.mass_column) if c.casefold() not in columns
    ]
    if missing:
        raise SourceError(url, f"no column(s) {missing} (columns {list(data.columns)})")
    subjects = data[columns[options.subject_column.casefold()]]
    masses = pd.to_numeric(data[columns[options.mass_column.casefold()]], errors="coerce")
    factor = {"kg": 1.0, "g": 1e-3, "lb": 0.45359237}.get(options.units.casefold())
    if factor is None:
        raise SourceError(url, f"unknown mass units {options.units!r} (kg, g, lb)")
    return {
        str(s).strip().casefold(): float(m) * factor
        for s, m in zip(subjects, masses, strict=True)
        if np.isfinite(m)
    }


def _body_mass(files: FileAccess, paths: _TrialPaths, subject: str, options: BodyMass) -> float:
    url = _within(paths.root, options.file)
    local = files.local_path(url)
    info = os.stat(local)
    masses = _subject_masses(local, (info.st_mtime_ns, info.st_size), url, options)
    mass = masses.get(subject.strip().casefold())
    if mass is None:
        raise SourceError(url, f"no body mass for subject {subject!r} (moments are in N·m)")
    return check_body_mass(
        mass,
        url,
        assumption=f"body mass of {subject} from {options.mass_column} in {options.units}: not "
        "a mass in kg (check kinetics.body_mass.mass_column / units)",
    )


# --- events -----------------------------------------------------------------------------


def _ramp_starts(time: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Times where a 0–100 % phase ramp starts a new cycle, between samples.

    A cycle starts where the ramp wraps (drops by more than half a cycle) or where it leaves
    a flat zero (a leg that was at rest). The time is extrapolated along the ramp: forward to
    100 % over the ending cycle's last two samples, or back to 0 % over the new cycle's first
    two rising samples.
    """
    t = np.asarray(time, dtype=np.float64)
    p = np.asarray(phase, dtype=np.float64)
    n = p.size
    if n < 3:
        return np.empty(0)
    with np.errstate(invalid="ignore"):
        wrap = np.flatnonzero(p[1:] < p[:-1] - _WRAP_DROP_PCT) + 1
        flat = p[1:-1] == p[:-2]
        rise = np.flatnonzero(flat & (p[1:-1] <= _CYCLE_START_PCT) & (p[2:] > p[1:-1])) + 1

    def rising(i: int, j: int) -> bool:
        return 0 <= i < j < n and bool(p[j] > p[i])  # NaN compares False

    events = []
    for k in wrap.tolist():
        if rising(k - 2, k - 1):  # forward along the ending cycle to 100 %
            slope = (p[k - 1] - p[k - 2]) / (t[k - 1] - t[k - 2])
            events.append(min(t[k - 1] + (100.0 - p[k - 1]) / slope, t[k]))
        elif rising(k, k + 1):  # back along the new cycle to 0 %
            slope = (p[k + 1] - p[k]) / (t[k + 1] - t[k])
            events.append(max(t[k] - p[k] / slope, t[k - 1]))
        else:
            events.append(t[k])
    for k in rise.tolist():
        if rising(k + 1, k + 2):
            slope = (p[k + 2] - p[k + 1]) / (t[k + 2] - t[k + 1])
            events.append(min(max(t[k + 1] - p[k + 1] / slope, t[k]), t[k + 1]))
        else:
            events.append(t[k])
    return np.sort(np.asarray(events, dtype=np.float64))


def _events(
    gc: dict[str, Any], options: CamargoEvents, url: str, time_range: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, str]:
    """(heel strikes, toe offs, how they were stored) from one gc table or struct."""
    data = gc
    if isinstance(gc, pd.DataFrame):
        data = {c: gc[c].to_numpy() for c in gc.columns}
    if not isinstance(data, dict) or options.heel_strike not in data:
        have = list(data)[:8] if isinstance(data, dict) else type(data).__name__
        raise SourceError(url, f"gait events: no {options.heel_strike!r} (found {have})")
    heel = np.atleast_1d(np.asarray(data[options.heel_strike], dtype=np.float64))
    toe = data.get(options.toe_off)
    toe = None if toe is None else np.atleast_1d(np.asarray(toe, dtype=np.float64))
    time = data.get(options.time_column)
    if time is not None and np.size(time) == heel.size:
        finite = heel[np.isfinite(heel)]
        if finite.size and (finite.min() < -1e-6 or finite.max() > 100.0 + 1e-6):
            raise SourceError(
                url,
                f"gait events: {options.heel_strike} beside {options.time_column} should be a "
                f"0–100 % phase ramp, found values {finite.min():.4g}–{finite.max():.4g}",
            )
        time = np.asarray(time, dtype=np.float64)
        strikes = _ramp_starts(time, heel)
        offs = _ramp_starts(time, toe) if toe is not None and toe.size == time.size else None
        return strikes, (np.empty(0) if offs is None else offs), "phase ramp"
    # An event list: times in seconds, strictly increasing (NaN padding allowed).
    strikes = heel[np.isfinite(heel)]
    if strikes.size and not (np.diff(strikes) > 0).all():
        raise SourceError(
            url,
            f"gait events: {options.heel_strike} is neither a phase ramp beside "
            f"{options.time_column} nor an increasing list of event times",
        )
    low, high = time_range
    if strikes.size and (strikes.min() < low - 1.0 or strikes.max() > high + 1.0):
        raise SourceError(
            url,
            f"gait events: event times {strikes.min():.3f}–{strikes.max():.3f} s lie outside "
            f"the recording ({low:.3f}–{high:.3f} s): not seconds in the trial's time base?",
        )
    offs = np.empty(0) if toe is None else np.sort(toe[np.isfinite(toe)])
    return strikes, offs, "event list"


# --- conditions -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Labels:
    """Activity label intervals [start, end) of one trial."""

    starts: np.ndarray
    ends: np.ndarray
    labels: tuple[str, ...]

    def over(self, start: float, end: float) -> set[str]:
        hit = (self.starts < end) & (self.ends > start)
        return {self.labels[i] for i in np.flatnonzero(hit)}


def _labels(value: Any, layout: ConditionsLayout, time_column: str, url: str) -> _Labels:
    if not isinstance(value, pd.DataFrame):
        raise SourceError(url, f"conditions: {layout.labels!r} is not a table")
    if layout.label_column not in value.columns:
        raise SourceError(
            url, f"conditions: no {layout.label_column!r} column (columns {list(value.columns)})"
        )
    labels = [str(v).strip() for v in value[layout.label_column]]
    first, last = layout.interval_columns
    if first in value.columns and last in value.columns:
        starts = np.asarray(value[first], dtype=np.float64)
        ends = np.asarray(value[last], dtype=np.float64)
        if not (ends >= starts).all():
            raise SourceError(
                url, f"conditions: an interval ends before it starts ({first}/{last})"
            )
        return _Labels(starts, ends, tuple(labels))
    if time_column not in value.columns:
        raise SourceError(
            url,
            f"conditions: labels need {time_column!r} (one per sample) or {first!r}/{last!r} "
            f"intervals (columns {list(value.columns)})",
        )
    time = np.asarray(value[time_column], dtype=np.float64)
    if time.size == 0:
        return _Labels(np.empty(0), np.empty(0), ())
    # Runs of equal labels become intervals; a sample's label holds until the next sample.
    step = float(np.median(np.diff(time))) if time.size > 1 else 0.0
    change = np.flatnonzero([a != b for a, b in pairwise(labels)]) + 1
    begin = np.concatenate([[0], change]).astype(int)
    ends = np.append(time[begin[1:]], time[-1] + step)
    return _Labels(time[begin], ends, tuple(labels[i] for i in begin))


def _scalar(value: Any) -> float | None:
    try:
        array = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return None
    return float(array[0]) if array.size == 1 and np.isfinite(array[0]) else None


@dataclass(frozen=True)
class _Conditions:
    labels: _Labels | None
    speed: tuple[np.ndarray, np.ndarray] | None  # (time, m/s)
    incline_deg: float | None
    stair_height_in: float | None


def _conditions(
    files: FileAccess, paths: _TrialPaths, options: CamargoOptions, notes: list[str]
) -> _Conditions:
    layout = options.layout.conditions
    url = paths.siblings.get("conditions")
    required = paths.mode in layout.required_for
    if url is None or not url_exists(files, url):
        if required:
            raise SourceError(
                paths.emg,
                f"{paths.mode} trials mix activities and need their conditions file "
                f"({url or 'no conditions sibling in the catalogue'})",
            )
        notes.append("no conditions file: every stride takes the mode folder's activity")
        return _Conditions(None, None, None, None)
    found = _variables(files, url)
    labels = None
    if layout.labels in found:
        labels = _labels(found[layout.labels], layout, options.layout.time_column, url)
    elif required:
        raise SourceError(
            url,
            f"{paths.mode} trial without activity labels ({layout.labels!r}; found "
            f"{sorted(found)}): ascent cannot be told from descent",
        )
    speed = None
    if isinstance(table := found.get(layout.speed), pd.DataFrame):
        column = options.layout.time_column
        if column not in table.columns or layout.speed_column not in table.columns:
            raise SourceError(
                url, f"conditions: {layout.speed!r} needs {column!r} and {layout.speed_column!r}"
            )
        speed = (
            np.asarray(table[column], dtype=np.float64),
            np.asarray(table[layout.speed_column], dtype=np.float64),
        )
    return _Conditions(
        labels,
        speed,
        _scalar(found.get(layout.incline)),
        _scalar(found.get(layout.stair_height)),
    )


def _level_code(stem: str) -> str | None:
    """The level token of ``ramp_<level>_<leg>_…`` / ``stair_<level>_<leg>_…`` names."""
    parts = stem.lower().split("_")
    return parts[1] if len(parts) > 2 else None


# --- joints -----------------------------------------------------------------------------


def _joints(
    table: pd.DataFrame,
    joint_map: JointMap,
    side: Side,
    factor: float,
    url: str,
    what: str,
    notes: list[str],
) -> np.ndarray:
    wanted = joint_map.component_columns(side)
    present = {key: col for key, col in wanted.items() if str(col) in table.columns}
    if not present:
        raise SourceError(
            url,
            f"{what}: none of the {side} columns {sorted(map(str, wanted.values()))} "
            f"(columns {list(table.columns)[:10]}…)",
        )
    if missing := sorted(str(c) for k, c in wanted.items() if k not in present):
        notes.append(f"{what}: no column(s) {', '.join(missing)} (absent)")
    columns = {key: np.asarray(table[str(col)], dtype=np.float64) for key, col in present.items()}
    return joint_array(columns, (len(table),), signs=joint_map.sign, factor=factor)


def _check_same_clock(sides: dict[Side, _SideData], url: str) -> None:
    """EMG (1 kHz) and ik (200 Hz) must share the trial's clock (their Header columns)."""
    for data in sides.values():
        if data.emg is None:
            continue
        emg, ik = data.emg, data.kinematics
        overlap = min(emg.end_s, ik.end_s) - max(emg.start_s, ik.start_s)
        if overlap < 0.5 * min(emg.end_s - emg.start_s, ik.end_s - ik.start_s):
            raise SourceError(
                url,
                f"EMG {emg.start_s:.3f}–{emg.end_s:.3f} s and ik {ik.start_s:.3f}–"
                f"{ik.end_s:.3f} s barely overlap: the Header columns are not one clock",
            )


def _check_moments(
    kinetics: dict[Side, TimeSeries],
    strides: dict[Side, list[tuple[float, float, str]]],
    activity_map: dict[str, str],
    url: str,
    notes: list[str],
) -> None:
    """Internal-moment signs and N·m/kg magnitudes, on walking-like strides."""
    hip, ankle, peaks = [], [], []
    for side, series in kinetics.items():
        chosen = [
            (s, e)
            for s, e, token in strides[side]
            if activity_map.get(token, token) in _SIGN_CHECK_ACTIVITIES
        ]
        if not chosen:
            continue
        starts, ends = np.array(chosen).T
        curves = time_normalise(series, starts, ends, 101)  # (N, 101, 3, 3)
        hip.append(np.nanmean(curves[:, 0:13, 0, 2], axis=1))
        ankle.append(np.nanmean(curves[:, 30:56, 2, 2], axis=1))
        peaks.append(np.nanmax(np.abs(curves[:, :, :, 2]), axis=(1, 2)))
    hip_all = np.concatenate(hip) if hip else np.empty(0)
    ankle_all = np.concatenate(ankle) if ankle else np.empty(0)
    peak_all = np.concatenate(peaks) if peaks else np.empty(0)
    hip_all, ankle_all = hip_all[np.isfinite(hip_all)], ankle_all[np.isfinite(ankle_all)]
    peak_all = peak_all[np.isfinite(peak_all)]
    if not (hip_all.size and ankle_all.size):
        notes.append("moment signs not checked: no walking or ascending stride with moments")
        return
    peak = float(np.median(peak_all))
    if peak > 10.0 or peak < 0.2:
        raise SourceError(
            url,
            f"sagittal moments peak at {peak:.3g} N·m/kg per stride after dividing by the body "
            "mass: the id units are not N·m (check kinetics.units and SubjectInfo.mat)",
        )
    hip_mean, ankle_mean = float(np.median(hip_all)), float(np.median(ankle_all))
    if hip_mean > 0:
        raise SourceError(
            url,
            f"the internal hip moment is flexor in loading response ({hip_mean:+.2f} N·m/kg; "
            "walking needs an extensor, negative moment): the id moments look external "
            "(sign flipped, as LocoHub's ×−1) — set kinetics.sign if so",
        )
    if ankle_mean > 0:
        raise SourceError(
            url,
            f"the internal ankle moment is dorsiflexor in mid/late stance ({ankle_mean:+.2f} "
            "N·m/kg; walking needs a plantarflexor, negative moment): the id moment signs are "
            "not internal with dorsiflexion positive",
        )


# --- recordings -------------------------------------------------------------------------


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and value != value


@dataclass
class _SideData:
    side: Side
    emg: TimeSeries | None
    kinematics: TimeSeries
    kinetics: TimeSeries | None
    heel_strikes: np.ndarray
    toe_offs: np.ndarray


def _stride_token(
    labels: _Labels | None,
    start: float,
    end: float,
    default: str,
    layout: ConditionsLayout,
    activity_map: dict[str, str],
    url: str,
) -> str:
    if labels is None:
        return default
    found = labels.over(start, end)
    for label in found:
        for part in label.split(layout.transition_separator):
            if part not in activity_map and part not in ACTIVITIES:
                raise SourceError(
                    url,
                    f"conditions: activity label {part!r} (in {label!r}) is not in the "
                    "catalogue's metadata.activity_map",
                )
    if len(found) == 1:
        (label,) = found
        return _TRANSITION if layout.transition_separator in label else label
    return _TRANSITION if found else default


class CamargoAdapter(SourceAdapter[CamargoOptions]):
    name = "camargo"
    options_model = CamargoOptions
    emg_kinds = frozenset({"raw"})

    def read(
        self, spec: TrialSpec, options: CamargoOptions, files: FileAccess
    ) -> list[TrialRecording]:
        angle_map = options.kinematics
        if angle_map is None:
            raise SourceError(spec.url, "the catalogue entry has no kinematics map")
        paths = _paths(spec.url, options.layout)
        notes: list[str] = []
        layout = options.layout

        emg_table = None
        if options.emg is not None and any(options.emg.names(s) for s in options.sides):
            emg_table = _table(files, paths.emg, layout.variable, "emg")
        ik = _table(files, paths.siblings["ik"], layout.variable, "ik")
        ik_rate, ik_start, rate_notes = _time_base(
            ik, layout.time_column, paths.siblings["ik"], "ik", options.rates.kinematics_hz
        )
        notes += rate_notes
        angle = angle_factor(angle_map.units or "deg")
        kinetic_tables = self._kinetics(files, paths, options, spec, notes)

        sides: dict[Side, _SideData] = {}
        for side in options.sides:
            angles = _joints(ik, angle_map, side, angle, paths.siblings["ik"], "ik", notes)
            kinetics = None
            # (kinetic tables are read only where the entry has a kinetics map)
            if kinetic_tables is not None and options.kinetics is not None:
                table, rate, start, factor = kinetic_tables
                moments = _joints(
                    table, options.kinetics, side, factor, paths.siblings["id"], "id", notes
                )
                kinetics = TimeSeries(moments, rate, start, "N.m/kg")
            gc_url = paths.siblings[options.events.files[side]]
            gc = _variables(files, gc_url).get(layout.variable)
            if gc is None:
                raise SourceError(gc_url, f"gait events: no variable {layout.variable!r}")
            time_range = (ik_start, ik_start + (len(ik) - 1) / ik_rate)
            strikes, offs, _ = _events(gc, options.events, gc_url, time_range)
            sides[side] = _SideData(
                side,
                self._emg(emg_table, paths, options, side, notes),
                TimeSeries(angles, ik_rate, ik_start, "deg"),
                kinetics,
                strikes,
                offs,
            )
        check_knee_flexion_percentiles(
            np.concatenate([s.kinematics.data for s in sides.values()]),
            paths.siblings["ik"],
            assumption="knee_angle does not look flexion-positive (swing flexion should peak "
            "near +60°): if this model counts flexion negative, set knee.flexion: -1 in BOTH "
            "kinematics.sign and kinetics.sign (a generalised force follows its coordinate)",
            min_peak_deg=20.0,
        )
        _check_same_clock(sides, paths.emg)

        conditions = _conditions(files, paths, options, notes)
        mode_token = paths.mode
        strides: dict[Side, list[tuple[float, float, str]]] = {}
        for side, data in sides.items():
            starts, ends, rejected = stride_windows(data.heel_strikes)
            if rejected:
                notes.append(f"{side}: {rejected} gait cycle(s) outside the plausible duration")
            strides[side] = [
                (
                    s,
                    e,
                    _stride_token(
                        conditions.labels,
                        s,
                        e,
                        mode_token,
                        layout.conditions,
                        spec.activity_map,
                        paths.siblings.get("conditions", spec.url),
                    ),
                )
                for s, e in zip(starts, ends, strict=True)
            ]
        if kinetic_tables is not None:
            _check_moments(
                {s: d.kinetics for s, d in sides.items() if d.kinetics is not None},
                strides,
                spec.activity_map,
                paths.siblings["id"],
                notes,
            )
        return self._recordings(spec, options, paths, sides, strides, conditions, notes)

    # --- streams ------------------------------------------------------------------------

    def _emg(
        self,
        table: pd.DataFrame | None,
        paths: _TrialPaths,
        options: CamargoOptions,
        side: Side,
        notes: list[str],
    ) -> TimeSeries | None:
        """(T, 13) volts of one leg; None for a leg the catalogue maps no channel of."""
        names = options.emg.names(side) if options.emg is not None else {}
        if table is None or not names:
            return None
        assert options.emg is not None
        rate, start, rate_notes = _time_base(
            table, options.layout.time_column, paths.emg, "emg", options.rates.emg_hz
        )
        notes += rate_notes
        columns: dict[str, np.ndarray | list[np.ndarray]] = {}
        for muscle, sources in names.items():
            present = [n for n in sources if n in table.columns]
            if len(present) < len(sources):  # a merge needs every member, never a subset
                notes.append(f"EMG: no column {', '.join(sorted(set(sources) - set(present)))}")
                continue
            values = [table[n].to_numpy(np.float64) for n in present]
            columns[muscle] = values[0] if len(values) == 1 else values
        if not columns:
            raise SourceError(
                paths.emg,
                f"none of the {side} EMG columns {sorted(n for v in names.values() for n in v)} "
                f"(columns {list(table.columns)})",
            )
        known = {n for s in options.sides for v in options.emg.names(s).values() for n in v}
        known |= set(options.emg.unused) | {options.layout.time_column}
        if extra := sorted(set(map(str, table.columns)) - known):
            notes.append(f"EMG columns not mapped: {', '.join(extra)}")
        unit = options.emg.units
        if unit is None:
            notes.append("EMG units not documented: read as volts (amplitude is normalised)")
        data = muscle_matrix(columns, (len(table),)) * emg_factor(unit or "V")
        return TimeSeries(data, rate, start, "V")

    def _kinetics(
        self,
        files: FileAccess,
        paths: _TrialPaths,
        options: CamargoOptions,
        spec: TrialSpec,
        notes: list[str],
    ) -> tuple[pd.DataFrame, float, float, float] | None:
        if options.kinetics is None:
            return None
        url = paths.siblings["id"]
        table = _table(files, url, options.layout.variable, "id")
        rate, start, rate_notes = _time_base(
            table, options.layout.time_column, url, "id", options.rates.kinetics_hz
        )
        notes += rate_notes
        unit = options.kinetics.units or "N.m"
        mass = None
        if "/kg" not in unit.replace(" ", "").lower():
            try:
                mass_options = BodyMass.model_validate(options.kinetics.body_mass or {})
            except ValidationError as error:
                raise SourceError(url, f"kinetics.body_mass: {error.errors()[0]['msg']}") from None
            mass = _body_mass(files, paths, spec.subject, mass_options)
        try:
            factor = moment_factor(unit, mass)
        except ValueError as error:
            raise SourceError(url, f"joint moments: {error}") from None
        return table, rate, start, factor

    # --- recordings ---------------------------------------------------------------------

    def _recordings(
        self,
        spec: TrialSpec,
        options: CamargoOptions,
        paths: _TrialPaths,
        sides: dict[Side, _SideData],
        strides: dict[Side, list[tuple[float, float, str]]],
        conditions: _Conditions,
        notes: list[str],
    ) -> list[TrialRecording]:
        incline, condition = self._setting(options, paths, conditions, notes)
        # Strides of equal metadata in a row form one run (one SideRecording); runs of equal
        # metadata form one TrialRecording. Keys hold None for NaN, so that they compare.
        groups: dict[tuple, list[SideRecording]] = {}
        for side, data in sides.items():
            runs: list[tuple[tuple, list[tuple[float, float]]]] = []
            for start, end, token in strides[side]:
                meta = self._stride_meta(spec, token, start, end, incline, conditions)
                key = tuple(sorted((k, None if _isnan(v) else v) for k, v in meta.items()))
                if runs and runs[-1][0] == key and runs[-1][1][-1][1] == start:
                    runs[-1][1].append((start, end))
                else:
                    runs.append((key, [(start, end)]))
            for key, run in runs:
                first, last = run[0][0], run[-1][1]
                low, high = first - _RUN_PAD_S, last + _RUN_PAD_S
                toe = data.toe_offs[(data.toe_offs >= first) & (data.toe_offs <= last)]
                groups.setdefault(key, []).append(
                    SideRecording(
                        side=side,
                        emg=crop(data.emg, low, high),
                        kinematics=crop(data.kinematics, low, high),
                        kinetics=crop(data.kinetics, low, high),
                        heel_strikes_s=np.array([s for s, _ in run] + [last]),
                        toe_offs_s=toe,
                    )
                )
        if not groups:
            counts = ", ".join(f"{s}: {d.heel_strikes.size}" for s, d in sides.items())
            raise SourceError(spec.url, f"no complete stride (heel strikes per leg {counts})")
        trial = f"{paths.date}/{paths.stem}"
        recordings = []
        for i, (key, side_recordings) in enumerate(groups.items()):
            meta = {k: float("nan") if v is None else v for k, v in key}
            recordings.append(
                TrialRecording(
                    sides=tuple(side_recordings),
                    emg_kind=spec.emg_kind,
                    event_source="events",
                    notes=tuple(dict.fromkeys(notes)) if i == 0 else (),
                    meta=meta | {"trial": trial, "condition": condition},
                )
            )
        return recordings

    def _setting(
        self,
        options: CamargoOptions,
        paths: _TrialPaths,
        conditions: _Conditions,
        notes: list[str],
    ) -> tuple[float | None, str]:
        """The trial's ramp incline (degrees, unsigned) and its condition text."""
        layout = options.layout
        code = _level_code(paths.stem)
        if paths.mode == "ramp":
            incline = conditions.incline_deg
            if incline is None and code is not None:
                incline = layout.incline_codes.get(code)
            if incline is None:
                notes.append(
                    f"ramp incline unknown (no {layout.conditions.incline} in conditions, "
                    f"no incline code for level {code!r}): incline left NaN"
                )
                return float("nan"), "ramp"
            return abs(incline), f"ramp {abs(incline):g} deg"
        if paths.mode == "stair":
            height = conditions.stair_height_in
            if height is None and code is not None:
                height = layout.stair_height_codes.get(code)
            return None, "stairs" if height is None else f"stairs {height:g} in"
        if paths.mode == "levelground":
            words = paths.stem.lower().split("_")[1:3]
            return None, " ".join(["overground", *words]).strip()
        return None, paths.mode

    def _stride_meta(
        self,
        spec: TrialSpec,
        token: str,
        start: float,
        end: float,
        incline: float | None,
        conditions: _Conditions,
    ) -> dict[str, Any]:
        activity = spec.activity_map.get(token, token)
        meta: dict[str, Any] = {"activity": token}
        if conditions.speed is not None:
            time, speed = conditions.speed
            inside = (time >= start) & (time < end) & np.isfinite(speed)
            meta["speed_mps"] = (
                round(float(np.mean(speed[inside])), 2) if inside.any() else float("nan")
            )
        # Level walking is flat; a ramp stride has the trial's incline, signed by direction;
        # stairs, transitions and anything else have no single surface incline.
        if activity == "walk":
            meta["incline_deg"] = 0.0
        elif activity == "ramp_ascent" and incline is not None:
            meta["incline_deg"] = incline
        elif activity == "ramp_descent" and incline is not None:
            meta["incline_deg"] = -incline
        else:
            meta["incline_deg"] = float("nan")
        return meta

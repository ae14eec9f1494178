"""Moghadam, Yeung & Choisne 2023 (Sci Rep 13:5046): overground walking, raw EMG at 1000 Hz,
OpenSim joint angles (.mot) and moments (.sto) at 200 Hz, one file per trial and modality.

Layout of the public repository (``Surrogate_modelling_to_predict_gait_time_series``; older
commits ``Gait_Time_Series/<P>Data/``, newer ``Data/<P>Data/``), as read on a real trial
(``../shared/data/real/moghadam``, participant 11, trial 16) [F real files]:

- ``EMG/<trial>.csv``: comma-separated, a ``Time`` column (s) at 1000 Hz and 16 columns, 8
  muscles per leg named ``R``/``L`` + muscle (``RTibialisAnterior`` …). The column order
  differs between files, so channels are mapped by NAME only (compared ignoring case, ``_``,
  ``-``, ``.`` and spaces); a muscle whose column is missing is absent (NaN) with a note,
  and a file in which no column names a muscle is refused — never a positional guess. The
  signal is band-limited raw EMG (signed about a small offset, ~+0.05 in the real trial;
  spectrum 30-150 Hz), units not stated: ``emg_kind: raw``, the pipeline's chain filters it
  (its band-pass removes the offset). The full files start at t = 0 with ~19 ms of exact
  zeros (nothing recorded yet): leading and trailing rows of exact zeros are dropped, a
  channel of zeros only is absent (runs of identical samples inside a stride are the quality
  gate's ``constant_run`` check).
- ``Joints_Kinematics/<trial>.mot`` / ``Joints_Kinetics/<trial>.sto``: OpenSim storage files
  (header up to ``endheader``; ``nRows``/``nColumns`` checked against the table), 200 Hz,
  cut to the force-plate window (2.960–4.305 s in the real trial while its EMG runs from ~0):
  every stream keeps its own time base; strides outside any stream are dropped by the
  pipeline. Coordinates ``hip_flexion_r`` … in degrees (``inDegrees=yes``); generalised
  forces ``hip_flexion_r_moment`` … in N·m (OpenSim inverse dynamics, SI units).
- Signs: OpenSim's hip flexion/adduction/internal rotation and ankle dorsiflexion are
  positive on both legs (the model mirrors the left leg's axes), and inverse-dynamics
  generalised forces are internal moments about the same axes. ``knee_angle`` is
  flexion-NEGATIVE in these files (−73…−8° over the real trial; its moment is positive, i.e.
  extensor, in loading response): the catalogue's ``sign: {knee: -1}`` turns both to the
  canonical flexion-positive convention, checked on every trial (knee flexion peaks positive,
  the stance ankle moment is plantarflexor, i.e. negative).
- Body mass: no file of the repository gives it. Moments in N·m are divided by the
  catalogue's ``kinetics.body_mass: {subject: kg}``; a subject without one keeps no kinetics
  (a note says so) — never a guessed mass.

The files carry NO gait events, and the upstream segmentation (peaks of the foot IMUs'
vertical acceleration) is unreliable. Heel strikes are detected from the sagittal hip and knee
angles with :func:`builder.processing.gait_events.kinematic_heel_strikes` (in the real trial each
leg's is found within 7 ms of the moment the inverse-dynamics moments show the foot loaded). As
the kinematics cover only the force-plate window (~1.3 s in the real trial, about one stride),
a trial often holds no complete stride of either leg: it is then reported with that reason.
Inside the window a stride whose stance shows no plantarflexor moment (the foot missed the
plates, so inverse dynamics saw no ground reaction) gets no kinetics (``kinetics_valid_s``
covers only the loaded strides).
"""

from __future__ import annotations

import itertools
import posixpath
import re
from dataclasses import dataclass
from typing import Literal

import fsspec
import numpy as np
import pandas as pd
from pydantic import Field

from builder.conventions import (
    ANGLE_UNITS,
    JOINTS,
    MOMENT_UNITS,
    PLANES,
    Side,
    angle_factor,
    moment_factor,
)
from builder.datasets.base import AdapterOptions, SourceAdapter
from builder.datasets.mapping import joint_array, muscle_matrix
from builder.datasets.options import DatasetOptions, JointMap
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.formats.opensim import Storage, read_storage
from builder.formats.tables import read_table, sibling_url
from builder.processing.checks import (
    ANKLE_PEAK_BANDS,
    check_body_mass,
    check_emg_kind,
    check_knee_flexion_percentiles,
    check_plantarflexor_moment,
    moment_units_by_magnitude,
    robust_peak,
)
from builder.processing.gait_events import kinematic_heel_strikes
from builder.records import SideRecording, TimeSeries, TrialRecording, TrialSpec

_HIP, _KNEE, _ANKLE = (JOINTS.index(j) for j in ("hip", "knee", "ankle"))
_FLEX = PLANES.index("flexion")


class MoghadamLayout(AdapterOptions):
    format: str = "csv"
    per_file: Literal["trial"] = "trial"
    inside: str | None = None
    siblings: list[str] = Field(default_factory=list)
    activity_from: str = "path"


_DETECTORS: tuple[Literal["kinematics"], ...] = ("kinematics",)  # heel strikes from the angles


class MoghadamEvents(AdapterOptions):
    kind: Literal["none"] = "none"
    detect: list[Literal["kinematics"]] = Field(default_factory=lambda: list(_DETECTORS))
    imu: dict[str, str] = Field(default_factory=dict)  # documented, deliberately unused
    # A stride was on a force plate when its ankle moment peaks in stance (the first
    # ``stance_fraction`` of the cycle) at least ``loaded_ratio`` × its swing peak: without a
    # ground reaction inverse dynamics sees only the foot's inertia, as in swing. Unit-free.
    loaded_ratio: float = Field(default=3.0, gt=1)
    stance_fraction: float = Field(default=0.65, gt=0, lt=1)


class MoghadamOptions(DatasetOptions):
    layout: MoghadamLayout = Field(default_factory=MoghadamLayout)
    events: MoghadamEvents = Field(default_factory=MoghadamEvents)


_TIME_COLUMNS = ("Time", "time", "TIME")
# A uniformly sampled time column deviates from its median step by less than this fraction.
_TIME_JITTER = 0.02
# A declared rate and the time column's agree within this fraction.
_RATE_TOLERANCE = 0.02


class MoghadamAdapter(SourceAdapter[MoghadamOptions]):
    name = "moghadam"
    options_model = MoghadamOptions
    emg_kinds = frozenset({"raw"})

    def read(
        self, spec: TrialSpec, options: MoghadamOptions, files: FileAccess
    ) -> list[TrialRecording]:
        if options.emg is None or options.kinematics is None:
            raise SourceError(spec.url, "catalogue entry needs emg and kinematics maps")
        notes: list[str] = []
        emg, emg_notes = _read_emg(spec, files, options)
        notes.extend(emg_notes)

        kin_url, mom_url = _sibling_urls(spec, options, files)
        kinematics = _read_storage(files, kin_url)
        kin_time = _time_axis(kinematics.table, kin_url)
        kin_rate = _rate(kin_time, kin_url, options.rates.kinematics_hz, "kinematics")
        angle_unit = options.kinematics.units or "deg"
        if kinematics.in_degrees is not None:
            angle_unit = "deg" if kinematics.in_degrees else "rad"  # the header wins
        angles = {
            side: _joints(
                kinematics.table, options.kinematics, side, kin_url, angle_factor(angle_unit)
            )
            for side in options.sides
        }
        for side, values in angles.items():
            check_knee_flexion_percentiles(
                values,
                kin_url,
                assumption=f"[F real files] knee_angle flexion-negative (catalogue sign knee -1), "
                f"degrees ({side})",
            )

        heel_strikes = {
            side: kinematic_heel_strikes(
                angles[side][:, _HIP, _FLEX],
                angles[side][:, _KNEE, _FLEX],
                kin_rate,
                float(kin_time[0]),
            )
            for side in options.sides
        }
        kinetics: dict[Side, TimeSeries] = {}
        loaded: dict[Side, np.ndarray] = {}
        if options.kinetics is not None and mom_url is not None:
            kinetics, loaded, kinetic_notes = _kinetics(
                spec, files, options, options.kinetics, mom_url, heel_strikes
            )
            notes.extend(kinetic_notes)

        sides = []
        for side in options.sides:
            matrix = muscle_matrix(
                {m: [emg.values[n] for n in names] for m, names in _present(options, side, emg)},
                (emg.time.size,),
            )
            sides.append(
                SideRecording(
                    side=side,
                    emg=TimeSeries(matrix, emg.rate, float(emg.time[0]), options.emg.units or ""),
                    kinematics=TimeSeries(angles[side], kin_rate, float(kin_time[0]), ANGLE_UNITS),
                    kinetics=kinetics.get(side),
                    heel_strikes_s=heel_strikes[side],
                    kinetics_valid_s=loaded.get(side),
                )
            )
        found = ", ".join(f"{s} {len(heel_strikes[s])}" for s in options.sides)
        notes.append(
            f"heel strikes detected from the hip and knee angles ({found} in the kinematics "
            f"{kin_time[0]:.3f}-{kin_time[-1]:.3f} s; terminal-swing knee extension, within "
            "~10 ms of contact on real level walking)"
        )
        return [
            TrialRecording(
                sides=tuple(sides),
                emg_kind=spec.emg_kind,
                event_source="kinematics",
                notes=tuple(notes),
            )
        ]


# --- EMG ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Emg:
    """The EMG channels of one trial by source name, on their common recorded span."""

    time: np.ndarray
    rate: float
    values: dict[str, np.ndarray]


def _present(options: MoghadamOptions, side: Side, emg: _Emg) -> list[tuple[str, list[str]]]:
    """(canonical muscle, source names) of ``side`` whose every source channel was read."""
    assert options.emg is not None
    return [
        (muscle, names)
        for muscle, names in options.emg.names(side).items()
        if all(n in emg.values for n in names)
    ]


def _read_emg(
    spec: TrialSpec, files: FileAccess, options: MoghadamOptions
) -> tuple[_Emg, list[str]]:
    """The mapped channels by name, trimmed to the recorded span, checked to be raw EMG."""
    url = spec.url
    table = read_table(files, url, sep=",")
    time = _time_axis(table, url)
    rate = _rate(time, url, options.rates.emg_hz, "EMG")
    columns, notes = _emg_columns(table, options, url)
    values: dict[str, np.ndarray] = {}
    for name, column in columns.items():
        series = _numbers(table[column], url, f"EMG column {column}")
        if np.isnan(series).any() and not table[column].isna().all():
            bad = table[column][np.isnan(series)].iloc[0]
            raise SourceError(url, f"EMG column {column} holds {bad!r}, not a number")
        values[name] = series
    dead = sorted(n for n, v in values.items() if not np.any(v[np.isfinite(v)] != 0))
    if dead:
        notes.append(f"EMG channel(s) {dead} hold only zeros or nothing: absent")
        values = {n: v for n, v in values.items() if n not in dead}
    if not values:
        raise SourceError(url, "no EMG channel holds a signal")
    first, stop = _recorded_span(values)
    if first > 0 or stop < time.size:
        notes.append(
            f"EMG: {first} leading and {time.size - stop} trailing row(s) of exact zeros "
            f"(not recorded) dropped; EMG {time[first]:.3f}-{time[stop - 1]:.3f} s"
        )
    time = time[first:stop]
    values = {n: v[first:stop] for n, v in values.items()}
    for name in sorted(values):
        check_emg_kind(
            [values[name][:, None]],
            spec.emg_kind,
            url,
            assumption=f"[F real files] EMG channel {name} is raw (signed) EMG",
        )
    return _Emg(time, rate, values), notes


def _normalised_name(name: str) -> str:
    return re.sub(r"[\s_\-.]", "", str(name)).casefold()


def _emg_columns(
    table: pd.DataFrame, options: MoghadamOptions, url: str
) -> tuple[dict[str, str], list[str]]:
    """Source channel name -> CSV column, by name only (the column order differs between
    files); a missing channel is absent with a note, a file naming none is refused."""
    assert options.emg is not None
    wanted = sorted(
        {n for side in options.sides for names in options.emg.names(side).values() for n in names}
    )
    data_columns = [c for c in table.columns if c not in _TIME_COLUMNS]
    by_key: dict[str, str] = {}
    for column in data_columns:
        key = _normalised_name(column)
        if key in by_key:
            raise SourceError(
                url, f"EMG columns {by_key[key]!r} and {column!r} name the same channel"
            )
        by_key[key] = column
    found = {n: by_key[_normalised_name(n)] for n in wanted if _normalised_name(n) in by_key}
    if not found:
        raise SourceError(
            url,
            f"no EMG column names a mapped muscle (names compared ignoring case and "
            f"separators; channels are never taken by position); found {data_columns[:10]}",
        )
    notes = []
    missing = sorted(set(wanted) - set(found))
    if missing:
        notes.append(f"EMG channel(s) {missing} not in the file: absent")
    extra = sorted(set(data_columns) - set(found.values()) - set(options.emg.unused))
    if extra:
        notes.append(f"EMG column(s) {extra} map to no muscle: unused")
    return found, notes


def _recorded_span(values: dict[str, np.ndarray]) -> tuple[int, int]:
    """[first, stop) rows inside which every channel has started and not yet stopped: rows
    of exact zeros at either end were not recorded (the files start with ~19 ms of them)."""
    first, stop = 0, min(v.size for v in values.values())
    for v in values.values():
        live = np.flatnonzero(np.isfinite(v) & (v != 0))
        first, stop = max(first, int(live[0])), min(stop, int(live[-1]) + 1)
    return first, max(stop, first)


# --- shared file helpers ---------------------------------------------------------------------


def _sibling_urls(
    spec: TrialSpec, options: MoghadamOptions, files: FileAccess
) -> tuple[str, str | None]:
    """The kinematics and kinetics files of the trial (the catalogue's ``siblings``)."""
    trial = posixpath.splitext(posixpath.basename(fsspec.core.split_protocol(spec.url)[1]))[0]
    found: dict[str, str] = {}
    for pattern in options.layout.siblings:
        url = sibling_url(spec.url, pattern.format(trial=trial))
        if url.endswith(".mot"):
            found.setdefault("kinematics", url)
        elif url.endswith(".sto"):
            found.setdefault("kinetics", url)
    if "kinematics" not in found:
        raise SourceError(spec.url, "layout.siblings names no kinematics (.mot) file")
    for kind, url in found.items():
        fs, path = files.filesystem(url)
        if not fs.exists(path):
            raise SourceError(spec.url, f"the trial's {kind} file {url} does not exist")
    return found["kinematics"], found.get("kinetics")


def _read_storage(files: FileAccess, url: str) -> Storage:
    """An OpenSim storage file whose header's ``nRows``/``nColumns`` match its table (a
    truncated or re-edited file is refused)."""
    storage = read_storage(files.local_path(url), url)
    rows, columns = storage.table.shape
    for key, actual in (("nRows", rows), ("nColumns", columns)):
        declared = storage.header.get(key)
        if declared is not None and declared.strip() != str(actual):
            raise SourceError(url, f"header says {key}={declared} but the table has {actual}")
    return storage


def _time_axis(table: pd.DataFrame, url: str) -> np.ndarray:
    name = next((c for c in _TIME_COLUMNS if c in table.columns), None)
    if name is None:
        raise SourceError(
            url, f"no time column ({'/'.join(_TIME_COLUMNS)}); found {list(table.columns)[:8]}"
        )
    time = _numbers(table[name], url, "the time column")
    if time.size < 2 or not np.isfinite(time).all():
        raise SourceError(url, "time column is too short or has missing values")
    return time


def _numbers(column: pd.Series, url: str, what: str) -> np.ndarray:
    """A column as float64, text that is no number as NaN; numbers beyond float64 are an
    error naming the column."""
    try:
        return pd.to_numeric(column, errors="coerce").to_numpy(float)
    except (OverflowError, TypeError, ValueError) as exc:
        raise SourceError(url, f"{what} holds values that are no numbers ({exc})") from None


def _rate(time: np.ndarray, url: str, declared: float | None, what: str) -> float:
    """The rate of a uniformly sampled time column; it must agree with the catalogue's."""
    steps = np.diff(time)
    step = float(np.median(steps))
    if not step > 0 or np.max(np.abs(steps - step)) > _TIME_JITTER * step:
        raise SourceError(
            url,
            f"time column is not uniformly sampled (steps {steps.min():.4g}..{steps.max():.4g} s)",
        )
    rate = 1.0 / step
    if declared and abs(rate / declared - 1) > _RATE_TOLERANCE:
        raise SourceError(
            url,
            f"{what} time column gives {rate:.4g} Hz, the catalogue says {declared:g} Hz",
        )
    return rate


def _joints(
    table: pd.DataFrame, joint_map: JointMap, side: Side, url: str, factor: float
) -> np.ndarray:
    columns = joint_map.component_columns(side)
    missing = sorted(str(c) for c in columns.values() if c not in table.columns)
    if missing:
        raise SourceError(url, f"columns {missing} not found; found {list(table.columns)[:12]}")
    return joint_array(
        {key: table[col].to_numpy(float) for key, col in columns.items()},
        (len(table),),
        signs=joint_map.sign,
        factor=factor,
    )


# --- kinetics ----------------------------------------------------------------------------------


def _loaded_strides(
    times: np.ndarray, ankle: np.ndarray, heel_strikes: np.ndarray, events: MoghadamEvents
) -> tuple[np.ndarray, np.ndarray]:
    """(K, 2) windows of the strides that were on a force plate — the ankle moment peaks in
    stance at ``loaded_ratio`` × its swing peak (sign- and unit-free) — and the stance samples
    of those strides (a boolean mask over ``times``)."""
    windows, stance_mask = [], np.zeros(times.shape, bool)
    for start, end in itertools.pairwise(heel_strikes):
        split = start + events.stance_fraction * (end - start)
        stance = (times >= start) & (times <= split)
        swing = (times > split) & (times <= end)
        stance_peak = np.nanmax(np.abs(ankle[stance]), initial=0.0)
        swing_peak = np.nanmax(np.abs(ankle[swing]), initial=0.0)
        covered = stance.sum() > 2 and swing.sum() > 2
        if covered and stance_peak > events.loaded_ratio * swing_peak:
            windows.append((start, end))
            stance_mask |= stance
    return np.asarray(windows, dtype=float).reshape(-1, 2), stance_mask


def _moment_unit(peak: float, joint_map: JointMap, url: str) -> str:
    """The catalogue's moment unit, cross-checked against the ankle moment's magnitude (or
    decided by it when the catalogue gives none)."""
    inferred = moment_units_by_magnitude(peak, {u: ANKLE_PEAK_BANDS[u] for u in ("N.m/kg", "N.m")})
    unit = joint_map.units or inferred
    if unit is None:
        raise SourceError(
            url,
            f"moment units unknown and the ankle moment peak {peak:.3g} fits neither N.m/kg "
            "(0.5-4) nor N.m (35-400): set kinetics.units",
        )
    try:
        per_kg = moment_factor(unit, 1.0) == moment_factor(unit, 2.0)
    except ValueError as exc:
        raise SourceError(url, f"kinetics: {exc}") from None
    if inferred is not None and per_kg != (inferred == "N.m/kg"):
        raise SourceError(
            url, f"kinetics.units says {unit} but the ankle moment peak {peak:.3g} looks {inferred}"
        )
    return unit


def _kinetics(
    spec: TrialSpec,
    files: FileAccess,
    options: MoghadamOptions,
    joint_map: JointMap,
    url: str,
    heel_strikes: dict[Side, np.ndarray],
) -> tuple[dict[Side, TimeSeries], dict[Side, np.ndarray], list[str]]:
    """Moments in N·m/kg per side, the loaded-stride windows, and notes.

    Sign and units are judged on the stance of the loaded strides, or on the whole trial
    when it holds no complete stride; a trial whose feet never look loaded, or whose subject
    has no body mass for moments in N·m, keeps no kinetics (with a note)."""
    storage = _read_storage(files, url)
    time = _time_axis(storage.table, url)
    rate = _rate(time, url, options.rates.kinetics_hz, "kinetics")
    raw = {side: _joints(storage.table, joint_map, side, url, 1.0) for side in options.sides}
    loaded, stance = {}, {}
    for side, values in raw.items():
        loaded[side], stance[side] = _loaded_strides(
            time, values[:, _ANKLE, _FLEX], heel_strikes[side], options.events
        )
    notes = []
    for side in options.sides:
        n_off = max(heel_strikes[side].size - 1, 0) - len(loaded[side])
        if n_off:
            notes.append(
                f"{side}: {n_off} stride(s) without a stance ankle moment (foot off the force "
                "plates): kinetics left out"
            )
    has_strides = any(heel_strikes[s].size > 1 for s in options.sides)
    if has_strides and not any(mask.any() for mask in stance.values()):
        return {}, {}, [*notes, "no stride on a force plate: the trial keeps no kinetics"]
    # Without a complete stride to judge by: the whole force-plate window.
    judged = {s: raw[s][stance[s]] for s in options.sides} if has_strides else dict(raw)
    ankle = np.concatenate([v[:, _ANKLE, _FLEX].ravel() for v in judged.values()])
    peak = robust_peak(ankle)
    if not has_strides and moment_units_by_magnitude(peak, ANKLE_PEAK_BANDS) is None:
        return {}, {}, [*notes, f"ankle moment peak {peak:.3g}: no foot loaded, no kinetics"]
    for side in options.sides:
        check_plantarflexor_moment(judged[side], url, f" ({side})")
    unit = _moment_unit(peak, joint_map, url)
    note = f"moments in {unit} (ankle peak {peak:.3g})"
    if moment_factor(unit, 1.0) == moment_factor(unit, 2.0):
        factor = moment_factor(unit)
    else:
        mass = _body_mass(spec, joint_map, url)
        if mass is None:
            return (
                {},
                {},
                [
                    *notes,
                    f"{note}: no body mass for subject {spec.subject} (kinetics.body_mass; the "
                    "public repository gives none), kinetics left out",
                ],
            )
        factor = moment_factor(unit, mass)
        note = f"{note} divided by the body mass {mass:g} kg"
    moments = {
        side: TimeSeries(raw[side] * factor, rate, float(time[0]), MOMENT_UNITS)
        for side in options.sides
    }
    return moments, loaded, [note, *notes]


def _body_mass(spec: TrialSpec, joint_map: JointMap, url: str) -> float | None:
    """The catalogue's body mass of the subject (kg), checked to be plausible; None if none."""
    masses = joint_map.body_mass or {}
    if spec.subject not in masses:
        return None
    try:
        mass = float(masses[spec.subject])
    except (TypeError, ValueError):
        raise SourceError(
            url, f"kinetics.body_mass of {spec.subject} is {masses[spec.subject]!r}"
        ) from None
    return check_body_mass(mass, url, assumption=f"kinetics.body_mass of {spec.subject}")

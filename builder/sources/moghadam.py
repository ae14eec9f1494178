"""Moghadam, Yeung & Choisne 2023 (Sci Rep 13:5046): overground walking, 100 Hz EMG envelopes,
OpenSim joint angles (.mot) and moments (.sto), one file per trial and modality.

Layout (``Gait_Time_Series/<P>Data/{EMG,IMU,Joints_Kinematics,Joints_Kinetics}/<trial>.*``):

- ``EMG/<trial>.csv``: a time column (``time`` or ``Time``) and 16 envelope columns, 8 muscles
  per leg (``R``/``L`` + muscle). The names are matched ignoring case, ``_``, ``-``, ``.`` and
  spaces; when they do not match, the catalogue's ``emg.order`` (the documented column order)
  is used positionally, and the recording says so in its notes.
- ``Joints_Kinematics/<trial>.mot`` / ``Joints_Kinetics/<trial>.sto``: OpenSim storage files
  (header up to ``endheader``); coordinates ``hip_flexion_r`` … and generalised forces
  ``hip_flexion_r_moment`` …. OpenSim inverse-dynamics generalised forces are the *internal*
  net joint moments about the coordinate axes, so the canonical signs need no flip when the
  model's coordinates are flexion / adduction / internal-rotation positive — checked on the data
  (knee flexion peaks positive, the ankle's stance moment is plantarflexor, i.e. negative).
- The streams cover different time spans (the foundation cropped them to the common span):
  each keeps its own time column, and strides outside any stream are dropped by the pipeline.
- Moment units are not documented: N·m/kg or N·m is decided by magnitude (the ankle's
  plantarflexor peak is ~1.5 N·m/kg, ~100 N·m); N·m is divided by the body mass from the
  catalogue (``kinetics.body_mass: {subject: kg}``) or from ``Study Summary.xlsx`` at the root
  of the repository (two header rows: ``ID / WS-key`` and ``Participant Info / Weight (kg)``,
  as the foundation repository reads it).

The files carry NO gait events, and the upstream segmentation (peaks of the foot IMUs'
vertical acceleration) is unreliable. Heel strikes are detected from the sagittal hip and knee
angles with :func:`builder.sources.gait_events.kinematic_heel_strikes` (documented there, tested
in tests/test_source_moghadam.py). Overground trials
have force plates under a few steps only: a stride whose stance shows no plantarflexor moment
(the foot was not on a plate, so inverse dynamics saw no ground reaction) gets no kinetics
(``kinetics_valid_s`` covers only the loaded strides).

Moment units and sign are judged with :mod:`builder.sources.checks`; the study summary is read
with :func:`builder.sources.tables.read_xlsx`.
"""

from __future__ import annotations

import itertools
import posixpath
import re
from typing import Any, Literal

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
from builder.errors import SourceError
from builder.records import SideRecording, TimeSeries, TrialRecording, TrialSpec
from builder.sources import register_adapter
from builder.sources.base import AdapterOptions, FileAccess, SourceAdapter
from builder.sources.checks import (
    ANKLE_PEAK_BANDS,
    check_body_mass,
    check_envelope_share,
    check_knee_flexion_percentiles,
    check_plantarflexor_moment,
    moment_units_by_magnitude,
    robust_peak,
)
from builder.sources.gait_events import kinematic_heel_strikes
from builder.sources.mapping import joint_array, muscle_matrix
from builder.sources.opensim import read_storage
from builder.sources.options import DatasetOptions, JointMap
from builder.sources.tables import read_table, read_xlsx, sibling_url

_HIP, _KNEE, _ANKLE = (JOINTS.index(j) for j in ("hip", "knee", "ankle"))
_FLEX = PLANES.index("flexion")


class MoghadamLayout(AdapterOptions):
    format: str = "csv"
    per_file: Literal["trial"] = "trial"
    inside: str | None = None
    siblings: list[str] = Field(default_factory=list)
    activity_from: str = "path"
    # Relative to the EMG file; body masses for moments in N·m (None: catalogue only).
    subject_info: str | None = None
    subject_info_sheet: str | None = None


class MoghadamEvents(AdapterOptions):
    kind: Literal["none"] = "none"
    detect: list[Literal["kinematics"]] = Field(default_factory=lambda: ["kinematics"])
    imu: dict[str, str] = Field(default_factory=dict)  # documented, deliberately unused
    # A stride was on a force plate when its ankle moment peaks in stance (the first
    # ``stance_fraction`` of the cycle) at least ``loaded_ratio`` × its swing peak: without a
    # ground reaction inverse dynamics sees only the foot's inertia, as in swing. Unit-free.
    loaded_ratio: float = Field(3.0, gt=1)
    stance_fraction: float = Field(0.65, gt=0, lt=1)


class MoghadamOptions(DatasetOptions):
    layout: MoghadamLayout = Field(default_factory=MoghadamLayout)
    events: MoghadamEvents = Field(default_factory=MoghadamEvents)


_TIME_COLUMNS = ("time", "Time", "TIME")
# A uniformly sampled time column deviates from its median step by less than this fraction.
_TIME_JITTER = 0.02
# [C] the EMG is a pre-processed envelope: non-negative, a little filter undershoot allowed
# (bipolar raw EMG would be about half negative).
_ENVELOPE_NEGATIVE = 0.05


@register_adapter
class MoghadamAdapter(SourceAdapter):
    name = "moghadam"
    options_model = MoghadamOptions

    def read_trial(self, spec: TrialSpec, files: FileAccess) -> list[TrialRecording]:
        options = MoghadamOptions.of(spec)
        if options.emg is None or options.kinematics is None:
            raise SourceError(spec.url, "catalogue entry needs emg and kinematics maps")
        notes: list[str] = []
        emg_table = read_table(files, spec.url, sep=None, engine="python")
        emg_time = _time_axis(emg_table, spec.url)
        kin_url, mom_url = _sibling_urls(spec, options, files)
        kinematics = read_storage(files.local_path(kin_url), kin_url)
        kin_time = _time_axis(kinematics.table, kin_url)

        emg_url = spec.url
        emg_rate = _rate(emg_time, emg_url)
        if options.rates.emg_hz and abs(emg_rate / options.rates.emg_hz - 1) > 0.02:
            raise SourceError(
                emg_url,
                f"EMG time column gives {emg_rate:.4g} Hz, the catalogue says "
                f"{options.rates.emg_hz:g} Hz (100 Hz envelopes assumed)",
            )
        columns, emg_note = _emg_columns(emg_table, options, emg_url)
        if emg_note:
            notes.append(emg_note)
        emg_values = {name: emg_table[col].to_numpy(float) for name, col in columns.items()}
        for name, values in emg_values.items():
            check_envelope_share(
                values,
                emg_url,
                assumption=f"EMG channel {name} is not the documented 100 Hz envelope (raw EMG? "
                "then emg_kind must be raw)",
                max_negative_share=_ENVELOPE_NEGATIVE,
            )

        kin_rate = _rate(kin_time, kin_url)
        angle_unit = options.kinematics.units or "deg"
        if kinematics.in_degrees is False:
            angle_unit = "rad"
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
                assumption=f"[I] OpenSim knee flexion positive, in degrees ({side})",
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
            emg = muscle_matrix(
                {m: [emg_values[n] for n in names] for m, names in options.emg.names(side).items()},
                (emg_time.size,),
            )
            sides.append(
                SideRecording(
                    side=side,
                    emg=TimeSeries(emg, emg_rate, float(emg_time[0]), options.emg.units or ""),
                    kinematics=TimeSeries(angles[side], kin_rate, float(kin_time[0]), ANGLE_UNITS),
                    kinetics=kinetics.get(side),
                    heel_strikes_s=heel_strikes[side],
                    kinetics_valid_s=loaded.get(side),
                )
            )
        notes.append(
            "heel strikes detected from the hip and knee angles (terminal-swing knee extension; "
            "typically 0-50 ms before contact)"
        )
        return [
            TrialRecording(
                sides=tuple(sides),
                emg_kind=spec.emg_kind,
                event_source="kinematics",
                notes=tuple(notes),
            )
        ]


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


def _time_axis(table: pd.DataFrame, url: str) -> np.ndarray:
    name = next((c for c in _TIME_COLUMNS if c in table.columns), None)
    if name is None:
        raise SourceError(
            url, f"no time column ({'/'.join(_TIME_COLUMNS)}); found {list(table.columns)[:8]}"
        )
    time = table[name].to_numpy(float)
    if time.size < 2 or not np.isfinite(time).all():
        raise SourceError(url, "time column is too short or has missing values")
    return time


def _rate(time: np.ndarray, url: str) -> float:
    steps = np.diff(time)
    step = float(np.median(steps))
    if not step > 0 or np.max(np.abs(steps - step)) > _TIME_JITTER * step:
        raise SourceError(
            url,
            f"time column is not uniformly sampled (steps {steps.min():.4g}..{steps.max():.4g} s)",
        )
    return 1.0 / step


def _normalised_name(name: str) -> str:
    return re.sub(r"[\s_\-.]", "", name).casefold()


def _emg_columns(
    table: pd.DataFrame, options: MoghadamOptions, url: str
) -> tuple[dict[str, str], str | None]:
    """Source channel name -> CSV column; by name, else by the documented column order."""
    assert options.emg is not None
    wanted = sorted(
        {n for side in options.sides for names in options.emg.names(side).values() for n in names}
    )
    by_key = {_normalised_name(c): c for c in table.columns}
    found = {
        name: by_key[_normalised_name(name)] for name in wanted if _normalised_name(name) in by_key
    }
    if len(found) == len(wanted):
        return found, None
    order = options.emg.order
    data_columns = [c for c in table.columns if c not in _TIME_COLUMNS]
    if isinstance(order, list) and len(order) == len(data_columns) and set(wanted) <= set(order):
        mapping = dict(zip(order, data_columns, strict=True))
        return (
            {name: mapping[name] for name in wanted},
            f"EMG columns {data_columns[:3]}… do not name the muscles: the documented column "
            "order (emg.order) was used",
        )
    missing = sorted(set(wanted) - set(found))
    raise SourceError(
        url,
        f"EMG channels {missing} not found (names compared ignoring case and separators) and "
        f"the {len(data_columns)} data columns do not match emg.order; found {data_columns[:10]}",
    )


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


def _moment_factor(
    raw: dict[Side, np.ndarray],
    joint_map: JointMap,
    spec: TrialSpec,
    files: FileAccess,
    options: MoghadamOptions,
    url: str,
) -> tuple[float, str]:
    """Factor to N·m/kg: the catalogue's unit, or N·m/kg vs N·m by the magnitude of the
    ankle moment ``raw`` (stance of the loaded strides only)."""
    ankle = np.concatenate([v.ravel() for v in raw.values()])
    unit = joint_map.units
    peak = robust_peak(ankle)
    inferred = moment_units_by_magnitude(peak, {u: ANKLE_PEAK_BANDS[u] for u in ("N.m/kg", "N.m")})
    if unit is None:
        if inferred is None:
            raise SourceError(
                url,
                f"moment units unknown and the ankle moment peak {peak:.3g} fits neither N.m/kg "
                "(0.5-4) nor N.m (35-400): set kinetics.units",
            )
        unit = inferred
    elif inferred is not None and not _same_moment_unit(inferred, unit):
        raise SourceError(
            url,
            f"kinetics.units says {unit} but the ankle moment peak {peak:.3g} looks like {inferred}",
        )
    note = f"moments in {unit} (ankle peak {peak:.3g})"
    try:
        per_kg = moment_factor(unit, 1.0) == moment_factor(unit, 2.0)
    except ValueError as exc:
        raise SourceError(url, f"kinetics: {exc}") from None
    if per_kg:
        return moment_factor(unit), note
    mass = _body_mass(spec, files, options, joint_map, url)
    return moment_factor(unit, mass), f"{note} divided by the body mass {mass:g} kg"


def _same_moment_unit(a: str, b: str) -> bool:
    try:
        return all(moment_factor(a, m) == moment_factor(b, m) for m in (1.0, 2.0))
    except ValueError:
        return False


def _body_mass(
    spec: TrialSpec, files: FileAccess, options: MoghadamOptions, joint_map: JointMap, url: str
) -> float:
    subject = spec.subject
    if joint_map.body_mass and subject in joint_map.body_mass:
        mass = float(joint_map.body_mass[subject])
    elif options.layout.subject_info:
        info_url = sibling_url(spec.url, options.layout.subject_info)
        rows = read_xlsx(files.local_path(info_url), info_url, options.layout.subject_info_sheet)
        mass = _mass_from_summary(rows, subject, info_url)
    else:
        raise SourceError(url, f"moments in N.m need the body mass of {subject}: none given")
    return check_body_mass(mass, url, assumption=f"body mass of {subject}: not a plausible mass")


def _mass_from_summary(rows: list[list[Any]], subject: str, url: str) -> float:
    """Body mass (kg) of ``subject`` from the study summary: two header rows (a group row whose
    merged cells fill to the right, then the column names); the id column is 'ID / WS-key'."""
    if len(rows) < 3:
        raise SourceError(url, "study summary has no participant rows")
    groups, names = [], [str(n or "").strip() for n in rows[1]]
    current = ""
    for value in rows[0]:
        current = str(value).strip() if value not in (None, "") else current
        groups.append(current)
    headers = [(g.casefold(), n.casefold()) for g, n in zip(groups, names, strict=False)]
    id_col = next((i for i, (g, n) in enumerate(headers) if "id" in g and "ws" in n), None)
    mass_col = next(
        (i for i, (_, n) in enumerate(headers) if ("weight" in n or "mass" in n) and "kg" in n),
        None,
    )
    if id_col is None or mass_col is None:
        raise SourceError(
            url, f"study summary lacks the 'ID / WS-key' or 'Weight (kg)' column; found {headers}"
        )
    for row in rows[2:]:
        if str(row[id_col] or "").strip().casefold() == subject.casefold():
            try:
                return float(row[mass_col])
            except (TypeError, ValueError):
                raise SourceError(url, f"body mass of {subject} is {row[mass_col]!r}") from None
    raise SourceError(url, f"participant {subject} is not in the study summary")


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


def _kinetics(
    spec: TrialSpec,
    files: FileAccess,
    options: MoghadamOptions,
    joint_map: JointMap,
    url: str,
    heel_strikes: dict[Side, np.ndarray],
) -> tuple[dict[Side, TimeSeries], dict[Side, np.ndarray], list[str]]:
    """Moments in N·m/kg per side, the loaded-stride windows, and notes. Units and sign are
    judged on the stance of the loaded strides only; a trial without any keeps no kinetics."""
    storage = read_storage(files.local_path(url), url)
    time = _time_axis(storage.table, url)
    rate = _rate(time, url)
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
    if not any(mask.any() for mask in stance.values()):
        return {}, {}, [*notes, "no stride on a force plate: the trial keeps no kinetics"]
    ankle = {side: raw[side][stance[side], _ANKLE, _FLEX] for side in options.sides}
    factor, unit_note = _moment_factor(ankle, joint_map, spec, files, options, url)
    moments = {}
    for side in options.sides:
        values = raw[side] * factor
        check_plantarflexor_moment(values[stance[side]], url, f" ({side})")
        moments[side] = TimeSeries(values, rate, float(time[0]), MOMENT_UNITS)
    return moments, loaded, [unit_note, *notes]

"""Generic adapter for gait-cycle-normalised MATLAB structs (``driver: matlab_struct``).

The layout it reads is the one of antoinefalisse/3dpredictsim's ``ExperimentalData.mat``
(and of many lab exports like it): one variable (``layout.root``) holding one container per
quantity, each with one container per subject, each with

- ``<data_field>`` (default ``all``): (points, channels, cycles), every cycle time-normalised
  from a heel strike of the leg in ``sides`` to its next heel strike, and
- ``<names_field>`` (default ``colheaders``): the channel names (OpenSim coordinates, muscles).

For example ``ExperimentalData.Q.subject1.Qs.all`` (100 × 19 × 11, degrees),
``ExperimentalData.Torques.subject1.all`` (N·m) and ``ExperimentalData.EMG.subject1.all``
(100 × 14 × 11, NaN where a muscle was not recorded in a cycle). Catalogue ``args``
(validated by :class:`MatlabStructOptions`)::

    layout:
      root: ExperimentalData           # variable that holds everything (null: the file itself)
      subjects_from: Q                  # container whose keys are the subjects
      data_field: all
      names_field: colheaders
      endpoint: true                    # the P points include both heel strikes
      speed_from: {container: "Q.{subject}.Qdots", column: pelvis_tx}   # optional, m/s
    sides: [R]                          # the leg whose heel strikes delimit the cycles
    rates: {points_per_stride: {emg: 100, kinematics: 100, kinetics: 100}}
    emg: {container: "EMG.{subject}", channels: {soleus: {R: Soleus}, ...}}
    kinematics: {container: "Q.{subject}.Qs", columns: {knee: {flexion: {R: knee_angle}}},
                 sign: {knee.flexion: -1}, units: deg}
    kinetics: {container: "Torques.{subject}", columns: ..., units: N.m, body_mass: {kg: 62}}
    events:
      durations_from: velocities        # | field | fixed
      velocities: "Q.{subject}.Qdots"   # time derivatives of the kinematics container
      grf_check: {container: "GRFs.{subject}", vertical: Vertical}

Cycle durations. Time-normalised cycles carry no time, and such files often give none:

- ``velocities``: the file has the angles' time derivatives (``Qdots``, per second) beside
  the angles. Per cycle, the duration T is the least-squares ratio between the derivative of
  the angles over the cycle (per unit cycle) and the stored velocities: dq/dt = (dq/dφ) / T.
  The fit must explain the velocities (relative residual ≤ 20 %), otherwise the file is
  refused. On ExperimentalData.mat this gives 1.02-1.09 s (residual ≈ 0.3 %), matching
  stride length / mean pelvis velocity to within a few per cent.
- ``field``: a struct path (``{subject}`` allowed) holding one duration in seconds per cycle.
- ``fixed``: ``stride_duration_s`` for every cycle (a documented value, e.g. from the paper).

What is checked on the data (a failed check is a :class:`SourceError` naming it): the point
counts against ``rates.points_per_stride``; peak swing knee flexion positive (> 30°) after
the sign rules; moments below 5 N·m/kg with an internal (negative) ankle plantarflexor moment
at 40-55 % of the cycle; EMG non-negative and smooth for ``emg_kind: envelope``; with
``grf_check``, the vertical force loaded at 5-15 % and unloaded at 75-90 % of the cycle (so
the cycle does start at that leg's heel strike). A muscle with NaN in a cycle is absent in
that stride (mask False), never zero.

The checks are :mod:`builder.processing.checks`'s (shared with the per-dataset MATLAB adapters).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from builder.conventions import ANGLE_UNITS, Side, angle_factor, moment_factor
from builder.datasets.base import AdapterOptions, SourceAdapter
from builder.datasets.mapping import joint_array, muscle_matrix
from builder.datasets.options import DatasetOptions, JointMap
from builder.datasets.segments import cycle_sides
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.formats.matlab import CycleTable, field, load_mat
from builder.processing.checks import (
    check_emg_kind,
    check_swing_knee_flexion,
    check_walking_moments,
    phase_mean,
)
from builder.records import TrialRecording, TrialSpec

# --- options --------------------------------------------------------------------------------


class SpeedFrom(AdapterOptions):
    """Walking speed per cycle: the mean of a velocity channel (m/s), e.g. pelvis_tx."""

    container: str
    column: str


class StructLayout(AdapterOptions):
    format: Literal["mat-v5", "mat-v7.3"] = "mat-v5"
    per_file: Literal["subject", "dataset"] = "dataset"
    root: str | None = None
    subjects_from: str
    data_field: str = "all"
    names_field: str = "colheaders"
    endpoint: bool = True  # the points include both heel strikes
    activity_from: Literal["path"] = "path"
    speed_from: SpeedFrom | None = None


class GrfCheck(AdapterOptions):
    container: str
    vertical: str


class StructEvents(AdapterOptions):
    kind: Literal["pre_segmented"] = "pre_segmented"
    durations_from: Literal["velocities", "field", "fixed"]
    velocities: str | None = None
    durations_field: str | None = None
    stride_duration_s: float | None = Field(default=None, gt=0)
    grf_check: GrfCheck | None = None

    @model_validator(mode="after")
    def _source_given(self) -> StructEvents:
        needed = {
            "velocities": "velocities",
            "field": "durations_field",
            "fixed": "stride_duration_s",
        }
        name = needed[self.durations_from]
        if getattr(self, name) is None:
            raise ValueError(f"durations_from {self.durations_from!r} needs {name}")
        return self


class MatlabStructOptions(DatasetOptions):
    layout: StructLayout
    events: StructEvents

    @model_validator(mode="after")
    def _containers(self) -> MatlabStructOptions:
        for name in ("emg", "kinematics", "kinetics"):
            part = getattr(self, name)
            if part is not None and not part.container:
                raise ValueError(f"{name}.container (struct path, {{subject}} allowed) is required")
        for name in ("kinematics", "kinetics"):
            part = getattr(self, name)
            if part is not None and not part.columns:
                raise ValueError(f"{name}.columns (joint -> plane -> side -> name) is required")
        return self


# --- the adapter ------------------------------------------------------------------------------


class MatlabStructAdapter(SourceAdapter[MatlabStructOptions]):
    name = "matlab_struct"
    options_model = MatlabStructOptions
    emg_kinds = frozenset({"envelope", "raw"})

    def read(
        self, spec: TrialSpec, options: MatlabStructOptions, files: FileAccess
    ) -> list[TrialRecording]:
        data = load_mat(files.local_path(spec.url), spec.url)
        root = field(data, options.layout.root, spec.url) if options.layout.root else data
        subjects_node = field(root, options.layout.subjects_from, spec.url, why="subjects")
        if not isinstance(subjects_node, dict) or not subjects_node:
            raise SourceError(spec.url, f"{options.layout.subjects_from} holds no subjects")
        recordings = []
        for subject in subjects_node:
            recordings += _subject(root, subject, options, spec)
        return recordings


def _table(root: Any, path: str, layout: StructLayout, url: str) -> CycleTable:
    """The container at ``path`` with the layout's data and names fields."""
    return CycleTable(root, path, url, data_field=layout.data_field, names_field=layout.names_field)


def _subject(
    root: Any, subject: str, options: MatlabStructOptions, spec: TrialSpec
) -> list[TrialRecording]:
    url, layout = spec.url, options.layout

    def table(path: str | None) -> CycleTable:  # set wherever used (MatlabStructOptions)
        return _table(root, str(path).format(subject=subject), layout, url)

    kin_table = table(options.kinematics.container) if options.kinematics else None
    mom_table = table(options.kinetics.container) if options.kinetics else None
    emg_table = table(options.emg.container) if options.emg else None
    tables: dict[Literal["emg", "kinematics", "kinetics"], CycleTable | None] = {
        "kinematics": kin_table,
        "kinetics": mom_table,
        "emg": emg_table,
    }
    present = {k: t for k, t in tables.items() if t is not None}
    if not present:
        raise SourceError(url, "no kinematics, kinetics or EMG container configured")
    counts = {k: t.n_cycles for k, t in present.items()}
    if len(set(counts.values())) != 1:
        raise SourceError(url, f"{subject}: the containers hold different cycle counts {counts}")
    n_cycles = next(iter(counts.values()))
    for stream, t in present.items():
        expected = options.rates.points_per_stride.get(stream)
        if expected is not None and t.n_points != expected:
            raise SourceError(
                url,
                f"{t.path}: {t.n_points} points per cycle, the catalogue says {expected} "
                "(rates.points_per_stride)",
            )

    # Whole milliseconds: the envelope path resamples a stride onto the 1 kHz grid without
    # its last fractional millisecond, which leaves the stride's final envelope point NaN
    # (mask False) when the duration is not a multiple of 1 ms. 0.5 ms is far below the
    # precision of a derived duration (~3 ms).
    durations = np.round(_durations(root, subject, kin_table, options, url), 3)
    if durations.shape != (n_cycles,) or not (np.isfinite(durations) & (durations > 0)).all():
        raise SourceError(url, f"{subject}: cycle durations {durations} are not usable")
    speeds = _speeds(root, subject, options, url, n_cycles)
    if options.events.grf_check is not None:
        _check_grf(table(options.events.grf_check.container), options.events.grf_check, url)

    recordings = []
    for side in options.sides:
        kinematics = _joints(kin_table, options.kinematics, side, "kinematics", url)
        kinetics = _joints(mom_table, options.kinetics, side, "kinetics", url, root, subject)
        emg = _emg(emg_table, options, side, spec)
        if kinematics is not None:
            check_swing_knee_flexion(kinematics, url, "knee flexion sign (kinematics.sign)")
        if kinetics is not None:
            check_walking_moments(
                kinetics, url, what="the moments", assumption="kinetics units/body mass/sign"
            )
        strides = cycle_sides(
            side,
            durations,
            kinematics=kinematics,
            kinetics=kinetics,
            emg=emg,
            emg_units="normalised" if spec.emg_kind == "envelope" else "V",
        )
        for k, stride in enumerate(strides):
            meta: dict[str, Any] = {"subject": subject, "subtrial": f"cycle{k + 1:02d}"}
            if speeds is not None:
                meta["speed_mps"] = float(speeds[k])
            recordings.append(
                TrialRecording(
                    sides=(stride,),
                    emg_kind=spec.emg_kind,
                    event_source="pre_segmented",
                    notes=(
                        f"{subject} cycle {k + 1}: duration {durations[k]:.3f} s from "
                        f"{options.events.durations_from}",
                    ),
                    meta=meta,
                    times_absolute=False,
                )
            )
    return recordings


def _joints(
    table: CycleTable | None,
    joints: JointMap | None,
    side: Side,
    what: str,
    url: str,
    root: Any = None,
    subject: str = "",
) -> np.ndarray | None:
    """(cycles, points, 3, 3) canonical angles (deg) or internal moments (N·m/kg)."""
    if table is None or joints is None:
        return None
    columns = joints.component_columns(side)
    if not columns:
        return None
    if what == "kinematics":
        factor = angle_factor(joints.units or ANGLE_UNITS)
    else:
        if joints.units is None:
            raise SourceError(url, "kinetics.units is required (N.m/kg, N.mm/kg, N.m, N.mm)")
        try:
            factor = moment_factor(joints.units, _body_mass(joints, root, subject, url))
        except ValueError as error:
            raise SourceError(url, f"kinetics: {error}") from None
    values = {
        key: table.column(str(name), f"{what} {key[0]} {key[1]}") for key, name in columns.items()
    }
    shape = (table.n_cycles, table.n_points)
    return joint_array(values, shape, signs=joints.sign, factor=factor)


def _body_mass(joints: JointMap, root: Any, subject: str, url: str) -> float | None:
    spec = joints.body_mass or {}
    if "kg" in spec:
        return float(spec["kg"])
    if "field" in spec:
        return float(np.asarray(field(root, str(spec["field"]).format(subject=subject), url)))
    return None


def _emg(
    table: CycleTable | None, options: MatlabStructOptions, side: Side, spec: TrialSpec
) -> np.ndarray | None:
    if table is None or options.emg is None:
        return None
    names = options.emg.names(side)
    if not names:
        return None
    columns = {
        muscle: [table.column(n, f"EMG {muscle}") for n in source]
        for muscle, source in names.items()
    }
    emg = muscle_matrix(
        {m: (v[0] if len(v) == 1 else v) for m, v in columns.items()},
        (table.n_cycles, table.n_points),
    )
    check_emg_kind(list(emg), spec.emg_kind, spec.url, "metadata.emg_kind")
    # A muscle with any NaN in a cycle is absent from that stride: all NaN, never zero.
    partial = ~np.isfinite(emg).all(axis=1, keepdims=True)
    return np.where(partial, np.nan, emg)


def _durations(
    root: Any, subject: str, kin_table: CycleTable | None, options: MatlabStructOptions, url: str
) -> np.ndarray:
    events = options.events
    if events.durations_from == "fixed":
        n = _n_cycles(root, subject, options, url)
        return np.full(n, events.stride_duration_s, dtype=float)  # set (StructEvents)
    if events.durations_from == "field":
        path = str(events.durations_field).format(subject=subject)
        return np.atleast_1d(np.asarray(field(root, path, url), dtype=float)).ravel()
    # velocities: dq/dt = (dq/dphase) / T, per cycle, over the mapped kinematic channels.
    if kin_table is None or options.kinematics is None:
        raise SourceError(url, "durations_from velocities needs the kinematics container")
    velocities = _table(root, str(events.velocities).format(subject=subject), options.layout, url)
    names = [
        str(n)
        for side in options.sides
        for n in options.kinematics.component_columns(side).values()
        if str(n) in velocities.names
    ]
    if not names:
        raise SourceError(url, f"{velocities.path}: none of the kinematic channels is there")
    step = 1.0 / (kin_table.n_points - 1 if options.layout.endpoint else kin_table.n_points)
    durations = []
    for k in range(kin_table.n_cycles):
        angle = np.stack([kin_table.column(n, "duration")[k] for n in names], axis=1)
        rate = np.stack([velocities.column(n, "duration")[k] for n in names], axis=1)
        per_cycle = np.gradient(angle, step, axis=0)[2:-2].ravel()
        per_second = rate[2:-2].ravel()
        ok = np.isfinite(per_cycle) & np.isfinite(per_second)
        a, b = per_cycle[ok], per_second[ok]
        inverse = float(a @ b) / float(a @ a) if a.size and a @ a > 0 else np.nan
        residual = np.linalg.norm(b - inverse * a) / (np.linalg.norm(b) or np.nan)
        if not inverse > 0 or not residual <= 0.2:
            raise SourceError(
                url,
                f"{velocities.path}: cycle {k + 1}'s velocities are not the time derivative of "
                f"its angles (relative residual {residual:.2f}); cannot derive its duration",
            )
        durations.append(1.0 / inverse)
    return np.array(durations)


def _n_cycles(root: Any, subject: str, options: MatlabStructOptions, url: str) -> int:
    for part in (options.kinematics, options.kinetics, options.emg):
        if part is not None:
            path = str(part.container).format(subject=subject)
            return _table(root, path, options.layout, url).n_cycles
    raise SourceError(url, "no container configured")


def _speeds(
    root: Any, subject: str, options: MatlabStructOptions, url: str, n_cycles: int
) -> np.ndarray | None:
    speed = options.layout.speed_from
    if speed is None:
        return None
    table = _table(root, speed.container.format(subject=subject), options.layout, url)
    values = table.column(speed.column, "speed")
    if values.shape[0] != n_cycles:
        raise SourceError(url, f"{table.path}: {values.shape[0]} cycles, expected {n_cycles}")
    return np.nanmean(values, axis=1)


def _check_grf(table: CycleTable, check: GrfCheck, url: str) -> None:
    vertical = table.column(check.vertical, "GRF check")
    peak = np.nanmax(np.abs(vertical), axis=1)
    loaded = phase_mean(np.abs(vertical) / peak[:, None], 0.05, 0.15)
    unloaded = phase_mean(np.abs(vertical) / peak[:, None], 0.75, 0.90)
    if not (loaded >= 0.3 and unloaded <= 0.1):
        raise SourceError(
            url,
            f"{table.path}.{check.vertical}: the cycles do not start at this leg's heel strike "
            f"(vertical force {loaded:.0%} of its peak at 5-15 %, {unloaded:.0%} at 75-90 %)",
        )


__all__ = ["MatlabStructAdapter", "MatlabStructOptions"]

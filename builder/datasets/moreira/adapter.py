"""Moreira et al. 2021 (Sci Data 8:103): cycle-normalised strides at 7 controlled speeds.

Two copies of the same processed data exist, and both are read (``layout.format``):

- ``mat-table`` — ``MAT_files/ParticipantN/Processed_Data.mat`` holds ``SubjectN_pro``, a struct
  ``<V>.<R|L>.<feature>`` where each feature (``Angles``, ``Torques``, ``Torques_Norm``,
  ``EMGs_filt``, the envelope, ``GRF``) is an N×2 cell {trial name, MATLAB table} and
  ``Stride_Time`` a table with ``St1_Time``/``St2_Time`` (s) per trial, in the cells' order.
  MATLAB tables are MCOS objects: read with mat-io (:func:`builder.formats.matlab.load_mat`).
- ``ascii`` — ``ASCII_files/ParticipantN/Processed_Data/<V>/<R|L>/<feature>/<trial>.txt``,
  tab-separated with a header row; one trial-table row per ``Angles`` file (one leg of one
  trial), its other features read from the sibling folders.

A trial holds 2 strides of one leg (``St1_*``, ``St2_*`` columns; some hold only ``St1_*``),
each 1001 points from heel strike to heel strike, with its duration in ``Stride_Time``. Angle
and torque tables have 24 columns = (Pelvis, Hip, Knee, Ankle) × stride × (X sagittal,
Y coronal, Z transverse), named ``St<k>_<Joint>_<Axis>``; EMG tables ``St<k>_<muscle>``
(VL, BF, TA, GAL). Speed codes V1…V4 are 1.0–4.0 km/h.

EMG: the processed files hold the filtered EMG (``EMGs_filt``) and its envelope, both
time-normalised to 1001 points per stride. 1001 points over a 1–2 s stride is a 500–1000 Hz
sampling of a signal with content up to 450 Hz, so the filtered EMG is aliased and cannot be
processed as raw EMG; the adapter reads the envelope (``emg_kind: envelope``) and checks that it
is one (non-negative). Every stride carries no absolute time (``times_absolute=False``).

Checked on the data: the subject variable matches the participant; speed codes are known; each
table has 1001 rows; every stride present has a positive duration; the envelope is
non-negative; sagittal angle signs (knee, ankle, hip) on the mean stride; moments internal
(ankle plantarflexor negative in stance) and of the declared unit's magnitude (N·m/kg vs N·m;
N·m is converted with the body mass of the participant's ``Metadata.txt``).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from builder.conventions import Side, angle_factor
from builder.datasets.base import AdapterOptions, SourceAdapter
from builder.datasets.mapping import joint_array, muscle_matrix
from builder.datasets.options import DatasetOptions, EmgMap, JointMap, per_side
from builder.datasets.segments import cycle_sides
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.formats.matlab import field, load_mat
from builder.formats.tables import numeric, read_table, sibling_url, url_exists
from builder.processing.checks import (
    ankle_moment_peak,
    check_envelope_share,
    check_internal_moments,
    check_mean_stride_angles,
    kinetic_factor,
    mean_normalised_stride,
    moment_scale,
)
from builder.records import SideRecording, TrialRecording, TrialSpec

# The rates.points_per_stride entry each table's rows are checked against.
_POINTS_OF: dict[str, Literal["emg", "kinematics"]] = {
    "kinematics": "kinematics",
    "kinetics": "kinematics",
    "emg": "emg",
}
# Largest share of negative samples an envelope may show (interpolation undershoot).
_ENVELOPE_NEGATIVE = 0.005


class MoreiraLayout(AdapterOptions):
    format: Literal["mat-table", "ascii"]
    per_file: str = ""
    inside: str | None = None
    side_containers: dict[Side, str] = Field(default_factory=per_side("L", "R"))
    activity_from: str = "path"
    speed_codes: dict[str, float]  # in-file / folder tokens -> m/s
    subject_variable: str = "Subject{n}_pro"  # {n}: the number of Participant<n>
    subject_info: str | None = None  # Metadata.txt, relative to the matched file
    mat_copy: str | None = None  # ascii: the MAT copy of the participant, relative to the file
    stride_prefix: str = "St{k}_"


class MoreiraEvents(AdapterOptions):
    kind: Literal["pre_segmented"] = "pre_segmented"
    strides_per_trial: int = Field(default=2, ge=1)
    durations_from: str = "Stride_Time"
    duration_column: str = "St{k}_Time"


class MoreiraOptions(DatasetOptions):
    layout: MoreiraLayout
    events: MoreiraEvents


Table = tuple[str, pd.DataFrame]  # (trial name, table)


@dataclass(frozen=True)
class _Leg:
    """The strides of one trial of one leg, time-normalised, canonical axes and signs."""

    speed: str  # speed code
    side: Side
    trial: str
    durations: np.ndarray  # (N,) s
    kinematics: np.ndarray  # (N, P, 3, 3) degrees
    kinetics: np.ndarray | None  # (N, P, 3, 3) in the file's unit
    emg: np.ndarray  # (N, P, 13) envelopes


class MoreiraAdapter(SourceAdapter[MoreiraOptions]):
    name = "moreira"
    options_model = MoreiraOptions
    emg_kinds = frozenset({"envelope"})

    def read(
        self, spec: TrialSpec, options: MoreiraOptions, files: FileAccess
    ) -> list[TrialRecording]:
        if options.emg is None or options.emg.container is None:
            raise SourceError(spec.url, "catalogue: emg.container (the envelope) is required")
        if options.kinematics is None or options.kinematics.container is None:
            raise SourceError(spec.url, "catalogue: kinematics.container is required")
        read = self._mat_legs if options.layout.format == "mat-table" else self._ascii_legs
        legs = read(spec, options, files)
        factors = {
            side: _check([leg for leg in legs if leg.side == side], spec, options, files)
            for side in {leg.side for leg in legs}
        }
        recordings: dict[tuple[str, str], list[SideRecording]] = {}
        for leg in legs:
            recordings.setdefault((leg.speed, leg.trial), []).extend(
                cycle_sides(
                    leg.side,
                    leg.durations,
                    kinematics=leg.kinematics,
                    kinetics=None if leg.kinetics is None else leg.kinetics * factors[leg.side],
                    emg=leg.emg,
                    emg_units=options.emg.units or "unknown",
                )
            )
        speeds = options.layout.speed_codes
        return [
            TrialRecording(
                sides=tuple(sides),
                emg_kind=spec.emg_kind,
                event_source="pre_segmented",
                meta={"trial": f"{code}_{trial}", "speed_mps": speeds[code]},
                times_absolute=False,  # stride durations, no times
            )
            for (code, trial), sides in sorted(recordings.items())
        ]

    # --- the two layouts -------------------------------------------------------------------

    @staticmethod
    def _mat_legs(spec: TrialSpec, options: MoreiraOptions, files: FileAccess) -> list[_Leg]:
        url = spec.url
        number = re.search(r"(\d+)$", spec.subject)
        if number is None:
            raise SourceError(url, f"subject {spec.subject!r} has no participant number")
        variable = options.layout.subject_variable.format(n=int(number.group(1)))
        contents = load_mat(files.local_path(url), url)
        if variable not in contents:
            raise SourceError(
                url,
                f"no variable {variable!r} for {spec.subject} (found {sorted(contents)[:6]}): "
                "the file is another participant's or the naming differs",
            )
        subject = contents[variable]
        if not isinstance(subject, dict):
            raise SourceError(url, f"{variable} is not a struct of speeds")
        speeds = options.layout.speed_codes
        unknown = sorted(set(subject) - set(speeds))
        if unknown:
            raise SourceError(
                url, f"[F] speed codes {sorted(speeds)}: found {unknown} in {variable}"
            )
        legs = []
        for code in sorted(subject, key=speeds.__getitem__):
            for side in options.sides:
                where = f"{code}.{options.layout.side_containers[side]}"
                node = field(subject, where, url, why="[C] <V>.<R|L> containers")
                cells = {
                    role: _cell_tables(
                        field(node, name, url, why=f"[C] {role}: cell {{trial, table}}"),
                        url,
                        f"{variable}.{where}.{name}",
                    )
                    for role, name in _containers(options).items()
                }
                timing = field(node, options.events.durations_from, url, why="stride durations")
                legs += _legs(code, side, cells, timing, url, options)
        return legs

    @staticmethod
    def _ascii_legs(spec: TrialSpec, options: MoreiraOptions, files: FileAccess) -> list[_Leg]:
        url, layout = spec.url, options.layout
        if layout.mat_copy and url_exists(
            files, sibling_url(url, layout.mat_copy.format(subject=spec.subject))
        ):
            raise SourceError(
                url,
                f"the MAT copy of {spec.subject} is also present: its ASCII copy is left out so "
                "that no stride is stored twice",
            )
        # .../Processed_Data/<V>/<R|L>/<feature>/<trial>.txt
        parts = url.rstrip("/").split("/")
        trial, side_folder, code = posixpath.splitext(parts[-1])[0], parts[-3], parts[-4]
        sides = {folder: side for side, folder in layout.side_containers.items()}
        if side_folder not in sides:
            raise SourceError(url, f"leg folder {side_folder!r} is none of {sorted(sides)}")
        if code not in layout.speed_codes:
            raise SourceError(url, f"[F] speed codes {sorted(layout.speed_codes)}: found {code!r}")
        if sides[side_folder] not in options.sides:
            return []
        cells = {
            role: [
                (
                    trial,
                    read_table(
                        files,
                        sibling_url(url, f"../{name}/{trial}.txt"),
                        sep="\t",
                        what=f"{name} table",
                    ),
                )
            ]
            for role, name in _containers(options).items()
        }
        timing_url = sibling_url(url, f"../{options.events.durations_from}/{trial}.txt")
        timing = read_table(files, timing_url, sep="\t", what="stride-time table")
        return _legs(code, sides[side_folder], cells, timing, url, options)


def _legs(
    code: str,
    side: Side,
    cells: dict[str, list[Table]],
    timing: Any,
    url: str,
    options: MoreiraOptions,
) -> list[_Leg]:
    """One entry per trial of one leg: its strides' arrays and durations."""
    names = [name for name, _ in cells["kinematics"]]
    for role, tables in cells.items():
        if [name for name, _ in tables] != names:
            raise SourceError(
                url,
                f"{code}.{side}: the {role} trials {[n for n, _ in tables]} differ from the "
                f"angle trials {names}",
            )
    durations = _durations(timing, len(names), options, url, f"{code}.{side}")
    points = options.rates.points_per_stride
    kinematics, kinetics, emg = options.kinematics, options.kinetics, options.emg
    assert kinematics is not None and emg is not None  # checked in read
    legs = []
    for i, name in enumerate(names):
        trial = {role: tables[i][1] for role, tables in cells.items()}
        strides = _strides_present(trial["kinematics"], options)
        if not strides:
            raise SourceError(url, f"{code}.{side}.{name}: no St<k>_ columns in the angles")
        for role, table in trial.items():
            stream = _POINTS_OF.get(role)
            expected = points.get(stream) if stream else None
            if expected and len(table) != expected:
                raise SourceError(
                    url,
                    f"[C] {expected} points per stride: {code}.{side}.{name} {role} has "
                    f"{len(table)} rows",
                )
        lasting = durations[i, [k - 1 for k in strides]]
        if not (np.isfinite(lasting) & (lasting > 0)).all():
            raise SourceError(
                url,
                f"[C] stride durations from {options.events.durations_from}: {code}.{side}."
                f"{name} strides {strides} have {lasting.tolist()} s",
            )
        angle_units = angle_factor(kinematics.units or "deg")
        legs.append(
            _Leg(
                speed=code,
                side=side,
                trial=name,
                durations=lasting,
                kinematics=_joints(
                    trial["kinematics"], kinematics, strides, options, url, angle_units
                ),
                kinetics=None
                if kinetics is None
                else _joints(trial["kinetics"], kinetics, strides, options, url, 1.0),
                emg=_envelope(trial["emg"], emg, side, strides, options, url),
            )
        )
    return legs


def _check(
    legs: Sequence[_Leg], spec: TrialSpec, options: MoreiraOptions, files: FileAccess
) -> float:
    """Sign and unit checks on one leg's mean stride; the factor to N·m/kg."""
    url, side = spec.url, legs[0].side
    check_mean_stride_angles(
        mean_normalised_stride(np.concatenate([leg.kinematics for leg in legs])),
        url,
        assumption=f"[C] X sagittal, flexion/dorsiflexion positive ({side} leg)",
        level_walking=True,
    )
    if options.kinetics is None or legs[0].kinetics is None:
        return 1.0
    kinetics = mean_normalised_stride(np.concatenate([leg.kinetics for leg in legs]))
    check_internal_moments(
        kinetics, url, assumption=f"[C] internal torques, X flexion positive ({side} leg)"
    )
    scale = moment_scale(ankle_moment_peak(kinetics), url, assumption="[C] torques N.m/kg")
    mass = None
    if scale == "absolute" and options.layout.subject_info:
        mass = _body_mass(files, sibling_url(url, options.layout.subject_info), url)
    try:
        return kinetic_factor({scale}, options.kinetics.units, mass, url)
    except SourceError as exc:
        raise SourceError(url, f"[C] torques N.m/kg ({side} leg): {exc.problem}") from None


def _containers(options: MoreiraOptions) -> dict[str, str]:
    """Feature containers (MAT fields / ASCII folders) by role."""
    out = {
        "kinematics": str(options.kinematics.container if options.kinematics else ""),
        "emg": str(options.emg.container if options.emg else ""),
    }
    if options.kinetics is not None:
        out["kinetics"] = options.kinetics.container or "Torques"
    return out


def _cell_tables(cell: Any, url: str, where: str) -> list[Table]:
    """An N×2 cell {trial name, table} as [(name, table)]. mat-io flattens cells column-major,
    so the names come first, then the tables; a 1×2 cell gives [name, table]."""
    if isinstance(cell, pd.DataFrame):
        return [("", cell)]
    items = list(cell) if isinstance(cell, list) else [cell]
    names = [x for x in items if isinstance(x, str)]
    tables = [x for x in items if isinstance(x, pd.DataFrame)]
    if len(names) != len(tables) or len(names) + len(tables) != len(items):
        kinds = sorted({type(x).__name__ for x in items})
        raise SourceError(
            url,
            f"[C] {where} should be a cell {{trial name, MATLAB table}} per trial; holds {kinds}",
        )
    return list(zip(names, tables, strict=True))


def _durations(
    timing: Any, n_trials: int, options: MoreiraOptions, url: str, where: str
) -> np.ndarray:
    """(n_trials, strides_per_trial) stride durations in seconds, NaN where absent."""
    k_max = options.events.strides_per_trial
    columns = [options.events.duration_column.format(k=k) for k in range(1, k_max + 1)]
    out = np.full((n_trials, k_max), np.nan)
    for k, column in enumerate(columns):
        if isinstance(timing, pd.DataFrame):
            values = timing[column].to_numpy(np.float64) if column in timing.columns else None
        elif isinstance(timing, dict):
            values = (
                np.atleast_1d(np.asarray(timing[column], dtype=np.float64))
                if column in timing
                else None
            )
        else:
            raise SourceError(url, f"{where}.{options.events.durations_from} is not a table")
        if values is None:
            if k == 0:
                raise SourceError(url, f"[C] {where}: no {column} stride durations")
            continue
        if values.size != n_trials:
            raise SourceError(
                url,
                f"[C] {where}: {values.size} stride durations in {column} for {n_trials} trials",
            )
        out[:, k] = values
    return out


def _strides_present(table: pd.DataFrame, options: MoreiraOptions) -> list[int]:
    prefixes = [
        options.layout.stride_prefix.format(k=k)
        for k in range(1, options.events.strides_per_trial + 1)
    ]
    return [
        k
        for k, p in enumerate(prefixes, start=1)
        if any(str(c).startswith(p) for c in table.columns)
    ]


def _column(table: pd.DataFrame, name: str, url: str, where: str) -> np.ndarray:
    if name not in table.columns:
        have = ", ".join(map(str, list(table.columns)[:8]))
        raise SourceError(url, f"[C] no column {name!r} in {where} (found {have}, …)")
    return numeric(table, name, url)


def _joints(
    table: pd.DataFrame,
    joints: JointMap,
    strides: list[int],
    options: MoreiraOptions,
    url: str,
    factor: float,
) -> np.ndarray:
    """(N strides, P, 3, 3) from ``St<k>_<Joint>_<Axis>`` columns, canonical signs."""
    out = []
    for k in strides:
        prefix = options.layout.stride_prefix.format(k=k)
        columns = {
            (joint, plane): _column(table, f"{prefix}{label}_{axis}", url, joints.container or "")
            for joint, label in (joints.labels or {}).items()
            for plane, axis in (joints.axes or {}).items()
        }
        out.append(joint_array(columns, (len(table),), signs=joints.sign, factor=factor))
    return np.stack(out)


def _envelope(
    table: pd.DataFrame,
    emg: EmgMap,
    side: Side,
    strides: list[int],
    options: MoreiraOptions,
    url: str,
) -> np.ndarray:
    """(N strides, P, 13) envelopes from ``St<k>_<muscle>`` columns; they must be envelopes."""
    out = []
    for k in strides:
        prefix = options.layout.stride_prefix.format(k=k)
        columns = {
            muscle: _column(table, f"{prefix}{names[0]}", url, emg.container or "")
            if len(names) == 1
            else [_column(table, f"{prefix}{n}", url, emg.container or "") for n in names]
            for muscle, names in emg.names(side).items()
        }
        out.append(muscle_matrix(columns, (len(table),)))
    values = np.stack(out)
    check_envelope_share(
        values,
        url,
        assumption=f"[F] the EMG read from {emg.container!r} should be the envelope, not the "
        "filtered EMG (aliased at 1001 points per stride): point emg.container at the envelope",
        max_negative_share=_ENVELOPE_NEGATIVE,
    )
    return values


def _body_mass(files: FileAccess, info_url: str, url: str) -> float:
    """``Body Mass: <kg>`` from a participant's Metadata.txt."""
    try:
        with files.open(info_url, "rb") as handle:
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        raise SourceError(url, f"torques are N.m and {info_url} (body mass) is missing") from None
    match = re.search(r"Body\s*Mass\s*:\s*([\d.]+)", text)
    if match is None:
        raise SourceError(url, f"no 'Body Mass:' in {info_url}")
    return float(match.group(1))

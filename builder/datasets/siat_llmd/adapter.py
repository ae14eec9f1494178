"""SIAT-LLMD (Wei et al. 2023, Sci Data 10:358): one CSV per subject and movement.

Layout (catalogue ``siat_llmd2023``)::

    SIAT_LLMD20230404/SubXX/Data/SubXX_<MOV>_Data.csv
    SIAT_LLMD20230404/SubXX/Labels/SubXX_<MOV>_Label.csv

Data CSV: ``Time``, 8 kinematic columns (``Kinematic: left hip adduction angle`` …, OpenSim),
8 kinetic columns (``Kinetic: left hip adduction torque`` …) and 9 sEMG columns of the LEFT leg
(``sEMG: rectus femoris`` …), every column on the EMG time base. Label CSV: ``Time, Status,
Group``, one row per data row: ``Status`` is the gait phase that row lies in (1 heel strike →
max stance flexion, 2 → max stance extension, 3 → toe off, 4 → max swing flexion, 5 → heel
strike for WAK; 1 heel strike → toe off, 2, 3 for UPS/DNS), NaN outside labelled cycles; ``A``/``R``
(active/rest) in the non-gait movements, which therefore have no strides.

What the adapter does, and what it checks on the data (the [F/C]/[I] facts of DATASETS.md §13):

- the sampling rate (1920 or 1926 Hz are both reported) is derived from ``Time`` and must be
  uniform; the label file must share the data file's time base row for row;
- a heel strike is a row where ``Status`` enters 1; a stride runs from one heel strike to the
  next within the same ``Group`` through every phase in order (cycles of different groups are
  separate walking passes and are never joined into a stride);
- ``Group`` 1–5 are right-leg cycles and 6–10 left-leg cycles [F/C]: checked on level walking,
  where the leg that strikes has the more flexed hip of the two;
- OpenSim signs (knee flexion, ankle dorsiflexion, hip flexion positive) are checked on the
  mean stride; moment units are not documented: per kg (≈1 N·m/kg at the ankle) or N·m
  (≈70 N·m) is decided by magnitude, and N·m without a readable body mass is an error; the
  moments must be internal (plantarflexor ankle moment negative in stance);
- EMG is the left leg only: the right leg's strides carry kinematics and kinetics only. The
  upper and lower tibialis anterior are averaged (explicit merge); the semimembranosus feeds the
  semitendinosus/semimembranosus slot; the tensor fascia lata has no slot.

Table reading and rate derivation are :mod:`builder.formats.tables`'s, cropping
:mod:`builder.datasets.segments`'s and the gait-pattern checks on mean strides
:mod:`builder.processing.checks`'s (shared with the Hu/ENABL3S and Moreira adapters).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from builder.conventions import ANGLE_UNITS, JOINTS, MOMENT_UNITS, PLANES, Side, angle_factor
from builder.datasets.base import AdapterOptions, SourceAdapter
from builder.datasets.columns import emg_matrix, joint_matrix
from builder.datasets.options import DatasetOptions, JointMap
from builder.datasets.segments import CROP_MARGIN_S, crop
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.formats.tables import (
    numeric,
    rate_from_times,
    read_table,
    require_columns,
    sibling_url,
)
from builder.processing.checks import (
    ankle_moment_peak,
    check_internal_moments,
    check_mean_stride_angles,
    kinetic_factor,
    mean_stride,
    moment_scale,
)
from builder.records import SideRecording, TimeSeries, TrialRecording, TrialSpec

_KNEE = JOINTS.index("knee")
_FLEX = PLANES.index("flexion")


def _scaled(series: TimeSeries | None, factor: float) -> TimeSeries | None:
    if series is None or factor == 1.0:
        return series
    return TimeSeries(series.data * factor, series.rate_hz, series.start_s, series.units)


# --------------------------------------------------------------------------------------------
# SIAT-LLMD
# --------------------------------------------------------------------------------------------


class SiatEvents(AdapterOptions):
    """Where the gait events live (Label CSV) and what its codes mean."""

    kind: str = "labels"
    file: str = "../Labels/{name}_Label.csv"  # {name} = SubXX_<MOV>
    time_column: str = "Time"
    status_column: str = "Status"
    group_column: str = "Group"
    heel_strike_status: int = 1
    phases: dict[str, int] = Field(default_factory=lambda: {"WAK": 5, "UPS": 3, "DNS": 3})
    toe_off_status: dict[str, int] = Field(default_factory=lambda: {"WAK": 4, "UPS": 2, "DNS": 2})
    groups: dict[Side, list[int]]
    non_gait_status: list[str] = Field(default_factory=lambda: ["A", "R"])
    level_walking: list[str] = Field(default_factory=lambda: ["WAK"])


class SiatOptions(DatasetOptions):
    layout: dict[str, Any] = Field(default_factory=dict)
    events: SiatEvents


Strides = dict[Side, list[tuple[int, np.ndarray]]]  # side -> [(group, heel-strike times)]


class SiatLlmdAdapter(SourceAdapter[SiatOptions]):
    name = "siat_llmd"
    options_model = SiatOptions
    emg_kinds = frozenset({"raw"})

    def read(
        self, spec: TrialSpec, options: SiatOptions, files: FileAccess
    ) -> list[TrialRecording]:
        events, url = options.events, spec.url
        name = posixpath.basename(url).removesuffix("_Data.csv")
        movement = name.rpartition("_")[2]
        label_url = sibling_url(url, events.file.format(name=name))
        labels = _gait_labels(files, label_url, url, movement, events)

        data = read_table(files, url, what="data CSV")
        time_column = options.layout.get("time_column", "Time")
        require_columns(data, [time_column], url, "time column [F]")
        times = numeric(data, time_column, url)
        rate, start = rate_from_times(times, url, time_column)
        notes = [f"sampling rate {rate:.3f} Hz from the {time_column!r} column"]
        label_times = numeric(labels, events.time_column, label_url)
        if label_times.size != times.size or not np.allclose(
            label_times, times, atol=0.5 / rate, rtol=0
        ):
            # Either file may be the broken one (truncated, another trial's): name both.
            raise SourceError(
                url,
                f"[F/C] its label file {label_url} does not share its time base "
                f"({label_times.size} label rows vs {times.size} data rows)",
            )

        status = numeric(labels, events.status_column, label_url)
        group = numeric(labels, events.group_column, label_url)
        runs, skipped = _labelled_cycles(
            status, group, events.phases[movement], events.heel_strike_status
        )
        if skipped:
            notes.append(f"{skipped} labelled cycle(s) whose phases do not run in order skipped")
        side_of = _group_sides(events.groups, runs, label_url)
        strides: Strides = {s: [] for s in options.sides}
        for group_id, rows in runs:
            if side_of[group_id] in strides:
                strides[side_of[group_id]].append((group_id, times[rows]))
        if not any(strides.values()):
            raise SourceError(url, "no complete labelled gait cycle (heel strike to heel strike)")

        emg = _emg_series(data, options, url, rate, start)
        kinematics = {
            s: _joint_series(data, options.kinematics, s, url, rate, start, angles=True)
            for s in options.sides
        }
        kinetics = {
            s: _joint_series(data, options.kinetics, s, url, rate, start, angles=False)
            for s in options.sides
        }
        factor = _check_conventions(
            kinematics,
            kinetics,
            strides,
            url,
            movement in events.level_walking,
            options,
            spec.subject,
        )
        kinetics = {s: _scaled(series, factor) for s, series in kinetics.items()}

        to_status = events.toe_off_status.get(movement)
        toe_offs = times[_onsets(status, to_status)] if to_status is not None else np.empty(0)
        sides = []
        for side in options.sides:
            for _, hs in strides[side]:  # one recording per run: never joined across groups
                lo, hi = hs[0] - CROP_MARGIN_S, hs[-1] + CROP_MARGIN_S
                sides.append(
                    SideRecording(
                        side=side,
                        emg=crop(emg, lo, hi) if side == "L" else None,  # left leg only [F]
                        kinematics=crop(kinematics[side], lo, hi),
                        kinetics=crop(kinetics[side], lo, hi),
                        heel_strikes_s=hs,
                        toe_offs_s=toe_offs[(toe_offs > hs[0]) & (toe_offs < hs[-1])],
                    )
                )
        return [
            TrialRecording(
                sides=tuple(sides),
                emg_kind=spec.emg_kind,
                event_source="labels",
                notes=tuple(notes),
            )
        ]


def _gait_labels(
    files: FileAccess, label_url: str, url: str, movement: str, events: SiatEvents
) -> pd.DataFrame:
    """The label table of a gait movement; a non-gait movement (A/R labels) is an error that
    says it has no strides."""
    labels = read_table(files, label_url, what="label CSV", low_memory=False)
    require_columns(
        labels,
        [events.time_column, events.status_column, events.group_column],
        label_url,
        "Label CSV columns Time, Status, Group [F]",
    )
    text = labels[events.status_column].dropna().astype(str).str.strip()
    if len(text) and text.isin(events.non_gait_status).all():
        raise SourceError(
            url,
            f"{movement} is a non-gait movement: its labels are {'/'.join(sorted(set(text)))} "
            "(active/rest), not gait phases, so it has no strides to segment",
        )
    if movement not in events.phases:
        raise SourceError(
            url,
            f"movement {movement!r} has no gait-phase definition (events.phases knows "
            f"{sorted(events.phases)}) but its labels are not A/R either",
        )
    return labels


def _check_conventions(
    kinematics: Mapping[Side, TimeSeries | None],
    kinetics: Mapping[Side, TimeSeries | None],
    strides: Strides,
    url: str,
    level: bool,
    options: SiatOptions,
    subject: str,
) -> float:
    """Check the angle signs, the Group → side rule and the moments on each leg's mean stride;
    return the factor that brings the moments to N·m/kg.

    The knee sign goes first (it does not depend on the groups, and the Group check relies on
    it); then the Group check (a swapped leg would otherwise fail as a misplaced knee peak);
    then the full angle pattern and the moments."""
    means = {}
    for side, runs in strides.items():
        if runs:
            starts = np.concatenate([hs[:-1] for _, hs in runs])
            ends = np.concatenate([hs[1:] for _, hs in runs])
            means[side] = (
                mean_stride(kinematics[side], starts, ends),
                mean_stride(kinetics[side], starts, ends),
            )
    for side, (angles, _) in means.items():
        check_mean_stride_angles(
            angles,
            url,
            assumption=f"[I] OpenSim angle signs ({side} leg)",
            level_walking=False,
            joints=("knee",),
        )
    _check_group_sides(kinematics, strides, url, level)
    scales = set()
    for side, (angles, moments) in means.items():
        check_mean_stride_angles(
            angles, url, assumption=f"[I] OpenSim angle signs ({side} leg)", level_walking=level
        )
        check_internal_moments(
            moments, url, assumption=f"[I] internal moments, OpenSim signs ({side} leg)"
        )
        peak = ankle_moment_peak(moments)
        scales.add(moment_scale(peak, url, assumption="[I] torque units not documented"))
    joints = options.kinetics
    masses = (joints.body_mass or {}) if joints else {}
    return kinetic_factor(scales, joints.units if joints else None, masses.get(subject), url)


def _labelled_cycles(
    status: np.ndarray, group: np.ndarray, n_phases: int, heel_strike: int
) -> tuple[list[tuple[int, np.ndarray]], int]:
    """Runs of consecutive complete cycles as (group, row indices of their heel strikes), and
    how many labelled cycles were skipped because their phases do not run in order.

    A cycle starts at a row entering ``heel_strike`` (from another phase, an unlabelled row or
    another group) and ends where its last phase ends: at the next cycle's heel strike, or at
    the first row after it that is unlabelled or of another group (the last cycle of a group).
    It counts only if its phases run heel_strike, heel_strike + 1, …, n_phases in order within
    one group. The returned row of a cycle's end is the first row after it.
    """
    n = status.size
    labelled = np.isfinite(status) & np.isfinite(group)
    same = np.zeros(n, bool)  # row i continues the labelled block of row i - 1
    same[1:] = labelled[1:] & labelled[:-1] & (group[1:] == group[:-1])
    entering = labelled & (status == heel_strike)
    entering[1:] &= ~same[1:] | (status[:-1] != heel_strike)
    # Block boundaries: a heel strike, or a row that does not continue the previous block.
    starts = np.flatnonzero(entering)
    breaks = np.flatnonzero(~same)
    expected = np.arange(heel_strike, n_phases + 1, dtype=np.float64)
    runs: list[tuple[int, list[int]]] = []
    skipped = 0
    for a in starts:
        later = [x for x in (starts[starts > a][:1], breaks[breaks > a][:1]) if x.size]
        b = int(min(x[0] for x in later)) if later else n
        if b >= n:  # the file ends inside the cycle: its end has no time
            continue
        block = status[a:b]
        phases = block[np.concatenate([[True], block[1:] != block[:-1]])]
        if phases.size != expected.size or not (phases == expected).all():
            skipped += 1
            continue
        g = int(group[a])
        if runs and runs[-1][0] == g and runs[-1][1][-1] == a:
            runs[-1][1].append(b)
        else:
            runs.append((g, [int(a), b]))
    return [(g, np.asarray(rows)) for g, rows in runs], skipped


def _group_sides(
    groups: Mapping[Side, list[int]], runs: list[tuple[int, np.ndarray]], url: str
) -> dict[int, Side]:
    side_of = {g: side for side, ids in groups.items() for g in ids}
    unknown = sorted({g for g, _ in runs} - set(side_of))
    if unknown:
        raise SourceError(
            url,
            f"[F/C] Group 1-5 right, 6-10 left: found labelled cycles in group(s) {unknown}",
        )
    return side_of


def _onsets(status: np.ndarray, code: int) -> np.ndarray:
    entering = status == code
    entering[1:] &= status[:-1] != code
    return np.flatnonzero(entering)


def _emg_series(
    data: pd.DataFrame, options: DatasetOptions, url: str, rate: float, start: float
) -> TimeSeries | None:
    if options.emg is None:
        return None
    matrix = emg_matrix(data, options.emg.names("L"), url, "sEMG columns 17-25, left leg [F]")
    return TimeSeries(matrix, rate, start, options.emg.units or "unknown")


def _joint_series(
    data: pd.DataFrame,
    joints: JointMap | None,
    side: Side,
    url: str,
    rate: float,
    start: float,
    *,
    angles: bool,
) -> TimeSeries | None:
    """(T, 3, 3) angles in degrees or moments in the file's unit, canonical signs."""
    if joints is None:
        return None
    factor = angle_factor(joints.units or "deg") if angles else 1.0
    array = joint_matrix(data, joints, side, url, f"{joints.convention} columns [F]", factor)
    if array is None:
        return None
    return TimeSeries(array, rate, start, ANGLE_UNITS if angles else MOMENT_UNITS)


def _check_group_sides(
    kinematics: Mapping[Side, TimeSeries | None],
    strides: Mapping[Side, list[tuple[int, np.ndarray]]],
    url: str,
    level: bool,
) -> None:
    """[F/C] Group → side: in level walking the striking leg's knee is near full extension
    while the other knee flexes before its toe off (≈ +30° more); needs positive knee flexion,
    which is checked first."""
    left, right = kinematics.get("L"), kinematics.get("R")
    if not level or left is None or right is None:
        return
    for side, groups in strides.items():
        if not groups:
            continue
        hs = np.concatenate([g[1] for g in groups])
        index = np.clip(np.round((hs - left.start_s) * left.rate_hz).astype(int), 0, None)
        other = right if side == "L" else left
        own = left if side == "L" else right
        lead = other.data[index, _KNEE, _FLEX] - own.data[index, _KNEE, _FLEX]
        if np.isfinite(lead).all() and float(np.mean(lead)) < 0:
            ids = sorted({g for g, _ in groups})
            raise SourceError(
                url,
                f"[F/C] Group 1-5 right, 6-10 left: at the heel strikes of group(s) {ids} "
                f"({'left' if side == 'L' else 'right'} by that rule) that knee is the more "
                f"flexed by {-float(np.mean(lead)):.0f} deg on average: the other leg strikes",
            )

"""Lencioni et al. 2019 (Sci Data, s41597-019-0323-z): one MAT file per subject.

``<subject>.mat`` holds a struct ``s`` with ``s.EMGFeq``, ``s.KinFreq`` and ``s.Data``, one
entry per gait cycle of the recorded (dominant) leg: ``Task`` (activity token), ``Ang``
(12 × 101: Pelvis, Hip, Knee, Ankle × Flx, Add, Rot), ``Mom`` (9 × 101: Hip, Knee, Ankle ×
Flx, Add, Rot), ``Grf`` and ``EMG`` (8 × N at ``EMGFeq``, heel strike to heel strike).

Output: one recording per entry (``trial`` = ``Data<i>``), one stride on the leg named by
``s.<side_field>``, with the duration (N − 1) / EMGFeq (both heel strikes sampled), the
activity token (compared without spaces, as the foundation did) through the catalogue's
``activity_map`` and ``layout.condition_map``, population ``children`` below ``child_age``.
Times are not absolute (each entry is a lone cycle).

Checked on the data (a broken assumption is a :class:`SourceError` naming it):

- shapes: Ang/Mom have the documented rows × 101 points (a transposed copy is accepted: it is
  unambiguous), EMG has one row per ``emg.order`` name and a length that varies from cycle to
  cycle (a constant length means it was time-normalised, not sampled at EMGFeq);
- the recorded side: ``s.<side_field>`` is L/R (else ``side_default``), never guessed;
- EMG kind: non-negative and smooth for ``emg_kind: envelope``, signed for ``raw``;
- EMG row order [C] on the reference (level-walking) cycles: the TA row is more active in
  swing (62-85 %) than in mid-stance (15-45 %), the SOL row more in terminal stance
  (30-55 %) than in swing (65-90 %);
- kinematics: peak swing knee flexion positive (flexion-positive sign);
- moments: units decided by the magnitude of the walking hip flexion peak when the catalogue
  says ``units: null`` (N·m/kg ~1, N·mm/kg ~1000, N·m ~20-100 with ``s.<mass_field>``), and
  checked against it otherwise; internal sign (ankle plantarflexor moment negative at 40-55 %).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from builder.conventions import MUSCLES, Side, angle_factor, moment_factor
from builder.datasets.base import AdapterOptions, SourceAdapter
from builder.datasets.mapping import joint_array
from builder.datasets.options import DatasetOptions, JointMap
from builder.datasets.segments import cycle_sides
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.formats.matlab import field, load_mat
from builder.processing.checks import (
    check_emg_kind,
    check_swing_knee_flexion,
    check_walking_moments,
    moment_units_by_magnitude,
    phase_mean,
)
from builder.records import TrialRecording, TrialSpec

_MOVING_AVERAGE_S = 0.05  # crude envelope of raw EMG for the row-order check


class LencioniLayout(AdapterOptions):
    format: Literal["mat-v5", "mat-v7.3"] = "mat-v5"
    per_file: Literal["subject"] = "subject"
    variable: str = "s"
    entries: str = "Data"
    inside: str = ""
    activity_from: str = "s.Data(i).Task"
    side_field: str | None = "Side"
    side_default: Side | None = None
    age_field: str | None = "Age"
    child_age: float = 18.0
    mass_field: str | None = "Mass"
    reference_tasks: list[str] = Field(default_factory=lambda: ["Walking"])
    condition_map: dict[str, str] = Field(default_factory=dict)


class LencioniEvents(AdapterOptions):
    kind: Literal["pre_segmented"] = "pre_segmented"
    cycle: Literal["data_entry"] = "data_entry"
    duration_from: Literal["emg_samples"] = "emg_samples"


class LencioniOptions(DatasetOptions):
    layout: LencioniLayout = Field(default_factory=LencioniLayout)
    events: LencioniEvents = Field(default_factory=LencioniEvents)


class _Entry:
    def __init__(
        self,
        index: int,
        task: str,
        ang: np.ndarray,
        mom: np.ndarray | None,
        emg: np.ndarray | None,
    ) -> None:
        self.index, self.task = index, task
        self.ang, self.mom, self.emg = ang, mom, emg  # (rows, P), (rows, P), (N, channels)


class LencioniAdapter(SourceAdapter[LencioniOptions]):
    name = "lencioni"
    options_model = LencioniOptions
    emg_kinds = frozenset({"envelope", "raw"})

    def read(
        self, spec: TrialSpec, options: LencioniOptions, files: FileAccess
    ) -> list[TrialRecording]:
        url, layout = spec.url, options.layout
        data = load_mat(files.local_path(url), url, variables=[layout.variable])
        s = field(data, layout.variable, url, why="the subject struct")
        emg_hz = _rate(data, options, "emg_hz", url)
        side = _side(s, options, url)
        population = _population(s, options, spec)
        raw_entries = field(s, layout.entries, url, why="one entry per gait cycle")
        raw_entries = [raw_entries] if isinstance(raw_entries, dict) else list(raw_entries)
        if not raw_entries:
            raise SourceError(url, f"{layout.variable}.{layout.entries} is empty")

        if options.emg is None:
            raise SourceError(url, "cycle durations come from the EMG samples: emg is required")
        order = _emg_order(options, side)
        points = options.rates.points_per_stride.get("kinematics") or 101
        entries = [_entry(e, i, options, order, points, url) for i, e in enumerate(raw_entries, 1)]
        lengths = {e.emg.shape[0] for e in entries if e.emg is not None}
        if len(entries) >= 3 and len(lengths) == 1:
            raise SourceError(
                url,
                f"[C] EMG 8 x N at s.EMGFeq: every cycle has {lengths.pop()} EMG samples, so the "
                "EMG looks time-normalised, not sampled at EMGFeq",
            )
        reference = [e for e in entries if e.task in layout.reference_tasks]
        notes: list[str] = []
        emg_arrays = [e.emg for e in entries if e.emg is not None]
        if emg_arrays:
            check_emg_kind(emg_arrays, spec.emg_kind, url, "[C] Data(i).EMG is processed")
            _check_emg_order(
                [e.emg for e in reference if e.emg is not None],
                order,
                emg_hz,
                spec.emg_kind,
                url,
                notes,
            )
        kin_factor = angle_factor(options.kinematics.units or "deg") if options.kinematics else 1.0
        mom_factor, unit_note = _moment_factor(s, reference, options, url)
        notes += unit_note

        kinematics = {
            e.index: _joints(e.ang, options.kinematics, side, kin_factor) for e in entries
        }
        kinetics = {e.index: _joints(e.mom, options.kinetics, side, mom_factor) for e in entries}
        ref_kin = [k for e in reference if (k := kinematics[e.index]) is not None]
        ref_mom = [m for e in reference if (m := kinetics[e.index]) is not None]
        if not reference:
            notes.append(f"no {layout.reference_tasks} cycles: shape checks only")
        if ref_kin:
            check_swing_knee_flexion(
                np.concatenate(ref_kin), url, "[I] flexion-positive knee angles"
            )
        if ref_mom:
            check_walking_moments(
                np.concatenate(ref_mom),
                url,
                what="the moments",
                assumption="[I] moment units and internal sign",
            )

        recordings = []
        for entry in entries:
            assert entry.emg is not None  # read with the EMG map the entry must have
            # Whole milliseconds, rounded down (the EMG still covers the stride): the toolkit's
            # 1 kHz resampling drops a stride's last fractional millisecond, and a stride that
            # ends inside it gets no EMG at all (mask False). Exact when EMGFeq is 1000 Hz.
            duration = np.floor((entry.emg.shape[0] - 1) / emg_hz * 1000 + 1e-6) / 1000
            emg = [_muscles(entry.emg, order, options, side)]
            strides = cycle_sides(
                side,
                np.array([duration]),
                kinematics=kinematics[entry.index],
                kinetics=kinetics[entry.index],
                emg=emg,
                emg_rate_hz=emg_hz,
                emg_units=(options.emg.units or "a.u.") if options.emg else "a.u.",
            )
            recordings.append(
                TrialRecording(
                    sides=tuple(strides),
                    emg_kind=spec.emg_kind,
                    event_source="pre_segmented",
                    notes=tuple(notes) if entry is entries[0] else (),
                    meta={
                        "activity": entry.task,
                        "trial": f"Data{entry.index:02d}",
                        "condition": layout.condition_map.get(entry.task, spec.condition),
                        "population": population,
                    },
                    times_absolute=False,
                )
            )
        return recordings


# --- subject-level fields ---------------------------------------------------------------------


def _rate(data: dict, options: LencioniOptions, name: str, url: str) -> float:
    path = options.rates.from_file.get(name)
    value = field(data, path, url, why=f"the {name} rate") if path else getattr(options.rates, name)
    try:
        rate = float(np.asarray(value, dtype=float).ravel()[0])
    except (TypeError, ValueError, IndexError):
        rate = float("nan")
    if not rate > 0:
        raise SourceError(url, f"{path or 'rates.' + name} is {value!r}, not a rate in Hz")
    return rate


def _side(s: dict, options: LencioniOptions, url: str) -> Side:
    layout = options.layout
    value = s.get(layout.side_field) if layout.side_field else None
    if isinstance(value, str) and value.strip().casefold() in ("l", "left", "r", "right"):
        side: Side = "L" if value.strip().casefold().startswith("l") else "R"
    elif value is None and layout.side_default is not None:
        side = layout.side_default
    else:
        raise SourceError(
            url,
            f"[I] the recorded (dominant) side must be read from the subject data: "
            f"s.{layout.side_field} is {value!r} (expected L/R; or set layout.side_default)",
        )
    if side not in options.sides:
        raise SourceError(url, f"the recorded side {side} is not in sides {options.sides}")
    return side


def _population(s: dict, options: LencioniOptions, spec: TrialSpec) -> str:
    name = options.layout.age_field
    try:
        age = float(np.asarray(s.get(name), dtype=float).ravel()[0]) if name else float("nan")
    except (TypeError, ValueError, IndexError):
        age = float("nan")
    return "children" if age < options.layout.child_age else spec.population


def _emg_order(options: LencioniOptions, side: Side) -> list[str]:
    if options.emg is None or options.emg.order is None:
        return []
    order = options.emg.order
    return list(order[side] if isinstance(order, dict) else order)


# --- entries ----------------------------------------------------------------------------------


def _entry(
    raw: Any, index: int, options: LencioniOptions, order: list[str], points: int, url: str
) -> _Entry:
    if not isinstance(raw, dict):
        raise SourceError(url, f"Data({index}) is not a struct")
    where = f"Data({index})"
    task = str(field(raw, "Task", url, why="the activity")).replace(" ", "")
    ang = _rows(field(raw, "Ang", url), points, _min_rows(options.kinematics), f"{where}.Ang", url)
    mom = None
    if options.kinetics is not None:
        mom = _rows(
            field(raw, "Mom", url), points, _min_rows(options.kinetics), f"{where}.Mom", url
        )
    emg = None
    if options.emg is not None:
        emg = np.asarray(field(raw, "EMG", url), dtype=float)
        n = len(order)
        if emg.ndim == 2 and emg.shape[0] == n:
            emg = emg.T
        elif not (emg.ndim == 2 and emg.shape[1] == n):
            raise SourceError(url, f"[C] {where}.EMG is {n} x N: found shape {emg.shape}")
        if emg.shape[0] < 2:
            raise SourceError(url, f"{where}.EMG has {emg.shape[0]} samples")
    return _Entry(index, task, ang, mom, emg)


def _min_rows(joints: JointMap | None) -> int:
    columns = (joints.columns if joints else None) or {}
    rows = [int(r) for j in columns.values() for p in j.values() for r in p.values()]
    return max(rows) + 1 if rows else 0


def _rows(value: Any, points: int, min_rows: int, what: str, url: str) -> np.ndarray:
    """(rows, points): the documented layout, or its transpose when that is unambiguous."""
    array = np.asarray(value, dtype=float)
    if array.ndim == 2 and array.shape[1] == points and array.shape[0] >= min_rows:
        return array
    if array.ndim == 2 and array.shape[0] == points and array.shape[1] >= min_rows:
        return array.T
    raise SourceError(
        url, f"[C] {what} is >= {min_rows} rows x {points} points: found {array.shape}"
    )


def _joints(
    rows: np.ndarray | None, joints: JointMap | None, side: Side, factor: float
) -> np.ndarray | None:
    """(1, P, 3, 3) canonical curves of one cycle."""
    if rows is None or joints is None:
        return None
    columns = {key: rows[int(row)] for key, row in joints.component_columns(side).items()}
    return joint_array(columns, (1, rows.shape[1]), signs=joints.sign, factor=factor)


def _muscles(emg: np.ndarray, order: list[str], options: LencioniOptions, side: Side) -> np.ndarray:
    """(N, 13) in canonical muscle order; unlisted muscles NaN."""
    assert options.emg is not None  # read refuses an entry without an EMG map
    out = np.full((emg.shape[0], len(MUSCLES)), np.nan)
    for muscle, names in options.emg.names(side).items():
        picks = [emg[:, order.index(name)] for name in names if name in order]
        if picks:
            out[:, MUSCLES.index(muscle)] = np.mean(picks, axis=0)
    return out


# --- checks -------------------------------------------------------------------------------------


def _moment_factor(
    s: dict, reference: list[_Entry], options: LencioniOptions, url: str
) -> tuple[float, list[str]]:
    joints = options.kinetics
    if joints is None:
        return 1.0, []
    stated = joints.units
    hip_row = joints.component_columns("L").get(("hip", "flexion"))
    if hip_row is None:
        hip_row = joints.component_columns("R").get(("hip", "flexion"))
    moments = [e.mom for e in reference if e.mom is not None]
    decided = None
    peak = float("nan")
    if moments and hip_row is not None:
        peak = float(np.median([np.nanmax(np.abs(m[int(hip_row)])) for m in moments]))
        decided = moment_units_by_magnitude(peak)
    notes = []
    if stated is None:
        if not moments:
            raise SourceError(
                url,
                "[I] moment units unknown and not decidable: no cycle of the reference tasks "
                f"{options.layout.reference_tasks} (layout.reference_tasks) to measure",
            )
        if decided is None:
            raise SourceError(
                url,
                f"[I] moment units unknown and not decidable: walking peak |hip flexion "
                f"moment| is {peak:.3g} (N.m/kg ~1, N.mm/kg ~1000, N.m ~20-100)",
            )
        unit = decided
        notes.append(f"moment units decided by magnitude: {unit} (walking hip peak {peak:.3g})")
    else:
        unit = stated
        if decided is not None and decided.replace(".", "") != stated.replace(".", ""):
            raise SourceError(
                url,
                f"kinetics.units says {stated}, but the walking peak |hip flexion moment| "
                f"{peak:.3g} means {decided}",
            )
    mass = None
    if options.layout.mass_field:
        try:
            mass = float(np.asarray(s.get(options.layout.mass_field), dtype=float).ravel()[0])
        except (TypeError, ValueError, IndexError):
            mass = None
    try:
        return moment_factor(unit, mass), notes
    except ValueError as error:
        raise SourceError(url, f"kinetics: {error} (s.{options.layout.mass_field})") from None


def _check_emg_order(
    cycles: list[np.ndarray], order: list[str], rate: float, kind: str, url: str, notes: list[str]
) -> None:
    """[C] row order: TA active in swing, SOL in terminal stance (reference cycles)."""
    if not cycles or "TA" not in order or "SOL" not in order:
        notes.append("EMG row order not checked (no level-walking cycle or no TA/SOL row)")
        return
    profiles = []
    for emg in cycles:
        x = np.abs(emg) if kind == "raw" else emg
        if kind == "raw":
            width = max(1, round(_MOVING_AVERAGE_S * rate))
            kernel = np.ones(width) / width
            x = np.stack([np.convolve(c, kernel, mode="same") for c in x.T], axis=1)
        grid = np.linspace(0.0, 1.0, 101)
        phase = np.linspace(0.0, 1.0, x.shape[0])
        profiles.append(np.stack([np.interp(grid, phase, c) for c in x.T], axis=1))
    curves = np.stack(profiles)  # (cycles, 101, channels)
    ta, sol = order.index("TA"), order.index("SOL")
    ta_ratio = phase_mean(curves[..., ta], 0.62, 0.85) / phase_mean(curves[..., ta], 0.15, 0.45)
    sol_ratio = phase_mean(curves[..., sol], 0.30, 0.55) / phase_mean(curves[..., sol], 0.65, 0.90)
    if not (ta_ratio >= 1.3 and sol_ratio >= 2.0):
        raise SourceError(
            url,
            f"[C] EMG row order {', '.join(order)}: row {ta + 1} (TA) swing/mid-stance activity "
            f"ratio {ta_ratio:.2f} (expected >= 1.3), row {sol + 1} (SOL) terminal-stance/swing "
            f"ratio {sol_ratio:.2f} (expected >= 2)",
        )

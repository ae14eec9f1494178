"""Hu, Rouse & Hargrove 2018 — ENABL3S: bilateral EMG, IMU and goniometer circuits at 1 kHz.

Layout (catalogue ``hu2018_enabl3s``)::

    ABxxx/ABxxx/Processed/ABxxx_Circuit_NNN_post.csv     (Raw/..._raw.csv: unfiltered copy)

One row per 1 kHz sample; 52 signal columns — 30 IMU (``Right_Shank_Ax`` … ``Waist_Gx``),
14 EMG (``Right_TA, Right_MG, Right_SOL, Right_BF, Right_ST, Right_VL, Right_RF``, then
``Left_*``), 4 goniometers (``Right_Ankle, Right_Knee, Left_Ankle, Left_Knee``) and their 4
velocities — then ``Mode`` and 8 event columns: ``Right_Heel_Contact``,
``Right_Heel_Contact_Trigger``, ``Right_Toe_Off``, ``Right_Toe_Off_Trigger`` and the same for
``Left``. An event column is a list of sample indices in its first rows (blank below); its
trigger column gives each event a 4-digit code whose 1st and 3rd digits are the modes before
and after the event (``1311`` a heel contact in level walking, ``1341`` one from level walking
into stair ascent).

A circuit mixes activities, so strides are labelled from ``Mode`` (0 sit, 1 level walking,
2 ramp ascent, 3 ramp descent, 4 stair ascent, 5 stair descent, 6 stand): a stride whose samples
all carry one mode takes it, a stride across a mode change is a ``transition``. Each activity
becomes one recording (``meta`` activity and incline); consecutive strides of one activity
share one cropped stretch of signal so that the EMG chain runs once per stretch.

Checked on the data: event columns are index lists (numbers, then only blanks), whole,
increasing, and inside the circuit under the configured base (index 0 under base 1, or beyond
the last row, is an error); where transition triggers coincide with ``Mode`` changes, the change
must fall on the event's sample as the base reads it (a change one sample later means 0-based
indices); trigger codes are modes; the goniometer signs (knee flexion and ankle dorsiflexion
positive after the catalogue's ``sign``) and units (degrees) on the mean level-walking stride.
The processed EMG is already band-passed 20–350 Hz and notched at 60/180/300 Hz: it is still
raw-kind EMG (unrectified), and the pipeline's hum detection finds no line to notch.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from builder.conventions import ANGLE_UNITS, Side, angle_factor
from builder.datasets.base import AdapterOptions, SourceAdapter
from builder.datasets.columns import emg_matrix, joint_matrix
from builder.datasets.options import DatasetOptions
from builder.datasets.segments import CROP_MARGIN_S, crop
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.formats.tables import numeric, read_table, require_columns
from builder.processing.checks import check_mean_stride_angles, mean_stride
from builder.records import SideRecording, TimeSeries, TrialRecording, TrialSpec

TRANSITION = "transition"


class HuEvents(AdapterOptions):
    kind: Literal["heel_strike_indices"] = "heel_strike_indices"
    columns: dict[Side, str]  # heel contacts
    toe_off_columns: dict[Side, str] = Field(default_factory=dict)
    trigger_columns: dict[Side, str] = Field(default_factory=dict)
    toe_off_trigger_columns: dict[Side, str] = Field(default_factory=dict)
    index_base: Literal[0, 1] = 1
    mode_column: str = "Mode"
    modes: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4, 5, 6])
    level_walking_modes: list[int] = Field(default_factory=lambda: [1])


class HuOptions(DatasetOptions):
    layout: dict[str, Any] = Field(default_factory=dict)
    events: HuEvents


class HuEnabl3sAdapter(SourceAdapter[HuOptions]):
    name = "hu_enabl3s"
    options_model = HuOptions
    emg_kinds = frozenset({"raw"})

    def read(self, spec: TrialSpec, options: HuOptions, files: FileAccess) -> list[TrialRecording]:
        events, url = options.events, spec.url
        rate = options.rates.emg_hz or 1000.0
        if options.rates.kinematics_hz not in (None, rate):
            raise SourceError(url, "EMG and goniometers must share the 1 kHz time base [F]")
        table = read_table(files, url, what="circuit CSV", low_memory=False)
        event_columns = [
            *events.columns.values(),
            *events.toe_off_columns.values(),
            *events.trigger_columns.values(),
            *events.toe_off_trigger_columns.values(),
        ]
        require_columns(table, [events.mode_column, *event_columns], url, "mode and events [F]")
        n = len(table)
        mode = numeric(table, events.mode_column, url)
        bad = sorted({float(m) for m in mode if not np.isfinite(m) or m not in events.modes})
        if bad:
            raise SourceError(
                url, f"[C] Mode codes {events.modes}: found {bad[:5]} in {events.mode_column!r}"
            )
        layout_inclines = options.layout.get("mode_incline_deg", {})
        inclines = {str(k): float(v) for k, v in layout_inclines.items()}

        base = events.index_base
        contacts: dict[Side, np.ndarray] = {}  # 0-based rows
        toe_offs: dict[Side, np.ndarray] = {}
        transitions: list[tuple[int, int, int]] = []  # (row, mode before, mode after)
        for side in options.sides:
            contacts[side] = _indices(table, events.columns[side], n, base, url) - base
            toe_offs[side] = (
                _indices(table, events.toe_off_columns[side], n, base, url) - base
                if side in events.toe_off_columns
                else np.empty(0, np.int64)
            )
            for rows, triggers in (
                (contacts[side], events.trigger_columns),
                (toe_offs[side], events.toe_off_trigger_columns),
            ):
                if side in triggers:
                    codes = _triggers(table, triggers[side], rows.size, events.modes, url)
                    before, after = codes // 1000, (codes // 10) % 10
                    transitions += [
                        (int(r), int(b), int(a))
                        for r, b, a in zip(rows, before, after, strict=True)
                        if b != a
                    ]
        _check_index_base(mode, transitions, base, url)
        if not any(c.size > 1 for c in contacts.values()):
            raise SourceError(url, "fewer than two heel contacts per leg: no stride")

        emg = {s: self._emg(table, options, s, rate, url) for s in options.sides}
        angles = {s: self._angles(table, options, s, rate, url) for s in options.sides}
        self._check_goniometers(angles, contacts, mode, events, rate, url)

        by_activity: dict[str, list[SideRecording]] = {}
        for side in options.sides:
            toe_off_s = toe_offs[side] / rate
            for token, run in _runs(contacts[side], mode):
                hs = run / rate
                lo, hi = hs[0] - CROP_MARGIN_S, hs[-1] + CROP_MARGIN_S
                by_activity.setdefault(token, []).append(
                    SideRecording(
                        side=side,
                        emg=crop(emg[side], lo, hi),
                        kinematics=crop(angles[side], lo, hi),
                        kinetics=None,  # no kinetics in ENABL3S [F]
                        heel_strikes_s=hs,
                        toe_offs_s=toe_off_s[(toe_off_s > hs[0]) & (toe_off_s < hs[-1])],
                    )
                )
        recordings = []
        for token, sides in sorted(by_activity.items()):
            meta: dict[str, Any] = {"activity": token}
            if token in inclines:
                meta["incline_deg"] = inclines[token]
            recordings.append(
                TrialRecording(
                    sides=tuple(sides),
                    emg_kind=spec.emg_kind,
                    event_source="events",
                    meta=meta,
                )
            )
        return recordings

    @staticmethod
    def _emg(
        table: pd.DataFrame, options: HuOptions, side: Side, rate: float, url: str
    ) -> TimeSeries | None:
        if options.emg is None:
            return None
        matrix = emg_matrix(table, options.emg.names(side), url, "EMG columns [C]")
        return TimeSeries(matrix, rate, 0.0, options.emg.units or "unknown")

    @staticmethod
    def _angles(
        table: pd.DataFrame, options: HuOptions, side: Side, rate: float, url: str
    ) -> TimeSeries | None:
        joints = options.kinematics
        if joints is None:
            return None
        factor = angle_factor(joints.units or "deg")
        data = joint_matrix(table, joints, side, url, "goniometer columns [F]", factor)
        return None if data is None else TimeSeries(data, rate, 0.0, ANGLE_UNITS)

    @staticmethod
    def _check_goniometers(
        angles: Mapping[Side, TimeSeries | None],
        contacts: Mapping[Side, np.ndarray],
        mode: np.ndarray,
        events: HuEvents,
        rate: float,
        url: str,
    ) -> None:
        """[I] goniometer signs and units on each leg's mean level-walking stride."""
        for side, series in angles.items():
            rows = contacts[side]
            level = [
                (a, b)
                for a, b in itertools.pairwise(rows)
                if np.isin(mode[a:b], events.level_walking_modes).all()
            ]
            if not level:
                continue
            starts, ends = (np.array(x, dtype=np.float64) / rate for x in zip(*level, strict=True))
            check_mean_stride_angles(
                mean_stride(series, starts, ends),
                url,
                assumption=f"[I] goniometer signs and units ({side} leg, catalogue sign applied)",
                level_walking=True,
                joints=("knee", "ankle"),
            )


def _indices(table: pd.DataFrame, column: str, n_rows: int, base: int, url: str) -> np.ndarray:
    """[F] an event column lists sample indices in its first rows, then only blanks."""
    values = numeric(table, column, url)
    blank = np.flatnonzero(np.isnan(values))
    count = int(blank[0]) if blank.size else values.size
    if np.isfinite(values[count:]).any():
        raise SourceError(
            url,
            f"[F] {column!r} should list indices in its first rows then blanks, but has values "
            f"after blank row {count + 1}",
        )
    indices = values[:count]
    if (np.abs(indices - np.round(indices)) > 1e-9).any():
        raise SourceError(url, f"[F] {column!r} holds non-integer sample indices")
    indices = np.round(indices).astype(np.int64)
    if (np.diff(indices) <= 0).any():
        raise SourceError(url, f"[F] {column!r} sample indices are not increasing")
    if indices.size and (indices.min() < base or indices.max() > n_rows - 1 + base):
        bad = int(indices.min()) if indices.min() < base else int(indices.max())
        raise SourceError(
            url,
            f"[F] {base}-based sample indices: {column!r} holds {bad}, outside "
            f"{base}..{n_rows - 1 + base} for a circuit of {n_rows} samples",
        )
    return indices


def _triggers(
    table: pd.DataFrame, column: str, count: int, modes: list[int], url: str
) -> np.ndarray:
    """[F] 4-digit trigger codes, one per event; the 1st and 3rd digits are modes."""
    values = numeric(table, column, url)[:count]
    if values.size < count or not np.isfinite(values).all():
        raise SourceError(url, f"[F] {column!r} does not give a trigger code for every event")
    codes = np.round(values).astype(np.int64)
    before, after = codes // 1000, (codes // 10) % 10
    # Codes are written as numbers: a leading 0 (sitting) is lost, so 616 is 0616.
    if (
        (codes < 1).any()
        or (codes > 9999).any()
        or not (np.isin(before, modes).all() and np.isin(after, modes).all())
    ):
        raise SourceError(
            url, f"[F] {column!r}: trigger codes are not 4-digit mode codes ({codes[:4].tolist()})"
        )
    return codes


def _check_index_base(
    mode: np.ndarray, transitions: list[tuple[int, int, int]], base: int, url: str
) -> None:
    """Where Mode changes at transition events, it must change on the event's own sample.

    ``transitions`` hold each transition event's 0-based row under the configured base. A change
    exactly there supports the base; a change one sample later or earlier (and never on the
    sample) means the indices are off by one; no change nearby proves nothing.
    """
    found = {"on": 0, "late": 0, "early": 0}
    for row, before, after in transitions:
        if 1 <= row < mode.size - 1:
            found["on"] += mode[row - 1] == before and mode[row] == after
            found["late"] += mode[row] == before and mode[row + 1] == after
            found["early"] += mode[row - 2] == before and mode[row - 1] == after if row >= 2 else 0
    if found["on"] == 0 and (found["late"] or found["early"]):
        shift = "one sample after" if found["late"] >= found["early"] else "one sample before"
        actual = base - 1 if found["late"] >= found["early"] else base + 1
        raise SourceError(
            url,
            f"[F] {base}-based event indices: at {max(found['late'], found['early'])} transition "
            f"event(s) Mode changes {shift} the indexed sample, as if the indices were "
            f"{actual}-based",
        )


def _runs(rows: np.ndarray, mode: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Consecutive strides (heel-contact rows) grouped by activity token: the stride's Mode code
    when every sample of it carries one mode, else ``transition``."""
    runs: list[tuple[str, list[int]]] = []
    for a, b in itertools.pairwise(rows):
        codes = np.unique(mode[a:b])
        token = str(int(codes[0])) if codes.size == 1 else TRANSITION
        if runs and runs[-1][0] == token and runs[-1][1][-1] == a:
            runs[-1][1].append(int(b))
        else:
            runs.append((token, [int(a), int(b)]))
    return [(token, np.asarray(r, dtype=np.float64)) for token, r in runs]

"""Gait120 (Boo, Seo, Kim, Koo, Sci Data 2025): 120 healthy men in 7 tasks, raw EMG of the
right leg at 2 kHz and OpenSim joint angles, one gait cycle (or sit/stand movement) per step.

Layout (one folder per zip of 10 subjects)::

    <root>/Gait120_001_to_010/S001/EMG/RawData.mat        the trial-table row's file
                                  /EMG/ProcessedData.mat  (envelopes; not used: EMG is raw here)
                                  /JointAngle/<Task>/TrialNN/stepSS.mot

**One trial-table row per subject, keyed on ``EMG/RawData.mat``.** Every step of every task
needs that file (its EMG and the step's frame window), and the file holds MATLAB tables whose
MCOS data sit in one subsystem for the whole file: mat-io decodes all of it on every load,
whatever variable is asked for. Keying rows on the ~60 step files would decode the same
~100 MB file ~60 times; keyed on RawData.mat it is decoded once and each subject is one task
for the workers (120 in all). Each step becomes its own recording (activity = task, trial =
``<Task>/TrialNN``, subtrial = ``stepSS``, population from the subject number), so the stride
table is as fine-grained as with per-step rows.

RawData.mat: ``EMGs_info.fs`` (2000 Hz), ``Markers_info.fs`` (100 Hz), and per task a struct
``<Task>.{AvailableTrialIdx, TrialNN.{EMGs_raw (table, 12 muscles), TotalFrame, nSteps,
StepSS.TargetFrame [start, end]}}`` (``Trial<N>`` / ``Step<S>`` without zero padding are
accepted too). TargetFrame are 1-based motion-capture frames of the trial.

What the adapter checks (SourceError naming the step otherwise), and converts:

- EMG: ``EMGs_raw`` has ``TotalFrame × fs_EMG / fs_mocap`` rows (± one frame);
- step ↔ TargetFrame: ``TrialNN/stepSS.mot`` exists for every RawData step (names compared
  without case), has ``end − start + 1`` rows at the mocap rate, and its time column starts
  at 0 or at the TargetFrame start (±½ frame). Step files or trial folders without a RawData
  step (not in ``AvailableTrialIdx``) are left out with a note;
- EMG of a step is sliced by TargetFrame converted to EMG samples through the rate ratio
  (frame f → sample (f − 1)·fs_EMG/fs_mocap; never kinematic frame indices used as EMG
  samples), with 0.5 s on either side for the filters; the stride spans the step exactly;
- angles: OpenSim (modified Rajagopal, 1-DoF knee), **knee extension positive**: the
  catalogue's sign negates it; afterwards the knee's 99th percentile must be a flexion peak
  (> +20°, larger than the deepest negative value), else the sign assumption is wrong;
- each gait step is one right-leg cycle (right heel strike to right heel strike): the right
  knee's swing-flexion peak must fall at 45–95 % of the step (a left-defined cycle puts it
  near 20 %). Sit-to-stand / stand-to-sit steps are movements, not cycles: not checked;
- soleus = mean of SoleusMedialis and SoleusLateralis (explicit merge in the catalogue);
  'GastrocnemuisMedialis' is the source's spelling. No joint moments.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pandas as pd
from pydantic import Field

from builder.conventions import angle_factor, emg_factor
from builder.datasets.base import AdapterOptions, SourceAdapter
from builder.datasets.mapping import joint_array, muscle_matrix
from builder.datasets.options import DatasetOptions
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.formats.matlab import field, load_mat
from builder.formats.opensim import Storage, read_storage
from builder.formats.tables import sibling_url
from builder.processing.checks import check_knee_flexion_percentiles
from builder.records import SideRecording, TimeSeries, TrialRecording, TrialSpec

# Seconds of EMG kept on either side of a step (the filters settle outside the stride).
_PAD_S = 0.5
# A right-leg cycle has its knee swing peak in this part of the step.
_SWING_PEAK = (0.45, 0.95)


class Gait120Layout(AdapterOptions):
    format: str = "mat-table"
    per_file: str = "subject"
    inside: str | None = None
    siblings: list[str] = Field(default_factory=list)  # documentation only
    # Step files, relative to the folder of the matched RawData.mat.
    angles: str = "../JointAngle/{task}/{trial}/step{step:02d}.mot"
    tasks: list[str] = Field(
        default_factory=lambda: [
            "LevelWalking",
            "StairAscent",
            "StairDescent",
            "SlopeAscent",
            "SlopeDescent",
            "SitToStand",
            "StandToSit",
        ]
    )
    non_cyclic_tasks: list[str] = Field(default_factory=lambda: ["SitToStand", "StandToSit"])
    available: str = "AvailableTrialIdx"
    trial_field: str = "Trial{n:02d}"  # Trial{n} is tried as well
    step_field: str = "Step{n:02d}"  # Step{n} is tried as well
    emg_table: str = "EMGs_raw"
    total_frames: str = "TotalFrame"
    n_steps: str = "nSteps"
    target_frame: str = "TargetFrame"
    frame_base: int = 1  # TargetFrame counts frames from 1
    time_column: str = "time"
    # Subject-number ranges "S001-S060" -> population.
    populations: dict[str, str] = Field(default_factory=dict)
    # Surface incline per task (degrees); a task not listed gets NaN (slope not documented).
    inclines: dict[str, float] = Field(default_factory=dict)
    activity_from: str = "task"


class Gait120Options(DatasetOptions):
    layout: Gait120Layout = Field(default_factory=Gait120Layout)
    events: dict[str, Any] = Field(default_factory=dict)


# --- paths ------------------------------------------------------------------------------


class _Listing:
    """Files under a folder URL, by lower-case name (step names vary in case)."""

    def __init__(self, files: FileAccess) -> None:
        self.files = files
        self._cache: dict[str, dict[str, str]] = {}

    def entries(self, folder: str) -> dict[str, str]:
        if folder not in self._cache:
            fs, path = self.files.filesystem(folder)
            protocol, _ = fsspec.core.split_protocol(folder)
            found: dict[str, str] = {}
            if fs.isdir(path):
                for entry in fs.ls(path, detail=False):
                    name = posixpath.basename(entry.rstrip("/"))
                    url = entry if protocol in (None, "file", "local") else f"{protocol}://{entry}"
                    found[name.casefold()] = url
            self._cache[folder] = found
        return self._cache[folder]


# --- RawData ----------------------------------------------------------------------------


def _rate(
    raw: dict, path: str | None, nominal: float | None, url: str, what: str, notes: list[str]
) -> float:
    """The rate the file states at ``path`` (it wins), else the catalogue's nominal one."""
    if path:
        try:
            value = float(np.asarray(field(raw, path, url)).ravel()[0])
        except (SourceError, IndexError, TypeError, ValueError):
            value = None
        if value is not None and value > 0:
            if nominal is not None and abs(value - nominal) > 0.01 * nominal:
                notes.append(f"{what} rate {value:g} Hz from {path} (catalogue says {nominal:g})")
            return value
    if nominal is None:
        raise SourceError(url, f"no {what} rate: neither {path or 'a field'} nor a nominal rate")
    notes.append(f"no {what} rate at {path}: the catalogue's {nominal:g} Hz is used")
    return nominal


def _child(container: dict, template: str, n: int, url: str, where: str) -> tuple[str, Any]:
    """``container[template.format(n=n)]``, also trying the name without zero padding."""
    names = [template.format(n=n), re.sub(r"\{n:0?\d*d\}", str(n), template).format(n=n)]
    for name in dict.fromkeys(names):
        if isinstance(container, dict) and name in container:
            return name, container[name]
    have = sorted(container)[:12] if isinstance(container, dict) else type(container).__name__
    raise SourceError(url, f"{where}: no field {names[0]} (found {have})")


def _indices(value: Any) -> list[int]:
    array = np.atleast_1d(np.asarray(value, dtype=np.float64)).ravel()
    return [int(v) for v in array if np.isfinite(v)]


@dataclass(frozen=True)
class _Step:
    task: str
    trial_name: str  # TrialNN as in RawData
    step: int
    start: int  # TargetFrame, 1-based frames
    end: int
    emg: TimeSeries
    angles: TimeSeries
    start_s: float
    end_s: float


def _subject_number(subject: str) -> int | None:
    digits = re.findall(r"\d+", subject)
    return int(digits[-1]) if digits else None


def _population(subject: str, ranges: dict[str, str], default: str) -> str:
    number = _subject_number(subject)
    for span, population in ranges.items():
        bounds = [int(x) for x in re.findall(r"\d+", span)]
        if number is not None and len(bounds) == 2 and bounds[0] <= number <= bounds[1]:
            return population
    return default


@dataclass
class _Context:
    spec: TrialSpec
    options: Gait120Options
    files: FileAccess
    listing: _Listing
    emg_hz: float
    mocap_hz: float
    notes: list[str]

    @property
    def url(self) -> str:
        return self.spec.url

    def folder(self, task: str, trial: str | None = None) -> str:
        """The angle folder of ``task`` (or of one of its trials)."""
        relative = posixpath.dirname(
            self.options.layout.angles.format(task=task, trial="T", step=1)
        )
        if trial is None:
            relative = posixpath.dirname(relative)
        else:
            relative = posixpath.join(posixpath.dirname(relative), trial)
        return sibling_url(self.url, relative)


class Gait120Adapter(SourceAdapter[Gait120Options]):
    name = "gait120"
    options_model = Gait120Options
    emg_kinds = frozenset({"raw"})

    def read(
        self, spec: TrialSpec, options: Gait120Options, files: FileAccess
    ) -> list[TrialRecording]:
        if options.emg is None or options.kinematics is None:
            raise SourceError(spec.url, "the catalogue entry needs emg and kinematics maps")
        layout = options.layout
        raw = load_mat(files.local_path(spec.url), spec.url)
        rates = options.rates
        notes: list[str] = []
        context = _Context(
            spec,
            options,
            files,
            _Listing(files),
            _rate(raw, rates.from_file.get("emg_hz"), rates.emg_hz, spec.url, "EMG", notes),
            _rate(
                raw,
                rates.from_file.get("kinematics_hz"),
                rates.kinematics_hz,
                spec.url,
                "motion-capture",
                notes,
            ),
            notes,
        )
        if options.emg.units is None:
            context.notes.append(
                "EMG units not documented: read as volts (amplitude is normalised)"
            )
        steps: list[_Step] = []
        for task in layout.tasks:
            if task not in raw:
                context.notes.append(f"no {task} in RawData.mat")
                continue
            steps += self._task(context, raw[task], task)
        if not steps:
            raise SourceError(spec.url, f"no step of any task ({', '.join(layout.tasks)})")
        check_knee_flexion_percentiles(
            np.concatenate([s.angles.data for s in steps]),
            spec.url,
            assumption="knee_angle after the catalogue's sign is not flexion-positive (the "
            "source is documented as extension-positive: sign knee.flexion: -1; check the step "
            "files)",
            min_peak_deg=20.0,
        )
        _check_cycles([s for s in steps if s.task not in layout.non_cyclic_tasks], spec.url)

        population = _population(spec.subject, layout.populations, spec.population)
        file_notes = tuple(dict.fromkeys(context.notes))
        return [
            TrialRecording(
                sides=(
                    SideRecording(
                        side="R",
                        emg=step.emg,
                        kinematics=step.angles,
                        kinetics=None,
                        heel_strikes_s=np.array([step.start_s, step.end_s]),
                    ),
                ),
                emg_kind=spec.emg_kind,
                event_source="pre_segmented",
                notes=file_notes if i == 0 else (),
                meta={
                    "activity": step.task,
                    "trial": f"{step.task}/{step.trial_name}",
                    "subtrial": f"step{step.step:02d}",
                    "population": population,
                    "incline_deg": layout.inclines.get(step.task, float("nan")),
                },
            )
            for i, step in enumerate(steps)
        ]

    # --- one task, one trial ------------------------------------------------------------

    def _task(self, context: _Context, node: Any, task: str) -> list[_Step]:
        layout = context.options.layout
        if not isinstance(node, dict):
            raise SourceError(context.url, f"{task} is not a struct")
        if layout.available in node:
            numbers = _indices(node[layout.available])
        else:
            numbers = sorted(int(m.group(1)) for k in node if (m := re.fullmatch(r"Trial(\d+)", k)))
            context.notes.append(
                f"{task}: no {layout.available}; trials {numbers} from the field names"
            )
        folders = context.listing.entries(context.folder(task))
        steps, used = [], set()
        for number in numbers:
            name, trial = _child(node, layout.trial_field, number, context.url, task)
            candidates = dict.fromkeys([name, f"Trial{number:02d}", f"Trial{number}"])
            folder = next((c for c in candidates if c.casefold() in folders), name)
            used.add(folder.casefold())
            steps += self._trial(context, trial, task, name, folder)
        if extra := sorted(set(folders) - used):
            context.notes.append(
                f"{task}: angle folder(s) {', '.join(extra)} have no trial in RawData "
                f"{layout.available}: left out (no EMG)"
            )
        return steps

    def _trial(
        self, context: _Context, trial: Any, task: str, name: str, folder_name: str
    ) -> list[_Step]:
        layout = context.options.layout
        url = context.url
        where = f"{task}.{name}"
        table = field(trial, layout.emg_table, url, why="the trial's raw EMG table")
        if not isinstance(table, pd.DataFrame):
            raise SourceError(url, f"{where}.{layout.emg_table} is not a MATLAB table")
        total = int(np.asarray(field(trial, layout.total_frames, url)).ravel()[0])
        n_steps = int(np.asarray(field(trial, layout.n_steps, url)).ravel()[0])
        ratio = context.emg_hz / context.mocap_hz
        if abs(len(table) - total * ratio) > ratio:
            raise SourceError(
                url,
                f"{where}: {layout.emg_table} has {len(table)} samples, but {layout.total_frames} "
                f"{total} frames × {context.emg_hz:g}/{context.mocap_hz:g} Hz make "
                f"{total * ratio:.0f}: the EMG and motion-capture rates or frame counts disagree",
            )
        emg = self._emg(context, table, where)
        folder = context.folder(task, folder_name)
        entries = context.listing.entries(folder)
        base = layout.frame_base
        steps, used = [], set()
        for s in range(1, n_steps + 1):
            step_name, step = _child(trial, layout.step_field, s, url, where)
            frames = np.asarray(field(step, layout.target_frame, url), dtype=np.float64).ravel()
            if frames.size != 2 or not np.isfinite(frames).all():
                raise SourceError(
                    url, f"{where}.{step_name}.{layout.target_frame} is not [start, end]"
                )
            start, end = (round(float(f)) for f in frames)
            if not base <= start < end <= total - 1 + base:
                raise SourceError(
                    url,
                    f"{where}.{step_name}: TargetFrame [{start}, {end}] outside the trial's "
                    f"{total} frames",
                )
            file_name = posixpath.basename(layout.angles.format(task=task, trial=name, step=s))
            mot_url = entries.get(file_name.casefold())
            if mot_url is None:
                raise SourceError(
                    url,
                    f"{where}.{step_name}: no step file {file_name} in {folder} "
                    f"(found {sorted(entries)[:6]})",
                )
            used.add(file_name.casefold())
            start_s = (start - base) / context.mocap_hz
            end_s = (end - base) / context.mocap_hz
            angles = self._angles(context, mot_url, start, end, start_s)
            # TargetFrame (mocap frames) -> EMG samples through the rate ratio, padded.
            first = max(0, int(np.floor((start - base) * ratio - _PAD_S * context.emg_hz)))
            stop = min(len(emg), int(np.ceil((end - base) * ratio + _PAD_S * context.emg_hz)) + 1)
            window = TimeSeries(emg[first:stop], context.emg_hz, first / context.emg_hz, "V")
            steps.append(_Step(task, name, s, start, end, window, angles, start_s, end_s))
        if extra := sorted(set(entries) - used):
            context.notes.append(
                f"{where}: step file(s) {', '.join(extra)} have no RawData step: left out"
            )
        return steps

    def _emg(self, context: _Context, table: pd.DataFrame, where: str) -> np.ndarray:
        """(T, 13) volts in canonical order; a mapped column that is missing is an error."""
        emg_map = context.options.emg
        assert emg_map is not None
        columns = {str(c).casefold(): c for c in table.columns}
        data: dict[str, np.ndarray | list[np.ndarray]] = {}
        missing = []
        for muscle, names in emg_map.names("R").items():
            missing += [n for n in names if n.casefold() not in columns]
            found = [
                table[columns[n.casefold()]].to_numpy(np.float64)
                for n in names
                if n.casefold() in columns
            ]
            if found:
                data[muscle] = found[0] if len(names) == 1 else found
        if missing:
            raise SourceError(
                context.url,
                f"{where}: EMG table lacks {', '.join(missing)} (columns {list(table.columns)})",
            )
        return muscle_matrix(data, (len(table),)) * emg_factor(emg_map.units or "V")

    def _angles(
        self, context: _Context, mot_url: str, start: int, end: int, start_s: float
    ) -> TimeSeries:
        kinematics = context.options.kinematics
        assert kinematics is not None
        storage: Storage = read_storage(context.files.local_path(mot_url), mot_url)
        table = storage.table
        rows = end - start + 1
        if len(table) != rows:
            raise SourceError(
                mot_url,
                f"{len(table)} rows, but TargetFrame [{start}, {end}] spans {rows} frames: the "
                "step file does not match its RawData step",
            )
        column = context.options.layout.time_column
        if column not in table.columns:
            raise SourceError(mot_url, f"no {column!r} column")
        time = table[column].to_numpy(np.float64)
        hz = context.mocap_hz
        step = float(np.median(np.diff(time))) if time.size > 1 else 1.0 / hz
        if abs(step * hz - 1.0) > 0.01:
            raise SourceError(mot_url, f"sampled at {1.0 / step:.4g} Hz, not the mocap {hz:g} Hz")
        base = context.options.layout.frame_base
        if min(abs(time[0] * hz - f) for f in (0.0, start - base, start)) > 0.5:
            raise SourceError(
                mot_url,
                f"time starts at {time[0]:.4f} s: neither 0 nor TargetFrame start {start} "
                f"at {hz:g} Hz",
            )
        flag = storage.in_degrees
        units = "deg" if flag else "rad" if flag is False else (kinematics.units or "deg")
        wanted = kinematics.component_columns("R")
        if missing := sorted(str(c) for c in wanted.values() if str(c) not in table.columns):
            raise SourceError(mot_url, f"no column(s) {', '.join(missing)}")
        columns = {key: table[str(col)].to_numpy(np.float64) for key, col in wanted.items()}
        data = joint_array(columns, (rows,), signs=kinematics.sign, factor=angle_factor(units))
        return TimeSeries(data, hz, start_s, "deg")


# --- assumptions ------------------------------------------------------------------------


def _check_cycles(steps: list[_Step], url: str) -> None:
    """Gait steps are right heel strike → right heel strike: swing flexion late in the step."""
    where = [
        float(np.nanargmax(knee)) / max(knee.size - 1, 1)
        for knee in (s.angles.data[:, 1, 2] for s in steps)
        if np.isfinite(knee).any()
    ]
    if not where:
        return
    position = float(np.median(where))
    low, high = _SWING_PEAK
    if not low <= position <= high:
        raise SourceError(
            url,
            f"the right knee's swing peak lies at {100 * position:.0f} % of the steps (a right "
            f"heel strike → right heel strike cycle puts it at {100 * low:.0f}–{100 * high:.0f} "
            "%): the step files are not right-leg gait cycles",
        )

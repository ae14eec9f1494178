"""K2MUSE (Li et al., arXiv 2504.14602 / IJRR 2026): processed per-participant MAT files.

One catalogue row per ``ProcessedData/<participant>.mat`` — or, for a file above the
catalogue's split size, one row per trial (``parts``) — and one :class:`TrialRecording` per
``(Condition).(Mode).(Speed).(Trial)``. A MAT v7.3 file (several GB per participant) is read
one trial's subtree at a time (:class:`builder.formats.matlab.LazyMat`); v5 is loaded whole
(:func:`builder.formats.matlab.load_mat`), with the same values.

What is read, and why:

- ``OriginalData`` — the continuous signals: raw sEMG (``EMGData``, samples × 13 at 2 kHz:
  right block then left block, ``layout.emg_blocks``), Plug-in Gait ``Angles`` and ``Moments``
  (frames × 3, X/Y/Z, 100 Hz). Continuous raw EMG is what ``emg_kind: raw`` needs: the
  pipeline's own chain filters it. ``NormalizedData`` holds the same EMG cut per stride and
  kinematics resampled to a fixed length, i.e. nothing the pipeline cannot redo.
- ``NormalizedData.Events.{L,R}{Start,End}Frame`` — the dataset's own strides "after stable
  walking". Each stride runs from its start to its end frame; strides that do not chain (a
  stride removed in the middle) become separate recordings, so no gap is ever bridged into a
  stride. A trial without NormalizedData has no stride events: it is reported and left out.

Checked on every file, each failure a SourceError naming the assumption and what was found:

- event frame base (``events.index_base``; null = decide): the resampled strides in
  ``NormalizedData.Angles.<name>.rsGaitData`` must equal the OriginalData angles
  time-normalised between the event frames read 1-based (or 0-based) — whichever matches;
- EMG: 13 columns; about ``emg_hz / kinematics_hz`` samples per frame; raw (both signs, not a
  rectified envelope); units from the catalogue or, when null, by magnitude (µV vs V); the
  column split — ``NormalizedData.EMGData.Right{1}`` (P × 9) / ``Left{1}`` (P × 4) must be the
  OriginalData columns of that block starting at the stride's first frame;
- moments: documented N·m/kg, Plug-in Gait's default N·mm/kg (what real PiG C3D files hold:
  ``../shared/data/real/gait-pig.c3d`` has ankle moments peaking at ~1300 although its
  POINT:MOMENT_UNITS says ``Nmm`` — per kg in fact): the magnitude decides between
  them (anything else is refused); external -> internal by the catalogue's sign, then
  verified: the internal ankle moment in stance must be plantarflexor (negative);
- angle signs (hip flexed at heel strike, knee flexed in swing, ankle plantarflexing after
  late-stance dorsiflexion); token vocabularies (conditions, modes, speeds); the participant
  matches one cohort pattern (``layout.populations``: young adults / older adults).

Per-recording metadata: activity (mode token via the catalogue's ``activity_map``), speed,
incline, ``condition`` from ``layout.conditions`` (e.g. ``fatigue``,
``electrode_shift;shift=upward``), ``population`` from ``layout.populations``.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any

import numpy as np
from pydantic import Field

from builder.conventions import (
    JOINTS,
    PLANES,
    SIDES,
    Side,
    angle_factor,
    emg_factor,
    moment_factor,
)
from builder.datasets.base import AdapterOptions, FilePart, SourceAdapter
from builder.datasets.mapping import joint_array, muscle_matrix
from builder.datasets.options import DatasetOptions, EmgMap, JointMap
from builder.datasets.segments import crop
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.formats.matlab import LazyMat, field, load_mat
from builder.processing.checks import (
    check_sagittal_signs,
    cycle_window,
    moment_units_by_magnitude,
    robust_peak,
)
from builder.processing.strides import time_normalise
from builder.records import SideRecording, TimeSeries, TrialRecording, TrialSpec

_SIDE_NAMES: dict[Side, str] = {"L": "Left", "R": "Right"}
_ANKLE = JOINTS.index("ankle")
_FLEX = PLANES.index("flexion")
_TRIAL = re.compile(r"\D*(\d+)")
# rsGaitData must match the time-normalised OriginalData this closely (deg RMS), and the other
# frame base at least twice as badly, to decide the base.
_MAX_ALIGNMENT_RMS_DEG = 1.0
# Normalised correlation a NormalizedData EMG stride must reach against its OriginalData block.
_MIN_EMG_MATCH = 0.9
# Robust peak (99th percentile) of |sagittal moment| in walking, N·m/kg: 0.5-2.5 in practice.
_MOMENT_PEAK_RANGE = (0.3, 6.0)
# Raw EMG RMS per channel: µV ~ 5-500, V ~ 5e-6-5e-4; anything between is ambiguous.
_EMG_RMS_UV = (1.0, 5000.0)
_EMG_RMS_V = (1e-6, 5e-3)
_CHAIN_MARGIN_S = 0.5  # signal kept around a chain of strides when a trial has several


class K2museLayout(AdapterOptions):
    format: str = "mat-v7.3"
    per_file: str = "subject"
    inside: str = ""
    normalised: str = ""
    activity_from: str = ""
    speed_codes: dict[str, float]
    incline_codes: dict[str, float]
    conditions: dict[str, str]  # Condition token -> condition flags
    populations: dict[str, str]  # regex (full match on the participant id) -> population
    emg_blocks: dict[Side, tuple[int, int]]  # side -> first, last EMGData column (1-based)
    mains_hz: float | None = Field(default=None, gt=0)


class K2museOptions(DatasetOptions):
    layout: K2museLayout
    events: dict[str, Any] = Field(default_factory=dict)


class K2museAdapter(SourceAdapter[K2museOptions]):
    name = "k2muse"
    options_model = K2museOptions
    emg_kinds = frozenset({"raw"})

    def parts(self, url: str, options: K2museOptions, files: FileAccess) -> list[FilePart] | None:
        """One part per trial (``<Condition>/<Mode>/<Speed>/<Trial>``, in ``read``'s order): a
        participant's file holds hundreds of trials, several GB. MAT v5 files are read
        whole (None)."""
        mat = LazyMat.open(files, url)
        if mat is None:
            return None
        with mat:
            tree = _Tree(url, lazy=mat)
            return [FilePart(where, {"trial": where}) for where in tree.trials(_trial_number)]

    def read(
        self, spec: TrialSpec, options: K2museOptions, files: FileAccess
    ) -> list[TrialRecording]:
        url = spec.url
        population = _population(spec.subject, options.layout.populations, url)
        mat = LazyMat.open(files, url)
        if mat is None:  # MAT v5: read whole
            data = load_mat(files.local_path(url), url, variables=list(_VARIABLES))
            return self._read(spec, options, _Tree(url, whole=data), population)
        with mat:
            return self._read(spec, options, _Tree(url, lazy=mat), population)

    def _read(
        self, spec: TrialSpec, options: K2museOptions, tree: _Tree, population: str
    ) -> list[TrialRecording]:
        url, layout = spec.url, options.layout
        recordings: list[TrialRecording] = []
        notes: list[str] = []
        units: set[str] = set()
        for where in [spec.part] if spec.part else tree.trials(_trial_number):
            condition, mode, speed, _ = tree.split(where)
            if condition not in layout.conditions:
                raise SourceError(
                    url, f"condition {condition!r} is not one of {sorted(layout.conditions)}"
                )
            if mode not in layout.incline_codes or mode not in spec.activity_map:
                raise SourceError(
                    url,
                    f"mode {mode!r} is not one of {sorted(layout.incline_codes)} (with "
                    "an activity in metadata.activity_map)",
                )
            if speed not in layout.speed_codes:
                raise SourceError(
                    url, f"speed {speed!r} is not one of {sorted(layout.speed_codes)}"
                )
            norm = tree.normalized(where)
            if norm is None:
                notes.append(f"{where}: no NormalizedData (no stride events), left out")
                continue
            reader = _Trial(url, where, options, tree.original(where), norm)
            recording = reader.recording(
                meta={
                    "activity": mode,
                    "trial": where,
                    "speed_mps": layout.speed_codes[speed],
                    "incline_deg": layout.incline_codes[mode],
                    "condition": layout.conditions[condition],
                    "population": population,
                }
            )
            recordings.append(recording)
            units.add(reader.emg_unit)
        if not recordings:
            raise SourceError(url, "no trial with stride events; " + "; ".join(notes))
        if units - {""}:
            notes.append(f"EMG units: {', '.join(sorted(units - {''}))}")
        # File-level notes travel with the first recording into the build report.
        recordings[0] = dataclasses.replace(recordings[0], notes=tuple(notes) + recordings[0].notes)
        return recordings


_VARIABLES = ("OriginalData", "NormalizedData")


class _Tree:
    """``OriginalData`` / ``NormalizedData`` of a participant's file, by trial path
    ``<Condition>/<Mode>/<Speed>/<Trial>``: loaded whole (MAT v5) or read one trial's subtree
    at a time (v7.3, :class:`LazyMat`); both give the same values."""

    def __init__(self, url: str, *, whole: dict | None = None, lazy: LazyMat | None = None):
        self.url, self.whole, self.lazy = url, whole, lazy
        self.top: dict = {}
        if whole is not None:
            self.top = field(whole, "OriginalData", url, why="continuous signals")
        elif lazy is not None and not lazy.has("OriginalData"):
            raise SourceError(
                url, f"no field OriginalData (continuous signals); found {lazy.names()}"
            )

    def _names(self, keys: tuple[str, ...]) -> list[str]:
        if self.lazy is not None:
            return sorted(self.lazy.names("/".join(("OriginalData", *keys))))
        node = _get(self.top, *keys)
        return sorted(node) if isinstance(node, dict) else []

    def trials(self, trial_key: Any) -> list[str]:
        """Every trial path, in the order the adapter reads them."""
        out = []
        for condition in self._names(()):
            for mode in self._names((condition,)):
                for speed in self._names((condition, mode)):
                    names = self._names((condition, mode, speed))
                    for trial in sorted(names, key=trial_key(self.url)):
                        out.append(f"{condition}/{mode}/{speed}/{trial}")
        return out

    def split(self, where: str) -> tuple[str, str, str, str]:
        keys = where.split("/")
        if len(keys) != 4:
            raise SourceError(self.url, f"{where!r} is not <Condition>/<Mode>/<Speed>/<Trial>")
        return keys[0], keys[1], keys[2], keys[3]

    def original(self, where: str) -> dict:
        if self.lazy is not None:
            value = self.lazy.load(f"OriginalData/{where}")
        else:
            value = _get(self.top, *where.split("/"))
        if not isinstance(value, dict):
            raise SourceError(self.url, f"{where}: OriginalData of the trial is not a struct")
        return value

    def normalized(self, where: str) -> dict | None:
        if self.lazy is not None:
            path = f"NormalizedData/{where}"
            return self.lazy.load(path) if self.lazy.has(path) else None
        return _get((self.whole or {}).get("NormalizedData") or {}, *where.split("/"))


def _population(subject: str, patterns: dict[str, str], url: str) -> str:
    for pattern, population in patterns.items():
        if re.fullmatch(pattern, subject):
            return population
    raise SourceError(url, f"participant {subject!r} matches no cohort pattern {sorted(patterns)}")


def _trial_number(url: str):
    def key(name: str) -> int:
        match = _TRIAL.fullmatch(name)
        if match is None:
            raise SourceError(url, f"trial field {name!r} does not end in a trial number")
        return int(match.group(1))

    return key


def _get(tree: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def _frames(value: Any) -> np.ndarray:
    return np.atleast_1d(np.asarray(value, dtype=np.float64)).ravel()


class _Trial:
    """One trial: OriginalData signals, NormalizedData events, the checks, the recording."""

    def __init__(
        self, url: str, where: str, options: K2museOptions, original: dict, normalized: dict
    ) -> None:
        self.url, self.where, self.options = url, where, options
        self.original, self.normalized = original, normalized
        self.notes: list[str] = []
        rates = options.rates
        self.kin_hz = float(rates.kinematics_hz or 100.0)
        self.emg_unit = ""
        self.emg_hz = float(rates.emg_hz or 2000.0)

    def fail(self, problem: str) -> SourceError:
        return SourceError(self.url, f"{self.where}: {problem}")

    def _emg_map(self) -> EmgMap:
        if self.options.emg is None:
            raise self.fail("the catalogue entry has no emg map")
        return self.options.emg

    # --- joint angles and moments ----------------------------------------------------

    def _raw_labels(self, datatype: str, spec: JointMap) -> dict[Side, dict[str, np.ndarray]]:
        """{side: {label: (T, 3)}} of a datatype group, as stored."""
        group = self.original.get(datatype)
        if not isinstance(group, dict):
            return {}
        out: dict[Side, dict[str, np.ndarray]] = {}
        for per_side in (spec.labels or {}).values():
            for side, label in per_side.items():
                if label not in group:
                    raise self.fail(
                        f"no {datatype}.{label} ([I] Plug-in Gait variable names); found "
                        f"{sorted(group)[:8]}"
                    )
                array = np.asarray(group[label], dtype=np.float64)
                if array.ndim != 2 or array.shape[1] != 3:
                    raise self.fail(f"{datatype}.{label} is not frames × 3 (shape {array.shape})")
                out.setdefault(side, {})[label] = array
        lengths = {a.shape[0] for per in out.values() for a in per.values()}
        if len(lengths) > 1:
            raise self.fail(f"{datatype} variables differ in length {sorted(lengths)}")
        return out

    def _canonical(
        self, raw: dict[Side, dict[str, np.ndarray]], spec: JointMap, factor: float
    ) -> dict[Side, np.ndarray]:
        axes = spec.axes or {}
        out = {}
        for side, arrays in raw.items():
            columns = {}
            for joint, per_side in (spec.labels or {}).items():
                if side not in per_side:
                    continue
                data = arrays[per_side[side]]
                for plane, axis in axes.items():
                    columns[joint, plane] = data[:, "XYZ".index(axis)]
            n = next(iter(arrays.values())).shape[0]
            out[side] = joint_array(columns, (n,), signs=spec.sign, factor=factor)
        return out

    # --- events ----------------------------------------------------------------------

    def _events(self) -> dict[Side, tuple[np.ndarray, np.ndarray]]:
        events = field(self.normalized, "Events", self.url, why="stride events")
        names = self.options.events.get("fields") or {
            "L": ["LStartFrame", "LEndFrame"],
            "R": ["RStartFrame", "REndFrame"],
        }
        out = {}
        for side in self.options.sides:
            start_name, end_name = names[side]
            if start_name not in events or end_name not in events:
                raise self.fail(f"NormalizedData.Events has no {start_name}/{end_name}")
            starts, ends = _frames(events[start_name]), _frames(events[end_name])
            if starts.size != ends.size or not (ends > starts).all():
                raise self.fail(f"{start_name}/{end_name} do not pair into strides")
            if starts.size > 1 and not (np.diff(starts) > 0).all():
                raise self.fail(f"{start_name} is not increasing")
            if starts.size == 0:
                self.notes.append(f"{self.where}: no {_SIDE_NAMES[side]} stride events")
                continue
            out[side] = (starts, ends)
        return out

    def _index_base(
        self, angles: dict[Side, dict[str, np.ndarray]], events: dict[Side, tuple]
    ) -> float:
        """1 or 0: the frame base under which the event frames reproduce rsGaitData."""
        configured = self.options.events.get("index_base")
        group = self.normalized.get("Angles")
        errors: dict[int, list[float]] = {0: [], 1: []}
        for side, arrays in angles.items():
            if side not in events:
                continue
            starts, ends = events[side]
            for label, data in arrays.items():
                rs = _get(group, label, "rsGaitData")
                if rs is None:
                    continue
                rs = np.asarray(rs, dtype=np.float64)
                if rs.ndim == 2 and starts.size == 1:
                    rs = rs[:, :, None]
                if rs.ndim != 3 or rs.shape[1] != 3 or rs.shape[2] != starts.size:
                    raise self.fail(
                        f"NormalizedData.Angles.{label}.rsGaitData is not points × 3 × "
                        f"{starts.size} strides (shape {rs.shape})"
                    )
                target = np.transpose(rs, (2, 0, 1))
                series = TimeSeries(data, 1.0, 0.0, "deg")  # time = row index
                for base in errors:
                    curves = time_normalise(series, starts - base, ends - base, rs.shape[0])
                    errors[base].append(np.nanmean((curves - target) ** 2))
        if not errors[1]:
            if configured is None:
                raise self.fail("no rsGaitData to decide the event frame base (index_base)")
            self.notes.append(f"{self.where}: event frame base {configured} not verified")
            return float(configured)
        rms = {base: float(np.sqrt(np.nanmean(e))) for base, e in errors.items()}
        best = min(rms, key=rms.__getitem__)
        other = rms[1 - best]
        if not (rms[best] <= _MAX_ALIGNMENT_RMS_DEG and rms[best] < 0.5 * other):
            raise self.fail(
                "event frames do not delimit the NormalizedData strides: rsGaitData differs "
                f"from the OriginalData angles by {rms[1]:.2f} deg RMS (frames 1-based) and "
                f"{rms[0]:.2f} deg (0-based)"
            )
        if configured is not None and int(configured) != best:
            raise self.fail(
                f"events are {best}-based frames (rsGaitData matches them to "
                f"{rms[best]:.2f} deg), the catalogue says index_base {configured}"
            )
        return float(best)

    # --- EMG -------------------------------------------------------------------------

    def _emg(self, n_frames: int, events: dict, base: float) -> dict[Side, TimeSeries]:
        """(T, 13) volts per side at the EMG rate, after the EMG checks."""
        value = self.original.get("EMGData")
        if value is None:
            self.notes.append(f"{self.where}: no OriginalData.EMGData")
            return {}
        if isinstance(value, dict):  # a struct holding the matrix
            arrays = [v for v in value.values() if isinstance(v, np.ndarray) and v.ndim == 2]
            if len(arrays) != 1:
                raise self.fail(f"OriginalData.EMGData holds no single matrix ({sorted(value)})")
            value = arrays[0]
        emg = np.asarray(value, dtype=np.float64)
        blocks = self.options.layout.emg_blocks
        width = max(last for _, last in blocks.values())
        if emg.ndim != 2 or emg.shape[1] != width:
            raise self.fail(f"OriginalData.EMGData is not samples × {width} (shape {emg.shape})")
        ratio = self.emg_hz / self.kin_hz
        if abs(emg.shape[0] / max(n_frames, 1) - ratio) > 0.5:
            raise self.fail(
                f"EMG has {emg.shape[0]} samples for {n_frames} frames, not ~{ratio:g} per "
                f"frame ([I] {self.emg_hz:g} Hz EMG, {self.kin_hz:g} Hz kinematics)"
            )
        active = np.nanstd(emg, axis=0) > 0
        negative = np.mean(emg[:, active] < 0, axis=0) if active.any() else np.zeros(0)
        if active.any() and (negative < 0.05).any():
            raise self.fail(
                "[I] OriginalData EMG is raw: column(s) "
                f"{(np.flatnonzero(active)[negative < 0.05] + 1).tolist()} have (almost) no "
                "negative samples — rectified or an envelope"
            )
        self._check_blocks(emg, events, base, ratio)
        factor, unit = self._emg_units(emg[:, active])
        spec = self._emg_map()
        data = {}
        for side in self.options.sides:
            first, _ = blocks[side]
            order = _side_order(spec.order, side)
            columns = {}
            for muscle, names in spec.names(side).items():
                cols = []
                for name in names:
                    if name not in order:
                        raise self.fail(f"EMG channel {name!r} is not in the {side} order {order}")
                    cols.append(emg[:, first - 1 + order.index(name)] * factor)
                columns[muscle] = cols[0] if len(cols) == 1 else cols
            data[side] = TimeSeries(muscle_matrix(columns, (emg.shape[0],)), self.emg_hz, 0.0, "V")
        self.emg_unit = unit
        return data

    def _check_blocks(self, emg: np.ndarray, events: dict, base: float, ratio: float) -> None:
        """NormalizedData.EMGData.<Side>{1} must be that side's OriginalData column block,
        starting at the stride's first frame (the documented 9 + 4 split and alignment)."""
        group = self.normalized.get("EMGData")
        if not isinstance(group, dict):
            self.notes.append(f"{self.where}: no NormalizedData.EMGData, column split unchecked")
            return
        for side, (first, last) in self.options.layout.emg_blocks.items():
            cells = group.get(_SIDE_NAMES[side])
            if cells is None or side not in events:
                continue
            cell = np.asarray(cells[0] if isinstance(cells, list) else cells, dtype=np.float64)
            width = last - first + 1
            if cell.ndim != 2 or cell.shape[1] != width:
                raise self.fail(
                    f"NormalizedData.EMGData.{_SIDE_NAMES[side]}{{1}} is not P × {width} "
                    f"(shape {cell.shape}): the EMG column split differs"
                )
            expected = round((events[side][0][0] - base) * ratio)
            corr, offset = _block_match(emg[:, first - 1 : last], cell, expected, int(2 * ratio))
            if corr < _MIN_EMG_MATCH or abs(offset) > ratio:
                raise self.fail(
                    f"NormalizedData.EMGData.{_SIDE_NAMES[side]}{{1}} is not OriginalData EMG "
                    f"columns {first}-{last} from the stride's first frame (best correlation "
                    f"{corr:.2f} at {offset:+d} samples): column split or alignment differs"
                )

    def _emg_units(self, emg: np.ndarray) -> tuple[float, str]:
        unit = self._emg_map().units
        if unit:
            try:
                return emg_factor(unit), unit
            except ValueError as error:
                raise self.fail(f"EMG: {error}") from None
        rms = float(np.nanmedian(np.sqrt(np.nanmean(emg**2, axis=0)))) if emg.size else 0.0
        if _EMG_RMS_UV[0] <= rms <= _EMG_RMS_UV[1]:
            return 1e-6, "uV (by magnitude)"
        if _EMG_RMS_V[0] <= rms <= _EMG_RMS_V[1]:
            return 1.0, "V (by magnitude)"
        raise self.fail(
            f"[I] EMG units unknown: median channel RMS {rms:.3g} fits neither µV nor V "
            "(set emg.units in the catalogue)"
        )

    # --- moments ---------------------------------------------------------------------

    def _moment_factor(self, raw: dict[Side, np.ndarray], windows: dict) -> float:
        spec = self.options.kinetics
        assert spec is not None  # moments are read only with a kinetics map
        inside = []
        for side, moments in raw.items():
            rows = np.arange(moments.shape[0]) / self.kin_hz
            for starts, ends in windows.get(side, []):
                keep = (rows >= starts[0]) & (rows <= ends[-1])
                inside.append(np.abs(moments[keep, :, _FLEX]).ravel())
        values = np.concatenate(inside) if inside else np.zeros(0)
        peak = robust_peak(values) if np.isfinite(values).any() else 0.0
        candidates = list(dict.fromkeys([spec.units or "N.m/kg", "N.m/kg", "N.mm/kg"]))
        bands = dict.fromkeys(candidates, _MOMENT_PEAK_RANGE)
        unit = moment_units_by_magnitude(peak, bands, per_kg=True)
        if unit is not None:
            if unit != (spec.units or unit):
                self.notes.append(
                    f"{self.where}: moments are {unit} by magnitude (catalogue: {spec.units})"
                )
            return moment_factor(unit)
        raise self.fail(
            f"moment units: sagittal moments peak at {peak:.3g} in file units, which fits "
            f"neither {' nor '.join(candidates)} (walking peaks 0.5-2.5 N·m/kg)"
        )

    # --- the recording ---------------------------------------------------------------

    def recording(self, meta: dict[str, Any]) -> TrialRecording:
        options = self.options
        events = self._events()
        kin_spec, mom_spec = options.kinematics, options.kinetics
        angles_raw = self._raw_labels("Angles", kin_spec) if kin_spec else {}
        moments_raw = self._raw_labels("Moments", mom_spec) if mom_spec else {}
        lengths = {
            a.shape[0] for d in (angles_raw, moments_raw) for p in d.values() for a in p.values()
        }
        if not lengths:
            raise self.fail("no Angles or Moments to align the events with")
        n_frames = max(lengths)
        base = self._index_base(angles_raw, events)
        # Heel strikes in seconds; chains of strides that follow each other.
        windows: dict[Side, list[tuple[np.ndarray, np.ndarray]]] = {}
        for side, (starts, ends) in events.items():
            t0, t1 = (starts - base) / self.kin_hz, (ends - base) / self.kin_hz
            if t0[0] < 0 or t1[-1] > (n_frames - 1) / self.kin_hz:
                raise self.fail(f"{side} stride events reach beyond the {n_frames} frames")
            breaks = np.flatnonzero(starts[1:] != ends[:-1]) + 1
            windows[side] = list(zip(np.split(t0, breaks), np.split(t1, breaks), strict=True))
            if breaks.size:
                self.notes.append(
                    f"{self.where}: {side} stride events have {breaks.size} gap(s); "
                    "each run of consecutive strides is read on its own"
                )

        kinematics = (
            self._canonical(angles_raw, kin_spec, angle_factor(kin_spec.units or "deg"))
            if kin_spec is not None and angles_raw
            else {}
        )
        kinetics = {}
        if mom_spec is not None and moments_raw:
            signed = self._canonical(moments_raw, mom_spec, 1.0)
            factor = self._moment_factor(signed, windows)
            kinetics = {side: m * factor for side, m in signed.items()}
        elif mom_spec is not None:
            self.notes.append(f"{self.where}: no OriginalData.Moments")
        emg = self._emg(n_frames, events, base)
        _check_curves(kinematics, kinetics, windows, self.kin_hz, self.url, self.where)

        sides: list[SideRecording] = []
        for side in options.sides:
            for starts, ends in windows.get(side, []):
                heel_strikes = np.concatenate([starts, ends[-1:]])
                keep = (
                    (heel_strikes[0] - _CHAIN_MARGIN_S, heel_strikes[-1] + _CHAIN_MARGIN_S)
                    if len(windows[side]) > 1
                    else None
                )
                sides.append(
                    SideRecording(
                        side=side,
                        emg=_slice(emg.get(side), keep),
                        kinematics=_slice(_series(kinematics.get(side), self.kin_hz, "deg"), keep),
                        kinetics=_slice(_series(kinetics.get(side), self.kin_hz, "N.m/kg"), keep),
                        heel_strikes_s=heel_strikes,
                    )
                )
        return TrialRecording(
            sides=tuple(sides),
            emg_kind="raw",
            event_source="events",
            mains_hz=options.layout.mains_hz,
            notes=tuple(self.notes),
            meta=meta,
        )


def _side_order(order: Any, side: Side) -> list[str]:
    if isinstance(order, dict):
        return list(order.get(side, []))
    return list(order or [])


def _block_match(
    emg: np.ndarray, cell: np.ndarray, expected: int, search: int
) -> tuple[float, int]:
    """Best normalised correlation of ``cell`` (P × k) with ``emg`` rows starting within
    ``search`` of ``expected``, and that start's offset from ``expected``."""
    p = cell.shape[0]
    lo = max(expected - search, 0)
    segment = np.nan_to_num(emg[lo : expected + search + p])
    if segment.shape[0] < p:
        return -1.0, 0
    b = np.nan_to_num(cell - np.nanmean(cell, axis=0))
    # Σ_t (a - ā) b = Σ_t a b, as b has zero mean: one sliding dot product per column.
    dots = sum(np.correlate(segment[:, c], b[:, c], "valid") for c in range(b.shape[1]))
    sums = np.cumsum(np.vstack([np.zeros((1, segment.shape[1])), segment]), axis=0)
    squares = np.cumsum(np.vstack([np.zeros((1, segment.shape[1])), segment**2]), axis=0)
    window_sum = sums[p:] - sums[:-p]
    window_energy = ((squares[p:] - squares[:-p]) - window_sum**2 / p).sum(axis=1)
    denominator = np.sqrt(np.maximum(window_energy, 0.0) * float((b**2).sum()))
    corr = np.where(denominator > 0, dots / np.where(denominator > 0, denominator, 1.0), 0.0)
    best = int(np.argmax(corr))
    return float(corr[best]), lo + best - expected


def _series(data: np.ndarray | None, rate: float, units: str) -> TimeSeries | None:
    return None if data is None else TimeSeries(data, rate, 0.0, units)


def _slice(series: TimeSeries | None, keep: tuple[float, float] | None) -> TimeSeries | None:
    """The part of ``series`` within ``keep`` (seconds), or all of it when ``keep`` is None."""
    return series if keep is None else crop(series, *keep)


def _mean_cycle(data: np.ndarray, *, starts: np.ndarray, ends: np.ndarray, rate: float):
    """(101, 3) sagittal mean over strides of (T, 3, 3) data sampled at ``rate`` from t = 0."""
    series = TimeSeries(data[:, :, _FLEX], rate, 0.0, "")
    return np.nanmean(time_normalise(series, starts, ends, 101), axis=0)


def _check_curves(
    kinematics: dict[Side, np.ndarray],
    kinetics: dict[Side, np.ndarray],
    windows: dict[Side, list],
    rate: float,
    url: str,
    where: str,
) -> None:
    """Angle signs ([I] PiG X flexion / dorsiflexion positive) and the internal ankle moment
    ([I] PiG moments are external: after the catalogue's sign, plantarflexor = negative)."""
    for side in SIDES:
        if side not in windows:
            continue
        mean_curve = functools.partial(
            _mean_cycle,
            starts=np.concatenate([s for s, _ in windows[side]]),
            ends=np.concatenate([e for _, e in windows[side]]),
            rate=rate,
        )

        if side in kinematics:
            check_sagittal_signs(
                mean_curve(kinematics[side]),
                url,
                assumption=f"{where}: {side} angle signs are not flexion / dorsiflexion positive "
                "([I] Plug-in Gait X)",
                nan="propagate",  # a missing mean-cycle sample is refused
            )
        if side in kinetics:
            ankle = cycle_window(mean_curve(kinetics[side]), 0.0, 0.65)[:, _ANKLE]
            if not (ankle.min() < -0.3 and abs(ankle.min()) > 1.5 * max(ankle.max(), 0.0)):
                raise SourceError(
                    url,
                    f"{where}: {side} internal ankle moment in stance ranges {ankle.min():+.2f} to "
                    f"{ankle.max():+.2f} N·m/kg: not plantarflexor-negative — the [I] "
                    "'Plug-in Gait moments are external' sign (kinetics.sign) is wrong",
                )

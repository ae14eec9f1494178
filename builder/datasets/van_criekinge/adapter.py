"""Van Criekinge et al. 2023 (Sci Data 10:852): the processed, stride-normalised MAT files.

``MAT_normalizedData_{AbleBodiedAdults,PostStrokeAdults}_v*.mat`` hold one struct array
``Sub`` (one element per subject). Per subject and leg (``layout.side_containers``: L/R for
able-bodied adults, P/N = paretic / non-paretic for stroke survivors):

- Plug-in Gait ``<Joint>Angles`` / ``<Joint>Moment`` ``.{x,y,z}``: 1001 points × strides
  (x flexion; y and z frontal and transverse, see below); moments external, N·mm/kg. What
  Plug-in Gait itself writes agrees (real C3D ``../shared/data/real/gait-pig.c3d``: hip
  angle Y adducts in stance, moments ~1300 N·mm/kg at the ankle, plantarflexor / extensor /
  abductor positive); whether this MAT export kept them is what the checks below decide;
- EMG envelopes ``<M>norm.n`` (1001 × strides, normalised to their maximum over strides);
- ``events.<token>_ICstart`` / ``_ICstop`` (100 Hz frames, so durations are
  (stop − start) / 100 s), ``_TOnorm``, ``_Trial``, ``_GoodForcePlateLanding``;
- ``sub_char`` (Age, Weight, ...; for stroke the paretic side) and ``meas_char`` (rates).

Output: one recording per (subject, leg, trial number), one stride per column, laid at
``ICstart / 100`` s of that trial (``times_absolute``). Metadata: subject ``AB001``/``PS001``
(index in ``Sub``), population ``healthy`` / ``older_adults`` (age ≥ 65) / ``stroke``, stroke
legs tagged ``paretic leg`` / ``non-paretic leg`` in the condition. Kinetics of strides
without a good force-plate landing are NaN (mask False); an absent EMG channel (empty array,
all NaN) is NaN, never zero.

Checked on the data, file-wide (a broken assumption is a :class:`SourceError` naming it):

- axes: which of HipAngles y / z is frontal. The frontal hip angle adducts in stance and
  abducts in swing (stance-minus-swing mean ≈ +8°), the transverse one does not
  (|contrast| ≈ 2-3°). The component the catalogue maps to adduction must show a contrast
  ≥ 2° and ≥ 2× the other's; otherwise the file is refused (the other axis, a flipped sign,
  or ambiguous), never guessed. The ≈ 2-3° transverse contrast is [I]: on the one real PiG
  trial here (gait-pig.c3d, two full cycles) Y gives +5.4/+5.5° but Z +6.3/+1.6°, a pooled
  ratio of 1.4 that this check would refuse as unresolved — it relies on pooling a whole
  file's subjects, unconfirmed on the real file;
- 1001 points per stride for angles, moments and EMG (the EMG description says 1000);
- moments: N·mm/kg (× 1e-3 gives ~1 N·m/kg) and external (the flip gives a negative ankle
  plantarflexor moment at 40-55 % of the cycle), on the good-force-plate strides;
- EMG envelopes are non-negative and smooth (``emg_kind: envelope``);
- event frames at 100 Hz: ``meas_char.VideoFrameRate`` (when present) equals
  ``events.index_rate_hz``;
- stroke: every subject has a paretic side (L/R) in ``sub_char``; if no subject has the field
  the file is refused, a subject without it is left out with a note.

Per subject, a stride whose stop frame is not after its start, or arrays whose stride counts
disagree, leave that stride / leg out with a note (not the whole file).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, Literal

import numpy as np
from pydantic import Field

from builder.conventions import JOINTS, MUSCLES, PLANES, Side, angle_factor, moment_factor
from builder.datasets.base import AdapterOptions, SourceAdapter
from builder.datasets.options import DatasetOptions, JointMap
from builder.datasets.segments import cycle_sides
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.formats.matlab import field, load_mat
from builder.processing.checks import check_emg_kind, check_walking_moments
from builder.records import TrialRecording, TrialSpec

_HIP, _ANKLE = JOINTS.index("hip"), JOINTS.index("ankle")
_ADD, _FLEX = PLANES.index("adduction"), PLANES.index("flexion")
MIN_FRONTAL_CONTRAST_DEG = 2.0
STROKE = "stroke"
_LEG_TOKENS: dict[str, Side] = {"L": "L", "R": "R"}  # event tokens that name a leg as such


class VanCriekingeLayout(AdapterOptions):
    format: Literal["mat-v5", "mat-v7.3"] = "mat-v5"
    per_file: Literal["dataset"] = "dataset"
    inside: str = ""
    variable: str = "Sub"
    side_containers: dict[str, dict[str, str]]  # population -> event token -> struct
    population_map: dict[str, str]  # file token -> population
    subject_ids: dict[str, str] = Field(default_factory=dict)  # population -> "AB{i:03d}"
    subject_info: str = "sub_char"
    age_field: str = "Age"
    older_adult_age: float = 65.0
    paretic_side_field: str = "ParSide"
    measurement_info: str = "meas_char"
    activity_from: Literal["path"] = "path"


class VanCriekingeEvents(AdapterOptions):
    kind: Literal["pre_segmented"] = "pre_segmented"
    container: str = "events"
    start: str = "{side}_ICstart"
    stop: str = "{side}_ICstop"
    toe_off: str | None = "{side}_TOnorm"
    trial: str | None = "{side}_Trial"
    good_force_plate: str | None = "{side}_GoodForcePlateLanding"
    index_rate_hz: float = Field(default=100.0, gt=0)


class VanCriekingeOptions(DatasetOptions):
    layout: VanCriekingeLayout
    events: VanCriekingeEvents = Field(default_factory=VanCriekingeEvents)


@dataclass
class _Leg:
    """One leg of one subject, strides along axis 0."""

    subject: str
    side: Side
    token: str
    condition: str
    population: str
    kinematics: np.ndarray  # (N, P, 3, 3) canonical degrees
    kinetics: np.ndarray  # (N, P, 3, 3) canonical N·m/kg, NaN where no good plate
    emg: np.ndarray | None  # (N, P, 13)
    start_s: np.ndarray
    duration_s: np.ndarray
    trial: np.ndarray  # (N,) str
    toe_off: np.ndarray  # (N,) cycle fraction, NaN unknown
    raw_hip: dict[str, np.ndarray]  # component -> (N, P) raw hip angles, for the axes check
    good_plate: np.ndarray  # (N,) bool


@dataclass
class _File:
    legs: list[_Leg] = dc_field(default_factory=list)
    notes: dict[str, list[str]] = dc_field(default_factory=lambda: defaultdict(list))
    emg_points: set[int] = dc_field(default_factory=set)


class VanCriekingeAdapter(SourceAdapter[VanCriekingeOptions]):
    name = "van_criekinge"
    options_model = VanCriekingeOptions
    emg_kinds = frozenset({"envelope"})

    def read(
        self, spec: TrialSpec, options: VanCriekingeOptions, files: FileAccess
    ) -> list[TrialRecording]:
        url, layout = spec.url, options.layout
        population = layout.population_map.get(spec.population)
        if population is None:
            raise SourceError(
                url,
                f"file token {spec.population!r} is not in layout.population_map "
                f"{sorted(layout.population_map)}",
            )
        if population not in layout.side_containers:
            raise SourceError(url, f"layout.side_containers has no entry for {population!r}")
        data = load_mat(files.local_path(url), url, variables=[layout.variable])
        subjects = field(data, layout.variable, url, why="the subjects' struct array")
        subjects = [subjects] if isinstance(subjects, dict) else list(subjects)
        if not subjects:
            raise SourceError(url, f"{layout.variable} is empty")

        found = _File()
        paretic_known = 0
        for i, subject in enumerate(subjects, start=1):
            if not isinstance(subject, dict):
                raise SourceError(url, f"{layout.variable}({i}) is not a struct")
            sid = layout.subject_ids.get(population, "S{i:03d}").format(i=i)
            _check_rates(subject, options, url, found.notes[sid])
            sides = _side_map(subject, population, options, sid, found.notes[sid])
            if population == STROKE and sides is not None:
                paretic_known += 1
            for token, (side, condition) in (sides or {}).items():
                leg = _read_leg(
                    subject, sid, token, side, condition, population, options, spec, found
                )
                if leg is not None:
                    found.legs.append(leg)
        if population == STROKE and paretic_known == 0:
            raise SourceError(
                url,
                f"[I] paretic side: no subject has {layout.subject_info}."
                f"{layout.paretic_side_field} (L/R); cannot tell which leg is which",
            )
        _check_file(found, options, spec)
        return _recordings(found, spec)


# --- per subject ----------------------------------------------------------------------------


def _check_rates(subject: dict, options: VanCriekingeOptions, url: str, notes: list[str]) -> None:
    info = subject.get(options.layout.measurement_info)
    if not isinstance(info, dict):
        return
    video = info.get("VideoFrameRate")
    if video is not None and not np.isclose(float(video), options.events.index_rate_hz):
        raise SourceError(
            url,
            f"[I] event frames at {options.events.index_rate_hz:g} Hz: meas_char.VideoFrameRate "
            f"is {float(video):g} Hz",
        )
    analog = info.get("AnalogFrameRate")
    emg_hz = options.rates.emg_hz
    if analog is not None and emg_hz is not None and not np.isclose(float(analog), emg_hz):
        notes.append(f"meas_char.AnalogFrameRate {float(analog):g} Hz, catalogue emg_hz {emg_hz:g}")


def _side_map(
    subject: dict, population: str, options: VanCriekingeOptions, sid: str, notes: list[str]
) -> dict[str, tuple[Side, str]] | None:
    """Event token -> (L/R, condition suffix) for the subject's legs; None if unknowable."""
    tokens = options.layout.side_containers[population]
    if population != STROKE:
        return {token: (_LEG_TOKENS[token], "") for token in tokens if token in _LEG_TOKENS}
    info = subject.get(options.layout.subject_info)
    value = info.get(options.layout.paretic_side_field) if isinstance(info, dict) else None
    paretic = _side_token(value)
    if paretic is None:
        notes.append(
            f"{sid} left out: no usable paretic side in {options.layout.subject_info}."
            f"{options.layout.paretic_side_field} (found {value!r})"
        )
        return None
    other: Side = "R" if paretic == "L" else "L"
    return {"P": (paretic, "paretic leg"), "N": (other, "non-paretic leg")}


def _side_token(value: Any) -> Side | None:
    if isinstance(value, str):
        text = value.strip().casefold()
        if text in ("l", "left", "links"):
            return "L"
        if text in ("r", "right", "rechts"):
            return "R"
    return None


def _read_leg(
    subject: dict,
    sid: str,
    token: str,
    side: Side,
    condition: str,
    population: str,
    options: VanCriekingeOptions,
    spec: TrialSpec,
    found: _File,
) -> _Leg | None:
    url, layout, notes = spec.url, options.layout, found.notes[sid]
    container = layout.side_containers[population][token]
    data = subject.get(container)
    if not isinstance(data, dict):
        notes.append(f"{sid} {side}: no {container} struct")
        return None
    events = field(subject, options.events.container, url)

    def event(name: str | None, default: float = np.nan) -> np.ndarray | None:
        if name is None:
            return None
        value = events.get(name.format(side=token)) if isinstance(events, dict) else None
        return None if value is None else np.atleast_1d(np.asarray(value, dtype=float)).ravel()

    start = event(options.events.start)
    stop = event(options.events.stop)
    if start is None or stop is None:
        notes.append(f"{sid} {side}: no {options.events.start.format(side=token)} / stop events")
        return None
    n = start.size
    try:
        kinematics, raw_hip = _joints(data, options.kinematics, "kinematics", url, notes, sid, side)
        kinetics, _ = _joints(data, options.kinetics, "kinetics", url, notes, sid, side)
        emg = _emg(data, options, side, url, notes, sid, found)
    except _LegProblem as problem:
        notes.append(f"{sid} {side} left out: {problem}")
        return None
    counts = {
        "events": n,
        "stop events": stop.size,
        "kinematics": None if kinematics is None else kinematics.shape[0],
        "kinetics": None if kinetics is None else kinetics.shape[0],
        "EMG": None if emg is None else emg.shape[0],
    }
    if kinematics is None or len({c for c in counts.values() if c is not None}) != 1:
        notes.append(f"{sid} {side} left out: stride counts disagree {counts}")
        return None
    good = event(options.events.good_force_plate)
    good_plate = np.ones(n, bool) if good is None or good.size != n else good == 1
    if kinetics is not None:
        kinetics[~good_plate] = np.nan
        if (~good_plate).any():
            notes.append(
                f"{sid} {side}: kinetics of {int((~good_plate).sum())} stride(s) "
                "without a good force-plate landing set absent"
            )
    trial = event(options.events.trial)
    toe_off = event(options.events.toe_off)
    rate = options.events.index_rate_hz
    duration = (stop - start) / rate
    usable = np.isfinite(duration) & (duration > 0)
    if (~usable).any():
        notes.append(
            f"{sid} {side}: {int((~usable).sum())} stride(s) whose stop frame is not "
            "after its start left out"
        )
    keep = np.flatnonzero(usable)
    return _Leg(
        subject=sid,
        side=side,
        token=token,
        condition=condition,
        population=_population(subject, population, options),
        kinematics=kinematics[keep],
        kinetics=(kinetics if kinetics is not None else np.full_like(kinematics, np.nan))[keep],
        emg=None if emg is None else emg[keep],
        start_s=start[keep] / rate,
        duration_s=duration[keep],
        trial=np.array(
            ["all" if trial is None or trial.size != n else f"{trial[k]:g}" for k in keep]
        ),
        toe_off=(
            toe_off[keep] / 1000.0
            if toe_off is not None and toe_off.size == n
            else np.full(keep.size, np.nan)
        ),
        raw_hip={c: v[keep] for c, v in raw_hip.items()},
        good_plate=good_plate[keep],
    )


def _population(subject: dict, population: str, options: VanCriekingeOptions) -> str:
    if population == STROKE:
        return STROKE
    info = subject.get(options.layout.subject_info)
    age = info.get(options.layout.age_field) if isinstance(info, dict) else None
    if age is None:
        return population
    try:
        years = float(age)
    except (TypeError, ValueError):
        return population
    return "older_adults" if years >= options.layout.older_adult_age else population


def _strides(value: Any, points: int | None, what: str, url: str) -> np.ndarray | None:
    """(strides, points) from a points × strides array; None when empty (absent)."""
    array = np.asarray(value, dtype=float)
    if array.size == 0:
        return None
    if array.ndim == 1:  # one stride, squeezed by the reader
        array = array[:, None]
    if array.ndim != 2:
        raise SourceError(url, f"{what}: expected points x strides, got shape {array.shape}")
    if points is not None and array.shape[0] != points:
        raise SourceError(
            url,
            f"[F] {points} points per stride (rates.points_per_stride): {what} has "
            f"{array.shape[0]}",
        )
    return array.T


class _LegProblem(Exception):
    """A defect of one leg's arrays: the leg is left out with a note, the file goes on."""


def _joints(
    data: dict,
    joints: JointMap | None,
    stream: Literal["kinematics", "kinetics"],
    url: str,
    notes: list[str],
    sid: str,
    side: Side,
) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    if joints is None:
        return None, {}
    points = None
    out: np.ndarray | None = None
    raw_hip: dict[str, np.ndarray] = {}
    if stream == "kinematics":
        factor = angle_factor(joints.units or "deg")
    else:
        try:
            factor = moment_factor(joints.units or "N.mm/kg")
        except ValueError as error:
            raise SourceError(url, f"kinetics: {error}") from None
    for joint, label in (joints.labels or {}).items():
        node = data.get(label)
        if not isinstance(node, dict):
            notes.append(f"{sid} {side}: no {label}")
            continue
        for plane, component in (joints.axes or {}).items():
            what = f"{label}.{component}"
            values = _strides(node.get(component, np.empty(0)), points, what, url)
            if values is None:
                continue
            if out is None:
                points = values.shape[1]
                out = np.full((values.shape[0], points, len(JOINTS), len(PLANES)), np.nan)
            if values.shape[0] != out.shape[0]:
                raise _LegProblem(f"{what} has {values.shape[0]} strides, not {out.shape[0]}")
            sign = joints.sign_of(joint, plane)
            out[:, :, JOINTS.index(joint), PLANES.index(plane)] = sign * factor * values
        if joint == "hip" and stream == "kinematics":
            for component in ("y", "z"):
                values = _strides(
                    node.get(component, np.empty(0)), points, f"{label}.{component}", url
                )
                if values is not None:
                    raw_hip[component] = values
    return out, raw_hip


def _emg(
    data: dict,
    options: VanCriekingeOptions,
    side: Side,
    url: str,
    notes: list[str],
    sid: str,
    found: _File,
) -> np.ndarray | None:
    if options.emg is None:
        return None
    columns: dict[str, np.ndarray] = {}
    absent = []
    points = None
    for muscle, names in options.emg.names(side).items():
        arrays = []
        for name in names:
            try:
                value = field(data, name, url)
            except SourceError:
                value = np.empty(0)
            strides = _strides(value, None, name, url)
            if strides is None or not np.isfinite(strides).any():
                continue
            arrays.append(strides)
        if not arrays:
            absent.append(muscle)
            continue
        if len(arrays) > 1:
            columns[muscle] = np.mean(np.stack(arrays), axis=0)
        else:
            columns[muscle] = arrays[0]
        points = columns[muscle].shape[1]
        found.emg_points.add(points)
    if absent:
        notes.append(f"{sid} {side}: no EMG for {', '.join(absent)} (absent, masked)")
    if not columns:
        return None
    shapes = {m: v.shape for m, v in columns.items()}
    if len(set(shapes.values())) != 1:
        raise _LegProblem(f"EMG arrays differ in shape {shapes}")
    out = np.full((*next(iter(shapes.values())), len(MUSCLES)), np.nan)  # (strides, points, 13)
    for muscle, values in columns.items():
        out[:, :, MUSCLES.index(muscle)] = values
    return out


# --- file-wide checks ------------------------------------------------------------------------


def _check_file(found: _File, options: VanCriekingeOptions, spec: TrialSpec) -> None:
    url = spec.url
    if not found.legs:
        return
    expected = options.rates.points_per_stride
    kin_points = {leg.kinematics.shape[1] for leg in found.legs}
    streams: list[tuple[Literal["kinematics", "emg"], set[int]]] = [
        ("kinematics", kin_points),
        ("emg", found.emg_points),
    ]
    for stream, points in streams:
        want = expected.get(stream)
        if want is not None and points and points != {want}:
            raise SourceError(
                url,
                f"[F] {want} points per stride vs '1000 pts/stride' in the description: "
                f"{stream} arrays have {sorted(points)}",
            )
    _check_axes(found.legs, options, url)
    good = [leg.kinetics[leg.good_plate] for leg in found.legs if leg.good_plate.any()]
    if good:
        check_walking_moments(
            np.concatenate(good),
            url,
            what=f"the moments read as {options.kinetics.units if options.kinetics else '?'}",
            assumption="[F] moments N.mm/kg (/1000) and [I] PiG external (flipped to internal)",
        )
    emg = [s for leg in found.legs if leg.emg is not None for s in leg.emg]
    if emg:
        check_emg_kind(emg, spec.emg_kind, url, "processed EMG envelopes (metadata.emg_kind)")


def _check_axes(legs: list[_Leg], options: VanCriekingeOptions, url: str) -> None:
    """Which hip component is frontal: stance-minus-swing contrast of each, pooled."""
    joints = options.kinematics
    axes = (joints.axes or {}) if joints else {}
    frontal, transverse = axes.get("adduction"), axes.get("rotation")
    if (
        joints is None
        or frontal is None
        or transverse is None
        or {frontal, transverse} != {"y", "z"}
    ):
        return  # the check is about the y/z conflict only
    contrast = {}
    for component in ("y", "z"):
        values = [c for leg in legs for c in _contrasts(leg, component)]
        if not values:
            return
        contrast[component] = float(np.nanmean(values))
    sign = joints.sign_of("hip", "adduction")
    mapped, other = sign * contrast[frontal], contrast[transverse]
    ratio_ok = abs(mapped) >= 2 * abs(other)
    detail = (
        f"hip stance-minus-swing mean: {frontal} {contrast[frontal]:+.1f} deg, "
        f"{transverse} {contrast[transverse]:+.1f} deg"
    )
    if mapped >= MIN_FRONTAL_CONTRAST_DEG and ratio_ok:
        return
    if abs(other) >= MIN_FRONTAL_CONTRAST_DEG and abs(other) >= 2 * abs(mapped):
        raise SourceError(
            url,
            f"axes conflict (PiG y frontal vs LocoHub z frontal): HipAngles.{transverse} "
            f"behaves as the frontal angle, not .{frontal} as the catalogue maps ({detail})",
        )
    if mapped <= -MIN_FRONTAL_CONTRAST_DEG and ratio_ok:
        raise SourceError(
            url,
            f"axes: HipAngles.{frontal} abducts in stance — adduction sign flipped ({detail})",
        )
    raise SourceError(
        url, f"axes conflict unresolved: no hip component is clearly frontal ({detail})"
    )


def _contrasts(leg: _Leg, component: str) -> list[float]:
    values = leg.raw_hip.get(component)
    if values is None:
        return []
    phase = np.linspace(0.0, 1.0, values.shape[1])
    out = []
    for curve, to in zip(values, leg.toe_off, strict=True):
        to = to if 0.3 < to < 0.9 else 0.6
        stance = curve[(phase >= 0.05) & (phase <= to - 0.05)]
        swing = curve[(phase >= to + 0.05) & (phase <= 0.95)]
        if np.isfinite(stance).all() and np.isfinite(swing).all():
            out.append(float(stance.mean() - swing.mean()))
    return out


# --- recordings -------------------------------------------------------------------------------


def _recordings(found: _File, spec: TrialSpec) -> list[TrialRecording]:
    recordings = []
    pending = dict(found.notes)
    for leg in found.legs:
        notes = tuple(pending.pop(leg.subject, []))
        for trial in dict.fromkeys(leg.trial.tolist()):
            pick = np.flatnonzero(leg.trial == trial)
            sides = cycle_sides(
                leg.side,
                leg.duration_s[pick],
                kinematics=leg.kinematics[pick],
                kinetics=leg.kinetics[pick],
                emg=None if leg.emg is None else leg.emg[pick],
                emg_units="normalised",
                starts_s=None if trial == "all" else leg.start_s[pick],
            )
            condition = spec.condition
            if leg.condition:
                condition = f"{condition}; {leg.condition}" if condition else leg.condition
            recordings.append(
                TrialRecording(
                    sides=tuple(sides),
                    emg_kind=spec.emg_kind,
                    event_source="pre_segmented",
                    notes=notes,
                    meta={
                        "subject": leg.subject,
                        "trial": trial,
                        "population": leg.population,
                        "condition": condition,
                    },
                    times_absolute=trial != "all",
                )
            )
            notes = ()
    # Subjects left out entirely still report why (an empty recording carries the notes).
    for sid, left_out in pending.items():
        if left_out:
            recordings.append(
                TrialRecording(
                    sides=(),
                    emg_kind=spec.emg_kind,
                    event_source="pre_segmented",
                    notes=tuple(left_out),
                    meta={"subject": sid},
                )
            )
    return recordings

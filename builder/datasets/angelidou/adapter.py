"""Angelidou et al. (walking on variable-stiffness terrain; identity not confirmed): one MAT v5
file per participant, every gait cycle in its own cell::

    data.<P>.<speed>.<stiffness>.EMG.<RTA,RGA,RVL,RRF,RBF,LTA,…>{cycle}     raw EMG, 2 kHz
    data.<P>.<speed>.<stiffness>.jointAngles.<RHip,RKnee,RAnkle,LHip,…>{cycle}
    data.<P>.<speed>.<stiffness>.jointMoments.<RHip,…>{cycle}
    data.<P>.{participantInfo (Bodymass, Height), gaitEvents, unit}

A right cell is a right-leg cycle, a left cell a left-leg cycle (checked). Each cell spans its
cycle from heel strike to heel strike: its duration is ``(samples - 1) / 2000`` s of EMG, and
the angle/moment samples of the same cell are spread over that duration (they may be real-time
at a fixed rate or time-normalised — both are checked). Angle and moment arrays are (T,) or
(T, 3); only the sagittal column is used (``layout.sagittal_column``, checked: it is the one
with the knee's largest range). Units come from the file's ``unit`` struct (catalogue units
``"from_file: unit"``); moments are checked by magnitude against the stated unit, and their
sign by the ankle's stance moment (internal plantarflexor = negative). The EMG is raw and
processed per cycle (``emg_kind: raw``, checked bipolar).

Cells being single gait cycles is an assumption [C/I], so it is checked on every condition:
cycle durations are plausible strides, the kinematics of each leg start in heel-strike posture
(hip flexed, knee near extension, the knee's swing peak late in the cycle), and — when
``gaitEvents`` has the layout ``gaitEvents.<speed>.<stiffness>.{RHS,LHS}`` (heel-strike times)
— the cell durations equal the heel-strike intervals. Every participant file is read (the
foundation stopped after nine).

One recording per speed × stiffness, strides laid end to end (no absolute times); the stride
table gets the speed (from ``layout.speed_codes`` or the token, e.g. ``v1p2`` = 1.2 m/s) and
the terrain stiffness as condition ``terrain_stiffness_<value><unit>``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import numpy as np
from pydantic import Field

from builder.conventions import JOINTS, PLANES, Side, angle_factor, emg_factor, moment_factor
from builder.datasets.base import AdapterOptions, SourceAdapter
from builder.datasets.mapping import joint_array, muscle_matrix
from builder.datasets.options import DatasetOptions, JointMap, per_side
from builder.datasets.segments import cycle_sides
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.formats.matlab import field, load_mat
from builder.processing.checks import (
    ANKLE_PEAK_BANDS,
    check_knee_flexion_percentiles,
    check_plantarflexor_moment,
    check_raw_emg,
    robust_peak,
)
from builder.records import TrialRecording, TrialSpec

_HIP, _KNEE, _ANKLE = (JOINTS.index(j) for j in ("hip", "knee", "ankle"))
_FLEX = PLANES.index("flexion")
_FROM_FILE = re.compile(r"^\s*from_file\s*:\s*(\w+)\s*$")


class AngelidouLayout(AdapterOptions):
    format: Literal["mat-v5"] = "mat-v5"
    per_file: Literal["subject"] = "subject"
    inside: str | None = None
    other_fields: list[str] = Field(
        default_factory=lambda: ["participantInfo", "gaitEvents", "unit"]
    )
    activity_from: str = "path"
    root_variable: str = "data"
    # Column of a (T, 3) angle/moment array that holds the sagittal plane [I].
    sagittal_column: int = Field(default=0, ge=0, le=2)
    speed_codes: dict[str, float] | None = None  # speed token -> m/s; else parsed (v1p2 = 1.2)
    stiffness_unit: str = "kN/m"  # [I]


class AngelidouEvents(AdapterOptions):
    kind: Literal["pre_segmented"] = "pre_segmented"
    field: str = "gaitEvents"
    heel_strike_fields: dict[Side, str] = Field(default_factory=per_side("LHS", "RHS"))
    # The median cycle duration of a condition must lie in here (s).
    plausible_stride_s: tuple[float, float] = (0.6, 2.5)
    gait_events_tolerance_s: float = Field(default=0.01, gt=0)


class AngelidouOptions(DatasetOptions):
    layout: AngelidouLayout = Field(default_factory=AngelidouLayout)
    events: AngelidouEvents = Field(default_factory=AngelidouEvents)


class AngelidouAdapter(SourceAdapter[AngelidouOptions]):
    name = "angelidou"
    options_model = AngelidouOptions
    emg_kinds = frozenset({"raw"})

    def read(
        self, spec: TrialSpec, options: AngelidouOptions, files: FileAccess
    ) -> list[TrialRecording]:
        if options.emg is None or options.kinematics is None or options.rates.emg_hz is None:
            raise SourceError(spec.url, "catalogue entry needs emg, kinematics and rates.emg_hz")
        content = load_mat(files.local_path(spec.url), spec.url)
        root = field(content, options.layout.root_variable, spec.url, why="the data struct")
        participants = sorted(k for k, v in root.items() if isinstance(v, dict))
        if len(participants) != 1:
            raise SourceError(spec.url, f"expected one participant struct, found {participants}")
        participant = participants[0]
        data = root[participant]
        factors = _factors(options, data, spec.url)
        events = data.get(options.events.field)

        recordings: list[TrialRecording] = []
        for speed in sorted(k for k in data if k not in options.layout.other_fields):
            if not isinstance(data[speed], dict):
                continue
            for stiffness in sorted(data[speed]):
                condition = data[speed][stiffness]
                if not isinstance(condition, dict):
                    continue
                where = f"{participant}.{speed}.{stiffness}"
                # File-wide notes go with the first recording only (the report lists each once).
                notes = [] if recordings else list(factors["notes"])
                sides = []
                for side in options.sides:
                    cycles = _side_cycles(condition, options, side, factors, spec.url, where)
                    notes.extend(
                        _check_gait_events(
                            events, speed, stiffness, side, cycles, options, spec.url
                        )
                    )
                    sides.extend(
                        cycle_sides(
                            side,
                            cycles["durations"],
                            kinematics=cycles["kinematics"],
                            kinetics=cycles["kinetics"],
                            emg=cycles["emg"],
                            emg_rate_hz=options.rates.emg_hz,
                            emg_units="V",
                        )
                    )
                recordings.append(
                    TrialRecording(
                        sides=tuple(sides),
                        emg_kind=spec.emg_kind,
                        event_source="pre_segmented",
                        notes=tuple(dict.fromkeys(notes)),
                        meta={
                            "subject": participant,
                            "trial": f"{speed}_{stiffness}",
                            "speed_mps": _speed(speed, options.layout.speed_codes),
                            "condition": _stiffness(stiffness, options.layout.stiffness_unit),
                        },
                        times_absolute=False,
                    )
                )
        if not recordings:
            raise SourceError(spec.url, f"no <speed>.<stiffness> condition under {participant}")
        return recordings


# --- units --------------------------------------------------------------------------------------


def _factors(options: AngelidouOptions, data: dict[str, Any], url: str) -> dict[str, Any]:
    """Conversion factors to V, deg and N·m/kg from the catalogue or the file's unit struct
    (catalogue units ``"from_file: <struct>"``)."""
    assert options.emg is not None and options.kinematics is not None
    notes = []
    emg_unit = _unit(options.emg.units, data, "emg", url)
    angle_unit = _unit(options.kinematics.units, data, "angle", url)
    out: dict[str, Any] = {}
    try:
        out["emg"] = emg_factor(emg_unit) if emg_unit else 1.0
        out["angle"] = angle_factor(angle_unit or "deg")
        if options.kinetics is not None:
            moment_unit = _unit(options.kinetics.units, data, "moment", url)
            if moment_unit is None:
                raise SourceError(url, "moment units: neither the catalogue nor the file says")
            out["moment"] = moment_factor(moment_unit)
            out["moment_unit"] = moment_unit
    except ValueError as exc:
        raise SourceError(url, f"unit struct: {exc}") from None
    if emg_unit is None:
        notes.append("EMG units not stated: the EMG scale is in source units")
    notes.append(
        f"units: EMG {emg_unit or '?'}, angles {angle_unit or 'deg'}, moments "
        f"{out.get('moment_unit', '-')}"
    )
    out["notes"] = notes
    return out


def _unit(configured: str | None, data: dict[str, Any], kind: str, url: str) -> str | None:
    """The catalogue's unit, or (``from_file: <struct>``) the struct's entry whose name
    contains ``kind`` (e.g. unit.jointMoments for "moment")."""
    match = _FROM_FILE.match(configured or "")
    if match is None:
        return configured
    units = data.get(match.group(1))
    if not isinstance(units, dict):
        raise SourceError(url, f"no '{match.group(1)}' struct with the units in the file")
    names = [k for k in units if kind in k.casefold() and isinstance(units[k], str)]
    if len(names) != 1:
        raise SourceError(
            url,
            f"the '{match.group(1)}' struct has no single {kind} unit (fields {sorted(units)})",
        )
    return units[names[0]]


# --- cycles -------------------------------------------------------------------------------------


def _cells(condition: dict[str, Any], path: str, url: str, where: str) -> list[np.ndarray]:
    group, _, channel = path.partition(".")
    node = condition.get(group)
    if not isinstance(node, dict) or channel not in node:
        have = sorted(node) if isinstance(node, dict) else sorted(condition)
        raise SourceError(url, f"{where}: no {path}; found {have}")
    cells = node[channel]
    if not isinstance(cells, list):  # a single cycle stored without a cell
        cells = [cells]
    return [np.asarray(c, dtype=float) for c in cells]


def _sagittal(cells: list[np.ndarray], column: int, url: str, where: str) -> list[np.ndarray]:
    out = []
    for c in cells:
        if c.ndim == 1:
            out.append(c)
        elif c.ndim == 2 and 3 in c.shape:
            out.append((c if c.shape[1] == 3 else c.T)[:, column])
        else:
            raise SourceError(url, f"{where}: a cell of shape {c.shape}, expected (T,) or (T, 3)")
    return out


def _check_sagittal_column(cells: list[np.ndarray], column: int, url: str, where: str) -> None:
    """[C] only the sagittal plane is used: with three columns, the configured one must be
    the knee's largest excursion (flexion ~60° vs ~10° frontal/transverse)."""
    three = [(c if c.shape[1] == 3 else c.T) for c in cells if c.ndim == 2 and 3 in c.shape]
    if not three:
        return
    ranges = np.median([np.ptp(c, axis=0) for c in three], axis=0)
    if int(np.argmax(ranges)) != column:
        raise SourceError(
            url,
            f"{where}: the knee's largest range is in column {int(np.argmax(ranges))} "
            f"(ranges {np.round(ranges, 1).tolist()}), not the sagittal column {column} "
            "(fix layout.sagittal_column)",
        )


def _side_cycles(
    condition: dict[str, Any],
    options: AngelidouOptions,
    side: Side,
    factors: dict[str, Any],
    url: str,
    where: str,
) -> dict[str, Any]:
    assert options.emg is not None and options.kinematics is not None
    rate = float(options.rates.emg_hz or 0)
    emg = {
        m: [_cells(condition, _path(name), url, where) for name in names]
        for m, names in options.emg.names(side).items()
    }
    counts = {len(channel) for lists in emg.values() for channel in lists}
    if len(counts) != 1:
        raise SourceError(url, f"{where} {side}: EMG channels hold different cycle counts {counts}")
    n_cycles = counts.pop()
    lengths = [
        {channel[i].size for lists in emg.values() for channel in lists} for i in range(n_cycles)
    ]
    if any(len(s) != 1 for s in lengths):
        raise SourceError(url, f"{where} {side}: EMG channels of one cycle differ in length")
    n_emg = np.array([s.pop() for s in lengths])
    durations = (n_emg - 1) / rate
    low, high = options.events.plausible_stride_s
    median = float(np.median(durations))
    if not low <= median <= high:
        raise SourceError(
            url,
            f"{where} {side}: cells last {median:.3g} s (median of {n_cycles}) at {rate:g} Hz: "
            f"not single gait cycles ({low:g}-{high:g} s)",
        )
    for muscle, lists in emg.items():
        check_raw_emg(
            np.concatenate(lists[0]),
            url,
            assumption=f"EMG {where} {muscle} ({side}) is rectified or an envelope, not raw EMG "
            "(emg_kind raw assumed)",
        )
    emg_cycles = [
        muscle_matrix(
            {m: [c[i].ravel() * factors["emg"] for c in lists] for m, lists in emg.items()},
            (n_emg[i],),
        )
        for i in range(n_cycles)
    ]
    kinematics = _joint_cycles(
        condition,
        options.kinematics,
        side,
        factors["angle"],
        options,
        n_cycles,
        durations,
        url,
        where,
    )
    check_knee_flexion_percentiles(
        np.concatenate(kinematics),
        url,
        assumption=f"[I] knee flexion positive, in degrees ({where} {side})",
    )
    _check_heel_strike_posture(kinematics, url, f"{where} {side}")
    kinetics = None
    if options.kinetics is not None:
        kinetics = _joint_cycles(
            condition,
            options.kinetics,
            side,
            factors["moment"],
            options,
            n_cycles,
            durations,
            url,
            where,
        )
        _check_moment_magnitude(kinetics, factors["moment_unit"], url, f"{where} {side}")
        check_plantarflexor_moment(np.concatenate(kinetics), url, f" ({where} {side})")
    return {
        "durations": durations,
        "emg": emg_cycles,
        "kinematics": kinematics,
        "kinetics": kinetics,
    }


def _path(name: str) -> str:
    return name if "." in name else f"EMG.{name}"


def _joint_cycles(
    condition: dict[str, Any],
    joint_map: JointMap,
    side: Side,
    factor: float,
    options: AngelidouOptions,
    n_cycles: int,
    durations: np.ndarray,
    url: str,
    where: str,
) -> list[np.ndarray]:
    """Per cycle (P_i, 3, 3) canonical arrays from the sagittal column of each joint's cells."""
    column = options.layout.sagittal_column
    per_joint = {}
    for (joint, plane), path in joint_map.component_columns(side).items():
        if plane != "flexion":
            raise SourceError(url, f"only the sagittal plane is mapped; {joint}.{plane} given")
        raw = _cells(condition, str(path), url, where)
        if len(raw) != n_cycles:
            raise SourceError(
                url, f"{where} {side}: {path} has {len(raw)} cycles, the EMG {n_cycles}"
            )
        if joint == "knee":
            _check_sagittal_column(raw, column, url, f"{where} {path}")
        per_joint[joint, plane] = _sagittal(raw, column, url, f"{where} {path}")
    _check_same_cycles(per_joint, durations, url, f"{where} {side}")
    return [
        joint_array(
            {key: cells[i] for key, cells in per_joint.items()},
            (next(iter(per_joint.values()))[i].size,),
            signs=joint_map.sign,
            factor=factor,
        )
        for i in range(n_cycles)
    ]


def _check_same_cycles(
    per_joint: dict[tuple[str, str], list[np.ndarray]], durations: np.ndarray, url: str, where: str
) -> None:
    """Angle/moment cells and EMG cells describe the same cycles: the joints of a cycle have
    one length, and that length is either the same for every cycle (time-normalised) or
    proportional to the cycle's EMG duration (one sampling rate)."""
    lengths = np.array([[c.size for c in cells] for cells in per_joint.values()])
    if (lengths != lengths[0]).any():
        raise SourceError(url, f"{where}: joints of one cycle differ in length")
    points = lengths[0]
    if len(points) < 2 or (points == points[0]).all():
        return
    rates = (points - 1) / durations
    if np.ptp(rates) > 0.05 * np.median(rates) + 1.0 / durations.min():
        raise SourceError(
            url,
            f"{where}: angle/moment cells imply rates {rates.min():.4g}-{rates.max():.4g} Hz over "
            "the EMG cycle durations: they do not cover the same cycles",
        )


def _normalised(curve: np.ndarray, n: int = 101) -> np.ndarray:
    return np.interp(np.linspace(0, 1, n), np.linspace(0, 1, curve.size), curve)


def _check_heel_strike_posture(kinematics: list[np.ndarray], url: str, where: str) -> None:
    """[C/I] cells start at the leg's heel strike: in the median cycle the knee is near
    extension at the start, its swing peak comes after 50 % of the cycle, and the hip is in the
    flexed half of its range. A cell cut at the other leg's heel strike (half a cycle off)
    starts with the knee flexing into swing and fails."""
    knee = np.median([_normalised(k[:, _KNEE, _FLEX]) for k in kinematics], axis=0)
    hip = np.median([_normalised(k[:, _HIP, _FLEX]) for k in kinematics], axis=0)
    peak = int(np.argmax(knee))
    ok = 50 <= peak <= 92 and knee[0] < knee[peak] - 25 and hip[0] > 0.5 * (hip.min() + hip.max())
    if not ok:
        raise SourceError(
            url,
            f"{where}: the cycles do not start at this leg's heel strike (median cycle: knee "
            f"{knee[0]:.0f} deg at the start, swing peak {knee[peak]:.0f} deg at {peak} %, hip "
            f"{hip[0]:.0f} deg in {hip.min():.0f}..{hip.max():.0f})",
        )


def _check_moment_magnitude(kinetics: list[np.ndarray], unit: str, url: str, where: str) -> None:
    """The stated unit must give N·m/kg magnitudes (ankle peak 0.5-4)."""
    peak = robust_peak(np.concatenate([k[:, _ANKLE, _FLEX] for k in kinetics]))
    if np.isnan(peak):  # no finite sample
        return
    low, high = ANKLE_PEAK_BANDS["N.m/kg"]
    if not low <= peak <= high:
        raise SourceError(
            url,
            f"{where}: moments in {unit} (the unit struct) give an ankle peak of {peak:.3g} "
            f"N.m/kg, outside {low:g}-{high:g}: the stated unit is wrong",
        )


def _check_gait_events(
    events: Any,
    speed: str,
    stiffness: str,
    side: Side,
    cycles: dict[str, Any],
    options: AngelidouOptions,
    url: str,
) -> list[str]:
    """When gaitEvents.<speed>.<stiffness>.<RHS|LHS> lists heel-strike times, the cells'
    durations must equal their intervals (SourceError); another layout gives a note."""
    name = options.events.heel_strike_fields[side]
    try:
        times = np.atleast_1d(np.asarray(events[speed][stiffness][name], dtype=float)).ravel()
    except (KeyError, TypeError, ValueError, IndexError):
        return [
            f"{options.events.field} layout not recognised: cycles checked by duration and posture"
        ]
    durations = cycles["durations"]
    if times.size != durations.size + 1 or not np.allclose(
        np.diff(times), durations, atol=options.events.gait_events_tolerance_s
    ):
        raise SourceError(
            url,
            f"{options.events.field}.{speed}.{stiffness}.{name}: {times.size} heel strikes for {durations.size} cells, "
            "or intervals that differ from the cell durations: cells are not these gait cycles",
        )
    return []


def _speed(token: str, codes: dict[str, float] | None) -> float:
    if codes is not None and token in codes:
        return float(codes[token])
    match = re.search(r"(\d+)(?:[p_x](\d+))?", token)
    if match is None:
        return float("nan")
    return float(f"{match.group(1)}.{match.group(2) or 0}")


def _stiffness(token: str, unit: str) -> str:
    match = re.search(r"(\d+)(?:[p_x](\d+))?", token)
    if match is None:
        return f"terrain_stiffness_{token}"
    value = float(f"{match.group(1)}.{match.group(2) or 0}")
    return f"terrain_stiffness_{value:g}{unit}"

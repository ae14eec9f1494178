"""Miniature of Camargo et al. 2021 (source key ``camargo2021``) in its own layout.

Files (every one a MATLAB ``table`` in the variable ``data``, written with mat-io so that scipy
sees only ``__function_workspace__``, as in the real release)::

    SubjectInfo.mat                                  table: Subject, Age, Gender, Height (mm), Weight (kg)
    AB06/10_09_18/treadmill/<sensor>/treadmill_01_01.mat
    AB06/10_09_18/levelground/<sensor>/levelground_ccw_normal_01_01.mat
    AB07/10_14_18/ramp/<sensor>/ramp_1_r_01_01.mat     first session
    AB07/10_16_18/stair/<sensor>/stair_1_l_01_01.mat   second date folder of the same subject

with ``<sensor>`` in emg (1 kHz, 11 right-leg channels, volts), ik (200 Hz OpenSim coordinates,
degrees), id (200 Hz ``<coordinate>_moment`` in N·m, internal, not divided by mass), gcLeft /
gcRight (``Header``, ``HeelStrike``, ``ToeOff`` as 0–100 % ramps) and conditions (``labels``:
Header + Label per sample; treadmill: ``speed``: Header + Speed; ramp: ``rampIncline`` in
degrees; stairs: ``stairHeight`` in inches).

Quirks the adapter must handle: overground gait phase is a flat 0 before the first and after
the last heel strike (the treadmill's ramps run through, with partial cycles at both ends);
ramp and stair trials mix level walking, ascent, descent and transition labels; the level-
ground trial has no moments (NaN) before its first right stride's loading response; AB07 has
60 Hz hum and two sessions.

A trial that mixes activities is simulated as several layers of the demo gait model sharing
one gait timing (same seed, speeds chosen so that every layer has the same stride time) and
cross-faded over the transitions, so every signal stays continuous. Stairs are approximated
by a ±15° incline (the gait model has no stairs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from builder.conventions import JOINTS, PLANES, Side
from builder.datasets.miniatures import miniature
from builder.synthetic.files import matlab_header, quantise, write_mat
from builder.synthetic.gait_model import (
    DEMO_MUSCLES,
    SimulatedTrial,
    SubjectParams,
    simulate_trial,
    stride_time_s,
)
from builder.synthetic.simulation import activity_of, record_emg

KIN_RATE_HZ: Final = 200.0
EMG_RATE_HZ: Final = 1000.0
MAINS_HZ: Final = 60.0
HEADER: Final = matlab_header("Tue Oct  9 12:00:00 2018")

EMG_COLUMNS: Final = (
    "gastrocmed",
    "tibialisanterior",
    "soleus",
    "vastusmedialis",
    "vastuslateralis",
    "rectusfemoris",
    "bicepsfemoris",
    "semitendinosus",
    "gracilis",
    "gluteusmedius",
    "rightexternaloblique",
)
_FROM_MODEL: Final = {
    "gastrocmed": "gastrocnemius_medialis",
    "tibialisanterior": "tibialis_anterior",
    "soleus": "soleus",
    "vastusmedialis": "vastus_medialis",
    "vastuslateralis": "vastus_lateralis",
    "rectusfemoris": "rectus_femoris",
    "bicepsfemoris": "biceps_femoris",
    "semitendinosus": "semitendinosus",
    "gluteusmedius": "gluteus_medius",
}
# OpenSim coordinates of one leg, and the canonical (joint, plane) each one is.
_LEG_COORDINATES: Final = (
    "hip_flexion",
    "hip_adduction",
    "hip_rotation",
    "knee_angle",
    "ankle_angle",
    "subtalar_angle",
    "mtp_angle",
)
_CANONICAL: Final = {
    "hip_flexion": ("hip", "flexion"),
    "hip_adduction": ("hip", "adduction"),
    "hip_rotation": ("hip", "rotation"),
    "knee_angle": ("knee", "flexion"),
    "ankle_angle": ("ankle", "flexion"),
}
_TRANSLATIONS: Final = ("pelvis_tx", "pelvis_ty", "pelvis_tz")  # metres; the rest degrees
_FILE_SIDES: Final[tuple[tuple[str, Side], ...]] = (("r", "R"), ("l", "L"))  # suffix, side
# Labels of the conditions files and the activity the catalogue maps them to.
LABEL_ACTIVITY: Final = {
    "walk": "walk",
    "rampascent": "ramp_ascent",
    "rampdescent": "ramp_descent",
    "stairascent": "stair_ascent",
    "stairdescent": "stair_descent",
    "idle": "other",
    "stand": "other",
}


@dataclass(frozen=True)
class Subject:
    subject_id: str
    height_m: float
    mass_kg: float
    age: int
    gender: str
    seed: int
    mains_hum: bool


SUBJECTS: Final = (
    Subject("AB06", 1.72, 66.0, 21, "M", 606, mains_hum=False),
    Subject("AB07", 1.80, 81.5, 24, "F", 707, mains_hum=True),
)
# SubjectInfo.mat lists every subject of the release, also those without data here.
_OTHER_SUBJECTS: Final = (("AB08", 20, "M", 1780.0, 74.8),)


@dataclass(frozen=True)
class Segment:
    """Conditions label up to right-leg gait phase ``until`` (cycles; 0 = first heel strike).

    ``incline`` is the simulated slope; None cross-fades from the previous segment's slope to
    the next one's (a transition).
    """

    label: str
    incline: float | None
    until: float


@dataclass(frozen=True)
class Trial:
    subject: str
    date: str
    mode: str
    stem: str
    speed_mps: float  # of the sloped layers (level layers are matched in stride time)
    n_strides: int
    segments: tuple[Segment, ...]
    rest_phase: bool  # gait phase flat 0 before the first and after the last heel strike
    labels: bool = True
    treadmill_speed: bool = False
    no_moments_until: float = -np.inf  # right-leg phase (cycles) before which id is NaN
    scalars: tuple[tuple[str, float], ...] = ()
    seed: int = 0


_INF: Final = float("inf")
TRIALS: Final = (
    Trial(
        "AB06", "10_09_18", "treadmill", "treadmill_01_01", 1.1, 4,
        (Segment("walk", 0.0, _INF),), rest_phase=False, labels=False, treadmill_speed=True,
        seed=11,
    ),
    Trial(
        "AB06", "10_09_18", "levelground", "levelground_ccw_normal_01_01", 1.0, 4,
        (Segment("stand-walk", 0.0, 0.3), Segment("walk", 0.0, 3.7),
         Segment("walk-stand", 0.0, _INF)),
        rest_phase=True, no_moments_until=0.3, seed=12,
    ),
    Trial(
        "AB07", "10_14_18", "ramp", "ramp_1_r_01_01", 1.0, 6,
        (Segment("walk", 0.0, 1.2), Segment("walk-rampascent", None, 1.4),
         Segment("rampascent", 5.2, 3.2), Segment("rampascent-walk", None, 3.4),
         Segment("walk", 0.0, 3.6), Segment("walk-rampdescent", None, 3.8),
         Segment("rampdescent", -5.2, 5.6), Segment("rampdescent-walk", None, 5.8),
         Segment("walk", 0.0, _INF)),
        rest_phase=True, scalars=(("rampIncline", 5.2),), seed=13,
    ),
    Trial(
        "AB07", "10_16_18", "stair", "stair_1_l_01_01", 1.0, 6,
        (Segment("walk", 0.0, 1.2), Segment("walk-stairascent", None, 1.4),
         Segment("stairascent", 15.0, 3.2), Segment("stairascent-walk", None, 3.4),
         Segment("walk", 0.0, 3.6), Segment("walk-stairdescent", None, 3.8),
         Segment("stairdescent", -15.0, 5.6), Segment("stairdescent-walk", None, 5.8),
         Segment("walk", 0.0, _INF)),
        rest_phase=True, scalars=(("stairHeight", 4.0),), seed=14,
    ),
)  # fmt: skip


def save_mat(path: Path, variables: dict[str, Any]) -> None:
    """MAT v5 with the tables as MCOS objects (mat-io), as the release's files hold them."""
    write_mat(path, variables, header=HEADER, writer="mat-io")


# --- simulation -------------------------------------------------------------------------


def _level_speed(speed_mps: float, incline_deg: float) -> float:
    """The level-walking speed whose stride time equals that of walking ``incline_deg``."""
    # stride_time_s is (1.15 - 0.375 (v - 1.2)) (1 + 0.005 |incline|) at the same height.
    return 1.2 - (stride_time_s(speed_mps, incline_deg) - 1.15) / 0.375


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _weights(trial: Trial, phase_r: np.ndarray, layers: list[float]) -> np.ndarray:
    """(T, L) blend weights of the simulated layers at right-leg ``phase_r``."""
    weights = np.zeros((phase_r.size, len(layers)))
    lower = -np.inf
    for i, segment in enumerate(trial.segments):
        inside = (phase_r >= lower) & (phase_r < segment.until)
        if segment.incline is not None:
            weights[inside, layers.index(segment.incline)] = 1.0
        else:
            before = trial.segments[i - 1].incline
            after = trial.segments[i + 1].incline
            assert before is not None and after is not None  # a transition joins two inclines
            x = _smoothstep((phase_r[inside] - lower) / (segment.until - lower))
            weights[inside, layers.index(before)] += 1.0 - x
            weights[inside, layers.index(after)] += x
        lower = segment.until
    return weights


def _label_at(trial: Trial, phase_r: np.ndarray) -> np.ndarray:
    bounds = np.array([s.until for s in trial.segments])
    index = np.searchsorted(bounds, phase_r, side="right")
    return np.array([s.label for s in trial.segments], dtype=object)[index]


def _simulate(trial: Trial, subject: Subject) -> tuple[SimulatedTrial, dict[str, np.ndarray]]:
    """The blended trial: reference simulation (timing) and blended streams."""
    params = SubjectParams.generate(
        subject.subject_id, subject.height_m, subject.mass_kg, subject.seed
    )
    layers = sorted({s.incline for s in trial.segments if s.incline is not None})
    slope = max((abs(i) for i in layers), default=0.0)
    sims = []
    for incline in layers:
        speed = trial.speed_mps if incline else _level_speed(trial.speed_mps, slope)
        sims.append(
            simulate_trial(
                subject=params,
                activity=activity_of(incline),
                speed_mps=speed,
                incline_deg=incline,
                n_strides=trial.n_strides,
                seed=trial.seed,
                point_rate_hz=KIN_RATE_HZ,
                analog_rate_hz=EMG_RATE_HZ,
            )
        )
    reference = sims[0]
    phase_r = reference.phase["R"]
    w = _weights(trial, phase_r, layers)
    analog_t = np.arange(reference.n_analog) / EMG_RATE_HZ
    w_analog = np.stack(
        [np.interp(analog_t, reference.times(), w[:, i]) for i in range(len(layers))], axis=1
    )
    blended: dict[str, np.ndarray] = {}
    for side in ("L", "R"):
        blended[f"kin_{side}"] = np.einsum("tl,ltjp->tjp", w, [s.kinematics[side] for s in sims])
        blended[f"mom_{side}"] = np.einsum("tl,ltjp->tjp", w, [s.kinetics[side] for s in sims])
    blended["act_R"] = np.einsum("tl,ltm->tm", w_analog, [s.activations["R"] for s in sims])
    blended["emg"] = _emg(blended["act_R"], params, subject, trial.seed)
    return reference, blended


def _emg(activation: np.ndarray, params: SubjectParams, subject: Subject, seed: int) -> np.ndarray:
    """(T, 11) volts in EMG_COLUMNS order from the right leg's activations."""
    index = {m: i for i, m in enumerate(DEMO_MUSCLES)}
    gains = dict(zip(DEMO_MUSCLES, params.gains("R"), strict=True))
    columns = []
    for name in EMG_COLUMNS:
        if name in _FROM_MODEL:
            muscle = _FROM_MODEL[name]
            columns.append(activation[:, index[muscle]] * gains[muscle])
        elif name == "gracilis":  # a hamstring-like adductor: like semitendinosus, weaker
            columns.append(0.6 * activation[:, index["semitendinosus"]] + 0.03)
        else:  # external oblique: tonic trunk activity with bursts at the hip's loading
            columns.append(0.05 + 0.2 * activation[:, index["gluteus_medius"]])
    rng = np.random.default_rng(seed + 1000)
    mains_hz = MAINS_HZ if subject.mains_hum else None
    return record_emg(np.stack(columns, axis=1), EMG_RATE_HZ, rng, mains_hz=mains_hz)


# --- files ------------------------------------------------------------------------------


def _phase_ramp(phase: np.ndarray, events: np.ndarray, times: np.ndarray, rest: bool) -> np.ndarray:
    """0–100 % ramp of ``phase`` (cycles; integers at the events); flat 0 outside the first
    and last event when the leg starts and ends at rest."""
    ramp = 100.0 * (phase - np.floor(phase))
    if rest and events.size:
        ramp[(times < events[0]) | (times >= events[-1])] = 0.0
    return ramp


def _ik_table(reference: SimulatedTrial, blended: dict[str, np.ndarray]) -> pd.DataFrame:
    t = reference.times()
    phase = reference.phase["R"]
    columns: dict[str, np.ndarray] = {"Header": t}
    body = {
        "pelvis_tilt": -8.0 + 1.5 * np.sin(4 * np.pi * phase),
        "pelvis_list": 3.0 * np.sin(2 * np.pi * phase),
        "pelvis_rotation": 5.0 * np.sin(2 * np.pi * phase + 0.5),
    }
    for name in ("pelvis_tilt", "pelvis_list", "pelvis_rotation"):
        columns[name] = body[name]
    columns["pelvis_tx"] = reference.speed_mps * (t - t[0])
    columns["pelvis_ty"] = 0.93 + 0.02 * np.cos(4 * np.pi * phase)
    columns["pelvis_tz"] = 0.01 * np.sin(2 * np.pi * phase)
    for side, leg in _FILE_SIDES:
        angles = blended[f"kin_{leg}"]
        side_phase = reference.phase[leg]
        for coordinate in _LEG_COORDINATES:
            if coordinate in _CANONICAL:
                joint, plane = _CANONICAL[coordinate]
                values = angles[:, JOINTS.index(joint), PLANES.index(plane)]
            elif coordinate == "subtalar_angle":
                values = 4.0 * np.sin(2 * np.pi * side_phase)
            else:  # mtp: toes extend before toe off
                values = 20.0 * np.exp(-((((side_phase % 1.0) - 0.55) / 0.06) ** 2))
            columns[f"{coordinate}_{side}"] = values
    return pd.DataFrame(
        {
            k: v if k == "Header" else quantise(v, "m" if k in _TRANSLATIONS else "deg")
            for k, v in columns.items()
        }
    )


def _id_table(
    reference: SimulatedTrial, blended: dict[str, np.ndarray], mass_kg: float, nan_until: float
) -> pd.DataFrame:
    t = reference.times()
    phase = reference.phase["R"]
    columns: dict[str, np.ndarray] = {"Header": t}
    for name in ("pelvis_tilt", "pelvis_list", "pelvis_rotation"):
        columns[f"{name}_moment"] = 2.0 * np.sin(2 * np.pi * phase + len(name))
    for axis in ("tx", "ty", "tz"):
        columns[f"pelvis_{axis}_force"] = 5.0 * np.cos(2 * np.pi * phase + len(axis))
    for side, leg in _FILE_SIDES:
        moments = blended[f"mom_{leg}"] * mass_kg  # internal N·m/kg -> N·m
        side_phase = reference.phase[leg]
        for coordinate in _LEG_COORDINATES:
            if coordinate in _CANONICAL:
                joint, plane = _CANONICAL[coordinate]
                values = moments[:, JOINTS.index(joint), PLANES.index(plane)]
            else:
                values = 0.05 * mass_kg * np.sin(2 * np.pi * side_phase)
            columns[f"{coordinate}_{side}_moment"] = values
    table = pd.DataFrame(
        {k: v if k == "Header" else quantise(v, "N.m") for k, v in columns.items()}
    )
    table.loc[phase < nan_until, table.columns != "Header"] = np.nan  # no force plate yet
    return table


def _gc_table(reference: SimulatedTrial, side: Side, rest: bool) -> pd.DataFrame:
    t = reference.times()
    phase = reference.phase[side]
    heel = reference.heel_strikes[side]
    toe = reference.toe_offs[side]
    stance = float(np.median(np.interp(toe, t, phase) % 1.0)) if toe.size else 0.62
    return pd.DataFrame(
        {
            "Header": t,
            "HeelStrike": quantise(_phase_ramp(phase, heel, t, rest), "pct"),
            "ToeOff": quantise(_phase_ramp(phase - stance, toe, t, rest), "pct"),
        }
    )


def _conditions(trial: Trial, reference: SimulatedTrial) -> dict[str, Any]:
    t = reference.times()
    variables: dict[str, Any] = {}
    if trial.labels:
        labels = _label_at(trial, reference.phase["R"])
        variables["labels"] = pd.DataFrame({"Header": t, "Label": [str(x) for x in labels]})
    if trial.treadmill_speed:
        wobble = 0.004 * np.sin(2 * np.pi * 0.3 * t)
        variables["speed"] = pd.DataFrame({"Header": t, "Speed": np.round(1.1 + wobble, 4)})
    variables.update(dict(trial.scalars))
    return variables


def _expected_strides(trial: Trial, reference: SimulatedTrial) -> dict[str, dict[str, int]]:
    """Strides per leg and activity, from the segment plan (right-leg phase units)."""
    bounds = [-np.inf] + [s.until for s in trial.segments]
    counts: dict[str, dict[str, int]] = {}
    offsets: tuple[tuple[Side, float], ...] = (("R", 0.0), ("L", 0.5))
    for side, offset in offsets:
        n_heel = reference.heel_strikes[side].size
        first = 0.0 if side == "R" else offset
        side_counts: dict[str, int] = {}
        for k in range(n_heel - 1):
            low, high = first + k, first + k + 1
            labels = {
                s.label
                for s, lo, hi in zip(trial.segments, bounds[:-1], bounds[1:], strict=True)
                if lo < high and hi > low
            }
            if not trial.labels:
                activity = "walk"
            elif len(labels) == 1 and "-" not in next(iter(labels)):
                activity = LABEL_ACTIVITY[next(iter(labels))]
            else:
                activity = "transition"
            side_counts[activity] = side_counts.get(activity, 0) + 1
        counts[side] = side_counts
    return counts


@miniature("camargo2021")
def write(folder: Path) -> dict[str, Any]:
    """Write the miniature under ``folder``; return what tests check."""
    by_id = {s.subject_id: s for s in SUBJECTS}
    rows = [(s.subject_id, s.age, s.gender, 1000.0 * s.height_m, s.mass_kg) for s in SUBJECTS]
    rows += list(_OTHER_SUBJECTS)
    info = pd.DataFrame(rows, columns=["Subject", "Age", "Gender", "Height", "Weight"])
    save_mat(folder / "SubjectInfo.mat", {"data": info})

    facts: dict[str, Any] = {
        "masses": {s.subject_id: s.mass_kg for s in SUBJECTS},
        "trials": {},
    }
    for trial in TRIALS:
        subject = by_id[trial.subject]
        reference, blended = _simulate(trial, subject)
        base = folder / trial.subject / trial.date / trial.mode
        name = f"{trial.stem}.mat"
        emg = pd.DataFrame(quantise(blended["emg"], "emg"), columns=list(EMG_COLUMNS))
        emg.insert(0, "Header", np.arange(len(emg)) / EMG_RATE_HZ)
        save_mat(base / "emg" / name, {"data": emg})
        save_mat(base / "ik" / name, {"data": _ik_table(reference, blended)})
        save_mat(
            base / "id" / name,
            {"data": _id_table(reference, blended, subject.mass_kg, trial.no_moments_until)},
        )
        sensors: tuple[tuple[Side, str], ...] = (("L", "gcLeft"), ("R", "gcRight"))
        for side, sensor in sensors:
            save_mat(base / sensor / name, {"data": _gc_table(reference, side, trial.rest_phase)})
        save_mat(base / "conditions" / name, _conditions(trial, reference))
        key = f"{trial.subject}/{trial.date}/{trial.mode}/emg/{name}"
        t_nan = np.interp(trial.no_moments_until, reference.phase["R"], reference.times())
        facts["trials"][key] = {
            "subject": trial.subject,
            "trial": f"{trial.date}/{trial.stem}",
            "mode": trial.mode,
            "strides": _expected_strides(trial, reference),
            "heel_strikes": {s: reference.heel_strikes[s].tolist() for s in ("L", "R")},
            "speed_mps": 1.1 if trial.treadmill_speed else None,
            "incline_deg": dict(trial.scalars).get("rampIncline"),
            # right-leg strides that start before the id data do (no force plate yet)
            "no_moments_R": int(np.sum(reference.heel_strikes["R"][:-1] < t_nan)),
            "mains_hum": subject.mains_hum,
        }
    return facts

"""Miniature SIAT-LLMD (Wei et al. 2023): Data and Label CSVs in the documented layout.

``SIAT_LLMD20230404/SubXX/{Data,Labels}/SubXX_<MOV>_{Data,Label}.csv``: ``Time`` from 0 on the
EMG time base (Sub01 at 1920 Hz, Sub02 at 1925.926 Hz — both rates are reported for the dataset),
8 kinematic and 8 kinetic columns (OpenSim names, flexion/dorsiflexion and adduction positive,
internal moments in N·m/kg), 9 sEMG columns of the left leg in volts with 50 Hz hum (the upper
and lower tibialis anterior are two electrodes over one muscle). Label rows match data rows:
``Status`` is the gait phase (WAK: 1 HS → max stance flexion → 2 → max stance extension → 3 →
toe off → 4 → max swing flexion → 5; UPS/DNS: 1 HS → toe off → 2 → max swing flexion → 3),
blank outside the labelled cycles; ``Group`` 1–5 label right-leg cycles and 6–10 left-leg
cycles, one walking pass each (Sub02's WAK has two left passes with a right one between).
STDUP is a non-gait movement labelled ``A``/``R``.

Movements written: Sub01 WAK, UPS, STDUP; Sub02 WAK (DNS is left out to stay under 5 MB; it
has UPS's 3-phase labels). Stair ascent is approximated by the gait model's +12° ramp (it has
no stair model). ``SubjectInformation.xlsx`` (body masses) is not written: no xlsx writer is
available here and the moments are already per kg.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from builder.conventions import JOINTS, PLANES, SIDES, Side
from builder.datasets.miniatures import miniature
from builder.synthetic import gait_model as gm
from builder.synthetic.emg_model import synthesize_emg

ROOT = "SIAT_LLMD20230404"
SIDE_WORDS = {"L": "left", "R": "right"}
JOINT_COLUMNS = (
    ("hip", "adduction"),
    ("hip", "flexion"),
    ("knee", "flexion"),
    ("ankle", "flexion"),
)
EMG_NAMES = (
    "tensor fascia lata",
    "rectus femoris",
    "vastus medialis",
    "semimembranosus",
    "upper tibialis anterior",
    "lower tibialis anterior",
    "lateral gastrocnemius",
    "medial gastrocnemius",
    "soleus",
)
# Which simulated muscle drives each sEMG channel (None: a second electrode over TA).
EMG_SOURCES = (
    "gluteus_medius",  # TFL: a hip abductor/flexor, like gluteus medius
    "rectus_femoris",
    "vastus_medialis",
    "semitendinosus",  # semimembranosus: the medial hamstrings share their activity
    "tibialis_anterior",
    None,
    "gastrocnemius_lateralis",
    "gastrocnemius_medialis",
    "soleus",
)
MARGIN_S = 0.15  # unlabelled data kept before the first and after the last labelled cycle


@dataclass(frozen=True)
class Trial:
    subject: str
    movement: str
    rate_hz: float
    activity: str  # gait-model activity
    speed_mps: float
    incline_deg: float
    # (group, side, number of cycles), in time order: a group's cycles are consecutive and
    # start at the leg's first heel strike after the previous group ends (no overlap).
    groups: tuple[tuple[int, Side, int], ...]
    seed: int


SUBJECTS = {
    "Sub01": gm.SubjectParams.generate("Sub01", 1.72, 66.0, seed=131),
    "Sub02": gm.SubjectParams.generate("Sub02", 1.63, 55.0, seed=132),
}
TRIALS = (
    Trial("Sub01", "WAK", 1920.0, "walk", 1.3, 0.0, ((6, "L", 2),), 11),
    Trial("Sub01", "UPS", 1920.0, "ramp_ascent", 1.2, 12.0, ((1, "R", 1), (6, "L", 1)), 12),
    # Two left groups with a right cycle between: their cycles must not be joined.
    Trial("Sub02", "WAK", 1925.926, "walk", 1.4, 0.0, ((6, "L", 1), (1, "R", 1), (7, "L", 1)), 21),
)
NON_GAIT = (("Sub01", "STDUP", 1920.0, 0.45),)  # (subject, movement, rate, seconds)


def _phase_bounds(
    trial: gm.SimulatedTrial, side: Side, hs: float, next_hs: float, n_phases: int
) -> list[float]:
    """Times at which phases 2..n start within one cycle (from the knee curve and toe off)."""
    t = trial.times()
    knee = trial.kinematics[side][:, JOINTS.index("knee"), PLANES.index("flexion")]
    (toe_off,) = [x for x in trial.toe_offs[side] if hs < x < next_hs]
    inside = (t >= hs) & (t < next_hs)
    swing = inside & (t >= toe_off)
    max_swing = float(t[swing][np.argmax(knee[swing])])
    if n_phases == 3:
        return [toe_off, max_swing]
    loading = inside & (t < hs + 0.3 * (next_hs - hs))
    max_stance_flexion = float(t[loading][np.argmax(knee[loading])])
    mid = inside & (t > max_stance_flexion) & (t < toe_off)
    max_stance_extension = float(t[mid][np.argmin(knee[mid])])
    return [max_stance_flexion, max_stance_extension, toe_off, max_swing]


def _write_table(path: Path, header: list[str], columns: list[np.ndarray], fmts: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    matrix = np.column_stack(columns)
    np.savetxt(path, matrix, fmt=fmts, delimiter=",", header=",".join(header), comments="")


def _write_labels(path: Path, times: np.ndarray, status: list[str], group: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["Time,Status,Group"]
    lines += [f"{t:.12f},{s},{g}" for t, s, g in zip(times, status, group, strict=True)]
    path.write_text("\n".join(lines) + "\n")


def _data_header() -> list[str]:
    names = ["Time"]
    names += [f"Kinematic: {SIDE_WORDS[s]} {j} {p} angle" for s in "LR" for j, p in JOINT_COLUMNS]
    names += [f"Kinetic: {SIDE_WORDS[s]} {j} {p} torque" for s in "LR" for j, p in JOINT_COLUMNS]
    names += [f"sEMG: {name}" for name in EMG_NAMES]
    return names


def _gait_trial(folder: Path, spec: Trial) -> dict[str, list[float]]:
    n_cycles = 2 * sum(n for _, _, n in spec.groups) + 2
    sim = gm.simulate_trial(
        subject=SUBJECTS[spec.subject],
        activity=spec.activity,
        speed_mps=spec.speed_mps,
        incline_deg=spec.incline_deg,
        n_strides=n_cycles,
        seed=spec.seed,
        point_rate_hz=spec.rate_hz,
        analog_rate_hz=spec.rate_hz,
        mains_hz=50.0,
    )
    times = sim.times()
    n_phases = 5 if spec.movement == "WAK" else 3
    status = np.full(times.size, np.nan)
    group = np.full(times.size, np.nan)
    first_t, last_t = np.inf, -np.inf
    durations: dict[str, list[float]] = {"L": [], "R": []}
    free_from = times[0] + 0.2  # the next group starts at a heel strike after this
    for group_id, side, count in spec.groups:
        hs = sim.heel_strikes[side]
        first = int(np.searchsorted(hs, free_from))
        if first + count >= hs.size:
            raise ValueError(f"{spec.subject}/{spec.movement}: simulate more strides")
        free_from = hs[first + count]
        for k in range(first, first + count):
            bounds = [hs[k], *_phase_bounds(sim, side, hs[k], hs[k + 1], n_phases), hs[k + 1]]
            for phase, (a, b) in enumerate(itertools.pairwise(bounds), start=1):
                rows = (times >= a) & (times < b)
                status[rows], group[rows] = phase, group_id
            durations[side].append(round(float(hs[k + 1] - hs[k]), 6))
        first_t, last_t = min(first_t, hs[first]), max(last_t, hs[first + count])
    keep = (times >= first_t - MARGIN_S) & (times <= last_t + MARGIN_S)
    index = np.flatnonzero(keep)
    t = (index - index[0]) / spec.rate_hz

    kin = {s: sim.kinematics[s][index] for s in SIDES}
    mom = {s: sim.kinetics[s][index] for s in SIDES}
    columns = [t]
    for data in (kin, mom):
        for s in SIDES:
            for j, p in JOINT_COLUMNS:
                columns.append(data[s][:, JOINTS.index(j), PLANES.index(p)])
    rng = np.random.default_rng(spec.seed + 1000)
    second_ta = synthesize_emg(
        sim.activations["L"][:, sim.muscles.index("tibialis_anterior")], spec.rate_hz, rng
    ) * 0.8 + 4e-6 * rng.standard_normal(times.size)
    for source in EMG_SOURCES:
        emg = sim.emg["L"][:, sim.muscles.index(source)] if source else second_ta
        columns.append(emg[index])
    fmts = ["%.12f"] + ["%.4g"] * 16 + ["%.3g"] * 9
    name = f"{spec.subject}_{spec.movement}"
    base = folder / ROOT / spec.subject
    _write_table(base / "Data" / f"{name}_Data.csv", _data_header(), columns, fmts)
    status_text = ["" if np.isnan(v) else f"{v:.1f}" for v in status[index]]
    group_text = ["" if np.isnan(v) else f"{v:.1f}" for v in group[index]]
    _write_labels(base / "Labels" / f"{name}_Label.csv", t, status_text, group_text)
    return durations


def _non_gait_trial(folder: Path, subject: str, movement: str, rate: float, seconds: float) -> None:
    """A short stand-up: quiet standing, then rising (angles only move smoothly), A/R labels."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(7)
    rise = np.clip((t - 0.15) / 0.3, 0.0, 1.0)
    rise = rise * rise * (3 - 2 * rise)
    columns = [t]
    for kinetics in (False, True):
        for _s in "LR":
            for j, p in JOINT_COLUMNS:
                sitting = {"hip": 85.0, "knee": 90.0, "ankle": 10.0}[j] if p == "flexion" else 2.0
                value = sitting * (1.0 - rise)
                columns.append(-0.006 * value if kinetics else value)
    active = (rise > 0) & (rise < 1)
    for _ in EMG_NAMES:
        columns.append(2e-5 * (1 + 8 * active) * rng.standard_normal(t.size))
    fmts = ["%.12f"] + ["%.4g"] * 16 + ["%.3g"] * 9
    name = f"{subject}_{movement}"
    base = folder / ROOT / subject
    _write_table(base / "Data" / f"{name}_Data.csv", _data_header(), columns, fmts)
    status = ["A" if a else "R" for a in active]
    _write_labels(base / "Labels" / f"{name}_Label.csv", t, status, ["1"] * t.size)


@miniature("siat_llmd2023")
def write(folder: Path) -> dict[str, Any]:
    """Write the miniature under ``folder``; return the strides (their durations) per trial
    and leg, the sampling rates and the non-gait trials."""
    durations = {}
    for spec in TRIALS:
        durations[f"{spec.subject}/{spec.movement}"] = _gait_trial(folder, spec)
    for subject, movement, rate, seconds in NON_GAIT:
        _non_gait_trial(folder, subject, movement, rate, seconds)
    return {
        "strides": {k: {s: len(v) for s, v in d.items()} for k, d in durations.items()},
        "durations_s": durations,
        "rates_hz": {t.subject: t.rate_hz for t in TRIALS},
        "non_gait": [f"{s}/{m}" for s, m, _, _ in NON_GAIT],
    }

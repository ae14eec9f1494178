"""Miniature of the Angelidou variable-stiffness-terrain dataset (catalogue source ``angelidou``).

One MAT v5 file per participant, ``P0001.mat`` … ``P0010.mat`` (ten, so that a reader that
stops after nine — as the foundation did — is caught), each with one variable::

    data.<P>.<speed>.<stiffness>.EMG.<RTA,RGA,RVL,RRF,RBF,LTA,LGA,LVL,LRF,LBF>   {cycle} (T,1) mV
    data.<P>.<speed>.<stiffness>.jointAngles.<RHip,RKnee,RAnkle,LHip,…>       {cycle} (T,3) deg
    data.<P>.<speed>.<stiffness>.jointMoments.<RHip,…>                        {cycle} (T,3) N·mm/kg
    data.<P>.participantInfo   Bodymass (kg), Height (mm), Age
    data.<P>.gaitEvents.<speed>.<stiffness>.{RHS,LHS}   heel-strike times (s) of the cells
    data.<P>.unit              EMG 'mV', jointAngles 'deg', jointMoments 'Nmm/kg'

Speeds ``v0p8`` / ``v1p0`` / ``v1p2`` (m/s), stiffness ``k1000`` / ``k100`` / ``k50`` (kN/m;
the terrain's compliance is not simulated). A right cell is one right-leg cycle, a left cell
one left-leg cycle, from heel strike to heel strike (both samples included): raw EMG at
2 kHz (with 60 Hz hum), angles and moments at 100 Hz real time. The (T, 3) columns are
Plug-in-Gait-like X (sagittal), Y (frontal), Z (transverse); the moments are PiG's *external*
description (internal × −1) in N·mm/kg. Gastrocnemius = the model's medial head.

Quirks: in one condition the left leg has one cycle fewer than the right; one moment cell of
participant P0004 has a NaN stretch (the foundation reported NaNs in this dataset).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from builder.datasets.miniatures import miniature
from builder.synthetic.files import cell, matlab_header, write_mat
from builder.synthetic.gait_model import DEMO_MUSCLES, SubjectParams, simulate_trial

SOURCE = "angelidou"
EMG_HZ = 2000.0
KIN_HZ = 100.0
HEADER = matlab_header("Mon Jan 15 10:00:00 2018")
SPEEDS = {"v0p8": 0.8, "v1p0": 1.0, "v1p2": 1.2}
MUSCLES = {"TA": "tibialis_anterior", "GA": "gastrocnemius_medialis", "VL": "vastus_lateralis"}
MUSCLES |= {"RF": "rectus_femoris", "BF": "biceps_femoris"}
JOINTS = ("Hip", "Knee", "Ankle")
# participant -> {speed: [(stiffness, cycles)]}; the first three are fuller than the rest.
PLAN: dict[str, dict[str, list[tuple[str, int]]]] = {
    "P0001": {"v0p8": [("k1000", 2), ("k50", 2)], "v1p2": [("k1000", 2)]},
    "P0002": {"v0p8": [("k1000", 2), ("k50", 2)], "v1p2": [("k100", 2)]},
    "P0003": {"v1p0": [("k1000", 2), ("k100", 2)]},
    **{f"P{n:04d}": {"v1p0": [("k100", 1)]} for n in range(4, 11)},
}
FEWER_LEFT = ("P0002", "v1p2", "k100")  # the left leg has one cycle fewer here
NAN_MOMENTS = ("P0004", "v1p0", "k100", "R", 0)  # participant, speed, stiffness, side, cycle


@miniature(SOURCE)
def write(folder: Path) -> dict[str, Any]:
    """Write the ten participant files; return per participant/condition/side the true cycle
    durations (s) and the participants' body masses."""
    cycles: dict[str, dict[str, list[float]]] = {}
    masses = {}
    for index, (participant, speeds) in enumerate(PLAN.items()):
        rng = np.random.default_rng(300 + index)
        height = round(float(rng.uniform(1.6, 1.9)), 3)
        mass = round(float(rng.uniform(55, 90)), 1)
        masses[participant] = mass
        subject = SubjectParams.generate(participant, height, mass, 300 + index)
        struct: dict[str, Any] = {}
        events: dict[str, Any] = {}
        for speed, conditions in speeds.items():
            struct[speed], events[speed] = {}, {}
            sim = simulate_trial(
                subject=subject,
                activity="walk",
                speed_mps=SPEEDS[speed],
                incline_deg=0.0,
                n_strides=sum(n for _, n in conditions) + 1,
                seed=1000 * index + len(struct),
                point_rate_hz=KIN_HZ,
                analog_rate_hz=EMG_HZ,
                mains_hz=60.0,
            )
            first = {"R": 0, "L": 0}
            for stiffness, n in conditions:
                struct[speed][stiffness] = {"EMG": {}, "jointAngles": {}, "jointMoments": {}}
                events[speed][stiffness] = {}
                for side in "RL":
                    count = n - (side == "L" and (participant, speed, stiffness) == FEWER_LEFT)
                    cut = _cycles(sim, side, first[side], count)
                    first[side] += n
                    if (participant, speed, stiffness, side) == NAN_MOMENTS[:4]:
                        cut["moments"][NAN_MOMENTS[4]][20:35] = np.nan
                    _store(struct[speed][stiffness], side, cut)
                    events[speed][stiffness][f"{side}HS"] = np.asarray(cut["heel_strikes"])[None, :]
                    key = f"{participant}/{speed}_{stiffness}/{side}"
                    cycles[key] = cut["durations"]
        struct["participantInfo"] = {"Bodymass": mass, "Height": round(height * 1000), "Age": 25.0}
        struct["gaitEvents"] = events
        struct["unit"] = {"EMG": "mV", "jointAngles": "deg", "jointMoments": "Nmm/kg"}
        write_mat(
            folder / f"{participant}.mat",
            {"data": {participant: struct}},
            header=HEADER,
            compress=False,
        )
    return {
        "cycles": cycles,
        "body_mass_kg": masses,
        "muscles": tuple(MUSCLES.values()),
        "participants": tuple(PLAN),
    }


def _cycles(sim: Any, side: str, skip: int, count: int) -> dict[str, Any]:
    """``count`` consecutive cycles of ``side`` after the first ``skip`` complete ones."""
    strikes = sim.heel_strikes[side] - sim.start_s
    strikes = strikes[strikes * KIN_HZ <= sim.n_frames - 1][skip : skip + count + 1]
    out: dict[str, Any] = {"emg": [], "angles": [], "moments": [], "durations": []}
    for start, end in itertools.pairwise(strikes):
        a, b = round(start * EMG_HZ), round(end * EMG_HZ)
        emg = (sim.emg[side][a : b + 1] * 1000.0).astype(np.float32)  # mV, MATLAB single
        out["emg"].append({m: emg[:, DEMO_MUSCLES.index(name)] for m, name in MUSCLES.items()})
        f, g = round(start * KIN_HZ), round(end * KIN_HZ)
        out["angles"].append(_pig(sim.kinematics[side][f : g + 1]))
        out["moments"].append(-1000.0 * _pig(sim.kinetics[side][f : g + 1]))  # external, N·mm/kg
        out["durations"].append((b - a) / EMG_HZ)
    out["heel_strikes"] = [float(t) for t in np.concatenate([[0.0], np.cumsum(out["durations"])])]
    return out


def _pig(canonical: np.ndarray) -> np.ndarray:
    """(T, 3 joints, 3 planes) canonical → per joint (T, 3) columns X sagittal, Y frontal,
    Z transverse."""
    return canonical[:, :, [2, 0, 1]]


def _store(condition: dict[str, Any], side: str, cut: dict[str, Any]) -> None:
    for muscle in MUSCLES:
        condition["EMG"][f"{side}{muscle}"] = _cell([c[muscle][:, None] for c in cut["emg"]])
    for j, joint in enumerate(JOINTS):
        condition["jointAngles"][f"{side}{joint}"] = _cell([c[:, j] for c in cut["angles"]])
        condition["jointMoments"][f"{side}{joint}"] = _cell([c[:, j] for c in cut["moments"]])


def _cell(items: list[np.ndarray]) -> np.ndarray:
    return cell(items, (len(items), 1))  # one cycle per row

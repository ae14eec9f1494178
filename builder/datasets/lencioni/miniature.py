"""Miniature Lencioni 2019 (Sci Data, s41597-019-0323-z): one MAT file per subject.

``<subject>.mat`` (MATLAB v5, compressed) holds one struct ``s``:

- ``s.EMGFeq`` (Hz) and ``s.KinFreq`` (Hz);
- ``s.Data`` (1 × entries struct array), one gait cycle of the dominant leg per entry:
  ``Task`` (``Walking``, ``WalkingSlow``, ``WalkingFast``, ``ToeWalking``, ``HeelWalking``,
  ``StepUp``, ``StepDown``), ``Ang`` (12 × 101: Pelvis, Hip, Knee, Ankle × Flx, Add, Rot;
  degrees, flexion/dorsiflexion, adduction, internal rotation positive), ``Mom`` (9 × 101: Hip,
  Knee, Ankle × Flx, Add, Rot; internal, N·m/kg), ``Grf`` (9 × 101: force X/Y/Z, CoP X/Y/Z,
  torque X/Y/Z), ``EMG`` (8 × N at ``EMGFeq``, heel strike to heel strike, both included:
  linear envelopes of TA, SOL, GM, PL, RF, VM, BF, GMAX, arbitrary units);
- subject fields this project assumes [I] and the adapter checks: ``s.Side`` ('R'/'L', the
  dominant leg that was recorded), ``s.Age`` (years), ``s.Mass`` (kg).

Subjects: S01 (adult, right), S02 (child, 9 y, left), S03 (adult, right). The Task tokens
beyond Walking/StepUp/StepDown are this project's guess at the speed and toe/heel variants.
Stairs are approximated by a steep simulated ramp (±15°); toe- and heel-walking by shifting
the ankle angle (−15° / +10°): the gait model has no stairs or toe walking.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from builder.conventions import Side
from builder.datasets.miniatures import miniature
from builder.synthetic.files import matlab_header, struct_array, write_mat
from builder.synthetic.gait_model import SimulatedTrial, SubjectParams, simulate_trial
from builder.synthetic.simulation import analog_times, recorded_heel_strikes, resample

POINTS = 101
EMG_RATE = 1000.0
KIN_RATE = 100.0
EMG_ROWS = ("TA", "SOL", "GM", "PL", "RF", "VM", "BF", "GMAX")
_EMG_SOURCE: dict[str, tuple[str, ...]] = {  # row -> simulated muscles (mean)
    "TA": ("tibialis_anterior",),
    "SOL": ("soleus",),
    "GM": ("gastrocnemius_medialis",),
    "PL": ("soleus", "gastrocnemius_lateralis"),  # peroneus longus: stance plantarflexor
    "RF": ("rectus_femoris",),
    "VM": ("vastus_medialis",),
    "BF": ("biceps_femoris",),
    "GMAX": ("gluteus_medius", "biceps_femoris"),  # gluteus maximus: loading response
}
# Task -> (simulated activity, speed factor, incline deg, ankle shift deg, cycles)
_TASKS: dict[str, tuple[str, float, float, float, int]] = {
    "Walking": ("walk", 1.0, 0.0, 0.0, 2),
    "WalkingSlow": ("walk", 0.7, 0.0, 0.0, 1),
    "WalkingFast": ("walk", 1.3, 0.0, 0.0, 1),
    "ToeWalking": ("walk", 0.9, 0.0, -15.0, 1),
    "HeelWalking": ("walk", 0.8, 0.0, 10.0, 1),
    "StepUp": ("ramp_ascent", 0.8, 15.0, 0.0, 1),
    "StepDown": ("ramp_descent", 0.8, 15.0, 0.0, 1),
}
# (file stem, age, mass kg, height m, preferred speed m/s, dominant side)
SUBJECTS: tuple[tuple[str, float, float, float, float, Side], ...] = (
    ("S01", 35.0, 74.0, 1.77, 1.25, "R"),
    ("S02", 9.0, 30.0, 1.33, 1.05, "L"),
    ("S03", 61.0, 68.0, 1.68, 1.15, "R"),
)
HEADER = matlab_header("Tue Jun 11 09:30:00 2019")


@miniature("lencioni2019")
def write(folder: Path) -> dict[str, Any]:
    """Write one file per subject; return the entries (cycles) per subject and task."""
    facts: dict[str, Any] = {"entries": {}, "side": {}, "age": {}, "tasks": {}}
    for n, (sid, age, mass, height, speed, side) in enumerate(SUBJECTS):
        params = SubjectParams.generate(sid, height, mass, 300 + n)
        entries = []
        for t, (task, (activity, factor, incline, ankle, cycles)) in enumerate(_TASKS.items()):
            trial = simulate_trial(
                subject=params,
                activity=activity,
                speed_mps=round(speed * factor, 2),
                incline_deg=incline,
                n_strides=cycles + 1,
                seed=1000 * n + t,
                point_rate_hz=KIN_RATE,
                analog_rate_hz=EMG_RATE,
            )
            for k in range(cycles):
                entries.append(_entry(task, trial, side, k, ankle))
        s = {
            "EMGFeq": EMG_RATE,
            "KinFreq": KIN_RATE,
            "Side": side,
            "Age": age,
            "Mass": mass,
            "Data": struct_array(entries),
        }
        write_mat(folder / f"{sid}.mat", {"s": s}, header=HEADER, oned_as="row")
        facts["entries"][sid] = len(entries)
        facts["side"][sid] = side
        facts["age"][sid] = age
        facts["tasks"][sid] = [e["Task"] for e in entries]
    return facts


def _entry(
    task: str, trial: SimulatedTrial, side: Side, k: int, ankle_shift: float
) -> dict[str, Any]:
    times = trial.times()
    hs = recorded_heel_strikes(trial, side)
    start, stop = hs[k], hs[k + 1]
    grid = np.linspace(start, stop, POINTS)
    kin = resample(times, trial.kinematics[side], grid)  # (P, 3, 3) canonical
    kin[:, 2, 2] += ankle_shift
    mom = resample(times, trial.kinetics[side], grid)
    phase = np.linspace(0.0, 1.0, POINTS)
    pelvis = np.stack(
        [
            10.0 + 2.0 * np.sin(4 * np.pi * phase),  # tilt
            4.0 * np.sin(2 * np.pi * phase),  # obliquity
            5.0 * np.cos(2 * np.pi * phase),  # rotation
        ]
    )
    rows = [pelvis]
    for j in range(3):  # Flx, Add, Rot from canonical (adduction, rotation, flexion)
        rows.append(np.stack([kin[:, j, 2], kin[:, j, 0], kin[:, j, 1]]))
    ang = np.concatenate(rows)
    mom_rows = np.concatenate(
        [np.stack([mom[:, j, 2], mom[:, j, 0], mom[:, j, 1]]) for j in range(3)]
    )
    # EMG: the cycle's samples at EMGFeq, heel strike to heel strike, both included.
    t_analog = analog_times(trial)
    first = int(np.ceil((start - trial.start_s) * EMG_RATE - 1e-9))
    n_samples = round((stop - start) * EMG_RATE) + 1
    window = t_analog[first : first + n_samples]
    emg = np.stack(
        [
            100.0
            * np.mean(
                [
                    np.interp(window, t_analog, trial.activations[side][:, trial.muscles.index(m)])
                    for m in _EMG_SOURCE[row]
                ],
                axis=0,
            )
            for row in EMG_ROWS
        ]
    )
    stance = phase <= 0.6
    hump = np.clip(np.sin(np.pi * np.minimum(phase / 0.6, 1.0)), 0.0, None) ** 0.6
    vertical = np.where(stance, 1.1 * hump, 0.0) * 9.81 * 70
    grf = np.zeros((9, POINTS))
    grf[2] = vertical
    return {
        "Task": task,
        "Ang": np.round(ang, 4),
        "Mom": np.round(mom_rows, 5),
        "Grf": np.round(grf, 3),
        "EMG": np.round(emg, 4),
    }

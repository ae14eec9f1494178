"""Miniature of the Grimmer stair dataset (catalogue source ``grimmer``).

Layout (MAT v5, one file per subject and modality, matched by the trailing number)::

    Processed/Joint_Kinematics/Kinematics_P<n>.mat   Joint_Kinematics{inclination}{trial}.<field>
    Processed/Joint_Kinetics/Kinetics_P<n>.mat       Joint_Kinetics{inclination}{trial}.<field>
    Processed/Touchdowns/Touchdowns_P<n>.mat         TD_ascent / TD_descent{incl}{trial}.{tdR,tdL}
    Preprocessed/EMG/EMG_P<n>.mat                    Emg{inclination}{trial}.<muscle>_{r,l}

Six inclination cells per file; the miniature fills a few and leaves the others empty. A
trial is a stair ascent followed by a descent (each simulated as a steep ramp of the
inclination — the gait model has no stairs: an approximation), kinematics and kinetics at
200 Hz (the rate the adapter must derive), raw EMG at 1111.11 Hz (the model's 1 kHz EMG
resampled by 10/9, with 50 Hz hum), touchdowns as 1-based kinematic frame indices (row
vectors). Angles are canonical degrees (flexion / adduction / internal rotation / knee
flexion / dorsiflexion positive), moments internal N·m/kg. ``foo`` and ``sha`` (unknown
channels) are filled from other simulated muscles.

Quirks: subject numbers 1, 2 and 10 (1 must not match 10's files); one trial's descent has
no left touchdowns (an empty list).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import resample_poly

from builder.conventions import Side
from builder.datasets.miniatures import miniature
from builder.synthetic.files import cell, matlab_header, write_mat
from builder.synthetic.gait_model import DEMO_MUSCLES, SubjectParams, simulate_trial

SOURCE = "grimmer"
KIN_HZ = 200.0
SIM_EMG_HZ = 1000.0
EMG_UP, EMG_DOWN = 10, 9  # 1000 Hz × 10/9 = 1111.11 Hz
EMG_HZ = SIM_EMG_HZ * EMG_UP / EMG_DOWN
HEADER = matlab_header("Mon Jan 15 10:00:00 2018")
N_INCLINATIONS = 6
# Stair inclinations (deg) the ramps stand in for, one per inclination cell [I].
INCLINATION_DEG = (15.0, 18.0, 21.0, 24.0, 27.0, 30.0)
# subject number, height, mass, seed, {inclination index: n trials}
SUBJECTS = (
    (1, 1.78, 74.0, 201, {0: 1}),
    (2, 1.66, 61.0, 202, {1: 1}),
    (10, 1.83, 86.0, 210, {5: 2}),
)
EMPTY_DESCENT_LEFT = (2, 1, 0)  # subject, inclination index, trial index
EMG_SOURCES = {  # source muscle -> simulated muscle
    "bcf": "biceps_femoris",
    "foo": "gastrocnemius_lateralis",  # unknown channel
    "gas": "gastrocnemius_medialis",
    "rcf": "rectus_femoris",
    "sha": "vastus_medialis",  # unknown channel
    "sol": "soleus",
    "tib": "tibialis_anterior",
    "vas": "vastus_lateralis",
}
_ANGLE_FIELDS = {  # field stem -> (joint, plane) index into (T, 3, 3)
    "hip_{kind}_flexion": (0, 2),
    "hip_{kind}_adduction": (0, 0),
    "hip_{kind}_rotation": (0, 1),
    "knee_{kind}_flexion": (1, 2),
    "ankle_{kind}_flexion": (2, 2),
}


@miniature(SOURCE)
def write(folder: Path) -> dict[str, Any]:
    """Write the miniature; return per subject/trial/direction/side the true heel strikes (s
    on the trial's time base) and the body masses (not in the files)."""
    truth: dict[str, Any] = {}
    for number, height, mass, seed, plan in SUBJECTS:
        subject = SubjectParams.generate(f"P{number}", height, mass, seed)
        kin = _empty_cells()
        mom = _empty_cells()
        emg = _empty_cells()
        ascent = _empty_cells()
        descent = _empty_cells()
        for a, n_trials in plan.items():
            for cells in (kin, mom, emg, ascent, descent):
                cells[a, 0] = np.empty((n_trials, 1), dtype=object)
            for t in range(n_trials):
                trial = _trial(subject, INCLINATION_DEG[a], seed * 100 + 10 * a + t)
                kin[a, 0][t, 0] = trial["kinematics"]
                mom[a, 0][t, 0] = trial["kinetics"]
                emg[a, 0][t, 0] = trial["emg"]
                ascent[a, 0][t, 0] = trial["TD_ascent"]
                descent[a, 0][t, 0] = trial["TD_descent"]
                if (number, a, t) == EMPTY_DESCENT_LEFT:
                    descent[a, 0][t, 0]["tdL"] = np.empty((1, 0))
                    trial["truth"]["TD_descent"]["L"] = []
                truth[f"{number}/inclination{a + 1}_trial{t + 1}"] = trial["truth"]
        _save(
            folder / "Processed/Joint_Kinematics" / f"Kinematics_P{number}.mat",
            {"Joint_Kinematics": kin},
        )
        _save(
            folder / "Processed/Joint_Kinetics" / f"Kinetics_P{number}.mat", {"Joint_Kinetics": mom}
        )
        _save(
            folder / "Processed/Touchdowns" / f"Touchdowns_P{number}.mat",
            {"TD_ascent": ascent, "TD_descent": descent},
        )
        _save(folder / "Preprocessed/EMG" / f"EMG_P{number}.mat", {"Emg": emg})
    return {
        "trials": truth,
        "kinematics_hz": KIN_HZ,
        "emg_hz": EMG_HZ,
        "body_mass_kg": {str(s[0]): s[2] for s in SUBJECTS},
        "muscles": (
            "vastus_lateralis",
            "rectus_femoris",
            "tibialis_anterior",
            "biceps_femoris",
            "gastrocnemius_medialis",
            "soleus",
        ),
    }


def _empty_cells() -> np.ndarray:
    empty = [np.empty((0, 0), dtype=object) for _ in range(N_INCLINATIONS)]
    return cell(empty, (N_INCLINATIONS, 1))


def _trial(subject: SubjectParams, inclination: float, seed: int) -> dict[str, Any]:
    """Ascent then descent, joined end to end on one time base starting at frame 1 = 0 s."""
    parts = []
    for activity, incline in (("ramp_ascent", inclination), ("ramp_descent", -inclination)):
        parts.append(
            simulate_trial(
                subject=subject,
                activity=activity,
                speed_mps=0.6,
                incline_deg=incline,
                n_strides=2,
                seed=seed + (activity == "ramp_descent"),
                point_rate_hz=KIN_HZ,
                analog_rate_hz=SIM_EMG_HZ,
                mains_hz=50.0,
            )
        )
    offsets = [0.0, parts[0].n_frames / KIN_HZ]
    kinematics: dict[str, np.ndarray] = {}
    kinetics: dict[str, np.ndarray] = {}
    emg: dict[str, np.ndarray] = {}
    suffixes: tuple[tuple[Side, str], ...] = (("R", "r"), ("L", "l"))
    for side, suffix in suffixes:
        angles = np.concatenate([p.kinematics[side] for p in parts])
        moments = np.concatenate([p.kinetics[side] for p in parts])
        for stem, (j, p) in _ANGLE_FIELDS.items():
            kinematics[f"{stem.format(kind='angle')}_{suffix}"] = angles[:, j, p, None]
            kinetics[f"{stem.format(kind='moment')}_{suffix}"] = moments[:, j, p, None]
        raw = np.concatenate([p.emg[side] for p in parts])
        resampled = resample_poly(raw, EMG_UP, EMG_DOWN, axis=0)
        for name, muscle in EMG_SOURCES.items():
            emg[f"{name}_{suffix}"] = resampled[:, DEMO_MUSCLES.index(muscle), None].astype(
                np.float32
            )
    touchdowns: dict[str, dict[str, np.ndarray]] = {}
    truth: dict[str, dict[str, list[float]]] = {}
    n_frames = sum(p.n_frames for p in parts)
    fields: tuple[tuple[Side, str], ...] = (("R", "tdR"), ("L", "tdL"))
    for token, part, offset in zip(("TD_ascent", "TD_descent"), parts, offsets, strict=True):
        touchdowns[token], truth[token] = {}, {}
        for side, field in fields:
            times = part.heel_strikes[side] - part.start_s + offset
            frames = np.round(times * KIN_HZ) + 1
            keep = (frames >= 1) & (frames <= n_frames)
            touchdowns[token][field] = frames[keep][None, :]
            truth[token][side] = [float(f - 1) / KIN_HZ for f in frames[keep]]
    return {
        "kinematics": kinematics,
        "kinetics": kinetics,
        "emg": emg,
        **touchdowns,
        "truth": truth,
    }


def _save(path: Path, variables: dict[str, Any]) -> None:
    """MAT v5 as MATLAB's ``save`` writes it (uncompressed), with a fixed creation date."""
    write_mat(path, variables, header=HEADER, compress=False)

"""Miniature of Moghadam et al. 2023 (catalogue source ``moghadam2023``).

Layout and formats as in the public repository (``Surrogate_modelling_to_predict_gait_time_
series``) and its real trial in ``../shared/data/real/moghadam`` (participant 11, trial 16)::

    Gait_Time_Series/P<n>Data/EMG/<trial>.csv                 Time + 16 raw EMG, 1000 Hz
    Gait_Time_Series/P<n>Data/IMU/<trial>.csv                 Time + 7 IMUs' accelerations
    Gait_Time_Series/P<n>Data/Joints_Kinematics/<trial>.mot   OpenSim IK, degrees, 200 Hz
    Gait_Time_Series/P<n>Data/Joints_Kinetics/<trial>.sto     OpenSim ID, N·m, 200 Hz

As in the real files: the EMG is the band-limited raw signal (the simulated EMG in mV plus a
small per-channel offset, ~+0.05, as the real channels carry), written with 6 significant
digits (``%.6G``: ``-8.21E-05``), in a different column order in every file, from t = 0 with
its first 19 ms exact zeros (nothing recorded yet); the kinematics and kinetics are cut to the
force-plate window (different per trial, inside the EMG's span), written as OpenSim writes them
(the real header lines, ``%16.8f`` values joined by tabs, 24 columns). OpenSim conventions:
hip flexion / adduction / internal rotation and ankle dorsiflexion positive on both legs,
``knee_angle`` flexion-NEGATIVE (gait2392 style, as in the real trial) and its moment
extensor-positive; inverse-dynamics moments are internal, in N·m (the canonical N·m/kg × the
body mass, which no file gives: the facts carry it for tests). Gluteus maximus (not in the gait
model) is a mix of the gluteus medius and biceps femoris signals.

The IMU file is written in a guessed format [C] (the real copy has none); the adapter ignores
it. No gait events anywhere. One stride of one trial was not on a force plate (inverse dynamics
without ground reaction: its stance moments are ~3 % of the real ones).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from builder.conventions import SIDES, Side
from builder.datasets.miniatures import miniature
from builder.synthetic.gait_model import SubjectParams, simulate_trial

SOURCE = "moghadam2023"
POINT_RATE_HZ = 200.0
EMG_RATE_HZ = 1000.0
IMU_RATE_HZ = 100.0
# The full EMG files start with this many rows of exact zeros (~19 ms in the real ones).
LEADING_ZERO_ROWS = 19
MUSCLES = (
    "TibialisAnterior",
    "Soleus",
    "GastrocnemiusMedialis",
    "BicepsFemoris",
    "Semitendinosus",
    "RectusFemoris",
    "VastusLateralis",
    "GluteusMaximus",
)
_FROM_MODEL = {
    "TibialisAnterior": "tibialis_anterior",
    "Soleus": "soleus",
    "GastrocnemiusMedialis": "gastrocnemius_medialis",
    "BicepsFemoris": "biceps_femoris",
    "Semitendinosus": "semitendinosus",
    "RectusFemoris": "rectus_femoris",
    "VastusLateralis": "vastus_lateralis",
}
# The column order of the real P11 trial 16 (the generator shuffles the others).
REAL_ORDER = (
    "RTibialisAnterior",
    "RSoleus",
    "LGastrocnemiusMedialis",
    "RBicepsFemoris",
    "RSemitendinosus",
    "RRectusFemoris",
    "LVastusLateralis",
    "LGluteusMaximus",
    "RVastusLateralis",
    "RGluteusMaximus",
    "LTibialisAnterior",
    "LSoleus",
    "RGastrocnemiusMedialis",
    "LBicepsFemoris",
    "LSemitendinosus",
    "LRectusFemoris",
)
# subject id, height m, mass kg, seed, trials (participants have different trial sets; few
# trials keep the miniature small: the real files are ~1 MB of EMG per trial)
SUBJECTS = (
    ("P1", 1.68, 62.5, 101, ("1", "2")),
    ("P2", 1.81, 81.0, 102, ("2",)),
    ("P10", 1.74, 70.3, 110, ("1",)),
)
SPEEDS = {"1": 1.15, "2": 1.35}
# The force-plate window of each trial in left-leg gait phase (heel strikes of the left leg at
# whole numbers, of the right leg at halves). The knee's swing peak comes ~0.27 cycles before
# its heel strike, so each window starts >= 0.1 cycles away from a swing peak and ends
# >= 0.15 cycles away from a heel strike: which heel strikes the detector sees is unambiguous.
# Trial 1 holds one stride per leg, trial 2 two left strides and one right (the real trial's
# 1.3-cycle window holds none: such a trial is left out, so the miniature does not repeat it).
WINDOWS = {"1": (0.40, 2.75), "2": (0.40, 3.25)}
# The EMG file runs from t = 0 to this many cycles after the window.
EMG_AFTER = 0.15
# The stride that was not on a force plate: (subject, trial, side, cycle index), left phase.
OFF_PLATE: tuple[str, str, Side, int] = ("P2", "2", "L", 2)
_COORDS = (
    "pelvis_tilt",
    "pelvis_list",
    "pelvis_rotation",
    "pelvis_tx",
    "pelvis_ty",
    "pelvis_tz",
    "hip_flexion_r",
    "hip_adduction_r",
    "hip_rotation_r",
    "knee_angle_r",
    "ankle_angle_r",
    "subtalar_angle_r",
    "mtp_angle_r",
    "hip_flexion_l",
    "hip_adduction_l",
    "hip_rotation_l",
    "knee_angle_l",
    "ankle_angle_l",
    "subtalar_angle_l",
    "mtp_angle_l",
    "lumbar_extension",
    "lumbar_bending",
    "lumbar_rotation",
)
# Coordinate -> (joint, plane) index of the canonical arrays, and the file's sign.
_CANONICAL = {
    "hip_flexion": (0, 2, 1.0),
    "hip_adduction": (0, 0, 1.0),
    "hip_rotation": (0, 1, 1.0),
    "knee_angle": (1, 2, -1.0),  # flexion-negative in the files
    "ankle_angle": (2, 2, 1.0),
}
_IMUS = ("P", "RT", "LT", "RS", "LS", "RF", "LF")


@miniature(SOURCE)
def write(folder: Path) -> dict[str, Any]:
    """Write the miniature under ``folder``; return per trial the heel strikes (s, file time
    base) the kinematics show — those whose swing lies inside the force-plate window —, the
    force-plate window, the loaded-stride count and EMG column order; and the body masses."""
    root = folder / "Gait_Time_Series"
    trials: dict[str, dict[str, Any]] = {}
    for subject_id, height, mass, seed, subject_trials in SUBJECTS:
        subject = SubjectParams.generate(subject_id, height, mass, seed)
        for trial in subject_trials:
            trials[f"{subject_id}/{trial}"] = _write_trial(
                root / f"{subject_id}Data", subject, trial, seed * 10 + int(trial)
            )
    return {
        "trials": trials,
        "body_mass_kg": {s[0]: s[2] for s in SUBJECTS},
        "off_plate": OFF_PLATE,
        "leading_zero_rows": LEADING_ZERO_ROWS,
        "muscles": (*sorted(_FROM_MODEL.values()), "gluteus_maximus"),
    }


def _write_trial(folder: Path, subject: SubjectParams, trial: str, seed: int) -> dict[str, Any]:
    sim = simulate_trial(
        subject=subject,
        activity="walk",
        speed_mps=SPEEDS[trial],
        incline_deg=0.0,
        n_strides=3,
        seed=seed,
        point_rate_hz=POINT_RATE_HZ,
        analog_rate_hz=EMG_RATE_HZ,
    )
    phase = sim.phase["L"]
    start, end = WINDOWS[trial]
    kin_rows = slice(int(np.searchsorted(phase, start)), int(np.searchsorted(phase, end)))
    ratio = round(EMG_RATE_HZ / POINT_RATE_HZ)
    emg_stop = int(np.searchsorted(phase, end + EMG_AFTER)) * ratio
    time = np.arange(sim.n_frames) / POINT_RATE_HZ

    mass = subject.mass_kg
    moments: dict[str, np.ndarray] = {side: sim.kinetics[side] * mass for side in SIDES}
    subject_id = subject.subject_id
    if (subject_id, trial) == OFF_PLATE[:2]:
        side, cycle = OFF_PLATE[2], OFF_PLATE[3]
        leg_phase = sim.phase[side]
        stance = (leg_phase >= cycle) & (leg_phase < cycle + 0.65)
        moments[side][stance] *= 0.03

    rng = np.random.default_rng(seed)
    names = [f"{side}{m}" for side in "RL" for m in MUSCLES]
    order = (
        list(REAL_ORDER) if (subject_id, trial) == ("P10", "1") else list(rng.permutation(names))
    )
    for sub in ("EMG", "IMU", "Joints_Kinematics", "Joints_Kinetics"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    _write_emg(folder / "EMG" / f"{trial}.csv", sim, emg_stop, order, rng)
    _write_imu(folder / "IMU" / f"{trial}.csv", sim, emg_stop // ratio)
    _write_kinematics(folder / "Joints_Kinematics" / f"{trial}.mot", sim, time, kin_rows)
    _write_kinetics(folder / "Joints_Kinetics" / f"{trial}.sto", moments, time, kin_rows)

    # Heel strikes the kinematics show: left at whole phases, right at halves (left phase).
    seen = {
        side: [
            float(t)
            for t in sim.heel_strikes[side]
            if start + 0.27 <= np.interp(t, time, phase) <= end - 0.1
        ]
        for side in SIDES
    }
    loaded = {side: max(len(seen[side]) - 1, 0) for side in SIDES}
    if (subject_id, trial) == OFF_PLATE[:2]:
        loaded[OFF_PLATE[2]] -= 1
    return {
        "heel_strikes_s": seen,
        "loaded_strides": loaded,
        "window_s": (float(time[kin_rows][0]), float(time[kin_rows][-1])),
        "emg_columns": order,
        "speed_mps": SPEEDS[trial],
    }


def _raw_emg(sim: Any, side: str) -> dict[str, np.ndarray]:
    """The eight recorded muscles' raw EMG in mV at 1000 Hz."""
    emg = sim.emg[side] * 1e3
    muscles = list(sim.muscles)
    columns = {name: emg[:, muscles.index(m)] for name, m in _FROM_MODEL.items()}
    gmed = emg[:, muscles.index("gluteus_medius")]
    columns["GluteusMaximus"] = 0.6 * gmed + 0.4 * columns["BicepsFemoris"]
    return columns


def _write_emg(path: Path, sim: Any, stop: int, order: list[str], rng: np.random.Generator) -> None:
    """Time and the 16 channels in ``order``: signal plus offset, the first rows exact zeros."""
    signals = {
        f"{side}{name}": values for side in "RL" for name, values in _raw_emg(sim, side).items()
    }
    n = min(stop, sim.n_analog)
    time = np.arange(n) / EMG_RATE_HZ
    data = np.column_stack([signals[c][:n] + rng.uniform(0.045, 0.058) for c in order])
    data[:LEADING_ZERO_ROWS] = 0.0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(",".join(["Time", *order]) + "\n")
        for t, row in zip(time, data, strict=True):
            f.write(",".join([_g(t), *(_g(v) for v in row)]) + "\n")


def _g(value: float) -> str:
    """Six significant digits as the real files write them (``2.46``, ``-8.21E-05``, ``0``)."""
    return "0" if value == 0 else f"{value:.6G}"


def _write_imu(path: Path, sim: Any, stop: int) -> None:
    """Accelerations (m/s², y up) of seven IMUs from the simulated markers, at 100 Hz (the
    format is a guess [C]; unused by the adapter: the upstream IMU-peak segmentation is
    unreliable)."""
    markers = {
        "P": sim.markers["SACR"],
        "RT": sim.markers["RKNE"],
        "LT": sim.markers["LKNE"],
        "RS": sim.markers["RANK"],
        "LS": sim.markers["LANK"],
        "RF": sim.markers["RHEE"],
        "LF": sim.markers["LHEE"],
    }
    step = round(POINT_RATE_HZ / IMU_RATE_HZ)
    rows = slice(0, min(stop, sim.n_frames), step)
    columns: dict[str, np.ndarray] = {"Time": np.arange(sim.n_frames)[rows] / POINT_RATE_HZ}
    for imu in _IMUS:
        acc = np.gradient(np.gradient(markers[imu] / 1000.0, axis=0), axis=0) * POINT_RATE_HZ**2
        # lab X forward, Z up -> sensor x forward, y up, z lateral; gravity on y
        columns[f"{imu}_accel.x"] = acc[rows, 0]
        columns[f"{imu}_accel.y"] = acc[rows, 2] + 9.81
        columns[f"{imu}_accel.z"] = acc[rows, 1]
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(",".join(columns) + "\n")
        np.savetxt(f, np.column_stack(list(columns.values())), fmt="%.5f", delimiter=",")


def _write_storage(path: Path, header: list[str], columns: dict[str, np.ndarray]) -> None:
    """An OpenSim storage file as the real ones: header lines, ``endheader``, tab-separated
    column names, rows of ``%16.8f`` values joined by tabs."""
    names = list(columns)
    table = np.column_stack([columns[c] for c in names])
    lines = [*header, "endheader", "\t".join(names)]
    lines += ["\t".join(f"{v:16.8f}" for v in row) for row in table]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _sides_by_coordinate(values: dict[str, np.ndarray], rows: slice) -> dict[str, np.ndarray]:
    """{'hip_flexion_r': ..., ...}: the canonical (T, 3, 3) arrays of both legs in file signs."""
    out = {}
    for side in "rl":
        canonical = values[side.upper()][rows]
        for coord, (joint, plane, sign) in _CANONICAL.items():
            out[f"{coord}_{side}"] = sign * canonical[:, joint, plane]
    return out


def _write_kinematics(path: Path, sim: Any, time: np.ndarray, rows: slice) -> None:
    n = time[rows].size
    rng = np.random.default_rng(int(sim.speed_mps * 1000) + len(sim.subject_id))
    angles = {
        name: values + rng.normal(0.0, 0.2, n)  # IK noise
        for name, values in _sides_by_coordinate(sim.kinematics, rows).items()
    }
    pelvis = sim.markers["SACR"][rows] / 1000.0
    columns: dict[str, np.ndarray] = {"time": time[rows]}
    for coord in _COORDS:
        columns[coord] = angles.get(coord, np.zeros(n))
    columns.update(
        pelvis_tilt=np.full(n, -8.0),
        pelvis_tx=pelvis[:, 0] - pelvis[0, 0] - 1.7,  # the real trial's lab origin
        pelvis_ty=pelvis[:, 2] - 0.9,
        pelvis_tz=pelvis[:, 1],
    )
    header = ["Coordinates", "version=1", f"nRows={n}", f"nColumns={len(columns)}"]
    header += ["inDegrees=yes", "", "Units are S.I. units (second, meters, Newtons, ...)"]
    header += ["Angles are in degrees.", ""]
    _write_storage(path, header, columns)


def _write_kinetics(
    path: Path, moments: dict[str, np.ndarray], time: np.ndarray, rows: slice
) -> None:
    n = time[rows].size
    values = _sides_by_coordinate(moments, rows)
    columns: dict[str, np.ndarray] = {"time": time[rows]}
    for coord in _COORDS:
        if coord in ("pelvis_tx", "pelvis_ty", "pelvis_tz"):
            columns[f"{coord}_force"] = np.zeros(n)
        else:
            columns[f"{coord}_moment"] = values.get(coord, np.zeros(n))
    header = ["Inverse Dynamics Generalized Forces", "version=1", f"nRows={n}"]
    header += [f"nColumns={len(columns)}", "inDegrees=no"]
    _write_storage(path, header, columns)

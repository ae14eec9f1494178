"""Miniature Moreira et al. 2021: the processed data in both published copies.

- MAT copy: ``MAT_files/ParticipantN/Processed_Data.mat`` with ``SubjectN_pro.<V>.<R|L>``
  holding N×2 cells {trial name, MATLAB table} for ``Angles``, ``Torques`` (N·m),
  ``Torques_Norm`` (N·m/kg), ``EMGs_filt`` (band-passed EMG resampled to 1001 points — aliased),
  ``EMGs_env`` (its envelope) and ``GRF``, plus a ``Stride_Time`` table (``St1_Time``,
  ``St2_Time`` in s — whole milliseconds, as from 1 kHz force-plate events — NaN where a trial
  has one stride). Written with mat-io (MCOS tables); the
  MAT header's creation date is fixed so the bytes do not change between runs.
- ASCII copy: ``ASCII_files/ParticipantN/Processed_Data/<V>/<R|L>/<feature>/<trial>.txt``,
  tab-separated with a header row, ``Stride_Time/<trial>.txt`` with one row, and a
  ``Properties`` folder beside the features.

Participants 1–2 exist only as MAT files and participant 3 only as ASCII files, so that the
demo build exercises both copies without storing any stride twice. Every participant folder has
a ``Metadata.txt`` (gender, age, height, body mass, leg and foot length).

Conventions written: X sagittal (+ flexion/dorsiflexion), Y coronal (+ adduction/inversion),
Z transverse (+ internal rotation; the ankle's Z is adduction); torques are internal, with the
same signs except the hip's Z (+ external rotation), as the dataset documents. Columns are
joint-major: ``St1_Pelvis_X … St1_Pelvis_Z, St2_Pelvis_X …, St1_Hip_X …``; EMG columns are
interleaved by stride: ``St1_VL, St2_VL, St1_BF, St2_BF, St1_TA, St2_TA, St1_GAL, St2_GAL``.
Pelvis angles are plausible small oscillations; the pelvis torques are zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import signal

from builder.conventions import JOINTS, PLANES, Side
from builder.datasets.miniatures import miniature
from builder.synthetic import gait_model as gm
from builder.synthetic.files import cell, matlab_header, write_mat
from builder.synthetic.simulation import analog_times, resample

POINTS = 1001
ANALOG_HZ = 1000.0
SPEEDS_KMH = {"V1": 1.0, "V15": 1.5, "V2": 2.0, "V25": 2.5, "V3": 3.0, "V35": 3.5, "V4": 4.0}
JOINT_LABELS = (("Pelvis", None), ("Hip", "hip"), ("Knee", "knee"), ("Ankle", "ankle"))
AXES = (("X", "flexion"), ("Y", "adduction"), ("Z", "rotation"))
MUSCLES = (
    ("VL", "vastus_lateralis"),
    ("BF", "biceps_femoris"),
    ("TA", "tibialis_anterior"),
    ("GAL", "gastrocnemius_lateralis"),
)
# The dataset's torque signs differ from the angle signs only for the hip's Z (+ external).
TORQUE_SIGN = {("hip", "rotation"): -1.0}
HEADER = matlab_header("Tue Jan 12 10:00:00 2021")


@dataclass(frozen=True)
class Speed:
    code: str
    trials: tuple[tuple[str, int, int], ...]  # (trial name, strides R, strides L)


@dataclass(frozen=True)
class Participant:
    number: int
    copy: str  # "mat" or "ascii"
    height_m: float
    mass_kg: float
    speeds: tuple[Speed, ...]
    seed: int


PARTICIPANTS = (
    Participant(1, "mat", 1.76, 72.0, (Speed("V15", (("T2", 2, 2),)),), 1),
    Participant(2, "mat", 1.62, 58.0, (Speed("V35", (("T1", 2, 2), ("T4", 2, 1))),), 2),
    Participant(3, "ascii", 1.70, 64.0, (Speed("V25", (("T3", 2, 2),)),), 3),
)


def _stride_tables(
    sim: gm.SimulatedTrial, side: Side, strides: list[int], mass: float, rng: np.random.Generator
) -> dict[str, Any]:
    """The feature tables of one trial of one leg (strides: indices into its heel strikes)."""
    t = sim.times()
    t_analog = analog_times(sim)
    hs = sim.heel_strikes[side]
    m_index = [sim.muscles.index(m) for _, m in MUSCLES]
    sos = signal.butter(4, (20.0, 450.0), btype="bandpass", fs=ANALOG_HZ, output="sos")
    filtered = signal.sosfiltfilt(sos, sim.emg[side][:, m_index], axis=0)
    low = signal.butter(4, 6.0, fs=ANALOG_HZ, output="sos")
    envelope = np.maximum(signal.sosfiltfilt(low, np.abs(filtered), axis=0), 0.0)
    angles, torques, torques_norm, env, filt, grf = ({} for _ in range(6))
    durations = []
    for n, k in enumerate(strides, start=1):
        grid = np.linspace(hs[k], hs[k + 1], POINTS)
        # Stride times come from 1 kHz force-plate events: whole milliseconds.
        durations.append(round(float(hs[k + 1] - hs[k]), 3))

        def at(x: np.ndarray, grid: np.ndarray = grid) -> np.ndarray:
            return resample(t if x.shape[0] == t.size else t_analog, x, grid)

        kin, mom = at(sim.kinematics[side]), at(sim.kinetics[side])
        phase = np.linspace(0, 2 * np.pi, POINTS)
        for label, joint in JOINT_LABELS:
            for axis, plane in AXES:
                name = f"St{n}_{label}_{axis}"
                if joint is None:  # pelvis tilt, obliquity, rotation
                    amp = {"X": 2.0, "Y": 4.0, "Z": 5.0}[axis]
                    angles[name] = (10.0 if axis == "X" else 0.0) + amp * np.sin(phase + n)
                    torques[name] = torques_norm[name] = np.zeros(POINTS)
                    continue
                j, p = JOINTS.index(joint), PLANES.index(plane)
                sign = TORQUE_SIGN.get((joint, plane), 1.0)
                angles[name] = kin[:, j, p]
                torques_norm[name] = sign * mom[:, j, p]
                torques[name] = sign * mom[:, j, p] * mass
        emg_grid = at(filtered) * 1e3  # mV
        env_grid = at(envelope) * 1e3
        for c in range(len(MUSCLES)):
            filt[(c, n)] = emg_grid[:, c]
            env[(c, n)] = env_grid[:, c]
        body = 9.81 * mass
        for axis, scale in (("X", 0.2), ("Y", 0.05), ("Z", 1.1)):
            grf[f"St{n}_GRF_{axis}"] = body * scale * np.clip(
                np.sin(phase * 0.8), 0, None
            ) + rng.normal(0, 1, POINTS)
    n_strides = len(strides)

    def ordered(per_joint: dict[str, np.ndarray]) -> pd.DataFrame:
        names = [
            f"St{n}_{label}_{axis}"
            for label, _ in JOINT_LABELS
            for n in range(1, n_strides + 1)
            for axis, _ in AXES
        ]
        return pd.DataFrame({name: per_joint[name] for name in names})

    def interleaved(per_muscle: dict[tuple[int, int], np.ndarray]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                f"St{n}_{label}": per_muscle[(c, n)]
                for c, (label, _) in enumerate(MUSCLES)
                for n in range(1, n_strides + 1)
            }
        )

    return {
        "Angles": ordered(angles),
        "Torques": ordered(torques),
        "Torques_Norm": ordered(torques_norm),
        "EMGs_filt": interleaved(filt),
        "EMGs_env": interleaved(env),
        "GRF": pd.DataFrame(grf),
        "durations": durations,
    }


def _participant_tables(p: Participant) -> dict[str, dict[str, list[tuple[str, dict[str, Any]]]]]:
    """{speed code: {side: [(trial, tables)]}} for one participant."""
    subject = gm.SubjectParams.generate(f"P{p.number}", p.height_m, p.mass_kg, seed=200 + p.number)
    rng = np.random.default_rng(p.seed)
    out: dict[str, dict[str, list[tuple[str, dict[str, Any]]]]] = {}
    for s_index, speed in enumerate(p.speeds):
        n_needed = sum(max(r, left) for _, r, left in speed.trials) + 2
        sim = gm.simulate_trial(
            subject=subject,
            activity="walk",
            speed_mps=SPEEDS_KMH[speed.code] / 3.6,
            incline_deg=0.0,
            n_strides=n_needed,
            seed=p.seed * 100 + s_index,
            point_rate_hz=100.0,
            analog_rate_hz=ANALOG_HZ,
        )
        per_side: dict[str, list[tuple[str, dict[str, Any]]]] = {"R": [], "L": []}
        next_stride = {"R": 1, "L": 1}
        for trial, n_right, n_left in speed.trials:
            counts: tuple[tuple[Side, int], ...] = (("R", n_right), ("L", n_left))
            for side, count in counts:
                strides = list(range(next_stride[side], next_stride[side] + count))
                next_stride[side] += 2
                per_side[side].append((trial, _stride_tables(sim, side, strides, p.mass_kg, rng)))
        out[speed.code] = per_side
    return out


def _metadata(p: Participant) -> str:
    return (
        f"Subject{p.number}\nGender: {'Male' if p.number % 2 else 'Female'}\nAge: {22 + p.number}\n"
        f"Body Height: {p.height_m:.2f}\nBody Mass: {p.mass_kg:.1f}\n"
        f"Leg Length: {0.52 * p.height_m:.3f}\nFoot Length: {0.15 * p.height_m:.3f}\n"
    )


FEATURES = ("Angles", "Torques", "Torques_Norm", "EMGs_filt", "EMGs_env", "GRF")


def _cell(trials: list[tuple[str, dict[str, Any]]], feature: str) -> np.ndarray:
    """N × 2 cell {trial name, table}."""
    return cell([x for name, tables in trials for x in (name, tables[feature])], (len(trials), 2))


def _stride_time(trials: list[tuple[str, dict[str, Any]]]) -> pd.DataFrame:
    st1 = [tables["durations"][0] for _, tables in trials]
    st2 = [
        tables["durations"][1] if len(tables["durations"]) > 1 else np.nan for _, tables in trials
    ]
    return pd.DataFrame({"St1_Time": st1, "St2_Time": st2})


def _write_mat(folder: Path, p: Participant, data: dict[str, Any]) -> None:
    struct = {
        code: {
            side: {**{f: _cell(trials, f) for f in FEATURES}, "Stride_Time": _stride_time(trials)}
            for side, trials in sides.items()
        }
        for code, sides in data.items()
    }
    target = folder / "MAT_files" / f"Participant{p.number}"
    variables = {f"Subject{p.number}_pro": struct}
    write_mat(target / "Processed_Data.mat", variables, header=HEADER, writer="mat-io")
    (target / "Metadata.txt").write_text(_metadata(p))


def _write_ascii(folder: Path, p: Participant, data: dict[str, Any]) -> None:
    root = folder / "ASCII_files" / f"Participant{p.number}"
    for code, sides in data.items():
        for side, trials in sides.items():
            leg = root / "Processed_Data" / code / side
            for name, tables in trials:
                for feature in FEATURES:
                    path = leg / feature / f"{name}.txt"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tables[feature].to_csv(path, sep="\t", index=False, float_format="%.5g")
                timing = _stride_time([(name, tables)])
                path = leg / "Stride_Time" / f"{name}.txt"
                path.parent.mkdir(parents=True, exist_ok=True)
                timing.to_csv(path, sep="\t", index=False, float_format="%.5g")
            (leg / "Properties").mkdir(parents=True, exist_ok=True)
            (leg / "Properties" / "Units.txt").write_text(
                "Angles\tdeg\nTorques\tN.m\nTorques_Norm\tN.m/kg\nGRF\tN\nEMGs_filt\tmV\nEMGs_env\tmV\n"
            )
    root.mkdir(parents=True, exist_ok=True)
    (root / "Metadata.txt").write_text(_metadata(p))


@miniature("moreira2021")
def write(folder: Path) -> dict[str, Any]:
    """Write both copies; return strides per participant, speed, trial and leg with durations."""
    facts: dict[str, Any] = {"strides": {}, "durations": {}, "copies": {}, "mass_kg": {}}
    for p in PARTICIPANTS:
        data = _participant_tables(p)
        (_write_mat if p.copy == "mat" else _write_ascii)(folder, p, data)
        subject = f"Participant{p.number}"
        facts["copies"][subject] = p.copy
        facts["mass_kg"][subject] = p.mass_kg
        for code, sides in data.items():
            for side, trials in sides.items():
                for name, tables in trials:
                    key = f"{subject}/{code}_{name}/{side}"
                    facts["strides"][key] = len(tables["durations"])
                    facts["durations"][key] = tables["durations"]
    return facts

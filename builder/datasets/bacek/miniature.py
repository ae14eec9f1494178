"""Miniature of Bacek et al. 2024 (Sci Data), segmented MAT files, in the documented layout.

What the real dataset ships and this miniature copies (README of
UniMelbHumanRoboticsLab/Human_Walking_Dataset_MelbUni2023, MAIN_*.m, a third-party loader):

- ``SubN_segMechanics.mat`` (MAT v5; scipy reads it): ``segMechanics.T<k>`` with
  ``GaitIndex.{LHS_1kHz, LTO_1kHz, RHS_1kHz, RTO_1kHz}`` (1-based sample indices of the 1 kHz
  force-plate signals, column vectors) and the same at 100 Hz (``LHS = round(LHS_1kHz / 10)``);
  ``Angles.{Hip,Knee,Ankle}_{Left,Right}`` and ``Angles.Pelvis_{Sagg,Front,Trans}``
  (cycles × 101, degrees, flexion / dorsiflexion positive) and ``GRF.{V,AP,LM}_{Left,Right}``
  (cycles × 101, newtons).
- ``SubN_segEnergetics.mat`` (MAT v7.3 / HDF5 — the third-party loader opens it with h5py):
  ``segEnergetics.T<k>.EMG.Activity.<Side>_<Muscle>`` (cycles × 1001: band-passed EMG, 100 ms
  moving RMS, 1 kHz, divided by the session's baseline ``NormFactors``) and
  ``Metabolic.MetCost`` (``EMG.SNR`` is left out: every HDF5 object costs write and read time); non-test fields ``NormFactors.<Session>.<Side>_<Muscle>``,
  ``MetabolicResting.<Session>``, ``Pref_Start`` / ``Pref_End.<Session>.Metabolic.MetCost``.
- ``Subjects_Info.mat``: ``SubjectInfo.SubN.Session2/3.{TestOrder (15), ConditionOrder (3 bouts;
  1 free, 2 orthosis), WalkSpeedOrder (3 bouts; v1 0.4, v2 0.8, v3 1.1 m/s), PrefCadence (2 × 3;
  row 1 free, row 2 orthosis, speeds v1..v3), CadenceRef (15, steps/min, in TestOrder), Mass}``.

Every segmented array, of BOTH legs, is a LEFT heel strike -> left heel strike cycle (README:
"one cycle starting and ending with two subsequent left heel strikes"), so a right-leg array
holds the right leg's second half of one stride and first half of the next. ``_write(...,
right_cut="right")`` writes right-leg arrays cut at right heel strikes instead (what the
dataset's sample MATLAB code does), for the adapter's detection tests.

Curves come from :mod:`builder.synthetic.gait_model`; time is rescaled so that each test's stride
time follows its metronome cadence. The left knee of orthosis tests is locked near 3 degrees.
Gluteus maximus (not simulated) is derived from the gluteus medius and biceps femoris EMG.
Trials are 5 minutes in reality (~250 cycles); here 4-5 cycles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy.ndimage import uniform_filter1d

from builder.conventions import Side
from builder.datasets.miniatures import miniature
from builder.synthetic.files import MATIO_HEADER, write_mat
from builder.synthetic.gait_model import (
    SubjectParams,
    simulate_trial,
    stance_fraction,
    stride_time_s,
)
from builder.synthetic.simulation import analog_times

SIDES: dict[Side, str] = {"L": "Left", "R": "Right"}
MUSCLES = ("TibAnt", "GastroMed", "GastroLat", "VastLat", "RecFem", "BicFem", "Semitend", "GlutMax")
_FROM_MODEL = {
    "TibAnt": "tibialis_anterior",
    "GastroMed": "gastrocnemius_medialis",
    "GastroLat": "gastrocnemius_lateralis",
    "VastLat": "vastus_lateralis",
    "RecFem": "rectus_femoris",
    "BicFem": "biceps_femoris",
    "Semitend": "semitendinosus",
}
SESSIONS = ("Session2", "Session3")
SPEED_LEVELS = (0.4, 0.8, 1.1)  # v1, v2, v3 (README, Subject info)
CADENCE_PCT = (-10, -5, 0, 10, 20)


def test_table() -> dict[int, tuple[float, bool, int]]:
    """README "Test nomenclature": test -> (speed m/s, knee orthosis, cadence % of preferred)."""
    table = {}
    for block, (orthosis, speed) in enumerate(
        (o, v) for o in (False, True) for v in (1.1, 0.8, 0.4)
    ):
        for j, pct in enumerate(CADENCE_PCT):
            table[5 * block + j + 1] = (speed, orthosis, pct)
    return table


# subject -> (height m, mass kg, seed, {session: [(orthosis, speed level 1..3) per bout]}, tests)
SUBJECTS: dict[
    str, tuple[float, float, int, dict[str, list[tuple[bool, int]]], tuple[int, ...]]
] = {
    "Sub1": (
        1.72,
        74.0,
        11,
        {
            "Session2": [(True, 2), (False, 3), (True, 1)],
            "Session3": [(False, 1), (True, 3), (False, 2)],
        },
        (3, 12, 18),
    ),
    "Sub2": (
        1.74,
        70.0,
        12,
        {
            "Session2": [(False, 3), (True, 1), (False, 2)],
            "Session3": [(True, 3), (False, 1), (True, 2)],
        },
        (9, 26),
    ),
}
N_STRIDES = 5


def _save(path: Path, variables: dict[str, Any], version: Literal["5", "7.3"]) -> None:
    write_mat(path, variables, header=MATIO_HEADER[version], version=version, writer="mat-io")


def _subject_info(rng: np.random.Generator) -> dict[str, dict[str, Any]]:
    """SubjectInfo.<Sub>.<Session> as the README describes it, plus the preferred cadences."""
    table = test_table()
    info: dict[str, dict[str, Any]] = {}
    for subject, (height, mass, _, bouts, _) in SUBJECTS.items():
        pref = np.array(
            [
                [round(120.0 / stride_time_s(v, 0.0, height)) - 2 * o for v in SPEED_LEVELS]
                for o in (0, 1)
            ],
            dtype=float,
        )
        sessions: dict[str, Any] = {"Session1": {"PrefSpeed": 1.0}}
        for session in SESSIONS:
            order, cadence = [], []
            for orthosis, level in bouts[session]:
                tests = [
                    k
                    for k, (v, o, _) in table.items()
                    if o == orthosis and v == SPEED_LEVELS[level - 1]
                ]
                tests = list(rng.permutation(tests))
                order += tests
                cadence += [
                    round(pref[int(orthosis), level - 1] * (1 + table[k][2] / 100)) for k in tests
                ]
            sessions[session] = {
                "TestOrder": np.array([order], dtype=float),
                "ConditionOrder": np.array([[2.0 if o else 1.0 for o, _ in bouts[session]]]),
                "WalkSpeedOrder": np.array([[float(lvl) for _, lvl in bouts[session]]]),
                "PrefCadence": pref,
                "CadenceRef": np.array([cadence], dtype=float),
                "LowerLimbMarkers": 26.0,
                "UpperLimbMarkers": 11.0,
                "Mass": mass,
                "MC_BoutAvailable": np.ones((1, 3)),
            }
        info[subject] = sessions
    return info


def _session_of(info: dict[str, Any], test: int) -> tuple[str, int]:
    for session in SESSIONS:
        order = [int(k) for k in info[session]["TestOrder"].ravel()]
        if test in order:
            return session, order.index(test)
    raise KeyError(test)


def _vgrf(phase: np.ndarray, stance: float, weight_n: float) -> np.ndarray:
    """A double-hump vertical force during stance (phase 0 = heel strike), zero in swing."""
    x = np.mod(phase, 1.0) / stance
    inside = x < 1.0
    return np.where(inside, weight_n * (np.sin(np.pi * x) + 0.25 * np.sin(3 * np.pi * x)), 0.0)


def _test_arrays(
    subject: str, test: int, info: dict[str, Any], right_cut: Literal["left", "right"]
) -> tuple[dict[str, Any], dict[str, Any], int, int]:
    """segMechanics.T<k> and segEnergetics.T<k> of one test; and the left/right stride counts."""
    height, mass, seed, _, _ = SUBJECTS[subject]
    speed, orthosis, _ = test_table()[test]
    session, position = _session_of(info, test)
    cadence = float(info[session]["CadenceRef"].ravel()[position])
    params = SubjectParams.generate(subject, height, mass, seed)
    trial = simulate_trial(
        subject=params,
        activity="walk",
        speed_mps=speed,
        incline_deg=0.0,
        n_strides=N_STRIDES,
        seed=1000 * seed + test,
        point_rate_hz=100.0,
        analog_rate_hz=2000.0,
    )
    # Follow the metronome: stretch time so that the mean stride lasts 120 / cadence seconds.
    scale = (120.0 / cadence) / float(np.mean(np.diff(trial.heel_strikes["L"])))

    def index_1khz(times: np.ndarray) -> np.ndarray:
        return np.round(times * scale * 1000.0).astype(int) + 1

    lhs, rhs = index_1khz(trial.heel_strikes["L"]), index_1khz(trial.heel_strikes["R"])
    lto, rto = index_1khz(trial.toe_offs["L"]), index_1khz(trial.toe_offs["R"])
    rhs = rhs[rhs > lhs[0]]  # the analysis starts with a left step (MAIN_KineticsKinematics)
    n = min(lhs.size, rhs.size)
    lhs, rhs = lhs[:n], rhs[:n]
    lto, rto = lto[lto > lhs[0]][:n], rto[rto > rhs[0]][:n]

    frame_t = trial.times()  # simulated time of each 100 Hz frame
    kinematics = {side: trial.kinematics[side][:, :, 2].copy() for side in SIDES}  # flexion
    if orthosis:  # left knee locked straight by the passive orthosis
        locked = np.random.default_rng(seed + test)
        kinematics["L"][:, 1] = (
            3.0 + 0.5 * locked.standard_normal() + 0.3 * np.sin(2 * np.pi * trial.phase["L"])
        )
    # EMG: 100 ms moving RMS of the 2 kHz EMG, divided by the session's baseline factor.
    emg_t = analog_times(trial)
    model = {name: i for i, name in enumerate(trial.muscles)}
    rms = {}
    for side in SIDES:
        raw = trial.emg[side]
        channels = {m: raw[:, model[_FROM_MODEL[m]]] for m in _FROM_MODEL}
        channels["GlutMax"] = (
            0.7 * raw[:, model["gluteus_medius"]] + 0.4 * raw[:, model["biceps_femoris"]]
        )
        for muscle, x in channels.items():
            rms[side, muscle] = np.sqrt(uniform_filter1d(x**2, 201, mode="nearest"))

    def windows(starts: np.ndarray, rate: float, points: int) -> np.ndarray:
        """Simulated times of ``points`` equally spaced samples of each cycle [s_i, s_i+1]."""
        t = (starts.astype(float) - 1.0) / rate  # 1-based index -> scaled time
        frac = np.linspace(0.0, 1.0, points)
        return (t[:-1, None] + np.diff(t)[:, None] * frac) / scale

    cut_100 = {
        "L": np.round(lhs / 10.0),
        "R": np.round((lhs if right_cut == "left" else rhs) / 10.0),
    }
    cut_1k = {"L": lhs, "R": lhs if right_cut == "left" else rhs}
    angles: dict[str, np.ndarray] = {}
    for side, name in SIDES.items():
        times = windows(cut_100[side], 100.0, 101)
        for j, joint in enumerate(("Hip", "Knee", "Ankle")):
            angles[f"{joint}_{name}"] = np.round(
                np.interp(times, frame_t, kinematics[side][:, j]), 4
            )
    times = windows(cut_100["L"], 100.0, 101)
    for plane, amplitude in (("Sagg", 3.0), ("Front", 4.0), ("Trans", 5.0)):
        angles[f"Pelvis_{plane}"] = np.round(
            10.0 + amplitude * np.sin(4 * np.pi * np.interp(times, frame_t, trial.phase["L"])), 4
        )

    stance = stance_fraction(speed)
    weight = mass * 9.81
    grf: dict[str, np.ndarray] = {}
    for side, name in SIDES.items():
        phase = np.interp(windows(lhs, 1000.0, 101), frame_t, trial.phase[side])
        v = _vgrf(phase, stance, weight)
        grf[f"V_{name}"] = np.round(v, 2)
        grf[f"AP_{name}"] = np.round(0.2 * v * np.sin(2 * np.pi * np.mod(phase, 1.0) / stance), 2)
        grf[f"LM_{name}"] = np.round(0.05 * v, 2)

    norm = _norm_factors(subject)[session]
    activity: dict[str, np.ndarray] = {}
    for side, name in SIDES.items():
        times = windows(cut_1k[side], 1000.0, 1001)
        for muscle in MUSCLES:
            key = f"{name}_{muscle}"
            activity[key] = np.round(np.interp(times, emg_t, rms[side, muscle]) / norm[key], 4)

    gait_index = {
        "LHS_1kHz": lhs[:, None].astype(float),
        "LTO_1kHz": lto[:, None].astype(float),
        "RHS_1kHz": rhs[:, None].astype(float),
        "RTO_1kHz": rto[:, None].astype(float),
        "LHS": np.round(lhs / 10.0)[:, None],
        "LTO": np.round(lto / 10.0)[:, None],
        "RHS": np.round(rhs / 10.0)[:, None],
        "RTO": np.round(rto / 10.0)[:, None],
    }
    mechanics = {"GaitIndex": gait_index, "Angles": angles, "GRF": grf}
    energetics = {
        "EMG": {"Activity": activity},
        "Metabolic": {"MetCost": np.round(np.linspace(3.1, 3.4, 12)[:, None], 3)},
    }
    n_left = lhs.size - 1
    # Right strides: re-cut from LHS cycles, every RHS pair inside the segmented span.
    n_right = int(np.sum(rhs[1:] <= lhs[-1]))
    return mechanics, energetics, n_left, n_right


def _norm_factors(subject: str) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(SUBJECTS[subject][2])
    return {
        session: {
            f"{name}_{m}": round(float(rng.uniform(1.0e-5, 3.0e-5)), 9)
            for name in SIDES.values()
            for m in MUSCLES
        }
        for session in SESSIONS
    }


def _write(
    folder: Path,
    *,
    right_cut: Literal["left", "right"] = "left",
    subjects: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    info = _subject_info(np.random.default_rng(2024))
    _save(folder / "Subjects_Info.mat", {"SubjectInfo": info}, "5")
    table = test_table()
    facts: dict[str, Any] = {"tests": {}, "strides": {"L": 0, "R": 0}}
    for subject, (_, _, _, _, tests) in SUBJECTS.items():
        if subjects is not None and subject not in subjects:
            continue
        mechanics, energetics = {}, {}
        for test in tests:
            mech, ener, n_left, n_right = _test_arrays(subject, test, info[subject], right_cut)
            mechanics[f"T{test}"], energetics[f"T{test}"] = mech, ener
            speed, orthosis, pct = table[test]
            facts["tests"][f"{subject}/T{test}"] = {
                "speed_mps": speed,
                "orthosis": orthosis,
                "cadence_pct": pct,
                "strides": {"L": n_left, "R": n_right},
                "lhs_1khz": mech["GaitIndex"]["LHS_1kHz"].ravel().astype(int).tolist(),
                "rhs_1khz": mech["GaitIndex"]["RHS_1kHz"].ravel().astype(int).tolist(),
            }
            facts["strides"]["L"] += n_left
            facts["strides"]["R"] += n_right
        energetics["NormFactors"] = _norm_factors(subject)
        energetics["MetabolicResting"] = {s: np.full((5, 1), 1.2) for s in SESSIONS}
        for name in ("Pref_Start", "Pref_End"):
            energetics[name] = {
                s: {"Metabolic": {"MetCost": np.full((10, 1), 2.9)}} for s in SESSIONS
            }
        _save(folder / f"{subject}_segMechanics.mat", {"segMechanics": mechanics}, "5")
        _save(folder / f"{subject}_segEnergetics.mat", {"segEnergetics": energetics}, "7.3")
    facts["subjects"] = sorted(SUBJECTS)
    return facts


@miniature("bacek2024")
def write(folder: Path) -> dict[str, Any]:
    """Write the miniature under ``folder`` (the dataset's root); return what tests check."""
    return _write(folder)

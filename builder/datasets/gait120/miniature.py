"""Miniature of Gait120 (source key ``gait120``) in its own layout.

Files::

    Gait120_001_to_010/S001/EMG/RawData.mat          EMGs_info.fs, Markers_info.fs, MVC_raw,
                                                      <Task>.{AvailableTrialIdx, TrialNN.{EMGs_raw
                                                      (table), TotalFrame, nSteps, StepSS.TargetFrame}}
    Gait120_001_to_010/S001/EMG/ProcessedData.mat    <Task>.TrialNN.{MVCs, StepSS.EMGs_interpolated}
    Gait120_001_to_010/S001/JointAngle/<Task>/TrialNN/stepSS.mot
    Gait120_061_to_070/S061/...                       an older subject (S061-S120)

S001 (young): LevelWalking trials 1 and 3 (``AvailableTrialIdx`` = [1, 3]), StairAscent 1,
SitToStand 1 (one movement). S061 (older, 60 Hz hum on the EMG): LevelWalking 1 and
SlopeDescent 1, plus a ``JointAngle/LevelWalking/Trial02`` folder whose trial RawData does not
list (no EMG): the adapter must leave it out. Gait trials hold two consecutive right-leg cycles
(``Step01``, ``Step02``); TargetFrame are 1-based frames of the trial at 100 Hz, EMG runs at
2 kHz from frame 1. Step files are OpenSim IK (degrees, time in the trial's time base) with
the knee **extension positive**, both legs. Stairs are approximated by a +15° incline and the
sit-to-stand by a smooth 1.8 s rise (the gait model has neither); slopes at -10°.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from builder.conventions import JOINTS, PLANES
from builder.datasets.miniatures import miniature
from builder.formats.opensim import write_storage
from builder.synthetic.emg_model import synthesize_emg
from builder.synthetic.files import cell, matlab_header, quantise, write_mat
from builder.synthetic.gait_model import DEMO_MUSCLES, SubjectParams, simulate_trial
from builder.synthetic.simulation import activity_of, record_emg

EMG_HZ: Final = 2000.0
MOCAP_HZ: Final = 100.0
RATIO: Final = int(EMG_HZ / MOCAP_HZ)
MAINS_HZ: Final = 60.0
HEADER: Final = matlab_header("Mon Mar  4 09:30:00 2024")

EMG_COLUMNS: Final = (
    "VastusLateralis",
    "RectusFemoris",
    "VastusMedialis",
    "TibialisAnterior",
    "BicepsFemoris",
    "Semitendinosus",
    "GastrocnemuisMedialis",  # sic: the source's spelling
    "GastrocnemiusLateralis",
    "SoleusMedialis",
    "SoleusLateralis",
    "PeroneusLongus",
    "PeroneusBrevis",
)
_FROM_MODEL: Final = {
    "VastusLateralis": "vastus_lateralis",
    "RectusFemoris": "rectus_femoris",
    "VastusMedialis": "vastus_medialis",
    "TibialisAnterior": "tibialis_anterior",
    "BicepsFemoris": "biceps_femoris",
    "Semitendinosus": "semitendinosus",
    "GastrocnemuisMedialis": "gastrocnemius_medialis",
    "GastrocnemiusLateralis": "gastrocnemius_lateralis",
    "SoleusMedialis": "soleus",
}
_LEG_COORDINATES: Final = {
    "hip_flexion": ("hip", "flexion", 1.0),
    "hip_adduction": ("hip", "adduction", 1.0),
    "hip_rotation": ("hip", "rotation", 1.0),
    "knee_angle": ("knee", "flexion", -1.0),  # extension positive in the source
    "ankle_angle": ("ankle", "flexion", 1.0),
}


@dataclass(frozen=True)
class Subject:
    subject_id: str
    zip_folder: str
    height_m: float
    mass_kg: float
    seed: int
    mains_hum: bool


@dataclass(frozen=True)
class Trial:
    task: str
    number: int
    speed_mps: float
    incline_deg: float  # stairs approximated by a steep incline
    seed: int


SUBJECTS: Final = (
    Subject("S001", "Gait120_001_to_010", 1.76, 72.0, 1001, mains_hum=False),
    Subject("S061", "Gait120_061_to_070", 1.70, 70.0, 1061, mains_hum=True),
)
TRIALS: Final = {
    "S001": (
        Trial("LevelWalking", 1, 1.25, 0.0, 1),
        Trial("LevelWalking", 3, 1.25, 0.0, 3),
        Trial("StairAscent", 1, 0.9, 15.0, 4),
        Trial("SitToStand", 1, 0.0, 0.0, 5),
    ),
    "S061": (
        Trial("LevelWalking", 1, 1.1, 0.0, 6),
        Trial("SlopeDescent", 1, 1.0, -10.0, 7),
    ),
}
# An angle folder whose trial RawData does not list (the adapter leaves it out).
ORPHAN_TRIALS: Final = {"S061": (("LevelWalking", 2),)}
POPULATION: Final = {"S001": "healthy", "S061": "older_adults"}
_STEPS_PER_GAIT_TRIAL: Final = 2
_PAD_S: Final = 0.3  # recording before the first and after the last step


def save_mat(path: Path, variables: dict[str, Any]) -> None:
    """MAT v5 with the tables as MCOS objects (mat-io), as the release's files hold them."""
    write_mat(path, variables, header=HEADER, writer="mat-io")


@dataclass(frozen=True)
class _Recording:
    """One trial at the mocap rate (angles) and EMG rate (activations, 12 EMG columns)."""

    angles: dict[str, np.ndarray]  # side -> (F, 3, 3) canonical degrees
    activations: np.ndarray  # (F * RATIO, 12)
    steps: tuple[tuple[int, int], ...]  # TargetFrame [start, end], 1-based


def _emg_activations(model: np.ndarray) -> np.ndarray:
    """The 12 Gait120 channels from the model's 10 muscles (peronei from the calf muscles)."""
    index = {m: i for i, m in enumerate(DEMO_MUSCLES)}
    soleus = model[:, index["soleus"]]
    lateral = model[:, index["gastrocnemius_lateralis"]]
    derived = {
        "SoleusLateralis": 0.85 * soleus + 0.02,
        "PeroneusLongus": 0.55 * soleus + 0.2 * lateral + 0.03,
        "PeroneusBrevis": 0.5 * soleus + 0.04,
    }
    columns = [
        derived[name] if name in derived else model[:, index[_FROM_MODEL[name]]]
        for name in EMG_COLUMNS
    ]
    return np.stack(columns, axis=1)


def _gait_trial(params: SubjectParams, trial: Trial) -> _Recording:
    sim = simulate_trial(
        subject=params,
        activity=activity_of(trial.incline_deg),
        speed_mps=trial.speed_mps,
        incline_deg=trial.incline_deg,
        n_strides=_STEPS_PER_GAIT_TRIAL,
        seed=trial.seed,
        point_rate_hz=MOCAP_HZ,
        analog_rate_hz=EMG_HZ,
    )
    heel = sim.heel_strikes["R"][: _STEPS_PER_GAIT_TRIAL + 1]
    frames = np.round(heel * MOCAP_HZ).astype(int)  # 0-based frames of the simulation
    first = max(0, int(frames[0] - _PAD_S * MOCAP_HZ))
    last = min(sim.n_frames - 1, int(frames[-1] + _PAD_S * MOCAP_HZ))
    steps = tuple((int(a - first + 1), int(b - first + 1)) for a, b in pairwise(frames))
    activations = _emg_activations(sim.activations["R"])[first * RATIO : (last + 1) * RATIO]
    return _Recording(
        {side: sim.kinematics[side][first : last + 1] for side in ("L", "R")},
        activations,
        steps,
    )


def _sit_to_stand(params: SubjectParams) -> _Recording:
    """Seated 0.5 s, a 1.8 s minimum-jerk rise, standing 0.7 s (one movement = one step)."""
    n = int(3.0 * MOCAP_HZ)
    t = np.arange(n) / MOCAP_HZ
    x = np.clip((t - 0.5) / 1.8, 0.0, 1.0)
    rise = 10 * x**3 - 15 * x**4 + 6 * x**5  # minimum jerk, 0 -> 1
    angles = {}
    for side in ("L", "R"):
        a = np.zeros((n, 3, 3))
        a[:, 0, 2] = 85.0 - 80.0 * rise  # hip flexion
        a[:, 1, 2] = 90.0 - 86.0 * rise  # knee flexion
        a[:, 2, 2] = 12.0 - 10.0 * rise + 6.0 * np.sin(np.pi * x)  # ankle: forward lean
        a[:, 0, 0] = -2.0 + 1.5 * rise
        a[:, 0, 1] = 3.0 - 2.0 * rise
        angles[side] = a + params.offsets(side)
    te = np.arange(n * RATIO) / EMG_HZ
    xe = np.clip((te - 0.5) / 1.8, 0.0, 1.0)
    moving = (te > 0.45) & (te < 2.35)

    def burst(centre: float, width: float, height: float) -> np.ndarray:
        return height * np.exp(-(((xe - centre) / width) ** 2)) * moving

    extensors = burst(0.4, 0.25, 0.6)
    calf = burst(0.7, 0.2, 0.25)
    columns = {
        "VastusLateralis": extensors,
        "RectusFemoris": 0.6 * extensors,
        "VastusMedialis": 0.9 * extensors,
        "TibialisAnterior": burst(0.1, 0.15, 0.4),
        "BicepsFemoris": burst(0.45, 0.25, 0.2),
        "Semitendinosus": burst(0.45, 0.25, 0.18),
        "GastrocnemuisMedialis": calf,
        "GastrocnemiusLateralis": 0.8 * calf,
        "SoleusMedialis": 1.2 * calf,
        "SoleusLateralis": calf,
        "PeroneusLongus": 0.6 * calf,
        "PeroneusBrevis": 0.5 * calf,
    }
    activations = 0.02 + np.stack([columns[c] for c in EMG_COLUMNS], axis=1)
    return _Recording(angles, activations, ((51, 231),))  # frames of t = 0.5 s and 2.3 s


def _mot(recording: _Recording, start: int, end: int) -> pd.DataFrame:
    """Rows of frames start..end (1-based), OpenSim coordinates in degrees."""
    rows = slice(start - 1, end)
    frames = np.arange(start, end + 1)
    t = (frames - 1) / MOCAP_HZ
    phase = 2 * np.pi * t
    columns: dict[str, np.ndarray] = {
        "time": t,
        "pelvis_tilt": -6.0 + 1.5 * np.sin(2 * phase),
        "pelvis_list": 2.5 * np.sin(phase),
        "pelvis_rotation": 4.0 * np.sin(phase + 0.4),
        "pelvis_tx": 1.2 * t,
        "pelvis_ty": 0.92 + 0.02 * np.cos(2 * phase),
        "pelvis_tz": 0.01 * np.sin(phase),
    }
    for side in ("r", "l"):
        angles = recording.angles[side.upper()][rows]
        for coordinate, (joint, plane, sign) in _LEG_COORDINATES.items():
            values = sign * angles[:, JOINTS.index(joint), PLANES.index(plane)]
            columns[f"{coordinate}_{side}"] = quantise(values, "deg")
        columns[f"subtalar_angle_{side}"] = quantise(3.0 * np.sin(phase), "deg")
        columns[f"mtp_angle_{side}"] = quantise(np.zeros_like(t), "deg")
    columns["lumbar_extension"] = -3.0 + np.sin(2 * phase)
    columns["lumbar_bending"] = np.sin(phase)
    columns["lumbar_rotation"] = 1.5 * np.sin(phase + 1.0)
    return pd.DataFrame(columns)


def _envelope_101(activation: np.ndarray, start: int, end: int) -> pd.DataFrame:
    """ProcessedData's EMGs_interpolated: the step's activation at 101 points, in % MVC."""
    first, last = (start - 1) * RATIO, (end - 1) * RATIO
    grid = np.linspace(first, last, 101)
    values = np.stack(
        [np.interp(grid, np.arange(activation.shape[0]), activation[:, c]) for c in range(12)],
        axis=1,
    )
    return pd.DataFrame(np.round(100.0 * values, 3), columns=list(EMG_COLUMNS))


@miniature("gait120")
def write(folder: Path) -> dict[str, Any]:
    """Write the miniature under ``folder``; return what tests check."""
    facts: dict[str, Any] = {"subjects": {}, "left_out": []}
    for subject in SUBJECTS:
        params = SubjectParams.generate(
            subject.subject_id, subject.height_m, subject.mass_kg, subject.seed
        )
        model_gain = dict(zip(DEMO_MUSCLES, params.gains("R"), strict=True))
        gains = np.array(
            [model_gain[_FROM_MODEL[c]] if c in _FROM_MODEL else 1.0 for c in EMG_COLUMNS]
        )
        home = folder / subject.zip_folder / subject.subject_id
        raw: dict[str, Any] = {
            "EMGs_info": {"fs": EMG_HZ, "ChannelNames": cell(EMG_COLUMNS)},
            "Markers_info": {"fs": MOCAP_HZ},
        }
        processed: dict[str, Any] = {}
        steps: dict[str, int] = {}
        rng = np.random.default_rng(subject.seed)
        for trial in TRIALS[subject.subject_id]:
            recording = (
                _sit_to_stand(params) if trial.task == "SitToStand" else _gait_trial(params, trial)
            )
            mains_hz = MAINS_HZ if subject.mains_hum else None
            emg = record_emg(recording.activations, EMG_HZ, rng, gains=gains, mains_hz=mains_hz)
            name = f"Trial{trial.number:02d}"
            entry: dict[str, Any] = {
                "EMGs_raw": pd.DataFrame(quantise(emg, "emg"), columns=list(EMG_COLUMNS)),
                "TotalFrame": float(recording.angles["R"].shape[0]),
                "nSteps": float(len(recording.steps)),
            }
            processed_entry: dict[str, Any] = {"MVCs": np.round(gains * 1e-3, 6)}
            for s, (start, end) in enumerate(recording.steps, start=1):
                entry[f"Step{s:02d}"] = {"TargetFrame": np.array([float(start), float(end)])}
                processed_entry[f"Step{s:02d}"] = {
                    "EMGs_interpolated": _envelope_101(recording.activations, start, end)
                }
                mot = home / "JointAngle" / trial.task / name / f"step{s:02d}.mot"
                mot.parent.mkdir(parents=True, exist_ok=True)
                write_storage(str(mot), _mot(recording, start, end), name=f"step{s:02d}")
            task = raw.setdefault(trial.task, {"AvailableTrialIdx": []})
            task["AvailableTrialIdx"].append(float(trial.number))
            task[name] = entry
            processed.setdefault(trial.task, {})[name] = processed_entry
            steps[f"{trial.task}/{name}"] = len(recording.steps)
        for task, number in ORPHAN_TRIALS.get(subject.subject_id, ()):
            orphan = home / "JointAngle" / task / f"Trial{number:02d}"
            orphan.mkdir(parents=True, exist_ok=True)
            template = next(iter(sorted((home / "JointAngle" / task).glob("Trial*/step01.mot"))))
            (orphan / "step01.mot").write_bytes(template.read_bytes())
            facts["left_out"].append(f"{subject.subject_id}/{task}/Trial{number:02d}")
        for task in raw.values():
            if "AvailableTrialIdx" in task:
                task["AvailableTrialIdx"] = np.array(task["AvailableTrialIdx"])
        mvc = synthesize_emg(np.full((400, 12), 0.9), EMG_HZ, rng) * gains
        raw["MVC_raw"] = pd.DataFrame(quantise(mvc, "emg"), columns=list(EMG_COLUMNS))
        save_mat(home / "EMG" / "RawData.mat", raw)
        save_mat(home / "EMG" / "ProcessedData.mat", processed)
        facts["subjects"][subject.subject_id] = {
            "population": POPULATION[subject.subject_id],
            "steps": steps,
            "mains_hum": subject.mains_hum,
            "path": f"{subject.zip_folder}/{subject.subject_id}/EMG/RawData.mat",
        }
    return facts

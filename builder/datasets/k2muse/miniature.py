"""Miniature of K2MUSE (Li et al., arXiv 2504.14602 / IJRR 2026): ``ProcessedData/P*.mat``.

The layout follows the dataset's documentation (k2muse.github.io, "Processed Data"):

- one MAT v7.3 (HDF5) file per participant with two structs of the same tree,
  ``OriginalData`` and ``NormalizedData``, ``.(Condition).(Mode).(Speed).(Trial).(Datatype)``:
  conditions Ideal, Fatigue (trials 1-10), ShiftInitial/Upward/Downward/Leftward/Rightward,
  InterDay; modes LG_0, AS_5, AS_10, DS_5, DS_10; speeds S_0x5, S_1x0, S_1x5;
- ``OriginalData``: continuous data, one row per sample — ``Angles.<Side><Joint>Angles``
  (frames × 3: Plug-in Gait X flexion, Y adduction, Z internal rotation, degrees, 100 Hz),
  ``Moments.<Side><Joint>Moment`` (frames × 3, PiG external description, N·m/kg as the
  documentation states), ``Forces`` (N/kg), ``Powers`` (W/kg), ``Events.{EventFrame,
  EventTime}`` (Vicon events; field names as BTK's btkGetEvents returns them [I]) and
  ``EMGData`` (samples × 13 raw sEMG at 2000 Hz in µV [I]: columns 1-9 right TA, MG, LG, SOL,
  RF, VLO, VMO, BF, SEM; 10-13 left TA, LG, RF, BF);
- ``NormalizedData``: ``Events.{LStartFrame, LEndFrame, RStartFrame, REndFrame}`` (1 × M,
  1-based 100 Hz frames of the heel strikes delimiting each stride "after stable walking"),
  ``Angles/Moments.<name>.{rsGaitData (200 × 3 × strides), MeanValues, StdValues}`` and
  ``EMGData.{Right, Left}`` (1 × strides cells of P × 9 / P × 4 raw samples per stride).

The trial field is ``T<n>`` here (the documentation calls it "(TrialNumber)": its exact spelling
is unknown; the adapter accepts any name ending in the number). Markers, Forces, Powers and
ultrasound (``USData``) are left out to keep the miniature small and quick to write; EMG is
stored as single precision in 1 µV steps.
Quirks: the first stride after the trial start is not in the events (stable walking only); one
trial lacks a stride in the middle of its events (a gap the adapter must not bridge); P1
includes a trial with no NormalizedData (the adapter reports it); 50 Hz mains hum.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from builder.datasets.miniatures import miniature
from builder.synthetic.files import MATIO_HEADER, cell, write_mat
from builder.synthetic.gait_model import SubjectParams, simulate_trial

RIGHT = ("tibialis_anterior", "gastrocnemius_medialis", "gastrocnemius_lateralis", "soleus",
         "rectus_femoris", "vastus_lateralis", "vastus_medialis", "biceps_femoris",
         "semitendinosus")  # fmt: skip
LEFT = ("tibialis_anterior", "gastrocnemius_lateralis", "rectus_femoris", "biceps_femoris")
JOINTS = ("Hip", "Knee", "Ankle")
SPEEDS = {"S_0x5": 0.5, "S_1x0": 1.0, "S_1x5": 1.5}
MODES = {"LG_0": ("walk", 0.0), "AS_5": ("ramp_ascent", 5.0), "AS_10": ("ramp_ascent", 10.0),
         "DS_5": ("ramp_descent", -5.0), "DS_10": ("ramp_descent", -10.0)}  # fmt: skip
_XYZ = (2, 0, 1)  # canonical planes (adduction, rotation, flexion) feeding PiG X, Y, Z
RATE_HZ, EMG_HZ = 100.0, 2000.0
N_STRIDES = 3

# participant -> (height m, mass kg, seed, trials (condition, mode, speed, trial number))
SUBJECTS: dict[str, tuple[float, float, int, tuple[tuple[str, str, str, int], ...]]] = {
    "P1": (1.72, 66.0, 21, (("Ideal", "LG_0", "S_1x0", 1), ("Ideal", "AS_10", "S_0x5", 2))),
    "P2": (1.80, 78.0, 22, (("Fatigue", "DS_5", "S_1x5", 7), ("ShiftUpward", "LG_0", "S_1x0", 1))),
    "O1": (1.62, 60.0, 23, (("InterDay", "LG_0", "S_0x5", 1),)),  # older-adult cohort
}
NO_NORMALIZED = ("P1", "Ideal", "AS_10", "S_0x5", 2)  # a trial without NormalizedData
GAP = ("P2", "Fatigue", "DS_5", "S_1x5", 7)  # a stride missing from the events


def _row(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=float).reshape(1, -1)


def _resample(data: np.ndarray, first: int, last: int, points: int = 200) -> np.ndarray:
    """Rows first..last (0-based, inclusive) linearly resampled to ``points``."""
    pos = np.linspace(first, last, points)
    i0 = np.minimum(np.floor(pos).astype(int), data.shape[0] - 2)
    w = (pos - i0)[:, None]
    return data[i0] * (1.0 - w) + data[i0 + 1] * w


def _trial(
    subject: str, height: float, mass: float, seed: int, key: tuple, n_strides: int = N_STRIDES
) -> tuple[dict, dict | None, dict]:
    """One trial's OriginalData and NormalizedData (None for :data:`NO_NORMALIZED`) and its
    strides per side; ``n_strides`` simulated (real-size generators ask for more)."""
    condition, mode, speed_code, number = key
    activity, incline = MODES[mode]
    params = SubjectParams.generate(subject, height, mass, seed)
    sim = simulate_trial(
        subject=params,
        activity=activity,
        speed_mps=SPEEDS[speed_code],
        incline_deg=incline,
        n_strides={NO_NORMALIZED: 2, GAP: N_STRIDES + 1}.get((subject, *key), n_strides),
        seed=seed * 100 + number + 7 * list(MODES).index(mode),
        point_rate_hz=RATE_HZ,
        analog_rate_hz=EMG_HZ,
        mains_hz=50.0,
    )
    gain = {"Fatigue": 1.3, "ShiftUpward": 0.8}.get(condition, 1.0)  # amplitude changes
    index = {name: i for i, name in enumerate(sim.muscles)}
    emg_uv = (
        1e6
        * gain
        * np.concatenate(
            [sim.emg["R"][:, [index[m] for m in RIGHT]], sim.emg["L"][:, [index[m] for m in LEFT]]],
            axis=1,
        )
    )
    emg = np.round(emg_uv).astype(np.float32)  # 1 µV steps keep the file small
    angles, moments = {}, {}
    for side in ("L", "R"):
        for j, joint in enumerate(JOINTS):
            angles[f"{side}{joint}Angles"] = np.round(sim.kinematics[side][:, j][:, _XYZ], 4)
            # PiG writes the external moment: internal (canonical) x -1.
            moments[f"{side}{joint}Moment"] = np.round(-sim.kinetics[side][:, j][:, _XYZ], 5)
    # Heel strikes as 1-based 100 Hz frames.
    strikes = {s: np.round(sim.heel_strikes[s] * RATE_HZ).astype(int) + 1 for s in ("L", "R")}
    offs = {s: np.round(sim.toe_offs[s] * RATE_HZ).astype(int) + 1 for s in ("L", "R")}
    events_frame = {
        "Left_Foot_Strike": _row(strikes["L"]),
        "Left_Foot_Off": _row(offs["L"]),
        "Right_Foot_Strike": _row(strikes["R"]),
        "Right_Foot_Off": _row(offs["R"]),
    }
    original = {
        "Angles": angles,
        "Moments": moments,
        "Events": {
            "EventFrame": events_frame,
            "EventTime": {k: (v - 1) / RATE_HZ for k, v in events_frame.items()},
        },
        "EMGData": emg,
    }
    strides: dict[str, int] = {}
    if (subject, *key) == NO_NORMALIZED:
        return original, None, {"L": 0, "R": 0}
    normalized: dict[str, Any] = {"Events": {}, "Angles": {}, "Moments": {}, "EMGData": {}}
    n_frames = sim.n_frames
    for side, name, cols in (("L", "Left", slice(9, 13)), ("R", "Right", slice(0, 9))):
        hs = strikes[side][(strikes[side] >= 1) & (strikes[side] <= n_frames)]
        pairs = list(itertools.pairwise(hs.tolist()))[1:]  # stable walking only
        if (subject, *key) == GAP and side == "L":
            pairs = pairs[:1] + pairs[2:]
        start = np.array([a for a, _ in pairs])
        end = np.array([b for _, b in pairs])
        normalized["Events"][f"{side}StartFrame"] = _row(start)
        normalized["Events"][f"{side}EndFrame"] = _row(end)
        normalized["EMGData"][name] = cell(
            [emg[(a - 1) * 20 : (b - 1) * 20 + 1, cols] for a, b in pairs]
        )
        strides[side] = len(pairs)
        for group, source in (("Angles", angles), ("Moments", moments)):
            for label, data in source.items():
                if not label.startswith(side):
                    continue
                rs = np.stack([_resample(data, a - 1, b - 1) for a, b in pairs], axis=2)
                normalized[group][label] = {
                    "rsGaitData": np.round(rs, 4),
                    "MeanValues": np.round(rs.mean(axis=2), 4),
                    "StdValues": np.round(rs.std(axis=2), 4),
                }
    return original, normalized, strides


def _nest(tree: dict, keys: tuple, value: Any) -> None:
    for k in keys[:-1]:
        tree = tree.setdefault(k, {})
    tree[keys[-1]] = value


@miniature("k2muse2025")
def write(folder: Path) -> dict[str, Any]:
    """Write ``ProcessedData/<participant>.mat`` under ``folder``; return what tests check."""
    target = folder / "ProcessedData"
    target.mkdir(parents=True, exist_ok=True)
    facts: dict[str, Any] = {"trials": {}, "strides": {"L": 0, "R": 0}}
    for subject, (height, mass, seed, trials) in SUBJECTS.items():
        original: dict = {}
        normalized: dict = {}
        for key in trials:
            orig, norm, strides = _trial(subject, height, mass, seed, key)
            condition, mode, speed, number = key
            path = (condition, mode, speed, f"T{number}")
            _nest(original, path, orig)
            if norm is not None:
                _nest(normalized, path, norm)
            facts["trials"][f"{subject}/{'/'.join(path)}"] = {
                "strides": strides,
                "speed_mps": SPEEDS[speed],
                "incline_deg": MODES[mode][1],
                "activity": MODES[mode][0],
                "condition": condition,
                "normalized": norm is not None,
            }
            for side in ("L", "R"):
                facts["strides"][side] += strides[side]
        write_mat(
            target / f"{subject}.mat",
            {"OriginalData": original, "NormalizedData": normalized},
            header=MATIO_HEADER["7.3"],
            version="7.3",
            writer="mat-io",
        )
    facts["subjects"] = sorted(SUBJECTS)
    return facts

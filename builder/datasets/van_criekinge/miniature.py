"""Miniature Van Criekinge 2023 (Sci Data 10:852): the two processed MAT files.

``MAT_normalizedData_AbleBodiedAdults_v06-03-23.mat`` and
``MAT_normalizedData_PostStrokeAdults_v27-02-23.mat``: MATLAB v5 (zlib-compressed, as
MATLAB's default ``save``), one struct array ``Sub`` (1 × subjects) with, per subject,

- ``<X>sideSegm_<X>sideData`` (AB: L/R; stroke: P/N = paretic / non-paretic): Plug-in Gait
  ``HipAngles``, ``KneeAngles``, ``AnkleAngles``, ``HipMoment``, ``KneeMoment``,
  ``AnkleMoment``, each ``{x, y, z}`` of 1001 points × strides (x flexion/dorsiflexion,
  y adduction, z rotation; moments EXTERNAL in N·mm/kg); EMG envelopes ``<M>norm.n``
  (1001 × strides, normalised to the maximum over strides) for GAS, RF, VL, BF, ST, TA, ERS;
- ``events``: ``<X>_ICstart``, ``<X>_ICstop`` (100 Hz frames), ``<X>_TOnorm`` (‰ of the
  cycle), ``<X>_Trial``, ``<X>_GoodForcePlateLanding``;
- ``sub_char`` (Weight kg, Age, Height mm, Male, LegLength mm; stroke: ``ParSide`` 'L'/'R' —
  the field name is this project's assumption [I]); ``meas_char`` (AnalogFrameRate 1000,
  VideoFrameRate 100).

Quirks the adapter must handle, as the real files have them: strides without a good force
plate landing carry untrustworthy moments (here: inertia-only-like curves); AB02 (71 y) has no
EMG (empty ``n`` arrays); PS02's paretic TA channel is all NaN (electrode lost); PS02's
non-paretic side has a stride whose ICstop equals its ICstart (unusable, 0 s). Stroke gait is
simulated slower, with a stiffer paretic knee.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from builder.conventions import Side
from builder.datasets.miniatures import miniature
from builder.synthetic.files import matlab_header, struct_array, write_mat
from builder.synthetic.gait_model import SimulatedTrial, SubjectParams, simulate_trial
from builder.synthetic.simulation import analog_times, recorded_heel_strikes, resample

FILES = {
    "AbleBodiedAdults": "MAT_normalizedData_AbleBodiedAdults_v06-03-23.mat",
    "PostStrokeAdults": "MAT_normalizedData_PostStrokeAdults_v27-02-23.mat",
}
POINTS = 1001
FRAME_RATE = 100.0
EMG_NAMES = ("GAS", "RF", "VL", "BF", "ST", "TA", "ERS")
# Source muscle -> simulated muscle (ERS: erector spinae, bursts at heel strikes like GMED).
_EMG_SOURCE = {
    "GAS": "gastrocnemius_medialis",
    "RF": "rectus_femoris",
    "VL": "vastus_lateralis",
    "BF": "biceps_femoris",
    "ST": "semitendinosus",
    "TA": "tibialis_anterior",
    "ERS": "gluteus_medius",
}
_JOINTS = {"Hip": 0, "Knee": 1, "Ankle": 2}
_AXES = {"x": 2, "y": 0, "z": 1}  # PiG component -> canonical plane index (flex, add, rot)

_Plates = dict[str, tuple[int, ...]]  # side token -> whether each stride's plate is good
# (id, age, weight kg, height m, speed m/s, strides per side, good plates per side, EMG?)
_ABLE: tuple[tuple[str, int, float, float, float, int, _Plates, bool], ...] = (
    ("AB01", 34, 72.0, 1.78, 1.3, 3, {"L": (0, 1, 0), "R": (1, 0, 0)}, True),
    ("AB02", 71, 64.0, 1.62, 1.1, 2, {"L": (1, 0), "R": (0, 1)}, False),
)
# (id, age, weight, height, speed, strides, good plates per P/N side, paretic side)
_STROKE: tuple[tuple[str, int, float, float, float, int, _Plates, Side], ...] = (
    ("PS01", 58, 80.0, 1.74, 0.7, 2, {"P": (1, 0), "N": (0, 1)}, "L"),
    ("PS02", 67, 68.0, 1.66, 0.6, 2, {"P": (0, 1), "N": (1, 0)}, "R"),
)
HEADER = matlab_header("Mon Mar  6 10:00:00 2023")


@miniature("van_criekinge2023")
def write(folder: Path) -> dict[str, Any]:
    """Write both files into ``folder``; return the strides each side should yield."""
    facts: dict[str, Any] = {"strides": {}, "kinetic_strides": {}, "files": dict(FILES)}
    files: dict[str, list[dict[str, Any]]] = {"AbleBodiedAdults": [], "PostStrokeAdults": []}
    for group, rows, first_seed, sides in (
        ("AbleBodiedAdults", _ABLE, 100, ("L", "R")),
        ("PostStrokeAdults", _STROKE, 200, ("P", "N")),
    ):
        for i, (sid, age, weight, height, speed, n, plates, last) in enumerate(rows):
            # the last column: able-bodied, whether EMG was recorded; stroke, the paretic side
            extra: dict[str, Any] = (
                {"has_emg": last} if group == "AbleBodiedAdults" else {"paretic": last}
            )
            subject, info = _subject(
                sid,
                age,
                weight,
                height,
                speed,
                n,
                plates,
                seed=first_seed + i,
                sides=sides,
                **extra,
            )
            files[group].append(subject)
            facts["strides"][sid] = info["strides"]
            facts["kinetic_strides"][sid] = info["kinetic"]
    # PS02: TA lost on the paretic side; an unusable 0 s stride on the non-paretic side.
    ps02 = files["PostStrokeAdults"][1]
    ta = ps02["PsideSegm_PsideData"]["TAnorm"]
    ta["n"] = np.full_like(ta["n"], np.nan)
    _append_zero_length_stride(ps02, "NsideSegm_NsideData", "N")
    for group, subjects in files.items():
        _write_mat(folder / FILES[group], {"Sub": struct_array(subjects)})
    facts["paretic"] = {sid: p for sid, *_, p in _STROKE}
    facts["emg_absent"] = {"AB02": "all", "PS02": "paretic TA"}
    facts["ages"] = {row[0]: row[1] for row in (*_ABLE, *_STROKE)}
    return facts


def _subject(
    sid: str,
    age: int,
    weight: float,
    height: float,
    speed: float,
    n_strides: int,
    plates: _Plates,
    *,
    seed: int,
    sides: tuple[str, str],
    has_emg: bool = True,
    paretic: Side | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    params = SubjectParams.generate(sid, height, weight, seed)
    trial = simulate_trial(
        subject=params,
        activity="walk",
        speed_mps=speed,
        incline_deg=0.0,
        n_strides=n_strides + 1,
        seed=seed,
        point_rate_hz=FRAME_RATE,
        analog_rate_hz=1000.0,
    )
    # Stroke: P/N sides are the simulated legs on the paretic / other side.
    leg_of: dict[str, Side] = {"L": "L", "R": "R"}
    if paretic is not None:
        leg_of = {"P": paretic, "N": "R" if paretic == "L" else "L"}
    subject: dict[str, Any] = {}
    events: dict[str, Any] = {}
    info: dict[str, Any] = {"strides": {}, "kinetic": {}}
    for token in sides:
        leg = leg_of[token]
        data, ev = _side(
            trial, leg, n_strides, np.array(plates[token]), has_emg, stiff_knee=token == "P"
        )
        subject[f"{token}sideSegm_{token}sideData"] = data
        events |= {f"{token}_{k}": v for k, v in ev.items()}
        info["strides"][leg] = n_strides
        info["kinetic"][leg] = int(np.sum(plates[token]))
    subject["events"] = events
    char: dict[str, Any] = {
        "Weight": weight,
        "Age": float(age),
        "Height": height * 1000.0,
        "Male": 1.0,
        "LegLength": round(height * 530.0),
    }
    if paretic is not None:
        char["ParSide"] = paretic
    subject["sub_char"] = char
    subject["meas_char"] = {"AnalogFrameRate": 1000.0, "VideoFrameRate": FRAME_RATE}
    return subject, info


def _side(
    trial: SimulatedTrial, leg: Side, n: int, good: np.ndarray, has_emg: bool, stiff_knee: bool
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    t_point = trial.times()
    hs = recorded_heel_strikes(trial, leg)[: n + 1]
    starts = np.round(hs[:-1] * FRAME_RATE)
    stops = np.round(hs[1:] * FRAME_RATE)
    grid = np.stack(
        [np.linspace(a, b, POINTS) / FRAME_RATE for a, b in zip(starts, stops, strict=True)]
    )
    kin = resample(t_point, trial.kinematics[leg], grid)  # (n, P, 3, 3) canonical
    if stiff_knee:
        kin[:, :, 1, 2] *= 0.75
    mom = resample(t_point, trial.kinetics[leg], grid)
    # Without a good plate landing the moments miss the GRF: inertia-like, untrustworthy.
    mom = np.where(good.astype(bool)[:, None, None, None], mom, 0.2 * mom)
    data: dict[str, Any] = {}
    for name, j in _JOINTS.items():
        data[f"{name}Angles"] = {ax: kin[:, :, j, p].T.copy() for ax, p in _AXES.items()}
        # PiG moments: external (= -internal), N.mm/kg.
        data[f"{name}Moment"] = {ax: -1000.0 * mom[:, :, j, p].T for ax, p in _AXES.items()}
    t_analog = analog_times(trial)
    for name in EMG_NAMES:
        if not has_emg:
            data[f"{name}norm"] = {"n": np.zeros((0, 0))}
            continue
        m = trial.muscles.index(_EMG_SOURCE[name])
        env = np.stack([np.interp(g, t_analog, trial.activations[leg][:, m]) for g in grid])
        data[f"{name}norm"] = {"n": (env / env.max()).T.copy()}
    to = trial.toe_offs[leg]
    to_norm = np.array(
        [1000.0 * (to[(to > a) & (to < b)][0] - a) / (b - a) for a, b in itertools.pairwise(hs)]
    )
    events = {
        "ICstart": starts,
        "ICstop": stops,
        "TOnorm": np.round(to_norm, 4),
        "Trial": np.full(n, 3.0),
        "GoodForcePlateLanding": good.astype(float),
    }
    return data, events


def _write_mat(path: Path, variables: dict[str, Any]) -> None:
    """One processed file: MATLAB v5, compressed (MATLAB's default ``save``)."""
    write_mat(path, variables, header=HEADER, oned_as="row")


def _append_zero_length_stride(subject: dict[str, Any], container: str, token: str) -> None:
    """A stride whose ICstop equals its ICstart (the real files have such entries)."""
    data = subject[container]
    for value in data.values():
        for key, array in value.items():
            if array.size:
                value[key] = np.concatenate([array, array[:, -1:]], axis=1)
    ev = subject["events"]
    ev[f"{token}_ICstart"] = np.append(ev[f"{token}_ICstart"], ev[f"{token}_ICstop"][-1])
    ev[f"{token}_ICstop"] = np.append(ev[f"{token}_ICstop"], ev[f"{token}_ICstop"][-1])
    for name in ("TOnorm", "Trial", "GoodForcePlateLanding"):
        ev[f"{token}_{name}"] = np.append(ev[f"{token}_{name}"], ev[f"{token}_{name}"][-1])

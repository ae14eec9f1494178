"""Miniature of Embry et al. 2018 (``embry2018``): one ``InclineExperiment.mat`` in MATLAB v7.3.

The real file is one HDF5 file holding the whole dataset (10 subjects × 27 treadmill trials);
public readers open it with ``h5py.File``. The miniature keeps its layout exactly:

- a 512-byte MATLAB user block (``MATLAB 7.3 MAT-file …``, version 0x0200, ``IM``), then HDF5;
- structs are groups with ``MATLAB_class = struct`` and ``MATLAB_fields``; numeric arrays are
  ``double`` datasets stored column-major, i.e. transposed: a MATLAB 150 × N array (points ×
  strides) reads as (N, 150) in h5py; strings and cells are datasets of HDF5 object references
  into ``#refs#`` (char as uint16 with ``MATLAB_int_decode = 2``); empty arrays hold their
  dims with ``MATLAB_empty = 1``;
- ``Gaitcycle/<AB>/subjectdetails`` (cell {name, value} per row: gender, age, height mm,
  weight kg, left and right leg length mm — public readers take ``{5,2}`` as a leg length);
- ``Gaitcycle/<AB>/<trial>/{description {'speed' v; 'incline' deg}, cycles/{left,right}/
  {frame,time}, stepsout/{left,right}, kinematics/jointangles/{left,right}/{hip,knee,ankle,
  pelvis,foot}/{x,y,z}, kinetics/{jointmoment,jointforce}/{left,right}/{hip,knee,ankle}/
  {x,y,z}, emgdata/emg/{left,right}/{RF,TA,BF,GC}}``, 150 points per stride;
- ``Continuous/<AB>/<trial>/{time, description}`` (the continuous 100 Hz section, reduced).

Conventions written (those of Vicon Plug-in Gait, which the Gregg lab processed with):
``x`` sagittal (hip/knee flexion, ankle dorsiflexion positive), ``y`` frontal (adduction
positive), ``z`` transverse (internal rotation positive), degrees; moments in N·mm/kg with
Plug-in Gait's signs (extensor / plantarflexor / abductor positive: every component is minus
the canonical internal moment); joint forces in N/kg; EMG as normalised linear envelopes (the
model's activations × per-electrode gains), sampled at the same 150 points; ``cycles/*/time``
holds the 150 time stamps of every stride (both heel strikes included), ``frame`` the Vicon
frame numbers (100 Hz, 1-based).

Quirks of the real file reproduced (public readers work around each one):

- ``AB01/s1i10`` left: the ``jointmoment`` arrays carry one extra all-zero stride at the end;
- ``AB02/s0x8d10`` left: the last stride of ``jointmoment`` is zero-filled (no kinetics);
- ``AB01/s0x8i0`` right: ``stepsout`` lists stride 2 as an outlier (1-based); empty elsewhere;
- ``AB02/s1x2i5`` right: the EMG has one stride fewer than ``cycles/right/time``;
- ``jointforce`` sits next to ``jointmoment`` (the foundation read forces as moments).

Shared with the Macaluso miniature (the same lab's pipeline): the channel names, the x/y/z
axes (:func:`gregg_components`) and the trial-name tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import h5py
import numpy as np

from builder.conventions import JOINTS, PLANES, Side
from builder.datasets.miniatures import miniature
from builder.synthetic import gait_model as gm
from builder.synthetic.files import MatV73, mat_v73, matlab_header
from builder.synthetic.simulation import StrideSet, activity_of, simulate_strides

FILE_NAME: Final = "InclineExperiment.mat"
POINTS: Final = 150
SIDE_WORDS: Final[dict[Side, str]] = {"L": "left", "R": "right"}
AXES: Final = {"adduction": "y", "rotation": "z", "flexion": "x"}  # Gregg-lab / PiG axes
EMG_CHANNELS: Final = {  # source name -> model muscle (GC: the medial head is assumed)
    "RF": "rectus_femoris",
    "TA": "tibialis_anterior",
    "BF": "biceps_femoris",
    "GC": "gastrocnemius_medialis",
}
HEADER: Final = matlab_header("Fri Jun 15 10:00:00 2018", version="7.3", platform="GLNXA64")

# subject id -> (height m, mass kg, seed); trial name -> (speed, incline)
SUBJECTS: Final = {"AB01": (1.78, 72.0, 11), "AB02": (1.65, 58.0, 12)}
TRIALS: Final = {
    "AB01": ("s0x8i0", "s1i10", "s1x2d7x5"),
    "AB02": ("s1i0", "s0x8d10", "s1x2i5"),
}
N_STRIDES: Final = 4  # whole strides per leg and trial
EXTRA_ZERO_KINETICS: Final = ("AB01", "s1i10", "L")  # one all-zero stride appended
ZERO_KINETICS_STRIDE: Final = ("AB02", "s0x8d10", "L")  # last stride's moments zero-filled
OUTLIER: Final = ("AB01", "s0x8i0", "R", 2)  # stepsout lists this stride (1-based)
SHORT_EMG: Final = ("AB02", "s1x2i5", "R")  # EMG lacks the last stride


def trial_speed_incline(trial: str) -> tuple[float, float]:
    """``s1x2d7x5`` -> (1.2, -7.5): speed token, i/d, incline token, 'x' = decimal point."""
    speed, sign, incline = trial[1:].partition("i") if "i" in trial else trial[1:].partition("d")
    value = float(incline.replace("x", "."))
    return float(speed.replace("x", ".")), value if sign == "i" else -value


def gregg_components(curves: np.ndarray, joint: str, scale: float = 1.0) -> dict[str, np.ndarray]:
    """{x, y, z}: (N, P) components of ``joint`` from canonical (N, P, 3, 3) curves."""
    j = JOINTS.index(joint)
    return {axis: scale * curves[..., j, PLANES.index(plane)] for plane, axis in AXES.items()}


# --- the Embry file -------------------------------------------------------------------------


@miniature("embry2018")
def write(folder: Path) -> dict[str, Any]:
    """Write ``InclineExperiment.mat`` into ``folder``; return the facts tests check."""
    path = folder / FILE_NAME
    facts: dict[str, Any] = {"file": FILE_NAME, "trials": {}}
    with mat_v73(path, header=HEADER) as mat:
        gait = mat.struct(mat.h5, "Gaitcycle", list(SUBJECTS))
        continuous = mat.struct(mat.h5, "Continuous", list(SUBJECTS))
        for s, (subject_id, (height, mass, _)) in enumerate(SUBJECTS.items()):
            trials = TRIALS[subject_id]
            subject_group = mat.struct(gait, subject_id, ["subjectdetails", *trials])
            mat.cell(
                subject_group,
                "subjectdetails",
                [
                    ["gender", "M" if s == 0 else "F"],
                    ["age", 24.0 + 3 * s],
                    ["height", 1000.0 * height],
                    ["weight", mass],
                    ["left leg length", round(490.0 * height, 1)],
                    ["right leg length", round(492.0 * height, 1)],
                ],
            )
            cont_subject = mat.struct(continuous, subject_id, list(trials))
            for trial in trials:
                speed, incline = trial_speed_incline(trial)
                strides = truth(subject_id, trial)
                facts["trials"][f"{subject_id}/{trial}"] = _write_trial(
                    mat, subject_group, subject_id, trial, speed, incline, strides
                )
                _write_continuous(mat, cont_subject, trial, speed, incline, strides)
    facts["strides"] = sum(sum(t["strides"].values()) for t in facts["trials"].values())
    return facts


def truth(subject_id: str, trial: str) -> dict[Side, StrideSet]:
    """The simulated strides written for ``trial`` of ``subject_id`` (canonical conventions)."""
    height, mass, seed = SUBJECTS[subject_id]
    speed, incline = trial_speed_incline(trial)
    return simulate_strides(
        subject=gm.SubjectParams.generate(subject_id, height, mass, seed),
        speed_mps=speed,
        incline_deg=incline,
        n_strides=N_STRIDES,
        seed=100 * seed + TRIALS[subject_id].index(trial),
        points=POINTS,
        emg_points=POINTS,
    )


def _write_trial(
    mat: MatV73,
    parent: h5py.Group,
    subject_id: str,
    trial: str,
    speed: float,
    incline: float,
    strides: dict[Side, StrideSet],
) -> dict[str, Any]:
    fields = ["description", "cycles", "stepsout", "kinematics", "kinetics", "emgdata"]
    group = mat.struct(parent, trial, fields)
    mat.cell(group, "description", [["speed", speed], ["incline", incline]])
    sides = list(SIDE_WORDS.values())
    cycles = mat.struct(group, "cycles", sides)
    stepsout = mat.struct(group, "stepsout", sides)
    kinematics = mat.struct(mat.struct(group, "kinematics", ["jointangles"]), "jointangles", sides)
    kinetics = mat.struct(group, "kinetics", ["jointmoment", "jointforce"])
    moments = mat.struct(kinetics, "jointmoment", sides)
    forces = mat.struct(kinetics, "jointforce", sides)
    emg = mat.struct(mat.struct(group, "emgdata", ["emg"]), "emg", sides)

    facts: dict[str, Any] = {
        "speed_mps": speed,
        "incline_deg": incline,
        "activity": activity_of(incline),
        "strides": {},
        "kinetics_strides": {},
        "emg_strides": {},
        "outliers": {},
    }
    for side, word in SIDE_WORDS.items():
        data = strides[side]
        n = data.time.shape[0]
        key = (subject_id, trial, side)
        side_cycles = mat.struct(cycles, word, ["frame", "time"])
        mat.double(side_cycles, "frame", 1.0 + 100.0 * data.time.T)
        mat.double(side_cycles, "time", data.time.T)

        outliers = [OUTLIER[3]] if key == OUTLIER[:3] else []
        mat.double(stepsout, word, np.array([outliers], dtype=float).reshape(1, len(outliers)))

        joints = ["hip", "knee", "ankle", "pelvis", "foot"]
        angle_group = mat.struct(kinematics, word, joints)
        for joint in joints:
            xyz = mat.struct(angle_group, joint, ["x", "y", "z"])
            for axis, values in _angle_components(data, joint).items():
                mat.double(xyz, axis, values.T)

        moment_group = mat.struct(moments, word, ["hip", "knee", "ankle"])
        force_group = mat.struct(forces, word, ["hip", "knee", "ankle"])
        kinetic_strides = n
        for joint in ("hip", "knee", "ankle"):
            # Plug-in Gait: N·mm/kg, every component minus the canonical internal moment.
            components = gregg_components(data.kinetics, joint, scale=-1000.0)
            xyz = mat.struct(moment_group, joint, ["x", "y", "z"])
            for axis, values in components.items():
                if key == EXTRA_ZERO_KINETICS:
                    values = np.vstack([values, np.zeros((1, POINTS))])
                if key == ZERO_KINETICS_STRIDE:
                    values = values.copy()
                    values[-1] = 0.0
                mat.double(xyz, axis, values.T)
            fxyz = mat.struct(force_group, joint, ["x", "y", "z"])
            for axis, values in _joint_forces(data, joint).items():
                mat.double(fxyz, axis, values.T)
        if key == ZERO_KINETICS_STRIDE:
            kinetic_strides = n - 1

        emg_group = mat.struct(emg, word, list(EMG_CHANNELS))
        emg_strides = n - 1 if key == SHORT_EMG else n
        for name, muscle in EMG_CHANNELS.items():
            mat.double(emg_group, name, data.envelope(muscle)[:emg_strides].T)

        kept = n - len(outliers)
        facts["strides"][side] = kept
        facts["kinetics_strides"][side] = kinetic_strides - len(outliers)
        # EMG strides that cannot be paired with the cycles are left out, never guessed.
        facts["emg_strides"][side] = 0 if key == SHORT_EMG else kept
        facts["outliers"][side] = outliers
    return facts


def _angle_components(data: StrideSet, joint: str) -> dict[str, np.ndarray]:
    """x/y/z of a joint; pelvis and foot are segment angles derived plausibly from the hip
    and ankle (the adapter does not read them)."""
    if joint == "pelvis":
        hip = gregg_components(data.kinematics, "hip")
        return {"x": 10.0 + 0.05 * hip["x"], "y": -0.3 * hip["y"], "z": 0.2 * hip["z"]}
    if joint == "foot":  # right-handed foot frame: the public readers negate x
        ankle = gregg_components(data.kinematics, "ankle")
        return {"x": -(90.0 - ankle["x"]), "y": ankle["y"], "z": ankle["z"] - 8.0}
    return gregg_components(data.kinematics, joint)


def _joint_forces(data: StrideSet, joint: str) -> dict[str, np.ndarray]:
    """Joint reaction forces in N/kg: a body-weight-sized compressive z in stance (negative),
    small shear in x and y — so reading forces as moments is obvious."""
    sagittal = data.kinetics[..., JOINTS.index(joint), PLANES.index("flexion")]
    load = np.clip(np.abs(sagittal), 0.0, None) / (np.abs(sagittal).max() + 1e-9)
    return {"x": 1.5 * load, "y": -0.6 * load, "z": -9.81 * (0.2 + 0.8 * load)}


def _write_continuous(
    mat: MatV73,
    parent: h5py.Group,
    trial: str,
    speed: float,
    incline: float,
    strides: dict[Side, StrideSet],
) -> None:
    """The continuous section, reduced to its 100 Hz time base and description."""
    group = mat.struct(parent, trial, ["time", "description"])
    end = max(float(s.time[-1, -1]) for s in strides.values())
    mat.double(group, "time", np.arange(0.0, end + 0.01, 0.01)[None, :])
    mat.cell(group, "description", [["speed", speed], ["incline", incline]])

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

Shared with the Macaluso miniature: :func:`simulate_strides` and the MAT header helpers.
"""

from __future__ import annotations

import string
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count, pairwise, product
from pathlib import Path
from typing import Any, Final

import h5py
import numpy as np

from builder.conventions import JOINTS, PLANES, SIDES, Side
from builder.demo import gait_model as gm
from builder.demo.datasets import miniature

FILE_NAME: Final = "InclineExperiment.mat"
POINTS: Final = 150
SIDE_WORDS: Final = {"L": "left", "R": "right"}
AXES: Final = {"adduction": "y", "rotation": "z", "flexion": "x"}  # Gregg-lab / PiG axes
EMG_CHANNELS: Final = {  # source name -> model muscle (GC: the medial head is assumed)
    "RF": "rectus_femoris",
    "TA": "tibialis_anterior",
    "BF": "biceps_femoris",
    "GC": "gastrocnemius_medialis",
}
_HEADER_DATE: Final = "Fri Jun 15 10:00:00 2018"

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


def activity_of(incline_deg: float) -> str:
    if incline_deg > 0:
        return "ramp_ascent"
    return "ramp_descent" if incline_deg < 0 else "walk"


# --- simulation shared with the Macaluso miniature ----------------------------------------


@dataclass(frozen=True)
class StrideSet:
    """One leg's strides, time-normalised: ``time`` (N, P) stride time stamps (both heel
    strikes included), ``kinematics`` / ``kinetics`` (N, P, 3, 3) canonical (degrees, internal
    N·m/kg), ``activations`` (N, P_emg, len(gm.DEMO_MUSCLES)) in 0..1 times electrode gains."""

    time: np.ndarray
    kinematics: np.ndarray
    kinetics: np.ndarray
    activations: np.ndarray

    def envelope(self, muscle: str) -> np.ndarray:
        return self.activations[..., gm.DEMO_MUSCLES.index(muscle)]


def simulate_strides(
    *,
    subject: gm.SubjectParams,
    speed_mps: float,
    incline_deg: float,
    n_strides: int,
    seed: int,
    points: int,
    emg_points: int,
) -> dict[Side, StrideSet]:
    """Simulate a treadmill trial and cut each leg into ``n_strides`` time-normalised strides."""
    sim = gm.simulate_trial(
        subject=subject,
        activity=activity_of(incline_deg),
        speed_mps=speed_mps,
        incline_deg=incline_deg,
        n_strides=n_strides,
        seed=seed,
        point_rate_hz=100.0,
        analog_rate_hz=1000.0,
    )
    frames = sim.times()
    analog = sim.start_s + np.arange(sim.n_analog) / sim.analog_rate_hz
    out = {}
    for side in SIDES:
        hs = sim.heel_strikes[side]
        hs = hs[(hs >= frames[0]) & (hs <= frames[-1])][: n_strides + 1]
        time = np.stack([np.linspace(a, b, points) for a, b in pairwise(hs)])
        emg_time = np.stack([np.linspace(a, b, emg_points) for a, b in pairwise(hs)])
        gains = subject.gains(side)
        out[side] = StrideSet(
            time=time,
            kinematics=_resample(frames, sim.kinematics[side], time),
            kinetics=_resample(frames, sim.kinetics[side], time),
            activations=_resample(analog, sim.activations[side], emg_time) * gains,
        )
    return out


def _resample(times: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``values`` (T, ...) sampled at ``times``, linearly interpolated at ``at`` (N, P)."""
    flat = values.reshape(values.shape[0], -1)
    columns = [np.interp(at.ravel(), times, flat[:, c]) for c in range(flat.shape[1])]
    return np.stack(columns, axis=-1).reshape(*at.shape, *values.shape[1:])


def gregg_components(curves: np.ndarray, joint: str, scale: float = 1.0) -> dict[str, np.ndarray]:
    """{x, y, z}: (N, P) components of ``joint`` from canonical (N, P, 3, 3) curves."""
    j = JOINTS.index(joint)
    return {axis: scale * curves[..., j, PLANES.index(plane)] for plane, axis in AXES.items()}


def fixed_header(text: str, version: int) -> bytes:
    """The 128-byte MAT header: description padded to 116 bytes, zero subsystem offset,
    version (0x0100 for v5, 0x0200 for v7.3) and the little-endian 'IM' marker."""
    description = text.encode("ascii")[:116].ljust(116, b" ")
    return description + struct.pack("<Q", 0) + struct.pack("<H", version) + b"IM"


# --- MATLAB v7.3 writer ---------------------------------------------------------------------


class MatV73:
    """Writes MATLAB v7.3 structures with h5py the way MATLAB lays them out."""

    def __init__(self, h5: h5py.File) -> None:
        self.h5 = h5
        self._names = self._refnames()

    @staticmethod
    def _refnames() -> Iterator[str]:
        letters = string.ascii_lowercase + string.ascii_uppercase
        yield from letters
        for size in count(2):
            for combo in product(letters, repeat=size):
                yield "".join(combo)

    @staticmethod
    def _class(obj: h5py.HLObject, name: str) -> None:
        obj.attrs.create("MATLAB_class", np.bytes_(name))

    def struct(self, parent: h5py.Group, name: str, fields: list[str]) -> h5py.Group:
        """A scalar struct; ``fields`` in MATLAB's order (written to MATLAB_fields)."""
        group = parent.create_group(name)
        self._class(group, "struct")
        names = np.empty(len(fields), dtype=h5py.vlen_dtype(np.dtype("S1")))
        for i, field in enumerate(fields):
            names[i] = np.array([c.encode("ascii") for c in field], dtype="S1")
        group.attrs.create("MATLAB_fields", names)
        return group

    def double(self, parent: h5py.Group, name: str, matlab: np.ndarray) -> h5py.Dataset:
        """A double array given in MATLAB's (rows, columns) orientation."""
        matlab = np.atleast_2d(np.asarray(matlab, dtype=np.float64))
        if matlab.size == 0:
            dset = parent.create_dataset(name, data=np.array(matlab.shape, dtype=np.uint64))
            dset.attrs.create("MATLAB_empty", np.int32(1))
        else:
            dset = parent.create_dataset(name, data=matlab.T)
        self._class(dset, "double")
        return dset

    def char(self, parent: h5py.Group, name: str, text: str) -> h5py.Dataset:
        """A 1 × n char row (uint16 code units)."""
        codes = np.array([[ord(c) for c in text]], dtype=np.uint16)
        dset = parent.create_dataset(name, data=codes.T)
        self._class(dset, "char")
        dset.attrs.create("MATLAB_int_decode", np.int32(2))
        return dset

    def cell(self, parent: h5py.Group, name: str, rows: list[list[Any]]) -> h5py.Dataset:
        """A cell array from its MATLAB rows; items go to ``#refs#`` as object references."""
        refs_group = self.h5.require_group("#refs#")
        refs = np.empty((len(rows), len(rows[0])), dtype=h5py.ref_dtype)
        for r, row in enumerate(rows):
            for c, item in enumerate(row):
                refname = next(self._names)
                if isinstance(item, str):
                    target = self.char(refs_group, refname, item)
                else:
                    target = self.double(refs_group, refname, np.array([[item]]))
                target.attrs.create("H5PATH", np.bytes_(f"{parent.name}/{name}"))
                refs[r, c] = target.ref
        dset = parent.create_dataset(name, data=refs.T, dtype=h5py.ref_dtype)
        self._class(dset, "cell")
        return dset


def write_userblock(path: Path, date: str) -> None:
    text = f"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: {date} HDF5 schema 1.00 ."
    with open(path, "r+b") as f:
        f.write(fixed_header(text, 0x0200))


# --- the Embry file -------------------------------------------------------------------------


@miniature("embry2018")
def write(folder: Path) -> dict[str, Any]:
    """Write ``InclineExperiment.mat`` into ``folder``; return the facts tests check."""
    path = folder / FILE_NAME
    facts: dict[str, Any] = {"file": FILE_NAME, "trials": {}}
    with h5py.File(path, "w", userblock_size=512, libver="earliest") as h5:
        mat = MatV73(h5)
        gait = mat.struct(h5, "Gaitcycle", list(SUBJECTS))
        continuous = mat.struct(h5, "Continuous", list(SUBJECTS))
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
    write_userblock(path, _HEADER_DATE)
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

"""Miniature ENABL3S (Hu, Rouse & Hargrove 2018): processed circuit CSVs in the documented layout.

``ABxxx/ABxxx/Processed/ABxxx_Circuit_NNN_post.csv``: 61 columns — the 52 signal channels
(30 IMU, 14 EMG, 4 goniometers, 4 goniometer velocities) in the order of the dataset's export
script, ``Mode``, and the 8 event columns (1-based sample indices in the first rows, blanks
below; 4-digit trigger codes: mode before, 3/1 contact/toe off, mode after, 1/2), at 1 kHz.

A circuit is stitched from gait-model walks of different activities, joined at a left heel
contact so that the left leg's phase is continuous; ``Mode`` changes on that contact's sample,
so the right leg's stride across it is a transition. Stair descent is approximated by a −15°
ramp (the gait model has no stairs). EMG is the simulated raw EMG band-passed 20–350 Hz (the
processed CSV's filtering; no mains hum, as after the source's notches). The goniometers read
knee flexion and ankle dorsiflexion NEGATIVE with a per-subject offset [I: the dataset's own
plotting code negates both]. The Raw CSVs are not written (the adapter reads the processed ones).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import signal

from builder.conventions import JOINTS, PLANES, SIDES
from builder.datasets.miniatures import miniature
from builder.synthetic import gait_model as gm

RATE_HZ = 1000.0
IMU_AXES = ("Ax", "Ay", "Az", "Gy", "Gz", "Gx")
SEGMENTS = ("Right_Shank", "Right_Thigh", "Left_Shank", "Left_Thigh", "Waist")
EMG_ORDER = (
    ("TA", "tibialis_anterior"),
    ("MG", "gastrocnemius_medialis"),
    ("SOL", "soleus"),
    ("BF", "biceps_femoris"),
    ("ST", "semitendinosus"),
    ("VL", "vastus_lateralis"),
    ("RF", "rectus_femoris"),
)
EVENT_COLUMNS = (
    "Right_Heel_Contact",
    "Right_Heel_Contact_Trigger",
    "Right_Toe_Off",
    "Right_Toe_Off_Trigger",
    "Left_Heel_Contact",
    "Left_Heel_Contact_Trigger",
    "Left_Toe_Off",
    "Left_Toe_Off_Trigger",
)
HEADER = (
    [f"{seg}_{axis}" for seg in SEGMENTS for axis in IMU_AXES]
    + [f"{side}_{m}" for side in ("Right", "Left") for m, _ in EMG_ORDER]
    + ["Right_Ankle", "Right_Knee", "Left_Ankle", "Left_Knee"]
    + ["Right_Ankle_Velocity", "Right_Knee_Velocity", "Left_Ankle_Velocity", "Left_Knee_Velocity"]
    + ["Mode", *EVENT_COLUMNS]
)
_KNEE, _ANKLE, _HIP = (JOINTS.index(j) for j in ("knee", "ankle", "hip"))
_FLEX = PLANES.index("flexion")
STAND_S = 0.3  # quiet standing (Mode 6) before the first heel contact
END_S = 0.2  # recording kept after the last left heel contact


@dataclass(frozen=True)
class Segment:
    mode: int
    activity: str  # gait-model activity
    speed_mps: float
    incline_deg: float
    cycles: int  # left-leg cycles kept


@dataclass(frozen=True)
class Circuit:
    subject: str
    number: int
    segments: tuple[Segment, ...]
    seed: int


SUBJECTS = {
    "AB156": gm.SubjectParams.generate("AB156", 1.78, 74.0, seed=156),
    "AB185": gm.SubjectParams.generate("AB185", 1.66, 61.0, seed=185),
}
GONIO_OFFSET_DEG = {"AB156": (3.0, -2.0), "AB185": (-4.0, 1.5)}  # (knee, ankle)
CIRCUITS = (
    Circuit(
        "AB156", 1, (Segment(1, "walk", 1.2, 0.0, 2), Segment(2, "ramp_ascent", 1.0, 10.0, 2)), 1
    ),
    Circuit(
        "AB185", 1, (Segment(1, "walk", 1.3, 0.0, 2), Segment(5, "ramp_descent", 1.0, -15.0, 1)), 2
    ),
)


def _stitch(circuit: Circuit) -> dict[str, Any]:
    """Concatenate the segments at left heel contacts; events as 0-based rows."""
    subject = SUBJECTS[circuit.subject]
    parts = []
    for k, seg in enumerate(circuit.segments):
        sim = gm.simulate_trial(
            subject=subject,
            activity=seg.activity,
            speed_mps=seg.speed_mps,
            incline_deg=seg.incline_deg,
            n_strides=seg.cycles + 2,
            seed=circuit.seed * 10 + k,
            point_rate_hz=RATE_HZ,
            analog_rate_hz=RATE_HZ,
        )
        t = sim.times()
        hs = sim.heel_strikes["L"]
        a = int(np.searchsorted(t, hs[1]))
        b = int(np.searchsorted(t, hs[1 + seg.cycles]))
        if k == len(circuit.segments) - 1:  # the circuit ends a little after the last contact
            b = min(b + int(END_S * RATE_HZ), t.size)
        parts.append((seg, sim, a, b))
    n_stand = int(STAND_S * RATE_HZ)
    total = n_stand + sum(b - a for _, _, a, b in parts)
    out: dict[str, Any] = {
        "angles": {s: np.zeros((total, 3, 3)) for s in "LR"},
        "emg": {s: np.zeros((total, 10)) for s in "LR"},
        "mode": np.full(total, 6, dtype=int),
        "events": {(s, e): [] for s in "LR" for e in ("hs", "to")},
    }
    offset = n_stand
    for seg, sim, a, b in parts:
        for s in SIDES:
            out["angles"][s][offset : offset + b - a] = sim.kinematics[s][a:b]
            out["emg"][s][offset : offset + b - a] = sim.emg[s][a:b]
            for kind, times in (("hs", sim.heel_strikes[s]), ("to", sim.toe_offs[s])):
                rows = np.searchsorted(sim.times(), times)  # first sample at or after
                rows = rows[(rows >= a) & (rows < b)] - a + offset
                out["events"][(s, kind)].extend(rows.tolist())
        out["mode"][offset : offset + b - a] = seg.mode
        offset += b - a
    # Quiet standing: the first walking posture held still, EMG at the noise floor.
    for s in SIDES:
        out["angles"][s][:n_stand] = out["angles"][s][n_stand]
        out["emg"][s][:n_stand] = 0.02 * out["emg"][s][n_stand : 2 * n_stand]
    return out


def _trigger(mode: np.ndarray, row: int, contact: bool) -> int:
    before, after = int(mode[max(row - 1, 0)]), int(mode[row])
    return before * 1000 + (3 if contact else 1) * 100 + after * 10 + (1 if contact else 2)


def _imu(angles: dict[str, np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Plausible IMU channels (g, deg/s) from segment angles: not read by the adapter."""
    columns = []
    for seg in SEGMENTS:
        if seg == "Waist":
            tilt = 0.5 * (angles["L"][:, _HIP, _FLEX] - angles["R"][:, _HIP, _FLEX]) * 0.1
        else:
            s = "R" if seg.startswith("Right") else "L"
            hip = angles[s][:, _HIP, _FLEX]
            tilt = hip - angles[s][:, _KNEE, _FLEX] if seg.endswith("Shank") else hip
        rate = np.gradient(tilt) * RATE_HZ
        rad = np.deg2rad(tilt)
        acc = (-np.cos(rad), np.sin(rad), 0.05 * np.sin(3 * rad))
        gyro = (0.1 * rate, 0.05 * rate, rate)
        for value in (*acc, *gyro):
            columns.append(value + 0.01 * rng.standard_normal(value.size))
    return columns


def _write(path: Path, circuit: Circuit, data: dict[str, Any]) -> dict[str, Any]:
    rng = np.random.default_rng(circuit.seed)
    mode = data["mode"]
    n = mode.size
    sos = signal.butter(4, (20.0, 350.0), btype="bandpass", fs=RATE_HZ, output="sos")
    columns = _imu(data["angles"], rng)
    for s in "RL":
        emg = signal.sosfiltfilt(sos, data["emg"][s], axis=0) * 1e3  # amplifier gain 1000
        names = list(gm.DEMO_MUSCLES)
        columns += [emg[:, names.index(muscle)] for _, muscle in EMG_ORDER]
    knee_offset, ankle_offset = GONIO_OFFSET_DEG[circuit.subject]
    gonio = []
    for s in "RL":
        gonio += [
            -data["angles"][s][:, _ANKLE, _FLEX] + ankle_offset,
            -data["angles"][s][:, _KNEE, _FLEX] + knee_offset,
        ]
    columns += gonio + [np.gradient(g) * RATE_HZ for g in gonio]
    lines = [",".join(HEADER)]
    body = np.column_stack([*columns, mode])
    text = [",".join(f"{v:.4g}" for v in row[:-1]) + f",{int(row[-1])}" for row in body]
    events = []
    for s in ("R", "L"):  # the order of EVENT_COLUMNS
        for kind in ("hs", "to"):
            rows = sorted(data["events"][(s, kind)])
            events.append([str(r + 1) for r in rows])  # 1-based sample indices [F]
            events.append([str(_trigger(mode, r, kind == "hs")) for r in rows])
    for i in range(n):
        cells = [column[i] if i < len(column) else "" for column in events]
        lines.append(text[i] + "," + ",".join(cells))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    contacts = {s: np.array(sorted(data["events"][(s, "hs")])) for s in "LR"}
    return {"contacts_rows": {s: contacts[s].tolist() for s in "LR"}, "n_rows": n}


def _expected_strides(
    mode: np.ndarray, contacts: dict[str, list[int]]
) -> dict[str, dict[str, int]]:
    """Strides per leg and activity token (the Mode code, or ``transition``)."""
    out: dict[str, dict[str, int]] = {}
    for s, rows in contacts.items():
        counts: dict[str, int] = {}
        for a, b in itertools.pairwise(rows):
            codes = np.unique(mode[a:b])
            token = str(int(codes[0])) if codes.size == 1 else "transition"
            counts[token] = counts.get(token, 0) + 1
        out[s] = counts
    return out


@miniature("hu2018_enabl3s")
def write(folder: Path) -> dict[str, Any]:
    """Write the miniature under ``folder``; return strides per circuit, leg and activity."""
    facts: dict[str, Any] = {"circuits": {}}
    for circuit in CIRCUITS:
        data = _stitch(circuit)
        name = f"{circuit.subject}_Circuit_{circuit.number:03d}"
        path = folder / circuit.subject / circuit.subject / "Processed" / f"{name}_post.csv"
        written = _write(path, circuit, data)
        facts["circuits"][name] = {
            "strides": _expected_strides(data["mode"], written["contacts_rows"]),
            "n_rows": written["n_rows"],
            "modes": sorted({seg.mode for seg in circuit.segments}),
        }
    return facts

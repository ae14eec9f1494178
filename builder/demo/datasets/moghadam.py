"""Miniature of Moghadam et al. 2023 (catalogue source ``moghadam2023``).

Layout, as the upstream repository ships it (``Surrogate_modelling_to_predict_gait_time_series``)::

    Study Summary.xlsx                        two header rows: ID/WS-key, Participant Info/...
    Gait_Time_Series/P<n>Data/EMG/<trial>.csv                 time + 16 EMG envelopes, 100 Hz
    Gait_Time_Series/P<n>Data/IMU/<trial>.csv                 Time + 7 IMUs' accelerations
    Gait_Time_Series/P<n>Data/Joints_Kinematics/<trial>.mot   OpenSim IK, degrees
    Gait_Time_Series/P<n>Data/Joints_Kinetics/<trial>.sto     OpenSim ID, N·m (not per kg)

Conventions written: OpenSim coordinates are the canonical ones (flexion, adduction, internal
rotation, knee flexion and ankle dorsiflexion positive, both legs), ID generalised forces are
internal moments in N·m (the canonical N·m/kg × the body mass in the study summary). EMG
envelopes are the simulated activations × electrode gains, at 100 Hz; gluteus maximus (not in
the gait model) is derived from gluteus medius and biceps femoris.

Quirks the adapter must handle: no gait events anywhere; the streams start at different times
(EMG 0.3 s before the kinematics, kinetics end 0.2 s early); EMG column names differ by subject
(``RTibialisAnterior``, ``R_Tibialis_Anterior``, or unnamed ``EMG1``…``EMG16`` in the
documented order); one stride of one trial was not on a force plate (inverse dynamics without
ground reaction: its stance moments are ~3 % of the real ones).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd

from builder.demo.datasets import miniature
from builder.demo.gait_model import DEMO_MUSCLES, SubjectParams, simulate_trial
from builder.sources.opensim import write_storage

SOURCE = "moghadam2023"
RATE_HZ = 100.0
# Muscle order of the EMG files per leg (the foundation's positional fallback order) [C].
MUSCLE_ORDER = (
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
# subject id, height m, mass kg, sex, age, EMG column naming, seed
SUBJECTS = (
    ("P1", 1.68, 62.5, "F", 27, "plain", 101),
    ("P2", 1.81, 81.0, "M", 31, "underscored", 102),
    ("P10", 1.74, 70.3, "F", 24, "unnamed", 110),
)
TRIALS = ("1", "2")
SPEEDS = {"1": 1.15, "2": 1.35}
# The stride that was not on a force plate: (subject, trial, side, L-leg cycle index).
OFF_PLATE = ("P2", "1", "L", 3)
_COORDS = ("hip_flexion", "hip_adduction", "hip_rotation", "knee_angle", "ankle_angle")
_PLANE_OF = {
    "hip_flexion": 2,
    "hip_adduction": 0,
    "hip_rotation": 1,
    "knee_angle": 2,
    "ankle_angle": 2,
}
_JOINT_OF = {
    "hip_flexion": 0,
    "hip_adduction": 0,
    "hip_rotation": 0,
    "knee_angle": 1,
    "ankle_angle": 2,
}
_IMUS = ("P", "RT", "LT", "RS", "LS", "RF", "LF")


@miniature(SOURCE)
def write(folder: Path) -> dict[str, Any]:
    """Write the miniature under ``folder``; return per trial the true heel strikes (s, file
    time base) inside the kinematics, the kinetics-valid stride count and the body masses."""
    root = folder / "Gait_Time_Series"
    trials: dict[str, dict[str, Any]] = {}
    for subject_id, height, mass, _, _, naming, seed in SUBJECTS:
        subject = SubjectParams.generate(subject_id, height, mass, seed)
        for trial in TRIALS:
            trials[f"{subject_id}/{trial}"] = _write_trial(
                root / f"{subject_id}Data", subject, trial, naming, seed * 10 + int(trial)
            )
    _write_summary(folder / "Study Summary.xlsx")
    return {
        "trials": trials,
        "body_mass_kg": {s[0]: s[2] for s in SUBJECTS},
        "emg_columns": {s[0]: s[5] for s in SUBJECTS},
        "off_plate": OFF_PLATE,
        "muscles": (
            "tibialis_anterior",
            "soleus",
            "gastrocnemius_medialis",
            "biceps_femoris",
            "semitendinosus",
            "rectus_femoris",
            "vastus_lateralis",
            "gluteus_maximus",
        ),
    }


def _write_trial(
    folder: Path, subject: SubjectParams, trial: str, naming: str, seed: int
) -> dict[str, Any]:
    sim = simulate_trial(
        subject=subject,
        activity="walk",
        speed_mps=SPEEDS[trial],
        incline_deg=0.0,
        n_strides=5,
        seed=seed,
        point_rate_hz=RATE_HZ,
        analog_rate_hz=10 * RATE_HZ,
    )
    # Crop to left-leg phase [1.05, 5.9]: every heel strike inside has its swing inside too.
    phase = sim.phase["L"]
    first = int(np.searchsorted(phase, 1.05))
    last = int(np.searchsorted(phase, 5.9))
    time = np.arange(sim.n_frames) / RATE_HZ
    kin_rows = slice(first, last)
    emg_rows = slice(first - 30, last)  # the EMG starts 0.3 s before the kinematics
    kinetic_rows = slice(first, last - 20)  # and the inverse dynamics end 0.2 s early

    mass = subject.mass_kg
    moments = {side: sim.kinetics[side] * mass for side in "LR"}
    subject_id = subject.subject_id
    if (subject_id, trial) == OFF_PLATE[:2]:
        side, cycle = OFF_PLATE[2], OFF_PLATE[3]
        leg_phase = sim.phase[side]
        stance = (leg_phase >= cycle) & (leg_phase < cycle + 0.65)
        moments[side][stance] *= 0.03

    for sub in ("EMG", "IMU", "Joints_Kinematics", "Joints_Kinetics"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    _write_emg(folder / "EMG" / f"{trial}.csv", sim, time, emg_rows, naming)
    _write_imu(folder / "IMU" / f"{trial}.csv", sim, time, emg_rows)
    _write_kinematics(folder / "Joints_Kinematics" / f"{trial}.mot", sim, time, kin_rows)
    _write_kinetics(folder / "Joints_Kinetics" / f"{trial}.sto", moments, time, kinetic_rows)

    t0, t1 = time[kin_rows][0], time[kinetic_rows][-1]
    truth = {side: [float(t) for t in sim.heel_strikes[side] if t0 <= t <= t1] for side in "LR"}
    loaded = {side: len(truth[side]) - 1 for side in "LR"}
    if (subject_id, trial) == OFF_PLATE[:2]:
        loaded[OFF_PLATE[2]] -= 1
    return {"heel_strikes_s": truth, "loaded_strides": loaded, "speed_mps": SPEEDS[trial]}


def _envelopes(sim: Any, side: str) -> dict[str, np.ndarray]:
    """100 Hz envelopes (0..1 of the trial's maximum) of the eight recorded muscles: the
    activations, normalised per channel as a processed-EMG export would be."""
    act = sim.activations[side][::10]  # activation at the frames (0..1)
    columns = {name: act[:, DEMO_MUSCLES.index(m)] for name, m in _FROM_MODEL.items()}
    gmed = act[:, DEMO_MUSCLES.index("gluteus_medius")]
    columns["GluteusMaximus"] = 0.6 * gmed + 0.4 * columns["BicepsFemoris"]
    return {name: columns[name] / columns[name].max() for name in MUSCLE_ORDER}


def _write_emg(path: Path, sim: Any, time: np.ndarray, rows: slice, naming: str) -> None:
    data: dict[str, np.ndarray] = {"time": time[rows]}
    k = 0
    for side in "RL":  # right leg first, as the documented column order
        for name, values in _envelopes(sim, side).items():
            k += 1
            if naming == "plain":
                column = f"{side}{name}"
            elif naming == "underscored":
                words = "_".join(w for w in _split_camel(name))
                column = f"{side}_{words}"
            else:
                column = f"EMG{k}"
            data[column] = values[rows]
    _write_csv(path, data, "%.6f")


def _split_camel(name: str) -> list[str]:
    words, current = [], ""
    for char in name:
        if char.isupper() and current:
            words.append(current)
            current = ""
        current += char
    return [*words, current]


def _write_imu(path: Path, sim: Any, time: np.ndarray, rows: slice) -> None:
    """Accelerations (m/s², y up) of seven IMUs from the simulated markers (unused by the
    adapter: the upstream IMU-peak segmentation is unreliable)."""
    markers = {
        "P": sim.markers["SACR"],
        "RT": sim.markers["RKNE"],
        "LT": sim.markers["LKNE"],
        "RS": sim.markers["RANK"],
        "LS": sim.markers["LANK"],
        "RF": sim.markers["RHEE"],
        "LF": sim.markers["LHEE"],
    }
    data: dict[str, np.ndarray] = {"Time": time[rows]}
    for imu in _IMUS:
        acc = np.gradient(np.gradient(markers[imu] / 1000.0, axis=0), axis=0) * RATE_HZ**2
        # lab X forward, Z up -> sensor x forward, y up, z lateral; gravity on y
        data[f"{imu}_accel.x"] = acc[rows, 0]
        data[f"{imu}_accel.y"] = acc[rows, 2] + 9.81
        data[f"{imu}_accel.z"] = acc[rows, 1]
    _write_csv(path, data, "%.5f")


def _write_csv(path: Path, columns: dict[str, np.ndarray], fmt: str) -> None:
    """Comma-separated with one header row (numpy: pandas' float formatting is slow)."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(",".join(columns) + "\n")
        np.savetxt(f, np.column_stack(list(columns.values())), fmt=fmt, delimiter=",")


def _write_kinematics(path: Path, sim: Any, time: np.ndarray, rows: slice) -> None:
    n = time[rows].size
    table: dict[str, np.ndarray] = {
        "time": time[rows],
        "pelvis_tilt": np.full(n, -8.0),
        "pelvis_list": np.zeros(n),
        "pelvis_rotation": np.zeros(n),
        "pelvis_tx": sim.markers["SACR"][rows, 0] / 1000.0,
        "pelvis_ty": sim.markers["SACR"][rows, 2] / 1000.0,
        "pelvis_tz": sim.markers["SACR"][rows, 1] / 1000.0,
    }
    rng = np.random.default_rng(int(sim.speed_mps * 1000) + len(sim.subject_id))
    for side in "rl":
        angles = sim.kinematics[side.upper()][rows]
        for coord in _COORDS:
            values = angles[:, _JOINT_OF[coord], _PLANE_OF[coord]]
            table[f"{coord}_{side}"] = values + rng.normal(0.0, 0.2, n)  # IK noise
        table[f"subtalar_angle_{side}"] = np.zeros(n)
        table[f"mtp_angle_{side}"] = np.zeros(n)
    table.update(lumbar_extension=np.zeros(n), lumbar_bending=np.zeros(n))
    write_storage(str(path), pd.DataFrame(table), name="Coordinates", in_degrees=True)


def _write_kinetics(
    path: Path, moments: dict[str, np.ndarray], time: np.ndarray, rows: slice
) -> None:
    n = time[rows].size
    table: dict[str, np.ndarray] = {"time": time[rows]}
    for name in ("pelvis_tilt_moment", "pelvis_list_moment", "pelvis_rotation_moment"):
        table[name] = np.zeros(n)
    for name in ("pelvis_tx_force", "pelvis_ty_force", "pelvis_tz_force"):
        table[name] = np.zeros(n)
    for side in "rl":
        values = moments[side.upper()][rows]
        for coord in _COORDS:
            table[f"{coord}_{side}_moment"] = values[:, _JOINT_OF[coord], _PLANE_OF[coord]]
        table[f"subtalar_angle_{side}_moment"] = np.zeros(n)
        table[f"mtp_angle_{side}_moment"] = np.zeros(n)
    write_storage(
        str(path), pd.DataFrame(table), name="Inverse Dynamics Generalized Forces", in_degrees=False
    )


# --- Study Summary.xlsx (stdlib only: openpyxl is not a dependency) ---------------------------


def _write_summary(path: Path) -> None:
    header = [["ID", None, "Participant Info", None, None, None], ["WS-key", "Group"]]
    header[1] += ["Sex", "Age (years)", "Weight (kg)", "height (cm)"]
    rows: list[list[Any]] = [*header]
    for subject_id, height, mass, sex, age, _, _ in SUBJECTS:
        rows.append([subject_id, "healthy", sex, float(age), mass, round(height * 100, 1)])
    write_xlsx(path, rows, merged=("A1:B1", "C1:F1"))


def write_xlsx(path: Path, rows: list[list[Any]], merged: tuple[str, ...] = ()) -> None:
    """A minimal single-sheet workbook as Excel writes it (shared strings), byte-identical on
    every run (fixed zip timestamps)."""
    strings: list[str] = []
    cells = []
    for r, row in enumerate(rows, start=1):
        parts = []
        for c, value in enumerate(row):
            ref = f"{chr(ord('A') + c)}{r}"
            if value is None:
                continue
            if isinstance(value, str):
                if value not in strings:
                    strings.append(value)
                parts.append(f'<c r="{ref}" t="s"><v>{strings.index(value)}</v></c>')
            else:
                parts.append(f'<c r="{ref}"><v>{value!r}</v></c>')
        cells.append(f'<row r="{r}">{"".join(parts)}</row>')
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    merge = "".join(f'<mergeCell ref="{m}"/>' for m in merged)
    sheet = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="{main}">'
        f"<sheetData>{''.join(cells)}</sheetData>"
        + (f'<mergeCells count="{len(merged)}">{merge}</mergeCells>' if merged else "")
        + "</worksheet>"
    )
    shared = "".join(f"<si><t>{escape(s)}</t></si>" for s in strings)
    files = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Types xmlns="http://'
            'schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" '
            'ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default '
            'Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.'
            'xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.'
            'sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="'
            'application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
            '<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.'
            'openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>'
        ),
        "_rels/.rels": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships xmlns="'
            'http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="'
            f'rId1" Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
        ),
        "xl/workbook.xml": (
            f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<workbook xmlns="{main}"'
            f' xmlns:r="{rel}"><sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets>'
            "</workbook>"
        ),
        "xl/_rels/workbook.xml.rels": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships xmlns="'
            'http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="'
            f'rId1" Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="'
            f'rId2" Type="{rel}/sharedStrings" Target="sharedStrings.xml"/></Relationships>'
        ),
        "xl/worksheets/sheet1.xml": sheet,
        "xl/sharedStrings.xml": (
            f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<sst xmlns="{main}" '
            f'count="{len(strings)}" uniqueCount="{len(strings)}">{shared}</sst>'
        ),
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as book:
        for name, text in files.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            book.writestr(info, text.encode())

"""Write a :class:`~builder.synthetic.gait_model.SimulatedTrial` as a real C3D file (ezc3d).

The file looks like a Vicon Nexus export of a Plug-in-Gait trial with an EMG system:

- markers (POINT:UNITS "mm"): SACR, LASI, RASI, LKNE, … in the lab frame;
- model outputs as points: ``{side}HipAngles`` / ``KneeAngles`` / ``AnkleAngles`` (X flexion,
  Y adduction, Z internal rotation, degrees, POINT:ANGLE_UNITS "deg") and ``{side}HipMoment`` /
  ``KneeMoment`` / ``AnkleMoment`` written as Plug-in Gait writes them: the *external* moment
  (= −internal) in N·mm/kg, with POINT:MOMENT_UNITS "Nmm";
- analog EMG in volts at the analog rate, labels ``L_TA``, ``R_SOL``, … and descriptions
  "Left Tibialis Anterior", …;
- EVENT group: 'Foot Strike' / 'Foot Off' with 'Left' / 'Right' contexts, times absolute in the
  file's time base (row 0 minutes, row 1 seconds);
- PROCESSING:Bodymass / Height as Plug-in Gait stores them, and a TRIAL group.

A :class:`C3DStyle` varies what real files vary: a subject prefix on point labels (``S02:``),
lower-case event labels, events coded in CONTEXTS with empty LABELS. A non-zero first frame
comes from the trial itself (header first frame; analog first frame = point first frame × ratio).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import ezc3d
import numpy as np

from builder.conventions import MUSCLE_ABBREVIATIONS, SIDES
from builder.synthetic.gait_model import MARKERS, SimulatedTrial

SIDE_NAMES: Final = {"L": "Left", "R": "Right"}
JOINT_POINTS: Final = (("hip", "Hip"), ("knee", "Knee"), ("ankle", "Ankle"))
# Canonical plane order is (adduction, rotation, flexion); Plug-in Gait X/Y/Z is
# (flexion, adduction, rotation): these indices pick X, Y, Z from the canonical planes.
_XYZ_FROM_CANONICAL: Final = [2, 0, 1]

EventCoding = Literal["standard", "lowercase", "contexts"]


@dataclass(frozen=True)
class C3DStyle:
    """How one file spells what every file says.

    - ``subject_prefix``: point labels carry ``"<subject>:"`` (and SUBJECTS:USES_PREFIXES = 1).
    - ``events``: ``"standard"`` (LABELS 'Foot Strike' / 'Foot Off', CONTEXTS 'Left' /
      'Right'), ``"lowercase"`` (LABELS 'foot strike' / 'foot off'), or ``"contexts"``
      (empty LABELS; CONTEXTS 'LHS', 'RHS', 'LTO', 'RTO').
    """

    subject_prefix: bool = False
    events: EventCoding = "standard"


STYLES: Final = {
    "plain": C3DStyle(),
    "prefix": C3DStyle(subject_prefix=True),
    "lowercase_events": C3DStyle(events="lowercase"),
    "context_events": C3DStyle(events="contexts"),
}


def emg_label(side: str, muscle: str) -> str:
    """Analog channel label of a muscle, e.g. ``L_TA``."""
    return f"{side}_{MUSCLE_ABBREVIATIONS[muscle]}"


def emg_description(side: str, muscle: str) -> str:
    """Analog channel description of a muscle, e.g. ``Left Tibialis Anterior``."""
    return f"{SIDE_NAMES[side]} {muscle.replace('_', ' ').title()}"


def _event_table(
    trial: SimulatedTrial, coding: EventCoding
) -> list[tuple[float, str, str, str, int]]:
    """(time, context, label, description, icon id) of every event, sorted by time."""
    kinds = (
        ("HS", "Foot Strike", "The instant the heel strikes the ground", 1, trial.heel_strikes),
        ("TO", "Foot Off", "The instant the toe leaves the ground", 2, trial.toe_offs),
    )
    rows = []
    for side in SIDES:
        for code, label, description, icon, times in kinds:
            if coding == "contexts":
                context, text = f"{side}{code}", ""
            else:
                context = SIDE_NAMES[side]
                text = label.lower() if coding == "lowercase" else label
            rows += [(float(t), context, text, description, icon) for t in times[side]]
    return sorted(rows)


def _add_int_vector(c3d: ezc3d.c3d, group: str, name: str, values: list[int]) -> None:
    """An INT vector parameter (``c3d.add_parameter`` would store a list of ints as FLOAT)."""
    parameter = ezc3d.ezc3d.Parameter(name, "")
    parameter.set(ezc3d.ezc3d.VecInt([int(v) for v in values]))
    c3d["parameters"].add_parameter(group, parameter)


def write_c3d(
    trial: SimulatedTrial, path: str | Path, *, style: C3DStyle = STYLES["plain"]
) -> None:
    """Write ``trial`` to ``path`` (which must end in ``.c3d``) in Plug-in-Gait form."""
    path = str(path)
    if not path.endswith(".c3d"):
        raise ValueError(f"ezc3d only writes paths ending in .c3d, got {path!r}")
    prefix = f"{trial.subject_id}:" if style.subject_prefix else ""

    # Points: markers (mm), then angles (deg), then external moments (N·mm/kg).
    angle_labels = [f"{s}{j}Angles" for s in SIDES for _, j in JOINT_POINTS]
    moment_labels = [f"{s}{j}Moment" for s in SIDES for _, j in JOINT_POINTS]
    angles = [trial.kinematics[s][:, i][:, _XYZ_FROM_CANONICAL] for s in SIDES for i in range(3)]
    moments = [
        -1000.0 * trial.kinetics[s][:, i][:, _XYZ_FROM_CANONICAL] for s in SIDES for i in range(3)
    ]
    point_data = np.stack([trial.markers[m] for m in MARKERS] + angles + moments, axis=1)
    point_labels = [prefix + label for label in (*MARKERS, *angle_labels, *moment_labels)]
    point_descriptions = (
        ["Marker"] * len(MARKERS)
        + ["Angles (deg), X flexion, Y adduction, Z internal rotation"] * len(angle_labels)
        + ["External moment (N.mm/kg), Plug-in Gait"] * len(moment_labels)
    )

    analog_labels = [emg_label(s, m) for s in SIDES for m in trial.muscles]
    analog_descriptions = [emg_description(s, m) for s in SIDES for m in trial.muscles]
    analog_data = np.concatenate([trial.emg[s] for s in SIDES], axis=1)

    c3d = ezc3d.c3d()
    c3d["parameters"]["POINT"]["RATE"]["value"] = [trial.point_rate_hz]
    c3d["parameters"]["POINT"]["LABELS"]["value"] = point_labels
    c3d["parameters"]["POINT"]["DESCRIPTIONS"]["value"] = point_descriptions
    c3d["parameters"]["POINT"]["UNITS"]["value"] = ["mm"]
    c3d.add_parameter("POINT", "ANGLE_UNITS", ["deg"])
    c3d.add_parameter("POINT", "MOMENT_UNITS", ["Nmm"])
    c3d.add_parameter("POINT", "ANGLES", [prefix + label for label in angle_labels])
    c3d.add_parameter("POINT", "MOMENTS", [prefix + label for label in moment_labels])
    c3d["data"]["points"] = np.ascontiguousarray(point_data.transpose(2, 1, 0))

    c3d["parameters"]["ANALOG"]["RATE"]["value"] = [trial.analog_rate_hz]
    c3d["parameters"]["ANALOG"]["LABELS"]["value"] = analog_labels
    c3d["parameters"]["ANALOG"]["DESCRIPTIONS"]["value"] = analog_descriptions
    c3d["parameters"]["ANALOG"]["UNITS"]["value"] = ["V"] * len(analog_labels)
    c3d["data"]["analogs"] = np.ascontiguousarray(analog_data.T[None])

    # ezc3d's header first frame is 0-based; the analog first frame follows from the ratio.
    c3d["header"]["points"]["first_frame"] = trial.first_frame
    last_frame = trial.first_frame + trial.n_frames - 1
    # TRIAL fields count frames from 1 (as the C3D file header does), low word then high word.
    _add_int_vector(c3d, "TRIAL", "ACTUAL_START_FIELD", [trial.first_frame + 1, 0])
    _add_int_vector(c3d, "TRIAL", "ACTUAL_END_FIELD", [last_frame + 1, 0])
    c3d.add_parameter("TRIAL", "CAMERA_RATE", [trial.point_rate_hz])

    c3d.add_parameter("SUBJECTS", "USED", 1)
    c3d.add_parameter("SUBJECTS", "NAMES", [trial.subject_id])
    c3d.add_parameter("SUBJECTS", "USES_PREFIXES", int(style.subject_prefix))
    if style.subject_prefix:
        c3d.add_parameter("SUBJECTS", "LABEL_PREFIXES", [prefix])
    c3d.add_parameter("SUBJECTS", "MARKER_SETS", ["PlugInGait"])
    c3d.add_parameter("PROCESSING", "Bodymass", [float(trial.body_mass_kg)])
    c3d.add_parameter("PROCESSING", "Height", [1000.0 * trial.height_m])

    events = _event_table(trial, style.events)
    times = np.array([t for t, *_ in events])
    minutes = np.floor(times / 60.0)
    c3d.add_parameter("EVENT", "USED", len(events))
    c3d.add_parameter("EVENT", "TIMES", np.stack([minutes, times - 60.0 * minutes]))
    c3d.add_parameter("EVENT", "CONTEXTS", [e[1] for e in events])
    c3d.add_parameter("EVENT", "LABELS", [e[2] for e in events])
    c3d.add_parameter("EVENT", "DESCRIPTIONS", [e[3] for e in events])
    c3d.add_parameter("EVENT", "SUBJECTS", [trial.subject_id] * len(events))
    _add_int_vector(c3d, "EVENT", "ICON_IDS", [e[4] for e in events])
    _add_int_vector(c3d, "EVENT", "GENERIC_FLAGS", [0] * len(events))
    c3d.write(path)

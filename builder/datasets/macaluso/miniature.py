"""Miniature of Macaluso et al. 2020 (``macaluso2020``): one MAT v5 file per subject.

Layout (as the foundation's parser reads it): ``<Subj>.mat`` holds one struct variable named
as the file, ``<Subj>.{subjectdetails, downhill, uphill, level}``; each incline group holds
trials whose field names contain ``part`` (plus other fields that are not trials), and each
trial ``{emg.{left,right}.{L,R}{RF,TA,BF,GC}_norm, cycles.{left,right}.time,
kinematics.jointangles.{left,right}.{hip,knee,ankle}.{x,y,z}_norm,
kinetics.jointmoment.{left,right}.{hip,knee,ankle}.{x,y,z}_norm}``. Arrays are points ×
strides (MATLAB orientation): EMG 3000 points per stride, kinematics, kinetics and the stride
time stamps 150 points (not documented; the lab's Embry dataset uses 150). ``subjectdetails``
is a cell {name, value} (height mm, weight kg as the parser reads rows 3 and 4).

Conventions written: those of the Embry miniature (Plug-in Gait through the lab's pipeline):
``x`` sagittal, ``y`` frontal, ``z`` transverse, canonical angle signs in degrees; moments
with Plug-in Gait's signs (minus the canonical internal moment) in N·m/kg — the dataset does
not state its units, the adapter decides them by magnitude; EMG as normalised envelopes.
Trial names carry the incline as a Gregg-lab token (``d7x5_part1`` = −7.5°; [I] the real
names are not documented). Every trial is walking with phase-shifting treadmill
perturbations (the simulation's stride-to-stride jitter stands in for them).

Quirks reproduced:

- ``AB01`` uphill left: the EMG has one stride fewer than ``cycles.left.time`` (the
  foundation truncated both to the shorter list, pairing strides blindly);
- ``AB02`` has no downhill group; ``AB02`` ``level.i0_part2`` has a single right stride (its
  arrays are 150 × 1 / 3000 × 1);
- each group also holds ``trialorder``, a field that is not a trial.

The MAT header's creation date is fixed, so the files are byte-identical run to run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import numpy as np

from builder.conventions import SIDES, Side
from builder.datasets.embry.miniature import EMG_CHANNELS, SIDE_WORDS, gregg_components
from builder.datasets.miniatures import miniature
from builder.synthetic import gait_model as gm
from builder.synthetic.files import matlab_header, write_mat
from builder.synthetic.simulation import StrideSet, activity_of, simulate_strides

POINTS: Final = 150
EMG_POINTS: Final = 3000
SPEED_MPS: Final = 1.0
GROUP_SIGN: Final = {"downhill": -1, "uphill": 1, "level": 0}
HEADER: Final = matlab_header("Thu Jun 11 10:00:00 2020")

# subject -> (height m, mass kg, seed, {group: [(trial, incline deg, strides L, strides R)]})
SUBJECTS: Final = {
    "AB01": (
        1.80,
        78.0,
        21,
        {
            "downhill": [("d7x5_part1", -7.5, 3, 3)],
            "uphill": [("i7x5_part1", 7.5, 3, 3)],
            "level": [("i0_part1", 0.0, 3, 3)],
        },
    ),
    "AB02": (
        1.62,
        55.0,
        22,
        {
            "uphill": [("i10_part1", 10.0, 3, 3)],
            "level": [("i0_part1", 0.0, 3, 3), ("i0_part2", 0.0, 2, 1)],
        },
    ),
}
SHORT_EMG: Final = ("AB01", "uphill", "i7x5_part1", "L")  # EMG lacks the first stride


@miniature("macaluso2020")
def write(folder: Path) -> dict[str, Any]:
    """Write ``<Subj>.mat`` per subject into ``folder``; return the facts tests check."""
    facts: dict[str, Any] = {"files": {}, "trials": {}}
    for subject_id, (height, mass, _, groups) in SUBJECTS.items():
        content: dict[str, Any] = {
            "subjectdetails": np.array(
                [
                    ["gender", "M" if subject_id == "AB01" else "F"],
                    ["age", 26.0],
                    ["height", 1000.0 * height],
                    ["weight", mass],
                ],
                dtype=object,
            )
        }
        for group, trials in groups.items():
            group_struct: dict[str, Any] = {}
            for trial, incline, n_left, n_right in trials:
                strides = truth(subject_id, group, trial)
                counts = {"L": n_left, "R": n_right}
                key = (subject_id, group, trial)
                group_struct[trial] = _trial(strides, counts, key)
                facts["trials"][f"{subject_id}/{group}.{trial}"] = {
                    "activity": activity_of(incline),
                    "incline_deg": incline,
                    "strides": counts,
                    "emg_strides": {
                        side: 0 if (*key, side) == SHORT_EMG else counts[side] for side in SIDES
                    },
                }
            group_struct["trialorder"] = np.arange(1.0, len(trials) + 1.0)[None, :]
            content[group] = group_struct
        write_mat(folder / f"{subject_id}.mat", {subject_id: content}, header=HEADER)
        facts["files"][subject_id] = f"{subject_id}.mat"
    facts["strides"] = sum(sum(t["strides"].values()) for t in facts["trials"].values())
    return facts


def truth(subject_id: str, group: str, trial: str) -> dict[Side, StrideSet]:
    """The simulated strides of one trial (canonical conventions; the file holds the first
    ``strides`` of each side)."""
    height, mass, seed, groups = SUBJECTS[subject_id]
    names = [t[0] for t in groups[group]]
    _, incline, n_left, n_right = groups[group][names.index(trial)]
    return simulate_strides(
        subject=gm.SubjectParams.generate(subject_id, height, mass, seed),
        speed_mps=SPEED_MPS,
        incline_deg=incline,
        n_strides=max(n_left, n_right),
        seed=1000 * seed + 10 * list(GROUP_SIGN).index(group) + names.index(trial),
        points=POINTS,
        emg_points=EMG_POINTS,
    )


def _trial(
    strides: dict[Side, StrideSet], counts: dict[str, int], key: tuple[str, str, str]
) -> dict[str, Any]:
    """One trial struct; arrays are points x strides."""
    emg: dict[str, Any] = {}
    cycles: dict[str, Any] = {}
    angles: dict[str, Any] = {}
    moments: dict[str, Any] = {}
    for side, word in SIDE_WORDS.items():
        data, n = strides[side], counts[side]
        cycles[word] = {"time": data.time[:n].T}
        first = 1 if (*key, side) == SHORT_EMG else 0
        emg[word] = {
            f"{side}{name}_norm": data.envelope(muscle)[first:n].T
            for name, muscle in EMG_CHANNELS.items()
        }
        angles[word] = {
            joint: {
                f"{axis}_norm": values[:n].T
                for axis, values in gregg_components(data.kinematics, joint).items()
            }
            for joint in ("hip", "knee", "ankle")
        }
        moments[word] = {  # Plug-in Gait signs: minus the canonical internal moment
            joint: {
                f"{axis}_norm": values[:n].T
                for axis, values in gregg_components(data.kinetics, joint, scale=-1.0).items()
            }
            for joint in ("hip", "knee", "ankle")
        }
    return {
        "emg": emg,
        "cycles": cycles,
        "kinematics": {"jointangles": angles},
        "kinetics": {"jointmoment": moments},
    }

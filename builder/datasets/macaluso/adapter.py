"""Macaluso et al. 2020 (IEEE DataPort): leg kinematics, kinetics and EMG during
phase-shifting perturbations at varying inclines. ``driver: macaluso``.

Layout [C]: one MAT file per subject (v5; v7.3 is read the same way through mat-io) with one
struct variable named as the file (``AB01.mat`` → ``AB01``; a file with a single variable of
another name is read with a note): ``<Subj>.{downhill,uphill,level}.<trial>`` for every
field whose name contains ``layout.trial_contains`` (``part``); other fields are not trials,
a missing group is noted. Each trial has per-stride (points × strides) arrays:
``cycles.{left,right}.time``, ``kinematics.jointangles.<side>.<joint>.{x,y,z}_norm``,
``kinetics.jointmoment.<side>.<joint>.{x,y,z}_norm`` and ``emg.<side>.{L,R}<muscle>_norm``
(RF, TA, BF, GC; 3000 points per stride). Everything the Gregg-lab files share with Embry —
strides from ``cycles.*.time``, axes (``x`` sagittal, not the adduction slot as in the
foundation), Plug-in Gait moment signs, units decided by magnitude (the dataset states none),
the envelope, axis and sign checks, EMG never paired blindly with cycles of a different
count — is :mod:`builder.datasets.gregg_lab`'s, documented there.

Per recording (one per group and trial): ``meta`` = trial ``<group>.<trial>``, activity
token = the group (``metadata.activity_map``), incline and, where the trial's
``description`` cell states it, speed. The incline ([C] not in the group names) comes from a
Gregg-lab token in the trial name (``d7x5_part1`` = −7.5°, ``x`` = decimal point) or from the
``description`` cell; both must agree, and its sign must match the group (downhill < 0,
uphill > 0, level = 0; a level trial without either is 0°). The trial-table condition
(``perturbation``) comes from the catalogue: every trial has the perturbations, and which
strides were perturbed is not in the files.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from builder.datasets.base import SourceAdapter
from builder.datasets.gregg_lab import (
    GreggLabOptions,
    TrialProblem,
    TrialSource,
    described,
    finish,
    gregg_recording,
    token_value,
)
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.formats.matlab import load_mat
from builder.records import TrialRecording, TrialSpec

_INCLINE_TOKEN = re.compile(r"(?<![a-z])([id])(\d+(?:x\d+)?)(?![0-9x])")


class MacalusoAdapter(SourceAdapter[GreggLabOptions]):
    name = "macaluso"
    options_model = GreggLabOptions
    emg_kinds = frozenset({"envelope"})

    def read(
        self, spec: TrialSpec, options: GreggLabOptions, files: FileAccess
    ) -> list[TrialRecording]:
        data = load_mat(files.local_path(spec.url), spec.url)
        subject, notes = _subject(data, spec.url)
        groups: dict[str, int] = options.layout.get("groups") or {}
        if not groups:
            raise SourceError(spec.url, "layout.groups (incline group -> sign) is required")
        marker = str(options.layout.get("trial_contains", "part"))
        recordings, problems = [], []
        for group_name, sign in groups.items():
            group = subject.get(group_name)
            if group is None:
                notes.append(f"no {group_name} trials in the file")
                continue
            if not isinstance(group, dict):
                problems.append(f"{group_name}: not a struct of trials")
                continue
            for trial in sorted(name for name in group if marker in name):
                try:
                    recordings.append(
                        _trial(group[trial], group_name, trial, int(sign), options, spec)
                    )
                except TrialProblem as problem:
                    problems.append(f"{group_name}.{trial}: {problem}")
        recordings = finish(recordings, problems, spec.url, "trial")
        if notes:
            first = recordings[0]
            recordings[0] = dataclasses.replace(first, notes=(*notes, *first.notes))
        return recordings


def _subject(data: dict[str, Any], url: str) -> tuple[dict[str, Any], list[str]]:
    """The subject struct: the variable named as the file, else the file's only variable."""
    stem = PurePosixPath(url).stem
    if isinstance(data.get(stem), dict):
        return data[stem], []
    structs = [name for name, value in data.items() if isinstance(value, dict)]
    if len(structs) == 1:
        return data[structs[0]], [f"subject struct is {structs[0]!r}, not {stem!r}"]
    raise SourceError(url, f"[C] no struct variable named {stem!r}; found {sorted(data)[:8]}")


def _trial(
    node: Any,
    group: str,
    trial: str,
    sign: int,
    options: GreggLabOptions,
    spec: TrialSpec,
) -> TrialRecording:
    if not isinstance(node, dict):
        raise TrialProblem("not a struct")
    if group not in spec.activity_map:
        raise TrialProblem(f"group {group!r} is not in metadata.activity_map")
    stated = {}
    description_field = options.layout.get("trial_description", "description")
    if description_field in node:
        items = node[description_field]
        if isinstance(items, list) and len(items) % 2 == 0:
            half = len(items) // 2  # a k x 2 cell, flattened column by column
            stated = described(items[:half], items[half:])
    incline = _incline(trial, stated.get("incline"), sign)

    def fetch(path: str) -> np.ndarray:
        value: Any = node
        for step in path.split("."):
            if not isinstance(value, dict) or step not in value:
                raise TrialProblem(f"no field {path}")
            value = value[step]
        if not isinstance(value, np.ndarray | float | int):
            raise TrialProblem(f"{path} is not a numeric array")
        array = np.asarray(value, dtype=np.float64)
        if array.ndim == 1:  # a single stride (points x 1, squeezed)
            return array[None, :]
        if array.ndim != 2:
            raise TrialProblem(f"{path}: expected points x strides, found shape {array.shape}")
        return array.T  # (strides, points)

    meta = {
        "trial": f"{group}.{trial}",
        "activity": group,
        "incline_deg": incline,
        "speed_mps": stated.get("speed", math.nan),
    }
    return gregg_recording(TrialSource(fetch, "."), options, spec, meta)


def _incline(trial: str, stated: float | None, sign: int) -> float:
    """The trial's incline from its name token and/or description, checked against its group."""
    match = _INCLINE_TOKEN.search(trial.lower())
    named = None
    if match is not None:
        named = token_value(match[2]) * (1 if match[1] == "i" else -1)
    if named is not None and stated is not None and abs(named - stated) > 0.01:
        raise TrialProblem(f"[C] incline: the name says {named:g}, the description {stated:g}")
    incline = named if named is not None else stated
    if incline is None:
        if sign != 0:
            raise TrialProblem(
                "[C] incline: no i<n>/d<n> token in the trial name and no description"
            )
        incline = 0.0
    if int(np.sign(incline)) != sign:
        raise TrialProblem(f"incline {incline:g} deg does not match its group's sign ({sign:+d})")
    return float(incline)

"""Embry et al. 2018 (IEEE DataPort): Gregg-lab gait cycles at varying speeds and inclines.
``driver: embry``. What the Gregg-lab files share with Macaluso et al. 2020 — strides from
``cycles.*.time``, axes, signs, units by magnitude, the checks — is
:mod:`builder.datasets.gregg_lab`'s, documented there.

The single ``InclineExperiment.mat`` (MATLAB v7.3 / HDF5) holds
the whole dataset, so one file gives one recording per (subject, trial) with its ``meta``:
subject, trial, activity token (incline part of the trial name, mapped by the catalogue's
``activity_map``), speed and incline from the trial name (``s1x2d7x5`` = 1.2 m/s, −7.5°),
checked against the trial's ``description`` cell. It is read lazily with h5py (the real file
is several GB, ~26 k strides), and the catalogue makes one row (one task) per subject
(``parts``: the groups of ``Gaitcycle``, names only), which reads that subject's trials
alone. HDF5 arrays are MATLAB's transposed, so (points × strides) reads as (strides,
points); strings and cells are object references. Strides listed in ``stepsout`` (outliers
per the authors, 1-based) are left out with a note. EMG channels RF, TA, BF, GC per leg; GC
feeds the gastrocnemius medialis slot (the head is an assumption).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import h5py
import numpy as np

from builder.datasets.base import FilePart, SourceAdapter
from builder.datasets.gregg_lab import (
    GreggLabOptions,
    TrialProblem,
    TrialSource,
    described,
    finish,
    gregg_recording,
)
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.formats.matlab import LazyMat, matlab_class
from builder.records import TrialRecording, TrialSpec

# --- Embry: MATLAB v7.3 via h5py -----------------------------------------------------------------

_TRIAL = re.compile(r"^(?P<speed>s[0-9x]+?)(?P<incline>[id][0-9x]+)$")
_NUMERIC_CLASSES = frozenset(
    {"double", "single", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"}
)


def h5_array(node: Any, path: str) -> np.ndarray:
    """A MATLAB numeric or logical array as float, in h5py's (transposed) orientation."""
    if not isinstance(node, h5py.Dataset):
        raise TrialProblem(f"{path} is a struct, expected a numeric array")
    cls = matlab_class(node)
    if node.attrs.get("MATLAB_empty", 0):
        return np.empty((0, 0))
    if cls not in _NUMERIC_CLASSES and cls != "logical":
        raise TrialProblem(f"{path} is MATLAB {cls or 'unknown'}, expected a numeric array")
    return np.asarray(node[()], dtype=np.float64)


def h5_cell(h5: h5py.File, node: Any, path: str) -> list[list[Any]]:
    """A cell array as MATLAB rows of str / float (items are object references)."""
    if not isinstance(node, h5py.Dataset) or matlab_class(node) != "cell":
        raise TrialProblem(f"{path} is not a cell array")
    if node.attrs.get("MATLAB_empty", 0):
        return []
    refs = node[()].T  # back to MATLAB's (rows, columns)
    rows = []
    for row in refs:
        items: list[Any] = []
        for ref in row:
            target = h5[ref]
            if matlab_class(target) == "char":
                codes = np.asarray(target[()]).T.ravel()
                items.append("".join(chr(int(c)) for c in codes))
            else:
                values = h5_array(target, path).ravel()
                items.append(float(values[0]) if values.size == 1 else values)
        rows.append(items)
    return rows


class EmbryAdapter(SourceAdapter[GreggLabOptions]):
    name = "embry"
    options_model = GreggLabOptions
    emg_kinds = frozenset({"envelope"})

    def parts(
        self, url: str, options: GreggLabOptions, files: FileAccess
    ) -> list[FilePart] | None:
        """One part per subject (``Gaitcycle/<AB>``): the file holds the whole dataset."""
        with _open(files, url) as mat:
            return [
                FilePart(f"{_SECTION}/{subject}", {"subject": subject})
                for subject in _subjects(mat.h5, url)
            ]

    def read(
        self, spec: TrialSpec, options: GreggLabOptions, files: FileAccess
    ) -> list[TrialRecording]:
        with _open(files, spec.url) as mat:
            h5 = mat.h5
            subjects = _subjects(h5, spec.url)
            if spec.part:  # one subject of the file (a part the catalogue listed)
                wanted = spec.part.removeprefix(f"{_SECTION}/")
                if wanted not in subjects:
                    raise SourceError(spec.url, f"no subject {spec.part}; found {subjects[:8]}")
                subjects = [wanted]
            root = h5[_SECTION]
            recordings, problems = [], []
            for subject in subjects:
                group = root[subject]
                for trial in sorted(k for k in group if k != "subjectdetails"):
                    if not isinstance(group[trial], h5py.Group):
                        continue
                    try:
                        recordings.append(
                            self._trial(h5, group[trial], subject, trial, options, spec)
                        )
                    except TrialProblem as problem:
                        problems.append(f"{subject}/{trial}: {problem}")
        return finish(recordings, problems, spec.url, "trial")

    def _trial(
        self,
        h5: h5py.File,
        group: h5py.Group,
        subject: str,
        trial: str,
        options: GreggLabOptions,
        spec: TrialSpec,
    ) -> TrialRecording:
        token, speed, incline = _speed_incline(trial, options.layout)
        if token not in spec.activity_map:
            raise TrialProblem(f"incline token {token!r} is not in metadata.activity_map")
        notes = []
        description_field = options.layout.get("trial_description", "description")
        if description_field in group:
            rows = h5_cell(h5, group[description_field], f"{trial}/{description_field}")
            stated = described([r[0] for r in rows], [r[-1] for r in rows])
            _agree(trial, speed, incline, stated)
        else:
            notes.append(f"no {description_field}: speed and incline from the trial name")

        def fetch(path: str) -> np.ndarray:
            try:
                node = group[path]
            except KeyError:
                raise TrialProblem(f"no field {path}") from None
            return h5_array(node, path)

        outliers = {}
        for side, path in (options.layout.get("outliers_from") or {}).items():
            if path not in group:
                continue
            try:
                values = fetch(path)
            except TrialProblem as problem:  # an optional list: keep the strides, say so
                notes.append(f"{side}: outlier list unreadable, no stride left out ({problem})")
                continue
            logical = matlab_class(group[path]) == "logical"
            outliers[side] = _outlier_indices(values, path, logical=logical)
        meta = {
            "subject": subject,
            "trial": trial,
            "activity": token,
            "speed_mps": speed,
            "incline_deg": incline,
        }
        recording = gregg_recording(TrialSource(fetch, "/"), options, spec, meta, outliers)
        return dataclasses.replace(recording, notes=(*notes, *recording.notes))


_SECTION = "Gaitcycle"


def _open(files: FileAccess, url: str) -> LazyMat:
    """The file, opened lazily (h5py reads only the groups and datasets asked for)."""
    mat = LazyMat.open(files, url)
    if mat is None:
        raise SourceError(url, "not a MATLAB v7.3 (HDF5) file")
    return mat


def _subjects(h5: h5py.File, url: str) -> list[str]:
    """The subjects of the Gaitcycle section (its groups), sorted; names only."""
    root = h5.get(_SECTION)
    if not isinstance(root, h5py.Group):
        raise SourceError(url, f"no {_SECTION} struct; found {sorted(h5)[:8]}")
    return sorted(name for name in root if isinstance(root[name], h5py.Group))


def _speed_incline(trial: str, layout: dict[str, Any]) -> tuple[str, float, float]:
    """(incline token, speed m/s, incline deg) from a trial name such as ``s1x2d7x5``."""
    match = _TRIAL.match(trial)
    if match is None:
        raise TrialProblem(f"[C] trial names are s<speed><i|d><incline>: {trial!r} is not")
    speeds, inclines = layout.get("speed_codes", {}), layout.get("incline_codes", {})
    speed_token, incline_token = match["speed"], match["incline"]
    if speed_token not in speeds or incline_token not in inclines:
        raise TrialProblem(
            f"[C] trial {trial!r}: speed {speed_token!r} or incline {incline_token!r} not in "
            "layout.speed_codes / incline_codes"
        )
    return incline_token, float(speeds[speed_token]), float(inclines[incline_token])


def _agree(trial: str, speed: float, incline: float, stated: dict[str, float]) -> None:
    """[C] the trial name and the trial's description give the same speed and incline."""
    for name, value in (("speed", speed), ("incline", incline)):
        if name in stated and abs(stated[name] - value) > 0.01:
            raise TrialProblem(
                f"[C] trial name {trial!r} says {name} {value:g}, its description {stated[name]:g}"
            )


def _outlier_indices(values: np.ndarray, path: str, *, logical: bool) -> np.ndarray:
    """0-based stride indices from 1-based indices, or from a logical mask over the strides."""
    flat = values.ravel()
    if logical:
        return np.flatnonzero(flat)
    if flat.size == 0:
        return np.empty(0, dtype=int)
    if not np.all(flat == np.round(flat)) or flat.min() < 1:
        raise TrialProblem(f"{path}: outliers are 1-based stride indices, found {flat[:5]}")
    return np.unique(flat.astype(int) - 1)


__all__ = ["EmbryAdapter", "h5_array", "h5_cell"]

"""Raw files at the real size of the heaviest layouts, for ``bench/bench_scale.py`` (never the
demo): what the miniatures prove correct, at the size that tests memory and task length.

- :func:`write_k2muse_participant`: one K2MUSE ``ProcessedData/<P>.mat`` (MAT v7.3, several GB
  like the real ones): ``OriginalData`` / ``NormalizedData`` ``.<Condition>.<Mode>.<Speed>.
  <Trial>`` filled condition by condition (Ideal, Fatigue 1-10, the five Shift conditions,
  InterDay; 5 modes × 3 speeds × 5 trials) until the file reaches its size. Each trial is a copy
  of one of 15 simulated base trials (one per mode and speed, ``strides`` strides of 2 kHz
  13-channel EMG, made by the miniature's own generator), so writing costs I/O, not simulation;
- :func:`write_embry`: Embry's single ``InclineExperiment.mat`` with 10 subjects × 27 trials
  (3 speeds × 9 inclines) and ``strides`` strides per leg and trial (48: ~26 k strides, ~1.2
  GB), laid out by the miniature's own trial writer;
- :func:`write_realsize`: both, about ``gb`` GB in all, in a folder laid out as the catalogue
  expects (``<folder>/k2muse2025/ProcessedData``, ``<folder>/embry2018``); files already
  complete (a ``.done`` marker beside them) are kept, so a benchmark re-run skips generation.

The files are written with h5py, MATLAB's v7.3 layout (:class:`MatV73`): structs are groups,
arrays transposed, cells object references into ``#refs#``, EMG in single precision.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import product
from pathlib import Path
from typing import Any, Final

import h5py
import numpy as np

from builder.datasets.embry import miniature as embry
from builder.datasets.k2muse import miniature as k2muse
from builder.synthetic import gait_model as gm
from builder.synthetic.files import MATIO_HEADER, MatV73, mat_v73
from builder.synthetic.simulation import StrideSet, simulate_strides

K2MUSE_CONDITIONS: Final = (
    "Ideal", "Fatigue", "ShiftInitial", "ShiftUpward", "ShiftDownward", "ShiftLeftward",
    "ShiftRightward", "InterDay",
)  # fmt: skip
EMBRY_SPEEDS: Final = ("s0x8", "s1", "s1x2")
EMBRY_INCLINES: Final = ("d10", "d7x5", "d5", "d2x5", "i0", "i2x5", "i5", "i7x5", "i10")
EMBRY_SUBJECTS: Final = tuple(f"AB{i:02d}" for i in range(1, 11))
K2MUSE_SHARE_OF_GB: Final = 0.94  # the rest is Embry's file (1.2 GB of 20 at full size)


# --- K2MUSE ----------------------------------------------------------------------------------


def k2muse_trial_keys() -> Iterator[tuple[str, str, str, int]]:
    """(condition, mode, speed, trial number) in the order a participant's file is filled."""
    for condition in K2MUSE_CONDITIONS:
        trials = range(1, 11 if condition == "Fatigue" else 6)
        for mode, speed, number in product(k2muse.MODES, k2muse.SPEEDS, trials):
            yield condition, mode, speed, number


def k2muse_base_trials(strides: int) -> dict[tuple[str, str], tuple[dict, dict]]:
    """(mode, speed) -> (OriginalData, NormalizedData) of one simulated trial of P1."""
    height, mass, seed, _ = k2muse.SUBJECTS["P1"]
    pool = {}
    for mode, speed in product(k2muse.MODES, k2muse.SPEEDS):
        original, normalized, _ = k2muse._trial(
            "P1", height, mass, seed, ("Ideal", mode, speed, 1), n_strides=strides
        )
        assert normalized is not None
        pool[mode, speed] = (original, normalized)
    return pool


def write_k2muse_participant(
    path: Path, target_bytes: int, pool: dict[tuple[str, str], tuple[dict, dict]]
) -> dict[str, Any]:
    """One participant's file of about ``target_bytes`` (at least one trial); its facts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    trials: list[str] = []
    written = 0
    with mat_v73(path, header=MATIO_HEADER["7.3"]) as mat:
        groups = {name: _group(mat, mat.h5, name) for name in ("OriginalData", "NormalizedData")}
        for condition, mode, speed, number in k2muse_trial_keys():
            if trials and written >= target_bytes:
                break
            original, normalized = pool[mode, speed]
            for name, tree in (("OriginalData", original), ("NormalizedData", normalized)):
                parent = groups[name]
                for key in (condition, mode, speed):
                    parent = parent[key] if key in parent else _group(mat, parent, key)
                written += _put(mat, parent, f"T{number}", tree)
            trials.append(f"{condition}/{mode}/{speed}/T{number}")
    return {"trials": trials, "bytes": path.stat().st_size}


def _group(mat: MatV73, parent: h5py.Group, name: str) -> h5py.Group:
    """A struct whose fields are added as they come (MATLAB_fields rewritten by :func:`_put`)."""
    _add_field(parent, name)
    return mat.struct(parent, name, [])


def _put(mat: MatV73, parent: h5py.Group, name: str, value: Any) -> int:
    """Write ``value`` (dict = struct, object array = cell, numbers) as field ``name`` of the
    struct ``parent``; the bytes of array data written."""
    _add_field(parent, name)
    if isinstance(value, dict):
        group = mat.struct(parent, name, list(value))
        return sum(_put(mat, group, key, item) for key, item in value.items())
    array = np.asarray(value)
    if array.dtype == object:  # a cell: items in #refs#, referenced in MATLAB's order
        refs_group = mat.h5.require_group("#refs#")
        refs = np.empty(array.shape, dtype=h5py.ref_dtype)
        size = 0
        for index in np.ndindex(array.shape):
            refname = next(mat._names)
            size += _put_data(mat, refs_group, refname, array[index])
            refs[index] = refs_group[refname].ref
        dset = parent.create_dataset(name, data=refs.T, dtype=h5py.ref_dtype)
        dset.attrs.create("MATLAB_class", np.bytes_("cell"))
        return size
    return _put_data(mat, parent, name, array)


def _put_data(mat: MatV73, parent: h5py.Group, name: str, value: Any) -> int:
    array = np.atleast_2d(np.asarray(value))
    if array.dtype == np.float32:
        dset = parent.create_dataset(name, data=array.T)
        dset.attrs.create("MATLAB_class", np.bytes_("single"))
    else:
        mat.double(parent, name, array)
    return int(array.nbytes)


def _add_field(group: h5py.Group, name: str) -> None:
    if group.attrs.get("MATLAB_class") != b"struct" or group.name == "/":
        return
    fields = [bytes(f).decode() for f in group.attrs.get("MATLAB_fields", [])]
    if name in fields:
        return
    fields.append(name)
    names = np.empty(len(fields), dtype=h5py.vlen_dtype(np.dtype("S1")))
    for i, field in enumerate(fields):
        names[i] = np.array([c.encode("ascii") for c in field], dtype="S1")
    group.attrs.create("MATLAB_fields", names)


# --- Embry -----------------------------------------------------------------------------------


def embry_base_strides(strides: int) -> dict[str, dict]:
    """trial name -> strides per side, simulated once for all subjects."""
    params = gm.SubjectParams.generate("AB01", 1.78, 72.0, 11)
    pool = {}
    for i, (speed, incline) in enumerate(product(EMBRY_SPEEDS, EMBRY_INCLINES)):
        trial = f"{speed}{incline}"
        speed_mps, incline_deg = embry.trial_speed_incline(trial)
        pool[trial] = simulate_strides(
            subject=params,
            speed_mps=speed_mps,
            incline_deg=incline_deg,
            n_strides=strides,
            seed=1000 + i,
            points=embry.POINTS,
            emg_points=embry.POINTS,
        )
    return pool


def write_embry(path: Path, pool: dict[str, dict[Any, StrideSet]]) -> dict[str, Any]:
    """``InclineExperiment.mat`` with every subject holding every pooled trial; its facts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    strides = 0
    with mat_v73(path, header=embry.HEADER) as mat:
        gait = mat.struct(mat.h5, "Gaitcycle", list(EMBRY_SUBJECTS))
        for subject in EMBRY_SUBJECTS:
            group = mat.struct(gait, subject, ["subjectdetails", *pool])
            mat.cell(group, "subjectdetails", [["height", 1780.0], ["weight", 72.0]])
            for trial, sides in pool.items():
                speed, incline = embry.trial_speed_incline(trial)
                facts = embry._write_trial(mat, group, subject, trial, speed, incline, sides)
                strides += sum(facts["strides"].values())
    return {"subjects": list(EMBRY_SUBJECTS), "strides": strides, "bytes": path.stat().st_size}


# --- both --------------------------------------------------------------------------------------


def write_realsize(
    folder: Path,
    gb: float,
    *,
    participant_gb: float = 4.0,
    k2muse_strides: int = 40,
    embry_strides: int | None = None,
) -> dict[str, Any]:
    """About ``gb`` GB of raw files under ``folder`` (see the module docstring): K2MUSE
    participants of ``participant_gb`` each (the last one smaller) and one Embry file, whose
    strides per leg and trial default to 48 at 20 GB and scale with ``gb`` below it. Files
    whose ``.done`` marker matches their parameters are kept; returns every file's facts."""
    k2muse_bytes = int(gb * K2MUSE_SHARE_OF_GB * 1e9)
    per_participant = int(participant_gb * 1e9)
    sizes = [per_participant] * (k2muse_bytes // per_participant)
    if k2muse_bytes % per_participant > per_participant // 10 or not sizes:
        sizes.append(k2muse_bytes % per_participant or k2muse_bytes)
    strides = embry_strides or max(2, min(48, round(48 * gb / 20)))
    facts: dict[str, Any] = {"k2muse2025": {}, "embry2018": {}}
    pool: dict | None = None
    for i, size in enumerate(sizes, start=1):
        path = folder / "k2muse2025" / "ProcessedData" / f"P{i}.mat"
        params = {"bytes": size, "strides": k2muse_strides}
        done = _done(path, params)
        if done is None:
            pool = pool or k2muse_base_trials(k2muse_strides)
            done = write_k2muse_participant(path, size, pool)
            _mark(path, params, done)
        facts["k2muse2025"][path.name] = done
    path = folder / "embry2018" / embry.FILE_NAME
    params = {"strides": strides, "subjects": len(EMBRY_SUBJECTS)}
    done = _done(path, params)
    if done is None:
        done = write_embry(path, embry_base_strides(strides))
        _mark(path, params, done)
    facts["embry2018"][path.name] = done
    return facts


def raw_files(folder: Path) -> list[Path]:
    """The raw files :func:`write_realsize` wrote under ``folder``."""
    return sorted(p for p in folder.rglob("*.mat") if p.with_suffix(".done").is_file())


def _done(path: Path, params: dict[str, Any]) -> dict[str, Any] | None:
    marker = path.with_suffix(".done")
    if not (path.is_file() and marker.is_file()):
        return None
    saved = json.loads(marker.read_text())
    if saved.get("params") != params or saved.get("facts", {}).get("bytes") != path.stat().st_size:
        return None
    facts: dict[str, Any] = saved["facts"]
    return facts


def _mark(path: Path, params: dict[str, Any], facts: dict[str, Any]) -> None:
    path.with_suffix(".done").write_text(json.dumps({"params": params, "facts": facts}))

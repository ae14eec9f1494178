"""Long, EMG-dominated C3D trials for benchmarks: minutes of 2 kHz EMG on 16 channels per file.

The demo's files hold 8 strides; a real treadmill capture holds minutes. :func:`write_long_trials`
writes ``n_files`` Plug-in-Gait C3D files of ``minutes`` each (8 muscles per leg, 16 analog
channels at 2 kHz, about 78 % of the file's bytes; half the subjects with 50 Hz hum) and a
catalogue that reads them with the C3D adapter. Files are deterministic, and one already there
with the expected size is kept, so a benchmark pays for generation once. Not part of the demo.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from builder.conventions import MUSCLE_ABBREVIATIONS
from builder.demo import MAINS_HZ, SUBJECTS, demo_subjects
from builder.synthetic.c3d_writer import STYLES, write_c3d
from builder.synthetic.gait_model import DEMO_MUSCLES, simulate_trial, stride_time_s

LONG_MUSCLES: Final = DEMO_MUSCLES[:8]  # 8 per leg: 16 analog channels
SPEEDS_MPS: Final = (0.8, 1.2, 1.6)


@dataclass(frozen=True)
class LongTrial:
    path: Path
    subject: str
    speed_mps: float
    seed: int
    mains_hz: float | None


def long_trials(root: Path, n_files: int, minutes: float) -> list[LongTrial]:
    """The files :func:`write_long_trials` writes (subjects and speeds in turn)."""
    trials = []
    for i in range(n_files):
        subject = SUBJECTS[i % len(SUBJECTS)]
        speed = SPEEDS_MPS[(i // len(SUBJECTS)) % len(SPEEDS_MPS)]
        name = f"{subject.subject_id}/walk_v{speed:.2f}_m{minutes:g}_t{i:03d}.c3d"
        mains = MAINS_HZ if subject.mains_hum else None
        trials.append(LongTrial(root / name, subject.subject_id, speed, 1000 + i, mains))
    return trials


def write_long_trials(root: str | Path, n_files: int, minutes: float) -> tuple[list[Path], Path]:
    """Write (or keep) the files and their catalogue under ``root``; (files, catalogue path)."""
    root = Path(root)
    people = demo_subjects()
    paths = []
    for trial in long_trials(root, n_files, minutes):
        paths.append(trial.path)
        size = trial.path.with_suffix(".size")
        kept = trial.path.is_file() and size.is_file()
        if kept and size.read_text().strip() == str(trial.path.stat().st_size):
            continue
        subject = people[trial.subject]
        stride_s = stride_time_s(trial.speed_mps, 0.0, subject.height_m)
        sim = simulate_trial(
            subject=subject,
            activity="walk",
            speed_mps=trial.speed_mps,
            incline_deg=0.0,
            n_strides=max(int(minutes * 60.0 / stride_s) - 1, 1),
            seed=trial.seed,
            mains_hz=trial.mains_hz,
        )
        n = len(LONG_MUSCLES)
        # No EVENT group: a C3D parameter holds at most 255 entries per dimension, so minutes
        # of events do not fit; the adapter finds the strides from the markers (Zeni), as it
        # does for real long captures without stored events.
        none = {side: np.empty(0) for side in sim.heel_strikes}
        sim = dataclasses.replace(
            sim,
            muscles=LONG_MUSCLES,
            emg={side: v[:, :n] for side, v in sim.emg.items()},
            heel_strikes=none,
            toe_offs=none,
        )
        trial.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = trial.path.with_name(f".{trial.path.stem}.tmp.c3d")
        write_c3d(sim, temporary, style=STYLES["plain"])
        os.replace(temporary, trial.path)
        size.write_text(str(trial.path.stat().st_size))
    catalog = root / f"long_m{minutes:g}.yaml"
    catalog.write_text(_catalog(root, minutes))
    return paths, catalog


def _catalog(root: Path, minutes: float) -> str:
    channels = "\n".join(
        f"          {m}: {{L: L_{MUSCLE_ABBREVIATIONS[m]}, R: R_{MUSCLE_ABBREVIATIONS[m]}}}"
        for m in LONG_MUSCLES
    )
    return f"""\
metadata:
  version: 1
sources:
  long:
    driver: c3d
    description: Long synthetic treadmill walks (builder.synthetic.long_c3d), for benchmarks.
    args:
      urlpath: "{root}/{{subject}}/walk_v{{speed_mps}}_m{minutes:g}_t{{trial}}.c3d"
      emg:
        match: label
        channels:
{channels}
      kinematics: plug-in-gait
      kinetics: plug-in-gait
    metadata:
      dataset: long
      licence: CC0-1.0
      citation: "gait-builder synthetic benchmark data"
      population: healthy
      condition: normal
      emg_kind: raw
      fields: {{speed_mps: float}}
      defaults: {{activity: walk}}
      processing:
        emg: {{mains_hz: 50}}
"""

"""The built-in demo: a deterministic miniature raw source written into a cache folder.

``python -m builder run`` with no catalogue calls :func:`ensure_demo_sources`, which writes 40
synthetic walking trials as Plug-in-Gait-style C3D files (the first time only), then builds them
through the ordinary catalogue (``catalogs/demo.yaml``) → C3D adapter → store pipeline.

Content: 4 subjects × (level walking at 0.8, 1.2, 1.6 m/s; ramp ascent +6° and descent −6° at
1.0 m/s) × 2 trials, each with :data:`N_STRIDES` whole strides per leg. The subjects differ in
body size, offsets and EMG gains, and each one's files exercise one thing real files vary in:

===== ================================================= ============ =============
S01   plain Plug-in-Gait labels, 'Foot Strike'/'Foot Off' first frame 0 no hum
S02   subject prefix ``S02:`` on point labels           first frame 0 50 Hz hum
S03   lower-case event labels ('foot strike')            first frame >0 no hum
S04   events coded in CONTEXTS ('LHS', 'RTO', …)         first frame 0 50 Hz hum
===== ================================================= ============ =============

Files: ``<root>/<subject>/<walk|rampup|rampdown>_v<speed:.2f>_i<incline:+d>_<t01|t02>.c3d``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from builder.datasets.miniatures import miniature_sources, write_miniatures
from builder.synthetic.c3d_writer import STYLES, write_c3d
from builder.synthetic.gait_model import SimulatedTrial, SubjectParams, simulate_trial

# Bump whenever the generated files change, so caches of older versions are not reused.
DEMO_VERSION: Final = 3
N_STRIDES: Final = 8  # whole strides per leg and trial (each leg has N_STRIDES + 1 heel strikes)
MAINS_HZ: Final = 50.0
_MARKER: Final = ".complete"


@dataclass(frozen=True)
class DemoSubject:
    subject_id: str
    height_m: float
    mass_kg: float
    style: str  # a key of builder.synthetic.c3d_writer.STYLES
    mains_hum: bool
    nonzero_first_frame: bool


SUBJECTS: Final = (
    DemoSubject("S01", 1.78, 75.0, "plain", mains_hum=False, nonzero_first_frame=False),
    DemoSubject("S02", 1.64, 57.0, "prefix", mains_hum=True, nonzero_first_frame=False),
    DemoSubject("S03", 1.86, 90.0, "lowercase_events", mains_hum=False, nonzero_first_frame=True),
    DemoSubject("S04", 1.70, 66.0, "context_events", mains_hum=True, nonzero_first_frame=False),
)
# (file-name token, canonical activity, speed m/s, incline deg)
CONDITIONS: Final = (
    ("walk", "walk", 0.8, 0.0),
    ("walk", "walk", 1.2, 0.0),
    ("walk", "walk", 1.6, 0.0),
    ("rampup", "ramp_ascent", 1.0, 6.0),
    ("rampdown", "ramp_descent", 1.0, -6.0),
)
TRIALS: Final = ("t01", "t02")


@dataclass(frozen=True)
class DemoTrial:
    """One generated file and everything it was generated from."""

    subject: str
    activity: str  # canonical activity (walk, ramp_ascent, ramp_descent)
    token: str  # activity as spelled in the file name (walk, rampup, rampdown)
    speed_mps: float
    incline_deg: float
    trial: str
    seed: int
    style: str
    first_frame: int
    mains_hz: float | None
    path: Path

    @property
    def relative_path(self) -> str:
        return f"{self.subject}/{self.path.name}"


def default_cache_dir() -> Path:
    """``$BUILDER_CACHE_DIR``, else ``$XDG_CACHE_HOME/gait-builder``, else ``~/.cache/gait-builder``."""
    if os.environ.get("BUILDER_CACHE_DIR"):
        return Path(os.environ["BUILDER_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "gait-builder"
    return Path.home() / ".cache" / "gait-builder"


def demo_root(cache_dir: Path | None = None) -> Path:
    """Where this demo version's files live: ``<cache>/demo/v<DEMO_VERSION>``."""
    return Path(cache_dir or default_cache_dir()) / "demo" / f"v{DEMO_VERSION}"


def _seed(*parts: object) -> int:
    # crc32, not hash(): the same on every run and every machine.
    return zlib.crc32("/".join(map(str, parts)).encode())


def demo_subjects() -> dict[str, SubjectParams]:
    """The simulated people behind the demo, by subject id."""
    return {
        s.subject_id: SubjectParams.generate(
            s.subject_id, s.height_m, s.mass_kg, _seed("subject", s.subject_id)
        )
        for s in SUBJECTS
    }


def demo_trials(cache_dir: Path | None = None) -> list[DemoTrial]:
    """Every file the demo generates, in generation order."""
    root = demo_root(cache_dir)
    trials = []
    for subject in SUBJECTS:
        for token, activity, speed, incline in CONDITIONS:
            for trial in TRIALS:
                seed = _seed(subject.subject_id, activity, f"{speed:.2f}", f"{incline:+.0f}", trial)
                name = f"{token}_v{speed:.2f}_i{int(incline):+d}_{trial}.c3d"
                trials.append(
                    DemoTrial(
                        subject=subject.subject_id,
                        activity=activity,
                        token=token,
                        speed_mps=speed,
                        incline_deg=incline,
                        trial=trial,
                        seed=seed,
                        style=subject.style,
                        # A cropped capture starts part-way into the recording.
                        first_frame=100 + seed % 400 if subject.nonzero_first_frame else 0,
                        mains_hz=MAINS_HZ if subject.mains_hum else None,
                        path=root / subject.subject_id / name,
                    )
                )
    return trials


def simulate_demo_trial(trial: DemoTrial, subject: SubjectParams | None = None) -> SimulatedTrial:
    """The ground truth behind one demo file (what :func:`ensure_demo_sources` writes)."""
    return simulate_trial(
        subject=subject or demo_subjects()[trial.subject],
        activity=trial.activity,
        speed_mps=trial.speed_mps,
        incline_deg=trial.incline_deg,
        n_strides=N_STRIDES,
        seed=trial.seed,
        mains_hz=trial.mains_hz,
        first_frame=trial.first_frame,
    )


def _is_complete(root: Path, trials: list[DemoTrial]) -> bool:
    try:
        marker = json.loads((root / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or marker.get("version") != DEMO_VERSION:
        return False
    if marker.get("miniatures") != miniature_sources():  # a generator was added or removed
        return False
    sizes = marker.get("files")
    if not isinstance(sizes, dict) or list(sizes)[: len(trials)] != [
        t.relative_path for t in trials
    ]:
        return False
    # Sizes catch a file truncated or replaced after the marker was written; cheap to check.
    return all(
        (root / name).is_file() and (root / name).stat().st_size == size
        for name, size in sizes.items()
    )


def ensure_demo_sources(cache_dir: Path | None = None) -> Path:
    """Write the demo's raw files unless a complete set is already there; return the root.

    The root holds the C3D demo (``<subject>/*.c3d``) and the miniature copies of the 14
    source datasets (``datasets/<source key>/``, see :mod:`builder.datasets.miniatures`).

    Each file is written under a temporary name outside the root and moved into place with
    ``os.replace``, and the completion marker is written last, so a killed generation never
    leaves a half file or a folder that counts as complete. An incomplete folder is regenerated
    (the output is deterministic, so files already there are simply rewritten identically).
    """
    root = demo_root(cache_dir)
    trials = demo_trials(cache_dir)
    if _is_complete(root, trials):
        return root
    root.mkdir(parents=True, exist_ok=True)
    (root / _MARKER).unlink(missing_ok=True)
    people = demo_subjects()
    # Staging lives beside the root, not in it, so no catalogue glob ever sees a temporary file.
    staging = Path(tempfile.mkdtemp(prefix=f".staging-v{DEMO_VERSION}-", dir=root.parent))

    def generate(t: DemoTrial) -> None:
        temporary = staging / f"{t.subject}_{t.path.name}"
        write_c3d(simulate_demo_trial(t, people[t.subject]), temporary, style=STYLES[t.style])
        t.path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temporary, t.path)

    try:
        # Each file depends only on its own seed, so threads (numpy and ezc3d release the
        # GIL for the heavy parts) change the speed, never the bytes.
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            list(pool.map(generate, trials))
        write_miniatures(staging / "datasets")
        shutil.rmtree(root / "datasets", ignore_errors=True)
        os.replace(staging / "datasets", root / "datasets")
        sizes = {t.relative_path: t.path.stat().st_size for t in trials}
        sizes |= {
            str(path.relative_to(root)): path.stat().st_size
            for path in sorted((root / "datasets").rglob("*"))
            if path.is_file()
        }
        marker = {"version": DEMO_VERSION, "miniatures": miniature_sources(), "files": sizes}
        temporary = staging / _MARKER
        temporary.write_text(json.dumps(marker, indent=1) + "\n")
        os.replace(temporary, root / _MARKER)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


__all__ = [
    "DEMO_VERSION",
    "N_STRIDES",
    "DemoTrial",
    "default_cache_dir",
    "demo_root",
    "demo_subjects",
    "demo_trials",
    "ensure_demo_sources",
    "simulate_demo_trial",
]

"""A file that crashes or hangs its parser (ezc3d does both on some corrupted C3D files) is a
report entry, not a dead or stuck worker: readers run in an isolated child process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from builder.build import BuildOptions, build, process_trial
from builder.catalog import expand_trials, load_catalog
from builder.store.staging import Staging, trial_key

from helpers import copy_demo_subset, demo_catalog

BASE = "S01/walk_v0.80_i+0_t01.c3d"
# Mutations of BASE found by fuzzing: seed 156 segfaults ezc3d, seed 84 makes it loop forever.
KNOWN_SEEDS = {"crash": 156, "hang": 84}


def mutate(data: bytes, seed: int) -> bytes:
    """A few random bytes in the header and parameter section."""
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 12))):
        out[int(rng.integers(0, 20000))] = int(rng.integers(0, 256))
    return bytes(out)


def ezc3d_outcome(path: Path) -> str:
    """What ezc3d alone does with the file, in a throwaway process."""
    code = f"import ezc3d; ezc3d.c3d({str(path)!r}, extract_forceplat_data=True)"
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=10)
    except subprocess.TimeoutExpired:
        return "hang"
    return "crash" if result.returncode < 0 else "ok" if result.returncode == 0 else "error"


@pytest.fixture(scope="module")
def poisoned(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A demo subset plus one C3D that crashes ezc3d and one that hangs it."""
    folder = tmp_path_factory.mktemp("poisoned")
    raw = copy_demo_subset(demo_root, folder / "raw", ("S01",))
    base = (demo_root / BASE).read_bytes()
    files = {}
    for kind, name in (("crash", "walk_v0.90_i+0_t01.c3d"), ("hang", "walk_v0.90_i+0_t02.c3d")):
        path = raw / "S01" / name
        seeds = [KNOWN_SEEDS[kind], *range(400)]  # the known seed, else search (demo changed)
        for seed in seeds:
            path.write_bytes(mutate(base, seed))
            if ezc3d_outcome(path) == kind:
                break
        else:
            pytest.fail(f"no mutation of {BASE} makes ezc3d {kind} any more")
        files[kind] = path
    files["catalog"] = demo_catalog(folder, raw)
    return files


def spec_of(catalog: Path, name: str):
    specs, _ = expand_trials(load_catalog(catalog))
    return next(s for s in specs if s.url.endswith(name))


def test_a_parser_crash_is_reported_and_the_next_file_still_reads(poisoned, tmp_path) -> None:
    staging = Staging(str(tmp_path / "s.zarr"))
    crash = spec_of(poisoned["catalog"], poisoned["crash"].name)
    outcome = process_trial(crash, trial_key(crash), staging)
    assert not outcome.ok and not outcome.retry
    assert "c3d reader crashed on this file (killed by SIGSEGV)" in outcome.reason
    good = spec_of(poisoned["catalog"], "walk_v0.80_i+0_t01.c3d")
    assert process_trial(good, trial_key(good), staging).ok  # a fresh reader took over


def test_a_parser_hang_is_stopped_at_the_timeout(poisoned, tmp_path) -> None:
    hang = spec_of(poisoned["catalog"], poisoned["hang"].name)
    outcome = process_trial(
        hang, trial_key(hang), Staging(str(tmp_path / "s.zarr")), read_timeout_s=3
    )
    assert not outcome.ok and "reading took longer than 3 s and was stopped" in outcome.reason


@pytest.mark.cluster
def test_a_build_with_poisoned_files_completes(poisoned, tmp_path) -> None:
    options = BuildOptions(
        output=str(tmp_path / "gait.zarr"),
        workers=2,
        progress=False,
        dashboard_address=":0",
        read_timeout_s=5,
    )
    result = build(str(poisoned["catalog"]), options, console=Console(quiet=True))
    left = {Path(e["url"]).name: e["reason"] for e in result.report["trials_left_out"]}
    assert set(left) == {poisoned["crash"].name, poisoned["hang"].name}
    assert "crashed" in left[poisoned["crash"].name] and "stopped" in left[poisoned["hang"].name]
    assert result.n_trials_built == 10 and result.n_strides == 160

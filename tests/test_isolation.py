"""A file that crashes or hangs its parser (ezc3d does both on some corrupted C3D files) is a
report entry, not a dead or stuck worker: readers run in an isolated child process. A read
that times out is retried in a fresh reader with a longer limit, so a busy machine never takes
a good file out of a build.

Every hang here is deterministic (the reader blocks forever, so any limit stops it): a FIFO
with no writer in place of a C3D file (ezc3d's open never returns), or a scripted test
adapter that sleeps forever. The corrupt files found by fuzzing that looked like hangs
allocate 12-17 GB and fail after 10-50 s: how they end depends on the machine's load.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import builder
from builder.catalog import expand_trials, load_catalog
from builder.pipeline import isolated
from builder.pipeline.isolated import read_trial_isolated
from builder.pipeline.run import BuildOptions, build
from builder.pipeline.trial import process_trial
from builder.records import TrialSpec
from builder.store.staging import Staging, trial_key

from helpers import copy_demo_subset, demo_catalog

BASE = "S01/walk_v0.80_i+0_t01.c3d"
# A mutation of BASE found by fuzzing: seed 156 segfaults ezc3d.
CRASH_SEED = 156
# Generous: a good file is left out only when reading it takes longer than this, retried.
GENEROUS_RETRY_S = 60.0


def mutate(data: bytes, seed: int) -> bytes:
    """A few random bytes in the header and parameter section."""
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 12))):
        out[int(rng.integers(0, 20000))] = int(rng.integers(0, 256))
    return bytes(out)


def ezc3d_crashes(path: Path) -> bool:
    """Whether ezc3d alone dies of a signal on the file, in a throwaway process (a slow
    mutation is not a crash, however long it takes)."""
    code = f"import ezc3d; ezc3d.c3d({str(path)!r}, extract_forceplat_data=True)"
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300)
    except subprocess.TimeoutExpired:
        return False
    return result.returncode < 0


@pytest.fixture(scope="module")
def poisoned(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A demo subset plus one C3D that crashes ezc3d and one that hangs its reader."""
    folder = tmp_path_factory.mktemp("poisoned")
    raw = copy_demo_subset(demo_root, folder / "raw", ("S01",))
    base = (demo_root / BASE).read_bytes()
    crash = raw / "S01" / "walk_v0.90_i+0_t01.c3d"
    for seed in [CRASH_SEED, *range(400)]:  # the known seed, else search (demo changed)
        crash.write_bytes(mutate(base, seed))
        if ezc3d_crashes(crash):
            break
    else:
        pytest.fail(f"no mutation of {BASE} makes ezc3d crash any more")
    # Opening a FIFO blocks until someone writes to it: nobody does.
    hang = raw / "S01" / "walk_v0.90_i+0_t02.c3d"
    os.mkfifo(hang)
    return {"crash": crash, "hang": hang, "catalog": demo_catalog(folder, raw)}


def spec_of(catalog: Path, name: str) -> TrialSpec:
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


def test_a_parser_hang_is_stopped_after_a_retry_and_not_retried_by_the_next_run(
    poisoned, tmp_path
) -> None:
    hang = spec_of(poisoned["catalog"], poisoned["hang"].name)
    outcome = process_trial(
        hang, trial_key(hang), Staging(str(tmp_path / "s.zarr")), read_timeout_s=1
    )
    assert not outcome.ok and not outcome.retry
    assert outcome.reason == (
        "reading took longer than 1 s and, retried, longer than 4 s; stopped (the c3d reader "
        "hangs on this file?)"
    )


@pytest.mark.cluster
def test_a_build_with_poisoned_files_completes(poisoned, tmp_path) -> None:
    options = BuildOptions(
        output=str(tmp_path / "gait.zarr"),
        workers=2,
        progress=False,
        dashboard_address=":0",
        # Short for the hang's sake: a good file whose first try overruns gets 4 x 15 = 60 s.
        read_timeout_s=15,
    )
    result = build(str(poisoned["catalog"]), options)
    left = {Path(e.url).name: e for e in result.report.trials_left_out}
    assert set(left) == {poisoned["crash"].name, poisoned["hang"].name}
    assert "crashed" in left[poisoned["crash"].name].reason
    assert "stopped" in left[poisoned["hang"].name].reason
    assert not any(entry.retry for entry in left.values())
    assert result.n_trials_built == 10 and result.n_strides == 160


# --- escalation, with a scripted test adapter ----------------------------------------------

# The reader child for these tests: builder's own child plus the adapter "scripted", which does
# what the trial's name says and counts its attempts in the file the trial's url names.
SCRIPTED_CHILD = """
import os, sys, time
sys.path.insert(0, {repo!r})
from builder.datasets import SourceAdapter, register_adapter
from builder.pipeline.isolated import _serve


def forever():
    while True:
        time.sleep(3600)


@register_adapter
class Scripted(SourceAdapter):
    name = "scripted"
    emg_kinds = frozenset({{"raw"}})

    def read(self, spec, options, files):
        with open(spec.url, "a") as log:
            log.write("attempt\\n")
        with open(spec.url) as log:
            attempts = len(log.readlines())
        if spec.trial == "hang" or (spec.trial == "hang-once" and attempts == 1):
            forever()
        return []


startup = os.environ.get("SCRIPTED_STARTUP", "")
if startup == "never":
    forever()
if startup == "exit":
    sys.exit(3)  # a broken environment, say
time.sleep(float(startup or 0))
_serve(int(sys.argv[1]), int(sys.argv[2]))
"""


def _drop_reader() -> None:
    """Stop this process's reader child, so that the next read starts one (of ``_CHILD``)."""
    if isolated._READER is not None:
        isolated._READER.kill()
        isolated._READER = None


@pytest.fixture
def scripted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    script = tmp_path / "scripted_child.py"
    script.write_text(SCRIPTED_CHILD.format(repo=str(Path(builder.__file__).parents[1])))
    _drop_reader()
    monkeypatch.setattr(isolated, "_CHILD", (str(script),), raising=False)
    yield
    _drop_reader()  # later tests get builder's own reader


def scripted_spec(tmp_path: Path, behaviour: str) -> TrialSpec:
    return TrialSpec(
        source="test", adapter="scripted", url=str(tmp_path / f"{behaviour}.attempts"),
        dataset="test", subject="s01", activity="walk", trial=behaviour,
    )  # fmt: skip


def attempts(spec: TrialSpec) -> int:
    return len(Path(spec.url).read_text().splitlines())


def test_a_read_that_times_out_is_retried_in_a_fresh_reader(
    scripted, tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(isolated, "RETRY_FACTORS", (GENEROUS_RETRY_S,), raising=False)
    spec = scripted_spec(tmp_path, "hang-once")  # a good file the busy machine delayed
    assert read_trial_isolated(spec, 1) == []
    assert attempts(spec) == 2


def test_a_read_that_does_not_time_out_is_not_repeated(scripted, tmp_path) -> None:
    spec = scripted_spec(tmp_path, "ok")
    assert read_trial_isolated(spec, GENEROUS_RETRY_S) == []
    assert read_trial_isolated(spec, GENEROUS_RETRY_S) == []
    assert attempts(spec) == 2  # once per call


def test_a_reader_that_hangs_every_time_is_a_permanent_left_out(scripted, tmp_path) -> None:
    spec = scripted_spec(tmp_path, "hang")
    outcome = process_trial(
        spec, trial_key(spec), Staging(str(tmp_path / "s.zarr")), read_timeout_s=0.5
    )
    assert not outcome.ok and not outcome.retry
    assert outcome.reason == (
        "reading took longer than 0.5 s and, retried, longer than 2 s; stopped (the scripted "
        "reader hangs on this file?)"
    )
    assert attempts(spec) == 2
    assert read_trial_isolated(scripted_spec(tmp_path, "ok"), GENEROUS_RETRY_S) == []


def test_a_fresh_readers_start_up_is_not_the_trials_time(scripted, tmp_path, monkeypatch) -> None:
    # The child imports for longer than the trial's limit; the read itself is instant.
    monkeypatch.setenv("SCRIPTED_STARTUP", "8")
    monkeypatch.setattr(isolated, "RETRY_FACTORS", (GENEROUS_RETRY_S / 5,), raising=False)
    spec = scripted_spec(tmp_path, "ok")
    assert read_trial_isolated(spec, 5) == []
    assert attempts(spec) == 1


def test_a_reader_that_never_starts_is_an_error_that_may_pass(
    scripted, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("SCRIPTED_STARTUP", "never")
    monkeypatch.setattr(isolated, "STARTUP_TIMEOUT_S", 1.0, raising=False)
    spec = scripted_spec(tmp_path, "ok")
    with pytest.raises(OSError, match="scripted reader process did not start within 1 s"):
        read_trial_isolated(spec, 0.5)
    outcome = process_trial(
        spec, trial_key(spec), Staging(str(tmp_path / "s.zarr")), read_timeout_s=0.5
    )
    assert not outcome.ok and outcome.retry  # the machine's fault, not the file's
    assert not Path(spec.url).exists()  # never read


def test_a_reader_that_dies_at_start_up_is_an_error_that_may_pass(
    scripted, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("SCRIPTED_STARTUP", "exit")
    spec = scripted_spec(tmp_path, "ok")
    with pytest.raises(OSError, match=r"scripted reader process failed to start \(exit code 3\)"):
        read_trial_isolated(spec, GENEROUS_RETRY_S)
    outcome = process_trial(
        spec, trial_key(spec), Staging(str(tmp_path / "s.zarr")), read_timeout_s=GENEROUS_RETRY_S
    )
    assert not outcome.ok and outcome.retry  # not blamed on the file

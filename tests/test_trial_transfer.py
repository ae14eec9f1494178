"""A trial's way through a worker without needless copies: the reader child hands big arrays
over a mapped file (not the pipe), staged batches are written straight to disk and read back as
maps; every value arrives unchanged. Data: a short file of the long-C3D benchmark generator."""

from __future__ import annotations

import dataclasses
import glob
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import builder
from builder.catalog import expand_trials, load_catalog
from builder.datasets.registry import read_trial
from builder.errors import SourceError
from builder.pipeline import isolated
from builder.pipeline.isolated import read_trial_isolated
from builder.processing.emg import EmgProcessing
from builder.processing.trial import build_strides, empty_batch
from builder.records import StrideBatch, TrialRecording, TrialSpec
from builder.store.staging import Staging
from builder.synthetic.long_c3d import LONG_MUSCLES, write_long_trials


@pytest.fixture(scope="module")
def long_trials(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[TrialSpec]]:
    """Two 20-second files (S01 without hum, S02 with)."""
    files, catalog = write_long_trials(tmp_path_factory.mktemp("long"), 2, 1 / 3)
    specs, _ = expand_trials(load_catalog(str(catalog)))
    return files, sorted(specs, key=lambda s: s.url)


def _arrays(recordings: list[TrialRecording]) -> list[np.ndarray]:
    out = []
    for recording in recordings:
        for side in recording.sides:
            out += [side.heel_strikes_s, side.toe_offs_s]
            out += [s.data for s in (side.emg, side.kinematics, side.kinetics) if s is not None]
    return out


def _leftovers() -> list[str]:
    return glob.glob(os.path.join(isolated._buffer_dir(), f"gait-builder-{os.getpid()}-*"))


def test_the_long_c3d_generator_writes_16_emg_channels_and_keeps_its_files(
    long_trials, tmp_path
) -> None:
    files, specs = long_trials
    assert len(specs) == 2 and {s.subject for s in specs} == {"S01", "S02"}
    (recording,) = read_trial(specs[0])
    assert recording.event_source == "kinematics"  # no EVENT group: found from the markers
    for side in recording.sides:
        assert side.emg is not None and side.emg.rate_hz == 2000.0
        assert int(np.isfinite(side.emg.data).all(axis=0).sum()) == len(LONG_MUSCLES)
        assert side.emg.n_samples >= 19 * 2000 and len(side.heel_strikes_s) >= 10
    stamps = [f.stat().st_mtime_ns for f in files]
    again, _ = write_long_trials(files[0].parents[1], 2, 1 / 3)
    assert again == files and [f.stat().st_mtime_ns for f in files] == stamps


def test_the_reader_child_hands_over_identical_writable_arrays(long_trials) -> None:
    _, specs = long_trials
    for spec in specs:
        direct, isolated_ = read_trial(spec), read_trial_isolated(spec)
        assert dataclasses.replace(direct[0], sides=()) == dataclasses.replace(
            isolated_[0], sides=()
        )
        for a, b in zip(_arrays(direct), _arrays(isolated_), strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert np.array_equal(a, b, equal_nan=True)
            assert b.flags.writeable and b.flags.aligned
        emg = isolated_[0].sides[0].emg
        assert emg is not None and emg.data.nbytes > isolated.OUT_OF_BAND_MIN_BYTES
        emg.data[0] = 0.0  # a private copy-on-write map: the next read is unaffected
    assert _leftovers() == []


def test_arrays_go_through_the_pipe_when_the_file_cannot_be_written(
    long_trials, tmp_path, monkeypatch
) -> None:
    _, specs = long_trials
    monkeypatch.setattr(isolated, "_buffer_dir", lambda: str(tmp_path / "missing"))
    through_pipe = read_trial_isolated(specs[1])
    for a, b in zip(_arrays(read_trial(specs[1])), _arrays(through_pipe), strict=True):
        assert np.array_equal(a, b, equal_nan=True)


# A reader child whose test adapter returns big arrays ("big") or dies of a signal ("crash").
SCRIPTED_CHILD = """
import os, signal, sys
sys.path.insert(0, {repo!r})
import numpy as np
from builder.datasets import SourceAdapter, register_adapter
from builder.pipeline.isolated import _serve
from builder.records import SideRecording, TimeSeries, TrialRecording


@register_adapter
class Scripted(SourceAdapter):
    name = "scripted"
    emg_kinds = frozenset({{"raw"}})

    def read(self, spec, options, files):
        if spec.trial == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        emg = np.arange(300_000 * 13, dtype=np.float64).reshape(300_000, 13)
        side = SideRecording("L", TimeSeries(emg, 2000.0, 0.5, "V"), None, None, np.ones(3))
        trim = os.environ.get("MALLOC_TRIM_THRESHOLD_")
        return [TrialRecording((side,), "raw", "events", meta={{"trim": trim}})]


_serve(int(sys.argv[1]), int(sys.argv[2]))
"""


def test_a_crashing_reader_is_still_reported_and_leaves_no_file(tmp_path, monkeypatch) -> None:
    script = tmp_path / "scripted_child.py"
    script.write_text(SCRIPTED_CHILD.format(repo=str(Path(builder.__file__).parents[1])))
    monkeypatch.setattr(isolated, "_READER", None)  # the next read starts the scripted child
    monkeypatch.setattr(isolated, "_CHILD", (str(script),))
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # as Dask's nanny sets it

    def spec(trial: str) -> TrialSpec:
        return TrialSpec(
            source="test", adapter="scripted", url=str(tmp_path / trial), dataset="test",
            subject="s01", activity="walk", trial=trial,
        )  # fmt: skip

    try:
        (big,) = read_trial_isolated(spec("big"))
        emg = big.sides[0].emg
        assert emg is not None and emg.start_s == 0.5
        assert big.meta == {"trim": None}  # the reader child runs without Dask's setting
        assert np.array_equal(emg.data, np.arange(300_000 * 13.0).reshape(300_000, 13))
        with pytest.raises(SourceError, match=r"scripted reader crashed .*killed by SIGSEGV"):
            read_trial_isolated(spec("crash"))
        (again,) = read_trial_isolated(spec("big"))  # a fresh child took over
        assert (
            again.sides[0].emg is not None and again.sides[0].emg.data[-1, -1] == emg.data[-1, -1]
        )
        assert _leftovers() == []
    finally:
        if isolated._READER is not None:
            isolated._READER.kill()


def _equal(a: StrideBatch, b: StrideBatch) -> None:
    for field in dataclasses.fields(StrideBatch):
        x, y = getattr(a, field.name), getattr(b, field.name)
        assert x.dtype == y.dtype and x.shape == y.shape, field.name
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), field.name


def test_staged_batches_come_back_identical_and_mapped(long_trials, tmp_path) -> None:
    _, specs = long_trials
    (recording,) = read_trial(specs[1])
    settings = EmgProcessing.model_validate(specs[1].processing)
    batch = build_strides(recording, settings, activity="walk").batch
    staging = Staging(str(tmp_path / "gait.zarr"))
    for key, staged in (("long", batch), ("empty", empty_batch())):
        staging.save_batch(key, staged)
        loaded = staging.load_batch(key)
        _equal(staged, loaded)
        assert not loaded.emg.flags.writeable  # a map of the file, not a copy
    assert sorted(os.listdir(tmp_path / "gait.zarr.build" / "trials")) == [
        "empty.npz",
        "long.npz",
    ]


def test_a_compressed_staged_batch_is_still_read(tmp_path) -> None:
    """Written by ``np.savez_compressed`` (members deflated): read whole, as before."""
    staging = Staging(str(tmp_path / "gait.zarr"))
    staging.save_batch("k", empty_batch())
    path = tmp_path / "gait.zarr.build" / "trials" / "k.npz"
    batch = empty_batch()
    np.savez_compressed(path, **{f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)})
    _equal(batch, staging.load_batch("k"))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
@pytest.mark.parametrize("trim", ["65536", ""])
def test_the_allocator_is_tuned_only_under_dasks_trim_setting(trim: str) -> None:
    """Dask's nanny sets MALLOC_TRIM_THRESHOLD_; process_trial then restores large mmap and
    trim thresholds (glibc), once per process."""
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    if trim:
        env["MALLOC_TRIM_THRESHOLD_"] = trim
    code = "from builder.pipeline.trial import tune_allocator as t; print(t(), t())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == (["True", "True"] if trim else ["False", "False"])

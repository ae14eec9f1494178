"""The per-trial task: bad input becomes a report entry; passing failures are marked for retry."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.catalog import expand_trials, load_catalog
from builder.datasets import read_trial
from builder.formats.files import FileAccess
from builder.pipeline.trial import process_trial
from builder.store.staging import Staging, trial_key

from helpers import copy_demo_subset, demo_catalog


@pytest.fixture
def spec_and_staging(demo_root: Path, tmp_path: Path):
    raw = copy_demo_subset(demo_root, tmp_path / "raw", ("S04",))
    specs, _ = expand_trials(load_catalog(demo_catalog(tmp_path, raw)))
    return specs[0], Staging(str(tmp_path / "gait.zarr"))


def test_a_good_trial_is_staged_with_its_strides(spec_and_staging) -> None:
    spec, staging = spec_and_staging
    key = trial_key(spec)
    outcome = process_trial(spec, key, staging)
    assert outcome.ok and outcome.n_strides == 16 and outcome.event_source == "events"
    assert staging.load_outcome(key) == outcome
    batch = staging.load_batch(key)
    assert batch.n_strides == 16 and batch.emg_offsets[-1] == batch.emg.shape[0]


def test_storage_failures_are_reported_and_retried_next_time(spec_and_staging, monkeypatch) -> None:
    spec, staging = spec_and_staging
    key = trial_key(spec)

    def unavailable(self, url: str) -> str:
        raise OSError(f"{url}: 503 SlowDown")

    monkeypatch.setattr(FileAccess, "local_path", unavailable)
    outcome = process_trial(spec, key, staging, isolate=False)  # the patch lives in this process
    assert not outcome.ok and outcome.retry and "503 SlowDown" in outcome.reason
    monkeypatch.undo()
    assert process_trial(spec, key, staging, isolate=False).ok


def test_permanent_storage_faults_say_what_to_fix_not_to_wait(spec_and_staging, monkeypatch) -> None:
    spec, staging = spec_and_staging
    key = trial_key(spec)

    def forbidden(self, url: str) -> str:
        raise PermissionError(13, "Permission denied", url)

    monkeypatch.setattr(FileAccess, "local_path", forbidden)
    outcome = process_trial(spec, key, staging, isolate=False)
    # Retried by the next run (once fixed), but the reason says what to fix, not to wait.
    assert not outcome.ok and outcome.retry
    assert "permission denied, choose a location you may write to, or fix its permissions" in (
        outcome.reason
    )
    assert "storage answers" not in outcome.reason and spec.url in outcome.reason


def test_bad_input_is_final_and_names_the_problem(spec_and_staging, tmp_path: Path) -> None:
    spec, staging = spec_and_staging
    Path(spec.url).write_bytes(b"\x00" * 600)
    outcome = process_trial(spec, trial_key(spec), staging)
    assert not outcome.ok and not outcome.retry
    assert outcome.reason.startswith(("not a readable C3D file", "file is truncated"))


def test_implausible_or_flat_components_are_left_out_of_their_strides(
    demo_root: Path, tmp_path: Path
) -> None:
    """Values a float32 store cannot hold, or no body produces, never reach it marked present."""
    import dataclasses

    import numpy as np

    from builder.conventions import JOINTS, MUSCLES, PLANES
    from builder.processing.emg import EmgProcessing
    from builder.processing.trial import build_strides

    specs, _ = expand_trials(load_catalog(demo_catalog(tmp_path, demo_root)))
    (spec,) = [s for s in specs if s.url.endswith("S01/walk_v1.20_i+0_t01.c3d")]
    (recording,) = read_trial(spec)
    before = build_strides(recording, EmgProcessing()).batch
    knee, sagittal = JOINTS.index("knee"), PLANES.index("flexion")
    soleus = MUSCLES.index("soleus")
    (side_index,) = [i for i, s in enumerate(recording.sides) if s.side == "L"]
    left = recording.sides[side_index]
    on_left = before.side == "L"
    # A left stride whose kinetics are trusted (on a plate) and whose soleus is recorded.
    stride = int(np.flatnonzero(on_left & before.kinetics_mask[:, knee, sagittal])[0])
    assert before.emg_mask[on_left, soleus].all()
    t0, t1 = before.start_s[stride], before.start_s[stride] + before.duration_s[stride]
    margin = 2 / left.kinetics.rate_hz  # the neighbouring strides share the boundary samples
    inside = (left.kinetics.times() > t0 + margin) & (left.kinetics.times() < t1 - margin)
    kinetics, emg = left.kinetics.data.copy(), left.emg.data.copy()
    kinetics[inside, knee, sagittal] = 1e39  # beyond float32
    kinetics[inside, 0, 0] = 5e3  # finite, but no hip produces 5000 N·m/kg
    emg[:, soleus] = 0.0  # a flat channel
    changed = dataclasses.replace(
        left,
        kinetics=dataclasses.replace(left.kinetics, data=kinetics),
        emg=dataclasses.replace(left.emg, data=emg),
    )
    sides = list(recording.sides)
    sides[side_index] = changed
    result = build_strides(dataclasses.replace(recording, sides=tuple(sides)), EmgProcessing())
    batch, notes = result.batch, result.notes

    assert batch.n_strides == before.n_strides
    assert not batch.kinetics_mask[stride, knee, sagittal] and not batch.kinetics_mask[stride, 0, 0]
    assert np.isnan(batch.kinetics[stride, :, knee, sagittal]).all()
    others = np.ones(batch.n_strides, bool)
    others[stride] = False
    np.testing.assert_array_equal(batch.kinetics_mask[others], before.kinetics_mask[others])
    assert not np.isinf(batch.kinetics).any() and not np.isinf(batch.emg_envelope).any()
    assert not batch.emg_mask[on_left, soleus].any()
    np.testing.assert_array_equal(batch.emg_mask[~on_left], before.emg_mask[~on_left])
    assert any("range: L knee flexion moment" in n for n in notes), notes
    assert any("range: L hip adduction moment" in n for n in notes), notes
    assert any("L soleus" in n and "exact zeros" in n for n in notes), notes
    assert result.quality["range"]["kinetics"] == 2
    assert result.quality["constant_run"]["emg"] == int(on_left.sum())


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (KeyError("platform"), "(KeyError: 'platform')"),
        (ValueError("zero-size array to reduction operation"), "(ValueError: zero-size array"),
    ],
)
def test_unexpected_errors_are_left_out_with_a_sentence(
    spec_and_staging, monkeypatch, error: Exception, expected: str
) -> None:
    """Issue 9, defect 12: never a bare exception string as the reason."""
    from builder.datasets.c3d.adapter import C3DAdapter

    spec, staging = spec_and_staging

    def broken(self, spec, options, files):
        raise error

    monkeypatch.setattr(C3DAdapter, "read", broken)
    outcome = process_trial(spec, trial_key(spec), staging, isolate=False)
    assert not outcome.ok and not outcome.retry
    assert outcome.reason.startswith("unexpected error while reading it with the c3d adapter")
    assert expected in outcome.reason and "please report it" in outcome.reason


def test_errors_relayed_from_the_reader_process_are_sentences_too(spec_and_staging) -> None:
    from builder.pipeline.trial import describe_error

    assert describe_error(RuntimeError("ValueError: zero-size array")) == (
        "ValueError: zero-size array"
    )
    assert describe_error(KeyError("platform")) == "KeyError: 'platform'"
    assert describe_error(OSError()) == "OSError"

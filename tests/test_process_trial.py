"""The per-trial task: bad input becomes a report entry; passing failures are marked for retry."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.build import process_trial
from builder.catalog import expand_trials, load_catalog
from builder.sources import FileAccess
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


def test_bad_input_is_final_and_names_the_problem(spec_and_staging, tmp_path: Path) -> None:
    spec, staging = spec_and_staging
    Path(spec.url).write_bytes(b"\x00" * 600)
    outcome = process_trial(spec, trial_key(spec), staging)
    assert not outcome.ok and not outcome.retry
    assert outcome.reason.startswith(("not a readable C3D file", "file is truncated"))

"""Versioned outputs: readers only ever see a complete build, or a clear 'under way' error."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from builder.errors import StoreError
from builder.store.reader import open_store
from builder.store.staging import Staging, TrialOutcome
from builder.store.versions import versioned_output


def write_version(path: str, value: float) -> None:
    group = zarr.open_group(path, mode="w", zarr_format=3)
    array = group.create_array("x", shape=(3,), chunks=(3,), dtype="f4", dimension_names=["i"])
    array[:] = value
    zarr.consolidate_metadata(path)


def test_before_the_first_build_completes_readers_get_a_clear_error(tmp_path: Path) -> None:
    output = versioned_output(str(tmp_path / "gait.zarr"))
    output.new_version()
    with pytest.raises(
        ValueError, match="no complete build of this store exists yet; a build is under way"
    ):
        xr.open_zarr(tmp_path / "gait.zarr")
    with pytest.raises(StoreError, match="no complete build yet"):
        open_store(str(tmp_path / "gait.zarr"))


def test_publish_moves_the_pointer_and_readers_keep_the_old_build_meanwhile(tmp_path: Path) -> None:
    url = str(tmp_path / "gait.zarr")
    output = versioned_output(url)
    first = output.new_version()
    write_version(output.version_path(first), 1.0)
    output.publish(first)
    assert xr.open_zarr(url).x.values.tolist() == [1.0, 1.0, 1.0]

    second = output.new_version()
    write_version(output.version_path(second), 2.0)
    # Not yet published: readers still get the first build, whole.
    assert xr.open_zarr(url).x.values.tolist() == [1.0, 1.0, 1.0]
    output.publish(second)
    assert xr.open_zarr(url).x.values.tolist() == [2.0, 2.0, 2.0]
    assert output.published() == second and os.path.islink(url)


def test_prune_keeps_the_published_and_newest_versions(tmp_path: Path) -> None:
    output = versioned_output(str(tmp_path / "gait.zarr"))
    made = [output.new_version() for _ in range(4)]
    for version in made:
        write_version(output.version_path(version), 0.0)
    output.publish(made[2])
    removed = output.prune(keep=2)
    assert removed == made[:2] and output.versions() == made[2:]


def test_refuses_to_replace_a_directory_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "gait.zarr").mkdir()
    with pytest.raises(StoreError, match="not written by builder"):
        versioned_output(str(tmp_path / "gait.zarr")).published()


def test_staged_outcomes_round_trip_and_torn_files_count_as_unfinished(tmp_path: Path) -> None:
    staging = Staging(str(tmp_path / "gait.zarr"))
    outcome = TrialOutcome(
        key="abc",
        ok=True,
        notes=("L: 1 stride beyond the recording dropped",),
        event_source="events",
        emg_lengths=(1000, 1010),
        side=("L", "R"),
        start_s=(0.5, 1.0),
        duration_s=(1.0, 1.01),
        envelope_peak=((1e-4, np.nan), (2e-4, np.nan)),
        columns={"subject": ("S01", "S01"), "speed_mps": (np.nan, 1.2)},
    )
    staging.save_outcome(outcome)
    loaded = staging.load_outcome("abc")
    assert loaded == outcome
    np.testing.assert_array_equal(loaded.peaks_array(2), [[1e-4, np.nan], [2e-4, np.nan]])

    torn = tmp_path / "gait.zarr.build" / "trials" / "def.json"
    torn.write_text('{"key": "def", "ok": tr')
    assert staging.load_outcome("def") is None


def test_one_build_per_output_and_stale_locks_are_taken_over(tmp_path: Path) -> None:
    staging = Staging(str(tmp_path / "gait.zarr"))
    busy = pytest.raises(StoreError, match=r"another build .* is writing this output")
    with staging.lock(), busy, staging.lock():
        pass
    lock = tmp_path / "gait.zarr.build" / "lock"
    assert not lock.exists()  # released
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": 2**22 + 12345}))  # dead
    with staging.lock():
        assert json.loads(lock.read_text())["pid"] == os.getpid()

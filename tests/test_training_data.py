"""Training data: stride selection, stable patient-wise splits, chunk-wise loading through
DataLoader worker processes, and continuous series rebuilt from consecutive strides."""

from __future__ import annotations

import gc
import hashlib
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

from helpers import import_optional

torch = import_optional("torch")

from builder.errors import StoreError  # noqa: E402
from builder.training.data import (  # noqa: E402
    READ_THREAD,
    ChunkShuffleSampler,
    StoreSource,
    StrideDataset,
    StrideQuery,
    continuous_segments,
    retime,
    split_subjects,
    stride_loader,
    subject_folds,
    subject_ids,
)


@pytest.fixture(scope="module")
def store(demo_store) -> Path:
    return demo_store[0]


SUBJECTS = [f"lab{d}/S{i:02d}" for d in range(3) for i in range(17)]


def test_splits_are_disjoint_complete_and_the_same_in_every_process() -> None:
    parts = split_subjects(SUBJECTS, (0.6, 0.2, 0.2), seed=3)
    assert sorted(s for part in parts for s in part) == sorted(SUBJECTS)
    assert [len(p) for p in parts] == [31, 10, 10]
    code = (
        "from builder.training.data import split_subjects;"
        f"print(split_subjects({SUBJECTS!r}, (0.6, 0.2, 0.2), seed=3))"
    )
    for hash_seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
        ).stdout  # fmt: skip
        assert out.strip() == str(parts)
    assert split_subjects(SUBJECTS, (0.6, 0.2, 0.2), seed=4) != parts  # the seed matters
    # A new subject does not reshuffle the others: at most one moves between parts.
    grown = split_subjects([*SUBJECTS, "lab9/S99"], (0.6, 0.2, 0.2), seed=3)
    moved = sum(len(set(a) - set(b)) for a, b in zip(parts, grown, strict=True))
    assert moved <= 2


def test_folds_hold_every_subject_once() -> None:
    folds = subject_folds(SUBJECTS, 5, seed=0)
    assert sorted(s for fold in folds for s in fold) == sorted(SUBJECTS)
    assert {len(f) for f in folds} <= {10, 11}
    with pytest.raises(ValueError, match="cannot make 5 folds"):
        subject_folds(SUBJECTS[:3], 5)


def test_queries_select_by_column_and_present_components(store: Path) -> None:
    source = StoreSource(str(store))
    table, masks = source.table(), source.masks()
    walking_left = StrideQuery(activities=("walk",), sides=("L",), kinetics=("hip.flexion",))
    chosen = walking_left.select(table, masks)
    expected = (
        (table["activity"] == "walk").to_numpy()
        & (table["side"] == "L").to_numpy()
        & masks["kinetics"][:, 0, 2]
    )
    np.testing.assert_array_equal(chosen, np.flatnonzero(expected))
    assert 0 < len(chosen) < len(table)
    assert (
        len(StrideQuery(emg=("soleus",)).select(table, masks)) == masks["emg_envelope"][:, 8].sum()
    )
    with pytest.raises(ValueError, match="unknown component"):
        StrideQuery(kinematics=("elbow.flexion",)).select(table, masks)


@pytest.mark.parametrize("cache", [False, True])
def test_loader_workers_deliver_every_stride_once_in_chunk_sized_batches(
    store: Path, cache: bool
) -> None:
    source = StoreSource(str(store))
    table, masks = source.table(), source.masks()
    indices = StrideQuery(kinematics=("knee.flexion",)).select(table, masks)
    dataset = StrideDataset(source, indices, signals=("kinematics", "emg_envelope"), cache=cache)
    loader = stride_loader(dataset, 16, seed=1, num_workers=2, chunks_per_pool=1)
    sampler = loader.batch_sampler
    group = zarr.open_group(str(store), mode="r")
    kinematics = group["kinematics"][...]
    seen = []
    chunk = source.chunk_strides()
    for batch in loader:
        strides = batch["stride"].numpy()
        seen.extend(strides.tolist())
        # whole chunks: a batch draws on one chunk, or on two where one's strides run out
        assert len(np.unique(strides // chunk)) <= 2
        np.testing.assert_array_equal(batch["kinematics"].numpy(), kinematics[strides])
        assert batch["emg_mask"].dtype == torch.bool
    assert sorted(seen) == sorted(indices.tolist())
    first = [b for b in sampler]
    sampler.set_epoch(1)
    assert [b for b in sampler] != first  # reshuffled per epoch
    sampler.set_epoch(0)
    assert [b for b in sampler] == first  # … deterministically


LOADED = ("kinematics", "kinematics_mask", "emg_envelope", "emg_mask")


def _read_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(READ_THREAD)]


def _threads_end(timeout: float = 20.0) -> bool:
    for thread in _read_threads():
        thread.join(timeout)
    return not _read_threads()


@pytest.mark.parametrize("workers", [0, 2])
def test_read_ahead_gives_the_direct_reads_in_the_sampler_order(store: Path, workers: int) -> None:
    """Chunks read ahead by threads, at most 3 held (the store has 31: most are dropped and
    read again next epoch), and with workers handed over in shared memory: every batch is
    the sampler's batch, value for value, epoch after epoch."""
    source = StoreSource(str(store))
    indices = np.arange(0, len(source.table()), 2)
    dataset = StrideDataset(
        source, indices, signals=("kinematics", "emg_envelope"), max_chunks=3, read_threads=2
    )
    assert len(indices) // source.chunk_strides() >= 10 * dataset.max_chunks // 2
    loader = stride_loader(dataset, 16, seed=1, num_workers=workers)
    sampler = loader.batch_sampler
    assert isinstance(sampler, ChunkShuffleSampler)
    group = zarr.open_group(StoreSource(str(store)).url, mode="r")
    direct = {name: group[name][...] for name in LOADED}
    order = hashlib.sha256()
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        expected = [indices[positions] for positions in sampler]
        batches = list(loader)
        assert len(batches) == len(expected) == len(sampler)
        for batch, strides in zip(batches, expected, strict=True):
            assert sorted(batch) == sorted([*LOADED, "stride"])
            np.testing.assert_array_equal(batch["stride"].numpy(), strides)
            for name in LOADED:
                np.testing.assert_array_equal(batch[name].numpy(), direct[name][strides])
            assert batch["kinematics"].dtype == torch.float32
            assert batch["emg_mask"].dtype == torch.bool
            order.update(np.asarray(strides // 2, np.int64).tobytes())
        if workers == 0:
            assert len(dataset._chunks) <= dataset.max_chunks
    if workers == 0:  # one stream: the order of the sampler before reading ahead
        assert order.hexdigest() == (
            "c6de2bd77d3c47856d1350013c25df6ecbb544758561ff896ff51df3365ce0dd"
        )
        assert _threads_end()  # the last batch of the epoch lets the read threads end


def test_worker_streams_split_the_chunks_between_workers(store: Path) -> None:
    """With a stream per worker, the batches the DataLoader deals to worker 0 (even) and to
    worker 1 (odd) draw on different chunks: each chunk is read and decoded once."""
    source = StoreSource(str(store))
    dataset = StrideDataset(source, np.arange(len(source.table())), max_chunks=4)
    sampler = ChunkShuffleSampler(dataset, 16, seed=2, streams=2)
    batches = list(sampler)
    assert sorted(p for b in batches for p in b) == list(range(len(dataset)))
    assert len(batches) == len(sampler)
    chunks = [set(dataset.indices[b] // dataset.chunk_size) for b in batches]
    dealt = 2 * min(sum(1 for _ in sampler._stream(*d)) for d in sampler._deal())
    even = set().union(*chunks[:dealt:2])
    odd = set().union(*chunks[1:dealt:2])
    assert even and odd and not even & odd
    assert sum(b.last for b in batches) == 2  # each stream's (worker's) last batch says so


def test_a_failed_background_read_is_one_error_and_no_hang(store: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.zarr"
    shutil.copytree(StoreSource(str(store)).url, copy)
    shards = [p for p in (copy / "kinematics").rglob("*") if p.is_file() and p.name != "zarr.json"]
    shard = min(shards, key=lambda p: [int(n) for n in p.name.split(".")[1:] or [0]])
    shard.write_bytes(os.urandom(shard.stat().st_size))
    source = StoreSource(str(copy))
    dataset = StrideDataset(source, np.arange(len(source.table())), max_chunks=3)
    loader = stride_loader(dataset, 16, seed=0)
    with pytest.raises(StoreError, match=r"copy\.zarr: reading 'kinematics' strides \d+\.\.\d+"):
        for _ in loader:
            pass
    del loader, dataset
    gc.collect()
    assert _threads_end()


def test_read_threads_end_with_the_loader(store: Path) -> None:
    """A loader left mid-epoch, reads still ahead, leaves no thread behind once dropped."""
    source = StoreSource(str(store))
    dataset = StrideDataset(source, np.arange(len(source.table())), max_chunks=6)
    loader = stride_loader(dataset, 16, seed=0)
    batches = iter(loader)
    next(batches)
    next(batches)
    assert _read_threads()
    del batches, loader, dataset
    gc.collect()
    assert _threads_end()


def test_indices_outside_the_store_are_refused_by_name(store: Path) -> None:
    source = StoreSource(str(store))
    n = len(source.table())
    with pytest.raises(ValueError, match=rf"stride indices \[{n}\] are outside the store"):
        StrideDataset(source, np.array([0, n]))


def test_splits_of_a_store_keep_each_person_in_one_part(store: Path) -> None:
    table = StoreSource(str(store)).table()
    ids = subject_ids(table)
    train, test = split_subjects(ids, (0.5, 0.5))
    assert set(ids[np.isin(ids, train)]).isdisjoint(ids[np.isin(ids, test)])
    assert set(train) | set(test) == set(ids) and "demo/S01" in set(ids)


def test_consecutive_strides_are_rebuilt_into_real_time() -> None:
    """A 1.3 Hz sine cut into strides of different durations comes back as the sine."""
    durations = np.array([1.02, 0.95, 1.10, 1.05])
    starts = np.concatenate([[0.0], np.cumsum(durations)[:-1]])
    phase = np.linspace(0, 1, 200)
    times = starts[:, None] + durations[:, None] * phase[None, :]
    strides = np.sin(2 * np.pi * 1.3 * times)[..., None]  # (4, 200, 1)
    series = retime(strides, durations, rate_hz=100.0)
    expected = np.sin(2 * np.pi * 1.3 * np.arange(len(series)) / 100.0)
    assert len(series) == int(durations.sum() * 100) + 1
    np.testing.assert_allclose(series[:, 0], expected, atol=2e-3)


def test_a_gap_between_strides_starts_a_new_segment() -> None:
    table = pd.DataFrame(
        {
            "dataset": "d", "subject": "s", "trial": "t", "subtrial": "", "source_path": "f",
            "side": ["L", "L", "L", "L", "R"],
            "source_start_s": [0.0, 1.0, 2.0, 3.5, 0.4],
            "duration_s": [1.0, 1.0, 1.0, 1.0, 1.0],
        }
    )  # fmt: skip
    segments = continuous_segments(table)
    assert [s.strides.tolist() for s in segments] == [[0, 1, 2], [3], [4]]
    assert [s.start_s for s in segments] == [0.0, 3.5, 0.4]


def test_the_demo_store_has_continuous_segments(store: Path) -> None:
    table = StoreSource(str(store)).table()
    segments = continuous_segments(table)
    placed = np.isfinite(table["source_start_s"].to_numpy(float))  # strides with source times
    assert sum(len(s.strides) for s in segments) == placed.sum() > 0.85 * len(table)
    assert max(len(s.strides) for s in segments) >= 4  # whole walking bouts, not single strides

"""Training data from a store (any fsspec URL): stride selection, patient-wise splits, a
PyTorch dataset that reads whole chunks, and continuous series for causal models.

Causal models see real time. The store keeps strides time-normalised (200 samples each), so a
continuous series is rebuilt from the consecutive strides of one trial and side: each stride is
resampled from its 200 points onto its own duration at the model's rate, and strides follow one
another only where the next starts where the previous ended (``source_start_s`` +
``duration_s``, within ``GAP_TOLERANCE_S``); a gap starts a new segment. Windows never cross a
segment boundary, so two strides with time between them are never glued together.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
import torch
import zarr
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from builder.conventions import JOINTS, MUSCLES, PLANES, SAMPLES_PER_STRIDE
from builder.errors import BuilderError, StoreError, one_line
from builder.store.faults import is_storage_error, storage_error
from builder.store.layout import store_array
from builder.store.location import StoreLocation
from builder.store.reader import group_stride_table

GAP_TOLERANCE_S = 0.002
CACHED_CHUNKS = 6  # decoded chunks a dataset holds: the current pool of 2, and 4 read ahead
READ_THREADS = 4  # threads reading and decoding chunks (zstd decoding releases the GIL)
READ_THREAD = "stride-read"  # their name prefix
SIGNALS = ("kinematics", "kinetics", "emg_envelope")
_MASKS = {"kinematics": "kinematics_mask", "kinetics": "kinetics_mask", "emg_envelope": "emg_mask"}


# --- which strides ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StrideQuery:
    """Which strides to train on: column values (empty = any) and components that must be
    present (``"hip.flexion"`` for kinematics/kinetics, a muscle name for EMG)."""

    datasets: tuple[str, ...] = ()
    activities: tuple[str, ...] = ()
    sides: tuple[str, ...] = ()
    populations: tuple[str, ...] = ()
    emg_kinds: tuple[str, ...] = ()
    kinematics: tuple[str, ...] = ()
    kinetics: tuple[str, ...] = ()
    emg: tuple[str, ...] = ()

    def select(self, table: pd.DataFrame, masks: dict[str, np.ndarray]) -> np.ndarray:
        """Indices (sorted) of the strides of ``table`` that match."""
        keep = np.ones(len(table), bool)
        for column, wanted in (
            ("dataset", self.datasets),
            ("activity", self.activities),
            ("side", self.sides),
            ("population", self.populations),
            ("emg_kind", self.emg_kinds),
        ):
            if wanted:
                keep &= table[column].isin(wanted).to_numpy()
        for signal, components in (
            ("kinematics", self.kinematics),
            ("kinetics", self.kinetics),
            ("emg_envelope", self.emg),
        ):
            for component in components:
                index: tuple[slice | int, ...] = (slice(None), *component_index(signal, component))
                keep &= masks[signal][index]
        return np.flatnonzero(keep)


def component_index(signal: str, component: str) -> tuple[int, ...]:
    """Index of a component in a signal's trailing dims: ``"knee.flexion"`` or a muscle."""
    if signal == "emg_envelope":
        if component not in MUSCLES:
            raise ValueError(f"unknown muscle {component!r}; muscles are {list(MUSCLES)}")
        return (MUSCLES.index(component),)
    joint, _, plane = component.partition(".")
    if joint not in JOINTS or plane not in PLANES:
        raise ValueError(
            f"unknown component {component!r}; use <joint>.<plane> of {JOINTS}, {PLANES}"
        )
    return JOINTS.index(joint), PLANES.index(plane)


# --- patient-wise splits ----------------------------------------------------------------------


def subject_ids(table: pd.DataFrame) -> np.ndarray:
    """One id per stride that names its person: ``<dataset>/<subject>``."""
    return (table["dataset"].astype(str) + "/" + table["subject"].astype(str)).to_numpy()


def _rank(subject: str, seed: int) -> str:
    # sha256, not hash(): stable across runs, processes and machines (PYTHONHASHSEED)
    return hashlib.sha256(f"{seed}:{subject}".encode()).hexdigest()


def split_subjects(
    subjects: Sequence[str], fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0
) -> list[list[str]]:
    """Subjects split into parts of the given fractions (train, validation, test): each subject in
    exactly one part, the same parts for the same subjects on any machine. Subjects are ordered
    by a keyed hash, so adding subjects never moves the others between parts' boundaries more
    than their share."""
    if not np.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise ValueError(f"fractions must be ≥ 0 and sum to 1, got {list(fractions)}")
    ordered = sorted(set(subjects), key=lambda s: _rank(s, seed))
    bounds = np.round(np.cumsum([0.0, *fractions]) * len(ordered)).astype(int)
    return [sorted(ordered[a:b]) for a, b in pairwise(bounds)]


def subject_folds(subjects: Sequence[str], k: int, seed: int = 0) -> list[list[str]]:
    """K folds of subjects (each subject in exactly one fold), stable like ``split_subjects``;
    also folds of any other ids (trials)."""
    if k < 2:
        raise ValueError("k-fold needs k ≥ 2")
    ordered = sorted(set(subjects), key=lambda s: _rank(s, seed))
    if len(ordered) < k:
        raise ValueError(f"{len(ordered)} subjects cannot make {k} folds")
    return [sorted(ordered[i::k]) for i in range(k)]


def first_subjects(subjects: Sequence[str], n: int | None, seed: int = 0) -> list[str]:
    """The first ``n`` subjects in the stable keyed order (all when ``n`` is None)."""
    ordered = sorted(set(subjects), key=lambda s: _rank(s, seed))
    return ordered if n is None else ordered[:n]


def split_strides(
    table: pd.DataFrame,
    indices: np.ndarray,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    max_subjects: int | None = None,
) -> list[np.ndarray]:
    """The strides ``indices`` split patient-wise into parts (train, validation, test)."""
    people = subject_ids(table)[indices]
    chosen = first_subjects(people, max_subjects, seed)
    if len(chosen) < len(fractions):
        raise ValueError(
            f"{len(chosen)} subjects cannot be split into {len(fractions)} patient-wise parts"
        )
    parts = split_subjects(chosen, fractions, seed)
    if not all(parts):
        raise ValueError(
            f"{len(chosen)} subjects leave a part of the split {list(fractions)} empty"
        )
    return [indices[np.isin(people, part)] for part in parts]


# --- the store, opened once per process -------------------------------------------------------


@dataclass
class StoreSource:
    """A store URL and its options, pinned to the version it opens now; opens the zarr group
    lazily, once per process, so that DataLoader workers (spawned: s3fs is not fork-safe)
    each open their own."""

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    _group: zarr.Group | None = field(default=None, init=False, repr=False, compare=False)
    _pid: int = field(default=-1, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Pin the version now: a publish during training must not change what workers read.
        self.url = StoreLocation(self.url, self.storage_options).pin()

    @property
    def location(self) -> StoreLocation:
        """The pinned version's location."""
        return StoreLocation(self.url, self.storage_options)

    def group(self) -> zarr.Group:
        if self._group is None or self._pid != os.getpid():
            self._group, self._pid = self.location.open_group(), os.getpid()
        return self._group

    def array(self, name: str) -> zarr.Array:
        return store_array(self.group(), name)

    def table(self) -> pd.DataFrame:
        return group_stride_table(self.group())

    def masks(self) -> dict[str, np.ndarray]:
        return {signal: np.asarray(self.array(mask)[...]) for signal, mask in _MASKS.items()}

    def chunk_strides(self) -> int:
        """Strides per chunk of the stride-chunked arrays (the unit a read fetches)."""
        return int(self.array("kinematics").chunks[0])

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]


# --- a dataset of strides ---------------------------------------------------------------------


class PlannedBatch(list[int]):
    """Dataset positions of one batch, with the store chunks that this and the coming batches
    of the epoch draw from, in order of first use (``ahead``: what the dataset reads ahead),
    and whether it is the epoch's last batch (the read threads may stop)."""

    def __init__(self, positions: Sequence[int], ahead: Sequence[int], last: bool) -> None:
        super().__init__(positions)
        self.ahead = tuple(ahead)
        self.last = last


class StrideDataset(Dataset):
    """Strides ``indices`` of a store as dicts of float32 tensors (``signals`` plus their masks).

    A store chunk (its rows of every array read) is read and decoded once, by background
    threads, ahead of need: ``ChunkShuffleSampler`` hands each batch the chunk order of the
    epoch (``PlannedBatch``), and up to ``max_chunks`` decoded chunks are kept (those the
    current batches draw from and those read ahead); batches are gathered from them.
    ``cache=True`` keeps every chunk read in RAM for later epochs. :meth:`batch` gives a batch
    (in a DataLoader worker process, in one shared-memory block the main process maps).
    """

    def __init__(
        self,
        source: StoreSource,
        indices: np.ndarray,
        signals: Sequence[str] = SIGNALS,
        cache: bool = False,
        max_chunks: int = CACHED_CHUNKS,
        read_threads: int = READ_THREADS,
    ) -> None:
        unknown = sorted(set(signals) - set(SIGNALS))
        if unknown:
            raise ValueError(f"unknown signals {unknown}; signals are {list(SIGNALS)}")
        if max_chunks < 1 or read_threads < 1:
            raise ValueError("max_chunks and read_threads must be ≥ 1")
        self.source = source
        self.indices = np.asarray(indices, dtype=np.int64)
        n_strides = int(source.array("stride").shape[0])
        outside = self.indices[(self.indices < 0) | (self.indices >= n_strides)]
        if outside.size:
            raise ValueError(
                f"stride indices {outside[:3].tolist()}{'...' if outside.size > 3 else ''} are "
                f"outside the store ({n_strides} strides: 0..{n_strides - 1})"
            )
        self.chunk_size = source.chunk_strides()  # of every stride-chunked array (the layout)
        self.signals = tuple(signals)
        self.names = tuple(n for s in self.signals for n in (s, _MASKS[s]))
        self.cache = cache
        self.max_chunks = max_chunks
        self.read_threads = read_threads
        self._reset()

    def _reset(self) -> None:
        """The per-process state: read threads, and each chunk's reads (running or done)."""
        self._pid = os.getpid()
        self._pool: ThreadPoolExecutor | None = None
        self._chunks: OrderedDict[int, dict[str, Future[np.ndarray]]] = OrderedDict()
        self._arrays: dict[str, zarr.Array] = {}

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers start with no threads and no chunks of their own.
        state = self.__dict__.copy()
        for runtime in ("_pool", "_chunks", "_arrays"):
            state.pop(runtime)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([i])[0]

    def __getitems__(self, positions: Sequence[int]) -> list[dict[str, torch.Tensor]]:
        batch = self.batch(positions)
        return [{name: values[k] for name, values in batch.items()} for k in range(len(positions))]

    def batch(self, positions: Sequence[int]) -> dict[str, torch.Tensor]:
        """The strides at dataset ``positions`` as one batch (each field stacked along a new
        first axis, ``stride`` = their store indices); a ``PlannedBatch`` also starts the reads
        of the chunks it names ahead."""
        if self._pid != os.getpid():
            self._reset()
        strides = self.indices[np.asarray(positions, dtype=np.int64)]
        size = self.chunk_size
        chunk_of = strides // size
        needed = [int(c) for c in np.unique(chunk_of)]
        ahead = getattr(positions, "ahead", ())
        self._schedule(needed, [c for c in ahead if c not in needed])
        arrays = {name: self._array(name) for name in self.names}
        out, packed = _allocate(
            {n: ((len(strides), *a.shape[1:]), a.dtype) for n, a in arrays.items()}
            | {"stride": ((len(strides),), np.dtype(np.int64))},
            shared=get_worker_info() is not None,
        )
        out["stride"][:] = strides
        for chunk in needed:
            rows = chunk_of == chunk
            local = strides[rows] - chunk * size
            for name in self.names:
                block = self._block(chunk, name, size)
                if len(needed) == 1:
                    np.take(block, local, axis=0, out=out[name])
                else:
                    out[name][rows] = block[local]
        if getattr(positions, "last", False) and self._pool is not None:
            self._pool.shutdown(wait=False)  # the epoch's reads are done: let the threads end
            self._pool = None
        return packed

    def close(self) -> None:
        """Stop the read threads and drop the chunks held (they start again when needed)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._reset()

    # --- chunks: read ahead by threads, decoded once ---

    def _array(self, name: str) -> zarr.Array:
        if name not in self._arrays:
            self._arrays[name] = self.source.array(name)
        return self._arrays[name]

    def _schedule(self, needed: list[int], ahead: list[int]) -> None:
        """Start reading the ``needed`` chunks and as many of ``ahead`` (in order) as the
        bound allows. Chunks neither names are dropped: all of them with a plan, else the
        least recently used beyond the bound."""
        wanted = needed + ahead[: max(self.max_chunks - len(needed), 0)]
        if not self.cache:
            stale = [c for c in self._chunks if c not in wanted]
            if not ahead:
                new = sum(c not in self._chunks for c in needed)
                stale = stale[: max(len(self._chunks) + new - self.max_chunks, 0)]
            for chunk in stale:
                for future in self._chunks.pop(chunk).values():
                    future.cancel()
        for chunk in wanted:
            self._start(chunk)
        for chunk in needed:
            self._chunks.move_to_end(chunk)

    def _start(self, chunk: int) -> None:
        if chunk in self._chunks:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.read_threads, thread_name_prefix=READ_THREAD)
        size = self.chunk_size
        self._chunks[chunk] = {
            name: self._pool.submit(_read_rows, self._array(name), chunk * size, (chunk + 1) * size)
            for name in self.names
        }

    def _block(self, chunk: int, name: str, size: int) -> np.ndarray:
        """Chunk ``chunk`` of ``name``, waiting for its read; a failed read is one error
        naming the store, the array and the strides (and is tried again on the next call)."""
        try:
            return self._chunks[chunk][name].result()
        except Exception as exc:
            self._chunks.pop(chunk, None)
            rows = f"strides {chunk * size}..{(chunk + 1) * size - 1}"
            if isinstance(exc, BuilderError):
                raise
            if is_storage_error(exc):
                raise storage_error(self.source.url, exc, f"reading {name!r} {rows}") from exc
            raise StoreError(
                f"{self.source.url}: reading {name!r} {rows} failed: {one_line(exc)}"
            ) from exc


def _read_rows(array: zarr.Array, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of ``array``, decoded (run by the read threads)."""
    return np.asarray(array[start:stop])


def _allocate(
    fields: dict[str, tuple[tuple[int, ...], np.dtype]], shared: bool
) -> tuple[dict[str, np.ndarray], dict[str, torch.Tensor]]:
    """Empty arrays for a batch's fields and the batch of tensors over them. ``shared`` (in a
    DataLoader worker): all in one shared-memory block, sent to the main process as one
    handle rather than a copy per field."""
    if not shared:
        arrays = {name: np.empty(shape, dtype) for name, (shape, dtype) in fields.items()}
        return arrays, {name: torch.from_numpy(a) for name, a in arrays.items()}
    layout, offset = [], 0
    for name, (shape, dtype) in fields.items():
        offset = -(-offset // 8) * 8  # aligned for every dtype
        layout.append((name, offset, str(dtype), shape))
        offset += int(np.prod(shape)) * dtype.itemsize
    block = torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(offset))
    batch = _SharedBatch(block, layout)
    return {name: tensor.numpy() for name, tensor in batch.items()}, batch


class _SharedBatch(dict[str, torch.Tensor]):
    """A batch whose tensors are views of one shared-memory block; pickles (to the main
    process) as that block and the views' layout, and unpickles as a plain dict."""

    def __init__(self, block: torch.Tensor, layout: list[tuple[str, int, str, tuple]]) -> None:
        super().__init__(_views(block, layout))
        self._block, self._layout = block, layout

    def __reduce__(self) -> tuple[Any, ...]:
        return _views, (self._block, self._layout)


def _views(
    block: torch.Tensor, layout: list[tuple[str, int, str, tuple]]
) -> dict[str, torch.Tensor]:
    views = {}
    for name, offset, dtype, shape in layout:
        kind = torch.from_numpy(np.empty(0, dtype)).dtype
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        views[name] = block[offset : offset + size].view(kind).view(shape)
    return views


def read_strides(
    source: StoreSource, indices: np.ndarray, signals: Sequence[str] = SIGNALS
) -> dict[str, torch.Tensor]:
    """Strides ``indices`` of a store as one batch (signals, masks and ``stride``)."""
    dataset = StrideDataset(source, indices, signals)
    try:
        return dataset.batch(range(len(dataset)))
    finally:
        dataset.close()


class ChunkShuffleSampler(Sampler[list[int]]):
    """Batches of dataset positions that each fall in as few store chunks as possible.

    Per epoch: the chunks are shuffled, ``chunks_per_pool`` of them at a time are pooled and
    their strides shuffled, and the pool is cut into batches. Every position appears exactly
    once per epoch; the order depends only on ``seed`` and the epoch (``set_epoch``). Each
    batch is a ``PlannedBatch`` naming the chunks to read ahead.

    With ``streams`` > 1 (one per DataLoader worker) the pools are dealt to that many streams
    whose batches alternate, as the DataLoader deals batches to its workers: each worker then
    reads and decodes only its own pools' chunks.
    """

    def __init__(
        self,
        dataset: StrideDataset,
        batch_size: int,
        seed: int = 0,
        chunks_per_pool: int = 2,
        drop_last: bool = False,
        streams: int = 1,
    ) -> None:
        if streams < 1:
            raise ValueError("streams must be ≥ 1")
        self.batch_size = batch_size
        self.seed = seed
        self.chunks_per_pool = chunks_per_pool
        self.drop_last = drop_last
        self.streams = streams
        self.epoch = 0
        self.read_ahead = dataset.max_chunks
        chunk_of = dataset.indices // dataset.chunk_size
        self._chunk_ids = np.unique(chunk_of)
        self._groups = [np.flatnonzero(chunk_of == c) for c in self._chunk_ids]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        streams = [self._stream(*dealt) for dealt in self._deal()]
        while streams:  # a batch of each stream in turn, as the DataLoader deals to workers
            alive = []
            for stream in streams:
                batch = next(stream, None)
                if batch is not None:
                    yield batch
                    alive.append(stream)
            streams = alive

    def _deal(self) -> list[tuple[list[np.ndarray], list[np.ndarray]]]:
        """Each stream's pools (chunk groups) and their shuffled positions, for this epoch."""
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self._groups))
        pools = [
            order[s : s + self.chunks_per_pool] for s in range(0, len(order), self.chunks_per_pool)
        ]
        shuffled = [rng.permutation(np.concatenate([self._groups[g] for g in p])) for p in pools]
        k = self.streams
        return [(pools[w::k], shuffled[w::k]) for w in range(k)]

    def _stream(
        self, pools: list[np.ndarray], shuffled: list[np.ndarray]
    ) -> Iterator[PlannedBatch]:
        """One stream's batches; each names the chunks from its latest pool on, the last says so."""
        chunks = [int(self._chunk_ids[g]) for pool in pools for g in pool]
        carry: list[int] = []
        ahead: list[int] = []
        ready: PlannedBatch | None = None
        used = 0
        for pool, positions in zip(pools, shuffled, strict=True):
            ahead, used = chunks[used : used + self.read_ahead], used + len(pool)
            carry.extend(positions.tolist())
            while len(carry) >= self.batch_size:
                if ready is not None:
                    yield ready
                ready, carry = (
                    PlannedBatch(carry[: self.batch_size], ahead, False),
                    carry[self.batch_size :],
                )
        if carry and not self.drop_last:
            if ready is not None:
                yield ready
            ready = PlannedBatch(carry, ahead, False)
        if ready is not None:
            ready.last = True
            yield ready

    def __len__(self) -> int:
        sizes = [sum(len(p) for p in shuffled) for _, shuffled in self._deal()]
        if self.drop_last:
            return sum(n // self.batch_size for n in sizes)
        return sum(-(-n // self.batch_size) for n in sizes)


def collate_strides(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """A batch: each field stacked along a new first axis."""
    return {name: torch.stack([item[name] for item in items]) for name in items[0]}


class _Batches(Dataset):
    """What the DataLoader fetches from: whole batches gathered by ``StrideDataset.batch``
    (not one dict per stride, stacked again)."""

    def __init__(self, dataset: StrideDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, positions: Sequence[int]) -> dict[str, torch.Tensor]:
        return self.dataset.batch(positions)


def _as_batch(batch: Any) -> Any:
    return batch  # already gathered by _Batches


def stride_loader(
    dataset: StrideDataset,
    batch_size: int,
    *,
    seed: int = 0,
    num_workers: int = 0,
    chunks_per_pool: int = 2,
) -> DataLoader:
    """A DataLoader of chunk-wise shuffled batches, read ahead by the dataset's threads.

    No worker processes is the default and the fastest here: reads and decoding already run
    in threads. Worker processes are spawned, never forked (s3fs and its event loop do not
    survive a fork), and hand each batch over as one shared-memory block."""
    return DataLoader(
        _Batches(dataset),
        batch_sampler=ChunkShuffleSampler(
            dataset, batch_size, seed, chunks_per_pool, streams=max(num_workers, 1)
        ),
        num_workers=num_workers,
        multiprocessing_context="spawn" if num_workers else None,
        persistent_workers=num_workers > 0,
        collate_fn=_as_batch,
    )


# --- continuous series for causal models ------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """Consecutive strides of one trial and side with no time between them."""

    strides: np.ndarray  # store indices, in time order
    start_s: float  # source time of the first stride's start


def continuous_segments(table: pd.DataFrame, indices: np.ndarray | None = None) -> list[Segment]:
    """The gap-free runs of strides among ``indices`` (default: all), per trial and side."""
    rows = table if indices is None else table.iloc[np.asarray(indices)]
    keys = ["dataset", "subject", "trial", "subtrial", "source_path", "side"]
    segments = []
    for _, group in rows.groupby(keys, sort=True):
        group = group.sort_values("source_start_s")
        start = group["source_start_s"].to_numpy()
        end = start + group["duration_s"].to_numpy()
        if np.isnan(start).any():
            continue  # no absolute times: cannot be placed in time
        breaks = np.flatnonzero(np.abs(start[1:] - end[:-1]) > GAP_TOLERANCE_S) + 1
        for part in np.split(np.arange(len(group)), breaks):
            segments.append(Segment(group.index.to_numpy()[part], float(start[part[0]])))
    return segments


def retime(strides: np.ndarray, durations_s: np.ndarray, rate_hz: float) -> np.ndarray:
    """Consecutive time-normalised strides ``(n, 200, ...)`` as one series at ``rate_hz``:
    sample k is at k / rate_hz from the first stride's start; each falls in the stride that
    covers it and is interpolated between that stride's points at its phase."""
    ends = np.cumsum(durations_s)
    starts = ends - durations_s
    times = np.arange(int(np.floor(ends[-1] * rate_hz)) + 1) / rate_hz
    which = np.clip(np.searchsorted(ends, times, side="right"), 0, len(durations_s) - 1)
    phase = (times - starts[which]) / durations_s[which] * (SAMPLES_PER_STRIDE - 1)
    left = np.clip(np.floor(phase).astype(np.int64), 0, SAMPLES_PER_STRIDE - 2)
    weight = np.clip(phase - left, 0.0, 1.0).reshape((-1,) + (1,) * (strides.ndim - 2))
    return strides[which, left] * (1 - weight) + strides[which, left + 1] * weight

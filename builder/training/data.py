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
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
import torch
import zarr
from torch.utils.data import DataLoader, Dataset, Sampler

from builder.conventions import JOINTS, MUSCLES, PLANES, SAMPLES_PER_STRIDE
from builder.store.layout import store_array
from builder.store.location import StoreLocation
from builder.store.reader import group_stride_table

GAP_TOLERANCE_S = 0.002
RECENT_CHUNKS = 4  # chunks kept per array without the cache (a pool of 2, and the next)
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


class StrideDataset(Dataset):
    """Strides ``indices`` of a store as dicts of float32 tensors (``signals`` plus their masks).

    ``__getitems__`` gathers a batch from whole chunks and keeps the last few chunks read, so
    with ``ChunkShuffleSampler`` each chunk is read once per epoch (multi-MB reads, not one
    request per stride); ``cache=True`` keeps every chunk in RAM for later epochs.
    """

    def __init__(
        self,
        source: StoreSource,
        indices: np.ndarray,
        signals: Sequence[str] = SIGNALS,
        cache: bool = False,
    ) -> None:
        unknown = sorted(set(signals) - set(SIGNALS))
        if unknown:
            raise ValueError(f"unknown signals {unknown}; signals are {list(SIGNALS)}")
        self.source = source
        self.indices = np.asarray(indices, dtype=np.int64)
        n_strides = int(source.array("stride").shape[0])
        outside = self.indices[(self.indices < 0) | (self.indices >= n_strides)]
        if outside.size:
            raise ValueError(
                f"stride indices {outside[:3].tolist()}{'...' if outside.size > 3 else ''} are "
                f"outside the store ({n_strides} strides: 0..{n_strides - 1})"
            )
        self.signals = tuple(signals)
        self.cache = cache
        self._chunks: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([i])[0]

    def __getitems__(self, positions: Sequence[int]) -> list[dict[str, torch.Tensor]]:
        strides = self.indices[np.asarray(positions, dtype=np.int64)]
        arrays = {}
        for signal in self.signals:
            arrays[signal] = self._read(signal, strides)
            arrays[_MASKS[signal]] = self._read(_MASKS[signal], strides)
        return [
            {
                name: torch.from_numpy(np.ascontiguousarray(values[k]))
                for name, values in arrays.items()
            }
            | {"stride": torch.tensor(int(strides[k]))}
            for k in range(len(strides))
        ]

    def _read(self, name: str, strides: np.ndarray) -> np.ndarray:
        """Rows ``strides`` of array ``name``, gathered from whole chunks: each chunk is read
        and decoded once however many batches draw from it."""
        array = self.source.array(name)
        size = int(array.chunks[0])
        chunk_of = strides // size
        out = np.empty((len(strides), *array.shape[1:]), dtype=array.dtype)
        for chunk in np.unique(chunk_of):
            rows = chunk_of == chunk
            out[rows] = self._chunk(name, array, int(chunk), size)[strides[rows] - chunk * size]
        return out

    def _chunk(self, name: str, array: zarr.Array, chunk: int, size: int) -> np.ndarray:
        key = (name, chunk)
        if key in self._chunks:
            self._chunks.move_to_end(key)
            return self._chunks[key]
        block = np.asarray(array[chunk * size : (chunk + 1) * size])
        self._chunks[key] = block
        if not self.cache:  # keep only the chunks the current batches draw from
            while len(self._chunks) > RECENT_CHUNKS * len(self.signals) * 2:
                self._chunks.popitem(last=False)
        return block


def read_strides(
    source: StoreSource, indices: np.ndarray, signals: Sequence[str] = SIGNALS
) -> dict[str, torch.Tensor]:
    """Strides ``indices`` of a store as one batch (signals, masks and ``stride``)."""
    dataset = StrideDataset(source, indices, signals)
    return collate_strides(dataset.__getitems__(list(range(len(dataset)))))


class ChunkShuffleSampler(Sampler[list[int]]):
    """Batches of dataset positions that each fall in as few store chunks as possible.

    Per epoch: the chunks are shuffled, ``chunks_per_pool`` of them at a time are pooled and
    their strides shuffled, and the pool is cut into batches. Every position appears exactly
    once per epoch; the order depends only on ``seed`` and the epoch (``set_epoch``).
    """

    def __init__(
        self,
        dataset: StrideDataset,
        batch_size: int,
        seed: int = 0,
        chunks_per_pool: int = 2,
        drop_last: bool = False,
    ) -> None:
        self.batch_size = batch_size
        self.seed = seed
        self.chunks_per_pool = chunks_per_pool
        self.drop_last = drop_last
        self.epoch = 0
        chunk_of = dataset.indices // dataset.source.chunk_strides()
        self._groups = [np.flatnonzero(chunk_of == c) for c in np.unique(chunk_of)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self._groups))
        carry: list[int] = []
        for start in range(0, len(order), self.chunks_per_pool):
            pool = np.concatenate(
                [self._groups[g] for g in order[start : start + self.chunks_per_pool]]
            )
            carry.extend(rng.permutation(pool).tolist())
            while len(carry) >= self.batch_size:
                yield carry[: self.batch_size]
                carry = carry[self.batch_size :]
        if carry and not self.drop_last:
            yield carry

    def __len__(self) -> int:
        n = sum(len(g) for g in self._groups)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


def collate_strides(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """A batch: each field stacked along a new first axis."""
    return {name: torch.stack([item[name] for item in items]) for name in items[0]}


def stride_loader(
    dataset: StrideDataset,
    batch_size: int,
    *,
    seed: int = 0,
    num_workers: int = 0,
    chunks_per_pool: int = 2,
) -> DataLoader:
    """A DataLoader of chunk-wise shuffled batches; worker processes are spawned, never
    forked (s3fs and its event loop do not survive a fork)."""
    return DataLoader(
        dataset,
        batch_sampler=ChunkShuffleSampler(dataset, batch_size, seed, chunks_per_pool),
        num_workers=num_workers,
        multiprocessing_context="spawn" if num_workers else None,
        persistent_workers=num_workers > 0,
        collate_fn=collate_strides,
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

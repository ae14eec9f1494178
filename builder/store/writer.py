"""Assemble staged trials into the store: a plan on the client, region writes on the workers.

The client lays out every trial (stride and EMG-row offsets, the stride table, per-subject
EMG scales), writes the template once, and hands each worker one whole region of one
partition. Workers read staged trial results and write whole shards/chunks only.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import zarr

from builder.conventions import MUSCLES
from builder.records import RECORDING_METADATA, TrialSpec
from builder.store.layout import TABLE_COLUMNS, ChunkLayout, regions, store_array
from builder.store.staging import Staging, TrialOutcome


@dataclass(frozen=True)
class Placement:
    """Where one trial's strides and EMG rows go in the store."""

    key: str
    first_stride: int
    n_strides: int
    first_row: int
    n_rows: int
    emg_scale: np.ndarray  # (n_strides, 13) volts: each stride's subject scale


@dataclass(frozen=True)
class StorePlan:
    placements: tuple[Placement, ...]
    n_strides: int
    n_rows: int
    table: dict[str, np.ndarray]  # stride-table columns, (N,)
    stride_starts: np.ndarray
    stride_ends: np.ndarray

    def stride_pieces(self, region: slice) -> list[tuple[Placement, int, int]]:
        """Trials overlapping a stride region, with the overlap in trial-local strides."""
        return _overlaps(self.placements, region, "first_stride", "n_strides")

    def row_pieces(self, region: slice) -> list[tuple[Placement, int, int]]:
        return _overlaps(self.placements, region, "first_row", "n_rows")


def _overlaps(
    placements: tuple[Placement, ...], region: slice, first: str, count: str
) -> list[tuple[Placement, int, int]]:
    pieces = []
    for p in placements:
        lo, n = getattr(p, first), getattr(p, count)
        start, stop = max(region.start, lo), min(region.stop, lo + n)
        if start < stop:
            pieces.append((p, start - lo, stop - lo))
    return pieces


def plan_store(specs: dict[str, TrialSpec], outcomes: dict[str, TrialOutcome]) -> StorePlan:
    """Lay out the built trials deterministically: order, offsets, table, EMG scales.

    ``specs`` must be ordered as the trial table (dataset, subject, url) orders them.
    """
    built = [k for k in specs if k in outcomes and outcomes[k].ok and outcomes[k].n_strides]
    columns: dict[str, list] = defaultdict(list)
    for key in built:
        spec, outcome = specs[key], outcomes[key]
        n = outcome.n_strides
        for name in RECORDING_METADATA:
            columns[name].extend(outcome.columns[name])
        for name, value in (
            ("dataset", spec.dataset),
            ("emg_kind", spec.emg_kind),
            ("source_path", spec.url),
            ("licence", spec.licence),
        ):
            columns[name].extend([value] * n)
        columns["side"].extend(outcome.side)
        columns["duration_s"].extend(outcome.duration_s)
        columns["source_start_s"].extend(outcome.start_s)
        columns["event_source"].extend(outcome.event_sources)

    subjects = list(zip(columns["dataset"], columns["subject"], strict=True))
    patient_ids = {s: i for i, s in enumerate(sorted(set(subjects)))}
    columns["patient_id"] = [patient_ids[s] for s in subjects]
    peaks = [outcomes[k].peaks_array(len(MUSCLES)) for k in built]
    scales = _subject_scales(subjects, np.concatenate(peaks) if peaks else np.empty((0, 13)))

    placements: list[Placement] = []
    lengths: list[int] = []
    stride, row = 0, 0
    for key in built:
        outcome = outcomes[key]
        n, n_rows = outcome.n_strides, int(sum(outcome.emg_lengths))
        placements.append(Placement(key, stride, n, row, n_rows, scales[stride : stride + n]))
        stride, row = stride + n, row + n_rows
        lengths.extend(outcome.emg_lengths)

    table = {
        name: np.array(columns[name], dtype=object if dtype == "str" else dtype)
        for name, dtype in TABLE_COLUMNS.items()
    }
    ends = np.cumsum(np.asarray(lengths, dtype=np.int64))
    starts = ends - np.asarray(lengths, dtype=np.int64)
    return StorePlan(tuple(placements), stride, row, table, starts, ends)


def _subject_scales(subjects: list[tuple[str, str]], peaks: np.ndarray) -> np.ndarray:
    """(N, 13): per stride, its subject's median stride envelope peak per muscle (NaN where the
    subject never recorded the muscle)."""
    scales = np.full(peaks.shape, np.nan, dtype=np.float32)
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, subject in enumerate(subjects):
        groups[subject].append(i)
    for rows in groups.values():
        block = peaks[rows]
        recorded = np.isfinite(block).any(axis=0)
        median = np.full(block.shape[1], np.nan)
        median[recorded] = np.nanmedian(block[:, recorded], axis=0)
        scales[rows] = median
    return scales


def stride_regions(plan: StorePlan, layout: ChunkLayout) -> list[slice]:
    return regions(plan.n_strides, layout.strides_per_shard)


def emg_regions(plan: StorePlan, layout: ChunkLayout) -> list[slice]:
    return regions(plan.n_rows, layout.emg_rows_per_shard)


# --- worker side ---------------------------------------------------------------------------


def write_stride_region(
    version: str,
    region: slice,
    pieces: list[tuple[Placement, int, int]],
    table: dict[str, np.ndarray],
    stride_starts: np.ndarray,
    stride_ends: np.ndarray,
    staging: Staging,
) -> int:
    """Write every per-stride array for strides ``region`` (one whole shard/chunk each) into
    ``version`` of the output that ``staging`` belongs to."""
    parts = []
    for placement, lo, hi in pieces:
        batch = staging.load_batch(placement.key)
        parts.append((batch, lo, hi, placement.emg_scale[lo:hi]))
    n = region.stop - region.start
    if sum(hi - lo for _, lo, hi, _ in parts) != n:
        raise RuntimeError(f"strides {region.start}:{region.stop}: staged results do not fill it")

    def gather(name: str) -> np.ndarray:
        return np.concatenate([getattr(b, name)[lo:hi] for b, lo, hi, _ in parts])

    scale = np.concatenate([scale for *_, scale in parts])
    envelope = gather("emg_envelope") / scale[:, None, :]
    values = {
        "emg_envelope": envelope,
        "kinematics": gather("kinematics"),
        "kinetics": gather("kinetics"),
        "emg_mask": gather("emg_mask"),
        "kinematics_mask": gather("kinematics_mask"),
        "kinetics_mask": gather("kinetics_mask"),
        "emg_scale": scale,
        "stride_starts": stride_starts,
        "stride_ends": stride_ends,
        "stride": np.arange(region.start, region.stop, dtype=np.int64),
        **table,
    }
    _write(version, values, region, staging)
    return n


def write_emg_region(
    version: str, region: slice, pieces: list[tuple[Placement, int, int]], staging: Staging
) -> int:
    """Write the normalised EMG rows ``region`` (one whole shard) into ``version`` of the
    output that ``staging`` belongs to."""
    blocks = []
    for placement, lo, hi in pieces:
        batch = staging.load_batch(placement.key)
        # Each row is divided by the scale of the stride it belongs to.
        stride_of_row = np.repeat(np.arange(batch.n_strides), np.diff(batch.emg_offsets))
        blocks.append(batch.emg[lo:hi] / placement.emg_scale[stride_of_row[lo:hi]])
    rows = np.concatenate(blocks) if blocks else np.empty((0, len(MUSCLES)), np.float32)
    if rows.shape[0] != region.stop - region.start:
        raise RuntimeError(f"EMG rows {region.start}:{region.stop}: staged results do not fill it")
    _write(version, {"emg": rows}, region, staging)
    return rows.shape[0]


def _write(version: str, values: dict[str, np.ndarray], region: slice, staging: Staging) -> None:
    # Whole-chunk writes of fill values must still create the chunk: the build verifies
    # that every expected chunk exists. The staging's location travelled as URL and options.
    with zarr.config.set({"array.write_empty_chunks": True}):
        group = staging.location.open_group("r+", version=version)
        for name, data in values.items():
            store_array(group, name)[region] = data

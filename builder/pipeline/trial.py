"""Stage 2's worker task: read, process, gate and stage one trial (``process_trial``)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from builder.catalog import resolve_metadata
from builder.datasets.registry import read_trial
from builder.errors import SourceError
from builder.pipeline.isolated import DEFAULT_TIMEOUT_S, read_trial_isolated
from builder.processing.emg import EmgProcessing
from builder.processing.quality import merge_counts
from builder.processing.trial import build_strides, concatenate_batches
from builder.records import RECORDING_METADATA, StrideBatch, TrialSpec
from builder.store.faults import storage_fault
from builder.store.staging import Staging, TrialOutcome


def process_trial(
    spec: TrialSpec,
    key: str,
    staging: Staging,
    *,
    storage_options: Mapping[str, Any] | None = None,
    isolate: bool = True,
    read_timeout_s: float = DEFAULT_TIMEOUT_S,
) -> TrialOutcome:
    """Worker task: read, process, gate and stage one trial. Never raises for bad input.

    ``storage_options`` are fsspec's for the trial's files (the spec does not carry them). The
    adapter runs in an isolated reader process (``isolate``), so a file that crashes or hangs
    its parser becomes a report entry instead of a dead worker. Every reason a trial is left
    out is a sentence that says what went wrong where.
    """
    tune_allocator()
    stage = f"reading it with the {spec.adapter} adapter"
    try:
        if isolate:
            recordings = read_trial_isolated(spec, read_timeout_s, storage_options=storage_options)
        else:
            recordings = read_trial(spec, storage_options)
        stage = "checking the catalogue's EMG processing settings"
        settings = EmgProcessing.model_validate(spec.processing)
        stage = "cutting and processing its strides"
        batches: list[StrideBatch] = []
        notes: list[str] = []
        sources: list[str] = []
        quality: list[dict[str, dict[str, int]]] = []
        columns: dict[str, list[Any]] = {name: [] for name in RECORDING_METADATA}
        times_known: list[bool] = []
        for recording in recordings:
            try:
                values, bad_metadata = resolve_metadata(spec, recording.meta), None
            except ValueError as exc:
                values, bad_metadata = None, str(exc)
            strides = build_strides(
                recording, settings, activity=values["activity"] if values else None
            )
            notes.extend(strides.notes)
            quality.append(strides.quality)
            if strides.batch.n_strides == 0:
                continue
            if values is None:
                raise SourceError(spec.url, str(bad_metadata))
            for name, value in values.items():
                columns[name].extend([value] * strides.batch.n_strides)
            times_known.extend([recording.times_absolute] * strides.batch.n_strides)
            batches.append(strides.batch)
            sources.append(recording.event_source)
        if not batches:
            detail = "; ".join(dict.fromkeys(notes)) if notes else "no heel-strike pairs"
            raise SourceError(spec.url, f"no complete stride ({detail})")
        notes = list(dict.fromkeys(notes))  # runs of one trial repeat the same findings
        batch = concatenate_batches(batches, by_time=False)
        stage = "staging its strides"
        staging.save_batch(key, batch)
        outcome = TrialOutcome.from_batch(
            key,
            batch,
            notes,
            "+".join(dict.fromkeys(sources)),
            columns,
            np.asarray(times_known),
            merge_counts(quality),
        )
    except SourceError as exc:
        outcome = TrialOutcome(key, ok=False, reason=exc.problem)
    except Exception as exc:  # one bad input must never stop the build
        fault = storage_fault(exc, spec.url)
        if fault is not None or isinstance(exc, (OSError, TimeoutError, MemoryError)):
            # Storage, machine or memory, not the file: reported now, retried by the next run.
            # A permanent fault (permission, read-only, no credentials...) says what to fix.
            advice = f": {fault.problem}, {fault.advice}" if fault and fault.permanent else ""
            outcome = TrialOutcome(
                key,
                ok=False,
                reason=f"{describe_error(exc)} while {stage}{advice}; the next run retries it",
                retry=True,
            )
        else:
            outcome = _unexpected(spec, key, stage, exc)
    staging.save_outcome(outcome)
    return outcome


# glibc mallopt parameters, and the largest mmap threshold glibc itself would choose (64-bit).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 << 20


@functools.cache
def tune_allocator() -> bool:
    """Give large allocations back their reuse under Dask (once per process; glibc only).

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` so that freed memory
    returns to the system; setting it also freezes glibc's mmap threshold at 128 KiB, so every
    large numpy temporary of the EMG chain and the gate is a fresh mmap, page-faulted and zeroed
    again: a long trial took 20-25 % longer in a worker than in a plain process. These are the
    thresholds glibc's own adaptive rule ends at for such allocations. True when applied.
    """
    if not os.environ.get("MALLOC_TRIM_THRESHOLD_") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc
    applied = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1
    return mallopt(_M_TRIM_THRESHOLD, 2 * _MMAP_THRESHOLD) == 1 and applied


def _unexpected(spec: TrialSpec, key: str, stage: str, exc: Exception) -> TrialOutcome:
    """An error no adapter check foresaw: final for this file, and a bug report is welcome."""
    return TrialOutcome(
        key,
        ok=False,
        reason=(
            f"unexpected error while {stage} ({describe_error(exc)}): the file has a layout "
            f"the {spec.adapter} adapter does not handle, or the builder has a bug; please "
            "report it with the file"
        ),
    )


def describe_error(exc: BaseException) -> str:
    """``exc`` in one line: its type and message (the isolated reader's already has both)."""
    message = " ".join(str(exc).split())
    if isinstance(exc, RuntimeError) and ": " in message:
        return message  # "ValueError: ..." relayed from the reader process
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__

"""One trial's recording → its strides in store layout, through the quality gate.

Each side is cut into strides (heel strike to heel strike), its EMG processed and its curves
time-normalised; then :mod:`builder.processing.quality` checks every stride's components and
leaves out the ones that fail, with their reasons.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

from builder.conventions import JOINTS, MUSCLES, PLANES, SAMPLES_PER_STRIDE
from builder.errors import one_line
from builder.processing.emg import EmgProcessing, process_emg, process_envelope_source
from builder.processing.quality import SideStrides, run_gate
from builder.processing.strides import covered, sample_ranges, stride_windows, time_normalise
from builder.records import SideRecording, StrideBatch, TimeSeries, TrialRecording

# Counted beside the gate's checks: stride-channels of EMG the chain could not process.
UNPROCESSABLE = "emg_processing"
# Event sources in the order a stride's two ends name them ("force_plate+kinematics").
_SOURCE_ORDER = ("events", "force_plate", "kinematics")


@dataclass(frozen=True)
class TrialStrides:
    """A recording's strides, the notes on the way, and what the quality gate left out
    (stride-components per check and kind)."""

    batch: StrideBatch
    notes: list[str]
    quality: dict[str, dict[str, int]] = field(default_factory=dict)


def build_strides(
    recording: TrialRecording, processing: EmgProcessing, *, activity: str | None = None
) -> TrialStrides:
    """Segment every side into strides, bring each to the canonical record and gate it.

    ``activity`` (the stride table's) lets the gate judge ground contact from the moments in
    gait trials without force plates.
    """
    notes = list(recording.notes)
    parts, unprocessed = [], 0
    for side in recording.sides:
        batch, side_notes, lost = _side_strides(side, recording, processing)
        notes.extend(side_notes)
        unprocessed += lost
        if batch is not None:
            parts.append(SideStrides(side, batch))
    mains = processing.mains_hz if recording.mains_hz is None else recording.mains_hz
    gate = run_gate(
        parts,
        emg_kind=recording.emg_kind,
        mains_hz=mains,
        activity=activity,
        shared_emg=recording.shared_emg,
    )
    gate.add(UNPROCESSABLE, "emg", unprocessed)
    notes.extend(gate.notes)
    batch = concatenate_batches([p.batch for p in parts], by_time=True)
    return TrialStrides(batch, notes, gate.counts)


def _side_strides(
    side: SideRecording, recording: TrialRecording, processing: EmgProcessing
) -> tuple[StrideBatch | None, list[str], int]:
    """The side's strides, notes, and how many stride-channels of EMG could not be processed."""
    notes: list[str] = []
    starts, ends, rejected = stride_windows(side.heel_strikes_s)
    if rejected:
        notes.append(
            f"{side.side}: {rejected} gait cycle(s) outside the plausible duration dropped"
        )
    streams = [s for s in (side.emg, side.kinematics, side.kinetics) if s is not None]
    if not streams:
        notes.append(f"{side.side}: no EMG, kinematics or kinetics")
        return None, notes, 0
    inside = np.logical_and.reduce([covered(s, starts, ends) for s in streams])
    if (~inside).any():
        notes.append(f"{side.side}: {int((~inside).sum())} stride(s) beyond the recording dropped")
    starts, ends = starts[inside], ends[inside]
    if starts.size == 0:
        return None, notes, 0

    emg_rows, emg_offsets, envelope, emg_mask, emg_notes, failed = _emg(
        side.emg, recording, processing, starts, ends
    )
    # failed implies EMG was there (and could not be processed): its channels are lost
    lost = 0
    if failed and side.emg is not None:
        lost = starts.size * int(np.isfinite(side.emg.data).any(axis=0).sum())
    notes.extend(f"{side.side}: {n}" for n in emg_notes)
    kinematics, kinematics_mask = _joint_curves(side.kinematics, starts, ends)
    kinetics, kinetics_mask = _joint_curves(side.kinetics, starts, ends)

    n = starts.size
    # Masked channels are fully finite, so a plain max is safe; absent ones get NaN.
    peak = np.where(emg_mask, np.max(np.nan_to_num(envelope, nan=-np.inf), axis=1), np.nan)
    return (
        StrideBatch(
            emg=emg_rows,
            emg_offsets=emg_offsets,
            emg_envelope=envelope,
            kinematics=kinematics,
            kinetics=kinetics,
            emg_mask=emg_mask,
            kinematics_mask=kinematics_mask,
            kinetics_mask=kinetics_mask,
            envelope_peak=peak.astype(np.float32),
            side=np.full(n, side.side, dtype="<U1"),
            start_s=starts,
            duration_s=ends - starts,
            event_source=_stride_sources(side, recording.event_source, starts, ends),
        ),
        notes,
        lost,
    )


def _stride_sources(
    side: SideRecording, default: str, starts: np.ndarray, ends: np.ndarray
) -> np.ndarray:
    """Per stride, the detectors that gave its two heel strikes ("force_plate",
    "force_plate+kinematics", ...); the recording's source where the adapter names none."""
    if not side.heel_strike_sources:
        return np.full(starts.size, default, dtype=object).astype(str)
    times = np.asarray(side.heel_strikes_s, dtype=np.float64)
    order = np.argsort(times, kind="stable")
    times = times[order]
    sources = [side.heel_strike_sources[i] for i in order]

    def at(t: np.ndarray) -> list[str]:
        index = np.clip(np.searchsorted(times, t - 1e-9), 0, len(times) - 1)
        return [sources[i] for i in index]

    names = []
    for first, last in zip(at(starts), at(ends), strict=True):
        both = {first, last}
        ordered = [s for s in _SOURCE_ORDER if s in both] + sorted(both - set(_SOURCE_ORDER))
        names.append("+".join(ordered))
    return np.array(names, dtype=str)


def _emg(
    emg: TimeSeries | None,
    recording: TrialRecording,
    processing: EmgProcessing,
    starts: np.ndarray,
    ends: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str], bool]:
    """Processed 1 kHz rows, row offsets, envelopes, the per-stride mask (channel finite
    throughout the stride), notes, and whether the chain failed: EMG it cannot process is left
    out with the reason."""
    n, n_muscles = starts.size, len(MUSCLES)
    notes: list[str] = []
    processed = env = None
    if emg is not None:
        try:
            if recording.emg_kind == "raw":
                processed, env, notes = process_emg(emg, processing, mains_hz=recording.mains_hz)
            else:
                processed, env, notes = process_envelope_source(emg, processing)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as error:
            notes = [
                f"EMG could not be processed ({one_line(error)}; {emg.n_samples} samples at "
                f"{emg.rate_hz:g} Hz): EMG left out"
            ]
    if processed is None or env is None:
        # No EMG: NaN rows of the stride's duration keep row counts ≈ duration × 1 kHz.
        lengths = np.round((ends - starts) * processing.target_rate_hz).astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        rows = np.full((int(offsets[-1]), n_muscles), np.nan, dtype=np.float32)
        envelope = np.full((n, SAMPLES_PER_STRIDE, n_muscles), np.nan, dtype=np.float32)
        return rows, offsets, envelope, np.zeros((n, n_muscles), bool), notes, emg is not None
    ranges = sample_ranges(processed, starts, ends)
    index = np.concatenate([np.arange(a, b) for a, b in ranges])
    exact_rows = processed.data[index]
    exact_envelope = time_normalise(env, starts, ends, SAMPLES_PER_STRIDE)
    offsets = np.concatenate([[0], np.cumsum(ranges[:, 1] - ranges[:, 0])])
    finite_rows = np.isfinite(exact_rows)
    mask = np.stack([finite_rows[a:b].all(axis=0) & (b > a) for a, b in pairwise(offsets)])
    mask &= np.isfinite(exact_envelope).all(axis=1)
    rows, envelope = _stored_precision(exact_rows), _stored_precision(exact_envelope)
    # A channel absent from a stride is NaN there, in the rows and in the envelope.
    rows[np.repeat(~mask, np.diff(offsets), axis=0)] = np.nan
    envelope[np.broadcast_to(~mask[:, None, :], envelope.shape)] = np.nan
    return rows, offsets, envelope, mask, notes, False


def _joint_curves(
    series: TimeSeries | None, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(N, 200, 3, 3) curves and the (N, 3, 3) mask: a component is present where it is finite
    throughout the stride (values are judged by the quality gate afterwards)."""
    shape = (starts.size, SAMPLES_PER_STRIDE, len(JOINTS), len(PLANES))
    if series is None:
        absent = np.zeros((starts.size, len(JOINTS), len(PLANES)), bool)
        return np.full(shape, np.nan, np.float32), absent
    exact = time_normalise(series, starts, ends, SAMPLES_PER_STRIDE)
    mask = np.isfinite(exact).all(axis=1)
    curves = _stored_precision(exact)
    curves[np.broadcast_to(~mask[:, None], curves.shape)] = np.nan
    return curves, mask


def _stored_precision(values: np.ndarray) -> np.ndarray:
    """``values`` as the store keeps them (float32): a value beyond its range becomes inf,
    which the quality gate's range check then leaves out (masks are taken before the cast)."""
    with np.errstate(over="ignore"):
        return values.astype(np.float32)


def concatenate_batches(parts: list[StrideBatch], *, by_time: bool) -> StrideBatch:
    """Join batches; ``by_time`` orders strides by start time (then side) — within one
    recording, so that the result is deterministic. Batches of different recordings keep their
    order (their time bases are unrelated)."""
    if not parts:
        return empty_batch()
    lengths = np.concatenate([np.diff(p.emg_offsets) for p in parts])
    row_starts = np.concatenate(
        [p.emg_offsets[:-1] + base for p, base in zip(parts, _row_bases(parts), strict=True)]
    )
    start = np.concatenate([p.start_s for p in parts])
    side = np.concatenate([p.side for p in parts])
    order = np.lexsort((side, start)) if by_time else np.arange(start.size)
    all_rows = np.concatenate([p.emg for p in parts])
    index = np.concatenate(
        [np.arange(row_starts[i], row_starts[i] + lengths[i]) for i in order] or [np.empty(0, int)]
    )

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in parts])[order]

    return StrideBatch(
        emg=all_rows[index],
        emg_offsets=np.concatenate([[0], np.cumsum(lengths[order])]).astype(np.int64),
        emg_envelope=cat("emg_envelope"),
        kinematics=cat("kinematics"),
        kinetics=cat("kinetics"),
        emg_mask=cat("emg_mask"),
        kinematics_mask=cat("kinematics_mask"),
        kinetics_mask=cat("kinetics_mask"),
        envelope_peak=cat("envelope_peak"),
        side=side[order],
        start_s=start[order],
        duration_s=cat("duration_s"),
        event_source=cat("event_source"),
    )


def _row_bases(parts: list[StrideBatch]) -> list[int]:
    sizes = [int(p.emg_offsets[-1]) for p in parts]
    return [int(x) for x in np.concatenate([[0], np.cumsum(sizes)[:-1]])]


def empty_batch() -> StrideBatch:
    m, j, p, s = len(MUSCLES), len(JOINTS), len(PLANES), SAMPLES_PER_STRIDE
    return StrideBatch(
        emg=np.empty((0, m), np.float32),
        emg_offsets=np.zeros(1, np.int64),
        emg_envelope=np.empty((0, s, m), np.float32),
        kinematics=np.empty((0, s, j, p), np.float32),
        kinetics=np.empty((0, s, j, p), np.float32),
        emg_mask=np.empty((0, m), bool),
        kinematics_mask=np.empty((0, j, p), bool),
        kinetics_mask=np.empty((0, j, p), bool),
        envelope_peak=np.empty((0, m), np.float32),
        side=np.empty(0, "<U1"),
        start_s=np.empty(0),
        duration_s=np.empty(0),
        event_source=np.empty(0, "<U1"),
    )

"""One trial's recording → its strides in store layout (a :class:`StrideBatch`)."""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from builder.conventions import JOINTS, MUSCLES, PLANES, SAMPLES_PER_STRIDE
from builder.processing.emg import EmgProcessing, process_emg, process_envelope_source
from builder.processing.strides import covered, sample_ranges, stride_windows, time_normalise
from builder.records import SideRecording, StrideBatch, TimeSeries, TrialRecording

# Beyond these a component holds garbage, not a recording (a corrupt file, a wrong unit): it is
# left out of the stride (NaN, mask False) with a note. Generous: real values stay far below.
PLAUSIBLE_ABS = {
    "EMG": 1e3,
    "kinematics": 720.0,
    "kinetics": 100.0,
}  # V (or source units), deg, N.m/kg
FLAT_EMG = 1e-12  # an envelope peak below this is a flat channel: it cannot be normalised

# A stride's kinetics count only if a force-plate window covers its heel strike (within this
# slack) and at least this share of the cycle (stance is ~60 % walking, ~35 % running).
_PLATE_ONSET_SLACK_S = 0.05
_PLATE_MIN_COVER = 0.3


def build_strides(
    recording: TrialRecording, processing: EmgProcessing
) -> tuple[StrideBatch, list[str]]:
    """Segment every side into strides and bring each stride to the canonical record."""
    notes = list(recording.notes)
    parts = []
    for side in recording.sides:
        part, side_notes = _side_strides(side, recording, processing)
        notes.extend(side_notes)
        if part is not None:
            parts.append(part)
    return concatenate_batches(parts, by_time=True), notes


def _side_strides(
    side: SideRecording, recording: TrialRecording, processing: EmgProcessing
) -> tuple[StrideBatch | None, list[str]]:
    notes: list[str] = []
    starts, ends, rejected = stride_windows(side.heel_strikes_s)
    if rejected:
        notes.append(
            f"{side.side}: {rejected} gait cycle(s) outside the plausible duration dropped"
        )
    streams = [s for s in (side.emg, side.kinematics, side.kinetics) if s is not None]
    if not streams:
        notes.append(f"{side.side}: no EMG, kinematics or kinetics")
        return None, notes
    inside = np.logical_and.reduce([covered(s, starts, ends) for s in streams])
    if (~inside).any():
        notes.append(f"{side.side}: {int((~inside).sum())} stride(s) beyond the recording dropped")
    starts, ends = starts[inside], ends[inside]
    if starts.size == 0:
        return None, notes

    emg_rows, emg_offsets, envelope, emg_mask, emg_notes = _emg(
        side.emg, recording, processing, starts, ends
    )
    notes.extend(f"{side.side}: {n}" for n in emg_notes)
    kinematics, kinematics_mask, kinematics_notes = _joint_curves(
        side.kinematics, starts, ends, "kinematics"
    )
    kinetics, kinetics_mask, kinetics_notes = _joint_curves(side.kinetics, starts, ends, "kinetics")
    notes.extend(f"{side.side}: {n}" for n in kinematics_notes + kinetics_notes)
    on_plate = _kinetics_trusted(side.kinetics_valid_s, starts, ends)
    kinetics[~on_plate] = np.nan
    kinetics_mask[~on_plate] = False

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
        ),
        notes,
    )


def _emg(
    emg: TimeSeries | None,
    recording: TrialRecording,
    processing: EmgProcessing,
    starts: np.ndarray,
    ends: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Processed 1 kHz rows, row offsets, normalised envelopes and the per-stride mask."""
    n, n_muscles = starts.size, len(MUSCLES)
    if emg is None:
        # No EMG at all: NaN rows of the stride's duration keep row counts ≈ duration × 1 kHz.
        lengths = np.round((ends - starts) * processing.target_rate_hz).astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        rows = np.full((int(offsets[-1]), n_muscles), np.nan, dtype=np.float32)
        envelope = np.full((n, SAMPLES_PER_STRIDE, n_muscles), np.nan, dtype=np.float32)
        return rows, offsets, envelope, np.zeros((n, n_muscles), bool), []
    if recording.emg_kind == "raw":
        processed, env, notes = process_emg(emg, processing, mains_hz=recording.mains_hz)
    else:
        processed, env, notes = process_envelope_source(emg, processing)
    ranges = sample_ranges(processed, starts, ends)
    index = np.concatenate([np.arange(a, b) for a, b in ranges])
    rows = _stored_precision(processed.data[index])
    offsets = np.concatenate([[0], np.cumsum(ranges[:, 1] - ranges[:, 0])])
    envelope = _stored_precision(time_normalise(env, starts, ends, SAMPLES_PER_STRIDE))
    spans = list(pairwise(offsets))
    finite_rows, plausible_rows = np.isfinite(rows), _plausible(rows, "EMG", axis=())
    finite = np.stack([finite_rows[a:b].all(axis=0) & (b > a) for a, b in spans])
    finite &= np.isfinite(envelope).all(axis=1)
    mask = np.stack([plausible_rows[a:b].all(axis=0) & (b > a) for a, b in spans])
    mask &= _plausible(envelope, "EMG", axis=1)
    notes = [*notes, *_implausible_note("EMG", finite, mask)]
    flat = mask & (np.max(np.nan_to_num(envelope, nan=0.0), axis=1) <= FLAT_EMG)
    if flat.any():
        notes.append(f"EMG: {int(flat.sum())} flat stride channel(s) left out (envelope peak 0)")
    mask &= ~flat
    # A channel absent from a stride is NaN there, in the rows and in the envelope.
    rows[np.repeat(~mask, np.diff(offsets), axis=0)] = np.nan
    envelope[np.broadcast_to(~mask[:, None, :], envelope.shape)] = np.nan
    return rows, offsets, envelope, mask, notes


def _joint_curves(
    series: TimeSeries | None, starts: np.ndarray, ends: np.ndarray, what: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(N, 200, 3, 3) curves, (N, 3, 3) mask and notes; a component is present only if fully
    finite and plausible."""
    shape = (starts.size, SAMPLES_PER_STRIDE, len(JOINTS), len(PLANES))
    if series is None:
        absent = np.zeros((starts.size, len(JOINTS), len(PLANES)), bool)
        return np.full(shape, np.nan, np.float32), absent, []
    curves = _stored_precision(time_normalise(series, starts, ends, SAMPLES_PER_STRIDE))
    finite = np.isfinite(curves).all(axis=1)
    mask = _plausible(curves, what, axis=1)
    curves[np.broadcast_to(~mask[:, None], curves.shape)] = np.nan
    return curves, mask, _implausible_note(what, finite, mask)


def _plausible(values: np.ndarray, what: str, axis: int | tuple[int, ...]) -> np.ndarray:
    """Per stride and component: finite throughout and within ``PLAUSIBLE_ABS[what]``."""
    with np.errstate(invalid="ignore"):
        return (np.isfinite(values) & (np.abs(values) <= PLAUSIBLE_ABS[what])).all(axis=axis)


def _implausible_note(what: str, finite: np.ndarray, plausible: np.ndarray) -> list[str]:
    dropped = int((finite & ~plausible).sum())
    if not dropped:
        return []
    return [
        f"{what}: {dropped} stride component(s) beyond ±{PLAUSIBLE_ABS[what]:g} left out "
        "(corrupt values or a wrong unit)"
    ]


def _stored_precision(values: np.ndarray) -> np.ndarray:
    """``values`` as the store keeps them (float32): a value beyond its range becomes inf,
    so masks computed afterwards never mark an overflowing component present."""
    with np.errstate(over="ignore"):
        return values.astype(np.float32)


def _kinetics_trusted(
    valid_windows: np.ndarray | None, starts: np.ndarray, ends: np.ndarray
) -> np.ndarray:
    """Strides whose stance a force-plate window covers (all, when the source has no plates)."""
    if valid_windows is None:
        return np.ones(starts.size, bool)
    windows = np.asarray(valid_windows, dtype=np.float64).reshape(-1, 2)
    if windows.size == 0:
        return np.zeros(starts.size, bool)
    onset_ok = windows[None, :, 0] <= starts[:, None] + _PLATE_ONSET_SLACK_S
    onset_ok &= windows[None, :, 0] >= starts[:, None] - _PLATE_ONSET_SLACK_S
    long_enough = windows[None, :, 1] >= (starts + _PLATE_MIN_COVER * (ends - starts))[:, None]
    return (onset_ok & long_enough).any(axis=1)


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
    )

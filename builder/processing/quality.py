"""The quality gate: every stride's components are checked before they are stored.

SPEC.md, "Quality gate". Adapters convert a source to the canonical record; the gate then
tests what came out, the same way for every dataset. A component that fails a check is made
absent in that stride (mask False, values NaN) with a reason in the trial's notes and a count
per check in the build report; nothing is dropped silently. The checks, in the order they run
(a component already left out by one check is not counted again by the next):

- ``range``: joint angles and moments outside physiological ranges per joint and plane
  (:data:`ANGLE_RANGES_DEG`, :data:`MOMENT_RANGES_NM_KG`), EMG beyond :data:`MAX_ABS_EMG`;
- ``constant_run``: :data:`MIN_CONSTANT_RUN` or more samples of exactly the same value (zeros
  included) in the source samples of a stride — the mark of a dropout written as zeros, a
  frozen value or a flat-lined channel. A run the signal itself explains is not a defect
  (:func:`constant_runs`): a plateau of a signal stored with few digits or ADC codes (the
  samples on both sides within one quantisation step: it hides at most one step), such a
  plateau of a smooth signal stretched by resampling (entered and left at the signal's own
  pace), or an envelope resting on its floor;
- ``flat``: EMG whose stride envelope peak is 0 (nothing to normalise);
- ``duplicate``: the same signal in two slots — two muscles, or the two sides — bit-identical
  or with |correlation| above :data:`DUPLICATE_CORRELATION` over the shared samples: both
  copies are left out, since either may be the wrong one (muscles the catalogue explicitly
  feeds from one channel excepted; joint angles and moments are compared left against right,
  outside gait only when bit-identical);
- ``emg_kind``: EMG declared raw that is not (raw sEMG is bipolar with most of its power in
  20–450 Hz; a rectified signal or an envelope is one-sided, an envelope's power lies below
  ~10 Hz), and EMG declared an envelope that is not;
- ``mains_hum``: raw EMG still dominated by mains hum after the notch;
- ``lr_sign``: a joint angle or moment whose mean stride on one side is the mirror image of
  the other side's (correlation below :data:`LR_SIGN_CORRELATION`): a left/right sign
  convention went wrong; both sides are left out, since the gate cannot tell which;
- ``no_contact``: kinetics in a stride whose stance had no ground contact: outside the
  recording's force-plate windows where it has them, else (gait only) an ankle moment that
  never rises above the swing level, as inverse dynamics without a ground reaction gives.

Every number the gate uses is a module constant below, documented where it is defined.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import cast, overload

import numpy as np

from builder.conventions import JOINTS, MUSCLES, PLANES
from builder.processing.emg import welch_psd
from builder.records import SideRecording, StrideBatch, TimeSeries

CHECKS = (
    "range",
    "constant_run",
    "flat",
    "duplicate",
    "emg_kind",
    "mains_hum",
    "lr_sign",
    "no_contact",
)
KINDS = ("emg", "kinematics", "kinetics")
# One line per check, for the build report's readers (``builder report``, ``builder info``).
CHECK_DESCRIPTIONS = {
    "range": "outside the physiological range of the joint and plane (or garbage EMG)",
    "constant_run": "5 or more samples of exactly one value: a dropout, frozen value or flat line",
    "flat": "EMG whose envelope is flat (a dead channel)",
    "duplicate": "the same signal stored in two slots (two muscles or both sides)",
    "emg_kind": "EMG that is not what the catalogue declares (raw vs envelope)",
    "mains_hum": "raw EMG dominated by mains hum after the notch",
    "lr_sign": "left and right mean strides are mirror images (a side's sign convention)",
    "no_contact": "kinetics of a stance with no ground contact (no plate, no ground reaction)",
    "emg_processing": "EMG the processing chain could not handle (e.g. too slow a rate)",
}

# --- thresholds ------------------------------------------------------------------------------

# Physiological ranges, canonical signs (flexion / dorsiflexion, adduction, internal rotation
# positive): the joints' range of motion plus ~20° for marker and model offsets. A value beyond
# is a wrong unit, axis or sign, or a corrupt frame, not a person.
ANGLE_RANGES_DEG: dict[tuple[str, str], tuple[float, float]] = {
    ("hip", "adduction"): (-50.0, 50.0),
    ("hip", "rotation"): (-70.0, 70.0),
    ("hip", "flexion"): (-45.0, 150.0),
    ("knee", "adduction"): (-50.0, 50.0),
    ("knee", "rotation"): (-70.0, 70.0),
    ("knee", "flexion"): (-30.0, 170.0),
    ("ankle", "adduction"): (-60.0, 60.0),
    ("ankle", "rotation"): (-70.0, 70.0),
    ("ankle", "flexion"): (-70.0, 60.0),
}
# Internal net joint moments, N·m/kg: about 1.5× the peaks of sprinting and landing (sagittal
# ~4, frontal ~2.5, transverse ~1 N·m/kg); walking stays below a third of these.
MOMENT_RANGES_NM_KG: dict[tuple[str, str], tuple[float, float]] = {
    ("hip", "adduction"): (-4.0, 4.0),
    ("hip", "rotation"): (-2.0, 2.0),
    ("hip", "flexion"): (-6.0, 6.0),
    ("knee", "adduction"): (-4.0, 4.0),
    ("knee", "rotation"): (-2.0, 2.0),
    ("knee", "flexion"): (-6.0, 6.0),
    ("ankle", "adduction"): (-3.0, 3.0),
    ("ankle", "rotation"): (-2.0, 2.0),
    ("ankle", "flexion"): (-6.0, 3.0),
}
# EMG beyond this (volts, or the source's envelope units) is garbage, whatever the muscle.
MAX_ABS_EMG = 1e3
# Samples of one exact value that make a run (a dropout, a frozen value, a flat line).
MIN_CONSTANT_RUN = 5
# A run is a quantised plateau when its neighbours are within this many quantisation steps of it
# (1, with slack for the float error of decimal values); the step is the smallest non-zero
# change within this many run lengths on either side, or the decimal resolution the run and its
# neighbours are written with (files with %.4g change resolution with magnitude), the larger.
QUANTISATION_SLACK = 1.5
QUANTISATION_WINDOW = 4
# ... or when the signal enters and leaves it no faster than this many times its slope beside it
# (a quantised plateau resampled to a finer grid, as 1001-point strides are). A frozen value
# leaves with the jump the signal made meanwhile; a dropout to zeros, with the whole signal.
SLOPE_SLACK = 2.0
# Envelopes are clipped at 0 where their low-pass undershoots, or held at a floor: a run within
# this share of the signal's range above its minimum, between neighbours as close, rests there.
CLIP_FRACTION = 0.01
# An envelope peak at or below this (volts) is a flat channel: it cannot be normalised.
FLAT_ENVELOPE = 1e-12
# Two slots whose signals correlate this well (or are bit-identical) hold one signal. Pairs
# are screened first on the samples every slot shares (at least SCREEN_MIN_SAMPLES of them):
# only those above SCREEN_CORRELATION there get the exact test.
DUPLICATE_CORRELATION = 0.999
SCREEN_CORRELATION = 0.99
SCREEN_MIN_SAMPLES = 64
# Screens (the duplicate screen, the percentiles of the EMG-kind check) thin long signals to
# about this many samples.
SCREEN_SAMPLES = 8192
# Raw sEMG: at least this share of the (mean-removed) power in 20–450 Hz (capped at 0.45 × the
# rate; real raw channels: 0.84–1.00), and two-sided: the share of samples within the lowest
# FLOOR_FRACTION of the 0.5–99.5 percentile range exceeds the share within the highest by at
# most FLOOR_MAX_SHARE (:func:`floor_share`). Bipolar EMG sits around its baseline whatever its
# offset (real channels: 0.5–1 % on the floor); a rectified signal or an envelope rests on its
# floor (real channels rectified: 10–70 %).
RAW_EMG_BAND_HZ = (20.0, 450.0)
RAW_EMG_MIN_BAND_SHARE = 0.5
FLOOR_FRACTION = 0.05
FLOOR_MAX_SHARE = 0.05
# An envelope: at least this share of its (mean-removed) power below ENVELOPE_MAX_HZ (a 6 Hz
# linear envelope ~0.99; raw EMG ~0.01; rectified EMG 0.1–0.5 on real channels).
ENVELOPE_MAX_HZ = 10.0
ENVELOPE_MIN_LOW_SHARE = 0.8
# Band shares need no finer spectrum than this (the hum check uses 1 Hz, to tell the line).
KIND_RESOLUTION_HZ = 2.0
# Raw EMG after the notch: a share of the in-band power this large within ±1 Hz of the mains
# harmonics is hum, not muscle.
MAINS_HUM_MAX_SHARE = 0.5
# Left/right: mean strides whose correlation is below this are mirror images; judged only
# where both sides' mean strides span at least LR_MIN_SPAN (deg; N·m/kg).
LR_SIGN_CORRELATION = -0.5
LR_MIN_SPAN = {"kinematics": 5.0, "kinetics": 0.1}
# Ground contact from the data (gait strides without force-plate windows): the stance peak of
# |ankle sagittal moment| (0–50 % of the cycle) must reach this multiple of its level in late
# swing (75–95 %), where only the foot's inertia acts.
CONTACT_STANCE_OVER_SWING = 3.0
STANCE_PHASE = (0.0, 0.5)
LATE_SWING_PHASE = (0.75, 0.95)
GAIT_ACTIVITIES = frozenset(
    {"walk", "run", "ramp_ascent", "ramp_descent", "stair_ascent", "stair_descent"}
)
# A force-plate window counts for a stride when it starts within this of the heel strike and
# lasts at least this share of the cycle (stance is ~60 % walking, ~35 % running).
PLATE_ONSET_SLACK_S = 0.05
PLATE_MIN_COVER = 0.3
# At most this many pre-cut strides per side are used to judge a channel's EMG kind, and at most
# this many samples of a signal's middle for a spectrum (33 s at 2 kHz).
MAX_SEGMENTS_FOR_KIND = 16
MAX_SPECTRUM_SAMPLES = 65_536

_HIP, _KNEE, _ANKLE = (JOINTS.index(j) for j in ("hip", "knee", "ankle"))
_FLEX = PLANES.index("flexion")


# --- results ---------------------------------------------------------------------------------


@dataclass
class GateResult:
    """What the gate removed: counts per check and kind of stride-components, and notes."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, check: str, kind: str, n: int) -> None:
        if n:
            per_kind = self.counts.setdefault(check, {})
            per_kind[kind] = per_kind.get(kind, 0) + int(n)


def merge_counts(
    counts: Iterable[dict[str, dict[str, int]]],
) -> dict[str, dict[str, int]]:
    """Sum of several ``GateResult.counts``."""
    total = GateResult()
    for one in counts:
        for check, per_kind in one.items():
            for kind, n in per_kind.items():
                total.add(check, kind, n)
    return total.counts


@dataclass
class SideStrides:
    """One side recording and the strides cut from it, which the gate edits in place."""

    recording: SideRecording
    batch: StrideBatch

    @property
    def side(self) -> str:
        return self.recording.side

    @property
    def ends_s(self) -> np.ndarray:
        return self.batch.start_s + self.batch.duration_s


def component_names(kind: str) -> list[str]:
    if kind == "emg":
        return list(MUSCLES)
    what = "angle" if kind == "kinematics" else "moment"
    return [f"{joint} {plane} {what}" for joint in JOINTS for plane in PLANES]


def _mask(batch: StrideBatch, kind: str) -> np.ndarray:
    """(N, C) view of a kind's mask, components flattened."""
    mask = {"emg": batch.emg_mask, "kinematics": batch.kinematics_mask}.get(
        kind, batch.kinetics_mask
    )
    return mask.reshape(mask.shape[0], -1)


def _remove(
    part: SideStrides,
    kind: str,
    fail: np.ndarray,
    check: str,
    reasons: dict[int, str],
    result: GateResult,
) -> None:
    """Make the failing (stride, component) pairs absent: mask False, values NaN; count and
    explain the ones that were present."""
    mask = _mask(part.batch, kind)
    removed = mask & fail
    if not removed.any():
        return
    mask &= ~removed  # a view: edits the batch's mask
    batch = part.batch
    if kind == "emg":
        batch.emg_envelope[np.broadcast_to(removed[:, None, :], batch.emg_envelope.shape)] = np.nan
        rows = np.repeat(removed, np.diff(batch.emg_offsets), axis=0)
        batch.emg[rows] = np.nan
        batch.envelope_peak[removed] = np.nan
    else:
        values = batch.kinematics if kind == "kinematics" else batch.kinetics
        flat = values.reshape(values.shape[0], values.shape[1], -1)
        flat[np.broadcast_to(removed[:, None, :], flat.shape)] = np.nan
    result.add(check, kind, int(removed.sum()))
    names = component_names(kind)
    for component in np.flatnonzero(removed.any(axis=0)):
        n = int(removed[:, component].sum())
        why = reasons.get(int(component), "")
        result.notes.append(
            f"quality gate, {check}: {part.side} {names[component]} left out of {n} of "
            f"{batch.n_strides} stride(s){': ' + why if why else ''}"
        )


def _remove_everywhere(
    part: SideStrides, kind: str, check: str, reasons: dict[int, str], result: GateResult
) -> None:
    """:func:`_remove` the components ``reasons`` names from every stride of ``part``."""
    if reasons:
        fail = np.zeros(_mask(part.batch, kind).shape, bool)
        fail[:, list(reasons)] = True
        _remove(part, kind, fail, check, reasons, result)


def _stride_samples(part: SideStrides, series: TimeSeries) -> tuple[np.ndarray, np.ndarray]:
    """First and last sample (inclusive) of ``series`` inside each stride of ``part``."""
    first = np.ceil((part.batch.start_s - series.start_s) * series.rate_hz - 1e-6).astype(int)
    last = np.floor((part.ends_s - series.start_s) * series.rate_hz + 1e-6).astype(int)
    return first, last


# --- per-stride checks -----------------------------------------------------------------------


def _range_check(part: SideStrides, result: GateResult) -> None:
    batch = part.batch
    for kind, values, table, units in (
        ("kinematics", batch.kinematics, ANGLE_RANGES_DEG, "deg"),
        ("kinetics", batch.kinetics, MOMENT_RANGES_NM_KG, "N.m/kg"),
    ):
        lo = np.array([table[j, p][0] for j in JOINTS for p in PLANES])
        hi = np.array([table[j, p][1] for j in JOINTS for p in PLANES])
        flat = values.reshape(values.shape[0], values.shape[1], -1).astype(np.float64)
        with np.errstate(invalid="ignore"):
            # numpy's stubs type a reduction along an axis as "scalar or array"
            outside = cast(np.ndarray, ((flat < lo) | (flat > hi)).any(axis=1))
            low, high = (
                np.nanmin(flat, axis=1, initial=np.inf),
                np.nanmax(flat, axis=1, initial=-np.inf),
            )
        reasons = {}
        for c in np.flatnonzero(outside.any(axis=0)):
            bad = outside[:, c]
            reasons[int(c)] = (
                f"values {low[bad, c].min():.4g}..{high[bad, c].max():.4g} {units} beyond the "
                f"physiological {lo[c]:g}..{hi[c]:g} (wrong unit, axis or sign, or corrupt frames)"
            )
        _remove(part, kind, outside, "range", reasons, result)
    # EMG: rows and envelope beyond MAX_ABS_EMG.
    with np.errstate(invalid="ignore"):
        big_rows = np.abs(batch.emg) > MAX_ABS_EMG
        big_env = (np.abs(batch.emg_envelope) > MAX_ABS_EMG).any(axis=1)
    spans = np.diff(batch.emg_offsets)
    if big_rows.any():
        stride_of_row = np.repeat(np.arange(batch.n_strides), spans)
        big = np.zeros_like(big_env)
        np.logical_or.at(big, stride_of_row, big_rows)
        big_env |= big
    _remove(
        part,
        "emg",
        big_env,
        "range",
        dict.fromkeys(range(len(MUSCLES)), f"beyond ±{MAX_ABS_EMG:g} (corrupt or a wrong unit)"),
        result,
    )


def constant_runs(
    values: np.ndarray,
    min_run: int = MIN_CONSTANT_RUN,
    *,
    smooth: bool = True,
    floor_clipped: bool = False,
) -> list[tuple[int, int]]:
    """Runs ``[first, last]`` (sample indices, inclusive) of at least ``min_run`` exactly equal
    finite samples in a 1-D signal, except those the signal's quantisation explains: on both
    sides (one, at an end of the signal) the neighbouring sample lies within one quantisation
    step of the run's value — the smallest non-zero difference between consecutive samples
    near the run, or the decimal resolution of the run and its neighbours, whichever is larger
    — or, for a ``smooth`` signal (angles, moments, envelopes; not raw EMG, whose samples
    jump at random), within SLOPE_SLACK times the signal's change from the neighbour to the
    sample beyond.

    ``floor_clipped`` (envelopes, clipped at 0 where a filter undershoots or held at a floor):
    a run within CLIP_FRACTION of the signal's range above its minimum, between neighbours as
    close to it, is the envelope resting on its floor, not a defect."""
    x = np.asarray(values, dtype=np.float64)
    if x.size < min_run:
        return []
    with np.errstate(invalid="ignore"):
        same = x[1:] == x[:-1]  # NaN never equals
    edges = np.diff(np.concatenate(([0], same.astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    long = (stops - starts) >= min_run - 1
    if not long.any():
        return []
    steps = np.abs(np.diff(x))
    steps[~np.isfinite(steps) | (steps == 0)] = np.inf
    lowest, highest = np.nanmin(x), np.nanmax(x)
    clip = CLIP_FRACTION * (highest - lowest) if floor_clipped else -1.0
    runs = []
    for first, last in zip(starts[long], stops[long], strict=True):  # last: index of last equal
        value = x[first]
        # (neighbour, the sample beyond it) on each side of the run
        sides = [(i, i + d) for i, d in ((first - 1, -1), (last + 1, 1)) if 0 <= i < x.size]
        sides = [(i, o) for i, o in sides if np.isfinite(x[i])]
        if not sides:
            runs.append((int(first), int(last)))
            continue
        # The quantisation step near the run: files written with a fixed number of significant
        # digits (%.4g) have a step that changes with the magnitude.
        reach = QUANTISATION_WINDOW * (last - first + 1)
        lo, hi = max(0, first - reach), last + reach
        neighbours = np.array([x[i] for i, _ in sides])
        # (the changes into and out of the run are what is judged: they do not set the step)
        local = np.concatenate([steps[lo : max(first - 1, lo)], steps[last + 1 : hi]])
        step = max(
            float(local.min(initial=np.inf)), decimal_resolution(np.append(neighbours, value))
        )

        slopes = [
            abs(x[i] - x[o]) if smooth and 0 <= o < x.size and np.isfinite(x[o]) else 0.0
            for i, o in sides
        ]
        tolerances = [max(QUANTISATION_SLACK * step, SLOPE_SLACK * d) for d in slopes]
        if all(abs(n - value) <= t for n, t in zip(neighbours, tolerances, strict=True)):
            continue  # a plateau of a quantised (or quantised and resampled) signal
        if value - lowest <= clip and all(abs(n - value) <= clip for n in neighbours):
            continue  # an envelope resting on its floor (clipped at 0, or a tonic floor)
        runs.append((int(first), int(last)))
    return runs


def decimal_resolution(values: np.ndarray) -> float:
    """The step of values written with a fixed number of decimals: 10^-d for the most decimals
    any of them needs (shortest round-trip form); ~0 for binary data, which needs ~17."""
    decimals = 0
    for value in values[np.isfinite(values)]:
        text = np.format_float_positional(float(value), unique=True, trim="-")
        decimals = max(decimals, len(text.partition(".")[2]))
    return 10.0**-decimals


def _columns_with_repeats(data: np.ndarray) -> np.ndarray:
    """Columns of ``data`` (T, C) with MIN_CONSTANT_RUN equal consecutive samples somewhere:
    the only ones :func:`constant_runs` needs to look at (one vectorised pass)."""
    if data.shape[0] < MIN_CONSTANT_RUN:
        return np.empty(0, dtype=int)
    with np.errstate(invalid="ignore"):
        run = data[1:] == data[:-1]  # run[i]: sample i+1 repeats sample i
    for _ in range(MIN_CONSTANT_RUN - 2):
        run = run[:-1] & run[1:]  # each pass: one more following sample repeats too
    return np.flatnonzero(run.any(axis=0))


def _constant_run_check(part: SideStrides, emg_kind: str, result: GateResult) -> None:
    """Runs in the source samples that fall inside a stride (at least MIN_CONSTANT_RUN of them)."""
    for kind in KINDS:
        series = getattr(part.recording, kind)
        if series is None or part.batch.n_strides == 0:
            continue
        data = _columns(series)
        stride_first, stride_last = _stride_samples(part, series)
        fail = np.zeros((part.batch.n_strides, data.shape[1]), np.bool_)
        reasons: dict[int, str] = {}
        envelope = kind == "emg" and emg_kind == "envelope"
        for c in _columns_with_repeats(data):
            runs = constant_runs(
                data[:, c], smooth=kind != "emg" or envelope, floor_clipped=envelope
            )
            for first, last in runs:
                t0 = series.start_s + first / series.rate_hz
                t1 = series.start_s + last / series.rate_hz
                # samples of the run inside each stride [start, end]
                inside = np.minimum(last, stride_last) - np.maximum(first, stride_first) + 1
                hit = inside >= MIN_CONSTANT_RUN
                if hit.any():
                    fail[hit, c] = True
                    value = data[first, c]
                    what = "exact zeros" if value == 0 else f"the constant {value:.6g}"
                    reasons.setdefault(
                        c,
                        f"{last - first + 1} samples of {what} at {t0:.3f}-{t1:.3f} s "
                        "(a dropout or frozen value)",
                    )
        _remove(part, kind, fail, "constant_run", reasons, result)


def _flat_check(part: SideStrides, result: GateResult) -> None:
    peak = np.max(np.nan_to_num(part.batch.emg_envelope, nan=0.0), axis=1)
    flat = peak <= FLAT_ENVELOPE
    _remove(
        part,
        "emg",
        flat,
        "flat",
        dict.fromkeys(range(len(MUSCLES)), "the envelope is flat (peak 0): a dead channel"),
        result,
    )


# --- duplicates ------------------------------------------------------------------------------


@overload
def _columns(series: TimeSeries) -> np.ndarray: ...
@overload
def _columns(series: None) -> None: ...
def _columns(series: TimeSeries | None) -> np.ndarray | None:
    if series is None:
        return None
    return np.asarray(series.data, dtype=np.float64).reshape(series.n_samples, -1)


def _in_present_strides(part: SideStrides, kind: str, series: TimeSeries) -> np.ndarray:
    """(T, C) the source's samples that lie in a stride where the component is still present
    (a component already left out, or samples outside every stride, do not count)."""
    mask = _mask(part.batch, kind)
    valid = np.zeros((series.n_samples, mask.shape[1]), bool)
    first, last = _stride_samples(part, series)
    for a, b, present in zip(first, last, mask, strict=True):
        valid[max(a, 0) : max(b + 1, 0), present] = True
    return valid


def _grid_key(series: TimeSeries) -> tuple[float, int, int]:
    return (round(series.rate_hz, 9), round(series.start_s * series.rate_hz), series.n_samples)


def _duplicate_pairs(
    columns: np.ndarray,
    valid: np.ndarray,
    labels: list[tuple[str, str]],
    *,
    across_sides_only: bool,
    correlate: bool,
    shared: Sequence[frozenset[str]],
) -> dict[int, str]:
    """Columns (T, C) holding the same signal as another one over the samples where both are
    valid: index → reason. ``labels`` are (side, component) per column; ``shared`` groups of
    components the catalogue fed from one channel on purpose (same side) are not duplicates."""
    valid = valid & np.isfinite(columns)
    found: dict[int, str] = {}
    recorded = [c for c in range(columns.shape[1]) if valid[:, c].sum() >= MIN_CONSTANT_RUN]
    for a, b in sorted(_duplicate_candidates(columns, valid, recorded)):
        (side_a, name_a), (side_b, name_b) = labels[a], labels[b]
        if across_sides_only and side_a == side_b:
            continue
        if side_a == side_b and any({name_a, name_b} <= group for group in shared):
            continue
        both = valid[:, a] & valid[:, b]
        if both.sum() < MIN_CONSTANT_RUN:
            continue
        x, y = columns[both, a], columns[both, b]
        if np.array_equal(x, y):
            how = "bit-identical"
        else:
            if not correlate or x.std() == 0 or y.std() == 0:
                continue
            r = float(np.corrcoef(x, y)[0, 1])
            if not abs(r) > DUPLICATE_CORRELATION:
                continue
            how = f"correlation {r:+.4f}"
        found.setdefault(a, f"the same signal as {side_b} {name_b} ({how})")
        found.setdefault(b, f"the same signal as {side_a} {name_a} ({how})")
    return found


def _duplicate_candidates(
    columns: np.ndarray, valid: np.ndarray, recorded: list[int]
) -> set[tuple[int, int]]:
    """Pairs worth the exact test: one correlation matrix over the samples where every
    recorded column is valid screens out pairs far from |r| = 1 (copies correlate perfectly on
    any subset); every pair when those samples are too few to tell."""
    common = valid[:, recorded].all(axis=1)
    if common.sum() < SCREEN_MIN_SAMPLES:
        return {(a, b) for i, a in enumerate(recorded) for b in recorded[i + 1 :]}
    rows = np.flatnonzero(common)
    rows = rows[:: max(1, rows.size // SCREEN_SAMPLES)]  # copies correlate on any subset
    x = columns[np.ix_(rows, recorded)]  # type: ignore[arg-type]  # stubs: no list[int]
    x = x - x.mean(axis=0)
    norm = np.sqrt((x**2).sum(axis=0))
    moving = norm > 0  # constant columns: only the exact test can tell (bit-identical)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (x.T @ x) / np.outer(norm, norm)
    i, j = np.triu_indices(len(recorded), k=1)
    close = ~(moving[i] & moving[j]) | (np.abs(r[i, j]) > SCREEN_CORRELATION)
    return {(recorded[a], recorded[b]) for a, b in zip(i[close], j[close], strict=True)}


def _duplicate_check(
    parts: Sequence[SideStrides],
    activity: str | None,
    shared: Sequence[frozenset[str]],
    result: GateResult,
) -> None:
    """EMG: any two muscle slots, within a side or across sides. Joint angles and moments: left
    against right only (one leg's joints move together), and outside gait only when
    bit-identical (both legs rise from a chair alike). Recordings are compared when they share
    a time grid: a continuous trial's two sides, or pre-cut left and right strides."""
    for kind in KINDS:
        names = component_names(kind)
        groups: dict[tuple[float, int, int], list[int]] = {}
        for index, part in enumerate(parts):
            series = getattr(part.recording, kind)
            if series is not None and part.batch.n_strides:
                groups.setdefault(_grid_key(series), []).append(index)
        for members in groups.values():
            # One left and one right at a time (pre-cut strides pair up by their time grid).
            by_side: dict[str, list[int]] = {}
            for index in members:
                by_side.setdefault(parts[index].side, []).append(index)
            pairs = list(zip(by_side.get("L", []), by_side.get("R", []), strict=False))
            paired = {i for pair in pairs for i in pair}
            units = pairs + [(i,) for i in members if i not in paired]
            for unit in units:
                if kind != "emg" and len(unit) < 2:
                    continue
                series = [getattr(parts[i].recording, kind) for i in unit]
                columns = np.concatenate([_columns(s) for s in series], axis=1)
                valid = np.concatenate(
                    [
                        _in_present_strides(parts[i], kind, s)
                        for i, s in zip(unit, series, strict=True)
                    ],
                    axis=1,
                )
                labels = [(parts[i].side, n) for i in unit for n in names]
                found = _duplicate_pairs(
                    columns,
                    valid,
                    labels,
                    across_sides_only=kind != "emg",
                    correlate=kind == "emg" or activity in GAIT_ACTIVITIES,
                    shared=shared if kind == "emg" else (),
                )
                width = len(names)
                for position, i in enumerate(unit):
                    reasons = {
                        c - position * width: why
                        for c, why in found.items()
                        if position * width <= c < (position + 1) * width
                    }
                    _remove_everywhere(parts[i], kind, "duplicate", reasons, result)


# --- EMG kind and hum ------------------------------------------------------------------------


def _middle(x: np.ndarray) -> np.ndarray:
    """At most MAX_SPECTRUM_SAMPLES rows from the middle of ``x``: what a signal is does not
    change along a trial, and a long trial's spectrum would cost more than its EMG chain."""
    if x.shape[0] <= MAX_SPECTRUM_SAMPLES:
        return x
    start = (x.shape[0] - MAX_SPECTRUM_SAMPLES) // 2
    return x[start : start + MAX_SPECTRUM_SAMPLES]


def _spectra(
    x: np.ndarray, rate_hz: float, resolution_hz: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Welch power spectra of the rows of ``x`` (C, T) with their whole-signal means removed
    (per segment would also remove an envelope's slow swings)."""
    centred = x - x.mean(axis=-1, keepdims=True)
    return welch_psd(centred, rate_hz, resolution_hz=resolution_hz, detrend=False)


def _share(freqs: np.ndarray, psd: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(C,) share of each row's power in [lo, hi] Hz (NaN for a row without power)."""
    total = psd.sum(axis=-1)
    inside = psd[..., (freqs >= lo) & (freqs <= hi)].sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / total, np.nan)


def floor_share(x: np.ndarray) -> np.ndarray:
    """How much more of each column of ``x`` (T, ...) rests on its floor than on its ceiling:
    the share of samples within the lowest FLOOR_FRACTION of the 0.5–99.5 percentile range,
    less the share within the highest. ~0 for bipolar EMG whatever its offset (and for a
    sinusoid of hum, which sits as much on both), 10 % and more for a rectified signal or an
    envelope; 1 for a constant."""
    # Percentiles of a thinned copy (at most SCREEN_SAMPLES rows) are as good and far cheaper.
    thin = x[:: max(1, x.shape[0] // SCREEN_SAMPLES)]
    low, high = np.percentile(thin, [0.5, 99.5], axis=0)
    margin = FLOOR_FRACTION * (high - low)
    share = np.mean(x <= low + margin, axis=0) - np.mean(x >= high - margin, axis=0)
    return np.where(high > low, share, 1.0)


def emg_kind_problems(data: np.ndarray, rate_hz: float, declared: str) -> list[str | None]:
    """Per column of ``data`` (T, C): why its finite samples are not ``declared`` EMG ("raw"
    or "envelope"), or None when they look like it (or are too few or flat to tell). Columns
    without a gap are judged together (one Welch call)."""
    data = np.asarray(data, dtype=np.float64)
    problems: list[str | None] = [None] * data.shape[1]
    whole = np.isfinite(data).all(axis=0) & (data.shape[0] >= 16)
    judged = [(np.flatnonzero(whole), data[:, whole])]
    judged += [
        (np.array([c]), data[np.isfinite(data[:, c]), c][:, None])
        for c in np.flatnonzero(~whole)
        if np.isfinite(data[:, c]).sum() >= 16
    ]
    for columns, x in judged:
        if not columns.size:
            continue
        for c, problem in zip(columns, _kind_problems(x, rate_hz, declared), strict=True):
            problems[int(c)] = problem
    return problems


def _kind_problems(x: np.ndarray, rate_hz: float, declared: str) -> list[str | None]:
    flat = x.std(axis=0) == 0
    freqs, psd = _spectra(x.T, rate_hz, KIND_RESOLUTION_HZ)
    if declared != "raw":
        low = _share(freqs, psd, 0.0, ENVELOPE_MAX_HZ)
        return [
            None
            if flat[c] or not low[c] < ENVELOPE_MIN_LOW_SHARE
            else (
                f"{100 * low[c]:.0f} % of its power below {ENVELOPE_MAX_HZ:g} Hz (an envelope: "
                f"at least {100 * ENVELOPE_MIN_LOW_SHARE:g} %): raw or rectified EMG, not an "
                "envelope"
            )
            for c in range(x.shape[1])
        ]
    high = min(RAW_EMG_BAND_HZ[1], 0.45 * rate_hz)
    if high <= RAW_EMG_BAND_HZ[0]:
        return [
            None if flat[c] else f"sampled at {rate_hz:g} Hz, too slow to hold raw EMG (20-450 Hz)"
            for c in range(x.shape[1])
        ]
    floor, band = floor_share(x), _share(freqs, psd, RAW_EMG_BAND_HZ[0], high)
    problems: list[str | None] = []
    for c in range(x.shape[1]):
        if flat[c]:
            problems.append(None)
        elif floor[c] > FLOOR_MAX_SHARE:
            problems.append(
                f"one-sided ({100 * floor[c]:.0f} % of the samples on its floor; bipolar raw "
                f"EMG: at most {100 * FLOOR_MAX_SHARE:g} %): rectified or an envelope"
            )
        elif band[c] < RAW_EMG_MIN_BAND_SHARE:
            problems.append(
                f"{100 * band[c]:.0f} % of its power in {RAW_EMG_BAND_HZ[0]:g}-{high:g} Hz (raw "
                f"sEMG: at least {100 * RAW_EMG_MIN_BAND_SHARE:g} %): an envelope or artefact"
            )
        else:
            problems.append(None)
    return problems


def emg_kind_problem(x: np.ndarray, rate_hz: float, declared: str) -> str | None:
    """:func:`emg_kind_problems` for one channel."""
    return emg_kind_problems(np.asarray(x, dtype=np.float64)[:, None], rate_hz, declared)[0]


def _emg_kind_check(parts: Sequence[SideStrides], declared: str, result: GateResult) -> None:
    """Per side and channel, judged on the source signal (pre-cut strides: up to
    MAX_SEGMENTS_FOR_KIND of them, the median verdict)."""
    for side in ("L", "R"):
        mine = [
            p for p in parts if p.side == side and p.recording.emg is not None and p.batch.n_strides
        ]
        if not mine:
            continue
        picks = np.unique(
            np.linspace(0, len(mine) - 1, min(len(mine), MAX_SEGMENTS_FOR_KIND)).astype(int)
        )
        n_channels = len(MUSCLES)
        verdicts: list[list[str | None]] = [[] for _ in range(n_channels)]
        for index in picks:
            series = mine[index].recording.emg
            assert series is not None
            data = _middle(np.asarray(series.data, dtype=np.float64))
            recorded = np.flatnonzero(np.isfinite(data).sum(axis=0) >= 16)
            found = emg_kind_problems(data[:, recorded], series.rate_hz, declared)
            for channel, problem in zip(recorded, found, strict=True):
                verdicts[channel].append(problem)
        reasons: dict[int, str] = {}
        for c, found in enumerate(verdicts):
            problems = [v for v in found if v is not None]
            if found and 2 * len(problems) > len(found):
                reasons[c] = f"declared {declared} but {problems[0]}"
        for part in mine:
            _remove_everywhere(part, "emg", "emg_kind", reasons, result)


def hum_shares(x: np.ndarray, rate_hz: float, mains_hz: float) -> np.ndarray:
    """(C,) share of the in-band (20-450 Hz) power of each row of ``x`` (C, T) within ±1 Hz
    (at least 1.5 frequency bins) of the mains harmonics."""
    high = min(RAW_EMG_BAND_HZ[1], 0.45 * rate_hz)
    freqs, psd = _spectra(x, rate_hz)
    band = (freqs >= RAW_EMG_BAND_HZ[0]) & (freqs <= high)
    lines = np.arange(mains_hz, high + 1, mains_hz)
    resolution = freqs[1] - freqs[0] if freqs.size > 1 else rate_hz
    near = (np.abs(freqs[:, None] - lines[None, :]) <= max(1.0, 1.5 * resolution)).any(axis=1)
    total = psd[..., band].sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, psd[..., band & near].sum(axis=-1) / total, 0.0)


def _mains_hum_check(part: SideStrides, mains_hz: float | None, result: GateResult) -> None:
    """On the processed (notched, band-passed, 1 kHz) rows of the side's strides; each channel
    on the strides where it is present."""
    if mains_hz is None or part.batch.n_strides == 0:
        return
    rows, mask = part.batch.emg, part.batch.emg_mask
    finite = np.isfinite(rows)
    groups: dict[bytes, list[int]] = {}  # channels present in the same strides go together
    for channel in np.flatnonzero(mask.any(axis=0)):
        if finite[:, channel].sum() >= 256:
            groups.setdefault(np.packbits(finite[:, channel]).tobytes(), []).append(int(channel))
    reasons: dict[int, str] = {}
    for columns in groups.values():
        x = _middle(rows[finite[:, columns[0]]][:, columns].astype(np.float64)).T
        for c, share in zip(columns, hum_shares(x, 1000.0, mains_hz), strict=True):
            if share > MAINS_HUM_MAX_SHARE:
                reasons[c] = (
                    f"{100 * share:.0f} % of its 20-450 Hz power is {mains_hz:g} Hz mains hum "
                    "after the notch"
                )
    _remove_everywhere(part, "emg", "mains_hum", reasons, result)


# --- left/right signs ------------------------------------------------------------------------


def _mean_curves(parts: Sequence[SideStrides], kind: str) -> np.ndarray | None:
    curves = [
        np.where(
            _mask(p.batch, kind)[:, None, :],
            getattr(p.batch, kind).reshape(p.batch.n_strides, p.batch.kinematics.shape[1], -1),
            np.nan,
        )
        for p in parts
        if p.batch.n_strides
    ]
    if not curves:
        return None
    stacked = np.concatenate(curves)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # components absent in every stride
        return np.nanmean(stacked, axis=0)  # (P, 9)


def _lr_sign_check(parts: Sequence[SideStrides], result: GateResult) -> None:
    lefts = [p for p in parts if p.side == "L"]
    rights = [p for p in parts if p.side == "R"]
    if not lefts or not rights:
        return
    for kind in ("kinematics", "kinetics"):
        left, right = _mean_curves(lefts, kind), _mean_curves(rights, kind)
        if left is None or right is None:
            continue
        reasons = {}
        for c in range(left.shape[1]):
            a, b = left[:, c], right[:, c]
            if not (np.isfinite(a).all() and np.isfinite(b).all()):
                continue
            if np.ptp(a) < LR_MIN_SPAN[kind] or np.ptp(b) < LR_MIN_SPAN[kind]:
                continue
            r = float(np.corrcoef(a, b)[0, 1])
            if r < LR_SIGN_CORRELATION:
                reasons[c] = (
                    f"the left and right mean strides are mirror images (correlation {r:+.2f}): "
                    "a side's sign convention is wrong"
                )
        for part in (*lefts, *rights):
            _remove_everywhere(part, kind, "lr_sign", reasons, result)


# --- ground contact --------------------------------------------------------------------------


def on_plate(windows: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Strides whose stance a force-plate window covers: it starts within PLATE_ONSET_SLACK_S
    of the heel strike and lasts at least PLATE_MIN_COVER of the cycle."""
    windows = np.asarray(windows, dtype=np.float64).reshape(-1, 2)
    if windows.size == 0:
        return np.zeros(starts.size, bool)
    onset = np.abs(windows[None, :, 0] - starts[:, None]) <= PLATE_ONSET_SLACK_S
    long_enough = windows[None, :, 1] >= (starts + PLATE_MIN_COVER * (ends - starts))[:, None]
    return (onset & long_enough).any(axis=1)


def loaded_stance(ankle_moment: np.ndarray) -> np.ndarray:
    """Per stride (N, P): the stance |ankle moment| peak reaches CONTACT_STANCE_OVER_SWING ×
    its late-swing level; True where the ankle moment is not finite (nothing to judge)."""
    points = ankle_moment.shape[1]
    phase = np.linspace(0.0, 1.0, points)
    stance = (phase >= STANCE_PHASE[0]) & (phase <= STANCE_PHASE[1])
    swing = (phase >= LATE_SWING_PHASE[0]) & (phase <= LATE_SWING_PHASE[1])
    magnitude = np.abs(ankle_moment)
    with np.errstate(invalid="ignore"):
        loaded = magnitude[:, stance].max(axis=1) >= CONTACT_STANCE_OVER_SWING * magnitude[
            :, swing
        ].max(axis=1)
    return loaded | ~np.isfinite(ankle_moment).all(axis=1)


def _no_contact_check(part: SideStrides, activity: str | None, result: GateResult) -> None:
    batch = part.batch
    if batch.n_strides == 0:
        return
    windows = part.recording.kinetics_valid_s
    if windows is not None:
        contact = on_plate(windows, batch.start_s, part.ends_s)
        why = "its stance was on no force plate"
    elif activity in GAIT_ACTIVITIES:
        ankle = np.where(
            batch.kinetics_mask[:, None, _ANKLE, _FLEX],
            batch.kinetics[:, :, _ANKLE, _FLEX].astype(np.float64),
            np.nan,
        )
        contact = loaded_stance(ankle)
        why = (
            f"the stance ankle moment stays below {CONTACT_STANCE_OVER_SWING:g}× its late-swing "
            "level: no ground reaction"
        )
    else:
        return
    fail = np.repeat(~contact[:, None], 9, axis=1)
    _remove(part, "kinetics", fail, "no_contact", dict.fromkeys(range(9), why), result)


# --- the gate --------------------------------------------------------------------------------


def run_gate(
    parts: Sequence[SideStrides],
    *,
    emg_kind: str,
    mains_hz: float | None,
    activity: str | None,
    shared_emg: Sequence[frozenset[str]] = (),
) -> GateResult:
    """Run every check over one recording's strides (edited in place); what was removed.

    ``shared_emg``: groups of muscles the catalogue explicitly feeds from one channel (the
    duplicate check leaves them be)."""
    result = GateResult()
    for part in parts:
        _range_check(part, result)
        _constant_run_check(part, emg_kind, result)
        _flat_check(part, result)
    _duplicate_check(parts, activity, shared_emg, result)
    _emg_kind_check(parts, emg_kind, result)
    if emg_kind == "raw":
        for part in parts:
            _mains_hum_check(part, mains_hz, result)
    _lr_sign_check(parts, result)
    for part in parts:
        _no_contact_check(part, activity, result)
    result.notes = _condensed(result.notes)
    return result


def _condensed(notes: list[str]) -> list[str]:
    """Pre-cut strides repeat one finding per stride: count repeats instead of listing them."""
    counts: dict[str, int] = {}
    for note in notes:
        counts[note] = counts.get(note, 0) + 1
    return [note if n == 1 else f"{note} (×{n})" for note, n in counts.items()]

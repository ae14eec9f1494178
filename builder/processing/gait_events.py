"""Gait-event detection from force plates and marker trajectories: pure numpy, any adapter.

- Plate contacts: the vertical ground-reaction force, its zero offset removed
  (:func:`plate_baseline`, from the spans where the plate is unloaded), above a threshold well
  above plate noise; onset and offset where the load crosses ``CONTACT_EDGE_N``.
- The lab's vertical axis: the pelvis above the feet, else the plates' normal (their corners),
  else the axis along which the plates carry body weight.
- Which foot made a contact: the foot whose markers lie nearest the centre of pressure.
- Kinematic events (Zeni et al. 2008, Gait Posture 27:710): heel strike at the most anterior
  position of the heel (or ankle) relative to the pelvis along the direction of progression,
  toe off at the most posterior position of the toe.
- Merging: a plate event replaces the kinematic event of the same foot near it (plates are
  precise to a sample; Zeni's heel strike is typically 20-100 ms early). :func:`event_lags`
  measures that lead on the events both detectors saw, so an adapter can correct the
  kinematic events before splicing them with plate events.
- Heel strikes from joint angles alone (no markers, no plates: :func:`kinematic_heel_strikes`):
  the first minimum of knee flexion after each swing peak (terminal-swing knee extension).

Arrays are time-first: markers (T, 3) in metres, forces (T, 3) in newtons. Times are absolute
seconds in the source's time base: ``start_s + index / rate_hz``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter1d, uniform_filter1d
from scipy.signal import butter, find_peaks, sosfiltfilt

# Two heel strikes of the same foot are never closer than this (a sprint stride is ~0.45 s);
# it is both the minimum spacing of detected events and the tolerance for "the same event".
MIN_STRIDE_S = 0.4
# A plate contact shorter than this is a knock or a noise burst, not a stance (running ~0.2 s).
MIN_CONTACT_S = 0.1
# Dips below the threshold shorter than this do not split a contact.
MAX_CONTACT_GAP_S = 0.02
# Heel/toe excursion relative to the pelvis is ±0.15-0.4 m in gait; marker noise is ~mm.
MIN_PROMINENCE_M = 0.05
# Marker gaps up to this long are bridged linearly before kinematic detection.
MAX_MARKER_GAP_S = 0.1
# A kinematic event is the extreme of the signal at least this far either side (a broad peak
# moves ~mm within it; marker noise cannot fake it).
PEAK_FLANK_S = 0.04
# Contact onset and offset are placed where the load (zero offset removed) crosses this level,
# once the force has passed the detection threshold: gait-pig.c3d's Vicon events sit at 17-23 N.
CONTACT_EDGE_N = 20.0
# Window over which a plate's signal must be flat to count as unloaded (baseline estimation).
QUIET_WINDOW_S = 0.1
# A kinematic event is paired with a plate event of the same foot at most this far away when
# estimating the kinematic detector's lag (Zeni's heel strike runs 10-100 ms early).
MAX_KINEMATIC_LAG_S = 0.15


@dataclass(frozen=True)
class Contact:
    """One foot contact on one force plate: samples ``start:stop`` are above the threshold."""

    start: int
    stop: int
    on_s: float  # first sample above the threshold
    off_s: float  # last sample above the threshold
    on_observed: bool  # False when the recording starts mid-contact: on_s is no heel strike
    off_observed: bool  # False when the recording ends mid-contact: off_s is no toe off


def vertical_component(force: np.ndarray) -> np.ndarray:
    """The component of a (T, 3) plate force along the axis that carries body weight.

    The vertical force peaks near body weight, shear forces at ~20 % of it, so the axis with
    the largest peak is vertical whatever the lab's axis convention.
    """
    magnitude = np.nan_to_num(np.abs(force))
    return force[:, int(np.argmax(magnitude.max(axis=0)))]


def contact_intervals(
    force: np.ndarray, threshold: float, min_samples: int = 1, max_gap_samples: int = 0
) -> np.ndarray:
    """(K, 2) ``[start, stop)`` sample ranges where ``|force| > threshold``.

    Runs separated by at most ``max_gap_samples`` are joined; runs shorter than
    ``min_samples`` are dropped. NaN counts as below the threshold.
    """
    above = np.nan_to_num(np.abs(np.asarray(force, dtype=float))) > threshold
    edges = np.diff(np.concatenate(([0], above.astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if starts.size > 1:
        keep = starts[1:] - stops[:-1] > max_gap_samples
        starts = np.concatenate((starts[:1], starts[1:][keep]))
        stops = np.concatenate((stops[:-1][keep], stops[-1:]))
    long_enough = stops - starts >= min_samples
    return np.column_stack((starts[long_enough], stops[long_enough])).astype(np.int64)


def plate_contacts(
    vertical_force: np.ndarray,
    rate_hz: float,
    start_s: float,
    threshold_n: float,
    min_duration_s: float = MIN_CONTACT_S,
    max_gap_s: float = MAX_CONTACT_GAP_S,
    edge_n: float | None = None,
) -> list[Contact]:
    """Foot contacts on one plate from its vertical force (T,) in newtons (zero offset
    removed). A contact is where the force exceeds ``threshold_n``; with ``edge_n`` below it,
    its ends extend outwards while the force stays above ``edge_n`` (the threshold finds
    contacts safely above noise, the lower level places their onset and offset)."""
    n = len(vertical_force)
    intervals = contact_intervals(
        vertical_force,
        threshold_n,
        min_samples=max(1, round(min_duration_s * rate_hz)),
        max_gap_samples=round(max_gap_s * rate_hz),
    )
    if edge_n is not None and edge_n < threshold_n and len(intervals):
        runs = contact_intervals(vertical_force, edge_n)  # each contact lies within runs
        first = np.searchsorted(runs[:, 1], intervals[:, 0], side="right")
        last = np.searchsorted(runs[:, 1], intervals[:, 1] - 1, side="right")
        merged: list[list[int]] = []
        for a, b in zip(runs[first, 0], runs[last, 1], strict=True):
            if merged and a < merged[-1][1]:  # two contacts within one run: one contact
                merged[-1][1] = max(merged[-1][1], int(b))
            else:
                merged.append([int(a), int(b)])
        intervals = np.array(merged, dtype=np.int64)
    return [
        Contact(
            start=int(a),
            stop=int(b),
            on_s=start_s + a / rate_hz,
            off_s=start_s + (b - 1) / rate_hz,
            on_observed=bool(a > 0),
            off_observed=bool(b < n),
        )
        for a, b in intervals
    ]


def plate_baseline(
    vertical_force: np.ndarray,
    rate_hz: float,
    threshold_n: float,
    window_s: float = QUIET_WINDOW_S,
) -> float | None:
    """The level of a plate with nothing on it (its zero offset; real plates sit tens to
    hundreds of newtons off zero), from the spans where it is unloaded; None without one.

    The signal is cut into ``window_s`` windows; a window is quiet when its standard deviation
    is below a quarter of the contact threshold or twice the quietest window's (plate noise is
    well below the threshold; a stance changes by hundreds of newtons in 0.1 s). Quiet windows
    are the unloaded plate or a foot standing still on it. A foot only ever pushes, so the
    signal lies on one side of the unloaded level (beyond it by up to body weight and more,
    on the other side by noise), while a standing level has the stance peaks on one side and
    the unloaded plate on the other. So the candidates are the quiet levels whose excursion on
    their lesser side (to the 0.5th or 99.5th percentile, not to follow a spike) is within half
    the threshold of the smallest; among them the unloaded level is the one most quiet windows
    share (a flat-topped stance is one-sided too, but the plate is mostly unloaded).
    The baseline is the median of the samples of the quiet windows within half the threshold
    of that level. A plate loaded throughout the recording has no unloaded span: its standing
    level would be taken for the offset (no stride comes from such a plate anyway).
    """
    force = np.asarray(vertical_force, dtype=float)
    size = max(1, round(window_s * rate_hz))
    n_windows = force.size // size
    if n_windows == 0:
        return None
    windows = force[: n_windows * size].reshape(n_windows, size)
    windows = windows[np.isfinite(windows).all(axis=1)]
    spread = windows.std(axis=1)
    quiet = windows[spread <= max(threshold_n / 4.0, 2.0 * spread.min(initial=np.inf))]
    if not quiet.size:
        return None
    levels = quiet.mean(axis=1)
    low, high = np.percentile(force[np.isfinite(force)], [0.5, 99.5])
    lesser = np.minimum(high - levels, levels - low)
    candidates = levels[lesser <= lesser.min() + threshold_n / 2.0]
    sharing = (np.abs(candidates[:, None] - levels[None, :]) <= threshold_n / 2.0).sum(axis=1)
    unloaded = candidates[np.argmax(sharing)]
    near = np.abs(levels - unloaded) <= threshold_n / 2.0
    return float(np.median(quiet[near]))


def _horizontal(vectors: np.ndarray, up_axis: int) -> np.ndarray:
    flat = np.array(vectors, dtype=float, copy=True)
    flat[..., up_axis] = 0.0
    return flat


def foot_cop_distance(cop: np.ndarray, foot_markers: Sequence[np.ndarray], up_axis: int) -> float:
    """Median over frames of the horizontal distance from the centre of pressure (n, 3) to
    the nearest of one foot's markers (each (n, 3), same frames); NaN without marker data."""
    if not foot_markers:
        return float("nan")
    markers = np.stack(foot_markers, axis=1)  # (n, k, 3)
    gaps = np.linalg.norm(_horizontal(markers - cop[:, None, :], up_axis), axis=2)
    finite = np.isfinite(gaps)
    nearest = np.where(finite, gaps, np.inf).min(axis=1)
    nearest = nearest[np.isfinite(nearest)]
    return float(np.median(nearest)) if nearest.size else float("nan")


def assign_contact(
    distances: Mapping[str, float], max_distance_m: float = 0.2, min_ratio: float = 2.0
) -> str | None:
    """The side whose foot is clearly nearest the centre of pressure, else ``None``.

    Clearly: within ``max_distance_m`` (a foot is ~0.25 m long) and at most 1/``min_ratio``
    of the other foot's distance (so a contact by both feet or by neither stays unassigned).
    """
    known = {side: d for side, d in distances.items() if np.isfinite(d)}
    if not known:
        return None
    side = min(known, key=known.__getitem__)
    others = [d for s, d in known.items() if s != side]
    if known[side] > max_distance_m or any(d < min_ratio * known[side] for d in others):
        return None
    return side


def fill_gaps(signal: np.ndarray, max_gap: int) -> np.ndarray:
    """Bridge interior NaN runs of at most ``max_gap`` samples linearly (along axis 0)."""
    values = np.array(signal, dtype=float, copy=True)
    missing = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if not missing.any() or missing.all():
        return values
    index = np.arange(len(values))
    edges = np.diff(np.concatenate(([0], missing.astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    for a, b in zip(starts, stops, strict=True):
        if a == 0 or b == len(values) or b - a > max_gap:
            continue  # edges and long gaps stay unknown: interpolation would invent a peak
        for column in values.reshape(len(values), -1).T:
            column[a:b] = np.interp(index[a:b], [a - 1, b], column[[a - 1, b]])
    return values


def missing_runs(signal: np.ndarray) -> np.ndarray:
    """(K, 3) ``[start, stop, interior]`` of every run of samples (rows along axis 0) that are
    not all finite; ``interior`` is 1 where the run touches neither end of the signal."""
    values = np.asarray(signal, dtype=float)
    missing = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    runs = np.array(_true_runs(missing), dtype=np.int64).reshape(-1, 2)
    interior = (runs[:, 0] > 0) & (runs[:, 1] < len(values))
    return np.column_stack((runs, interior.astype(np.int64)))


def reference_point(groups: Sequence[Sequence[np.ndarray]]) -> np.ndarray | None:
    """A pelvis reference (T, 3): the midpoint of one group of markers, e.g. [SACR],
    [LPSI, RPSI] or [LASI, RASI], in order of preference.

    One group is used throughout (a frame-by-frame switch between groups would make the
    reference jump); the first group whose coverage is within 90 % of the best wins.
    """
    candidates = [np.mean(np.stack(group), axis=0) for group in groups if group]
    if not candidates:
        return None
    coverage = [np.isfinite(c).all(axis=1).mean() for c in candidates]
    if max(coverage) == 0:
        return None
    return next(
        c for c, cov in zip(candidates, coverage, strict=True) if cov >= 0.9 * max(coverage)
    )


def vertical_axis(pelvis: np.ndarray, feet: Sequence[np.ndarray]) -> int:
    """The lab axis along which the pelvis sits above the feet (~0.9 m; horizontal offsets are
    smaller), whatever the lab convention (Z-up, Y-up); Z (the C3D default) without data."""
    axis = marker_vertical_axis(pelvis, feet)
    return 2 if axis is None else axis


def marker_vertical_axis(pelvis: np.ndarray | None, feet: Sequence[np.ndarray]) -> int | None:
    """The axis along which the pelvis sits above the feet, or None when pelvis and foot data
    never overlap or no axis stands out (the height, ~0.9 m, is at least twice any horizontal
    offset of the mean foot from the pelvis)."""
    if pelvis is None or not feet:
        return None
    offsets = _finite_mean(np.stack([pelvis - foot for foot in feet]))
    mean_offset = np.abs(_finite_mean(offsets.reshape(-1, 3)))
    if not np.isfinite(mean_offset).all():
        return None
    first, second = np.sort(mean_offset)[::-1][:2]
    return int(np.argmax(mean_offset)) if first >= 2.0 * second else None


def plate_vertical_axis(corners: np.ndarray) -> int | None:
    """The axis normal to the force plates (they lie in the floor), from their corners
    (n_plates, 4, 3) in lab coordinates; None when they are degenerate or disagree."""
    axes = set()
    for plate in np.asarray(corners, dtype=float).reshape(-1, 4, 3):
        normal = np.cross(plate[0] - plate[1], plate[0] - plate[3])
        size = np.linalg.norm(normal)
        if not np.isfinite(size) or size == 0.0:
            return None
        axis = int(np.argmax(np.abs(normal)))
        if abs(normal[axis]) < 0.9 * size:  # a tilted plate is no floor
            return None
        axes.add(axis)
    return axes.pop() if len(axes) == 1 else None


def load_vertical_axis(forces: Sequence[np.ndarray], threshold_n: float) -> int | None:
    """The axis along which the plates carry body weight (gravity): the component of each
    loaded plate's force (T, 3) with the largest peak, when the loaded plates agree."""
    axes = set()
    for force in forces:
        peaks = np.nan_to_num(np.abs(np.asarray(force, dtype=float))).max(axis=0, initial=0.0)
        if peaks.max() > threshold_n:
            axes.add(int(np.argmax(peaks)))
    return axes.pop() if len(axes) == 1 else None


def _finite_mean(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Mean of the finite entries along ``axis``; NaN (without a warning) where there are none."""
    finite = np.isfinite(values)
    count = finite.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.where(finite, values, 0.0).sum(axis=axis) / count, np.nan)


def _moving_average(values: np.ndarray, size: int) -> np.ndarray:
    """NaN-aware centred moving average along axis 0 (NaN where the window holds no data)."""
    finite = np.isfinite(values)
    total = uniform_filter1d(np.where(finite, values, 0.0), size, axis=0, mode="nearest")
    count = uniform_filter1d(finite.astype(float), size, axis=0, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def _unit(vectors: np.ndarray, min_norm: float = 0.0) -> np.ndarray:
    norm = np.linalg.norm(vectors, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > min_norm, vectors / norm, np.nan)


def progression_direction(
    pelvis: np.ndarray,
    rate_hz: float,
    up_axis: int,
    foot_axes: Sequence[np.ndarray] = (),
    window_s: float = 1.0,
    min_speed_mps: float = 0.2,
) -> np.ndarray:
    """Unit horizontal direction of progression per frame (T, 3), NaN where unknown.

    The pelvis velocity averaged over ``window_s`` (a stride, so the within-stride sway
    cancels); where the pelvis hardly moves (treadmill) the mean foot long axis
    (toe - heel) of the feet in ``foot_axes`` instead.
    """
    size = max(1, round(window_s * rate_hz))
    velocity = _horizontal(np.gradient(pelvis, axis=0) * rate_hz, up_axis)
    direction = _unit(_moving_average(velocity, size), min_speed_mps)
    if foot_axes:
        feet = _finite_mean(np.stack([_unit(_horizontal(a, up_axis)) for a in foot_axes]))
        facing = _unit(_moving_average(feet, size))
        direction = np.where(np.isfinite(direction), direction, facing)
    return direction


def anterior_position(marker: np.ndarray, pelvis: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Position (T,) of a marker ahead of the pelvis along the direction of progression."""
    return np.einsum("ij,ij->i", marker - pelvis, direction)


def _true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` of every run of True in a boolean mask."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def _finite_runs(signal: np.ndarray) -> list[tuple[int, int]]:
    return _true_runs(np.isfinite(signal))


def peak_times(
    signal: np.ndarray,
    rate_hz: float,
    start_s: float,
    min_interval_s: float = MIN_STRIDE_S,
    min_prominence: float = MIN_PROMINENCE_M,
    flank_s: float = PEAK_FLANK_S,
) -> np.ndarray:
    """Times of the maxima of ``signal`` (T,), refined to a fraction of a sample by a
    parabola through each peak and its neighbours; NaN gaps split the search.

    A maximum must be the largest value within ``flank_s`` on both sides, inside the data;
    beyond a gap the unseen signal is taken to fall away, so a peak just before a gap keeps
    the prominence of its observed side (a rising edge at a gap is no peak).
    """
    distance = max(1, round(min_interval_s * rate_hz))
    flank = max(1, int(np.ceil(flank_s * rate_hz)))
    found: list[np.ndarray] = []
    for a, b in _finite_runs(signal):
        segment = signal[a:b]
        if segment.size < 2 * flank + 1:
            continue
        padded = np.concatenate(([segment.min()], segment, [segment.min()]))
        peaks = find_peaks(padded, distance=distance, prominence=min_prominence)[0] - 1
        peaks = peaks[(peaks >= flank) & (peaks < segment.size - flank)]
        local_max = maximum_filter1d(segment, 2 * flank + 1, mode="nearest")
        peaks = peaks[segment[peaks] >= local_max[peaks]]
        left, centre, right = segment[peaks - 1], segment[peaks], segment[peaks + 1]
        curvature = left - 2 * centre + right
        with np.errstate(invalid="ignore", divide="ignore"):
            shift = np.where(curvature < 0, 0.5 * (left - right) / curvature, 0.0)
        found.append(a + peaks + np.clip(shift, -0.5, 0.5))
    if not found:
        return np.empty(0)
    return start_s + np.concatenate(found) / rate_hz


def zeni_heel_strikes(heel_ahead: np.ndarray, rate_hz: float, start_s: float) -> np.ndarray:
    """Heel strikes (Zeni): maxima of the heel's position ahead of the pelvis."""
    return peak_times(heel_ahead, rate_hz, start_s)


def zeni_toe_offs(toe_ahead: np.ndarray, rate_hz: float, start_s: float) -> np.ndarray:
    """Toe offs (Zeni): minima of the toe's position ahead of the pelvis."""
    return peak_times(-toe_ahead, rate_hz, start_s)


def merge_events(
    precise: np.ndarray, approximate: np.ndarray, tolerance_s: float = MIN_STRIDE_S
) -> np.ndarray:
    """Sorted union in which a ``precise`` event (plate) replaces every ``approximate`` one
    (kinematic) within ``tolerance_s`` of it: the same foot cannot strike twice that fast."""
    return merge_with_sources(precise, approximate, tolerance_s)[0]


def merge_with_sources(
    precise: np.ndarray, approximate: np.ndarray, tolerance_s: float = MIN_STRIDE_S
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`merge_events`, and for each merged event whether it is a ``precise`` one."""
    precise = np.sort(np.asarray(precise, dtype=float))
    approximate = np.asarray(approximate, dtype=float)
    if precise.size and approximate.size:
        nearest = np.abs(approximate[:, None] - precise[None, :]).min(axis=1)
        approximate = approximate[nearest >= tolerance_s]
    times = np.concatenate((precise, approximate))
    is_precise = np.concatenate((np.ones(precise.size, bool), np.zeros(approximate.size, bool)))
    order = np.argsort(times, kind="stable")
    return times[order], is_precise[order]


def event_lags(
    precise: np.ndarray, approximate: np.ndarray, max_lag_s: float = MAX_KINEMATIC_LAG_S
) -> np.ndarray:
    """``precise - approximate`` for every precise event (plate) with an approximate one of
    the same foot (kinematic) within ``max_lag_s``: how late the approximate detector is."""
    precise = np.asarray(precise, dtype=float)
    approximate = np.asarray(approximate, dtype=float)
    if not precise.size or not approximate.size:
        return np.empty(0)
    differences = precise[:, None] - approximate[None, :]
    nearest = differences[np.arange(precise.size), np.abs(differences).argmin(axis=1)]
    return nearest[np.abs(nearest) <= max_lag_s]


# --- heel strikes from joint angles ----------------------------------------------------------

# A knee swing peak stands at least this far above the knee angle either side of it (swing
# peaks are ~60° in walking, 90-100° on stairs; the stance flexion bump is ~15-20°).
MIN_SWING_KNEE_DEG = 25.0
# After its terminal-swing minimum the knee flexes again (loading response, ~15° in walking):
# a rise of this much above the running minimum confirms the minimum was the contact.
CONTACT_RISE_DEG = 3.0
# Zero-phase low-pass of the angles before detection: gait angles live below ~6 Hz, sensor
# and IK noise above it.
ANGLE_CUTOFF_HZ = 6.0


def kinematic_heel_strikes(
    hip_flexion_deg: np.ndarray,
    knee_flexion_deg: np.ndarray,
    rate_hz: float,
    start_s: float = 0.0,
    *,
    cutoff_hz: float = ANGLE_CUTOFF_HZ,
    min_swing_deg: float = MIN_SWING_KNEE_DEG,
    rise_deg: float = CONTACT_RISE_DEG,
    min_interval_s: float = MIN_STRIDE_S,
) -> np.ndarray:
    """Heel-strike times of one leg from its sagittal hip and knee angles (canonical signs:
    flexion positive, degrees), for walking on level ground and ramps.

    Rule (knee maximal extension in terminal swing; Perry & Burnfield, *Gait Analysis*: the
    knee reaches its swing extension just before initial contact and flexes again in loading
    response): in every swing the knee flexes to a peak while the hip flexes forward; the
    heel strike is the first minimum of knee flexion after that peak, confirmed when the knee
    has flexed ``rise_deg`` above it again (loading response). Steps:

    1. bridge NaN gaps up to 0.1 s, zero-phase 2nd-order Butterworth low-pass at ``cutoff_hz``;
    2. swing peaks: knee maxima with prominence ≥ ``min_swing_deg``, at least
       ``min_interval_s`` apart, while the hip is flexing (this rejects the stance bump);
    3. after each swing peak, follow the running minimum of the knee until it rises
       ``rise_deg`` above it; the minimum is refined to a fraction of a sample by a parabola;
    4. keep it only if the hip is in the flexed half of its range there (terminal swing, not
       mid-stance).

    Accuracy (tests/test_source_moghadam.py; simulated gait of builder.synthetic.gait_model with
    known heel strikes, 0.8-1.6 m/s, 100/200 Hz, up to 1° white noise): every heel strike
    with its swing in the recording is found, none invented; detected − true is −10…+1 ms on
    level ground, −20…−5 ms on ±5° ramps and −35…−5 ms on ±10° ramps (steeper ascent →
    earlier). On real gait the knee's terminal-swing minimum precedes force-plate contact by
    roughly 0-50 ms (literature); on a real OpenSim trial (Moghadam 2023 P11/16, 200 Hz) the
    detected heel strikes were 0-7 ms after the inverse-dynamics moments show the foot loaded
    (tests/test_source_moghadam.py). Not for stairs (the knee does not extend before contact
    on stair ascent) nor running. A heel strike is reported when its swing peak lies inside
    the recording (its rise may have begun before it: beyond the ends the knee is taken to
    fall away) and the knee has flexed ``rise_deg`` again after it.
    """
    hip = np.asarray(hip_flexion_deg, dtype=float)
    knee = np.asarray(knee_flexion_deg, dtype=float)
    if hip.shape != knee.shape or hip.ndim != 1:
        raise ValueError("hip and knee angles must be 1-D arrays of the same length")
    if not rate_hz > 0:
        raise ValueError(f"rate must be positive, got {rate_hz}")
    gap = max(1, round(0.1 * rate_hz))
    hip, knee = fill_gaps(hip, gap), fill_gaps(knee, gap)
    times: list[float] = []
    for a, b in _true_runs(np.isfinite(hip) & np.isfinite(knee)):
        times.extend(
            start_s + (a + i) / rate_hz
            for i in _heel_strike_samples(
                _lowpass(hip[a:b], rate_hz, cutoff_hz),
                _lowpass(knee[a:b], rate_hz, cutoff_hz),
                rate_hz,
                min_swing_deg,
                rise_deg,
                min_interval_s,
            )
        )
    return _spaced(np.asarray(times, dtype=float), min_interval_s)


def _lowpass(x: np.ndarray, rate_hz: float, cutoff_hz: float) -> np.ndarray:
    if cutoff_hz >= 0.45 * rate_hz:
        return x
    sos = butter(2, cutoff_hz, btype="lowpass", fs=rate_hz, output="sos")
    padlen = min(x.size - 1, 3 * round(rate_hz / cutoff_hz))
    return sosfiltfilt(sos, x, padlen=padlen) if padlen > 0 else x


def _heel_strike_samples(
    hip: np.ndarray,
    knee: np.ndarray,
    rate_hz: float,
    min_swing_deg: float,
    rise_deg: float,
    min_interval_s: float,
) -> list[float]:
    if knee.size < 3:
        return []
    distance = max(1, round(min_interval_s * rate_hz))
    # Beyond the ends the unseen knee is taken to fall to its lowest: a swing peak whose rise
    # began before the recording keeps the prominence of its observed descent (a recording cut
    # to a force-plate window starts mid-swing). The peak itself must lie inside the data.
    floor = np.min(knee)
    padded = np.concatenate(([floor], knee, [floor]))
    peaks = find_peaks(padded, distance=distance, prominence=min_swing_deg)[0] - 1
    peaks = peaks[(peaks >= 1) & (peaks <= knee.size - 2)]
    hip_velocity = np.gradient(hip)
    peaks = peaks[hip_velocity[peaks] > 0]  # swing: the hip flexes while the knee peaks
    hip_middle = 0.5 * (np.percentile(hip, 2) + np.percentile(hip, 98))
    found: list[float] = []
    for k, p in enumerate(peaks):
        stop = peaks[k + 1] if k + 1 < len(peaks) else knee.size
        j = _terminal_minimum(knee, int(p), int(stop), rise_deg)
        if j is None or hip[j] < hip_middle:
            continue
        found.append(j + _parabola_shift(knee, j))
    return found


def _terminal_minimum(knee: np.ndarray, start: int, stop: int, rise_deg: float) -> int | None:
    """First sample after ``start`` whose value the knee later exceeds by ``rise_deg``, with
    no lower value in between: the running minimum at the moment the knee rises again."""
    lowest = start
    for i in range(start + 1, stop):
        if knee[i] < knee[lowest]:
            lowest = i
        elif knee[i] > knee[lowest] + rise_deg:
            return lowest
    return None


def _parabola_shift(x: np.ndarray, j: int) -> float:
    if j <= 0 or j >= x.size - 1:
        return 0.0
    left, centre, right = x[j - 1], x[j], x[j + 1]
    curvature = left - 2 * centre + right
    return float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5)) if curvature > 0 else 0.0


def _spaced(times: np.ndarray, min_interval_s: float) -> np.ndarray:
    times = np.sort(times)
    kept: list[float] = []
    for t in times:
        if not kept or t - kept[-1] >= min_interval_s:
            kept.append(float(t))
    return np.asarray(kept, dtype=float)

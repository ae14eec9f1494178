"""Gait-event detection from force plates and marker trajectories: pure numpy, any adapter.

- Plate contacts: the vertical ground-reaction force above a threshold well above plate noise.
- Which foot made a contact: the foot whose markers lie nearest the centre of pressure.
- Kinematic events (Zeni et al. 2008, Gait Posture 27:710): heel strike at the most anterior
  position of the heel (or ankle) relative to the pelvis along the direction of progression,
  toe off at the most posterior position of the toe.
- Merging: a plate event replaces the kinematic event of the same foot near it (plates are
  precise to a sample; Zeni's heel strike is typically 20-100 ms early).

Arrays are time-first: markers (T, 3) in metres, forces (T, 3) in newtons. Times are absolute
seconds in the source's time base: ``start_s + index / rate_hz``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter1d, uniform_filter1d
from scipy.signal import find_peaks

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
) -> list[Contact]:
    """Foot contacts on one plate from its vertical force (T,) in newtons."""
    n = len(vertical_force)
    intervals = contact_intervals(
        vertical_force,
        threshold_n,
        min_samples=max(1, round(min_duration_s * rate_hz)),
        max_gap_samples=round(max_gap_s * rate_hz),
    )
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
    smaller), whatever the lab convention (Z-up, Y-up)."""
    offsets = (
        _finite_mean(np.stack([pelvis - foot for foot in feet])) if feet else np.full(3, np.nan)
    )
    mean_offset = _finite_mean(offsets.reshape(-1, 3))
    if not np.isfinite(mean_offset).all():
        return 2  # no overlap between pelvis and foot data: the C3D default, Z up
    return int(np.argmax(np.abs(mean_offset)))


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


def _finite_runs(signal: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate(([0], np.isfinite(signal).astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


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
    precise = np.sort(np.asarray(precise, dtype=float))
    approximate = np.asarray(approximate, dtype=float)
    if precise.size:
        nearest = np.abs(approximate[:, None] - precise[None, :]).min(axis=1)
        approximate = approximate[nearest >= tolerance_s]
    return np.sort(np.concatenate((precise, approximate)))

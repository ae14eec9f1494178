"""Plausibility checks on canonical data, shared by the source adapters.

Adapters convert a source to the canonical conventions (degrees, flexion / dorsiflexion /
adduction positive, internal moments in N·m/kg, EMG of a known kind) from what the catalogue
and the papers say. These checks test that the data agree, so that a wrong sign rule, unit or
EMG kind is refused (a :class:`~builder.errors.SourceError` naming the adapter's assumption)
instead of landing in the store. Every check takes the caller's ``assumption`` text: the
message says which assumption broke, then what was measured.

- phase and mean strides: :func:`phase_window`, :func:`phase_mean`, :func:`cycle_window`,
  :func:`mean_stride`, :func:`mean_normalised_stride`, :func:`median_stride`;
- moment units by magnitude: :func:`robust_peak`, :func:`moment_units_by_magnitude` with the
  band tables, :func:`ankle_moment_peak`, :func:`moment_scale`, :func:`kinetic_factor`;
- body mass: :func:`check_body_mass`;
- joint angles (signs, degrees): :func:`check_knee_flexion_percentiles`,
  :func:`check_swing_knee_flexion`, :func:`check_mean_stride_angles`,
  :func:`check_sagittal_signs`;
- internal vs external moments: :func:`check_plantarflexor_moment`,
  :func:`check_internal_moments`, :func:`check_walking_moments`;
- EMG kind: :func:`negative_share`, :func:`check_raw_emg`, :func:`check_envelope_share`,
  :func:`check_envelope_undershoot`, :func:`emg_signal_kind`, :func:`check_emg_kind`;
  :func:`check_recordings` (the declared kind, which the registry checks on every recording).

Several concepts have more than one check. They measure different things (the samples of a
whole trial, one mean stride, each stride) with bounds each adapter tuned to its source; a
single merged check would loosen at least one adapter's bound, so they stay separate and each
says what it assumes. Arrays are canonical: joint arrays end in (3 joints, 3 planes) =
(hip, knee, ankle) × (adduction, rotation, flexion); a stride curve is time-normalised from a
heel strike to the next, both included.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from builder.conventions import JOINTS, PLANES, moment_factor
from builder.errors import SourceError
from builder.processing.strides import time_normalise
from builder.records import TimeSeries, TrialRecording, TrialSpec

_HIP, _KNEE, _ANKLE = (JOINTS.index(j) for j in ("hip", "knee", "ankle"))
_FLEX = PLANES.index("flexion")

# Points of the mean strides the checks compare (percent of the gait cycle, 0-100).
CHECK_POINTS = 101


# === phase windows and mean strides ==========================================================
#
# Two window rules, kept apart because they pick different samples when a bound falls between
# two samples (on a 101-point curve they agree):
# - phase_window: the samples whose phase (0..1, linspace over the P points) lies in [lo, hi];
# - cycle_window: from the sample at or before lo to the sample at or before hi.


def _phase_mask(points: int, lo: float, hi: float) -> np.ndarray:
    phase = np.linspace(0.0, 1.0, points)
    return (phase >= lo) & (phase <= hi)


def phase_window(curve: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The samples of a time-normalised ``curve`` (P, ...) whose phase, ``linspace(0, 1, P)``,
    lies in ``[lo, hi]``."""
    return curve[_phase_mask(curve.shape[0], lo, hi)]


def phase_mean(curves: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Mean over strides and over the cycle fraction [lo, hi] (as :func:`phase_window`) of
    time-normalised ``curves`` (N, P, ...) whose P points span heel strike to heel strike
    (both included); NaN-aware, NaN where the window holds no data."""
    curves = np.asarray(curves, dtype=float)
    window = curves[:, _phase_mask(curves.shape[1], lo, hi)]
    with warnings.catch_warnings():  # an all-NaN window is NaN, without a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(window, axis=(0, 1))


def cycle_window(curve: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Samples ``int(lo·(P-1))`` to ``int(hi·(P-1))`` (both included) of a (P, ...) cycle: on a
    101-point mean stride, percent ``lo·100`` to ``hi·100`` of the cycle."""
    last = curve.shape[0] - 1
    return curve[int(lo * last) : int(hi * last) + 1]


def mean_stride(
    series: TimeSeries | None, starts: np.ndarray, ends: np.ndarray
) -> np.ndarray | None:
    """(101, ...) NaN-aware mean of the strides ``starts[i]``..``ends[i]`` (s) of a continuous
    series, time-normalised to percent of the cycle; None without strides or data."""
    if series is None or len(starts) == 0:
        return None
    curves = time_normalise(series, np.asarray(starts), np.asarray(ends), CHECK_POINTS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # components absent in every stride
        return np.nanmean(curves, axis=0) if np.isfinite(curves).any() else None


def mean_normalised_stride(strides: np.ndarray) -> np.ndarray | None:
    """(101, ...) mean of already time-normalised strides (N, P, ...), resampled linearly to
    percent of the cycle; None without strides or data."""
    if strides.size == 0:
        return None
    points = strides.shape[1]
    grid = np.linspace(0, points - 1, CHECK_POINTS)
    if not np.isfinite(strides).any():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # components absent in every stride
        mean = np.nanmean(strides, axis=0)
    flat = mean.reshape(points, -1)
    out = np.stack([np.interp(grid, np.arange(points), col) for col in flat.T], axis=1)
    return out.reshape((CHECK_POINTS, *mean.shape[1:]))


def median_stride(curves: np.ndarray) -> np.ndarray | None:
    """The NaN-aware median stride (P, ...) of time-normalised strides (N, P, ...), or None
    when no value is finite."""
    if not np.isfinite(curves).any():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN components stay NaN
        return np.nanmedian(curves, axis=0)


# === moment units by magnitude ===============================================================
#
# A unit is decided by where a peak moment falls; the bands of each table do not overlap for
# people, except at a shared edge, where the first band listed wins. Which peak a table is for:

# Median over walking strides of the peak |hip flexion moment| (~1 N·m/kg; N·mm/kg ~1000;
# N·m ~60 for adults and ~20 for a 20 kg child).
HIP_FLEXION_PEAK_BANDS: Mapping[str, tuple[float, float]] = {
    "N.m/kg": (0.2, 5.0),
    "N.mm/kg": (200.0, 5000.0),
    "N.m": (8.0, 200.0),
}
# Robust peak (99th percentile, :func:`robust_peak`) of |internal ankle sagittal moment| over a
# walking / stair trial: 0.5-4 N·m/kg; the same for 45-120 kg people in N·m; ×1000 in N·mm/kg.
ANKLE_PEAK_BANDS: Mapping[str, tuple[float, float]] = {
    "N.m/kg": (0.5, 4.0),
    "N.m": (35.0, 400.0),
    "N.mm/kg": (500.0, 4000.0),
}
# Peak |internal ankle moment| of a mean stride (:func:`ankle_moment_peak`): per kg (walking
# ≈1.5, very slow walking ≈0.8) or absolute N·m (30–120 kg people).
MEAN_STRIDE_ANKLE_SCALES: Mapping[str, tuple[float, float]] = {
    "per_kg": (0.3, 5.0),
    "absolute": (15.0, 500.0),
}


def robust_peak(values: np.ndarray, percentile: float = 99.0) -> float:
    """The ``percentile`` of |finite values| (a peak that one spike cannot set); NaN when no
    value is finite."""
    magnitude = np.abs(np.asarray(values, dtype=float))
    magnitude = magnitude[np.isfinite(magnitude)]
    return float(np.percentile(magnitude, percentile)) if magnitude.size else float("nan")


def moment_units_by_magnitude(
    peak: float,
    bands: Mapping[str, tuple[float, float]] = HIP_FLEXION_PEAK_BANDS,
    *,
    per_kg: bool = False,
) -> str | None:
    """The first unit of ``bands`` whose band ``[lo, hi]`` holds ``peak``, or None (also for a
    NaN peak). By default the peak is a walking peak |hip flexion moment|
    (:data:`HIP_FLEXION_PEAK_BANDS`).

    ``per_kg``: the bands are N·m/kg ranges of the converted peak, ``peak × moment_factor(unit)``
    (for candidate units that need no body mass), instead of ranges in each unit's own numbers.
    """
    for unit, (lo, hi) in bands.items():
        value = peak * moment_factor(unit) if per_kg else peak
        if lo <= value <= hi:
            return unit
    return None


def ankle_moment_peak(mean: np.ndarray | None) -> float | None:
    """Peak |sagittal ankle moment| of a mean stride (101, 3, 3) (the largest joint moment in
    gait); None when the ankle moment is missing anywhere."""
    if mean is None or not np.isfinite(mean[:, _ANKLE, _FLEX]).all():
        return None
    return float(np.max(np.abs(mean[:, _ANKLE, _FLEX])))


def moment_scale(peak: float | None, url: str, *, assumption: str) -> str:
    """ "per_kg" or "absolute" from the mean stride's peak ankle moment
    (:data:`MEAN_STRIDE_ANKLE_SCALES`); no peak is taken as per kg; a peak in neither band is
    an error that names the assumption."""
    if peak is None:
        return "per_kg"
    scale = moment_units_by_magnitude(peak, MEAN_STRIDE_ANKLE_SCALES)
    if scale is None:
        per_kg, absolute = MEAN_STRIDE_ANKLE_SCALES["per_kg"], MEAN_STRIDE_ANKLE_SCALES["absolute"]
        raise SourceError(
            url,
            f"{assumption}: peak ankle moment {peak:.4g} fits neither N.m/kg "
            f"({per_kg[0]}-{per_kg[1]}) nor N.m ({absolute[0]:g}-{absolute[1]:g})",
        )
    return scale


def kinetic_factor(
    scales: set[str], units: str | None, body_mass_kg: float | None, url: str
) -> float:
    """The factor to N·m/kg for moments whose mean strides looked ``scales`` ("per_kg" /
    "absolute", :func:`moment_scale`): the catalogue's ``units`` must agree with the
    magnitude; without units the magnitude decides, and N·m needs ``body_mass_kg``."""
    if len(scales) > 1:
        raise SourceError(
            url, "moment magnitudes differ between legs (per kg on one, N.m on the other)"
        )
    scale = next(iter(scales), "per_kg")
    if units is not None:
        declared = "per_kg" if "/kg" in units.replace(" ", "").lower() else "absolute"
        if declared != scale:
            raise SourceError(
                url,
                f"moments declared {units} but their magnitude is that of "
                f"{'N.m/kg' if scale == 'per_kg' else 'N.m'} (peak ankle moment check)",
            )
    if scale == "per_kg":
        return moment_factor(units or "N.m/kg")
    if body_mass_kg is None:
        raise SourceError(
            url,
            "[I] torque units not documented: the moments are N.m (peak ankle moment of tens "
            "of N.m), which needs the subject's body mass (SubjectInformation.xlsx is not read; "
            "give kinetics.body_mass {subject: kg} in the catalogue)",
        )
    return moment_factor(units or "N.m", body_mass_kg)


# === body mass ===============================================================================

# Body masses outside this (kg) are a wrong column or unit, not a person.
PLAUSIBLE_BODY_MASS_KG = (25.0, 250.0)


def check_body_mass(mass_kg: float, url: str, *, assumption: str) -> float:
    """``mass_kg`` if it is a plausible body mass (:data:`PLAUSIBLE_BODY_MASS_KG`; NaN is not),
    else a SourceError naming the assumption."""
    lo, hi = PLAUSIBLE_BODY_MASS_KG
    if not lo <= mass_kg <= hi:
        raise SourceError(
            url, f"{assumption}: {mass_kg:g} kg is outside the plausible {lo:g}-{hi:g} kg"
        )
    return mass_kg


# === joint angles: signs and degrees =========================================================
#
# - check_knee_flexion_percentiles: every sample of a trial (no strides needed);
# - check_swing_knee_flexion: the mean of time-normalised strides, swing window only;
# - check_mean_stride_angles: the knee, ankle and hip pattern of one mean stride (101 points);
# - check_sagittal_signs: hip, knee and ankle differences on one mean cycle.


def check_knee_flexion_percentiles(
    kinematics: np.ndarray, url: str, *, assumption: str, min_peak_deg: float = 30.0
) -> None:
    """Canonical knee angles (..., 3, 3) flex positive to a peak of tens of degrees.

    Assumes the samples include swing (or sitting): the 99th percentile of knee flexion is at
    least ``min_peak_deg`` (swing peaks at 40-110°; 30 by default, lower where a source's
    trials may hold little swing) and larger than minus the 1st percentile. An
    extension-positive knee, radians, or another joint fail. No finite sample: nothing to
    check.
    """
    knee = np.asarray(kinematics, dtype=float)[..., _KNEE, _FLEX].ravel()
    knee = knee[np.isfinite(knee)]
    if knee.size == 0:
        return
    low, high = np.percentile(knee, [1, 99])
    if high < min_peak_deg or high < -low:
        raise SourceError(
            url,
            f"{assumption}: knee flexion spans {low:.3g}..{high:.3g} (1st..99th percentile), "
            f"expected a flexion peak above {min_peak_deg:g} deg and above the deepest negative "
            "value (extension-positive, or in radians? check kinematics.sign / units)",
        )


def check_swing_knee_flexion(kinematics: np.ndarray, url: str, assumption: str) -> None:
    """Peak swing knee flexion must be positive and large (~60° in walking).

    ``kinematics`` (N, P, 3, 3) time-normalised strides: the NaN-aware mean stride's largest
    knee flexion at 55-90 % of the cycle (:func:`phase_window`) must exceed 30°.
    """
    knee = kinematics[:, :, _KNEE, _FLEX]
    if not np.isfinite(knee).any():
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_curve = np.nanmean(knee, axis=0)
    swing = phase_window(mean_curve, 0.55, 0.9)
    peak = float(np.nanmax(swing))
    if not peak > 30:
        raise SourceError(
            url,
            f"{assumption}: peak swing knee flexion is {peak:.1f} deg (min "
            f"{float(np.nanmin(swing)):.1f}); flexion-positive walking peaks near +60 deg",
        )


def check_mean_stride_angles(
    mean: np.ndarray | None,
    url: str,
    *,
    assumption: str,
    level_walking: bool,
    joints: tuple[str, ...] = ("hip", "knee", "ankle"),
) -> None:
    """The sagittal angles of a mean stride (101, 3, 3) must look like degrees with canonical
    signs (only ``joints``; a joint with any NaN is not checked).

    Every gait: the knee's largest excursion is flexion (positive), 25–160° of range. Level
    walking also: the knee peaks in swing (55–90 %); the ankle plantarflexes after toe off
    (minimum at 55–75 % below the late-stance dorsiflexion peak at 35–55 %); the hip is flexed
    at heel strike and extended at 45–55 %. Differences, not levels, so that goniometer or
    model offsets do not matter.
    """
    if mean is None:
        return
    knee, ankle, hip = mean[:, _KNEE, _FLEX], mean[:, _ANKLE, _FLEX], mean[:, _HIP, _FLEX]
    if "knee" in joints and np.isfinite(knee).all():
        span = float(knee.max() - knee.min())
        if not 25.0 <= span <= 160.0:
            raise SourceError(
                url,
                f"{assumption}: the mean stride's knee flexion spans {span:.3g} (expected "
                "25-160 deg of a knee in degrees)",
            )
        middle = float(np.median(knee))
        if middle - knee.min() > knee.max() - middle:
            raise SourceError(
                url,
                f"{assumption}: the knee's largest excursion is negative ({knee.min():.0f} vs "
                f"+{knee.max():.0f} deg): flexion is not positive",
            )
        peak = int(np.argmax(knee))
        if level_walking and not 55 <= peak <= 90:
            raise SourceError(
                url,
                f"{assumption}: the knee flexion peak is at {peak} % of the stride, not in swing "
                "(55-90 %): flexion is not positive or the strides are not heel strike to heel "
                "strike of this leg",
            )
    if not level_walking:
        return
    if "ankle" in joints and np.isfinite(ankle).all():
        push_off = float(cycle_window(ankle, 0.55, 0.75).min())
        stance = float(cycle_window(ankle, 0.35, 0.55).max())
        if not push_off < stance - 3.0:
            raise SourceError(
                url,
                f"{assumption}: the ankle is not plantarflexed after toe off (min {push_off:.1f} "
                f"deg at 55-75 % vs {stance:.1f} deg at 35-55 %): dorsiflexion is not positive",
            )
    if "hip" in joints and np.isfinite(hip).all():
        strike = float(cycle_window(hip, 0.0, 0.05).mean())
        extended = float(cycle_window(hip, 0.45, 0.55).mean())
        if not strike > extended + 10.0:
            raise SourceError(
                url,
                f"{assumption}: the hip is not flexed at heel strike ({strike:.1f} deg) relative "
                f"to terminal stance ({extended:.1f} deg): flexion is not positive",
            )


def check_sagittal_signs(
    mean: np.ndarray,
    url: str,
    *,
    assumption: str,
    check_knee: bool = True,
    nan: Literal["omit", "propagate"] = "omit",
) -> None:
    """Flexion / dorsiflexion positive on a mean cycle ``mean`` (P, 3): the sagittal angle of
    hip, knee and ankle, heel strike to heel strike.

    Every problem found is listed in one SourceError: the hip is not > 10° more flexed at heel
    strike (0-5 %) than its late-stance minimum (35-65 %); the knee's swing peak (55-90 %) is
    not > 30° and larger than its deepest negative value (``check_knee``: False where the knee
    is locked); the ankle does not drop > 5° from late-stance dorsiflexion (30-55 %) to after
    toe off (55-80 %). Windows as :func:`cycle_window`. ``nan="omit"`` ignores missing samples;
    ``"propagate"`` lets a NaN in a window fail its check (missing data is refused).
    """
    mean_of, max_of, min_of = (
        (np.nanmean, np.nanmax, np.nanmin) if nan == "omit" else (np.mean, np.max, np.min)
    )

    def at(lo: float, hi: float, joint: int) -> np.ndarray:
        return cycle_window(mean[:, joint], lo, hi)

    problems = []
    if not mean_of(at(0.0, 0.05, _HIP)) - min_of(at(0.35, 0.65, _HIP)) > 10:
        problems.append("hip not flexed at heel strike relative to late stance")
    if check_knee:
        swing = max_of(at(0.55, 0.9, _KNEE))
        if not (swing > 30 and swing > abs(min_of(mean[:, _KNEE]))):
            problems.append(f"knee swing peak {swing:.0f} deg, not a flexion > 30")
    if not max_of(at(0.3, 0.55, _ANKLE)) - min_of(at(0.55, 0.8, _ANKLE)) > 5:
        problems.append("ankle not plantarflexing after late-stance dorsiflexion")
    if problems:
        raise SourceError(url, f"{assumption}: {'; '.join(problems)}")


# === internal vs external moments ============================================================
#
# Internal moments with dorsiflexion positive make the ankle's stance moment plantarflexor,
# i.e. negative; external moments (or plantarflexion positive) flip it. Three statistics:
# - check_plantarflexor_moment: the samples of a trial, 1st vs 99th percentile (no strides
#   needed, any gait);
# - check_internal_moments: one mean stride, its 20-50 % mean against 20 % of its peak;
# - check_walking_moments: walking strides, magnitudes too, the 40-55 % phase mean.


def check_plantarflexor_moment(kinetics: np.ndarray, url: str, where: str = "") -> None:
    """In stance the internal ankle moment is plantarflexor: canonical (dorsiflexion positive)
    values (..., 3, 3) go to about -1.5 N·m/kg and far less positive, so minus the 1st
    percentile of the ankle moment must exceed its 99th percentile. An ankle moment that peaks
    positive is an external-moment or plantarflexion-positive convention (SourceError)."""
    ankle = np.asarray(kinetics, dtype=float)[..., _ANKLE, _FLEX].ravel()
    ankle = ankle[np.isfinite(ankle)]
    if ankle.size == 0:
        return
    low, high = np.percentile(ankle, [1, 99])
    if not -low > high:
        raise SourceError(
            url,
            f"ankle moment{where} spans {low:.3g}..{high:.3g} after the catalogue's sign: "
            "expected the internal plantarflexor moment of stance to be negative and dominant "
            "(external moments or plantarflexion positive? fix kinetics.sign)",
        )


def check_internal_moments(mean: np.ndarray | None, url: str, *, assumption: str) -> None:
    """Internal moments with dorsiflexion positive: on a mean stride (101, 3, 3) the ankle
    moment is plantarflexor through mid and late stance — its mean over 20–50 % of the stride
    is below −20 % of its peak |value| — in every gait. A NaN anywhere: not checked."""
    if mean is None or not np.isfinite(mean[:, _ANKLE, _FLEX]).all():
        return
    ankle = mean[:, _ANKLE, _FLEX]
    stance = float(cycle_window(ankle, 0.2, 0.5).mean())
    if not stance < -0.2 * float(np.max(np.abs(ankle))):
        raise SourceError(
            url,
            f"{assumption}: the ankle moment in stance is {stance:+.3g} (mean at 20-50 %), not "
            "plantarflexor-negative: the moments are external or of the opposite sign",
        )


# Internal moments above this (N·m/kg) do not happen in walking (running peaks ~4).
MAX_WALKING_MOMENT = 5.0


def check_walking_moments(
    moments: np.ndarray, url: str, *, what: str, assumption: str, min_strides: int = 1
) -> None:
    """Magnitude and sign of canonical moments (N, P, 3, 3) of walking strides (those with a
    complete ankle moment; fewer than ``min_strides``: not checked).

    Refused: a median stride peak above :data:`MAX_WALKING_MOMENT` or a median hip flexion
    peak below 0.1 N·m/kg (units), or an ankle moment whose mean over strides at 40-55 % of the
    cycle (:func:`phase_mean`) is not negative (external, not internal).
    """
    finite = np.isfinite(moments[:, :, _ANKLE, _FLEX]).all(axis=1)
    moments = moments[finite]
    if moments.shape[0] < min_strides:
        return
    hip_peak = float(np.nanmedian(np.nanmax(np.abs(moments[:, :, _HIP, _FLEX]), axis=1)))
    overall = float(np.nanmedian(np.nanmax(np.abs(moments), axis=(1, 2, 3))))
    if overall > MAX_WALKING_MOMENT or hip_peak < 0.1:
        raise SourceError(
            url,
            f"{assumption}: {what} give a peak |hip flexion moment| of {hip_peak:.3g} N.m/kg "
            f"(largest component {overall:.3g}); walking is ~1 N.m/kg: check the units",
        )
    ankle = float(phase_mean(moments[:, :, _ANKLE, _FLEX], 0.40, 0.55))
    if not ankle < 0:
        raise SourceError(
            url,
            f"{assumption}: {what} give an ankle moment of {ankle:+.2f} N.m/kg at 40-55 % of "
            "the cycle; the internal plantarflexor moment is negative (~-1.3): the moments "
            "look external, check the sign rules",
        )


# === EMG kind: raw, rectified or envelope ====================================================
#
# Raw (bipolar) EMG is about half negative; a rectified signal or an envelope is not, up to a
# filter undershoot. The tolerated undershoot depends on how the source made its envelopes:
# - check_raw_emg / check_envelope_share: the share of negative samples;
# - check_envelope_undershoot: the most negative value against the signal's peak;
# - emg_signal_kind / check_emg_kind: raw vs rectified vs envelope, smoothness included;
# - check_recordings: only the declared kind, on every recording (the quality gate judges content).

# An envelope is smooth: RMS of its first difference over its standard deviation. Linear
# envelopes sampled at 100 points to 1 kHz give 0.1-0.3 (ExperimentalData.mat: 0.13-0.27),
# rectified or raw EMG 1-1.4 (broadband).
MAX_ENVELOPE_ROUGHNESS = 0.7
# Share of negative samples above which a signal is signed (raw), not an envelope.
MAX_NEGATIVE_SHARE = 0.01


def negative_share(values: np.ndarray, tolerance: float = 0.0) -> float:
    """The share of finite samples below ``-tolerance``; NaN when none is finite."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return float(np.mean(finite < -tolerance)) if finite.size else float("nan")


def check_raw_emg(
    values: np.ndarray, url: str, *, assumption: str, min_negative_share: float = 0.2
) -> None:
    """Raw EMG is bipolar: at least ``min_negative_share`` of its finite samples are negative
    (a rectified or enveloped channel is not, and the raw chain would filter it wrongly). No
    finite sample: nothing to check."""
    share = negative_share(values)
    if share < min_negative_share:
        raise SourceError(
            url,
            f"{assumption}: {100 * share:.0f}% of the samples are negative (raw EMG is "
            f"bipolar: at least {100 * min_negative_share:g}%)",
        )


def check_envelope_share(
    values: np.ndarray, url: str, *, assumption: str, max_negative_share: float
) -> None:
    """An EMG envelope is non-negative: at most ``max_negative_share`` of its finite samples
    may be negative (filter or interpolation undershoot); raw EMG is about half negative. No
    finite sample: nothing to check."""
    share = negative_share(values)
    if share > max_negative_share:
        raise SourceError(
            url,
            f"{assumption}: {100 * share:.0f}% of the samples are negative (an envelope has at "
            f"most {100 * max_negative_share:g}%)",
        )


def check_envelope_undershoot(
    values: np.ndarray,
    url: str,
    *,
    assumption: str,
    max_undershoot: float,
    peak_floor: float = 0.0,
) -> None:
    """An EMG envelope does not go below ``-max_undershoot`` × its peak |value| (the peak is
    at least ``peak_floor``, so that an all-zero signal needs no exact zero); raw EMG swings
    as far negative as positive. No finite sample: nothing to check."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return
    peak = max(float(np.max(np.abs(finite))), peak_floor)
    low = float(np.min(finite))
    if low < -max_undershoot * peak:
        raise SourceError(
            url,
            f"{assumption}: it reaches {low:.3g} ({100 * low / peak:.0f} % of its peak; an "
            f"envelope stays above -{100 * max_undershoot:g} %)",
        )


def emg_signal_kind(signals: list[np.ndarray]) -> tuple[str, str]:
    """What EMG arrays hold: ``"envelope"`` (non-negative, smooth), ``"rectified"``
    (non-negative, rough) or ``"raw"`` (signed: more than :data:`MAX_NEGATIVE_SHARE` of the
    samples below -1e-9 × the peak), with the figures that decided it. Smooth: the median
    over channels of RMS(first difference) / SD is at most :data:`MAX_ENVELOPE_ROUGHNESS`.

    ``signals`` are (T, C) arrays (strides or cycles), NaN where absent.
    """
    finite = [s[np.isfinite(s)] for s in signals]
    values = np.concatenate(finite) if finite else np.empty(0)
    if values.size == 0:
        return "envelope", "no EMG samples"
    tolerance = 1e-9 * float(np.max(np.abs(values)) or 1.0)
    negative = negative_share(values, tolerance)
    if negative > MAX_NEGATIVE_SHARE:
        return "raw", f"{negative:.0%} of the samples are negative"
    roughness = []
    for signal in signals:
        for column in np.asarray(signal, dtype=float).T:
            x = column[np.isfinite(column)]
            if x.size > 3 and x.std() > 0:
                roughness.append(np.sqrt(np.mean(np.diff(x) ** 2)) / x.std())
    rough = float(np.median(roughness)) if roughness else 0.0
    kind = "rectified" if rough > MAX_ENVELOPE_ROUGHNESS else "envelope"
    return kind, f"non-negative, roughness {rough:.2f} (envelopes < {MAX_ENVELOPE_ROUGHNESS})"


def check_emg_kind(signals: list[np.ndarray], emg_kind: str, url: str, assumption: str) -> None:
    """Refuse EMG whose content (:func:`emg_signal_kind`) disagrees with the catalogue's
    ``emg_kind``: an envelope must be one; raw EMG must be signed."""
    found, detail = emg_signal_kind(signals)
    if emg_kind == "envelope" and found != "envelope":
        raise SourceError(
            url,
            f"{assumption}: the EMG is {found}, not an envelope ({detail}); "
            "set metadata.emg_kind to raw if the signal is raw EMG",
        )
    if emg_kind == "raw" and found != "raw":
        raise SourceError(
            url,
            f"{assumption}: the EMG is {found} ({detail}), not signed raw EMG; "
            "set metadata.emg_kind to envelope",
        )


def check_recordings(
    spec: TrialSpec, recordings: Sequence[TrialRecording], accepted: frozenset[str]
) -> None:
    """What the registry checks on the recordings an adapter read from ``spec.url``: each
    one's ``emg_kind`` is the catalogue's and one the adapter reads (``accepted``). Whether the
    signal is what that kind says is the quality gate's call, per channel and stride
    (:mod:`builder.processing.quality`, flag ``emg_kind``): it leaves the EMG out and keeps the
    rest of the trial."""
    for recording in recordings:
        if recording.emg_kind != spec.emg_kind or recording.emg_kind not in accepted:
            raise SourceError(
                spec.url,
                f"the adapter read EMG of kind {recording.emg_kind!r}, but the catalogue "
                f"declares metadata.emg_kind {spec.emg_kind!r} (the adapter reads "
                f"{', '.join(sorted(accepted))})",
            )

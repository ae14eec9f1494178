"""The EMG signal-processing chain (SPEC.md, "EMG processing").

Raw EMG of one trial side goes through: mains-hum notch (only on channels that carry hum) →
zero-phase Butterworth band-pass 20–450 Hz (capped below Nyquist) → discrete wavelet denoising
(a real multi-level decomposition; noise σ from the finest detail level) → anti-aliased rational
resampling to 1 kHz. The linear envelope (rectify, zero-phase ~6 Hz low-pass) is computed on the
processed 1 kHz signal. Sources that ship only envelopes are just resampled.

Public functions take (T, C) float arrays with an explicit rate and are pure. Internally every
step works channel-major, (C, T) with ``axis=-1``: PyWavelets and ``resample_poly`` run about
twice as fast on contiguous rows, and the public wrappers return ``.T`` views of that storage so
chaining them copies nothing. A column that is entirely NaN is a muscle the source did not
record: every step skips it and it stays NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Annotated, Literal

import numpy as np
import pywt
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from scipy import fft, signal

from builder.conventions import EMG_RATE_HZ, MUSCLE_ABBREVIATIONS, MUSCLES
from builder.records import TimeSeries

__all__ = [
    "EmgProcessing",
    "bandpass",
    "detect_mains_hum",
    "linear_envelope",
    "notch_filter",
    "process_emg",
    "process_envelope_source",
    "resample",
    "wavelet_denoise",
    "welch_psd",
]

# The band-pass high corner stays ≤ 0.45 × rate: a Butterworth corner at Nyquist is degenerate.
_NYQUIST_CAP = 0.45
_MAX_GAP_S = 0.050  # longest NaN run that is interpolated; longer ones drop the channel
# Cap of the automatic wavelet level. Level j covers ≈ rate/2^(j+1)..rate/2^j, so at 2 kHz
# level 6 already reaches ≈ 16–31 Hz, the bottom of the 20–450 Hz band; deeper levels would
# only hold content the band-pass has removed, while their long filters smear edges further.
_MAX_AUTO_LEVEL = 6
_MAD_TO_SIGMA = 0.6745  # median(|N(0, σ)|) = 0.6745 σ
_MAX_DENOMINATOR = 1000  # resampling factors up/down stay ≤ 1000 (filter length ∝ max(up, down))
_WELCH_BLOCK = 2**18  # samples of segments transformed at once (≈ 2 MB: stays in cache)
_CACHE_BLOCK = 2**16  # samples per block of row-wise array arithmetic (≈ 0.5 MB per array)
_TRANSPOSE_BLOCK = 4096  # rows per block: a block of a 16-channel array stays in L2 cache

PositiveFloat = Annotated[float, Field(gt=0)]


class EmgProcessing(BaseModel):
    """EMG processing settings; a catalogue overrides any of them per source."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mains_hz: PositiveFloat | None = 50.0  # None: the recording cannot carry hum
    notch: Literal["auto", "always", "never"] = "auto"
    notch_q: PositiveFloat = 30.0
    # How far (dB, Welch PSD at ≈1 Hz resolution) the mains line must stand above the median of
    # the neighbouring spectrum to count as hum.
    hum_threshold_db: float = Field(10.0, ge=0)
    bandpass_hz: tuple[PositiveFloat, PositiveFloat] = (20.0, 450.0)
    bandpass_order: int = Field(4, ge=1, le=10)
    wavelet: str = "sym4"
    wavelet_level: int | None = Field(None, ge=1)  # None: min(dwt_max_level, 6)
    # "universal": σ·sqrt(2·ln n) on every detail level (VisuShrink). "sure": per level the
    # SURE-optimal soft threshold, capped at the universal one (SureShrink-style). SURE is the
    # default: at ~1.1 kHz the finest level overlaps the EMG band and the universal threshold
    # strips muscle signal (-7 dB SNR vs band-pass alone); SURE never lost SNR (bench_emg.py).
    wavelet_threshold: Literal["universal", "sure"] = "sure"
    envelope_lowpass_hz: PositiveFloat = 6.0
    envelope_order: int = Field(4, ge=1, le=10)
    target_rate_hz: PositiveFloat = EMG_RATE_HZ

    @field_validator("wavelet")
    @classmethod
    def _known_wavelet(cls, value: str) -> str:
        if value not in pywt.wavelist(kind="discrete"):
            raise ValueError(f"unknown discrete wavelet {value!r} (e.g. sym4, db4, coif2)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> EmgProcessing:
        low, high = self.bandpass_hz
        if not low < high:
            raise ValueError(
                f"bandpass_hz must be (low, high) with low < high, got {self.bandpass_hz}"
            )
        if self.mains_hz is None and self.notch == "always":
            raise ValueError("notch='always' needs mains_hz")
        return self


# --------------------------------------------------------------------------- layout helpers


def _transposed(x: np.ndarray) -> np.ndarray:
    """A new C-contiguous float64 copy of ``x.T`` (2-D), made block by block: numpy's strided
    copy of a long, narrow array's transpose misses the cache on every row (about 3× slower)."""
    out = np.empty((x.shape[1], x.shape[0]), dtype=np.float64)
    for start in range(0, x.shape[0], _TRANSPOSE_BLOCK):
        out[:, start : start + _TRANSPOSE_BLOCK] = x[start : start + _TRANSPOSE_BLOCK].T
    return out


def _channels_first(x: np.ndarray) -> np.ndarray:
    """(T, C) → (C, T) float64, C-contiguous; no copy when ``x`` is already such a ``.T`` view."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"EMG arrays are (T, C); got shape {arr.shape}")
    if arr.dtype == np.float64 and arr.T.flags.c_contiguous:
        return arr.T
    return _transposed(arr)


def _recorded(xc: np.ndarray) -> np.ndarray:
    """Rows (channels) that hold at least one finite sample."""
    return np.isfinite(xc).any(axis=-1)


def _per_channel(
    xc: np.ndarray, step: Callable[[np.ndarray], np.ndarray], n_out: int | None = None
) -> np.ndarray:
    """Apply ``step`` to the recorded rows only; unrecorded rows stay NaN in the result."""
    rows = _recorded(xc)
    if rows.all():
        return step(xc)
    out_len = xc.shape[-1] if n_out is None else n_out
    out = np.full((xc.shape[0], out_len), np.nan)
    if rows.any():
        out[rows] = step(xc[rows])
    return out


def _channel_names(n_channels: int) -> list[str]:
    if n_channels == len(MUSCLES):
        return [MUSCLE_ABBREVIATIONS[m] for m in MUSCLES]
    return [f"channel {i}" for i in range(n_channels)]


# --------------------------------------------------------------------------- mains hum


def welch_psd(
    xc: np.ndarray,
    rate_hz: float,
    *,
    resolution_hz: float = 1.0,
    detrend: Literal["constant", False] = "constant",
) -> tuple[np.ndarray, np.ndarray]:
    """Welch power spectra of the rows of ``xc`` (C, T), about ``resolution_hz`` apart (the
    default ≈1 s segments separate the mains line from the sEMG spectrum).

    The same estimate as ``scipy.signal.welch(xc, fs=rate_hz, nperseg=…, detrend=detrend,
    axis=-1)`` (periodic Hann window, half-overlapping segments, one-sided density, mean over
    segments; equal to rounding), computed a few segments at a time: scipy detrends segment by
    segment in Python and holds every segment's spectrum at once (2–3× slower).
    """
    n = xc.shape[-1]
    nperseg = min(n, 2 ** max(4, round(math.log2(rate_hz / resolution_hz))))
    step = nperseg - nperseg // 2
    window = signal.get_window("hann", nperseg)
    segments = np.lib.stride_tricks.sliding_window_view(xc, nperseg, axis=-1)[..., ::step, :]
    n_segments = segments.shape[-2]
    per_block = max(1, _WELCH_BLOCK // max(1, nperseg * math.prod(xc.shape[:-1])))
    # Σ over segments of re² and im², side by side (the complex spectrum viewed as pairs).
    parts = np.zeros((*xc.shape[:-1], 2 * (nperseg // 2 + 1)))
    for start in range(0, n_segments, per_block):
        block = segments[..., start : start + per_block, :]
        if detrend == "constant":
            block = block - block.mean(axis=-1, keepdims=True)
        spectrum = fft.rfft(block * window, axis=-1, overwrite_x=True).view(np.float64)
        parts += np.square(spectrum, out=spectrum).sum(axis=-2)
    psd = parts[..., 0::2] + parts[..., 1::2]
    psd *= 1.0 / (rate_hz * float(np.sum(window * window)) * n_segments)
    psd[..., 1 : None if nperseg % 2 else -1] *= 2.0  # one-sided: all but DC and Nyquist
    return fft.rfftfreq(nperseg, 1.0 / rate_hz), psd


def _line_ratio_db(freqs: np.ndarray, psd: np.ndarray, line_hz: float) -> np.ndarray:
    """Per row: dB of the PSD peak at ``line_hz`` over the median of the band around it."""
    df = float(freqs[1] - freqs[0]) if freqs.size > 1 else math.inf
    dist = np.abs(freqs - line_hz)
    on_line = dist <= max(1.0, 1.01 * df)  # the line may fall between bins, or drift ±0.2 Hz
    exclude = max(3.0, 3.0 * df)  # Hann main lobe is ±2 bins wide
    around = (dist > exclude) & (dist <= exclude + max(12.0, 10.0 * df))
    if not on_line.any() or around.sum() < 4:
        return np.full(psd.shape[0], np.nan)
    peak = psd[:, on_line].max(axis=-1)
    floor = np.median(psd[:, around], axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10.0 * np.log10(peak / floor)


def _hum_psd(xc: np.ndarray, rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """The Welch PSD that hum detection reads. No per-segment detrend: with a periodic Hann
    window an offset only reaches the bins at 0 and 1 Hz, far below any mains line."""
    return welch_psd(xc, rate_hz, detrend=False)


def _odd_lines(rate_hz: float, mains_hz: float) -> list[float]:
    """Mains frequency and its odd harmonics below Nyquist (power-line hum is mostly odd)."""
    return [k * mains_hz for k in range(1, 10_000, 2) if k * mains_hz < rate_hz / 2]


def _hum_lines(
    xc: np.ndarray, rate_hz: float, mains_hz: float, threshold_db: float, *, fundamental_all: bool
) -> list[tuple[float, np.ndarray]]:
    """(frequency, rows to notch) for the mains line and its odd harmonics, from one Welch PSD.

    A line is notched on the rows where it is detected as hum; with ``fundamental_all`` the
    fundamental is notched on every row regardless.
    """
    lines = _odd_lines(rate_hz, mains_hz)
    if not lines:
        return []
    freqs, psd = _hum_psd(xc, rate_hz)
    plan = []
    for i, line in enumerate(lines):
        rows = np.nan_to_num(_line_ratio_db(freqs, psd, line), nan=-np.inf) > threshold_db
        if i == 0 and fundamental_all:
            rows = np.ones(xc.shape[0], dtype=bool)
        if rows.any():
            plan.append((line, rows))
    return plan


def _apply_notches(
    xc: np.ndarray,
    rate_hz: float,
    plan: list[tuple[float, np.ndarray]],
    q: float,
    *,
    in_place: bool = False,
) -> np.ndarray:
    out = xc.copy() if plan and not in_place else xc
    for line, rows in plan:
        b, a = signal.iirnotch(line, q, fs=rate_hz)
        out[rows] = signal.filtfilt(b, a, out[rows], axis=-1)
    return out


def detect_mains_hum(
    x: np.ndarray, rate_hz: float, mains_hz: float, threshold_db: float
) -> np.ndarray:
    """Per channel: does the Welch PSD peak at ``mains_hz`` stand ``threshold_db`` above its
    neighbourhood (median of ±3..15 Hz around the line, line excluded)?

    Columns that are not entirely finite (missing muscles, gaps) and lines at or above Nyquist
    give False.
    """
    xc = _channels_first(x)
    hum = np.zeros(xc.shape[0], dtype=bool)
    rows = np.isfinite(xc).all(axis=-1)
    if not rows.any() or not 0 < mains_hz < rate_hz / 2:
        return hum
    freqs, psd = _hum_psd(xc[rows], rate_hz)
    hum[rows] = np.nan_to_num(_line_ratio_db(freqs, psd, mains_hz), nan=-np.inf) > threshold_db
    return hum


def notch_filter(
    x: np.ndarray,
    rate_hz: float,
    freq_hz: float,
    q: float,
    *,
    harmonics_threshold_db: float | None = 10.0,
) -> np.ndarray:
    """Zero-phase IIR notch at ``freq_hz`` on every recorded column, plus its odd harmonics
    below Nyquist on the columns where that harmonic is itself detected as hum (dB threshold
    as in :func:`detect_mains_hum`; None: fundamental only).

    Choosing *which columns* to pass is the caller's job (``process_emg`` notches only columns
    with hum). The notch rings for ≈ Q / (π · f) s, so hum fades in over the first ~0.5 s.
    """
    if not 0 < freq_hz < rate_hz / 2:
        raise ValueError(f"notch at {freq_hz} Hz is not below Nyquist ({rate_hz / 2} Hz)")

    def step(xc: np.ndarray) -> np.ndarray:
        if harmonics_threshold_db is None:
            plan = [(freq_hz, np.ones(xc.shape[0], dtype=bool))]
        else:  # a column with NaN gaps has a NaN PSD: its harmonics count as absent
            plan = _hum_lines(xc, rate_hz, freq_hz, harmonics_threshold_db, fundamental_all=True)
        return _apply_notches(xc, rate_hz, plan, q)

    return _per_channel(_channels_first(x), step).T


# --------------------------------------------------------------------------- band-pass


def _bandpass_sos(
    rate_hz: float, low_hz: float, high_hz: float, order: int
) -> tuple[np.ndarray, float]:
    cap = _NYQUIST_CAP * rate_hz
    high = min(high_hz, cap)
    # A band cut to less than half its requested width is not the band asked for: raw sEMG
    # sampled that slowly is aliased, and it usually means an envelope source was routed here.
    if high <= low_hz or high < 0.5 * high_hz:
        raise ValueError(
            f"no usable EMG band at {rate_hz:g} Hz: the {low_hz:g}–{high_hz:g} Hz band-pass "
            f"must stay below {_NYQUIST_CAP} × rate = {cap:g} Hz (envelope sources, "
            "emg_kind='envelope', are not band-passed)"
        )
    sos = signal.butter(order, [low_hz, high], btype="bandpass", fs=rate_hz, output="sos")
    return sos, high


def _sosfiltfilt(sos: np.ndarray, xc: np.ndarray, **kwargs: object) -> np.ndarray:
    n_min = 3 * (2 * len(sos) + 1)  # sosfiltfilt's default pad length
    if xc.shape[-1] <= n_min:
        raise ValueError(f"{xc.shape[-1]} samples are too few to filter (need > {n_min})")
    return signal.sosfiltfilt(sos, xc, axis=-1, **kwargs)


def bandpass(
    x: np.ndarray, rate_hz: float, low_hz: float, high_hz: float, order: int
) -> np.ndarray:
    """Zero-phase Butterworth band-pass (SOS, ``sosfiltfilt``) of every recorded column.

    The high corner is capped at 0.45 × rate; ValueError when that leaves no usable band (the
    capped band must be non-empty and keep at least half of the requested high corner).
    """
    sos, _ = _bandpass_sos(rate_hz, low_hz, high_hz, order)
    return _per_channel(_channels_first(x), lambda xc: _sosfiltfilt(sos, xc)).T


# --------------------------------------------------------------------------- wavelet


def _wavelet_level(n_samples: int, wavelet: str, level: int | None) -> int:
    max_level = pywt.dwt_max_level(n_samples, pywt.Wavelet(wavelet).dec_len)
    chosen = min(max_level, _MAX_AUTO_LEVEL) if level is None else level
    if chosen < 1:
        raise ValueError(f"{n_samples} samples are too short for one {wavelet} decomposition level")
    if chosen > max_level:
        raise ValueError(
            f"wavelet level {chosen} needs more than {n_samples} samples "
            f"(at most level {max_level} with {wavelet})"
        )
    return chosen


def _sure_threshold(magnitudes: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Per row of ascending coefficient magnitudes |d| (C, n) with noise σ ``scale`` (C, 1):
    the soft threshold, in units of σ, that minimises Stein's unbiased risk estimate of the
    unit-noise coefficients z = d / σ, SURE(t) = n − 2·#{|z| ≤ t} + Σ min(z², t²), over
    t ∈ {|z_i|} (the smallest such t on a tie).

    At the k-th smallest square s_k the risk is n − 2k + Σ_{i≤k} s_i + (n − k)·s_k, so one
    cumulative sum gives every candidate's risk (within a run of equal values the last one has
    the lowest, and it is the definition's value). Rows go a few at a time, so that the
    squares, their sum and the risk stay in cache.
    """
    rows, n = magnitudes.shape
    k = np.arange(1.0, n + 1.0)
    offset, weight = n - 2.0 * k, n - k
    out = np.empty(rows)
    step = max(1, _CACHE_BLOCK // n)
    for start in range(0, rows, step):
        block = slice(start, start + step)
        squares = magnitudes[block] / scale[block]  # sorted |d| / σ is the sorted |d / σ|
        squares *= squares
        risk = np.cumsum(squares, axis=-1)
        risk += offset
        risk += squares * weight
        best = np.argmin(risk, axis=-1)
        out[block] = np.sqrt(squares[np.arange(squares.shape[0]), best])
    return out


def _wavelet_denoise(
    xc: np.ndarray, wavelet: str, level: int | None, threshold: str = "universal"
) -> np.ndarray:
    n = xc.shape[-1]
    coeffs = pywt.wavedec(xc, wavelet, level=_wavelet_level(n, wavelet, level), axis=-1)
    magnitudes = [np.abs(detail) for detail in coeffs[1:]]  # coeffs[0], the approximation, stays
    ordered: list[np.ndarray] = []
    if threshold == "sure":  # SURE sorts every level; the finest one's middle is its median
        ordered = [np.sort(m, axis=-1) for m in magnitudes]
        m = ordered[-1].shape[-1]
        median = ordered[-1][:, (m - 1) // 2 : m // 2 + 1].mean(axis=-1)
    else:
        median = np.median(magnitudes[-1], axis=-1)
    # Noise σ per channel from the finest detail level, where (white) noise dominates.
    sigma = median / _MAD_TO_SIGMA
    universal = sigma * math.sqrt(2.0 * math.log(n))
    safe = np.where(sigma > 0, sigma, 1.0)[:, None]
    for j, (detail, magnitude) in enumerate(zip(coeffs[1:], magnitudes, strict=True)):
        thr = universal
        if threshold == "sure":
            thr = np.minimum(sigma * _sure_threshold(ordered[j], safe), universal)
        # Soft threshold sign(d)·max(|d| − t, 0), in place on |d| (np.sign is ~3× slower than
        # copysign; they differ only on a coefficient of exactly −0.0, which stays −0.0).
        magnitude -= thr[:, None]
        np.maximum(magnitude, 0.0, out=magnitude)
        coeffs[j + 1] = np.copysign(magnitude, detail, out=magnitude)
    return pywt.waverec(coeffs, wavelet, axis=-1)[:, :n]


def wavelet_denoise(
    x: np.ndarray,
    wavelet: str = "sym4",
    level: int | None = None,
    *,
    threshold: Literal["universal", "sure"] = "universal",
) -> np.ndarray:
    """Discrete-wavelet denoising of every recorded column (all at once, along time).

    ``pywt.wavedec`` to ``level`` (None: min(dwt_max_level, 6)), noise σ per channel as
    median(|cD1|) / 0.6745, soft thresholding of every detail level (universal threshold
    σ·sqrt(2·ln n), or SURE per level capped at it), ``pywt.waverec``, trimmed to the input
    length. ValueError when the signal is too short for the level.
    """
    return _per_channel(
        _channels_first(x), lambda xc: _wavelet_denoise(xc, wavelet, level, threshold)
    ).T


# --------------------------------------------------------------------------- resampling


def _resample_factors(rate_hz: float, target_hz: float) -> tuple[int, int, float]:
    ratio = Fraction(target_hz / rate_hz).limit_denominator(_MAX_DENOMINATOR)
    if ratio <= 0:
        raise ValueError(f"cannot resample {rate_hz} Hz to {target_hz} Hz")
    up, down = ratio.numerator, ratio.denominator
    return up, down, rate_hz * up / down


def _resample(xc: np.ndarray, up: int, down: int, padtype: str) -> np.ndarray:
    if up == down:
        return xc
    return signal.resample_poly(xc, up, down, axis=-1, padtype=padtype)


def resample(
    x: np.ndarray, rate_hz: float, target_hz: float, *, padtype: str = "line"
) -> tuple[np.ndarray, float]:
    """Anti-aliased rational resampling (``resample_poly``) of every recorded column.

    up/down come from ``Fraction(target / rate).limit_denominator(1000)``; returns the new
    (ceil(T·up/down), C) array and the exact achieved rate ``rate · up / down`` (e.g.
    1111.11 Hz → 999.999 Hz). When up == down the input is returned as is. ``padtype="line"``
    (trend between the end samples) avoids the droop that zero padding gives positive signals
    such as envelopes. Unrecorded columns stay NaN; NaN inside a column smears within it.
    """
    up, down, achieved = _resample_factors(rate_hz, target_hz)
    if up == down:
        return x, achieved
    xc = _channels_first(x)
    n_out = -(-xc.shape[-1] * up // down)
    return _per_channel(xc, lambda rows: _resample(rows, up, down, padtype), n_out).T, achieved


# --------------------------------------------------------------------------- envelope


def _envelope(xc: np.ndarray, rate_hz: float, cutoff_hz: float, order: int) -> np.ndarray:
    if not cutoff_hz < rate_hz / 2:
        raise ValueError(f"envelope cut-off {cutoff_hz} Hz is not below Nyquist ({rate_hz / 2} Hz)")
    sos = signal.butter(order, cutoff_hz, btype="lowpass", fs=rate_hz, output="sos")
    # Mirror padding over about one cut-off period: a mirrored rectified signal looks like the
    # signal, so the envelope at the ends is estimated rather than pulled towards one sample.
    padlen = min(xc.shape[-1] - 1, round(rate_hz / cutoff_hz))
    env = _sosfiltfilt(sos, np.abs(xc), padtype="even", padlen=padlen)
    return np.maximum(env, 0.0, out=env)  # the low-pass undershoots near sharp onsets


def linear_envelope(x: np.ndarray, rate_hz: float, cutoff_hz: float, order: int) -> np.ndarray:
    """Linear envelope of every recorded column: full-wave rectification, zero-phase
    Butterworth low-pass (SOS), negatives clipped to 0."""
    return _per_channel(_channels_first(x), lambda xc: _envelope(xc, rate_hz, cutoff_hz, order)).T


# --------------------------------------------------------------------------- gaps


def _fill_gaps(xc: np.ndarray, rate_hz: float, names: list[str]) -> tuple[np.ndarray, list[str]]:
    """In place: interpolate short NaN runs, blank channels with long ones.

    Returns the rows that are recorded afterwards and the notes for the build report.
    """
    notes: list[str] = []
    complete = np.isfinite(xc).all(axis=-1)
    if complete.all():  # the usual case: one pass, nothing to fill
        return complete, notes
    bad = ~np.isfinite(xc)
    recorded = ~bad.all(axis=-1)
    max_gap = _MAX_GAP_S * rate_hz + 1e-9
    for row in np.flatnonzero(recorded & bad.any(axis=-1)):
        missing = bad[row]
        edges = np.diff(np.concatenate(([0], missing.astype(np.int8), [0])))
        runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
        longest_ms = 1000.0 * runs.max() / rate_hz
        if runs.max() > max_gap:
            xc[row] = np.nan
            recorded[row] = False
            notes.append(
                f"EMG {names[row]}: NaN gap of {longest_ms:.0f} ms (> {1000 * _MAX_GAP_S:.0f} "
                "ms); channel left out (all NaN)"
            )
            continue
        t = np.arange(xc.shape[-1])
        # np.interp holds the end values for runs at the very start or end of the trial.
        xc[row, missing] = np.interp(t[missing], t[~missing], xc[row, ~missing])
        notes.append(
            f"EMG {names[row]}: {runs.size} NaN gap(s) of up to {longest_ms:.0f} ms filled "
            "by linear interpolation"
        )
    return recorded, notes


# --------------------------------------------------------------------------- chains


def _prepare(emg: TimeSeries) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Copy to channel-major float64 and fill/blank gaps. Returns (xc, recorded, names, notes)."""
    data = np.asarray(emg.data)
    if data.ndim != 2:
        raise ValueError(f"EMG arrays are (T, C); got shape {data.shape}")
    xc = _transposed(data)  # always a copy: gaps are filled and notches applied in place
    names = _channel_names(xc.shape[0])
    recorded, notes = _fill_gaps(xc, emg.rate_hz, names)
    return xc, recorded, names, notes


def _scatter(
    rows: np.ndarray, values: np.ndarray | None, n_channels: int, n_out: int
) -> np.ndarray:
    """(T, C) C-contiguous output with ``values`` in the recorded rows and NaN elsewhere."""
    if values is not None and rows.all():
        return _transposed(values)
    out = np.full((n_out, n_channels), np.nan)
    if values is not None:
        out[:, rows] = values.T
    return out


def process_emg(
    emg: TimeSeries, settings: EmgProcessing, *, mains_hz: float | None = None
) -> tuple[TimeSeries, TimeSeries, list[str]]:
    """The whole chain for one trial side's raw EMG (T, C) at its native rate.

    notch (where hum is present; ``settings.notch``) → band-pass → wavelet denoise → resample to
    ``settings.target_rate_hz``; the envelope is computed on the processed signal. ``mains_hz``
    (e.g. from the adapter) overrides ``settings.mains_hz`` when given. Returns (processed EMG,
    envelope, notes); both series start at ``emg.start_s``, are at the achieved target rate
    and carry ``emg.units``. Unrecorded (all-NaN) columns stay NaN; short NaN gaps (≤ 50 ms)
    are interpolated, longer ones blank the channel, each with a note.
    """
    rate = float(emg.rate_hz)
    xc, recorded, names, notes = _prepare(emg)
    sos, high = _bandpass_sos(rate, *settings.bandpass_hz, settings.bandpass_order)
    up, down, achieved = _resample_factors(rate, settings.target_rate_hz)
    n_out = xc.shape[-1] if up == down else -(-xc.shape[-1] * up // down)
    if high < settings.bandpass_hz[1]:
        notes.append(
            f"EMG band-pass high corner capped at {high:g} Hz ({_NYQUIST_CAP} × {rate:g} Hz)"
        )
    if abs(achieved - settings.target_rate_hz) > 1e-9 * settings.target_rate_hz:
        notes.append(f"EMG resampled {rate:g} Hz × {up}/{down} = {achieved:.6f} Hz")

    processed = envelope = None
    if recorded.any():
        work = xc[recorded] if not recorded.all() else xc
        mains = settings.mains_hz if mains_hz is None else mains_hz
        if mains is not None and settings.notch != "never":
            plan = _hum_lines(
                work,
                rate,
                mains,
                settings.hum_threshold_db,
                fundamental_all=settings.notch == "always",
            )
            work = _apply_notches(work, rate, plan, settings.notch_q, in_place=True)
            rec_names = [n for n, r in zip(names, recorded, strict=True) if r]
            for line, rows in plan:
                notched = ", ".join(n for n, r in zip(rec_names, rows, strict=True) if r)
                notes.append(f"EMG mains notch at {line:g} Hz in: {notched}")
        work = _sosfiltfilt(sos, work)
        work = _wavelet_denoise(
            work, settings.wavelet, settings.wavelet_level, settings.wavelet_threshold
        )
        processed = _resample(work, up, down, padtype="line")
        envelope = _envelope(
            processed, achieved, settings.envelope_lowpass_hz, settings.envelope_order
        )
    else:
        notes.append("EMG: no channel recorded")

    c = xc.shape[0]
    return (
        TimeSeries(_scatter(recorded, processed, c, n_out), achieved, emg.start_s, emg.units),
        TimeSeries(_scatter(recorded, envelope, c, n_out), achieved, emg.start_s, emg.units),
        notes,
    )


def process_envelope_source(
    emg: TimeSeries, settings: EmgProcessing
) -> tuple[TimeSeries, TimeSeries, list[str]]:
    """For sources that ship only envelopes (``emg_kind="envelope"``): no notch, band-pass or
    wavelet; the envelope is linearly interpolated onto an exact ``target_rate_hz`` grid over
    its recorded span and returned as both outputs. Linear interpolation keeps an envelope
    non-negative and handles any source rate, also the irrational ones of time-normalised
    strides ((P - 1) / duration). Gaps as in :func:`process_emg`.
    """
    rate, target = float(emg.rate_hz), float(settings.target_rate_hz)
    xc, recorded, _, notes = _prepare(emg)
    # Cover the whole recorded span (the last point may lie up to one target sample past the
    # last input sample, holding its value): a stride ending between two grid points keeps
    # its end, so its envelope is not cut short.
    n_out = int(np.ceil((xc.shape[-1] - 1) * target / rate - 1e-9)) + 1
    values = None
    if recorded.any():
        t_in = np.arange(xc.shape[-1]) / rate
        t_out = np.arange(n_out) / target
        values = np.stack([np.interp(t_out, t_in, row) for row in xc[recorded]])
    else:
        notes.append("EMG: no channel recorded")
    series = TimeSeries(
        _scatter(recorded, values, xc.shape[0], n_out), target, emg.start_s, emg.units
    )
    return series, series, notes

"""A small synthetic surface-EMG model for the demo source, the tests and the benchmarks.

sEMG is modelled the usual way: a zero-mean Gaussian carrier with a realistic power spectrum,
amplitude-modulated by the muscle activation. The carrier's spectrum is the classic
Shwedyk/De Luca shape ``f² / ((f² + fl²)(f² + fh²)²)`` (peak ≈ 90 Hz), limited to 20–450 Hz
(capped below Nyquist) by smooth Butterworth-magnitude skirts. Because the carrier is
stationary with unit variance, the linear envelope of the output is proportional to the
activation. Everything is a pure function of its inputs and the ``rng`` passed in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_F_LOW_HZ = 90.0  # spectrum-shape corners: PSD peak ≈ 90 Hz, median frequency ≈ 125 Hz
_F_HIGH_HZ = 160.0
_BAND_HZ = (20.0, 450.0)  # the physiological band the carrier is limited to
_SKIRT_ORDER = 4


def _carrier_gain(n_samples: int, rate_hz: float) -> np.ndarray:
    """Amplitude response on the rfft grid, scaled so that white input keeps unit variance."""
    f = np.fft.rfftfreq(n_samples, d=1.0 / rate_hz)
    psd = f**2 / ((f**2 + _F_LOW_HZ**2) * (f**2 + _F_HIGH_HZ**2) ** 2)
    low, high = _BAND_HZ[0], min(_BAND_HZ[1], 0.45 * rate_hz)
    with np.errstate(divide="ignore"):
        highpass = 1.0 / (1.0 + (low / f) ** (2 * _SKIRT_ORDER))
    lowpass = 1.0 / (1.0 + (f / high) ** (2 * _SKIRT_ORDER))
    power = psd * highpass * lowpass
    # Output variance of white unit-variance input = two-sided mean of |G|² (Parseval).
    weights = np.full(f.shape, 2.0)
    weights[0] = 1.0
    if n_samples % 2 == 0:
        weights[-1] = 1.0
    variance = float(np.sum(weights * power)) / n_samples
    return np.sqrt(power / variance) if variance > 0 else np.zeros_like(power)


def synthesize_emg(
    activation: np.ndarray,
    rate_hz: float,
    rng: np.random.Generator,
    *,
    amplitude_v: float = 5e-4,
) -> np.ndarray:
    """Synthetic sEMG in volts, shape (T, C), whose envelope follows ``activation``.

    ``activation`` is (T, C) (or (T,)) and ≥ 0, typically 0..1, sampled at ``rate_hz``. The
    result is ``amplitude_v · activation · carrier`` where the carrier is unit-variance
    band-limited Gaussian noise, independent per channel. NaN activation gives NaN output.
    """
    act = np.asarray(activation, dtype=np.float64)
    if act.ndim not in (1, 2):
        raise ValueError(f"activation must be (T,) or (T, C), got shape {act.shape}")
    if np.any(act < 0):
        raise ValueError("activation must be non-negative")
    n = act.shape[0]
    if n < 2:
        raise ValueError("activation needs at least two samples")
    white = rng.standard_normal(act.shape)
    spectrum = np.fft.rfft(white, axis=0)
    gain = _carrier_gain(n, rate_hz)
    spectrum *= gain if act.ndim == 1 else gain[:, None]
    carrier = np.fft.irfft(spectrum, n=n, axis=0)
    return amplitude_v * act * carrier


def add_mains_hum(
    emg: np.ndarray,
    rate_hz: float,
    mains_hz: float,
    amplitude_v: float,
    rng: np.random.Generator,
    harmonics: Sequence[int] = (1, 3),
) -> np.ndarray:
    """Return ``emg`` plus power-line hum: sines at ``k · mains_hz`` for k in ``harmonics``.

    Harmonic k has amplitude ``amplitude_v / k`` and a random phase per channel; harmonics at
    or above Nyquist are skipped. Add hum to a subset of channels by passing a column slice.
    """
    x = np.asarray(emg, dtype=np.float64)
    t = (np.arange(x.shape[0]) / rate_hz).reshape((-1,) + (1,) * (x.ndim - 1))
    out = x.copy()
    for k in harmonics:
        freq = k * mains_hz
        if freq >= rate_hz / 2:
            continue
        phase = rng.uniform(0.0, 2 * np.pi, size=x.shape[1:])
        out += (amplitude_v / k) * np.sin(2 * np.pi * freq * t + phase)
    return out


def add_sensor_noise(
    emg: np.ndarray, rate_hz: float, rms_v: float, rng: np.random.Generator
) -> np.ndarray:
    """Return ``emg`` plus electrode/amplifier noise: white Gaussian, ``rms_v`` over the full band.

    White noise is what thermal and amplifier noise look like up to the anti-alias filter;
    ``rate_hz`` is accepted for symmetry with the other generators (the noise is white at any
    rate, so its power per Hz is ``rms_v² / (rate_hz / 2)``).
    """
    x = np.asarray(emg, dtype=np.float64)
    return x + rms_v * rng.standard_normal(x.shape)

"""The EMG processing chain (builder/processing/emg.py) on synthetic signals with known truth."""

from __future__ import annotations

import numpy as np
import pytest
import pywt
from pydantic import ValidationError

from builder.processing.emg import (
    EmgProcessing,
    bandpass,
    detect_mains_hum,
    linear_envelope,
    notch_filter,
    process_emg,
    process_envelope_source,
    resample,
    wavelet_denoise,
)
from builder.records import TimeSeries
from builder.synthetic.emg_model import add_mains_hum, add_sensor_noise, synthesize_emg

FS = 2000.0


def _bursts(n: int, rate_hz: float, channels: int, duty: float = 0.3) -> np.ndarray:
    """Gait-like activation: one smooth burst per 1 s cycle, ``duty`` of the cycle long."""
    phase = (np.arange(n) / rate_hz) % 1.0
    act = np.where(phase < duty, np.sin(np.pi * phase / duty) ** 2, 0.0)
    return np.repeat(act[:, None], channels, axis=1)


def _amplitude(x: np.ndarray, rate_hz: float, freq_hz: float) -> np.ndarray:
    """Per-column amplitude of the ``freq_hz`` component, by projection (edges excluded)."""
    n = x.shape[0]
    core = slice(n // 5, n - n // 5)
    t = np.arange(n)[core] / rate_hz
    basis = np.stack([np.sin(2 * np.pi * freq_hz * t), np.cos(2 * np.pi * freq_hz * t)], 1)
    coef, *_ = np.linalg.lstsq(basis, x[core], rcond=None)
    return np.hypot(coef[0], coef[1])


def _snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / np.sum((estimate - reference) ** 2)))


def _emg(seconds: float, channels: int, seed: int, rate_hz: float = FS) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = round(seconds * rate_hz)
    return synthesize_emg(_bursts(n, rate_hz, channels), rate_hz, rng)


# --------------------------------------------------------------------------- settings


def test_settings_defaults_and_overrides_from_a_catalogue_dict() -> None:
    default = EmgProcessing()
    assert default.mains_hz == 50.0 and default.notch == "auto"
    assert default.bandpass_hz == (20.0, 450.0) and default.target_rate_hz == 1000.0
    custom = EmgProcessing.model_validate({"bandpass_hz": [10, 400], "mains_hz": None})
    assert custom.bandpass_hz == (10.0, 400.0) and custom.mains_hz is None


@pytest.mark.parametrize(
    "override",
    [
        {"bandpass_hz": [450, 20]},
        {"bandpass_hz": [0, 450]},
        {"notch": "sometimes"},
        {"notch_q": -1},
        {"mains_hz": 0},
        {"wavelet": "not-a-wavelet"},
        {"wavelet_level": 0},
        {"bandpass_order": 0},
        {"envelope_lowpass_hz": 0},
        {"mains_hz": None, "notch": "always"},
        {"lowpass": 6},  # unknown key: a typo must not be ignored
    ],
)
def test_invalid_settings_raise_validation_error(override: dict) -> None:
    with pytest.raises(ValidationError):
        EmgProcessing.model_validate(override)


def test_settings_are_frozen() -> None:
    with pytest.raises(ValidationError):
        EmgProcessing().notch_q = 10  # type: ignore[misc]


# --------------------------------------------------------------------------- mains hum


def test_hum_detected_and_notched_only_where_present() -> None:
    rng = np.random.default_rng(1)
    x = _emg(8, 4, seed=2)
    x[:, [0, 2]] = add_mains_hum(x[:, [0, 2]], FS, 50.0, 3e-4, rng)
    x = add_sensor_noise(x, FS, 1e-5, rng)
    assert detect_mains_hum(x, FS, 50.0, 10.0).tolist() == [True, False, True, False]

    series = TimeSeries(x, FS, 0.0, "V")
    auto, _, notes = process_emg(series, EmgProcessing())
    never, _, _ = process_emg(series, EmgProcessing(notch="never"))
    always, _, _ = process_emg(series, EmgProcessing(notch="always"))
    # Channels without hum are not touched by the notch: identical to band-pass-only processing.
    np.testing.assert_allclose(auto.data[:, [1, 3]], never.data[:, [1, 3]], rtol=0, atol=1e-15)
    assert not np.allclose(always.data[:, 1], never.data[:, 1], rtol=0, atol=1e-12)
    # Where hum was present it is gone: the 50 Hz amplitude drops to the level of the channels
    # that never had hum (hum 300 µV vs an sEMG background of a few µV at exactly 50 Hz).
    rate = auto.rate_hz
    hum_left = _amplitude(auto.data, rate, 50.0)
    assert _amplitude(never.data, rate, 50.0)[[0, 2]].min() > 2e-4
    assert hum_left[[0, 2]].max() < 3 * hum_left[[1, 3]].max() + 1e-6
    assert "EMG mains notch at 50 Hz in: channel 0, channel 2" in notes


def test_notch_filter_removes_the_line_and_detected_odd_harmonics_only() -> None:
    rng = np.random.default_rng(3)
    x = _emg(6, 2, seed=4) * 0.2
    x = add_mains_hum(x, FS, 60.0, 5e-4, rng, harmonics=(1,))
    x[:, 1] = add_mains_hum(x[:, [1]], FS, 60.0, 9e-4, rng, harmonics=(3,))[:, 0]
    y = notch_filter(x, FS, 60.0, 30.0)
    before, after = _amplitude(x, FS, 60.0), _amplitude(y, FS, 60.0)
    assert np.all(after < before / 100)  # > 40 dB on the fundamental
    h_before, h_after = _amplitude(x, FS, 180.0), _amplitude(y, FS, 180.0)
    assert h_after[1] < h_before[1] / 100  # the detected 3rd harmonic is notched ...
    # ... and where there was no 180 Hz hum, the band around 180 Hz is left alone.
    np.testing.assert_allclose(h_after[0], h_before[0], rtol=0.05)


def test_mains_frequency_argument_overrides_settings() -> None:
    rng = np.random.default_rng(5)
    x = add_mains_hum(_emg(5, 2, seed=6), FS, 60.0, 3e-4, rng, harmonics=(1,))
    series = TimeSeries(x, FS, 0.0, "V")
    _, _, notes_50 = process_emg(series, EmgProcessing(mains_hz=50.0))
    processed, _, notes_60 = process_emg(series, EmgProcessing(mains_hz=50.0), mains_hz=60.0)
    assert not any("notch" in n for n in notes_50)
    assert any("60 Hz" in n for n in notes_60)
    assert np.all(_amplitude(processed.data, processed.rate_hz, 60.0) < 3e-5)


# --------------------------------------------------------------------------- band-pass


def test_bandpass_attenuates_out_of_band_and_passes_100_hz() -> None:
    t = np.arange(int(4 * FS)) / FS
    x = np.stack([np.sin(2 * np.pi * f * t) for f in (5.0, 100.0, 800.0)], axis=1)
    y = bandpass(x.sum(axis=1, keepdims=True) * np.ones((1, 2)), FS, 20.0, 450.0, 4)
    assert np.all(_amplitude(y, FS, 5.0) < 1e-3)
    assert np.all(_amplitude(y, FS, 800.0) < 1e-3)
    np.testing.assert_allclose(_amplitude(y, FS, 100.0), 1.0, atol=2e-3)


def test_bandpass_caps_the_high_corner_at_low_rates() -> None:
    rate = 600.0  # 0.45 × 600 = 270 Hz < 450 Hz
    x = np.random.default_rng(7).standard_normal((3000, 2))
    np.testing.assert_array_equal(
        bandpass(x, rate, 20.0, 450.0, 4), bandpass(x, rate, 20.0, 270.0, 4)
    )
    _, _, notes = process_emg(TimeSeries(x, rate, 0.0, "V"), EmgProcessing())
    assert any("capped at 270 Hz" in n for n in notes)
    for too_slow in (100.0, 40.0):  # 100 Hz: an envelope source routed to the raw chain
        with pytest.raises(ValueError, match="no usable EMG band"):
            bandpass(x, too_slow, 20.0, 450.0, 4)


# --------------------------------------------------------------------------- wavelet


def test_wavelet_denoising_really_decomposes() -> None:
    noise = np.random.default_rng(8).standard_normal((16384, 3))
    # The public attempt's bug: a wavelet packet rebuilt without touching its nodes is the input.
    packet = pywt.WaveletPacket(data=noise[:, 0], wavelet="sym4", mode="symmetric", maxlevel=5)
    np.testing.assert_allclose(packet.reconstruct(update=False)[: len(noise)], noise[:, 0])
    denoised = wavelet_denoise(noise, "sym4")
    assert denoised.shape == noise.shape
    assert not np.allclose(denoised, noise)
    # Pure white noise is (almost) all below the universal threshold: > 80 % of energy removed.
    assert np.all(np.sum(denoised**2, axis=0) < 0.2 * np.sum(noise**2, axis=0))


def test_wavelet_level_errors() -> None:
    with pytest.raises(ValueError, match="too short"):
        wavelet_denoise(np.ones((10, 2)), "sym4")
    with pytest.raises(ValueError, match="at most level"):
        wavelet_denoise(np.ones((200, 2)), "sym4", level=8)


def test_wavelet_improves_snr_on_bursty_emg() -> None:
    rng = np.random.default_rng(9)
    clean = synthesize_emg(_bursts(int(10 * FS), FS, 4), FS, rng)
    noisy = add_sensor_noise(clean, FS, 1e-4, rng)  # 100 µV white noise, bursts 500 µV rms
    reference = bandpass(clean, FS, 20.0, 450.0, 4)  # the clean band-limited signal
    band_only = bandpass(noisy, FS, 20.0, 450.0, 4)
    snr_band = _snr_db(reference, band_only)
    snr_wavelet = _snr_db(reference, wavelet_denoise(band_only, "sym4"))
    # Measured: ≈ 8.4 dB band-pass alone, ≈ 11.5 dB with the wavelet step.
    assert snr_wavelet > snr_band + 2.5


def test_sure_threshold_helps_where_the_finest_level_is_in_band() -> None:
    # At 1111.11 Hz the finest detail level (278–555 Hz) overlaps the pass band, so the
    # universal threshold also removes sEMG; the per-level SURE threshold does not.
    rate = 1111.11
    rng = np.random.default_rng(10)
    clean = synthesize_emg(_bursts(int(10 * rate), rate, 4), rate, rng)
    noisy = add_sensor_noise(clean, rate, 1e-4, rng)
    reference = bandpass(clean, rate, 20.0, 450.0, 4)
    band_only = bandpass(noisy, rate, 20.0, 450.0, 4)
    sure = wavelet_denoise(band_only, "sym4", threshold="sure")
    assert _snr_db(reference, sure) > _snr_db(reference, band_only) + 2.5  # measured ≈ +3.5 dB


# --------------------------------------------------------------------------- resampling


@pytest.mark.parametrize("rate", [2000.0, 1111.11, 1925.9, 1926.0, 100.0])
def test_resample_keeps_a_sine(rate: float) -> None:
    n = round(10 * rate)
    x = np.sin(2 * np.pi * 7.0 * np.arange(n) / rate)[:, None] * np.array([[1.0, 0.5]])
    y, achieved = resample(x, rate, 1000.0)
    assert abs(achieved - 1000.0) < 0.02  # e.g. 1111.11 × 9/10 = 999.999 Hz
    assert abs(y.shape[0] - n * achieved / rate) <= 1
    t = np.arange(y.shape[0]) / achieved  # output sample k sits at k / achieved
    expected = np.sin(2 * np.pi * 7.0 * t)[:, None] * np.array([[1.0, 0.5]])
    core = slice(200, -200)
    np.testing.assert_allclose(y[core], expected[core], atol=2e-3)


def test_resample_at_target_rate_is_identity() -> None:
    x = np.random.default_rng(11).standard_normal((500, 3))
    y, achieved = resample(x, 1000.0, 1000.0)
    assert y is x and achieved == 1000.0


# --------------------------------------------------------------------------- envelope


def test_envelope_follows_the_activation() -> None:
    rng = np.random.default_rng(12)
    activation = _bursts(20000, 1000.0, 3, duty=0.4)
    activation[:, 1] *= 0.3
    env = linear_envelope(synthesize_emg(activation, 1000.0, rng), 1000.0, 6.0, 4)
    assert env.min() >= 0.0
    for j in range(3):
        assert np.corrcoef(env[:, j], activation[:, j])[0, 1] > 0.9
    # Proportional: the 0.3-scaled channel has ≈ 0.3 × the envelope.
    assert 0.25 < env[:, 1].mean() / env[:, 0].mean() < 0.35


def test_process_emg_envelope_follows_activation_at_1khz() -> None:
    rng = np.random.default_rng(13)
    activation = _bursts(int(10 * FS), FS, 2, duty=0.4)
    x = add_sensor_noise(synthesize_emg(activation, FS, rng), FS, 1e-5, rng)
    processed, envelope, _ = process_emg(TimeSeries(x, FS, 12.5, "V"), EmgProcessing())
    assert processed.rate_hz == envelope.rate_hz == 1000.0
    assert processed.start_s == envelope.start_s == 12.5 and processed.units == "V"
    assert processed.data.shape == envelope.data.shape == (10000, 2)
    for j in range(2):
        assert np.corrcoef(envelope.data[:, j], activation[::2, j])[0, 1] > 0.9


# --------------------------------------------------------------------------- missing data


def test_nan_columns_stay_nan_and_do_not_contaminate_others() -> None:
    x = _emg(4, 4, seed=14)
    with_gap = x.copy()
    with_gap[:, 2] = np.nan
    processed, envelope, _ = process_emg(TimeSeries(with_gap, FS, 0.0, "V"), EmgProcessing())
    alone, alone_env, _ = process_emg(TimeSeries(x[:, [0, 1, 3]], FS, 0.0, "V"), EmgProcessing())
    for out in (processed.data, envelope.data):
        assert np.isnan(out[:, 2]).all()
        assert np.isfinite(out[:, [0, 1, 3]]).all()
    np.testing.assert_allclose(processed.data[:, [0, 1, 3]], alone.data, rtol=0, atol=1e-15)
    np.testing.assert_allclose(envelope.data[:, [0, 1, 3]], alone_env.data, rtol=0, atol=1e-15)
    # The building blocks keep NaN columns too.
    for out in (
        bandpass(with_gap, FS, 20, 450, 4),
        wavelet_denoise(with_gap),
        resample(with_gap, FS, 1000.0)[0],
        linear_envelope(with_gap, FS, 6.0, 4),
        notch_filter(with_gap, FS, 50.0, 30.0),
    ):
        assert np.isnan(out[:, 2]).all() and np.isfinite(out[:, [0, 1, 3]]).all()


def test_all_channels_missing() -> None:
    x = np.full((4000, 3), np.nan)
    processed, envelope, notes = process_emg(TimeSeries(x, FS, 0.0, "V"), EmgProcessing())
    assert processed.data.shape == (2000, 3) and np.isnan(processed.data).all()
    assert np.isnan(envelope.data).all() and notes


def test_short_gap_is_interpolated_with_a_note() -> None:
    x = _emg(4, 13, seed=15)
    x[3000:3080, 3] = np.nan  # 40 ms
    processed, envelope, notes = process_emg(TimeSeries(x, FS, 0.0, "V"), EmgProcessing())
    assert np.isfinite(processed.data).all() and np.isfinite(envelope.data).all()
    assert any("TA" in n and "interpolation" in n for n in notes)


def test_long_gap_blanks_the_channel_with_a_note() -> None:
    x = _emg(4, 13, seed=16)
    x[3000:3200, 3] = np.nan  # 100 ms
    processed, envelope, notes = process_emg(TimeSeries(x, FS, 0.0, "V"), EmgProcessing())
    assert np.isnan(processed.data[:, 3]).all() and np.isnan(envelope.data[:, 3]).all()
    assert np.isfinite(np.delete(processed.data, 3, axis=1)).all()
    assert any("TA" in n and "100 ms" in n and "left out" in n for n in notes)


# --------------------------------------------------------------------------- envelope sources


def test_envelope_source_is_interpolated_onto_an_exact_grid() -> None:
    rate = 100.0
    env = _bursts(1000, rate, 3, duty=0.4) * 2e-4
    env[:, 1] = np.nan
    a, b, notes = process_envelope_source(TimeSeries(env, rate, 3.0, "V"), EmgProcessing())
    assert a is b and a.rate_hz == 1000.0 and a.start_s == 3.0 and a.units == "V"
    assert a.data.shape == (9991, 3)  # 0 … 9.99 s, the span the 100 Hz input covers
    assert np.isnan(a.data[:, 1]).all()
    present = a.data[:, [0, 2]]
    assert present.min() >= 0.0
    # Sample k·10 of the output is sample k of the input.
    np.testing.assert_allclose(present[::10], env[:, [0, 2]], atol=1e-12)
    assert notes == []
    # Time-normalised strides have irrational rates: the grid is still exactly 1 kHz, and it
    # reaches the stride's end even when that falls between two grid points.
    stride = np.linspace(0, 1, 1001)[:, None] ** 2
    for duration, n_expected in ((1.137, 1138), (1.3077, 1309)):
        out, _, _ = process_envelope_source(
            TimeSeries(stride, 1000 / duration, 0.0, "V"), EmgProcessing()
        )
        assert out.rate_hz == 1000.0 and out.n_samples == n_expected
        assert out.end_s >= duration and out.data[-1, 0] == 1.0


# --------------------------------------------------------------------------- exact fast paths


def _sure_by_definition(z: np.ndarray) -> float:
    """SURE(t) = n − 2·#{|z| ≤ t} + Σ min(z², t²) over t ∈ {|z_i|}; the smallest t on a tie."""
    n, mags = z.size, np.abs(z)
    risks = [(n - 2 * np.sum(mags <= t) + np.sum(np.minimum(z * z, t * t)), t) for t in mags]
    return float(min(risks)[1])


@pytest.mark.parametrize("n", [1, 2, 3, 8, 101, 1000])
def test_sure_threshold_equals_the_definition(n: int) -> None:
    from builder.processing.emg import _sure_threshold

    rng = np.random.default_rng(n)
    # Quarter-integers: every square and sum is exact, so the risks compare exactly; small
    # integers give ties and zeros, a heavy tail gives large coefficients.
    rows = [
        rng.integers(-12, 13, n) / 4.0,
        rng.integers(-2, 3, n).astype(float),
        np.round(4 * rng.standard_t(2, n)) / 4.0,
        np.zeros(n),
    ]
    z = np.stack(rows)
    scale = np.ones((len(rows), 1))
    got = _sure_threshold(np.sort(np.abs(z), axis=-1), scale)
    assert got.tolist() == [_sure_by_definition(row) for row in rows]
    # The σ scaling: thresholds of d = σ·z in units of σ are those of z.
    sigma = np.array([[0.5], [2.0], [0.25], [4.0]])  # powers of two keep z exact
    assert _sure_threshold(np.sort(np.abs(z * sigma), axis=-1), sigma).tolist() == got.tolist()


def test_sure_threshold_on_gaussian_noise_minimises_the_risk() -> None:
    from builder.processing.emg import _sure_threshold

    z = np.random.default_rng(3).standard_normal((5, 700)) * np.array([[0.5, 1, 1, 2, 3]]).T
    got = _sure_threshold(np.sort(np.abs(z), axis=-1), np.ones((5, 1)))
    for row, t in zip(z, got, strict=True):
        reference = _sure_by_definition(row)
        if t != reference:  # only where two candidates' risks agree to rounding
            risk = [
                row.size - 2 * np.sum(np.abs(row) <= s) + np.sum(np.minimum(row**2, s**2))
                for s in (t, reference)
            ]
            assert risk[0] == pytest.approx(risk[1], rel=1e-12)
        assert t in np.abs(row)


def _denoise_reference(x: np.ndarray, threshold: str) -> np.ndarray:
    """The wavelet step written plainly: per-level SURE by sorting (d / σ)², sign · max."""
    n = x.shape[0]
    coeffs = pywt.wavedec(x.T, "sym4", level=min(pywt.dwt_max_level(n, 8), 6), axis=-1)
    sigma = np.median(np.abs(coeffs[-1]), axis=-1) / 0.6745
    universal = sigma * np.sqrt(2.0 * np.log(n))
    for j in range(1, len(coeffs)):
        detail, thr = coeffs[j], universal
        if threshold == "sure":
            z = detail / np.where(sigma > 0, sigma, 1.0)[:, None]
            sq = np.sort(z * z, axis=-1)
            k = np.arange(1, sq.shape[-1] + 1)
            risk = sq.shape[-1] - 2 * k + np.cumsum(sq, axis=-1) + (sq.shape[-1] - k) * sq
            best = np.sqrt(sq[np.arange(sq.shape[0]), np.argmin(risk, axis=-1)])
            thr = np.minimum(sigma * best, universal)
        coeffs[j] = np.sign(detail) * np.maximum(np.abs(detail) - thr[:, None], 0.0)
    return pywt.waverec(coeffs, "sym4", axis=-1)[:, :n].T


@pytest.mark.parametrize("n", [4000, 4001, 9999])  # even and odd finest-level lengths
@pytest.mark.parametrize("threshold", ["universal", "sure"])
def test_wavelet_denoise_equals_the_plain_implementation(n: int, threshold: str) -> None:
    x = _emg(n / FS, 3, seed=n)
    x = add_sensor_noise(np.column_stack([x, np.zeros(n)]), FS, 5e-5, np.random.default_rng(1))
    x[:, 3] = 0.0  # σ = 0: every threshold is 0
    got = wavelet_denoise(x, "sym4", threshold=threshold)  # type: ignore[arg-type]
    assert np.array_equal(got, _denoise_reference(x, threshold))


@pytest.mark.parametrize("shape", [(3, 5000), (2, 501), (1, 40_000)])
@pytest.mark.parametrize("detrend", ["constant", False])
def test_welch_psd_equals_scipy(shape: tuple[int, int], detrend: str | bool) -> None:
    from scipy import signal

    from builder.processing.emg import welch_psd

    rate = 1000.0
    xc = np.random.default_rng(shape[1]).standard_normal(shape) + 3.0  # an offset to detrend
    freqs, psd = welch_psd(xc, rate, detrend=detrend)  # type: ignore[arg-type]
    nperseg = min(shape[1], 1024)  # 501 samples: one odd-length segment
    ref_freqs, ref = signal.welch(xc, fs=rate, nperseg=nperseg, detrend=detrend, axis=-1)
    np.testing.assert_array_equal(freqs, ref_freqs)
    np.testing.assert_allclose(psd, ref, rtol=1e-12, atol=1e-12 * ref.max())


@pytest.mark.parametrize("shape", [(0, 3), (1, 16), (4095, 2), (4097, 16), (10_000, 5)])
def test_channel_major_copy_is_the_transpose(shape: tuple[int, int]) -> None:
    from builder.processing.emg import _channels_first

    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    xc = _channels_first(x)
    assert xc.dtype == np.float64 and xc.flags.c_contiguous
    np.testing.assert_array_equal(xc, x.T)
    already = np.ascontiguousarray(xc)
    if already.size:  # a .T view is not copied
        assert np.shares_memory(_channels_first(already.T), already)

"""Benchmark of the EMG chain (builder/processing/emg.py): throughput and denoising SNR.

Run: ``python bench/bench_emg.py``. Single-threaded on purpose: throughput is per core, the
build gets its parallelism from Dask workers. Prints a markdown report and writes it to
``bench/results/emg.md``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported

import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import pywt  # noqa: E402
import scipy  # noqa: E402
from _report import publish  # noqa: E402
from scipy import signal  # noqa: E402

from builder.processing.emg import (  # noqa: E402
    EmgProcessing,
    bandpass,
    detect_mains_hum,
    process_emg,
    wavelet_denoise,
)
from builder.records import TimeSeries  # noqa: E402
from builder.synthetic.emg_model import add_mains_hum, add_sensor_noise, synthesize_emg  # noqa: E402

RATE = 2000.0
SECONDS = 60
CHANNELS = 16
HUM_CHANNELS = 6  # the first six carry 50 Hz hum (+ 3rd harmonic)
REPEATS = 9


def _bursts(n: int, rate_hz: float, channels: int, duty: float = 0.3) -> np.ndarray:
    phase = (np.arange(n) / rate_hz) % 1.0
    act = np.where(phase < duty, np.sin(np.pi * phase / duty) ** 2, 0.0)
    # Stagger the channels so they do not burst in unison, as muscles in gait do not.
    return np.stack([np.roll(act, int(i * n / channels / 7)) for i in range(channels)], axis=1)


def _trial(rate: float, seconds: float, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = round(rate * seconds)
    x = synthesize_emg(_bursts(n, rate, channels), rate, rng)
    x[:, :HUM_CHANNELS] = add_mains_hum(x[:, :HUM_CHANNELS], rate, 50.0, 2e-4, rng)
    return add_sensor_noise(x, rate, 1e-5, rng)


def _interleaved(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """CPU seconds per variant and round; each round runs every variant once, so that load
    from other processes falls on all of them alike. CPU time of the one thread: on an idle
    core it is the wall time, on a shared one it leaves out the time spent waiting for it."""
    for fn in variants.values():
        fn()  # warm-up (imports, caches, first-touch page faults)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            start = time.process_time()
            fn()
            times[name].append(time.process_time() - start)
    return times


def _throughput_table() -> tuple[list[str], dict[str, float]]:
    x = _trial(RATE, SECONDS, CHANNELS)
    n_values = x.size
    settings = EmgProcessing()
    series = TimeSeries(x, RATE, 0.0, "V")
    hum50 = detect_mains_hum(x, RATE, 50.0, settings.hum_threshold_db)
    hum150 = detect_mains_hum(x, RATE, 150.0, settings.hum_threshold_db)
    assert hum50.sum() == HUM_CHANNELS, hum50
    _, _, notes = process_emg(series, settings)
    assert sum("mains notch" in note for note in notes) == 2, notes  # 50 and 150 Hz, as below

    # The kernels alone: the scipy/pywavelets calls the chain makes, with its parameters, on
    # the channel-major (C, T) layout it uses internally (prepared outside the timing).
    xc = np.ascontiguousarray(x.T)
    sos = signal.butter(4, [20.0, 450.0], btype="bandpass", fs=RATE, output="sos")
    b, a = signal.iirnotch(50.0, settings.notch_q, fs=RATE)
    b3, a3 = signal.iirnotch(150.0, settings.notch_q, fs=RATE)
    env_sos = signal.butter(4, 6.0, btype="lowpass", fs=1000.0, output="sos")
    x1k = signal.resample_poly(xc, 1, 2, axis=-1)

    def notch_kernel() -> None:  # as the chain does it: each line on the rows where it is hum
        signal.filtfilt(b, a, xc[hum50], axis=-1)
        signal.filtfilt(b3, a3, xc[hum150], axis=-1)

    def wavelet_kernel() -> None:
        pywt.waverec(pywt.wavedec(xc, "sym4", level=6, axis=-1), "sym4", axis=-1)

    kernels = {
        "iirnotch + filtfilt (50 Hz and 150 Hz, on the hum channels)": notch_kernel,
        "sosfiltfilt band-pass 20–450 Hz": lambda: signal.sosfiltfilt(sos, xc, axis=-1),
        "pywt.wavedec + waverec (sym4, level 6)": wavelet_kernel,
        "resample_poly 2000 → 1000 Hz (padtype='line')": lambda: signal.resample_poly(
            xc, 1, 2, axis=-1, padtype="line"
        ),
    }
    extra = {
        "scipy.signal.welch PSD, 2048-sample segments (hum detection)": lambda: signal.welch(
            xc, fs=RATE, nperseg=2048, axis=-1, detrend=False
        ),
        "sosfiltfilt envelope 6 Hz on abs(x) at 1 kHz": lambda: signal.sosfiltfilt(
            env_sos, np.abs(x1k), axis=-1, padtype="even", padlen=round(1000.0 / 6.0)
        ),
    }
    chains = {
        "**process_emg, full chain (default: SURE threshold)**": lambda: process_emg(
            series, settings
        ),
        "process_emg, full chain (wavelet_threshold='universal')": lambda: process_emg(
            series, EmgProcessing(wavelet_threshold="universal")
        ),
    }
    times = _interleaved({**chains, **kernels, **extra}, REPEATS)
    core4 = [sum(rounds) for rounds in zip(*(times[k] for k in kernels), strict=True)]
    all6 = [sum(rounds) for rounds in zip(*(times[k] for k in (*kernels, *extra)), strict=True)]
    chain, universal = (times[k] for k in chains)

    def ratio(numerator: list[float], denominator: list[float]) -> float:
        """Median of the per-round ratios: both sides of a ratio ran back to back."""
        return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))

    def row(name: str, seconds: list[float]) -> str:
        median = statistics.median(seconds)
        return (
            f"| {name} | {1e3 * median:8.1f} | {n_values / median / 1e6:7.2f} "
            f"| {8 * n_values / median / 1e6:7.1f} |"
        )

    lines = [
        f"Trial: {SECONDS} s × {CHANNELS} channels at {RATE:g} Hz (float64, "
        f"{8 * n_values / 1e6:.1f} MB), {HUM_CHANNELS} channels with 50 Hz hum (+ 150 Hz); "
        f"median of {REPEATS} interleaved rounds, CPU time of 1 thread.",
        "",
        "| step | ms | Msamples/s | MB/s |",
        "|---|---:|---:|---:|",
        *(row(name, times[name]) for name in chains),
        *(row(name, times[name]) for name in (*kernels, *extra)),
        row("sum of the 4 core kernels (notch, band-pass, wavelet, resample)", core4),
        row("sum of all 6 kernels (+ Welch, envelope)", all6),
        "",
        f"Chain / sum of the 4 core kernels: **{ratio(chain, core4):.2f}** (SURE), "
        f"{ratio(universal, core4):.2f} (universal); chain / sum of all 6 kernels: "
        f"**{ratio(chain, all6):.2f}** (SURE), {ratio(universal, all6):.2f} (universal). "
        "Beyond the kernels the chain sorts every wavelet level for SURE, thresholds, checks "
        "for NaN gaps and transposes (T, C) ↔ (C, T).",
    ]
    return lines, {"chain_s": statistics.median(chain), "kernels_s": statistics.median(core4)}


def _snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / np.sum((estimate - reference) ** 2)))


def _snr_table() -> list[str]:
    lines = [
        "SNR (dB) against the clean band-limited signal (clean sEMG band-passed 20–450 Hz): "
        "synthetic bursty sEMG (30 % duty, 500 µV rms at full activation), 8 channels × 30 s, "
        "plus white sensor noise.",
        "",
        "| rate | noise rms | raw noisy | band-pass only | band-pass + wavelet (universal) "
        "| band-pass + wavelet (SURE, default) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for rate in (2000.0, 1111.11):
        for k, noise_v in enumerate((2e-5, 1e-4)):
            rng = np.random.default_rng(100 + k)
            n = round(30 * rate)
            clean = synthesize_emg(_bursts(n, rate, 8), rate, rng)
            noisy = add_sensor_noise(clean, rate, noise_v, rng)
            reference = bandpass(clean, rate, 20.0, 450.0, 4)
            band = bandpass(noisy, rate, 20.0, 450.0, 4)
            universal = wavelet_denoise(band, "sym4")
            sure = wavelet_denoise(band, "sym4", threshold="sure")
            lines.append(
                f"| {rate:g} Hz | {noise_v * 1e6:.0f} µV | {_snr_db(reference, noisy):.1f} "
                f"| {_snr_db(reference, band):.1f} | {_snr_db(reference, universal):.1f} "
                f"| {_snr_db(reference, sure):.1f} |"
            )
    return lines


def main() -> None:
    start = time.perf_counter()
    throughput, _ = _throughput_table()
    snr = _snr_table()
    sections = [
        f"numpy {np.__version__}, scipy {scipy.__version__}, PyWavelets {pywt.__version__}.",
        "",
        "## Throughput (per core)",
        "",
        *throughput,
        "",
        "## Denoising",
        "",
        *snr,
        "",
        f"Benchmark wall time: {time.perf_counter() - start:.0f} s.",
    ]
    publish("EMG chain benchmark (`python bench/bench_emg.py`)", sections, "emg")


if __name__ == "__main__":
    main()

"""Benchmark of stride normalisation and of the end-to-end build on the built-in demo.

Run: ``python bench/bench_build.py``. Measures, side by side in one run:

- stride time-normalisation (strides/s): the vectorised ``time_normalise`` against a
  per-stride ``np.interp`` loop, single-threaded;
- end-to-end build of the demo (strides/s, raw MB/s per core) on a LocalCluster with 1 and
  with 2 worker processes, each a fresh build into a temporary folder;
- an EMG-dominated workload (``--files`` long C3D files of ``--minutes`` each, 16 channels at
  2 kHz, :mod:`builder.synthetic.long_c3d`, cached after the first run): the EMG chain alone
  (``process_emg`` on the same files' EMG, one core) against whole builds with 1 and with 2
  workers, in raw file MB/s per core; and where one trial's time goes (median of 3).

Prints a markdown report and writes it to ``bench/results/build.md``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from _report import publish  # noqa: E402

from builder.catalog import bundled_catalog, expand_trials, load_catalog  # noqa: E402
from builder.datasets.registry import read_trial  # noqa: E402
from builder.demo import default_cache_dir, ensure_demo_sources  # noqa: E402
from builder.pipeline.isolated import read_trial_isolated  # noqa: E402
from builder.pipeline.run import BuildOptions, build  # noqa: E402
from builder.processing.emg import EmgProcessing, process_emg  # noqa: E402
from builder.processing.strides import time_normalise  # noqa: E402
from builder.processing.trial import build_strides  # noqa: E402
from builder.records import TimeSeries  # noqa: E402
from builder.store.staging import Staging  # noqa: E402
from builder.synthetic.long_c3d import write_long_trials  # noqa: E402

N_STRIDES = 20_000


def bench_normalisation() -> list[str]:
    rng = np.random.default_rng(0)
    durations = rng.uniform(0.9, 1.3, N_STRIDES)
    starts = np.concatenate([[0.0], np.cumsum(durations)[:-1]])
    ends = starts + durations
    series = TimeSeries(rng.normal(size=(int(ends[-1] * 100) + 2, 3, 3)), 100.0, 0.0, "deg")

    def vectorised() -> None:
        time_normalise(series, starts, ends, 200)

    times = series.times()
    flat = series.data.reshape(series.n_samples, -1)

    def loop() -> None:
        # The straightforward alternative: per stride, its own window of samples, np.interp.
        for a, b in zip(starts, ends, strict=True):
            lo, hi = int(a * series.rate_hz), int(b * series.rate_hz) + 2
            query = np.linspace(a, b, 200)
            window = times[lo:hi]
            np.stack([np.interp(query, window, flat[lo:hi, c]) for c in range(flat.shape[1])], 1)

    fast = _median_seconds(vectorised, 5)
    slow = _median_seconds(loop, 3)
    return [
        "## Stride time-normalisation (kinematics, 3×3 components → 200 samples, 1 thread)",
        "",
        "| method | strides/s | ratio |",
        "|---|---:|---:|",
        f"| vectorised `time_normalise` | {N_STRIDES / fast:,.0f} | {slow / fast:.1f}× |",
        f"| per-stride `np.interp` loop | {N_STRIDES / slow:,.0f} | 1.0× |",
        "",
    ]


def _build(catalog: str, workers: int, variables: dict[str, str]) -> tuple[float, dict, int]:
    """A fresh build into a temporary folder: (wall s, stage timings, strides)."""
    with tempfile.TemporaryDirectory() as tmp:
        options = BuildOptions(
            output=str(Path(tmp) / "gait.zarr"),
            workers=workers,
            progress=False,
            dashboard_address=":0",  # any free port
            variables=variables,
        )
        start = time.perf_counter()
        result = build(catalog, options)
        return time.perf_counter() - start, result.report.timings_s, result.n_strides


def bench_builds() -> list[str]:
    root = ensure_demo_sources()
    raw_files = [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]
    raw_bytes = sum(p.stat().st_size for p in raw_files)
    catalog = str(bundled_catalog("demo"))
    rows = []
    for workers in (1, 2):
        wall, stages, n = _build(catalog, workers, {"demo_root": str(root)})
        rows.append((workers, wall, stages, n))
    base = rows[0][1]
    lines = [
        f"## End-to-end demo build: the C3D demo and 14 miniature datasets "
        f"({len(raw_files)} raw files, {raw_bytes / 1e6:.1f} MB, {rows[0][3]} strides)",
        "",
        "| workers | wall s | processing s | writing s | strides/s | raw MB/s per core | speed-up |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for workers, wall, stages, n in rows:
        lines.append(
            f"| {workers} | {wall:.1f} | {stages['processing']:.1f} | {stages['writing']:.1f} "
            f"| {n / wall:.0f} | {raw_bytes / 1e6 / stages['processing'] / workers:.1f} "
            f"| {base / wall:.2f}× |"
        )
    lines.append("")
    lines.append(
        "Wall time includes starting the LocalCluster; 'processing' is reading and processing "
        "trials (the part that scales with raw data), per core = divided by the worker count."
    )
    return lines


def bench_emg_dominated(n_files: int, minutes: float) -> list[str]:
    """The chain alone against whole builds, on the same long EMG-dominated C3D files."""
    root = default_cache_dir() / "bench" / "long_c3d"
    files, catalog = write_long_trials(root, n_files, minutes)
    raw_mb = sum(p.stat().st_size for p in files) / 1e6
    specs, _ = expand_trials(load_catalog(str(catalog), {}))
    chain_s = 0.0
    for spec in specs:  # one file in memory at a time
        settings = EmgProcessing.model_validate(spec.processing)
        for recording in read_trial(spec):
            for side in recording.sides:
                assert side.emg is not None
                start = time.perf_counter()
                process_emg(side.emg, settings, mains_hz=recording.mains_hz)
                chain_s += time.perf_counter() - start
    chain_rate = raw_mb / chain_s
    builds = {workers: _build(str(catalog), workers, {}) for workers in (1, 2)}
    lines = [
        f"## EMG-dominated build: {len(files)} C3D files of {minutes:g} min (16 EMG channels at "
        f"2 kHz, 78 % of the bytes; {raw_mb:.0f} MB, {builds[1][2]} strides)",
        "",
        "| what | s | raw MB/s per core | vs the chain alone | speed-up over 1 worker |",
        "|---|---:|---:|---:|---:|",
        f"| EMG chain alone (`process_emg`, 1 core) | {chain_s:.1f} | {chain_rate:.1f} | 1.00× | |",
    ]
    for workers, (_wall, stages, _) in builds.items():
        for stage, seconds in (
            ("processing", stages["processing"]),
            ("processing + writing", stages["processing"] + stages["writing"]),
        ):
            base = builds[1][1]["processing"] + (builds[1][1]["writing"] if "+" in stage else 0)
            rate = raw_mb / seconds / workers
            lines.append(
                f"| {workers} worker{'s' * (workers > 1)}, {stage} | {seconds:.1f} | {rate:.1f} "
                f"| {rate / chain_rate:.2f}× | {base / seconds:.2f}× |"
            )
    lines += ["", *_one_trial(specs[0]), ""]
    return lines


def _one_trial(spec) -> list[str]:
    """Where one long trial's time goes, in the worker's order (median of 3, one process)."""
    settings = EmgProcessing.model_validate(spec.processing)
    recording = read_trial(spec)[0]
    staging = Staging(tempfile.mkdtemp(prefix="bench-build-") + "/gait.zarr")
    batch = build_strides(recording, settings, activity="walk").batch
    steps = {
        "parse and convert (adapter, in process)": lambda: read_trial(spec),
        "the same through the reader child": lambda: read_trial_isolated(spec),
        "EMG chain, both sides": lambda: [
            process_emg(side.emg, settings, mains_hz=recording.mains_hz) for side in recording.sides
        ],
        "strides + chain + gate (`build_strides`)": lambda: build_strides(
            recording, settings, activity="walk"
        ),
        "staging write": lambda: staging.save_batch("bench", batch),
    }
    read_trial_isolated(spec)  # the reader child started
    seconds = {name: _median_seconds(step, 3) for name, step in steps.items()}
    return [
        f"One trial ({spec.url.rsplit('/', 1)[-1]}, {batch.n_strides} strides), median of 3:",
        "",
        "| step | s |",
        "|---|---:|",
        *(f"| {name} | {s:.3f} |" for name, s in seconds.items()),
    ]


def _median_seconds(fn, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20, help="long C3D files (default 20)")
    parser.add_argument("--minutes", type=float, default=3.0, help="minutes per file (3)")
    args = parser.parse_args()
    sections = [
        *bench_normalisation(),
        *bench_builds(),
        "",
        *bench_emg_dominated(args.files, args.minutes),
    ]
    publish("Build benchmark", sections, "build")


if __name__ == "__main__":
    main()

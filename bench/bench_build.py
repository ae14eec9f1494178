"""Benchmark of stride normalisation and of the end-to-end build on the built-in demo.

Run: ``python bench/bench_build.py``. Measures, side by side in one run:

- stride time-normalisation (strides/s): the vectorised ``time_normalise`` against a
  per-stride ``np.interp`` loop, single-threaded;
- end-to-end build of the demo (strides/s, raw MB/s per core) on a LocalCluster with 1 and
  with 2 worker processes, each a fresh build into a temporary folder.

Prints a markdown report and writes it to ``bench/results/build.md``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported

import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from _report import publish  # noqa: E402

from builder.catalog import bundled_catalog  # noqa: E402
from builder.demo import ensure_demo_sources  # noqa: E402
from builder.pipeline.run import BuildOptions, build  # noqa: E402
from builder.processing.strides import time_normalise  # noqa: E402
from builder.records import TimeSeries  # noqa: E402

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


def bench_builds() -> list[str]:
    root = ensure_demo_sources()
    raw_files = [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]
    raw_bytes = sum(p.stat().st_size for p in raw_files)
    catalog = str(bundled_catalog("demo"))
    rows = []
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            options = BuildOptions(
                output=str(Path(tmp) / "gait.zarr"),
                workers=workers,
                progress=False,
                dashboard_address=":0",  # any free port
                variables={"demo_root": str(root)},
            )
            start = time.perf_counter()
            result = build(catalog, options)
            wall = time.perf_counter() - start
            stages = result.report.timings_s
            rows.append((workers, wall, stages, result.n_strides))
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


def _median_seconds(fn, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    publish("Build benchmark", [*bench_normalisation(), *bench_builds()], "build")


if __name__ == "__main__":
    main()

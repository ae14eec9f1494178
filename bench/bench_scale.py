"""Benchmark of a build at real file sizes: multi-GB K2MUSE participant files (MAT v7.3, one
task per trial) and Embry's single file (~26 k strides at 20 GB, one task per subject).

Run: ``python bench/bench_scale.py --gb 20 --workers 2 --dir /tmp/scale`` (``--gb 1``: a quick
run of a few minutes). The raw files are generated once into ``<dir>/raw``
(:mod:`builder.synthetic.realsize`) and kept for the next run; every run is a fresh build into
``<dir>/gait.zarr`` on a LocalCluster of ``--workers`` single-threaded processes. Measured:

- wall time of the build (catalogue, processing, writing), raw MB/s per core (raw bytes /
  wall / workers), strides;
- peak RSS (the kernel's high-water mark, VmHWM) of every worker process and of every reader
  child (the adapters' sandbox, a separate process per worker), sampled through /proc;
- the longest trial task (Dask's task stream) as a share of the build's wall time;
- the projection to the full 700 GB build on 64 workers from the measured per-core rate.

Prints a markdown report and writes it to ``bench/results/scale.md``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported

import argparse  # noqa: E402
import shutil  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import psutil  # type: ignore[import-untyped]  # noqa: E402
import yaml  # noqa: E402
from _report import publish  # noqa: E402
from dask.distributed import Client, LocalCluster  # noqa: E402

from builder.pipeline.run import BuildOptions, BuildResult, build  # noqa: E402
from builder.synthetic.realsize import raw_files, write_realsize  # noqa: E402

FULL_SIZE_GB = 700.0
FULL_SIZE_WORKERS = 64
GOAL_MINUTES = 15.0
DATASETS = Path(__file__).resolve().parent.parent / "builder" / "datasets"


class PeakMemory:
    """Samples the VmHWM (peak resident set) of this process's descendants every ``period``
    seconds; a process's last sample is its peak, as VmHWM only grows."""

    def __init__(self, period: float = 0.5) -> None:
        self.period = period
        self.peaks: dict[int, int] = {}
        self.kinds: dict[int, str] = {}
        self.parents: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(self.period):
            self.sample(me)

    def sample(self, me: psutil.Process) -> None:
        for child in me.children(recursive=True):
            try:
                peak = _vm_hwm(child.pid)
                if child.pid not in self.kinds:
                    cmdline = " ".join(child.cmdline())
                    self.kinds[child.pid] = (
                        "reader" if "builder.pipeline.isolated" in cmdline else "other"
                    )
                    self.parents[child.pid] = child.ppid()
            except (psutil.Error, OSError):
                continue
            self.peaks[child.pid] = max(peak, self.peaks.get(child.pid, 0))


def _vm_hwm(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def catalogue(folder: Path, raw: Path) -> Path:
    """A catalogue of the two real-size sources: the datasets' own entries, pointed at ``raw``."""
    path = folder / "scale.yaml"
    variables = {"GAIT_DATA_ROOT": str(raw)}
    includes = [
        {"path": str(DATASETS / name / "catalog.yaml"), "variables": variables}
        for name in ("k2muse", "embry")
    ]
    path.write_text(yaml.safe_dump({"metadata": {"include": includes}, "sources": {}}))
    return path


def run_build(
    catalog: Path, output: Path, workers: int, memory: PeakMemory
) -> tuple[BuildResult, float, dict[str, Any]]:
    """A fresh build on a LocalCluster started here (so its processes are ours to measure)."""
    shutil.rmtree(output, ignore_errors=True)
    shutil.rmtree(f"{output}.build", ignore_errors=True)
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            memory_limit=0,  # measured, not policed
        ) as cluster,
        Client(cluster) as client,
    ):
        worker_pids = set(client.run(os.getpid).values())
        client.get_task_stream()  # installs the scheduler's task-stream plugin
        start = time.time()
        clock = time.perf_counter()
        result = build(
            str(catalog),
            BuildOptions(
                output=str(output),
                cluster=cluster.scheduler_address,
                fresh=True,
                progress=False,
                allow_partial=True,
            ),
        )
        wall = time.perf_counter() - clock
        memory.sample(psutil.Process())
        stream = client.get_task_stream(start=start)
    tasks: list[float] = []
    for record in stream:
        if not str(record.get("key", "")).startswith("trial-"):
            continue
        computes = [s for s in record.get("startstops", ()) if s.get("action") == "compute"]
        tasks.extend(s["stop"] - s["start"] for s in computes)
    return result, wall, {"worker_pids": worker_pids, "task_s": tasks}


def memory_rows(memory: PeakMemory, worker_pids: set[int]) -> tuple[float, float]:
    """(largest worker peak, largest reader-child peak) in MB."""
    workers = [memory.peaks.get(pid, 0) for pid in worker_pids]
    readers = [memory.peaks.get(pid, 0) for pid, kind in memory.kinds.items() if kind == "reader"]
    return max(workers, default=0) / 1e6, max(readers, default=0) / 1e6


def projection(rate_mb_s_core: float, longest_s: float) -> list[str]:
    minutes = FULL_SIZE_GB * 1e3 / (rate_mb_s_core * FULL_SIZE_WORKERS) / 60
    speedup = minutes / GOAL_MINUTES
    verdict = (
        "meets the goal"
        if minutes <= GOAL_MINUTES
        else f"misses the goal by {speedup:.1f}x: each core would have to process "
        f"{FULL_SIZE_GB * 1e3 / (GOAL_MINUTES * 60 * FULL_SIZE_WORKERS):.0f} raw MB/s"
    )
    return [
        f"**Projection**: {FULL_SIZE_GB:.0f} GB on {FULL_SIZE_WORKERS} workers at "
        f"{rate_mb_s_core:.1f} raw MB/s per core = **{minutes:.0f} min** (goal "
        f"{GOAL_MINUTES:.0f} min: {verdict}). Assumes the per-core rate measured here holds on "
        f"every worker (linear scaling, I/O keeping up at {rate_mb_s_core * FULL_SIZE_WORKERS:.0f}"
        f" MB/s in all) and that the real datasets cost per raw MB what this mix does; the "
        f"longest task here took {longest_s:.0f} s, so the tail adds at most that.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=1.0, help="raw GB to build (20: real size)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/scale"))
    parser.add_argument("--participant-gb", type=float, default=4.0)
    args = parser.parse_args()

    raw = args.dir / f"raw-{args.gb:g}gb"
    clock = time.perf_counter()
    write_realsize(raw, args.gb, participant_gb=min(args.participant_gb, args.gb))
    generated_s = time.perf_counter() - clock
    files = raw_files(raw)
    raw_mb = sum(p.stat().st_size for p in files) / 1e6
    catalog = catalogue(args.dir, raw)
    with PeakMemory() as memory:
        result, wall, measured = run_build(catalog, args.dir / "gait.zarr", args.workers, memory)
    worker_mb, reader_mb = memory_rows(memory, measured["worker_pids"])
    tasks = measured["task_s"]
    longest = max(tasks, default=0.0)
    rate = raw_mb / wall / args.workers
    timings = result.report.timings_s or {}
    largest_file = max((p.stat().st_size for p in files), default=0) / 1e9
    table = [
        f"Raw files: {len(files)} ({raw_mb / 1e3:.1f} GB, largest {largest_file:.1f} GB; "
        f"generated or found in {generated_s:.0f} s) in {raw}.",
        "",
        "| raw GB | workers | wall s | raw MB/s per core | strides | trial tasks | "
        "peak RSS per worker | peak RSS per reader child | longest task (share of wall) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {raw_mb / 1e3:.1f} | {args.workers} | {wall:.0f} | {rate:.1f} | "
        f"{result.n_strides:,} | {len(tasks)} | {worker_mb:,.0f} MB | {reader_mb:,.0f} MB | "
        f"{longest:.1f} s ({100 * longest / wall:.1f} %) |",
        "",
        "Stages (s): "
        + ", ".join(f"{name} {value:.0f}" for name, value in timings.items())
        + f"; trials built {result.n_trials_built}, left out {result.n_trials_left_out}.",
        "",
        *projection(rate, longest),
    ]
    publish("Scale benchmark", table, "scale")


if __name__ == "__main__":
    main()

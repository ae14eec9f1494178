"""Benchmark of training-data loading and of engine latency.

Run: ``python bench/bench_training.py`` (needs the test extra: PyTorch, onnxruntime and the S3
server). Measures, side by side in one run:

- strides/s delivered to the training loop by ``stride_loader`` (chunk-wise shuffled batches
  of 32 strides: kinematics, kinetics, EMG envelopes and their masks) from the demo store on
  local disk and on moto's S3 server over HTTP, against the same batches indexed out of an
  in-RAM numpy copy; first epoch (reads) and a cached epoch, 0 and 2 loader workers;
- batch-1 latency p50 / p99 of each reference model in PyTorch (eager, no_grad) and in
  onnxruntime, both on one CPU thread, as a control loop runs them;
- TensorRT engines: built and timed where TensorRT and a GPU are present, else the reason.

Prints a markdown report and writes it to ``bench/results/training.md``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported

import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import s3fs  # noqa: E402
import torch  # noqa: E402
from _report import publish  # noqa: E402
from bench_storage import demo_build, start_server  # noqa: E402

from builder.demo import ensure_demo_sources  # noqa: E402
from builder.training import tensorrt  # noqa: E402
from builder.training.data import (  # noqa: E402
    _MASKS,
    SIGNALS,
    ChunkShuffleSampler,
    StoreSource,
    StrideDataset,
    StrideQuery,
    stride_loader,
)
from builder.training.export import export, session  # noqa: E402
from builder.training.loop import TrainSettings  # noqa: E402
from builder.training.reference import reference_model  # noqa: E402
from builder.training.run import load_checkpoint, train  # noqa: E402

BATCH = 32
EPOCHS = 3
LATENCY_RUNS = 3000


def _epochs(loader, epochs: int) -> tuple[float, int]:
    """Seconds and strides for ``epochs`` passes, touching every tensor as training would."""
    start, strides = time.perf_counter(), 0
    for epoch in range(epochs):
        loader.batch_sampler.set_epoch(epoch)
        for batch in loader:
            strides += len(batch["stride"])
            for value in batch.values():
                value.sum()
    return time.perf_counter() - start, strides


def in_ram_epochs(source: StoreSource, indices: np.ndarray, epochs: int) -> tuple[float, int]:
    """The same batches (same sampler) indexed out of numpy arrays already in RAM."""
    group = source.group()
    names = [n for s in SIGNALS for n in (s, _MASKS[s])]
    arrays = {n: np.asarray(group[n][...]) for n in names}
    sampler = ChunkShuffleSampler(StrideDataset(source, indices), BATCH, seed=0)
    start, strides = time.perf_counter(), 0
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for positions in sampler:
            rows = indices[positions]
            batch = {n: torch.from_numpy(a[rows]) for n, a in arrays.items()}
            batch["stride"] = torch.from_numpy(rows)
            strides += len(rows)
            for value in batch.values():
                value.sum()
    return time.perf_counter() - start, strides


def bench_loader(local: StoreSource, remote: StoreSource) -> list[str]:
    indices = np.arange(len(local.table()))
    stride_bytes = sum(
        int(np.prod(local.group()[n].shape[1:])) * local.group()[n].dtype.itemsize
        for s in SIGNALS
        for n in (s, _MASKS[s])
    )
    rows = []
    seconds, strides = in_ram_epochs(local, indices, EPOCHS)
    ram = strides / seconds
    rows.append(("in-RAM numpy (same batches)", "-", "-", ram))
    for name, source in (("local disk", local), ("S3 server (moto, HTTP)", remote)):
        for workers in (0, 2):
            for cache in (False, True):
                loader = stride_loader(
                    StrideDataset(source, indices, cache=cache), BATCH, num_workers=workers
                )
                _epochs(loader, 1)  # workers started; with the cache, every chunk in RAM
                seconds, strides = _epochs(loader, EPOCHS)
                rows.append((name, str(workers), "yes" if cache else "no", strides / seconds))
                del loader
    lines = [
        f"## Loader: strides/s into the training loop ({len(indices)} strides, batches of "
        f"{BATCH}, {EPOCHS} epochs timed after one warm-up epoch, {stride_bytes / 1e3:.0f} kB "
        "per stride)",
        "",
        "| source | loader workers | chunk cache | strides/s | MB/s | vs in-RAM |",
        "|---|---|---|---|---|---|",
    ]
    for name, workers, cache, rate in rows:
        lines.append(
            f"| {name} | {workers} | {cache} | {rate:,.0f} | {rate * stride_bytes / 1e6:.1f} "
            f"| {rate / ram:.2f}x |"
        )
    return [*lines, ""]


def bench_latency(store: Path, folder: Path) -> list[str]:
    torch.set_num_threads(1)
    lines = [
        f"## Batch-1 latency on one CPU thread ({LATENCY_RUNS} runs after 200 warm-up)",
        "",
        "| model | input | PyTorch p50 / p99 (µs) | onnxruntime p50 / p99 (µs) | speed-up p50 | parity (max abs diff) |",
        "|---|---|---|---|---|---|",
    ]
    engines = []
    for name in ("hip-moment", "emg-torque", "gait-phase"):
        quick = {"query": StrideQuery(datasets=("demo",)), "max_subjects": 1}
        settings = TrainSettings(
            StoreSource(str(store)),
            epochs=2,
            **(quick if name == "hip-moment" else {}),
        )
        run = train(name, settings, folder / name).checkpoint.parent
        exported = export(run, engines=True)
        checkpoint = load_checkpoint(run / "checkpoint.pt")
        deployable = reference_model(name).deployable(checkpoint["config"], checkpoint["weights"])
        (spec,) = deployable.inputs
        x = 30.0 * spec.example(batch=1)
        with torch.no_grad():
            torch_times = _time(lambda m=deployable.module, x=x: m(x))
        runtime = session(exported.folder / "model.onnx", threads=1)
        feed = {spec.name: x.numpy()}
        onnx_times = _time(lambda r=runtime, f=feed: r.run(None, f))
        parity = exported.manifest["onnx"]["parity"]["max_abs_diff"]
        shape = "×".join(str(d) for d in spec.shape).replace("batch", "1")
        lines.append(
            f"| {name} | {spec.name} {shape} | {torch_times[0]:.0f} / {torch_times[1]:.0f} | "
            f"{onnx_times[0]:.0f} / {onnx_times[1]:.0f} | {torch_times[0] / onnx_times[0]:.1f}x "
            f"| {parity:.1e} |"
        )
        engines.append((name, exported.manifest["tensorrt"]))
    lines += ["", "## TensorRT engines", ""]
    for name, report in engines:
        if report["skipped"]:
            lines.append(f"- {name}: skipped: {report['skipped']}")
        for engine in report["built"]:
            lines.append(
                f"- {name} {engine['precision']}: p50 {engine['latency_ms_p50'] * 1e3:.0f} µs, "
                f"p99 {engine['latency_ms_p99'] * 1e3:.0f} µs ({report['gpu']})"
            )
    return [*lines, ""]


def _time(call) -> tuple[float, float]:
    for _ in range(200):
        call()
    times = np.empty(LATENCY_RUNS)
    for k in range(LATENCY_RUNS):
        start = time.perf_counter_ns()
        call()
        times[k] = (time.perf_counter_ns() - start) / 1e3
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def main() -> None:
    server = start_server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            root = str(ensure_demo_sources(folder / "cache"))
            demo_build(str(folder / "gait.zarr"), 2, root, {})
            fs = s3fs.S3FileSystem(**server.options)
            fs.put(str((folder / "gait.zarr").resolve()) + "/", "stores/gait.zarr/", recursive=True)
            local = StoreSource(str(folder / "gait.zarr"))
            remote = StoreSource("s3://stores/gait.zarr", server.options)
            sections = bench_loader(local, remote) + bench_latency(folder / "gait.zarr", folder)
    finally:
        server.stop()
    if tensorrt.unavailable():
        sections.append(f"TensorRT was not exercised here: {tensorrt.unavailable()}.")
    publish("Training data loading and engine latency", sections, "training")


if __name__ == "__main__":
    main()

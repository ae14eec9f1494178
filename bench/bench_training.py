"""Benchmark of engine latency (the training loader has its own: ``bench/bench_loader.py``).

Run: ``python bench/bench_training.py`` (needs the test extra: PyTorch and onnxruntime).
Measures, side by side in one run:

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
import torch  # noqa: E402
from _report import publish  # noqa: E402
from bench_storage import demo_build  # noqa: E402

from builder.demo import ensure_demo_sources  # noqa: E402
from builder.training import tensorrt  # noqa: E402
from builder.training.data import StoreSource, StrideQuery  # noqa: E402
from builder.training.export import export, session  # noqa: E402
from builder.training.loop import TrainSettings  # noqa: E402
from builder.training.reference import reference_model  # noqa: E402
from builder.training.run import load_checkpoint, train  # noqa: E402

LATENCY_RUNS = 3000


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
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        root = str(ensure_demo_sources(folder / "cache"))
        demo_build(str(folder / "gait.zarr"), 2, root, {})
        sections = bench_latency(folder / "gait.zarr", folder)
    if tensorrt.unavailable():
        sections.append(f"TensorRT was not exercised here: {tensorrt.unavailable()}.")
    publish("Engine latency", sections, "training")


if __name__ == "__main__":
    main()

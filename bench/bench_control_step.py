"""Control-step latency of the hip-moment TCN: the windowed step (a 127-sample window through
every layer, as exported today) against its streaming form (one new sample, cached dilated
convolutions; builder.training.streaming), side by side, batch 1, one CPU thread.

    python bench/bench_control_step.py

Prints p50 / p99 and the jitter (p99 / p50) in PyTorch and onnxruntime for ensembles of 1 and
3 members (a subject's modes), and checks the streaming step against the windowed model on a
long sequence first. Latency does not depend on the weights: the networks are untrained, with
the reference model's architecture (builder/training/reference/hip_moment.py).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from _report import publish

from builder.training.nets import CausalTCN, LastSample, MeanOf
from builder.training.reference.hip_moment import CHANNELS, DILATIONS, KERNEL, RECEPTIVE_FIELD
from builder.training.streaming import export_streaming_onnx, streaming

RUNS, WARM_UP, CHECK_STEPS = 20_000, 2_000, 2_000


def _percentiles(call: Callable[[], object]) -> tuple[float, float]:
    for _ in range(WARM_UP):
        call()
    times = np.empty(RUNS)
    for i in range(RUNS):
        start = time.perf_counter()
        call()
        times[i] = time.perf_counter() - start
    p50, p99 = np.percentile(times, [50, 99]) * 1e6
    return float(p50), float(p99)


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _row(label: str, times: tuple[float, float]) -> str:
    return f"{times[0]:.0f} / {times[1]:.0f} ({times[1] / times[0]:.2f})"


def bench(members: int, folder: Path) -> tuple[list[str], float]:
    torch.manual_seed(members)
    nets = [
        CausalTCN([20.0], [15.0], 1, CHANNELS, KERNEL, DILATIONS).eval() for _ in range(members)
    ]
    windowed = LastSample(MeanOf(nets)).eval()
    stream = streaming(MeanOf(nets)).eval()

    # equal to the windowed model on a long sequence (after the first window)
    x = 15 * torch.randn(1, 1, CHECK_STEPS) + 20
    states = stream.initial_state(1)
    got, want = [], []
    with torch.no_grad():
        for t in range(CHECK_STEPS):
            y, *states = stream(x[:, :, t : t + 1], *states)
            if t >= RECEPTIVE_FIELD - 1:
                got.append(float(y))
                want.append(float(windowed(x[:, :, t - RECEPTIVE_FIELD + 1 : t + 1])))
    difference = float(np.max(np.abs(np.array(got) - np.array(want))))

    window_path, step_path = folder / f"window{members}.onnx", folder / f"step{members}.onnx"
    window = torch.zeros(1, 1, RECEPTIVE_FIELD)
    torch.onnx.export(windowed, (window,), str(window_path), dynamo=True, external_data=False)
    export_streaming_onnx(stream, str(step_path))
    window_session, step_session = _session(window_path), _session(step_path)
    window_feed = {window_session.get_inputs()[0].name: window.numpy() + 20}
    step_names = [i.name for i in step_session.get_inputs()]
    step_feed = dict(
        zip(
            step_names,
            [np.full((1, 1, 1), 20, np.float32)] + [s.numpy() for s in stream.initial_state(1)],
            strict=True,
        )
    )
    sample, start = torch.full((1, 1, 1), 20.0), stream.initial_state(1)
    with torch.no_grad():
        torch_window = _percentiles(lambda: windowed(window))
        torch_step = _percentiles(lambda: stream(sample, *start))
    ort_window = _percentiles(lambda: window_session.run(None, window_feed))
    ort_step = _percentiles(lambda: step_session.run(None, step_feed))
    rows = [
        f"| {members} | windowed ({RECEPTIVE_FIELD} samples) | {_row('', torch_window)} | {_row('', ort_window)} |",
        f"| {members} | streaming (1 sample + state) | {_row('', torch_step)} | {_row('', ort_step)} |",
        f"| {members} | streaming / windowed p99 | {torch_step[1] / torch_window[1]:.2f}x | {ort_step[1] / ort_window[1]:.2f}x |",
    ]
    return rows, difference


def main() -> None:
    torch.set_num_threads(1)
    lines = [
        f"## Hip-moment control step, batch 1, one CPU thread ({RUNS} runs after {WARM_UP} warm-up)",
        "",
        "| members | step | PyTorch p50 / p99 µs (jitter p99/p50) | onnxruntime p50 / p99 µs (jitter) |",
        "|---|---|---|---|",
    ]
    differences = []
    with tempfile.TemporaryDirectory() as folder:
        for members in (1, 3):
            rows, difference = bench(members, Path(folder))
            lines += rows
            differences.append(f"{members} member(s): {difference:.1e}")
    lines += [
        "",
        f"Streaming vs windowed over {CHECK_STEPS} steps, largest difference: {', '.join(differences)}.",
    ]
    publish("Control step", lines, "control_step")


if __name__ == "__main__":
    main()

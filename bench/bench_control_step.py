"""Control-step latency of the three reference models, batch 1, one CPU thread, in PyTorch and
onnxruntime (``session.run`` with a feed dict, and with I/O binding: builder.training.onnx_step,
buffers allocated once, states written where the next call reads them): the emg-torque MLP, the gait-phase MLP + softmax, and the hip-moment TCN both
windowed (a 127-sample window through every layer: model.onnx) and streaming (one new sample
and the state fed back: model.step.onnx), for ensembles of 1 and 3 mode models.

    python bench/bench_control_step.py [--runs 20000]

The networks are the ones ``builder export`` ships (``reference_model(...).deployable`` and
``builder.training.export``'s ONNX writers), with untrained weights: latency does not depend on
them. Every variant runs in the same rounds, interleaved (a block of calls each, the order
rotating), so a busy machine slows all of them alike; p50 / p99 and the jitter (p99 / p50) are
over all calls after a warm-up. The step files are first checked against the windowed files
(export's own check: a long sequence in onnxruntime).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _report import publish

from builder.training import features as F
from builder.training.export import (
    check_step_parity,
    session,
    step_form,
    write_onnx,
)
from builder.training.nets import CausalTCN, FeatureMLP, mlp, torque_based_emg
from builder.training.onnx_step import BoundStep
from builder.training.reference import Deployable, emg_torque, gait_phase, reference_model
from builder.training.reference.hip_moment import CHANNELS, DILATIONS, KERNEL, run_config
from builder.training.streaming import export_streaming_onnx

WARM_UP, ROUNDS = 2_000, 20
TARGET_US = 100.0  # issue 13: p99 per control step
MODES = ("walk", "ramp_ascent", "ramp_descent")


@dataclass
class Variant:
    model: str
    step: str
    runtime: str
    call: Callable[[], object]
    times: list[np.ndarray]


def _deployables() -> dict[str, Deployable]:
    """The reference models' deployable networks, untrained (weights as ``train`` saves)."""
    torch.manual_seed(0)
    muscles = list(F.STUDY_MUSCLES)
    h = emg_torque.HIDDEN
    torque = torque_based_emg(FeatureMLP([0.0] * 6, [1.0] * 6, mlp([6, h, h, 3])), h, len(muscles))
    n, h = gait_phase.FEATURES, gait_phase.HIDDEN
    phases = FeatureMLP([0.0] * n, [1.0] * n, mlp([n, h, h, len(F.PHASES)]))
    found = {
        "emg-torque": reference_model("emg-torque").deployable(
            {"hidden": emg_torque.HIDDEN, "features": 6, "muscles": muscles},
            {"torque_based": torque.state_dict()},
        ),
        "gait-phase": reference_model("gait-phase").deployable(
            {"hidden": gait_phase.HIDDEN, "features": n, "phases": list(F.PHASES)},
            {"classifier": phases.state_dict()},
        ),
    }
    for members in (1, 3):
        modes = list(MODES[:members])
        config = run_config({"S": modes})
        weights = {
            f"S|{mode}": CausalTCN([20.0], [15.0], 1, CHANNELS, KERNEL, DILATIONS).state_dict()
            for mode in modes
        }
        label = f"hip-moment, {members} member{'s' if members > 1 else ''}"
        found[label] = reference_model("hip-moment").deployable(config, weights)
    return found


def _variants(folder: Path) -> tuple[list[Variant], list[str]]:
    variants, checks = [], []
    for label, deployable in _deployables().items():
        module = deployable.module.eval()
        path = folder / f"{len(variants)}.onnx"
        write_onnx(deployable, path)
        (spec,) = deployable.inputs
        x = spec.example(1) * 10 + 20
        windowed = session(path)
        feed = {spec.name: x.numpy()}
        kind = "windowed (127 samples)" if "hip" in label else "one sample"
        bound = BoundStep(path)
        bound.inputs[spec.name][...] = x.numpy()
        variants += [
            Variant(label, kind, "PyTorch", lambda m=module, x=x: m(x), []),
            Variant(label, kind, "onnxruntime", lambda s=windowed, f=feed: s.run(None, f), []),
            Variant(label, kind, "bound", bound, []),
        ]
        step = step_form(deployable)
        if step is None:
            continue
        step_path = folder / f"{len(variants)}.step.onnx"
        export_streaming_onnx(
            step.module, str(step_path), step.inputs[0].name, step.outputs[0].name
        )
        parity = check_step_parity(path, step_path, step.window)
        checks.append(
            f"{label}: {parity['max_abs_diff']:.1e} over {parity['samples_compared']} samples"
        )
        variants += [
            Variant(label, "streaming (1 sample + state)", "PyTorch", _torch_loop(step.module), []),
            Variant(label, "streaming (1 sample + state)", "onnxruntime", _ort_loop(step_path), []),
            Variant(label, "streaming (1 sample + state)", "bound", _bound_loop(step_path), []),
        ]
    return variants, checks


def _torch_loop(stream: torch.nn.Module) -> Callable[[], object]:
    """One control-loop step: the newest sample in, the new states kept for the next call."""
    states = list(stream.initial_state(1))  # type: ignore[operator]
    sample = torch.full((1, 1, 1), 20.0)

    def call() -> object:
        output, *states[:] = stream(sample, *states)
        return output

    return call


def _ort_loop(path: Path) -> Callable[[], object]:
    runtime = session(path)
    sample, *inputs = runtime.get_inputs()
    feed: dict[str, Any] = {sample.name: np.full((1, 1, 1), 20.0, np.float32)}
    feed |= {i.name: np.zeros(i.shape, np.float32) for i in inputs}
    names = [i.name for i in inputs]

    def call() -> object:
        output, *states = runtime.run(None, feed)
        feed.update(zip(names, states, strict=True))
        return output

    return call


def _bound_loop(path: Path) -> Callable[[], object]:
    step = BoundStep(path)
    next(iter(step.inputs.values()))[...] = 20.0
    return step


def _block(call: Callable[[], object], n: int) -> np.ndarray:
    times = np.empty(n)
    clock = time.perf_counter_ns
    for i in range(n):
        start = clock()
        call()
        times[i] = clock() - start
    return times / 1e3  # µs


def _stats(times: list[np.ndarray]) -> tuple[float, float]:
    p50, p99 = np.percentile(np.concatenate(times), [50, 99])
    return float(p50), float(p99)


def _cell(times: list[np.ndarray]) -> str:
    p50, p99 = _stats(times)
    return f"{p50:.0f} / {p99:.0f} ({p99 / p50:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20_000, help="timed calls per variant")
    runs = parser.parse_args().runs
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder, torch.inference_mode():
        variants, checks = _variants(Path(folder))
        for v in variants:
            _block(v.call, WARM_UP)
        block = max(runs // ROUNDS, 1)
        for r in range(ROUNDS):  # interleaved: every variant in every round, order rotating
            for v in variants[r % len(variants) :] + variants[: r % len(variants)]:
                v.times.append(_block(v.call, block))
    rows = {}
    for v in variants:
        rows.setdefault((v.model, v.step), {})[v.runtime] = v.times
    lines = [
        f"## Control step, batch 1, one CPU thread ({block * ROUNDS} calls per variant in "
        f"{ROUNDS} interleaved rounds, after {WARM_UP} warm-up)",
        "",
        "| model | step | PyTorch p50 / p99 µs (p99/p50) | onnxruntime run() p50 / p99 µs "
        f"(p99/p50) | onnxruntime, I/O binding | p99 ≤ {TARGET_US:.0f} µs (bound) |",
        "|---|---|---|---|---|---|",
    ]
    for (model, step), by_runtime in rows.items():
        ok = "yes" if _stats(by_runtime["bound"])[1] <= TARGET_US else "no"
        lines.append(
            f"| {model} | {step} | {_cell(by_runtime['PyTorch'])} | "
            f"{_cell(by_runtime['onnxruntime'])} | {_cell(by_runtime['bound'])} | {ok} |"
        )
    for model in dict.fromkeys(m for m, _ in rows):
        windowed = rows.get((model, "windowed (127 samples)"))
        streaming = rows.get((model, "streaming (1 sample + state)"))
        if windowed and streaming:
            ratios = " | ".join(
                f"{_stats(streaming[r])[1] / _stats(windowed[r])[1]:.2f}x"
                for r in ("PyTorch", "onnxruntime", "bound")
            )
            lines.append(f"| {model} | streaming / windowed p99 | {ratios} | |")
    lines += [
        "",
        "model.step.onnx against model.onnx (export's check, onnxruntime), largest difference: "
        + "; ".join(checks)
        + ".",
    ]
    publish("Control step", lines, "control_step")


if __name__ == "__main__":
    main()

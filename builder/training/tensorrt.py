"""TensorRT engines (fp32, fp16) from an ONNX file through the TensorRT Python API.

Runs only where the ``tensorrt`` package (NVIDIA's binaries, not the placeholder wheel) and a
CUDA GPU are present; elsewhere ``build_engines`` returns the reason it skipped. Follows the
TensorRT 10 API: explicit-batch network, ``OnnxParser``, an optimisation profile for the
dynamic batch axis, ``build_serialized_network``; timing uses ``execute_async_v3`` with
PyTorch CUDA tensors as buffers.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

from builder.training.reference import TensorSpec

MAX_BATCH = 256
TIMED_RUNS = 2000

# Operators of TensorRT 10's ONNX parser support matrix (onnx-tensorrt docs/operators.md,
# opsets 9-20) that networks like these export to; export checks the graph against it.
ONNX_PARSER_OPS = frozenset(
    """Abs Add And ArgMax ArgMin AveragePool BatchNormalization Cast Ceil Clip Concat Constant
    ConstantOfShape Conv ConvTranspose CumSum Div Einsum Elu Equal Erf Exp Expand Flatten Floor
    Gather GatherElements Gelu Gemm GlobalAveragePool Greater GreaterOrEqual HardSigmoid Identity
    If InstanceNormalization LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax MatMul
    Max MaxPool Mean Min Mod Mul Neg Not Or Pad Pow PRelu Range Reciprocal ReduceL2 ReduceMax
    ReduceMean ReduceMin ReduceProd ReduceSum Relu Reshape Resize Selu Shape Sigmoid Sign Sin
    Slice Softmax Softplus Split Sqrt Squeeze Sub Sum Tanh Tile TopK Transpose Unsqueeze Where
    Xor""".split()  # noqa: SIM905
)


def unavailable() -> str | None:
    """Why engines cannot be built here, or None when they can."""
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (NVIDIA's tensorrt Python package is needed)"
    try:
        trt = importlib.import_module("tensorrt")
        trt.Logger  # noqa: B018  (the placeholder wheel on PyPI has no API)
    except Exception as exc:
        return f"the tensorrt package does not load ({type(exc).__name__}: {exc})"
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible to PyTorch"
    return None


def build_engines(onnx_path: Path, inputs: list[TensorSpec], out: Path) -> dict[str, Any]:
    """fp32 and fp16 engines beside the ONNX (``<stem>.<precision>.engine``: model.onnx gives
    model.fp32.engine, model.step.onnx model.step.fp32.engine), each timed at batch 1; or why
    not."""
    reason = unavailable()
    if reason:
        return {"built": [], "skipped": reason}
    trt = importlib.import_module("tensorrt")
    built = []
    for precision in ("fp32", "fp16"):
        path = out / f"{onnx_path.stem}.{precision}.engine"
        build_engine(trt, onnx_path, inputs, path, fp16=precision == "fp16")
        entry = {"precision": precision, "file": path.name, "onnx": onnx_path.name}
        built.append(entry | time_engine(trt, path, inputs))
    return {
        "built": built,
        "skipped": None,
        "tensorrt_version": trt.__version__,
        "gpu": torch.cuda.get_device_name(),
    }


def build_engine(
    trt: Any, onnx_path: Path, inputs: list[TensorSpec], path: Path, fp16: bool
) -> None:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{onnx_path}: TensorRT's ONNX parser refused it: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 28)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    dynamic = [spec for spec in inputs if "batch" in spec.shape]  # a step's inputs are fixed
    if dynamic:
        profile = builder.create_optimization_profile()
        for spec in dynamic:
            profile.set_shape(spec.name, _shape(spec, 1), _shape(spec, 1), _shape(spec, MAX_BATCH))
        config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise RuntimeError(
            f"{onnx_path}: TensorRT could not build a {'fp16' if fp16 else 'fp32'} engine"
        )
    path.write_bytes(bytes(engine))


def time_engine(trt: Any, path: Path, inputs: list[TensorSpec]) -> dict[str, float]:
    """Batch-1 latency (p50, p99 in ms) of ``execute_async_v3`` plus a stream sync."""
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    context = engine.create_execution_context()
    buffers = []
    for spec in inputs:
        if "batch" in spec.shape:
            context.set_input_shape(spec.name, _shape(spec, 1))
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        tensor = torch.randn(tuple(context.get_tensor_shape(name)), device="cuda")
        context.set_tensor_address(name, tensor.data_ptr())
        buffers.append(tensor)
    stream = torch.cuda.Stream()
    times = []
    for k in range(TIMED_RUNS + 100):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(stream)
        context.execute_async_v3(stream.cuda_stream)
        end.record(stream)
        stream.synchronize()
        if k >= 100:
            times.append(start.elapsed_time(end))
    return {
        "latency_ms_p50": float(np.percentile(times, 50)),
        "latency_ms_p99": float(np.percentile(times, 99)),
    }


def _shape(spec: TensorSpec, batch: int) -> tuple[int, ...]:
    return tuple(batch if d == "batch" else int(d) for d in spec.shape)

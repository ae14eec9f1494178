"""A trained run as a release folder: ONNX (dynamic batch) checked against PyTorch with
onnxruntime, for a window model (the hip-moment TCN) its streaming step checked against that
ONNX on a long sequence, TensorRT engines where TensorRT and a GPU are present, and the manifest.

The manifest's ``files`` (sha256 and size of each file) and ``version`` are filled in by
``releases.push``; everything else is written here.

The release folder carries the builder's ownership marker. A new release is written into a
scratch folder inside it and moved in only when complete, replacing just the files of the
previous release: a folder the builder did not create, or one holding other files, is refused.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from builder._version import __version__
from builder.errors import TrainingError
from builder.store.ownership import MARKER, NotOwnedError, claim_local
from builder.store.staging import nan_to_null
from builder.training import tensorrt
from builder.training.reference import Deployable, TensorSpec, reference_model
from builder.training.run import FIGURE, METRICS, load_checkpoint
from builder.training.streaming import (
    StreamingMean,
    StreamingTCN,
    export_streaming_onnx,
    state_names,
    step_model,
)

ONNX_NAME = "model.onnx"
STEP_NAME = "model.step.onnx"  # the streaming step of a window model: one sample + state
STEP_PARITY_EXTRA = 500  # the step is checked over two windows and this many samples more
MANIFEST = "manifest.json"
OPSET = 18
PARITY_BATCHES = (1, 7, 64)
PARITY_TOLERANCE = 1e-4  # max abs difference accepted between onnxruntime and PyTorch
MAX_BATCH = 4096  # the exported graph's batch axis: 1 to this
METADATA_FORMAT = "gait-builder-onnx/1"  # the metadata_props keys below (onnx_metadata)
# The reference models' tensors, by name: their axes in order (PyTorch's (batch, channel,
# time) for the TCN's window; features, muscles and phases as each description lists them).
TENSOR_AXES: dict[str, tuple[str, ...]] = {
    "hip_angle": ("batch", "channel", "time"),
    "hip_moment": ("batch", "channel"),
    "kinematics": ("batch", "feature"),
    "emg_envelope": ("batch", "muscle"),
    "features": ("batch", "feature"),
    "phase_probability": ("batch", "phase"),
}
STATE_AXES = ("batch", "channel", "time")  # a streaming step's state_i and new_state_i
RELEASE_KIND = "release"  # the ownership marker's kind for a release folder
SCRATCH_PREFIX = ".export-"  # an export in progress, inside the release folder


@dataclass(frozen=True)
class Exported:
    folder: Path
    manifest: dict[str, Any]


def export(
    run: Path, out: Path | None = None, subject: str | None = None, engines: bool = True
) -> Exported:
    """Write ``out`` (default ``<run>/release``): model.onnx, engines, metrics, figure and
    manifest.json; raise if onnxruntime disagrees with PyTorch beyond ``PARITY_TOLERANCE``."""
    checkpoint = load_checkpoint(run / "checkpoint.pt")
    model = reference_model(str(checkpoint["model"]))
    try:
        deployable = model.deployable(checkpoint["config"], checkpoint["weights"], subject=subject)
    except ValueError as exc:
        raise TrainingError(f"{run}: {exc}") from None
    out = out or run / "release"
    _owned_release(out)  # refuse a folder the builder did not create before any work
    scratch = Path(tempfile.mkdtemp(dir=out, prefix=SCRATCH_PREFIX))
    try:
        manifest = _write_release(run, checkpoint, deployable, scratch, out, engines)
        _move_in(scratch, out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # ours: made by mkdtemp above
    return Exported(out, manifest)


def _write_release(
    run: Path,
    checkpoint: dict[str, Any],
    deployable: Deployable,
    folder: Path,
    out: Path,
    engines: bool,
) -> dict[str, Any]:
    """The release's files and manifest in ``folder`` (messages name ``out``, where they go)."""
    onnx_path = folder / ONNX_NAME
    step = step_form(deployable)
    metadata = onnx_metadata(checkpoint, deployable) | _step_pointer(step)
    write_onnx(deployable, onnx_path, metadata)
    parity = check_parity(deployable, onnx_path)
    if parity["max_abs_diff"] > PARITY_TOLERANCE:
        raise TrainingError(
            f"{out / ONNX_NAME}: onnxruntime differs from PyTorch by "
            f"{parity['max_abs_diff']:.3g} (> {PARITY_TOLERANCE:g})"
        )
    unsupported = sorted(onnx_operators(onnx_path) - tensorrt.ONNX_PARSER_OPS)
    step_manifest = _write_step(checkpoint, deployable, step, folder, out)
    engine_report = (
        tensorrt.build_engines(onnx_path, deployable.inputs, folder)
        if engines
        else {"built": [], "skipped": "not asked for (--no-engines)"}
    )
    if step is not None and engines and not engine_report["skipped"]:
        step_engines = tensorrt.build_engines(folder / STEP_NAME, step.inputs, folder)
        engine_report["built"] += step_engines["built"]
    for name in (METRICS, FIGURE):
        if (run / name).exists():
            shutil.copyfile(run / name, folder / name)
    manifest: dict[str, Any] = nan_to_null(
        {
            "format": "gait-builder-release/1",
            "model": checkpoint["model"],
            "version": None,
            "summary": deployable.summary,
            "created": checkpoint.get("created"),
            "builder_version": checkpoint.get("builder_version"),
            "inputs": [spec.as_dict() for spec in deployable.inputs],
            "outputs": [spec.as_dict() for spec in deployable.outputs],
            "store": checkpoint.get("store"),
            "training": checkpoint.get("settings"),
            "metrics": checkpoint.get("metrics"),
            "onnx": {
                "file": ONNX_NAME,
                "opset": OPSET,
                "operators": sorted(onnx_operators(onnx_path)),
                "operators_outside_tensorrt_parser": unsupported,
                "parity": parity,
            },
            "step": step_manifest,
            "tensorrt": engine_report,
            "files": {},
        }
    )
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _owned_release(out: Path) -> set[str]:
    """Claim ``out`` for a release and return the names of the builder's files in it; raise
    ``NotOwnedError`` (nothing changed) for a link, a file, a folder without the marker, a
    builder folder of another kind, or a release folder that also holds other files."""
    claim_local(out, RELEASE_KIND)  # refuses links, files and folders it did not create
    try:
        kind = json.loads((out / MARKER).read_bytes()).get("kind")
    except (OSError, ValueError, AttributeError):
        kind = None
    if kind != RELEASE_KIND:
        raise NotOwnedError(
            f"{out}: is not a release folder (its {MARKER} marker says {kind!r}); nothing was "
            "changed; choose another --out"
        )
    ours = _release_files(out)
    foreign = sorted(
        p.name + ("/" if p.is_dir() else "")
        for p in out.iterdir()
        if not (p.name in ours and (p.is_file() or p.is_symlink()))
        and not (p.name.startswith(SCRATCH_PREFIX) and p.is_dir() and not p.is_symlink())
    )
    if foreign:
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        shown = ", ".join(foreign[:5]) + more
        raise NotOwnedError(
            f"{out}: holds files an export did not write ({shown}); nothing was changed; move "
            "them away or choose another --out"
        )
    return {name for name in ours if os.path.lexists(out / name)}


def _release_files(out: Path) -> set[str]:
    """What an export writes into ``out``: the fixed names, and the ONNX, streaming step and
    engine files its manifest names (engines exist only where TensorRT ran)."""
    names = {MARKER, MANIFEST, ONNX_NAME, STEP_NAME, METRICS, FIGURE}
    try:
        manifest = json.loads((out / MANIFEST).read_bytes())
        names.add(str(manifest["onnx"]["file"]))
        names.add(str((manifest.get("step") or {}).get("file", "")))
        names.update(str(engine["file"]) for engine in manifest["tensorrt"]["built"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no readable manifest: only the fixed names are known to be the builder's
    return {name for name in names if name and "/" not in name and name not in (".", "..")}


def _move_in(scratch: Path, out: Path) -> None:
    """Replace the previous release in ``out`` by the one in ``scratch``: its files only, the
    manifest removed first and written last, so a half-done swap never looks complete."""
    previous = _owned_release(out)  # again: a file may have arrived during the export
    for name in sorted(previous - {MARKER}, key=lambda n: n != MANIFEST):
        (out / name).unlink(missing_ok=True)
    for path in sorted(scratch.iterdir(), key=lambda p: p.name == MANIFEST):
        os.replace(path, out / path.name)
    for stale in out.glob(f"{SCRATCH_PREFIX}*"):  # left by an export that was killed
        if stale != scratch and stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)


def write_onnx(
    deployable: Deployable, path: Path, metadata: Mapping[str, str] | None = None
) -> None:
    """The deployable network as ONNX, batch axis dynamic, weights inside the file, and
    ``metadata`` as the model's ``metadata_props`` (onnxruntime: ``custom_metadata_map``)."""
    examples = tuple(spec.example(batch=2) for spec in deployable.inputs)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    # the exporter logs every torchvision op it cannot register and warns about internals
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _export(deployable, examples, path, batch)
    _annotate(path, metadata, deployable.summary)


def _annotate(path: Path, metadata: Mapping[str, str] | None, summary: str) -> None:
    """``metadata`` as the file's ``metadata_props`` and ``summary`` as its description; the
    result checked by the ONNX checker."""
    model = onnx.load(str(path))
    if metadata:
        exporter = {prop.key: prop.value for prop in model.metadata_props}  # kept, ours win
        onnx.helper.set_model_props(model, exporter | dict(metadata))
        model.doc_string = summary
        onnx.save(model, str(path))
    onnx.checker.check_model(model, full_check=True)


def onnx_metadata(checkpoint: Mapping[str, Any], deployable: Deployable) -> dict[str, str]:
    """What a controller integrator needs beside the graph, as flat string pairs: the model,
    each input's and output's layout (axis names in order, shape, dtype, units, meaning), the
    store build it was trained on and the builder versions. ``io`` repeats the layout as JSON."""
    meta: dict[str, Any] = {
        "format": METADATA_FORMAT,
        "model": checkpoint["model"],
        "summary": deployable.summary,
        "inputs": ",".join(spec.name for spec in deployable.inputs),
        "outputs": ",".join(spec.name for spec in deployable.outputs),
        "batch_axis": f"0 (dynamic, 1 to {MAX_BATCH})",
        "builder_version": checkpoint.get("builder_version"),  # the one that trained it
        "exported_by": f"gait-builder {__version__}",
        "trained": checkpoint.get("created"),
        "opset": OPSET,
    }
    io: dict[str, list[dict[str, Any]]] = {"inputs": [], "outputs": []}
    for kind, specs in (("input", deployable.inputs), ("output", deployable.outputs)):
        for spec in specs:
            entry = spec.as_dict() | {"dims": list(tensor_axes(spec.name, spec.shape))}
            io[f"{kind}s"].append(entry)
            meta[f"{kind}.{spec.name}.dims"] = ",".join(entry["dims"])
            meta[f"{kind}.{spec.name}.shape"] = ",".join(str(d) for d in spec.shape)
            meta[f"{kind}.{spec.name}.dtype"] = entry["dtype"]
            meta[f"{kind}.{spec.name}.units"] = spec.units
            meta[f"{kind}.{spec.name}.description"] = spec.description
    meta["io"] = json.dumps(io)
    config = checkpoint.get("config") or {}
    if "rate_hz" in config:  # a model on a sample stream (not on time-normalised strides)
        meta["sample_rate_hz"] = config["rate_hz"]
    store = checkpoint.get("store") or {}
    for key in ("url", "version_url", "version", "fingerprint", "created", "n_strides"):
        meta[f"store.{key}"] = store.get(key)
    if checkpoint.get("settings") is not None:
        meta["training"] = json.dumps(nan_to_null(checkpoint["settings"]))
    return {key: str(value) for key, value in meta.items() if value is not None}


def tensor_axes(name: str, shape: tuple[str | int, ...]) -> tuple[str, ...]:
    """The axis names of a reference model's tensor (TensorSpec gives sizes only); an unknown
    tensor gets "batch", "axis1", "axis2", ..."""
    known = TENSOR_AXES.get(name)
    if known is None and name.removeprefix("new_").startswith("state_"):
        known = STATE_AXES
    if known is not None and len(known) == len(shape):
        return known
    return ("batch", *(f"axis{i}" for i in range(1, len(shape))))


def _export(
    deployable: Deployable, examples: tuple[torch.Tensor, ...], path: Path, batch: Any
) -> None:
    torch.onnx.export(
        deployable.module,
        examples,
        str(path),
        input_names=[spec.name for spec in deployable.inputs],
        output_names=[spec.name for spec in deployable.outputs],
        opset_version=OPSET,
        dynamo=True,
        dynamic_shapes=tuple({0: batch} for _ in deployable.inputs),
        external_data=False,
        verbose=False,
    )


def session(path: Path, threads: int = 1) -> ort.InferenceSession:
    """An onnxruntime CPU session; one thread by default, as in a control loop."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@torch.no_grad()
def check_parity(deployable: Deployable, path: Path, seed: int = 0) -> dict[str, Any]:
    """Max abs difference between onnxruntime and PyTorch on seeded inputs of several batch
    sizes (inputs scaled to the range of joint angles)."""
    runtime = session(path)
    torch.manual_seed(seed)
    worst = 0.0
    for batch in PARITY_BATCHES:
        inputs = [30.0 * spec.example(batch) for spec in deployable.inputs]
        expected = deployable.module(*inputs)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = runtime.run(
            None, {spec.name: x.numpy() for spec, x in zip(deployable.inputs, inputs, strict=True)}
        )
        for e, g in zip(expected, got, strict=True):
            if g.shape != tuple(e.shape):
                raise TrainingError(f"{path}: output shape {g.shape} != PyTorch's {tuple(e.shape)}")
            worst = max(worst, float(np.max(np.abs(e.numpy() - g))))
    return {
        "max_abs_diff": worst,
        "batch_sizes": list(PARITY_BATCHES),
        "tolerance": PARITY_TOLERANCE,
    }


def onnx_operators(path: Path) -> set[str]:
    """Operator types in the graph, its functions and subgraphs."""
    model = onnx.load(str(path))
    found: set[str] = set()

    def visit(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            found.add(node.op_type)
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    visit(attribute.g)

    visit(model.graph)
    for function in model.functions:
        found.update(node.op_type for node in function.node)
    return found


@dataclass(frozen=True)
class Step:
    """The streaming step of a window model: ``inputs`` are the newest sample then the states,
    ``outputs`` the model's output then the new states (batch 1, fixed)."""

    module: StreamingTCN | StreamingMean
    window: int  # the windowed model's samples (its receptive field)
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


def step_form(deployable: Deployable) -> Step | None:
    """The streaming step of a window model (one input ``(batch, channels, window)``); None
    for a network that maps one sample's inputs to its outputs already (it is its own step)."""
    module = step_model(deployable.module)
    if module is None:
        return None
    (window_spec,), (output,) = deployable.inputs, deployable.outputs
    window = int(window_spec.shape[-1])
    sample = TensorSpec(
        window_spec.name,
        (1, *window_spec.shape[1:-1], 1),
        window_spec.units,
        "the newest sample only, one per call (the earlier ones are in the state)",
    )
    names = state_names(module)
    shapes = module.state_shapes(1)
    states = [
        TensorSpec(
            name,
            shape,
            "1",
            f"last {shape[2]} inputs of block {i} (standardised); zeros at the start of a "
            f"stream, then the previous call's new_{name}",
        )
        for i, (name, shape) in enumerate(zip(names, shapes, strict=True))
    ]
    new_states = [
        TensorSpec(f"new_{s.name}", s.shape, s.units, f"{s.name} for the next call") for s in states
    ]
    now = TensorSpec(output.name, (1, *output.shape[1:]), output.units, output.description)
    return Step(module.eval(), window, [sample, *states], [now, *new_states])


def _step_pointer(step: Step | None) -> dict[str, str]:
    """Where a control loop's per-sample step is (metadata of ``model.onnx``)."""
    if step is None:
        return {"step": ONNX_NAME, "step.kind": "stateless: this file at batch 1 is the step"}
    return {"step": STEP_NAME, "step.kind": "streaming: one new sample and the state per call"}


def step_usage(step: Step) -> str:
    """How to call the streaming step, in one paragraph (metadata and manifest)."""
    sample, *states = step.inputs
    output = step.outputs[0]
    return (
        f"Call once per new sample, in time order: {sample.name} {list(sample.shape)} is the "
        f"newest sample; each of {', '.join(s.name for s in states)} is the new_<name> output of "
        f"the previous call, zeros of its shape at the start of a stream. {output.name} equals "
        f"{ONNX_NAME} over the last {step.window} samples once {step.window - 1} samples have "
        f"been fed; the first {step.window - 1} outputs are warm-up (zero padding, not history). "
        "One state per stream; batch 1."
    )


def _write_step(
    checkpoint: dict[str, Any],
    deployable: Deployable,
    step: Step | None,
    folder: Path,
    out: Path,
) -> dict[str, Any]:
    """The streaming step beside ``model.onnx`` for a window model, checked against it over a
    long sequence; the manifest's ``step`` entry (for other models: ``model.onnx`` itself)."""
    if step is None:
        return {"file": ONNX_NAME, "kind": "stateless", "usage": _step_pointer(None)["step.kind"]}
    path = folder / STEP_NAME
    state = [
        {"input": s.name, "output": f"new_{s.name}", "shape": list(s.shape), "initial": "zeros"}
        for s in step.inputs[1:]
    ]
    metadata = onnx_metadata(
        checkpoint, Deployable(step.module, step.inputs, step.outputs, deployable.summary)
    ) | {
        "batch_axis": "0 (fixed: 1, one stream per state)",
        "step": STEP_NAME,
        "step.kind": "streaming",
        "streaming": step_usage(step),
        "windowed": ONNX_NAME,
        "receptive_field": str(step.window),
        "state": json.dumps(state),
        "state.initial": "zeros",
    }
    export_streaming_onnx(step.module, str(path), step.inputs[0].name, step.outputs[0].name)
    _annotate(path, metadata, f"{deployable.summary}; streaming step")
    parity = check_step_parity(folder / ONNX_NAME, path, step.window)
    if parity["max_abs_diff"] > PARITY_TOLERANCE:
        raise TrainingError(
            f"{out / STEP_NAME}: the streaming step differs from {ONNX_NAME} by "
            f"{parity['max_abs_diff']:.3g} (> {PARITY_TOLERANCE:g}) over "
            f"{parity['samples_compared']} samples after the first window"
        )
    operators = onnx_operators(path)
    return {
        "file": STEP_NAME,
        "kind": "streaming",
        "usage": step_usage(step),
        "inputs": [spec.as_dict() for spec in step.inputs],
        "outputs": [spec.as_dict() for spec in step.outputs],
        "state": state,
        "receptive_field": step.window,
        "opset": OPSET,
        "operators": sorted(operators),
        "operators_outside_tensorrt_parser": sorted(operators - tensorrt.ONNX_PARSER_OPS),
        "parity": parity,
    }


def check_step_parity(windowed: Path, step: Path, window: int, seed: int = 0) -> dict[str, Any]:
    """Max abs difference between the streaming step fed a seeded sequence of
    ``2 * window + STEP_PARITY_EXTRA`` samples one at a time from zero states, and the windowed
    ONNX over the last ``window`` samples at each sample after the first window (both in
    onnxruntime, inputs scaled to the range of joint angles)."""
    stepper, whole = session(step), session(windowed)
    sample, *states = stepper.get_inputs()
    length = 2 * window + STEP_PARITY_EXTRA
    x = (30.0 * np.random.default_rng(seed).standard_normal((1, sample.shape[1], length))).astype(
        np.float32
    )
    memory = [np.zeros(s.shape, np.float32) for s in states]
    names = [s.name for s in states]
    outputs = []
    for t in range(length):
        output, *memory = stepper.run(
            None, {sample.name: x[:, :, t : t + 1], **dict(zip(names, memory, strict=True))}
        )
        outputs.append(output[0])
    windows = np.lib.stride_tricks.sliding_window_view(x[0], window, axis=1)  # (c, n, window)
    (expected,) = whole.run(None, {whole.get_inputs()[0].name: windows.transpose(1, 0, 2).copy()})
    got = np.array(outputs[window - 1 :])
    if got.shape != expected.shape:
        raise TrainingError(f"{step}: output shape {got.shape[1:]} != {expected.shape[1:]}")
    return {
        "against": ONNX_NAME,
        "max_abs_diff": float(np.max(np.abs(got - expected))),
        "samples": length,
        "samples_compared": len(got),
        "tolerance": PARITY_TOLERANCE,
    }

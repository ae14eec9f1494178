"""A trained run as a release folder: ONNX (dynamic batch) checked against PyTorch with
onnxruntime, TensorRT engines where TensorRT and a GPU are present, and the manifest.

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
from builder.training.reference import Deployable, reference_model
from builder.training.run import FIGURE, METRICS, load_checkpoint

ONNX_NAME = "model.onnx"
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
    write_onnx(deployable, onnx_path, onnx_metadata(checkpoint, deployable))
    parity = check_parity(deployable, onnx_path)
    if parity["max_abs_diff"] > PARITY_TOLERANCE:
        raise TrainingError(
            f"{out / ONNX_NAME}: onnxruntime differs from PyTorch by "
            f"{parity['max_abs_diff']:.3g} (> {PARITY_TOLERANCE:g})"
        )
    unsupported = sorted(onnx_operators(onnx_path) - tensorrt.ONNX_PARSER_OPS)
    engine_report = (
        tensorrt.build_engines(onnx_path, deployable.inputs, folder)
        if engines
        else {"built": [], "skipped": "not asked for (--no-engines)"}
    )
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
    """What an export writes into ``out``: the fixed names, and the ONNX and engine files its
    manifest names (engines exist only where TensorRT ran)."""
    names = {MARKER, MANIFEST, ONNX_NAME, METRICS, FIGURE}
    try:
        manifest = json.loads((out / MANIFEST).read_bytes())
        names.add(str(manifest["onnx"]["file"]))
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
    model = onnx.load(str(path))
    if metadata:
        exporter = {prop.key: prop.value for prop in model.metadata_props}  # kept, ours win
        onnx.helper.set_model_props(model, exporter | dict(metadata))
        model.doc_string = deployable.summary
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

"""Exported ONNX files carry what an integrator needs in ``metadata_props``: the model, each
input's and output's layout (axis names, shape, dtype, units, meaning), the store build it was
trained on and the builder versions; onnxruntime shows them in ``custom_metadata_map``.

The checkpoints here hold untrained weights (no store, no training): export needs no more."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers import import_optional

torch = import_optional("torch")
onnx = import_optional("onnx")
ort = import_optional("onnxruntime")

from builder._version import __version__  # noqa: E402
from builder.training.export import METADATA_FORMAT, PARITY_TOLERANCE, export  # noqa: E402
from builder.training.nets import CausalTCN, FeatureMLP, mlp  # noqa: E402

STORE = {
    "url": "s3://lab/gait.zarr",
    "version_url": "s3://lab/gait.zarr.versions/v0003",
    "version": "v0003",
    "fingerprint": "f" * 64,
    "created": "2026-01-02T03:04:05+00:00",
    "n_strides": 1234,
}
SETTINGS = {"seed": 0, "epochs": 4, "batch_strides": 64, "learning_rate": 0.001, "query": {}}


def gait_phase_checkpoint() -> dict[str, Any]:
    n = 20
    net = FeatureMLP([0.0] * n, [1.0] * n, mlp([n, 8, 8, 4]))
    return {
        "model": "gait-phase",
        "config": {"hidden": 8, "features": n, "phases": ["a", "b", "c", "d"]},
        "weights": {"classifier": net.state_dict()},
    }


def hip_moment_checkpoint() -> dict[str, Any]:
    config = {
        "rate_hz": 100.0,
        "channels": 4,
        "kernel": 3,
        "dilations": [1, 2],
        "receptive_field": 7,
        "modes": {"S01": ["walk"]},
    }
    net = CausalTCN([0.0], [1.0], 1, config["channels"], config["kernel"], config["dilations"])
    return {"model": "hip-moment", "config": config, "weights": {"S01|walk": net.state_dict()}}


def exported(tmp_path: Path, checkpoint: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    run = tmp_path / "run"
    run.mkdir()
    torch.save(checkpoint, run / "checkpoint.pt")
    result = export(run, engines=False)
    return result.folder / "model.onnx", result.manifest


def metadata(path: Path) -> dict[str, str]:
    return {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props}


def test_a_trained_run_carries_model_layout_units_store_and_versions(tmp_path: Path) -> None:
    trained = gait_phase_checkpoint() | {
        "store": STORE,
        "settings": SETTINGS,
        "builder_version": "0.0.9",
        "created": "2026-02-03T04:05:06+00:00",
    }
    path, manifest = exported(tmp_path, trained)
    assert manifest["onnx"]["parity"]["max_abs_diff"] < PARITY_TOLERANCE  # still checked
    meta = metadata(path)
    (spec,) = manifest["inputs"]
    (out,) = manifest["outputs"]
    assert spec["name"] == "features" and out["name"] == "phase_probability"
    expected = {
        "format": METADATA_FORMAT,
        "model": "gait-phase",
        "summary": manifest["summary"],
        "inputs": "features",
        "outputs": "phase_probability",
        "batch_axis": "0 (dynamic, 1 to 4096)",
        "builder_version": "0.0.9",
        "exported_by": f"gait-builder {__version__}",
        "trained": "2026-02-03T04:05:06+00:00",
        "opset": str(manifest["onnx"]["opset"]),
        "input.features.dims": "batch,feature",
        "input.features.shape": f"batch,{spec['shape'][1]}",
        "input.features.dtype": "float32",
        "input.features.units": spec["units"],
        "input.features.description": spec["description"],
        "output.phase_probability.dims": "batch,phase",
        "output.phase_probability.shape": "batch,4",
        "output.phase_probability.dtype": "float32",
        "output.phase_probability.units": "1",
        "output.phase_probability.description": "a, b, c, d",
        "store.url": STORE["url"],
        "store.version_url": STORE["version_url"],
        "store.version": "v0003",
        "store.fingerprint": STORE["fingerprint"],
        "store.created": STORE["created"],
        "store.n_strides": "1234",
        "training": json.dumps(SETTINGS),
    }
    for key, value in expected.items():
        assert meta.get(key) == value, key
    assert "sample_rate_hz" not in meta  # strides, not a sample stream
    io = json.loads(meta["io"])
    assert io["inputs"] == [spec | {"dims": ["batch", "feature"]}]
    assert io["outputs"] == [out | {"dims": ["batch", "phase"]}]
    assert spec["units"] and out["units"]

    # onnxruntime exposes the same pairs, and the summary as the model's description
    model = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
    assert {k: model.custom_metadata_map[k] for k in expected} == expected
    assert model.description == manifest["summary"]


def test_the_layout_matches_the_graph_and_names_a_windows_axes(tmp_path: Path) -> None:
    """The hip-moment TCN takes (batch, channel, time) windows at a fixed sample rate."""
    path, manifest = exported(tmp_path, hip_moment_checkpoint())
    meta = metadata(path)
    assert meta["input.hip_angle.dims"] == "batch,channel,time"
    assert meta["input.hip_angle.shape"] == "batch,1,7"
    assert meta["input.hip_angle.units"] == "deg"
    assert meta["output.hip_moment.dims"] == "batch,channel"
    assert meta["output.hip_moment.units"] == "N.m/kg"
    assert meta["sample_rate_hz"] == "100.0"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for kind, tensors in (("input", session.get_inputs()), ("output", session.get_outputs())):
        assert meta[f"{kind}s"] == ",".join(t.name for t in tensors)
        for tensor in tensors:
            shape = meta[f"{kind}.{tensor.name}.shape"].split(",")
            assert len(meta[f"{kind}.{tensor.name}.dims"].split(",")) == len(tensor.shape)
            assert [str(d) for d in tensor.shape[1:]] == shape[1:]  # batch is symbolic
    # a checkpoint without the store it came from: no store keys rather than empty ones
    assert not [key for key in meta if key.startswith("store.")]
    assert "training" not in meta and manifest["store"] is None

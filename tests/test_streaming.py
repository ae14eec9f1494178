"""The streaming form of the hip-moment TCN (builder.training.streaming): one new sample per
step, equal to the windowed model on a long sequence, in PyTorch and as a stateless ONNX step."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from helpers import import_optional

torch = import_optional("torch")

from builder.training.nets import CausalTCN, LastSample, MeanOf  # noqa: E402
from builder.training.streaming import StreamingMean, StreamingTCN, streaming  # noqa: E402

DILATIONS = (1, 2, 4, 8, 16, 32)
STEPS = 1500  # several receptive fields (127 samples)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Thousands of one-sample steps: tiny ops that a second thread only slows down (on a
    busy machine, 50x: the threads wait for each other at every op)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tcn(seed: int, inputs: int = 1, outputs: int = 1) -> CausalTCN:
    torch.manual_seed(seed)
    mean = [float(v) for v in 10 + 5 * torch.rand(inputs)]
    std = [float(v) for v in 15 + 10 * torch.rand(inputs)]
    return CausalTCN(mean, std, outputs, 16, 3, DILATIONS).eval()


def _steps(model: StreamingTCN | StreamingMean, x: torch.Tensor) -> np.ndarray:
    states = model.initial_state(1)
    out = []
    with torch.no_grad():
        for t in range(x.shape[2]):
            y, *states = model(x[:, :, t : t + 1], *states)
            out.append(y[0].numpy())
    return np.array(out)  # (time, outputs)


@pytest.mark.parametrize("members", [1, 3])
def test_streaming_equals_the_windowed_model_on_a_long_sequence(members: int) -> None:
    nets = [_tcn(seed, inputs=2, outputs=2) for seed in range(members)]
    windowed = nets[0] if members == 1 else MeanOf(nets).eval()
    stream = streaming(windowed)
    assert isinstance(stream, StreamingTCN if members == 1 else StreamingMean)
    torch.manual_seed(7)
    x = 20 * torch.randn(1, 2, STEPS) + 12
    streamed = _steps(stream, x)
    with torch.no_grad():
        whole = windowed(x)[0].numpy().T  # zero-padded at the start, as the zero states
        rf = nets[0].receptive_field
        windows = x[0].unfold(1, rf, 1).transpose(0, 1)  # (STEPS - rf + 1, channels, rf)
        last = LastSample(windowed)(windows).numpy()  # one batch: every window at once
    scale = float(np.abs(whole).max())
    np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-5 * scale)
    np.testing.assert_allclose(streamed[rf - 1 :], last, rtol=0, atol=1e-5 * scale)


def test_state_is_the_last_inputs_of_each_block() -> None:
    stream = streaming(_tcn(0))
    shapes = stream.state_shapes(1)
    assert shapes == [(1, 1, 2)] + [(1, 16, 2 * d) for d in DILATIONS[1:]]


def test_only_tcns_have_a_streaming_form() -> None:
    with pytest.raises(TypeError, match="no streaming form of Linear"):
        streaming(torch.nn.Linear(2, 2))


def test_the_onnx_step_is_stateless_and_equal_to_pytorch(tmp_path: Path) -> None:
    import_optional("onnx")
    ort = import_optional("onnxruntime")
    from builder.training.streaming import export_streaming_onnx

    stream = streaming(MeanOf([_tcn(seed) for seed in range(3)]).eval())
    path = tmp_path / "step.onnx"
    export_streaming_onnx(stream, str(path))
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    n = len(stream.state_shapes(1))
    assert inputs == ["sample", *(f"state_{i}" for i in range(n))]
    assert outputs == ["output", *(f"new_state_{i}" for i in range(n))]
    torch.manual_seed(3)
    x = 20 * torch.randn(1, 1, 600) + 12
    states = [s.numpy() for s in stream.initial_state(1)]
    got = []
    for t in range(x.shape[2]):
        output, *states = session.run(
            None,
            {"sample": x[:, :, t : t + 1].numpy(), **dict(zip(inputs[1:], states, strict=True))},
        )
        got.append(output[0])
    expected = _steps(stream, x)
    np.testing.assert_allclose(
        np.array(got), expected, rtol=0, atol=1e-5 * float(np.abs(expected).max())
    )


def test_a_mean_of_one_streams_as_that_member_and_only_windows_get_a_step() -> None:
    from builder.training.streaming import step_model

    net = _tcn(0)
    assert isinstance(streaming(MeanOf([net])), StreamingTCN)
    assert isinstance(step_model(LastSample(MeanOf([net, _tcn(1)]))), StreamingMean)
    assert step_model(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Softmax(-1))) is None


# --- `builder export` ships the step (issue 13): checked at export, listed in the release ---

MODES = ["walk", "ramp_ascent", "ramp_descent"]


@pytest.fixture(scope="module")
def hip_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hip-moment run of the reference architecture, three untrained mode models."""
    from builder.training.reference.hip_moment import run_config

    config = run_config({"S01": MODES})
    weights = {f"S01|{mode}": _tcn(seed).state_dict() for seed, mode in enumerate(MODES)}
    run = tmp_path_factory.mktemp("hip-run")
    torch.save({"model": "hip-moment", "config": config, "weights": weights}, run / "checkpoint.pt")
    return run


@pytest.fixture(scope="module")
def hip_release(hip_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    import_optional("onnxruntime")
    from builder.training.export import export

    exported = export(hip_run, tmp_path_factory.mktemp("hip") / "release", engines=False)
    return exported.folder, exported.manifest


def _metadata(path: Path) -> dict[str, str]:
    onnx = import_optional("onnx")
    return {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props}


def test_export_ships_the_streaming_step_beside_the_windowed_model(
    hip_release: tuple[Path, dict],
) -> None:
    from builder.training import tensorrt
    from builder.training.export import PARITY_TOLERANCE, onnx_operators

    folder, manifest = hip_release
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".onnx") == [
        "model.onnx", "model.step.onnx"
    ]  # fmt: skip
    step = manifest["step"]
    assert step["file"] == "model.step.onnx" and step["kind"] == "streaming"
    assert step["receptive_field"] == 127
    assert [s["shape"] for s in step["state"]] == [[1, 3, 2]] + [
        [1, 48, 2 * d] for d in DILATIONS[1:]
    ]
    assert {s["initial"] for s in step["state"]} == {"zeros"}
    assert [s["name"] for s in step["inputs"]] == [
        "hip_angle",
        *(s["input"] for s in step["state"]),
    ]
    assert [s["name"] for s in step["outputs"]] == [
        "hip_moment",
        *(s["output"] for s in step["state"]),
    ]
    parity = step["parity"]
    assert parity["against"] == "model.onnx" and parity["samples"] >= 2 * 127 + 500
    assert parity["samples_compared"] == parity["samples"] - 126
    assert parity["max_abs_diff"] <= PARITY_TOLERANCE == parity["tolerance"]
    # every operator of the step is one TensorRT's ONNX parser takes
    assert onnx_operators(folder / "model.step.onnx") <= tensorrt.ONNX_PARSER_OPS
    assert step["operators_outside_tensorrt_parser"] == []
    assert step["operators"] == sorted(onnx_operators(folder / "model.step.onnx"))

    # the files point at each other; the step says how to call it
    assert _metadata(folder / "model.onnx")["step"] == "model.step.onnx"
    meta = _metadata(folder / "model.step.onnx")
    assert meta["model"] == "hip-moment" and meta["step.kind"] == "streaming"
    assert meta["windowed"] == "model.onnx" and meta["receptive_field"] == "127"
    assert meta["state.initial"] == "zeros" and json.loads(meta["state"]) == step["state"]
    assert meta["streaming"] == step["usage"] and "zeros of its shape" in meta["streaming"]
    assert meta["input.hip_angle.shape"] == "1,1,1" and meta["input.hip_angle.units"] == "deg"
    assert meta["input.state_5.dims"] == "batch,channel,time"
    assert meta["output.hip_moment.units"] == "N.m/kg" and meta["sample_rate_hz"] == "100.0"


def test_the_step_run_as_its_metadata_says_equals_the_windowed_file(
    hip_release: tuple[Path, dict],
) -> None:
    """An integrator's loop, from the metadata only: zeros, then feed the new states back."""
    ort = import_optional("onnxruntime")
    folder, _ = hip_release
    step = ort.InferenceSession(str(folder / "model.step.onnx"), providers=["CPUExecutionProvider"])
    whole = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    meta = step.get_modelmeta().custom_metadata_map
    state = {s["input"]: np.zeros(s["shape"], np.float32) for s in json.loads(meta["state"])}
    back = {s["output"]: s["input"] for s in json.loads(meta["state"])}
    window = int(meta["receptive_field"])
    x = (15 * np.random.default_rng(5).standard_normal((1, 1, 3 * window)) + 10).astype(np.float32)
    outputs = []
    for t in range(x.shape[2]):
        got = step.run(None, {"hip_angle": x[:, :, t : t + 1], **state})
        named = dict(zip((o.name for o in step.get_outputs()), got, strict=True))
        state = {back[name]: value for name, value in named.items() if name in back}
        outputs.append(named["hip_moment"][0])
    windows = np.stack([x[0, :, t - window + 1 : t + 1] for t in range(window - 1, x.shape[2])])
    (expected,) = whole.run(None, {"hip_angle": windows})
    np.testing.assert_allclose(np.array(outputs[window - 1 :]), expected, rtol=0, atol=1e-4)


def test_a_release_lists_the_step_with_its_checksum_and_pull_verifies_it(
    hip_release: tuple[Path, dict], tmp_path: Path
) -> None:
    import hashlib

    from builder.errors import TrainingError
    from builder.training import releases

    folder, _ = hip_release
    url = str(tmp_path / "bucket")
    pushed = releases.push(folder, url).manifest
    assert pushed is not None
    data = (folder / "model.step.onnx").read_bytes()
    assert pushed["files"]["model.step.onnx"] == {
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
    }
    pulled = releases.pull(url, "hip-moment", tmp_path / "got")
    assert (pulled / "model.step.onnx").read_bytes() == data
    # an altered step in the bucket is refused
    (tmp_path / "bucket" / "hip-moment" / "v1" / "model.step.onnx").write_bytes(data[:-1] + b"\0")
    with pytest.raises(TrainingError, match=r"model\.step\.onnx does not match its sha256"):
        releases.pull(url, "hip-moment", tmp_path / "again")
    # a release folder whose manifest names a step it does not hold is not pushed
    partial = tmp_path / "partial"
    shutil.copytree(folder, partial)
    (partial / "model.step.onnx").unlink()
    with pytest.raises(TrainingError, match=r"names model\.step\.onnx, which the folder lacks"):
        releases.push(partial, url)


@pytest.mark.parametrize("corruption", ["weights", "state"])
def test_a_step_unlike_the_windowed_model_fails_the_export(
    hip_run: Path,
    hip_release: tuple[Path, dict],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    corruption: str,
) -> None:
    """A wrong tap deep in the history (the oldest input of the dilation-32 block) or a state
    that is never updated: the export stops naming the step, the earlier release kept."""
    import copy

    from builder.errors import TrainingError
    from builder.training import export as export_module
    from builder.training.streaming import step_model

    out = tmp_path / "release"
    shutil.copytree(hip_release[0], out)  # an earlier export, marker included
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def corrupted(module: torch.nn.Module) -> StreamingTCN | StreamingMean | None:
        stream = copy.deepcopy(step_model(module))
        assert stream is not None
        if corruption == "weights":
            with torch.no_grad():
                stream.blocks[-1].weight[:, 0::3] += 0.05  # tap 0 of each input
        else:
            for block in stream.blocks:
                block.forward = lambda x, state, b=block: (type(b).forward(b, x, state)[0], state)
        return stream

    monkeypatch.setattr(export_module, "step_model", corrupted)
    with pytest.raises(TrainingError) as info:
        export_module.export(hip_run, out, engines=False)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        f"{out / 'model.step.onnx'}: the streaming step differs from model.onnx by "
    )
    assert "over 628 samples after the first window" in message
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_models_without_a_window_are_their_own_step(
    hip_release: tuple[Path, dict], tmp_path: Path
) -> None:
    """An MLP maps one sample's inputs to its outputs: no step file; exporting one into a
    hip-moment release folder removes that release's step."""
    import_optional("onnxruntime")
    from builder.training.export import export
    from builder.training.nets import FeatureMLP, mlp

    out = tmp_path / "release"
    shutil.copytree(hip_release[0], out)  # a hip-moment export, marker included
    assert (out / "model.step.onnx").exists()
    run = tmp_path / "mlp"
    run.mkdir()
    net = FeatureMLP([0.0] * 6, [1.0] * 6, mlp([6, 8, 8, 4]))
    config = {"hidden": 8, "features": 6, "phases": ["a", "b", "c", "d"]}
    torch.save(
        {"model": "gait-phase", "config": config, "weights": {"classifier": net.state_dict()}},
        run / "checkpoint.pt",
    )
    manifest = export(run, out, engines=False).manifest
    assert manifest["step"]["file"] == "model.onnx" and manifest["step"]["kind"] == "stateless"
    assert not (out / "model.step.onnx").exists()
    assert _metadata(out / "model.onnx")["step"] == "model.onnx"


def test_the_bound_step_equals_session_run_and_resets(hip_release: tuple[Path, dict]) -> None:
    """builder.training.onnx_step: preallocated buffers, states written where they are read
    next; the same outputs as ``session.run`` with the states fed back by hand."""
    ort = import_optional("onnxruntime")
    from builder.training.onnx_step import BoundStep

    folder, manifest = hip_release
    bound = BoundStep(folder / "model.step.onnx")
    assert list(bound.inputs) == ["hip_angle"] and list(bound.outputs) == ["hip_moment"]
    plain = ort.InferenceSession(
        str(folder / "model.step.onnx"), providers=["CPUExecutionProvider"]
    )
    x = (15 * np.random.default_rng(2).standard_normal(300) + 10).astype(np.float32)

    def stream() -> list[float]:
        out = []
        for v in x:
            bound.inputs["hip_angle"][...] = v
            out.append(float(bound()["hip_moment"][0, 0]))
        return out

    state = {s["input"]: np.zeros(s["shape"], np.float32) for s in manifest["step"]["state"]}
    expected = []
    for v in x:
        output, *new = plain.run(None, {"hip_angle": np.full((1, 1, 1), v, np.float32), **state})
        state = dict(zip(state, new, strict=True))
        expected.append(float(output[0, 0]))
    assert stream() == expected
    bound.reset()
    assert stream() == expected  # from zero states again
    # the windowed file has no state: one binding, at batch 1
    windowed = BoundStep(folder / "model.onnx")
    assert windowed.inputs["hip_angle"].shape == (1, 1, 127)
    assert windowed()["hip_moment"].shape == (1, 1)

"""The streaming form of the hip-moment TCN (builder.training.streaming): one new sample per
step, equal to the windowed model on a long sequence, in PyTorch and as a stateless ONNX step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import import_optional

torch = import_optional("torch")

from builder.training.nets import CausalTCN, LastSample, MeanOf  # noqa: E402
from builder.training.streaming import StreamingMean, StreamingTCN, streaming  # noqa: E402

DILATIONS = (1, 2, 4, 8, 16, 32)
STEPS = 1500  # several receptive fields (127 samples)


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
        step = LastSample(windowed)
        last = np.array(
            [step(x[:, :, t - rf + 1 : t + 1])[0].numpy() for t in range(rf - 1, STEPS)]
        )
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

"""Streaming form of a causal TCN: one new sample per control step, not a window recomputed.

:class:`CausalTCN` maps a window of the last ``receptive_field`` samples to the current output,
recomputing every layer over the whole window at each step. :class:`StreamingTCN` keeps, for
each dilated block, the last ``(kernel - 1) * dilation`` inputs of that block (its *state*)
and computes only the newest column of every layer: the same arithmetic as the windowed model
at the newest sample (each dilated convolution as one matrix product over its kernel's taps),
with a state of a few thousand floats instead of a window pass. Its
``forward(sample, *states) -> (output, *new_states)`` takes and returns the state explicitly,
so an exported ONNX graph is stateless (the caller feeds the states back), as control loops and
inference runtimes expect.

From zero states it equals :class:`CausalTCN` over the whole sequence at every sample (the
windowed model pads with zeros too), and after ``receptive_field - 1`` samples it equals
:class:`LastSample` over the last ``receptive_field`` samples.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from builder.training.nets import CausalBlock, CausalTCN, LastSample, MeanOf


class _StreamingBlock(nn.Module):
    """One :class:`CausalBlock` on its state: ``(x_t (batch, channels_in), state) -> (y_t,
    new_state)``. The kernel's taps at the newest sample are every ``dilation``-th column of
    ``[state, x_t]``, so the dilated convolution there is one matrix product (``F.linear``:
    a fraction of a convolution call's overhead at one column, in PyTorch and onnxruntime)."""

    skip_weight: torch.Tensor | None  # buffers (nn.Module types its attributes loosely)
    skip_bias: torch.Tensor | None
    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor,
        dilation: int,
        skip: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> None:
        super().__init__()
        channels, self.in_channels, kernel = weight.shape
        # (out, in, kernel) flattened in (in, kernel) order: the order of the taps below
        self.register_buffer("weight", weight.detach().reshape(channels, -1))
        self.register_buffer("bias", bias.detach())
        self.register_buffer("skip_weight", None if skip is None else skip[0].detach()[:, :, 0])
        self.register_buffer("skip_bias", None if skip is None else skip[1].detach())
        self.dilation = dilation
        self.history: int = (kernel - 1) * dilation

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        window = torch.cat([state, x.unsqueeze(2)], dim=2)  # (batch, channels_in, history + 1)
        taps = window[:, :, :: self.dilation].flatten(1)  # the kernel's columns, oldest first
        residual = x if self.skip_weight is None else F.linear(x, self.skip_weight, self.skip_bias)
        y = torch.relu(F.linear(taps, self.weight, self.bias)) + residual
        return y, window[:, :, 1:]


def _block(block: CausalBlock) -> _StreamingBlock:
    conv, skip = block.conv, block.skip
    pair = None if skip is None else (skip.weight, cast(torch.Tensor, skip.bias))
    return _StreamingBlock(conv.weight, cast(torch.Tensor, conv.bias), conv.dilation[0], pair)


class StreamingTCN(nn.Module):
    """A trained :class:`CausalTCN` (its weights shared, not copied) as a step function:
    ``forward(sample (batch, inputs, 1), *states) -> (output (batch, outputs), *states)``."""

    head_weight: torch.Tensor
    head_bias: torch.Tensor

    def __init__(self, tcn: CausalTCN) -> None:
        super().__init__()
        self.inputs = int(tcn.standardize.mean.shape[1])
        self.standardize = tcn.standardize
        self.blocks = nn.ModuleList(_block(cast(CausalBlock, b)) for b in tcn.blocks)
        self.register_buffer("head_weight", tcn.head.weight.detach()[:, :, 0])
        self.register_buffer("head_bias", cast(torch.Tensor, tcn.head.bias).detach())
        self.receptive_field = tcn.receptive_field

    def state_shapes(self, batch: int = 1) -> list[tuple[int, int, int]]:
        return _state_shapes(self.blocks, batch)

    def initial_state(self, batch: int = 1) -> list[torch.Tensor]:
        return [torch.zeros(shape) for shape in self.state_shapes(batch)]

    def forward(self, sample: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.standardize(sample[:, :, 0])
        new_states = []
        for block, state in zip(self.blocks, states, strict=True):
            x, new_state = block(x, state)
            new_states.append(new_state)
        return (F.linear(x, self.head_weight, self.head_bias), *new_states)


def _state_shapes(blocks: nn.ModuleList, batch: int) -> list[tuple[int, int, int]]:
    steps = [cast(_StreamingBlock, b) for b in blocks]
    return [(batch, b.in_channels, b.history) for b in steps]


class StreamingMean(nn.Module):
    """The average of several :class:`CausalTCN` (the ensemble of :class:`MeanOf`) as one
    streaming network: the members' layers side by side in block-diagonal matrices (zero
    between members), so a step runs one graph of the size of one member, not one per member.
    Each block's state holds the members' states side by side along the channel axis."""

    mean: torch.Tensor  # buffers (nn.Module types its attributes as "Tensor | Module")
    std: torch.Tensor
    head_weight: torch.Tensor
    head_bias: torch.Tensor

    def __init__(self, members: Sequence[CausalTCN]) -> None:
        super().__init__()
        n = len(members)
        first = members[0]
        self.members = n
        self.outputs = first.head.out_channels
        self.receptive_field = first.receptive_field
        self.register_buffer("mean", torch.cat([m.standardize.mean[:, :, 0] for m in members], 1))
        self.register_buffer("std", torch.cat([m.standardize.std[:, :, 0] for m in members], 1))
        self.inputs = int(first.standardize.mean.shape[1])
        blocks = []
        for depth in range(len(first.blocks)):
            group = [cast(CausalBlock, m.blocks[depth]) for m in members]
            skips = [b.skip for b in group]
            skip = None
            if skips[0] is not None:
                convs = [cast(nn.Conv1d, k) for k in skips]
                skip = (_block_diagonal([k.weight for k in convs]), _biases(convs))
            weight = _block_diagonal([b.conv.weight for b in group])
            bias = _biases([b.conv for b in group])
            blocks.append(_StreamingBlock(weight, bias, group[0].conv.dilation[0], skip))
        self.blocks = nn.ModuleList(blocks)
        heads = [m.head for m in members]
        self.register_buffer("head_weight", _block_diagonal([h.weight for h in heads])[:, :, 0])
        self.register_buffer("head_bias", _biases(heads))

    def state_shapes(self, batch: int = 1) -> list[tuple[int, int, int]]:
        return _state_shapes(self.blocks, batch)

    def initial_state(self, batch: int = 1) -> list[torch.Tensor]:
        return [torch.zeros(shape) for shape in self.state_shapes(batch)]

    def forward(self, sample: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = (sample[:, :, 0].repeat(1, self.members) - self.mean) / self.std
        new_states = []
        for block, state in zip(self.blocks, states, strict=True):
            x, new_state = block(x, state)
            new_states.append(new_state)
        y = F.linear(x, self.head_weight, self.head_bias).reshape(-1, self.members, self.outputs)
        return (y.mean(dim=1), *new_states)


def _block_diagonal(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """Kernels ``(out, in, kernel)`` of separate members as one ``(n * out, n * in, kernel)``
    acting on the members' channels side by side (zero from one member to another)."""
    taps = range(weights[0].shape[2])
    with torch.no_grad():
        return torch.stack([torch.block_diag(*(w[:, :, j] for w in weights)) for j in taps], 2)


def _biases(convs: Sequence[nn.Conv1d]) -> torch.Tensor:
    return torch.cat([cast(torch.Tensor, c.bias).detach() for c in convs])


def streaming(model: nn.Module) -> StreamingTCN | StreamingMean:
    """The streaming form of a :class:`CausalTCN` or of a :class:`MeanOf` of them (a mean of
    one member is that member: the same numbers without the ensemble's reshapes)."""
    if isinstance(model, CausalTCN):
        return StreamingTCN(model)
    if isinstance(model, MeanOf) and all(isinstance(m, CausalTCN) for m in model.models):
        members = [cast(CausalTCN, m) for m in model.models]
        return StreamingTCN(members[0]) if len(members) == 1 else StreamingMean(members)
    raise TypeError(f"no streaming form of {type(model).__name__} (a CausalTCN or MeanOf them)")


def step_model(module: nn.Module) -> StreamingTCN | StreamingMean | None:
    """The streaming form of a deployable network: a window model (:class:`LastSample`) gets
    one; any other network already maps one sample's inputs to its outputs (None)."""
    if isinstance(module, LastSample):
        return streaming(module.model)
    return None


def state_names(model: StreamingTCN | StreamingMean) -> list[str]:
    """The ONNX step's state inputs; the outputs fed back are ``new_<name>``."""
    return [f"state_{i}" for i in range(len(model.blocks))]


def export_streaming_onnx(
    model: StreamingTCN | StreamingMean, path: str, sample: str = "sample", output: str = "output"
) -> None:
    """``model`` as a stateless ONNX step at batch 1: inputs ``sample`` (1, inputs, 1) and
    ``state_i``, outputs ``output`` (1, outputs) and ``new_state_i`` (fed back at the next
    step; all zeros at the start)."""
    from builder.training.export import OPSET

    names = state_names(model)
    # the exporter logs every torchvision op it cannot register and warns about internals
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (torch.zeros(1, model.inputs, 1), *model.initial_state(1)),
            path,
            input_names=[sample, *names],
            output_names=[output, *(f"new_{n}" for n in names)],
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )

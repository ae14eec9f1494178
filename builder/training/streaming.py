"""Streaming form of a causal TCN: one new sample per control step, not a window recomputed.

:class:`CausalTCN` maps a window of the last ``receptive_field`` samples to the current output,
recomputing every layer over the whole window at each step. :class:`StreamingTCN` keeps, for
each dilated block, the last ``(kernel - 1) * dilation`` inputs of that block (its *state*)
and computes only the newest column of every layer: the same arithmetic as the windowed model
at the newest sample, with a state of a few thousand floats instead of a window pass. Its
``forward(sample, *states) -> (output, *new_states)`` takes and returns the state explicitly,
so an exported ONNX graph is stateless (the caller feeds the states back), as control loops and
inference runtimes expect.

From zero states it equals :class:`CausalTCN` over the whole sequence at every sample (the
windowed model pads with zeros too), and after ``receptive_field - 1`` samples it equals
:class:`LastSample` over the last ``receptive_field`` samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from builder.training.nets import CausalBlock, CausalTCN, MeanOf


class _StreamingBlock(nn.Module):
    """One :class:`CausalBlock` on its state: ``(x_t, state) -> (y_t, new_state)``."""

    def __init__(self, block: CausalBlock) -> None:
        super().__init__()
        self.conv: nn.Conv1d = block.conv
        self.skip: nn.Conv1d | None = block.skip
        self.in_channels: int = block.conv.in_channels
        self.history: int = (block.conv.kernel_size[0] - 1) * block.conv.dilation[0]

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        window = torch.cat([state, x], dim=2)  # (batch, channels_in, history + 1)
        residual = x if self.skip is None else self.skip(x)
        y = torch.relu(self.conv(window)) + residual  # the dilated kernel spans the window
        return y, window[:, :, 1:]


class StreamingTCN(nn.Module):
    """A trained :class:`CausalTCN` (its weights shared, not copied) as a step function:
    ``forward(sample (batch, inputs, 1), *states) -> (output (batch, outputs), *states)``."""

    def __init__(self, tcn: CausalTCN) -> None:
        super().__init__()
        self.inputs = int(tcn.standardize.mean.shape[1])
        self.standardize = tcn.standardize
        self.blocks = nn.ModuleList(_StreamingBlock(cast(CausalBlock, b)) for b in tcn.blocks)
        self.head = tcn.head
        self.receptive_field = tcn.receptive_field

    def state_shapes(self, batch: int = 1) -> list[tuple[int, int, int]]:
        return _state_shapes(self.blocks, batch)

    def initial_state(self, batch: int = 1) -> list[torch.Tensor]:
        return [torch.zeros(shape) for shape in self.state_shapes(batch)]

    def forward(self, sample: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.standardize(sample)
        new_states = []
        for block, state in zip(self.blocks, states, strict=True):
            x, new_state = block(x, state)
            new_states.append(new_state)
        return (self.head(x)[:, :, -1], *new_states)


def _state_shapes(blocks: nn.ModuleList, batch: int) -> list[tuple[int, int, int]]:
    steps = [cast(_StreamingBlock, b) for b in blocks]
    return [(batch, b.in_channels, b.history) for b in steps]


class StreamingMean(nn.Module):
    """The average of several :class:`CausalTCN` (the ensemble of :class:`MeanOf`) as one
    streaming network: the members' layers side by side in grouped convolutions (one group per
    member), so a step runs one graph of the size of one member, not one per member. Each
    block's state holds the members' states side by side along the channel axis."""

    mean: torch.Tensor  # buffers (nn.Module types its attributes as "Tensor | Module")
    std: torch.Tensor

    def __init__(self, members: Sequence[CausalTCN]) -> None:
        super().__init__()
        n = len(members)
        first = members[0]
        self.members = n
        self.outputs = first.head.out_channels
        self.receptive_field = first.receptive_field
        mean = torch.cat([m.standardize.mean for m in members], dim=1)  # (1, n*inputs, 1)
        std = torch.cat([m.standardize.std for m in members], dim=1)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.inputs = int(first.standardize.mean.shape[1])
        depth = range(len(first.blocks))
        blocks = [[cast(CausalBlock, m.blocks[i]) for m in members] for i in depth]
        self.blocks = nn.ModuleList(_StreamingBlock(_grouped_block(group)) for group in blocks)
        self.head = _grouped_conv([m.head for m in members])

    def state_shapes(self, batch: int = 1) -> list[tuple[int, int, int]]:
        return _state_shapes(self.blocks, batch)

    def initial_state(self, batch: int = 1) -> list[torch.Tensor]:
        return [torch.zeros(shape) for shape in self.state_shapes(batch)]

    def forward(self, sample: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = (sample.repeat(1, self.members, 1) - self.mean) / self.std
        new_states = []
        for block, state in zip(self.blocks, states, strict=True):
            x, new_state = block(x, state)
            new_states.append(new_state)
        y = self.head(x)[:, :, -1].reshape(-1, self.members, self.outputs)
        return (y.mean(dim=1), *new_states)


def _grouped_conv(convs: Sequence[nn.Conv1d]) -> nn.Conv1d:
    """Convolutions of the same shape on separate inputs as one grouped convolution."""
    c = convs[0]
    fused = nn.Conv1d(
        c.in_channels * len(convs),
        c.out_channels * len(convs),
        c.kernel_size[0],
        dilation=c.dilation[0],
        groups=len(convs),
    )
    with torch.no_grad():
        fused.weight.copy_(torch.cat([k.weight for k in convs]))
        cast(torch.Tensor, fused.bias).copy_(torch.cat([cast(torch.Tensor, k.bias) for k in convs]))
    return fused


def _grouped_block(blocks: Sequence[CausalBlock]) -> CausalBlock:
    """The members' :class:`CausalBlock` at one depth as one block of grouped convolutions."""
    conv, n = blocks[0].conv, len(blocks)
    size, dilation = conv.kernel_size[0], conv.dilation[0]
    fused = CausalBlock(conv.in_channels * n, conv.out_channels * n, size, dilation)
    fused.conv = _grouped_conv([b.conv for b in blocks])
    skips = [b.skip for b in blocks]
    fused.skip = None if skips[0] is None else _grouped_conv([cast(nn.Conv1d, k) for k in skips])
    return fused


def streaming(model: nn.Module) -> StreamingTCN | StreamingMean:
    """The streaming form of a :class:`CausalTCN` or of a :class:`MeanOf` of them."""
    if isinstance(model, CausalTCN):
        return StreamingTCN(model)
    if isinstance(model, MeanOf) and all(isinstance(m, CausalTCN) for m in model.models):
        return StreamingMean([cast(CausalTCN, m) for m in model.models])
    raise TypeError(f"no streaming form of {type(model).__name__} (a CausalTCN or MeanOf them)")


def export_streaming_onnx(model: StreamingTCN | StreamingMean, path: str) -> None:
    """``model`` as a stateless ONNX step at batch 1: inputs ``sample`` (1, inputs, 1) and
    ``state_i``, outputs ``output`` (1, outputs) and ``new_state_i`` (fed back at the next
    step; all zeros at the start)."""
    from builder.training.export import OPSET

    states = model.initial_state(1)
    names = [f"state_{i}" for i in range(len(states))]
    torch.onnx.export(
        model.eval(),
        (torch.zeros(1, model.inputs, 1), *states),
        path,
        input_names=["sample", *names],
        output_names=["output", *(f"new_{n}" for n in names)],
        opset_version=OPSET,
        dynamo=True,
        external_data=False,
        verbose=False,
    )

"""The networks of the reference models. Each takes and returns physical units (inputs are
standardised inside the network), so an exported engine needs no pre- or post-processing."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn


class Standardize(nn.Module):
    """``(x - mean) / std`` over the feature axis ``dim``, with fixed statistics."""

    mean: torch.Tensor  # buffers (nn.Module types its attributes as "Tensor | Module")
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float], dim: int = -1) -> None:
        super().__init__()
        shape = [1, 1, 1]
        shape[dim] = len(mean)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(shape))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(shape))
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            return (x - self.mean.reshape(1, -1)) / self.std.reshape(1, -1)
        return (x - self.mean) / self.std


class CausalBlock(nn.Module):
    """A dilated convolution padded on the left only (output t sees inputs ≤ t), residual."""

    def __init__(self, channels_in: int, channels: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.pad = nn.ConstantPad1d(((kernel - 1) * dilation, 0), 0.0)
        self.conv = nn.Conv1d(channels_in, channels, kernel, dilation=dilation)
        self.skip = nn.Conv1d(channels_in, channels, 1) if channels_in != channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.skip is None else self.skip(x)
        return torch.relu(self.conv(self.pad(x))) + residual


class CausalTCN(nn.Module):
    """Temporal convolutional network: ``(batch, inputs, time) → (batch, outputs, time)``;
    each output sample depends on the last ``receptive_field`` input samples only."""

    def __init__(
        self,
        input_mean: Sequence[float],
        input_std: Sequence[float],
        outputs: int = 1,
        channels: int = 16,
        kernel: int = 3,
        dilations: Sequence[int] = (1, 2, 4, 8, 16, 32),
    ) -> None:
        super().__init__()
        inputs = len(input_mean)
        self.standardize = Standardize(input_mean, input_std, dim=1)
        self.blocks = nn.Sequential(
            *(
                CausalBlock(inputs if i == 0 else channels, channels, kernel, d)
                for i, d in enumerate(dilations)
            )
        )
        self.head = nn.Conv1d(channels, outputs, 1)
        self.receptive_field = 1 + (kernel - 1) * sum(dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.standardize(x)))


class LastSample(nn.Module):
    """A causal sequence model as a control-loop step: a window of the last
    ``receptive_field`` samples in, the current output out, ``(batch, outputs)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        return self.model(window)[:, :, -1]


class MeanOf(nn.Module):
    """The average of several models' outputs (the K2MUSE mode ensemble)."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        self.models = nn.ModuleList(models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.models]).mean(dim=0)


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers of the given sizes with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class FeatureMLP(nn.Module):
    """Standardised features ``(batch, features)`` through an MLP."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], body: nn.Module) -> None:
        super().__init__()
        self.standardize = Standardize(mean, std)
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.standardize(x))


def torque_based_emg(torque_net: nn.Module, hidden: int, muscles: int) -> nn.Sequential:
    """The torque-based sEMG model: kinematics → joint torques (``torque_net``) → an added
    hidden layer → muscle envelopes."""
    outputs = torque_net.body[-1].out_features  # type: ignore[index,union-attr]
    return nn.Sequential(
        torque_net, nn.Linear(outputs, hidden), nn.ReLU(), nn.Linear(hidden, muscles)
    )

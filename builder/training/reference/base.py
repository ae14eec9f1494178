"""What a reference model gives back: trained weights with their metrics and figure, and the
deployable network with its named, unit-carrying inputs and outputs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
from matplotlib.figure import Figure
from torch import nn

from builder.training.loop import TrainSettings
from builder.training.progress import OnTrainingProgress

Weights = dict[str, dict[str, torch.Tensor]]


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of an engine: ``shape`` names the dynamic batch axis "batch"."""

    name: str
    shape: tuple[str | int, ...]
    units: str
    description: str

    def example(self, batch: int = 2) -> torch.Tensor:
        return torch.randn(*(batch if d == "batch" else int(d) for d in self.shape))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"shape": list(self.shape), "dtype": "float32"}


@dataclass
class Trained:
    config: dict[str, Any]  # what ``deployable`` needs to rebuild the networks
    weights: Weights
    metrics: dict[str, Any]
    figure: Figure
    notes: list[str] = field(default_factory=list)


@dataclass
class Deployable:
    module: nn.Module
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    summary: str


class ReferenceModel(Protocol):
    name: str
    summary: str

    def train(
        self, settings: TrainSettings, on_progress: OnTrainingProgress | None = None
    ) -> Trained: ...

    def deployable(self, config: dict[str, Any], weights: Weights, **choice: Any) -> Deployable: ...

"""What every reference model's training shares: the run's settings, seeding, and the epoch
loop that keeps the weights of the best validation epoch (reporting each epoch to an
:class:`~builder.training.progress.OnTrainingProgress`)."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from builder.training import defaults
from builder.training.data import StoreSource, StrideDataset, StrideQuery, stride_loader
from builder.training.progress import EpochLoss, OnTrainingProgress


@dataclass
class TrainSettings:
    """One training run: where the strides come from and how long to train."""

    source: StoreSource
    query: StrideQuery = field(default_factory=StrideQuery)
    seed: int = defaults.SEED
    epochs: int = defaults.EPOCHS
    batch_strides: int = defaults.BATCH_STRIDES
    learning_rate: float = defaults.LEARNING_RATE
    loader_workers: int = defaults.LOADER_WORKERS
    max_subjects: int | None = None  # a quick run on the first subjects (sha256 order)


def seed_everything(seed: int) -> None:
    """Same seed, same weights and batches: Python, NumPy and PyTorch generators, and
    deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


Batches = Callable[[], Iterable[Any]]


def fit(
    model: nn.Module,
    train_batches: Batches,
    validation_batches: Batches,
    loss: Callable[[nn.Module, Any], torch.Tensor],
    *,
    epochs: int,
    learning_rate: float,
    on_progress: OnTrainingProgress | None,
    stage: str,
    parameters: Iterable[nn.Parameter] | None = None,
) -> float:
    """Train ``model`` with Adam for ``epochs``; leave it with the weights of the epoch of
    lowest validation loss and return that loss. ``*_batches`` return a fresh iterable per
    epoch; ``loss(model, batch)`` is a mean over the batch's valid samples. Each epoch is
    a step of ``stage``."""
    optimiser = torch.optim.Adam(
        list(parameters) if parameters is not None else model.parameters(), lr=learning_rate
    )
    best_loss, best_state = float("inf"), copy.deepcopy(model.state_dict())
    if on_progress is not None:
        on_progress(stage, 0, epochs)
    for epoch in range(epochs):
        model.train()
        for batch in train_batches():
            optimiser.zero_grad()
            value = loss(model, batch)
            if value.requires_grad:
                value.backward()
                optimiser.step()
        validation = evaluate_loss(model, validation_batches(), loss)
        if validation < best_loss:
            best_loss, best_state = validation, copy.deepcopy(model.state_dict())
        if on_progress is not None:
            on_progress(stage, epoch + 1, epochs, EpochLoss(validation, best_loss))
    model.load_state_dict(best_state)
    model.eval()
    return best_loss


@torch.no_grad()
def evaluate_loss(
    model: nn.Module, batches: Iterable[Any], loss: Callable[[nn.Module, Any], torch.Tensor]
) -> float:
    model.eval()
    values = [float(loss(model, batch)) for batch in batches]
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("inf")


def masked_mse(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the entries where ``mask`` (broadcast to the values) is true."""
    mask = mask.expand_as(target)
    if not mask.any():
        return torch.tensor(float("nan"))
    return ((predicted - target)[mask] ** 2).mean()


def stride_batches(
    settings: TrainSettings, indices: np.ndarray, signals: tuple[str, ...], epoch_seed: int
) -> Batches:
    """Chunk-shuffled batches of the strides ``indices`` (cached in RAM after the first
    epoch), in a new order each epoch."""
    dataset = StrideDataset(settings.source, indices, signals, cache=True)
    loader = stride_loader(
        dataset,
        settings.batch_strides,
        seed=settings.seed + epoch_seed,
        num_workers=settings.loader_workers,
    )
    epoch = iter(range(1_000_000))

    def batches() -> Iterable[Any]:
        loader.batch_sampler.set_epoch(next(epoch))  # type: ignore[union-attr]
        return loader

    return batches

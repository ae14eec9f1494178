"""Shared by the per-sample reference models (sEMG, gait phase): the patient-wise split of the
query's strides and feature statistics from the training part."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from builder.training.data import read_strides, split_strides, subject_ids
from builder.training.loop import TrainSettings

STATISTICS_STRIDES = 2000  # strides read for the standardisation statistics


@dataclass
class StrideSplit:
    table: pd.DataFrame
    durations_s: torch.Tensor  # of every stride in the store, float32
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray

    def durations(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.durations_s[batch["stride"]]

    def counts(self) -> dict[str, int]:
        people = pd.Series(subject_ids(self.table))
        return {
            f"{name}_{what}": int(n)
            for name, part in (
                ("train", self.train),
                ("validation", self.validation),
                ("test", self.test),
            )
            for what, n in (("strides", len(part)), ("subjects", people.iloc[part].nunique()))
        }


def split_query(settings: TrainSettings, required: np.ndarray | None = None) -> StrideSplit:
    """The strides of ``settings.query`` (and ``required``, a bool per stride), split by
    patient into 70 / 15 / 15 %."""
    table = settings.source.table()
    selected = settings.query.select(table, settings.source.masks())
    if required is not None:
        selected = selected[required[selected]]
    if len(selected) == 0:
        raise ValueError("no strides match the query")
    train, validation, test = split_strides(
        table, selected, seed=settings.seed, max_subjects=settings.max_subjects
    )
    durations = torch.from_numpy(table["duration_s"].to_numpy(np.float32))
    return StrideSplit(table, durations, train, validation, test)


def read_batch(
    settings: TrainSettings, indices: np.ndarray, signals: tuple[str, ...]
) -> dict[str, torch.Tensor]:
    """Up to ``STATISTICS_STRIDES`` of ``indices`` (a seeded sample) as one batch."""
    rng = np.random.default_rng(settings.seed)
    chosen = np.sort(rng.permutation(indices)[:STATISTICS_STRIDES])
    return read_strides(settings.source, chosen, signals)


def feature_statistics(features: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-feature mean and standard deviation over every axis but the last."""
    flat = features.reshape(-1, features.shape[-1]).double()
    std = flat.std(dim=0).clamp_min(1e-6)
    return flat.mean(dim=0).tolist(), std.tolist()

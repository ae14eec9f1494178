"""How training tells its caller how far it is, without drawing anything itself (importable
without PyTorch, like :mod:`builder.pipeline.progress`).

A run reports stages: the epochs of each network it fits, and for models trained in several
parts (hip-moment: one per subject and mode) a stage counting those parts. The command line
draws a bar per stage; a library caller passes its own callback, or none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class EpochLoss:
    """After an epoch: its validation loss and the lowest validation loss of the stage so far
    (the weights the fit keeps)."""

    validation: float
    best: float


class OnTrainingProgress(Protocol):
    """Called with ``done == 0`` when a stage of ``total`` steps starts and after each step;
    the stage is over when ``done == total``. A stage's name is unique within a run (stages
    can overlap: a part's epochs run inside the stage counting the parts). ``loss`` comes
    after each epoch of a fit, None otherwise."""

    def __call__(
        self, stage: str, done: int, total: int, loss: EpochLoss | None = None
    ) -> None: ...

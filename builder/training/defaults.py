"""What the command line needs from training, importable without PyTorch: the reference models'
names (``reference.MODELS`` holds the models) and a run's defaults (``loop.TrainSettings``
uses them), so ``builder train --help`` shows them on machines without the train extra too."""

from __future__ import annotations

MODEL_NAMES: tuple[str, ...] = ("hip-moment", "emg-torque", "gait-phase")

SEED = 0
EPOCHS = 60
BATCH_STRIDES = 32
LEARNING_RATE = 3e-3
LOADER_WORKERS = 0  # DataLoader worker processes

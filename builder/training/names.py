"""The reference models' names, importable without PyTorch: the command line offers them (train,
engines pull) on machines without the train extra too. ``reference.MODELS`` holds the models."""

from __future__ import annotations

MODEL_NAMES: tuple[str, ...] = ("hip-moment", "emg-torque", "gait-phase")

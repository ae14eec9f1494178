"""The reference models, registered by name (``python -m builder train NAME``)."""

from __future__ import annotations

from builder.errors import TrainingError
from builder.training.reference.base import Deployable, ReferenceModel, TensorSpec, Trained
from builder.training.reference.emg_torque import EmgFromTorque
from builder.training.reference.gait_phase import GaitPhase
from builder.training.reference.hip_moment import HipMoment

MODELS: dict[str, ReferenceModel] = {m.name: m for m in (HipMoment(), EmgFromTorque(), GaitPhase())}


def reference_model(name: str) -> ReferenceModel:
    if name not in MODELS:
        raise TrainingError(f"unknown model {name!r}; models are {sorted(MODELS)}")
    return MODELS[name]


__all__ = ["MODELS", "Deployable", "ReferenceModel", "TensorSpec", "Trained", "reference_model"]

"""Per-sample features and targets of time-normalised strides (pure functions on batches).

Velocities are backward differences, so a feature at a sample uses that sample and the one
before it only (what a controller has at that instant).
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch

from builder.conventions import JOINTS, MUSCLES, PLANES, SAMPLES_PER_STRIDE

SAGITTAL = tuple(f"{joint}.flexion" for joint in JOINTS)
# The seven muscles of the torque-based sEMG study, in its order.
STUDY_MUSCLES = (
    "tibialis_anterior",
    "gastrocnemius_medialis",
    "vastus_lateralis",
    "rectus_femoris",
    "biceps_femoris",
    "semitendinosus",
    "soleus",
)
_FLEXION = PLANES.index("flexion")
STUDY_MUSCLE_INDEX = [MUSCLES.index(m) for m in STUDY_MUSCLES]

# Gait phases from the percentage of the cycle (Perry's nominal boundaries; the stride record
# keeps no toe-off times): loading response, mid stance, terminal stance + pre-swing, swing.
PHASES = ("loading_response", "mid_stance", "terminal_stance", "swing")
PHASE_STARTS_PCT = (0.0, 12.0, 31.0, 62.0)


def sagittal(batch: dict[str, torch.Tensor], signal: str) -> torch.Tensor:
    """Sagittal hip, knee, ankle of ``signal``: ``(strides, 200, 3)``."""
    return batch[signal][:, :, : len(JOINTS), _FLEXION]


def sagittal_present(batch: dict[str, torch.Tensor], signal: str) -> torch.Tensor:
    """Strides whose three sagittal components are all present: ``(strides,)`` bool."""
    mask = {"kinematics": "kinematics_mask", "kinetics": "kinetics_mask"}[signal]
    return batch[mask][:, : len(JOINTS), _FLEXION].all(dim=1)


def has_sagittal(mask: np.ndarray) -> np.ndarray:
    """Strides of a store mask ``(strides, joint, plane)`` with all three sagittal components."""
    # numpy's stubs type a reduction along an axis as "scalar or array"
    return cast(np.ndarray, mask[:, : len(JOINTS), _FLEXION].all(axis=1))


def has_study_emg(emg_mask: np.ndarray) -> np.ndarray:
    """Strides of the store's ``emg_mask`` with at least one of the seven study muscles."""
    return cast(np.ndarray, emg_mask[:, STUDY_MUSCLE_INDEX].any(axis=1))


def kinematic_features(batch: dict[str, torch.Tensor], durations_s: torch.Tensor) -> torch.Tensor:
    """Angles (deg) and backward-difference velocities (deg/s) of the sagittal hip, knee and
    ankle at every sample: ``(strides, 200, 6)``."""
    angles = sagittal(batch, "kinematics")
    step = (durations_s / (SAMPLES_PER_STRIDE - 1)).reshape(-1, 1, 1)
    velocity = torch.diff(angles, dim=1, prepend=angles[:, :1]) / step
    velocity[:, 0] = velocity[:, 1]
    return torch.cat([angles, velocity], dim=-1)


def study_emg(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Envelopes of the seven study muscles ``(strides, 200, 7)`` and their presence
    ``(strides, 7)``."""
    return batch["emg_envelope"][:, :, STUDY_MUSCLE_INDEX], batch["emg_mask"][:, STUDY_MUSCLE_INDEX]


def phase_labels(strides: int) -> torch.Tensor:
    """The gait phase (index into ``PHASES``) of every sample: ``(strides, 200)``."""
    percent = np.linspace(0.0, 100.0, SAMPLES_PER_STRIDE)
    labels = np.searchsorted(PHASE_STARTS_PCT, percent, side="right") - 1
    return torch.from_numpy(labels).expand(strides, -1)


def r2(measured: np.ndarray, predicted: np.ndarray) -> float:
    """Coefficient of determination (1 - SSE/SST) along all axes."""
    sst = float(np.sum((measured - measured.mean()) ** 2))
    return 1.0 - float(np.sum((measured - predicted) ** 2)) / sst if sst > 0 else float("nan")


def rmse(measured: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.sqrt(np.mean((measured - predicted) ** 2)))

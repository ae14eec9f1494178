"""Reference model 3: gait phase at each sample from kinematics, and EMG where present.

Inputs per sample: sagittal angles and velocities, the envelopes of the seven study muscles
(zero where a stride lacks one) and one presence flag per muscle, so one network serves
strides with and without EMG. Classes: loading response, mid stance, terminal stance and
swing, from the percentage of the cycle (``features.PHASES``). Reported: accuracy on held-out
subjects, overall, per phase, and for strides with and without EMG.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from builder.training import features as F
from builder.training.loop import TrainSettings, fit, stride_batches
from builder.training.nets import FeatureMLP, mlp
from builder.training.progress import OnTrainingProgress
from builder.training.reference.base import Deployable, TensorSpec, Trained, Weights
from builder.training.reference.strides import (
    StrideSplit,
    feature_statistics,
    read_batch,
    split_query,
)

HIDDEN = 64
SIGNALS = ("kinematics", "emg_envelope")
FEATURES = 6 + 2 * len(F.STUDY_MUSCLES)


def phase_inputs(batch: dict[str, torch.Tensor], durations_s: torch.Tensor) -> torch.Tensor:
    """``(strides, 200, 20)``: kinematic features, envelopes (0 where absent), presence."""
    envelopes, present = F.study_emg(batch)
    present = present.to(envelopes.dtype).unsqueeze(1).expand_as(envelopes)
    kinematic = F.kinematic_features(batch, durations_s)
    return torch.cat([kinematic, torch.nan_to_num(envelopes) * present, present], dim=-1)


class GaitPhase:
    name = "gait-phase"
    summary = "gait phase (4 classes) from sagittal kinematics and, where present, sEMG"

    def train(
        self, settings: TrainSettings, on_progress: OnTrainingProgress | None = None
    ) -> Trained:
        masks = settings.source.masks()
        split = split_query(settings, required=F.has_sagittal(masks["kinematics"]))
        has_emg = F.has_study_emg(masks["emg_envelope"])
        sample = read_batch(settings, split.train, SIGNALS)
        mean, std = feature_statistics(phase_inputs(sample, split.durations(sample)))
        mean[6:], std[6:] = [0.0] * (FEATURES - 6), [1.0] * (FEATURES - 6)  # keep absent = 0

        def loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            logits = model(phase_inputs(batch, split.durations(batch)))
            labels = F.phase_labels(len(logits))
            return nn.functional.cross_entropy(
                logits.reshape(-1, len(F.PHASES)), labels.reshape(-1)
            )

        torch.manual_seed(settings.seed)
        model = FeatureMLP(mean, std, mlp([FEATURES, HIDDEN, HIDDEN, len(F.PHASES)]))
        fit(
            model,
            stride_batches(settings, split.train, SIGNALS, 1),
            stride_batches(settings, split.validation, SIGNALS, 2),
            loss,
            epochs=settings.epochs,
            learning_rate=settings.learning_rate,
            on_progress=on_progress,
            stage="gait phase classifier",
        )
        predicted, strides = _predict(settings, split, model)
        metrics = _metrics(predicted, has_emg[strides]) | {"split": split.counts()}
        return Trained(
            config={"hidden": HIDDEN, "features": FEATURES, "phases": list(F.PHASES)},
            weights={"classifier": model.state_dict()},
            metrics=metrics,
            figure=_figure(predicted, metrics),
        )

    def deployable(self, config: dict[str, Any], weights: Weights, **choice: Any) -> Deployable:
        n = int(config["features"])
        model = FeatureMLP(
            [0.0] * n,
            [1.0] * n,
            mlp([n, config["hidden"], config["hidden"], len(config["phases"])]),
        )
        model.load_state_dict(weights["classifier"])
        module = nn.Sequential(model, nn.Softmax(dim=-1)).eval()
        return Deployable(
            module=module,
            inputs=[
                TensorSpec(
                    "features",
                    ("batch", n),
                    "deg, deg/s, normalised envelope, 0/1",
                    "sagittal hip, knee, ankle angles and velocities; TA, GM, VL, RF, "
                    "BF, ST, SOL envelopes (0 if absent); then one presence flag each",
                )
            ],
            outputs=[
                TensorSpec(
                    "phase_probability",
                    ("batch", len(config["phases"])),
                    "1",
                    ", ".join(config["phases"]),
                )
            ],
            summary=self.summary,
        )


@torch.no_grad()
def _predict(
    settings: TrainSettings, split: StrideSplit, model: nn.Module
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted phase per sample of every test stride ``(strides, 200)`` and the strides."""
    predicted, strides = [], []
    for batch in stride_batches(settings, split.test, SIGNALS, 3)():
        logits = model(phase_inputs(batch, split.durations(batch)))
        predicted.append(logits.argmax(dim=-1).numpy())
        strides.append(batch["stride"].numpy())
    return np.concatenate(predicted), np.concatenate(strides)


def _metrics(predicted: np.ndarray, with_emg: np.ndarray) -> dict[str, Any]:
    truth = F.phase_labels(len(predicted)).numpy()
    correct = predicted == truth
    confusion = np.zeros((len(F.PHASES), len(F.PHASES)), dtype=int)
    np.add.at(confusion, (truth.ravel(), predicted.ravel()), 1)

    def accuracy(rows: np.ndarray) -> float | None:
        return float(correct[rows].mean()) if rows.any() else None

    return {
        "accuracy": float(correct.mean()),
        "accuracy_with_emg": accuracy(with_emg),
        "accuracy_without_emg": accuracy(~with_emg),
        "accuracy_per_phase": {
            phase: float(correct[truth == k].mean()) for k, phase in enumerate(F.PHASES)
        },
        "confusion": {"rows_true_columns_predicted": list(F.PHASES), "counts": confusion.tolist()},
        "test_strides": len(predicted),
        "test_strides_with_emg": int(with_emg.sum()),
    }


def _figure(predicted: np.ndarray, metrics: dict[str, Any]) -> plt.Figure:
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.4))
    cycle = np.linspace(0, 100, 200)
    truth = F.phase_labels(len(predicted)).numpy()
    left.plot(cycle, truth[0], "k", label="true phase")
    left.plot(cycle, predicted.mean(axis=0), "C0", label="predicted (mean over strides)")
    left.set_yticks(range(len(F.PHASES)), [p.replace("_", " ") for p in F.PHASES])
    left.set_xlabel("gait cycle (%)")
    left.legend(fontsize=8)
    right.plot(cycle, (predicted == truth).mean(axis=0), "C2")
    right.set_ylim(0, 1.02)
    right.set_xlabel("gait cycle (%)")
    right.set_ylabel("accuracy")
    figure.suptitle(f"Gait phase, held-out subjects: accuracy {metrics['accuracy']:.3f}")
    figure.tight_layout()
    return figure

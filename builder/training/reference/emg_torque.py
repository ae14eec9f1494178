"""Reference model 2: sEMG envelopes from kinematics through joint torques.

Stage 1 learns sagittal hip, knee and ankle moments from the angles (and their velocities) at
each sample; stage 2 adds a hidden layer after the torque output and fine-tunes the whole
network on the envelopes of TA, GM, VL, RF, BF, ST and SOL. The baseline is the same network,
freshly initialised and trained directly on the envelopes for as many epochs as both stages
together. Reported: R² of the ensemble-average curves per muscle on held-out subjects.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from builder.conventions import MUSCLE_ABBREVIATIONS
from builder.training import features as F
from builder.training.loop import TrainSettings, fit, masked_mse, stride_batches
from builder.training.nets import FeatureMLP, mlp, torque_based_emg
from builder.training.progress import OnTrainingProgress
from builder.training.reference.base import Deployable, TensorSpec, Trained, Weights
from builder.training.reference.strides import (
    StrideSplit,
    feature_statistics,
    read_batch,
    split_query,
)

HIDDEN = 64
SIGNALS = ("kinematics", "kinetics", "emg_envelope")


class EmgFromTorque:
    name = "emg-torque"
    summary = "sEMG envelopes (7 muscles) from sagittal kinematics through joint torques"

    def train(
        self, settings: TrainSettings, on_progress: OnTrainingProgress | None = None
    ) -> Trained:
        source = settings.source
        masks = source.masks()
        split = split_query(settings, required=F.has_sagittal(masks["kinematics"]))
        has_torque = F.has_sagittal(masks["kinetics"])
        has_emg = F.has_study_emg(masks["emg_envelope"])

        sample = read_batch(settings, split.train, SIGNALS)
        mean, std = feature_statistics(F.kinematic_features(sample, split.durations(sample)))

        def new_network() -> nn.Sequential:
            torque_net = FeatureMLP(mean, std, mlp([6, HIDDEN, HIDDEN, 3]))
            return torque_based_emg(torque_net, HIDDEN, len(F.STUDY_MUSCLES))

        def batches(indices: np.ndarray, salt: int):
            return stride_batches(settings, indices, SIGNALS, salt)

        torque_train, torque_val = (p[has_torque[p]] for p in (split.train, split.validation))
        emg_train, emg_val = (p[has_emg[p]] for p in (split.train, split.validation))
        if min(len(torque_train), len(torque_val), len(emg_train), len(emg_val)) == 0:
            raise ValueError(
                "the torque-based sEMG model needs strides with sagittal moments and with EMG "
                "in both the training and the validation subjects"
            )

        def torque_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            x = F.kinematic_features(batch, split.durations(batch))
            target = F.sagittal(batch, "kinetics")
            mask = F.sagittal_present(batch, "kinetics").reshape(-1, 1, 1)
            return masked_mse(model(x), target, mask)

        def emg_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            x = F.kinematic_features(batch, split.durations(batch))
            target, present = F.study_emg(batch)
            return masked_mse(model(x), target, present.unsqueeze(1))

        torch.manual_seed(settings.seed)
        torque_based = new_network()
        epochs = settings.epochs
        fit(
            torque_based[0],
            batches(torque_train, 1),
            batches(torque_val, 2),
            torque_loss,
            epochs=epochs,
            learning_rate=settings.learning_rate,
            on_progress=on_progress,
            stage="stage 1: kinematics → torques",
        )
        fit(
            torque_based,
            batches(emg_train, 3),
            batches(emg_val, 4),
            emg_loss,
            epochs=epochs,
            learning_rate=settings.learning_rate / 3,
            on_progress=on_progress,
            stage="stage 2: torques → sEMG (fine-tune)",
        )
        torch.manual_seed(settings.seed)
        baseline = new_network()
        fit(
            baseline,
            batches(emg_train, 3),
            batches(emg_val, 4),
            emg_loss,
            epochs=2 * epochs,
            learning_rate=settings.learning_rate,
            on_progress=on_progress,
            stage="baseline MLP: kinematics → sEMG",
        )

        test = split.test[has_emg[split.test]]
        curves = _ensemble_curves(
            settings, split, test, {"torque_based": torque_based, "baseline": baseline}
        )
        metrics = _metrics(curves) | {"split": split.counts(), "test_emg_strides": len(test)}
        return Trained(
            config={"hidden": HIDDEN, "features": 6, "muscles": list(F.STUDY_MUSCLES)},
            weights={"torque_based": torque_based.state_dict(), "baseline": baseline.state_dict()},
            metrics=metrics,
            figure=_figure(curves, metrics),
        )

    def deployable(self, config: dict[str, Any], weights: Weights, **choice: Any) -> Deployable:
        features = int(config["features"])
        net = torque_based_emg(
            FeatureMLP(
                [0.0] * features,
                [1.0] * features,
                mlp([features, config["hidden"], config["hidden"], 3]),
            ),
            int(config["hidden"]),
            len(config["muscles"]),
        )
        net.load_state_dict(weights["torque_based"])
        names = ", ".join(MUSCLE_ABBREVIATIONS[m] for m in config["muscles"])
        return Deployable(
            module=net.eval(),
            inputs=[
                TensorSpec(
                    "kinematics",
                    ("batch", features),
                    "deg, deg/s",
                    "sagittal hip, knee, ankle angles, then their velocities",
                )
            ],
            outputs=[
                TensorSpec(
                    "emg_envelope",
                    ("batch", len(config["muscles"])),
                    "normalised envelope (1 = subject's median peak)",
                    names,
                )
            ],
            summary=self.summary,
        )


@torch.no_grad()
def _ensemble_curves(
    settings: TrainSettings, split: StrideSplit, test: np.ndarray, models: dict[str, nn.Module]
) -> dict[str, np.ndarray]:
    """Mean curve over the test strides per muscle: measured and each model's, ``(200, 7)``;
    plus the measured SD. A muscle's curves average only the strides that have it."""
    sums = {name: np.zeros((200, 7)) for name in ("measured", "measured_sq", *models)}
    counts = np.zeros(7)
    for batch in stride_batches(settings, test, SIGNALS, 5)():
        x = F.kinematic_features(batch, split.durations(batch))
        target, present = F.study_emg(batch)
        target = torch.nan_to_num(target)  # absent muscles: NaN, weighted 0 below
        weight = present.numpy().astype(float)[:, None, :]
        counts += weight[:, 0, :].sum(axis=0)
        sums["measured"] += (target.numpy() * weight).sum(axis=0)
        sums["measured_sq"] += (target.numpy() ** 2 * weight).sum(axis=0)
        for name, model in models.items():
            sums[name] += (model(x).numpy() * weight).sum(axis=0)
    counts = np.maximum(counts, 1)
    curves = {name: total / counts for name, total in sums.items()}
    curves["measured_sd"] = np.sqrt(
        np.maximum(curves.pop("measured_sq") - curves["measured"] ** 2, 0)
    )
    curves["strides_per_muscle"] = counts
    return curves


def _metrics(curves: dict[str, np.ndarray]) -> dict[str, Any]:
    per_muscle: dict[str, Any] = {}
    for k, muscle in enumerate(F.STUDY_MUSCLES):
        per_muscle[MUSCLE_ABBREVIATIONS[muscle]] = {
            "r2_torque_based": F.r2(curves["measured"][:, k], curves["torque_based"][:, k]),
            "r2_baseline": F.r2(curves["measured"][:, k], curves["baseline"][:, k]),
            "test_strides": int(curves["strides_per_muscle"][k]),
        }
    mean = {
        f"mean_r2_{model}": float(np.nanmean([m[f"r2_{model}"] for m in per_muscle.values()]))
        for model in ("torque_based", "baseline")
    }
    return {"r2_of_ensemble_average": per_muscle} | mean


def _figure(curves: dict[str, np.ndarray], metrics: dict[str, Any]) -> plt.Figure:
    figure, axes = plt.subplots(1, 7, figsize=(21, 3.2), sharex=True)
    cycle = np.linspace(0, 100, 200)
    for k, (ax, muscle) in enumerate(zip(axes, F.STUDY_MUSCLES, strict=True)):
        short = MUSCLE_ABBREVIATIONS[muscle]
        m, sd = curves["measured"][:, k], curves["measured_sd"][:, k]
        ax.fill_between(cycle, m - sd, m + sd, color="0.85", label="measured ± SD")
        ax.plot(cycle, m, "k", label="measured")
        ax.plot(cycle, curves["torque_based"][:, k], "C0", label="torque-based")
        ax.plot(cycle, curves["baseline"][:, k], "C3--", label="baseline MLP")
        scores = metrics["r2_of_ensemble_average"][short]
        ax.set_title(f"{short}: R² {scores['r2_torque_based']:.2f} / {scores['r2_baseline']:.2f}")
        ax.set_xlabel("gait cycle (%)")
    axes[0].set_ylabel("envelope (normalised)")
    axes[0].legend(fontsize=7)
    figure.suptitle("sEMG, held-out subjects: ensemble averages, predicted vs measured")
    figure.tight_layout()
    return figure

"""Reference model 1: hip flexion moment from hip flexion angle with a causal dilated TCN.

The network sees 1.27 s of history at 100 Hz (kernel 3, dilations 1…32), in real time: its
series are consecutive strides re-timed with their durations (``data.continuous_segments``).
The K2MUSE protocol: per subject and walking mode, k-fold cross-validation over trials
(k = 5, or the number of trials when fewer), the fold model with the lowest validation loss is
that mode's model, and at inference the subject's mode models are averaged. Reported: RMSE
(N·m/kg) and R² of the out-of-fold predictions, per subject and mode and pooled; samples are
scored once the network has a full window of history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn

from builder.conventions import SAMPLES_PER_STRIDE
from builder.training.data import (
    Segment,
    component_index,
    continuous_segments,
    first_subjects,
    read_strides,
    retime,
    subject_folds,
    subject_ids,
)
from builder.training.features import r2, rmse
from builder.training.loop import TrainSettings, fit, masked_mse
from builder.training.nets import CausalTCN, LastSample, MeanOf
from builder.training.progress import OnTrainingProgress
from builder.training.reference.base import Deployable, TensorSpec, Trained, Weights

RATE_HZ = 100.0
CHANNELS = 16
KERNEL = 3
DILATIONS = (1, 2, 4, 8, 16, 32)
RECEPTIVE_FIELD = 1 + (KERNEL - 1) * sum(DILATIONS)  # 127 samples = 1.27 s
SCORED = 128  # samples scored per training crop (after a full window of history)
FOLDS = 5
_HIP = component_index("kinematics", "hip.flexion")
# hip flexion of every stride (a mask) and of every sample of every stride (curves)
_STRIDE_HIP: tuple[slice | int, ...] = (slice(None), *_HIP)
_SAMPLE_HIP: tuple[slice | int, ...] = (slice(None), slice(None), *_HIP)


@dataclass
class Series:
    """One continuous segment at ``RATE_HZ``, with the strides it was made of."""

    trial: str
    mode: str
    angle: np.ndarray  # hip flexion, deg
    moment: np.ndarray  # hip flexion moment, N·m/kg
    stride_bounds_s: np.ndarray  # start of each stride and end of the last, from 0
    stride_moments: np.ndarray  # (strides, 200): the stored, time-normalised moments


class HipMoment:
    name = "hip-moment"
    summary = "hip flexion moment from hip flexion angle (causal TCN, 1.27 s history)"

    def train(
        self, settings: TrainSettings, on_progress: OnTrainingProgress | None = None
    ) -> Trained:
        table = settings.source.table()
        masks = settings.source.masks()
        usable = (
            masks["kinematics"][_STRIDE_HIP]
            & masks["kinetics"][_STRIDE_HIP]
            & np.isfinite(table["source_start_s"].to_numpy(float))
        )
        selected = settings.query.select(table, masks)
        selected = selected[usable[selected]]
        people = subject_ids(table)
        subjects = first_subjects(people[selected], settings.max_subjects, settings.seed)
        if not subjects:
            raise ValueError("no strides with hip angle, hip moment and source times match")

        weights: Weights = {}
        modes_of: dict[str, list[str]] = {}
        scores: list[dict[str, Any]] = []
        out_of_fold: list[tuple[Series, np.ndarray]] = []
        notes: list[str] = []
        plan = []
        for subject in subjects:
            series = _subject_series(settings, table, selected[people[selected] == subject])
            for mode in sorted({s.mode for s in series}):
                trials = sorted({s.trial for s in series if s.mode == mode})
                if len(trials) < 2:
                    notes.append(
                        f"{subject} {mode}: {len(trials)} usable trial, no cross-validation"
                    )
                    continue
                plan.append((subject, mode, [s for s in series if s.mode == mode], trials))
        overall = "subjects × modes"  # a stage of its own: one step per subject and mode
        if on_progress is not None:
            on_progress(overall, 0, len(plan))
        for done, (subject, mode, series, trials) in enumerate(plan, start=1):
            folds = subject_folds(trials, min(FOLDS, len(trials)), settings.seed)
            best: tuple[float, dict[str, torch.Tensor]] | None = None
            predictions = []
            for k, held_out in enumerate(folds):
                train = [s for s in series if s.trial not in held_out]
                validation = [s for s in series if s.trial in held_out]
                model, loss = _fit_fold(
                    settings,
                    train,
                    validation,
                    on_progress,
                    f"{subject} {mode} fold {k + 1}/{len(folds)}",
                )
                predictions += [(s, _predict(model, s.angle)) for s in validation]
                if best is None or loss < best[0]:
                    best = (loss, model.state_dict())
            assert best is not None
            weights[f"{subject}|{mode}"] = best[1]
            modes_of.setdefault(subject, []).append(mode)
            scores.append(
                {
                    "subject": subject,
                    "mode": mode,
                    "trials": len(trials),
                    "folds": len(folds),
                    **_score(predictions),
                }
            )
            out_of_fold += predictions
            if on_progress is not None:
                on_progress(overall, done, len(plan))
        if not scores:
            raise ValueError(
                "no subject has two trials of one mode with a segment longer than "
                f"{(RECEPTIVE_FIELD + SCORED) / RATE_HZ:.2f} s; nothing to cross-validate"
            )
        metrics = _metrics(scores, out_of_fold)
        return Trained(
            config=run_config(modes_of),
            weights=weights,
            metrics=metrics,
            figure=_figure(out_of_fold, metrics),
            notes=notes,
        )

    def deployable(self, config: dict[str, Any], weights: Weights, **choice: Any) -> Deployable:
        subjects = sorted(config["modes"])
        subject = choice.get("subject") or subjects[0]
        if subject not in config["modes"]:
            raise ValueError(f"no models for subject {subject!r}; trained: {subjects}")
        models = []
        for mode in config["modes"][subject]:
            net = CausalTCN(
                [0.0], [1.0], 1, config["channels"], config["kernel"], config["dilations"]
            )
            net.load_state_dict(weights[f"{subject}|{mode}"])
            models.append(net)
        window = int(config["receptive_field"])
        return Deployable(
            module=LastSample(MeanOf(models)).eval(),
            inputs=[
                TensorSpec(
                    "hip_angle",
                    ("batch", 1, window),
                    "deg",
                    f"hip flexion, the last {window} samples at {config['rate_hz']:g} Hz, oldest first",
                )
            ],
            outputs=[
                TensorSpec(
                    "hip_moment",
                    ("batch", 1),
                    "N.m/kg",
                    "internal hip flexion moment now (mean of the mode models: "
                    + ", ".join(config["modes"][subject])
                    + ")",
                )
            ],
            summary=f"{self.summary}; subject {subject}",
        )


def run_config(modes_of: dict[str, list[str]]) -> dict[str, Any]:
    """A hip-moment run's config: the architecture and, per subject, its mode models."""
    return {
        "rate_hz": RATE_HZ,
        "channels": CHANNELS,
        "kernel": KERNEL,
        "dilations": list(DILATIONS),
        "receptive_field": RECEPTIVE_FIELD,
        "modes": modes_of,
    }


def _subject_series(
    settings: TrainSettings, table: pd.DataFrame, strides: np.ndarray
) -> list[Series]:
    """The subject's continuous segments long enough to score, re-timed at ``RATE_HZ``."""
    batch = read_strides(settings.source, np.sort(strides), ("kinematics", "kinetics"))
    row_of = {int(s): k for k, s in enumerate(batch["stride"])}
    angle_all = batch["kinematics"][_SAMPLE_HIP].numpy().astype(float)
    moment_all = batch["kinetics"][_SAMPLE_HIP].numpy().astype(float)
    series = []
    for segment in continuous_segments(table, strides):
        rows = [row_of[int(s)] for s in segment.strides]
        durations = table["duration_s"].to_numpy(float)[segment.strides]
        if durations.sum() * RATE_HZ < RECEPTIVE_FIELD + SCORED:
            continue
        series.append(
            Series(
                trial=_trial_id(table, segment),
                mode=str(table["activity"].iloc[segment.strides].mode().iloc[0]),
                angle=retime(angle_all[rows], durations, RATE_HZ).astype(np.float32),
                moment=retime(moment_all[rows], durations, RATE_HZ).astype(np.float32),
                stride_bounds_s=np.concatenate([[0.0], np.cumsum(durations)]),
                stride_moments=moment_all[rows],
            )
        )
    return series


def _trial_id(table: pd.DataFrame, segment: Segment) -> str:
    row = table.iloc[int(segment.strides[0])]
    return f"{row['source_path']}|{row['trial']}|{row['subtrial']}"


def _crops(series: list[Series]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training windows: each sample after the first full window is scored in exactly one
    crop of ``RECEPTIVE_FIELD - 1 + SCORED`` samples; ``(crops, 1, length)`` each."""
    length = RECEPTIVE_FIELD - 1 + SCORED
    xs, ys, ms = [], [], []
    for s in series:
        for first in range(RECEPTIVE_FIELD - 1, len(s.angle), SCORED):
            last = min(first + SCORED, len(s.angle))
            x = s.angle[first - RECEPTIVE_FIELD + 1 : last]
            y = s.moment[first - RECEPTIVE_FIELD + 1 : last]
            pad = length - len(x)  # on the right: a causal network's earlier outputs ignore it
            xs.append(np.pad(x, (0, pad), mode="edge"))
            ys.append(np.pad(y, (0, pad)))
            scored = np.zeros(length, bool)
            scored[RECEPTIVE_FIELD - 1 : RECEPTIVE_FIELD - 1 + last - first] = True
            ms.append(scored)
    as_tensor = lambda a: torch.from_numpy(np.stack(a)).unsqueeze(1)  # noqa: E731
    return as_tensor(xs), as_tensor(ys).float(), as_tensor(ms)


def _fit_fold(
    settings: TrainSettings,
    train: list[Series],
    validation: list[Series],
    on_progress: OnTrainingProgress | None,
    stage: str,
) -> tuple[CausalTCN, float]:
    angles = np.concatenate([s.angle for s in train])
    torch.manual_seed(settings.seed)
    model = CausalTCN(
        [float(angles.mean())], [float(angles.std()) + 1e-6], 1, CHANNELS, KERNEL, DILATIONS
    )
    x, y, m = _crops(train)
    validation_batches = [_crops(validation)]
    generator = torch.Generator().manual_seed(settings.seed)
    batch = max(settings.batch_strides // 2, 1)

    def train_batches() -> list[tuple[torch.Tensor, ...]]:
        order = torch.randperm(len(x), generator=generator)
        return [(x[i], y[i], m[i]) for i in order.split(batch)]

    def loss(net: nn.Module, crops: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return masked_mse(net(crops[0]), crops[1], crops[2])

    best = fit(
        model,
        train_batches,
        lambda: validation_batches,
        loss,
        epochs=settings.epochs,
        learning_rate=settings.learning_rate,
        on_progress=on_progress,
        stage=stage,
    )
    return model, best


@torch.no_grad()
def _predict(model: nn.Module, angle: np.ndarray) -> np.ndarray:
    """The causal prediction over a whole series (sample t sees samples ≤ t only)."""
    return model(torch.from_numpy(angle).reshape(1, 1, -1))[0, 0].numpy()


def _scored(series: Series, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return series.moment[RECEPTIVE_FIELD - 1 :], predicted[RECEPTIVE_FIELD - 1 :]


def _score(predictions: list[tuple[Series, np.ndarray]]) -> dict[str, float]:
    measured, predicted = (
        np.concatenate(p) for p in zip(*(_scored(*sp) for sp in predictions), strict=True)
    )
    return {
        "rmse": rmse(measured, predicted),
        "r2": r2(measured, predicted),
        "samples": len(measured),
    }


def _metrics(
    scores: list[dict[str, Any]], out_of_fold: list[tuple[Series, np.ndarray]]
) -> dict[str, Any]:
    per_mode = {
        mode: _score([(s, p) for s, p in out_of_fold if s.mode == mode])
        for mode in sorted({s.mode for s, _ in out_of_fold})
    }
    return {
        "units": "N.m/kg",
        "pooled": _score(out_of_fold),
        "mean_over_subject_modes": {
            "rmse": float(np.mean([s["rmse"] for s in scores])),
            "r2": float(np.nanmean([s["r2"] for s in scores])),
        },
        "per_mode": per_mode,
        "per_subject_mode": scores,
    }


def _stride_curves(series: Series, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and stored moments of the strides that start after a full window, back on
    the 200-point gait cycle."""
    times = np.arange(len(predicted)) / RATE_HZ
    first = (RECEPTIVE_FIELD - 1) / RATE_HZ
    pred, meas = [], []
    for k, (start, end) in enumerate(
        zip(series.stride_bounds_s[:-1], series.stride_bounds_s[1:], strict=True)
    ):
        if start >= first and end <= times[-1]:
            pred.append(np.interp(np.linspace(start, end, SAMPLES_PER_STRIDE), times, predicted))
            meas.append(series.stride_moments[k])
    empty = np.empty((0, SAMPLES_PER_STRIDE))
    return (np.array(pred), np.array(meas)) if pred else (empty, empty)


def _figure(out_of_fold: list[tuple[Series, np.ndarray]], metrics: dict[str, Any]) -> plt.Figure:
    modes = sorted(metrics["per_mode"])
    figure, axes = plt.subplots(1, len(modes), figsize=(4.2 * len(modes), 3.4), squeeze=False)
    cycle = np.linspace(0, 100, SAMPLES_PER_STRIDE)
    for ax, mode in zip(axes[0], modes, strict=True):
        parts = [_stride_curves(s, p) for s, p in out_of_fold if s.mode == mode]
        predicted = np.concatenate([p for p, _ in parts])
        measured = np.concatenate([m for _, m in parts])
        if len(measured):
            mean, sd = measured.mean(axis=0), measured.std(axis=0)
            ax.fill_between(cycle, mean - sd, mean + sd, color="0.85", label="measured ± SD")
            ax.plot(cycle, mean, "k", label="measured")
            ax.plot(cycle, predicted.mean(axis=0), "C0", label="TCN (out of fold)")
        score = metrics["per_mode"][mode]
        ax.set_title(f"{mode}: RMSE {score['rmse']:.3f} N·m/kg, R² {score['r2']:.2f}")
        ax.set_xlabel("gait cycle (%)")
    axes[0][0].set_ylabel("hip flexion moment (N·m/kg)")
    axes[0][0].legend(fontsize=8)
    figure.suptitle("Hip moment from hip angle: out-of-fold predictions vs measured")
    figure.tight_layout()
    return figure

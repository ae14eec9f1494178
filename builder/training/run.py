"""One training run: seed, train a reference model on a store, write what it made.

Progress goes to an optional :class:`~builder.training.progress.OnTrainingProgress`; the
command line draws it.

``<out>/checkpoint.pt`` (weights and everything export needs; loaded with
``weights_only=True``), ``<out>/metrics.json`` and ``<out>/predicted_vs_measured.png``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch

from builder._version import __version__
from builder.errors import StoreError, TrainingError
from builder.pipeline.report import read_build_report
from builder.store.location import StoreLocation
from builder.store.reader import pin_version
from builder.store.staging import nan_to_null
from builder.training.loop import TrainSettings, seed_everything
from builder.training.progress import OnTrainingProgress
from builder.training.reference import reference_model

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
FIGURE = "predicted_vs_measured.png"


@dataclass(frozen=True)
class RunFiles:
    checkpoint: Path
    metrics: Path
    figure: Path


def train(
    model_name: str,
    settings: TrainSettings,
    out: Path,
    on_progress: OnTrainingProgress | None = None,
) -> RunFiles:
    """Train ``model_name`` on ``settings.source`` and write the run's files into ``out``."""
    check_run_folder(out)
    model = reference_model(model_name)
    store = store_identity(settings.source.url, settings.source.storage_options)
    seed_everything(settings.seed)
    try:
        trained = model.train(settings, on_progress)
    except ValueError as exc:
        raise TrainingError(f"{model_name} on {settings.source.url}: {exc}") from None
    out.mkdir(parents=True, exist_ok=True)
    run = {
        "model": model_name,
        "summary": model.summary,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "builder_version": __version__,
        "store": store,
        "settings": {
            "seed": settings.seed,
            "epochs": settings.epochs,
            "batch_strides": settings.batch_strides,
            "learning_rate": settings.learning_rate,
            "max_subjects": settings.max_subjects,
            "query": {k: list(v) for k, v in vars(settings.query).items() if v},
        },
        "notes": trained.notes,
    }
    files = RunFiles(out / CHECKPOINT, out / METRICS, out / FIGURE)
    torch.save(
        run | {"config": trained.config, "weights": trained.weights, "metrics": trained.metrics},
        files.checkpoint,
    )
    files.metrics.write_text(
        json.dumps(nan_to_null(run | {"metrics": trained.metrics}), indent=2) + "\n"
    )
    trained.figure.savefig(files.figure, dpi=110)
    plt.close(trained.figure)
    return files


def check_run_folder(out: Path) -> None:
    """Fail in one line, before any data is read, when the run folder cannot be written (a
    file in the way, a read-only or foreign place): not after training."""
    if out.exists() and not out.is_dir():
        raise TrainingError(f"--out {out}: exists and is a file; choose another --out")
    try:
        StoreLocation(str(out.absolute())).check_reachable()
    except StoreError as exc:
        raise TrainingError(f"--out {exc}") from None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A run's checkpoint (tensors and plain values only: no code is unpickled)."""
    try:
        checkpoint = torch.load(path, weights_only=True)
    except FileNotFoundError:
        raise TrainingError(f"{path}: no such checkpoint (run `builder train` first)") from None
    except Exception as exc:  # a truncated or foreign file: name it
        raise TrainingError(f"{path}: not a builder checkpoint ({exc})") from None
    if not isinstance(checkpoint, dict) or not {"model", "config", "weights"} <= checkpoint.keys():
        raise TrainingError(f"{path}: not a builder checkpoint (model, config or weights missing)")
    return checkpoint


def store_identity(url: str, storage_options: dict[str, Any]) -> dict[str, Any]:
    """Which build of the store a model is trained on (from its build report)."""
    try:
        pinned = pin_version(url, storage_options)
        report = read_build_report(pinned, storage_options)
    except StoreError as exc:
        raise TrainingError(str(exc)) from None
    return {
        "url": url,
        "version_url": pinned,  # this exact build, for as long as it is not pruned
        "version": report.version,
        "fingerprint": report.fingerprint,
        "created": report.created,
        "n_strides": report.n_strides,
    }

"""The reference models train on the demo store, export to ONNX that onnxruntime runs like
PyTorch at any batch size, and reproduce exactly from their seed."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import import_optional

torch = import_optional("torch")
ort = import_optional("onnxruntime")

from builder.errors import TrainingError  # noqa: E402
from builder.training import tensorrt  # noqa: E402
from builder.training.data import StoreSource, StrideQuery  # noqa: E402
from builder.training.export import PARITY_TOLERANCE, export, onnx_operators  # noqa: E402
from builder.training.loop import TrainSettings  # noqa: E402
from builder.training.progress import EpochLoss  # noqa: E402
from builder.training.run import load_checkpoint, train  # noqa: E402

pytestmark = pytest.mark.cluster  # the shared demo store is built on a local Dask cluster

# Short runs: enough to show each model learns, far from converged.
QUICK = {
    "hip-moment": {"epochs": 8, "max_subjects": 1, "query": StrideQuery(datasets=("demo",))},
    "emg-torque": {"epochs": 4},
    "gait-phase": {"epochs": 4},
}


def settings(store: Path, model: str, seed: int = 0) -> TrainSettings:
    return TrainSettings(StoreSource(str(store)), seed=seed, **QUICK[model])


@pytest.fixture(scope="module")
def runs(demo_store, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("runs")
    return {m: train(m, settings(demo_store[0], m), folder / m).checkpoint.parent for m in QUICK}


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_hip_moment_tcn_follows_the_k2muse_protocol_and_learns(runs, demo_store) -> None:
    result = metrics(runs["hip-moment"])
    m = result["metrics"]
    assert result["store"]["version"] == "v0001"
    # trained on the version, not on the moving name: a later publish changes nothing
    assert result["store"]["version_url"] == f"{demo_store[0]}.versions/v0001"
    assert result["store"]["n_strides"] == demo_store[1].n_strides
    # one demo subject: level walking (6 trials → 5 folds), ramps up and down (2 trials → 2)
    folds = {row["mode"]: (row["trials"], row["folds"]) for row in m["per_subject_mode"]}
    assert folds == {"walk": (6, 5), "ramp_ascent": (2, 2), "ramp_descent": (2, 2)}
    assert m["units"] == "N.m/kg"
    # out-of-fold after 8 epochs: far better than predicting the mean moment (R² 0)
    assert m["pooled"]["r2"] > 0.5 and 0 < m["pooled"]["rmse"] < 0.3
    checkpoint = load_checkpoint(runs["hip-moment"] / "checkpoint.pt")
    (subject,) = checkpoint["config"]["modes"]
    assert sorted(checkpoint["weights"]) == sorted(
        f"{subject}|{mode}" for mode in ("walk", "ramp_ascent", "ramp_descent")
    )
    assert (runs["hip-moment"] / "predicted_vs_measured.png").stat().st_size > 10_000


def test_torque_based_semg_is_scored_per_muscle_against_the_baseline(runs) -> None:
    m = metrics(runs["emg-torque"])["metrics"]
    per_muscle = m["r2_of_ensemble_average"]
    assert list(per_muscle) == ["TA", "GM", "VL", "RF", "BF", "ST", "SOL"]
    for scores in per_muscle.values():
        assert scores["test_strides"] > 0
        assert scores["r2_torque_based"] is not None and scores["r2_baseline"] is not None
    # the ensemble-average shape is learnt by both within 4 epochs of each stage
    assert m["mean_r2_torque_based"] > 0.3 and m["mean_r2_baseline"] > 0.0
    split = m["split"]
    assert split["train_subjects"] and split["validation_subjects"] and split["test_subjects"]


def test_gait_phase_accuracy_is_reported_with_and_without_emg(runs) -> None:
    m = metrics(runs["gait-phase"])["metrics"]
    assert m["accuracy"] > 0.7  # four classes: chance is 0.25-0.38
    assert set(m["accuracy_per_phase"]) == {"loading_response", "mid_stance", "terminal_stance", "swing"}
    counts = np.array(m["confusion"]["counts"])
    assert counts.sum() == 200 * m["test_strides"]
    assert np.trace(counts) / counts.sum() == pytest.approx(m["accuracy"])


@pytest.mark.parametrize("model", list(QUICK))
def test_export_runs_in_onnxruntime_like_pytorch_at_any_batch(runs, model, tmp_path) -> None:
    exported = export(runs[model], tmp_path / "release", engines=True)
    manifest = exported.manifest
    assert manifest["onnx"]["parity"]["max_abs_diff"] < PARITY_TOLERANCE
    # every operator is one TensorRT's ONNX parser takes
    assert onnx_operators(tmp_path / "release" / "model.onnx") <= tensorrt.ONNX_PARSER_OPS
    assert manifest["onnx"]["operators_outside_tensorrt_parser"] == []
    # no TensorRT here: the reason is recorded, nothing pretends to be an engine
    reason = tensorrt.unavailable()
    if reason:
        assert manifest["tensorrt"] == {"built": [], "skipped": reason}
        assert not list((tmp_path / "release").glob("*.engine"))
    session = ort.InferenceSession(str(tmp_path / "release" / "model.onnx"))
    (spec,) = manifest["inputs"]
    assert [i.name for i in session.get_inputs()] == [spec["name"]]
    assert session.get_inputs()[0].shape[0] not in (1, 2)  # symbolic batch axis
    for batch in (1, 3, 100):
        shape = [batch if d == "batch" else d for d in spec["shape"]]
        (out,) = session.run(None, {spec["name"]: np.zeros(shape, np.float32)})
        assert out.shape[0] == batch and np.isfinite(out).all()
    assert manifest["outputs"][0]["units"] and manifest["store"]["fingerprint"]
    # the layout, units and store travel inside the ONNX file (issue 12)
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["model"] == model and meta["store.version"] == manifest["store"]["version"]
    assert meta["store.fingerprint"] == manifest["store"]["fingerprint"]
    for kind, specs in (("input", manifest["inputs"]), ("output", manifest["outputs"])):
        for s in specs:
            dims = meta[f"{kind}.{s['name']}.dims"].split(",")
            assert len(dims) == len(s["shape"]) and "axis1" not in dims  # named, not generic
            assert meta[f"{kind}.{s['name']}.units"] == s["units"]


def test_training_is_reproducible_from_its_seed(demo_store, runs, tmp_path) -> None:
    events: list[tuple] = []  # reporting progress changes nothing the run makes
    again = train(
        "gait-phase",
        settings(demo_store[0], "gait-phase"),
        tmp_path / "again",
        on_progress=lambda *event: events.append(event),
    )
    epochs = QUICK["gait-phase"]["epochs"]
    assert [e[:3] for e in events] == [("gait phase classifier", k, epochs) for k in range(epochs + 1)]
    losses = [e[3] for e in events[1:]]
    assert events[0][3:] == () and all(isinstance(loss, EpochLoss) for loss in losses)
    assert [loss.best for loss in losses] == list(np.minimum.accumulate([loss.validation for loss in losses]))
    first = load_checkpoint(runs["gait-phase"] / "checkpoint.pt")
    second = load_checkpoint(again.checkpoint)
    for name, value in first["weights"]["classifier"].items():
        assert torch.equal(value, second["weights"]["classifier"][name]), name
    assert first["metrics"] == second["metrics"]
    other = train("gait-phase", settings(demo_store[0], "gait-phase", seed=1), tmp_path / "other")
    assert load_checkpoint(other.checkpoint)["metrics"] != first["metrics"]


def test_bad_queries_and_checkpoints_fail_clearly(demo_store, tmp_path) -> None:
    nothing = TrainSettings(StoreSource(str(demo_store[0])), StrideQuery(datasets=("nope",)))
    with pytest.raises(TrainingError, match="no strides match"):
        train("gait-phase", nothing, tmp_path / "x")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TrainingError, match=r"broken/checkpoint\.pt: not a builder checkpoint"):
        export(tmp_path / "broken")


def test_cli_train_and_export(demo_store, tmp_path) -> None:
    run = tmp_path / "run"
    cli = [sys.executable, "-m", "builder"]
    log = subprocess.run(
        [*cli, "train", "gait-phase", "--store", str(demo_store[0]), "--epochs", "1",
         "--out", str(run), "--no-progress", "--dataset", "demo", "--dataset", "Angelidou"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert log.returncode == 0, log.stderr[-2000:]
    assert "gait-phase: accuracy" in log.stdout
    assert metrics(run)["settings"]["query"] == {"datasets": ["demo", "Angelidou"]}
    log = subprocess.run([*cli, "export", str(run)], capture_output=True, text=True, timeout=900)
    assert log.returncode == 0, log.stderr[-2000:]
    assert "onnxruntime vs PyTorch max abs difference" in log.stdout
    if tensorrt.unavailable():
        assert "TensorRT engines skipped:" in " ".join(log.stdout.split())


def test_the_command_line_offers_exactly_the_reference_models() -> None:
    """The CLI takes the names from builder.training.defaults (no PyTorch import) and the
    numeric defaults from TrainSettings: both must be the library's."""
    from builder.cli import _parser
    from builder.training.defaults import MODEL_NAMES
    from builder.training.reference import MODELS

    assert tuple(MODELS) == MODEL_NAMES
    args = _parser().parse_args(["train", "gait-phase"])
    settings = {f.name: f.default for f in dataclasses.fields(TrainSettings)}
    for name in ("seed", "epochs", "batch_strides", "loader_workers"):
        assert getattr(args, name) == settings[name], name


def test_the_command_line_draws_training_progress() -> None:
    """train()'s callback becomes one rich bar per stage with the epoch's losses."""
    import io

    from rich.console import Console

    from builder.cli import _TrainingBars

    screen = io.StringIO()
    with _TrainingBars(Console(file=screen, width=100)) as bars:
        bars("subjects × modes", 0, 1)
        bars("S01 walk fold 1/2", 0, 2)
        bars("S01 walk fold 1/2", 1, 2, EpochLoss(0.5, 0.5))
        bars("S01 walk fold 1/2", 2, 2, EpochLoss(0.75, 0.5))
        bars("subjects × modes", 1, 1)
    lines = screen.getvalue().splitlines()
    assert "subjects × modes" in lines[-2] and "1/1" in lines[-2]
    assert "S01 walk fold 1/2" in lines[-1] and "2/2 val 0.75 best 0.5" in lines[-1]

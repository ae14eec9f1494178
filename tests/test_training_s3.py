"""Training from a store in a bucket and engine releases in a bucket, on a real S3-compatible
server over HTTP (moto's ThreadedMotoServer): loader worker processes, push / pull / list,
and pulls that refuse tampered or incomplete releases."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import s3fs

from helpers import import_optional

torch = import_optional("torch")
import_optional("onnxruntime")

from moto.server import ThreadedMotoServer  # noqa: E402

from builder.errors import TrainingError  # noqa: E402
from builder.training import releases  # noqa: E402
from builder.training.data import StoreSource, StrideDataset, stride_loader  # noqa: E402

pytestmark = pytest.mark.cluster

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIATRAINING0000", "AWS_SECRET_ACCESS_KEY": "training-secret"}


@pytest.fixture(scope="module")
def bucket(demo_store) -> Iterator[dict]:
    """A server with the demo store at s3://train-stores/gait.zarr and an empty
    s3://train-releases (moto keeps buckets per process: names of their own)."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    options = {"endpoint_url": f"http://{host}:{port}"}
    fs = s3fs.S3FileSystem(**options)
    for name in ("train-stores", "train-releases"):
        if not fs.exists(name):
            fs.mkdir(name)
    fs.put(str(demo_store[0].resolve()) + "/", "train-stores/gait.zarr/", recursive=True)
    yield options
    server.stop()
    for key, value in saved.items():
        os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)


def test_loader_workers_read_the_bucket_like_the_local_store(bucket, demo_store) -> None:
    remote = StoreSource("s3://train-stores/gait.zarr", bucket)
    local = StoreSource(str(demo_store[0]))
    indices = np.arange(0, demo_store[1].n_strides, 3)
    seen = {}
    # spawned workers, each with its own s3fs session (s3fs is not fork-safe)
    for batch in stride_loader(StrideDataset(remote, indices), 32, seed=5, num_workers=2):
        for k, stride in enumerate(batch["stride"].tolist()):
            seen[stride] = batch["kinematics"][k]
    assert sorted(seen) == indices.tolist()
    expected = StrideDataset(local, indices).__getitems__(list(range(len(indices))))
    for item in expected:
        torch.testing.assert_close(seen[int(item["stride"])], item["kinematics"], equal_nan=True)


def test_train_from_the_bucket_then_release_through_it(bucket, tmp_path) -> None:
    cli = [sys.executable, "-m", "builder"]
    option = ["--storage-option", f"endpoint_url={bucket['endpoint_url']}"]
    run = tmp_path / "run"

    def builder(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*cli, *args], capture_output=True, text=True, timeout=900)

    log = builder("train", "gait-phase", "--store", "s3://train-stores/gait.zarr", "--epochs", "1",
                  "--dataset", "demo", "--dataset", "Angelidou", "--loader-workers", "2",
                  "--out", str(run), "--no-progress", *option)  # fmt: skip
    assert log.returncode == 0, log.stderr[-2000:]
    trained = json.loads((run / "metrics.json").read_text())
    assert trained["store"]["url"] == "s3://train-stores/gait.zarr" and trained["store"]["version"] == "v0001"
    assert builder("export", str(run), "--no-engines").returncode == 0

    for _ in range(2):
        log = builder("engines", "push", str(run / "release"), "s3://train-releases/gait", *option)
        assert log.returncode == 0, log.stderr[-2000:]
    assert "pushed gait-phase v2" in log.stdout
    log = builder("engines", "list", "s3://train-releases/gait", *option)
    assert log.returncode == 0 and log.stdout.count("complete") == 2, log.stdout

    log = builder("engines", "pull", "s3://train-releases/gait", "gait-phase", "--to", str(tmp_path / "got"), *option)  # fmt: skip
    assert log.returncode == 0, log.stderr[-2000:]
    pulled = tmp_path / "got" / "gait-phase-v2"
    manifest = json.loads((pulled / "manifest.json").read_text())
    assert manifest["version"] == "v2" and manifest["store"]["version"] == "v0001"
    assert set(manifest["files"]) == {"model.onnx", "metrics.json", "predicted_vs_measured.png"}
    assert (pulled / "model.onnx").read_bytes() == (run / "release" / "model.onnx").read_bytes()
    assert manifest["inputs"][0]["name"] == "features" and manifest["outputs"][0]["units"] == "1"


@pytest.fixture
def released(bucket, tmp_path) -> tuple[str, s3fs.S3FileSystem, Path]:
    """A small release folder pushed as v1 to a fresh prefix."""
    folder = tmp_path / "release"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"onnx bytes")
    (folder / "model.fp16.engine").write_bytes(b"engine bytes")
    (folder / "manifest.json").write_text(json.dumps({"model": "hip-moment", "files": {}}))
    url = f"s3://train-releases/{tmp_path.name}"
    releases.push(folder, url, bucket)
    return url, s3fs.S3FileSystem(**bucket), folder


def test_pull_refuses_a_tampered_release_and_leaves_nothing(released, bucket, tmp_path) -> None:
    url, fs, _ = released
    fs.pipe(f"{url}/hip-moment/v1/model.fp16.engine", b"engine bytes, altered")
    with pytest.raises(TrainingError, match=r"model.fp16.engine does not match its sha256"):
        releases.pull(url, "hip-moment", tmp_path / "got", storage_options=bucket)
    assert list((tmp_path / "got").iterdir()) == []


def test_pull_refuses_missing_or_unlisted_files(released, bucket, tmp_path) -> None:
    url, fs, _ = released
    fs.rm(f"{url}/hip-moment/v1/model.onnx")
    fs.pipe(f"{url}/hip-moment/v1/extra.bin", b"?")
    with pytest.raises(TrainingError, match=r"model.onnx is missing; extra.bin is not in the manifest"):
        releases.pull(url, "hip-moment", tmp_path / "got", storage_options=bucket)


def test_incomplete_releases_are_listed_but_never_pulled(released, bucket, tmp_path) -> None:
    url, fs, _ = released
    fs.rm(f"{url}/hip-moment/v1/manifest.json")  # as if the push stopped before its last write
    (state,) = releases.list_releases(url, bucket)
    assert state.version == "v1" and state.manifest is None
    with pytest.raises(TrainingError, match="no complete release of 'hip-moment'"):
        releases.pull(url, "hip-moment", tmp_path / "got", storage_options=bucket)
    with pytest.raises(TrainingError, match="v1 is incomplete"):
        releases.pull(url, "hip-moment", tmp_path / "got", version="v1", storage_options=bucket)


def test_a_released_version_is_never_overwritten(released, bucket) -> None:
    url, _, folder = released
    with pytest.raises(TrainingError, match="already released"):
        releases.push(folder, url, bucket, version="v1")
    assert releases.push(folder, url, bucket).version == "v2"

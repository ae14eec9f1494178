"""``deploy/``: what can be checked without Docker, Kubernetes or SLURM. Every file parses, the
commands it runs exist in this package's environment and parse with their own parsers
(``builder``: ``builder.cli._parser()``; ``dask scheduler|worker``: distributed's click
commands), and the pieces agree with each other (image, volumes, scheduler address)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import dask
import pytest
import yaml
from distributed.cli.dask_scheduler import main as dask_scheduler_cli
from distributed.cli.dask_worker import main as dask_worker_cli

from builder.cli import _parser
from builder.cluster import cluster_kind

from helpers import (
    REPO,
    import_optional,
    requires_dask_kubernetes,
    requires_jsonschema,
    requires_kubernetes,
    requires_torch,
)

DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent  # this environment's commands


def load_all(path: Path) -> list[Any]:
    with open(path) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def builder_args(argv: list[str]) -> Any:
    """``argv`` (starting with ``builder``) through the real CLI parser."""
    assert argv[0] == "builder", argv
    assert (BIN / "builder").exists()
    return _parser().parse_args(argv[1:])


def dask_params(argv: list[str]) -> dict[str, Any]:
    """``dask scheduler|worker …`` through distributed's own click commands."""
    assert argv[0] == "dask" and (BIN / "dask").exists(), argv
    command = {"scheduler": dask_scheduler_cli, "worker": dask_worker_cli}[argv[1]]
    return command.make_context(f"dask {argv[1]}", list(argv[2:])).params


def test_every_yaml_file_parses() -> None:
    files = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
    assert {f.relative_to(DEPLOY).as_posix() for f in files} >= {
        "compose.yaml",
        "kubernetes/daskcluster.yaml",
        "kubernetes/build-job.yaml",
    }
    for path in files:
        assert load_all(path), path


def test_the_builder_entry_point_exists() -> None:
    (script,) = importlib.metadata.entry_points(group="console_scripts", name="builder")
    assert script.value == "builder.cli:main"
    assert (BIN / "builder").exists()


# --- Dockerfile -----------------------------------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in path.read_text().splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        current += raw.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        lines.append(current.strip())
        current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile() -> None:
    instructions = dockerfile_instructions(DEPLOY / "Dockerfile")
    assert instructions[0] == ("FROM", "python:3.11-slim")
    copied = []
    for name, args in instructions:
        if name == "COPY":
            *sources, _ = shlex.split(args)
            assert not any(s.startswith("--") for s in sources), "no --from/--chown copies"
            copied += sources
    for source in copied:  # the build context is the repository root
        assert (REPO / source).exists(), source
    # what `pip install .` needs: the project, its readme and the catalogues it bundles
    assert {"pyproject.toml", "README.md", "builder", "catalogs"} <= {s.rstrip("/") for s in copied}
    runs = " ".join(args for name, args in instructions if name == "RUN")
    assert re.search(r"pip install \.(\s|$)", runs)
    assert "torch" not in (DEPLOY / "Dockerfile").read_text()
    (user,) = [args for name, args in instructions if name == "USER"]
    assert user not in ("root", "0") and "useradd" in runs
    entry = [json.loads(args) for name, args in instructions if name in ("ENTRYPOINT", "CMD")]
    assert entry and entry[-1][0] == "builder"
    with pytest.raises(SystemExit) as done:  # `builder --help`
        builder_args(entry[-1])
    assert done.value.code == 0


def test_dockerignore_keeps_what_the_dockerfile_copies() -> None:
    rules = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    kept = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied = [
        s.rstrip("/")
        for name, args in dockerfile_instructions(DEPLOY / "Dockerfile")
        if name == "COPY"
        for s in shlex.split(args)[:-1]
    ]
    assert "*" in rules and set(copied) <= kept


# --- compose --------------------------------------------------------------------------------


def interpolate(value: Any) -> Any:
    """Compose's ``${VAR:-default}`` / ``${VAR}`` with no variables set."""
    if isinstance(value, str):
        return re.sub(r"\$\{\w+(?::?-([^}]*))?\}", lambda m: m.group(1) or "", value)
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    return value


def test_compose_scheduler_workers_and_build_job() -> None:
    (compose,) = load_all(DEPLOY / "compose.yaml")
    services = interpolate(compose["services"])
    assert {"scheduler", "worker", "build"} <= set(services)
    for name in ("scheduler", "worker", "build"):
        service = services[name]
        assert service["image"] == services["scheduler"]["image"]  # one image for all
        assert (
            DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]
        ).resolve() == (DEPLOY / "Dockerfile")

    scheduler = dask_params(services["scheduler"]["command"])
    assert int(scheduler["port"]) == 8786 and scheduler["host"] == "0.0.0.0"

    worker = services["worker"]
    assert worker["deploy"]["replicas"] == 2
    params = dask_params(worker["command"])
    assert params["scheduler"] == "tcp://scheduler:8786" and params["nthreads"] == 1

    build = services["build"]
    args = builder_args(build["command"])
    assert args.command == "run" and args.cluster == "tcp://scheduler:8786"
    assert cluster_kind(args.cluster) == "address"
    assert args.catalog and args.output

    # workers and the build job see raw data and output at the same paths
    def mounts(service: dict[str, Any]) -> set[str]:
        return {v.split(":")[1] for v in service["volumes"]}

    assert mounts(worker) == mounts(build) >= {"/data/raw", "/data/output"}
    assert args.catalog.startswith("/data/raw/") and args.output.startswith("/data/output/")
    named = {v.split(":")[0] for v in build["volumes"] if not v.startswith((".", "/"))}
    assert named <= set(compose["volumes"])
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        assert key in build["environment"] and key in worker["environment"]
    assert services.get("minio", {}).get("profiles", ["s3"]) == ["s3"]  # optional


# --- Kubernetes -----------------------------------------------------------------------------


def drop_nulls(value: Any) -> Any:
    """What the API server validates: null fields are dropped."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def crd_unknown_fields(value: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Fields the CRD's structural schema does not name (the API server drops them silently)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found = []
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key not in schema["properties"]:
                found.append(f"{where}.{key}")
            else:
                found += crd_unknown_fields(item, schema["properties"][key], f"{where}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += crd_unknown_fields(item, schema["items"], f"{where}[{i}]")
    return found


def assert_valid_daskcluster(resource: dict[str, Any]) -> None:
    """``resource`` against the DaskCluster CRD that the installed dask-kubernetes ships."""
    import dask_kubernetes.operator as operator
    import jsonschema
    crd_path = (
        Path(operator.__file__).parent
        / "deployment/helm/dask-kubernetes-operator/crds/daskcluster.yaml"
    )
    (crd,) = load_all(crd_path)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = version["schema"]["openAPIV3Schema"]
    resource = drop_nulls(resource)
    jsonschema.validate(resource, schema)
    unknown = crd_unknown_fields(
        {k: v for k, v in resource.items() if k not in ("apiVersion", "kind", "metadata")}, schema
    )
    assert not unknown, unknown


def k8s_unknown_fields(value: Any, model: str, where: str = "") -> list[str]:
    """Fields of a core Kubernetes object that its API model (the ``kubernetes`` client's
    ``openapi_types``) does not have: typos the API server would reject or drop."""
    import kubernetes.client as client
    cls = getattr(client, model)
    fields = {json_name: cls.openapi_types[attr] for attr, json_name in cls.attribute_map.items()}
    found = []
    for key, item in value.items():
        if key not in fields:
            found.append(f"{where}.{key}")
            continue
        kind = fields[key]
        listed = re.fullmatch(r"[Ll]ist\[(\w+)\]", kind)
        if listed and hasattr(client, listed.group(1)) and isinstance(item, list):
            for i, element in enumerate(item):
                found += k8s_unknown_fields(element, listed.group(1), f"{where}.{key}[{i}]")
        elif hasattr(client, kind) and isinstance(item, dict):
            found += k8s_unknown_fields(item, kind, f"{where}.{key}")
    return found


@requires_dask_kubernetes
@requires_jsonschema
@requires_kubernetes
def test_kubernetes_manifests_match_their_schemas() -> None:
    documents = load_all(DEPLOY / "kubernetes" / "daskcluster.yaml")
    documents += load_all(DEPLOY / "kubernetes" / "build-job.yaml")
    models = {"PersistentVolumeClaim": "V1PersistentVolumeClaim", "Job": "V1Job"}
    for document in documents:
        if document["kind"] == "DaskCluster":
            assert_valid_daskcluster(document)
        else:
            assert not k8s_unknown_fields(document, models[document["kind"]])


@requires_dask_kubernetes
@requires_jsonschema
def test_the_generated_cluster_spec_matches_the_crd() -> None:
    from builder.cluster import kubernetes_cluster_spec

    config = {
        "kubernetes.image": "registry.example.org/gait-builder:0.1.0",
        "kubernetes.env": {"GAIT_DATA_ROOT": "/data/raw"},
        "kubernetes.custom-cluster-spec": None,
    }
    with dask.config.set(config):
        assert_valid_daskcluster(kubernetes_cluster_spec(3))


def test_kubernetes_daskcluster() -> None:
    documents = load_all(DEPLOY / "kubernetes" / "daskcluster.yaml")
    (cluster,) = [d for d in documents if d["kind"] == "DaskCluster"]
    assert cluster["apiVersion"] == "kubernetes.dask.org/v1"
    claims = {
        d["metadata"]["name"]
        for d in documents
        if (d["apiVersion"], d["kind"]) == ("v1", "PersistentVolumeClaim")
    }
    name = cluster["metadata"]["name"]
    worker_pod = cluster["spec"]["worker"]["spec"]
    scheduler_pod = cluster["spec"]["scheduler"]["spec"]
    (worker,) = worker_pod["containers"]
    (scheduler,) = scheduler_pod["containers"]
    assert worker["image"] == scheduler["image"]
    assert cluster["spec"]["worker"]["replicas"] >= 1
    assert dask_params(worker["args"])["nthreads"] == 1
    assert dask_params(scheduler["args"])["host"] == "0.0.0.0"
    assert {p["containerPort"] for p in scheduler["ports"]} == {8786, 8787}
    service = cluster["spec"]["scheduler"]["service"]
    assert service["selector"] == {"dask.org/cluster-name": name, "dask.org/component": "scheduler"}
    assert {p["port"] for p in service["ports"]} == {8786, 8787}
    volumes = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in worker_pod["volumes"]}
    assert set(volumes.values()) <= claims
    assert {m["name"] for m in worker["volumeMounts"]} <= set(volumes)
    for pod in (worker_pod, scheduler_pod):
        assert pod["securityContext"]["runAsNonRoot"] is True


def test_kubernetes_build_job() -> None:
    (job,) = load_all(DEPLOY / "kubernetes" / "build-job.yaml")
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    documents = load_all(DEPLOY / "kubernetes" / "daskcluster.yaml")
    (cluster,) = [d for d in documents if d["kind"] == "DaskCluster"]
    claims = {d["metadata"]["name"] for d in documents if d["kind"] == "PersistentVolumeClaim"}

    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    args = builder_args(container["command"] + container.get("args", []))
    assert args.command == "run"
    assert args.cluster == f"tcp://{cluster['metadata']['name']}-scheduler:8786"
    (worker,) = cluster["spec"]["worker"]["spec"]["containers"]
    assert container["image"] == worker["image"]
    # the job sees the raw data and the output where the workers do
    assert {m["mountPath"] for m in container["volumeMounts"]} == {
        m["mountPath"] for m in worker["volumeMounts"]
    }
    assert {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]} <= claims
    assert args.catalog.startswith("/data/raw/") and args.output.startswith("/data/output/")


# --- SLURM ----------------------------------------------------------------------------------

SBATCH = DEPLOY / "slurm" / "build.sbatch"


def sbatch_defaults() -> dict[str, str]:
    """``NAME=${NAME:-default}`` assignments of the script (``export`` or not), defaults taken
    (``$HOME`` and ``$PWD`` as given)."""
    values = {}
    for line in SBATCH.read_text().splitlines():
        found = re.match(r"^(?:export )?(\w+)=\$\{\1:-(.*)\}$", line.strip())
        if found:
            values[found.group(1)] = found.group(2)
    return values


def test_sbatch_script_syntax_and_directives() -> None:
    subprocess.run(["bash", "-n", str(SBATCH)], check=True)
    text = SBATCH.read_text()
    assert text.startswith("#!/bin/bash\n")
    assert re.search(r"^#SBATCH --time=", text, re.MULTILINE)


def test_sbatch_builder_command_parses() -> None:
    text = SBATCH.read_text().replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if line.strip().startswith("builder ")]
    values = sbatch_defaults()
    argv = [
        re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), arg)
        for arg in shlex.split(line)
    ]
    args = builder_args(argv)
    assert args.command == "run" and args.cluster == "slurm" and cluster_kind("slurm") == "slurm"
    assert args.workers == int(values["GAIT_JOBS"])
    assert args.catalog and args.output


def test_sbatch_jobqueue_config_makes_a_worker_job() -> None:
    values = {k: v for k, v in sbatch_defaults().items() if k.startswith("DASK_")}
    config = dask.config.collect_env(values)
    slurm = config["jobqueue"]["slurm"]
    assert slurm["cores"] == 16 and slurm["memory"] == "64GB" and slurm["walltime"] == "04:00:00"

    import_optional("jobqueue")  # after the checks that need no dask-jobqueue
    from builder.cluster import slurm_cluster

    settings = {f"jobqueue.slurm.{k}": v for k, v in slurm.items()}
    settings["jobqueue.slurm.log-directory"] = None  # not created here
    settings["jobqueue.slurm.local-directory"] = os.environ.get("TMPDIR", "/tmp")
    with dask.config.set(settings), slurm_cluster(":0") as cluster:
        script = cluster.job_script()
    assert "--cpus-per-task=16" in script and "-t 04:00:00" in script
    assert "--nthreads 1 " in script and "--nworkers 16 " in script


def test_deploy_readme_explains_every_file() -> None:
    readme = (DEPLOY / "README.md").read_text()
    for path in sorted(DEPLOY.rglob("*")):
        if path.is_file() and path.name != "README.md":
            assert path.relative_to(DEPLOY).as_posix() in readme, path


# --- export folders and releases (issue 10: storage that never deletes what it does not own) --


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gait-phase run with untrained weights: enough for ``export`` (no store, no training)."""
    torch = import_optional("torch")
    import_optional("onnxruntime")
    from builder.training.nets import FeatureMLP, mlp

    run = tmp_path_factory.mktemp("run")
    n = 20
    net = FeatureMLP([0.0] * n, [1.0] * n, mlp([n, 8, 8, 4]))
    config = {"hidden": 8, "features": n, "phases": ["a", "b", "c", "d"]}
    weights = {"classifier": net.state_dict()}
    torch.save({"model": "gait-phase", "config": config, "weights": weights}, run / "checkpoint.pt")
    (run / "metrics.json").write_text("{}\n")
    return run


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (links not followed) and its bytes."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def test_export_claims_a_new_or_empty_folder(quick_run: Path, tmp_path: Path) -> None:
    from builder.store.ownership import MARKER
    from builder.training.export import export

    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "new" / "release", tmp_path / "empty"):
        export(quick_run, out, engines=False)
        assert sorted(p.name for p in out.iterdir()) == [
            MARKER, "manifest.json", "metrics.json", "model.onnx"
        ]  # fmt: skip
        assert json.loads((out / MARKER).read_text())["kind"] == "release"


def test_export_replaces_its_own_release_and_only_its_files(
    quick_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from builder.errors import TrainingError
    from builder.store.ownership import MARKER, NotOwnedError
    from builder.training import export as export_module

    out = tmp_path / "release"
    export_module.export(quick_run, out, engines=False)
    (out / "model.fp16.engine").write_bytes(b"an engine of the previous release")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["tensorrt"]["built"] = [{"precision": "fp16", "file": "model.fp16.engine"}]
    (out / "manifest.json").write_text(json.dumps(manifest))
    export_module.export(quick_run, out, engines=False)  # the previous release's engine goes
    assert sorted(p.name for p in out.iterdir()) == [
        MARKER, "manifest.json", "metrics.json", "model.onnx"
    ]  # fmt: skip

    # a failed export leaves the previous release as it was
    before = tree(out)
    failing = {"max_abs_diff": 1.0, "batch_sizes": [1], "tolerance": 1e-4}
    monkeypatch.setattr(export_module, "check_parity", lambda *a, **k: failing)
    with pytest.raises(TrainingError, match="onnxruntime differs from PyTorch"):
        export_module.export(quick_run, out, engines=False)
    assert tree(out) == before
    monkeypatch.undo()

    # a file the builder did not write there: refused, nothing changed
    (out / "notes.txt").write_text("mine")
    before = tree(out)
    with pytest.raises(NotOwnedError, match=r"release: holds files .*notes\.txt") as info:
        export_module.export(quick_run, out, engines=False)
    assert "\n" not in str(info.value) and tree(out) == before


def test_export_refuses_a_folder_it_did_not_create_or_a_link(
    quick_run: Path, tmp_path: Path
) -> None:
    from builder.store.ownership import NotOwnedError, claim_local
    from builder.training.export import export

    theirs = tmp_path / "theirs"
    (theirs / "chapter").mkdir(parents=True)
    (theirs / "thesis.tex").write_text("years of work")
    (theirs / "chapter" / "one.tex").write_text("more")
    before = tree(theirs)
    with pytest.raises(NotOwnedError, match=r"theirs: holds data the builder did not create"):
        export(quick_run, theirs, engines=False)
    assert tree(theirs) == before

    link = tmp_path / "link"
    link.symlink_to(theirs)
    with pytest.raises(NotOwnedError, match=r"link: is a symbolic link"):
        export(quick_run, link, engines=False)
    assert tree(theirs) == before and link.is_symlink()

    (tmp_path / "file").write_text("a file")
    with pytest.raises(NotOwnedError, match=r"file: exists and is a file"):
        export(quick_run, tmp_path / "file", engines=False)

    store = tmp_path / "gait.zarr"  # the builder's, but not a release
    claim_local(store, "store")
    (store / "zarr.json").write_text("{}")
    with pytest.raises(NotOwnedError, match=r"gait\.zarr: is not a release folder"):
        export(quick_run, store, engines=False)
    assert sorted(tree(store)) == [".gait-builder", "zarr.json"]


def test_cli_export_refuses_a_foreign_folder_in_one_line(
    quick_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from builder.cli import main

    (tmp_path / "data.csv").write_text("1,2\n")
    assert main(["export", str(quick_run), "--out", str(tmp_path), "--no-engines"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds data the builder did not create" in err
    assert (tmp_path / "data.csv").read_text() == "1,2\n"


def test_an_exported_folder_pushes_and_pulls_without_its_marker(
    quick_run: Path, tmp_path: Path
) -> None:
    from builder.store.ownership import MARKER
    from builder.training import releases
    from builder.training.export import export

    folder = export(quick_run, tmp_path / "release", engines=False).folder
    assert (folder / MARKER).exists()
    url = str(tmp_path / "bucket")
    pushed = releases.push(folder, url)
    assert pushed.manifest is not None
    assert set(pushed.manifest["files"]) == {"model.onnx", "metrics.json"}
    assert not (tmp_path / "bucket" / "gait-phase" / "v1" / MARKER).exists()
    pulled = releases.pull(url, "gait-phase", tmp_path / "got")
    assert (pulled / "model.onnx").read_bytes() == (folder / "model.onnx").read_bytes()
    assert releases.pull(url, "gait-phase", tmp_path / "got") == pulled  # its own: replaced


def test_pull_never_replaces_a_folder_it_did_not_pull(quick_run: Path, tmp_path: Path) -> None:
    from builder.errors import BuilderError
    from builder.training import releases
    from builder.training.export import export

    url = str(tmp_path / "bucket")
    releases.push(export(quick_run, tmp_path / "release", engines=False).folder, url)
    theirs = tmp_path / "got" / "gait-phase-v1"
    theirs.mkdir(parents=True)
    (theirs / "tuned.onnx").write_bytes(b"a model someone tuned by hand")
    with pytest.raises(BuilderError, match="was not pulled by the builder"):
        releases.pull(url, "gait-phase", tmp_path / "got")
    assert os.listdir(theirs) == ["tuned.onnx"]
    assert os.listdir(tmp_path / "got") == ["gait-phase-v1"]  # no scratch left either


def small_release(folder: Path, model: str = "hip-moment") -> Path:
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"onnx bytes")
    (folder / "manifest.json").write_text(json.dumps({"model": model, "files": {}}))
    return folder


@requires_torch
@pytest.mark.parametrize(
    ("corrupt", "problem"),
    [
        (b"{not json", r"manifest is not JSON"),
        (b'{"files": {}}', r"not a release manifest \(no model\)"),
        (
            b'{"model": "hip-moment", "files": ["model.onnx"]}',
            r"not a release manifest \(files is not a mapping\)",
        ),
    ],
)
def test_a_corrupt_release_is_skipped_with_a_warning(
    tmp_path: Path, corrupt: bytes, problem: str
) -> None:
    from builder.errors import TrainingError
    from builder.training import releases

    url = str(tmp_path / "bucket")
    folder = small_release(tmp_path / "release")
    releases.push(folder, url)
    releases.push(small_release(tmp_path / "other", "gait-phase"), url)
    releases.push(folder, url)
    bad = tmp_path / "bucket" / "hip-moment" / "v2" / "manifest.json"
    bad.write_bytes(corrupt)

    with pytest.warns(releases.ReleaseWarning, match=rf"v2/manifest\.json: {problem}"):
        listed = releases.list_releases(url)
    assert [(r.model, r.version) for r in listed if r.manifest] == [
        ("gait-phase", "v1"), ("hip-moment", "v1")
    ]  # fmt: skip
    with pytest.warns(releases.ReleaseWarning, match=r"v2/manifest\.json"):
        pulled = releases.pull(url, "hip-moment", tmp_path / "got")
    assert pulled.name == "hip-moment-v1"
    assert releases.pull(url, "gait-phase", tmp_path / "got").name == "gait-phase-v1"
    with pytest.raises(TrainingError, match=rf"v2/manifest\.json: {problem}") as info:
        releases.pull(url, "hip-moment", tmp_path / "got", version="v2")
    assert "\n" not in str(info.value)
    # the corrupt version keeps its number: the next push is v3, v2 is never overwritten
    assert releases.push(folder, url).version == "v3" and bad.read_bytes() == corrupt


@requires_torch
@pytest.mark.parametrize("field", ["bytes", "sha256"])
def test_a_files_entry_without_size_or_sum_is_a_one_line_error(tmp_path: Path, field: str) -> None:
    from builder.errors import TrainingError
    from builder.training import releases

    url = str(tmp_path / "bucket")
    releases.push(small_release(tmp_path / "release"), url)
    path = tmp_path / "bucket" / "hip-moment" / "v1" / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["files"]["model.onnx"][field]
    path.write_text(json.dumps(manifest))
    with pytest.raises(
        TrainingError, match=rf"v1/manifest\.json: files entry 'model\.onnx' .*{field}"
    ):
        releases.pull(url, "hip-moment", tmp_path / "got", version="v1")
    assert not (tmp_path / "got").exists() or not list((tmp_path / "got").iterdir())


@requires_torch
def test_cli_engines_warns_once_about_a_corrupt_release(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from builder.cli import main
    from builder.training import releases

    url = str(tmp_path / "bucket")
    folder = small_release(tmp_path / "release")
    releases.push(folder, url)
    releases.push(folder, url)
    (tmp_path / "bucket" / "hip-moment" / "v2" / "manifest.json").write_text("{oops")
    for argv in (["list", url], ["pull", url, "hip-moment", "--to", str(tmp_path / "got")]):
        assert main(["engines", *argv]) == 0
        captured = capsys.readouterr()
        (line,) = captured.err.splitlines()
        assert "warning:" in line and "v2/manifest.json: manifest is not JSON" in line
    assert (tmp_path / "got" / "hip-moment-v1" / "model.onnx").exists()
    exact = ["engines", "pull", url, "hip-moment", "--version", "v2", "--to", str(tmp_path / "x")]
    assert main(exact) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error:") and "v2/manifest.json: manifest is not JSON" in line

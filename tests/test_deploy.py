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

REPO = Path(__file__).resolve().parents[1]
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
    jsonschema = pytest.importorskip("jsonschema")
    operator = pytest.importorskip(
        "dask_kubernetes.operator", reason="dask-kubernetes not installed (extra: kubernetes)"
    )
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
    client = pytest.importorskip("kubernetes.client", reason="kubernetes client not installed")
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


def test_kubernetes_manifests_match_their_schemas() -> None:
    documents = load_all(DEPLOY / "kubernetes" / "daskcluster.yaml")
    documents += load_all(DEPLOY / "kubernetes" / "build-job.yaml")
    models = {"PersistentVolumeClaim": "V1PersistentVolumeClaim", "Job": "V1Job"}
    for document in documents:
        if document["kind"] == "DaskCluster":
            assert_valid_daskcluster(document)
        else:
            assert not k8s_unknown_fields(document, models[document["kind"]])


def test_the_generated_cluster_spec_matches_the_crd() -> None:
    pytest.importorskip("dask_kubernetes.operator", reason="dask-kubernetes not installed")
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

    pytest.importorskip("dask_jobqueue", reason="dask-jobqueue not installed (extra: slurm)")
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

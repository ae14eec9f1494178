"""``builder.cluster``: what each ``--cluster`` value starts, checked here without SLURM or
Kubernetes (the SLURM worker job and the DaskCluster resource are built, never submitted)."""

from __future__ import annotations

import contextlib
import shlex
import socket
import subprocess
import sys
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import pytest
from distributed.cli.dask_scheduler import main as dask_scheduler_cli
from distributed.cli.dask_worker import main as dask_worker_cli

from builder.cli import main
from builder.cluster import (
    cluster_kind,
    configured_cluster,
    connect,
    free_dashboard_address,
    kubernetes_cluster_spec,
    slurm_cluster,
)
from builder.errors import BuilderError

from helpers import (
    REPO,
    copy_demo_subset,
    demo_catalog,
    installed,
    requires_dask_kubernetes,
    requires_jobqueue,
)

DASK = Path(sys.executable).with_name("dask")  # the `dask` command of this environment

if installed("jobqueue"):
    # Its import adds its config defaults; imported inside a test's dask.config.set block they
    # would leave with the block.
    import dask_jobqueue  # noqa: F401

SLURM_CONFIG: dict[str, Any] = {
    "jobqueue.slurm.cores": 4,
    "jobqueue.slurm.memory": "16GB",
    "jobqueue.slurm.processes": None,  # builder.cluster's default: one process per core
    "jobqueue.slurm.walltime": "01:30:00",
    "jobqueue.slurm.queue": "gait",
    "jobqueue.slurm.python": None,  # dask-jobqueue's default: this interpreter
    "jobqueue.slurm.job-script-prologue": [],
    "jobqueue.slurm.worker-extra-args": [],
    "jobqueue.slurm.scheduler-options": {},
    "jobqueue.slurm.interface": None,
    "jobqueue.slurm.local-directory": None,
    "jobqueue.slurm.log-directory": None,
}
IMAGE = "registry.example.org/gait-builder:0.1.0"
KUBERNETES_CONFIG: dict[str, Any] = {
    "kubernetes.image": IMAGE,
    "kubernetes.name": "gait-{user}-{uuid}",
    "kubernetes.env": {"GAIT_DATA_ROOT": "/data/raw"},
    "kubernetes.resources": {},
    "kubernetes.worker-command": "dask-worker",  # dask-kubernetes' default
    "kubernetes.count.start": 0,
    "kubernetes.custom-cluster-spec": None,
}


def one_line(message: str) -> bool:
    return "\n" not in message.strip()


# --- which cluster a value names ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (None, "local"),
        ("", "local"),
        ("tcp://10.0.0.5:8786", "address"),
        ("tls://scheduler.example.org:8786", "address"),
        ("ws://scheduler:8786", "address"),
        ("scheduler:8786", "address"),
        ("[::1]:8786", "address"),
        ("slurm", "slurm"),
        ("Kubernetes", "kubernetes"),
    ],
)
def test_cluster_kind(value: str | None, kind: str) -> None:
    assert cluster_kind(value) == kind


@pytest.mark.parametrize("value", ["pbs", "slurm:8786x", "tcp:/host", "host:port"])
def test_an_unknown_cluster_is_a_one_line_error(value: str) -> None:
    with pytest.raises(BuilderError) as error:
        cluster_kind(value)
    message = str(error.value)
    assert one_line(message) and repr(value) in message
    assert "slurm" in message and "kubernetes" in message and "tcp://host:8786" in message


# --- bare --cluster: the cluster this environment is set up for -------------------------------

NOTHING_CONFIGURED = {"scheduler-address": None, "builder.cluster": None}


@pytest.fixture
def unconfigured(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No scheduler address nor builder.cluster in the environment or Dask's config."""
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    with dask.config.set(NOTHING_CONFIGURED):
        yield


def test_configured_cluster_prefers_the_scheduler_dask_is_configured_with(
    unconfigured: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with dask.config.set({"builder.cluster": "slurm"}):
        assert configured_cluster() == "slurm"
        with dask.config.set({"scheduler-address": "tcp://10.0.0.5:8786"}):
            assert configured_cluster() == "tcp://10.0.0.5:8786"
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "scheduler:8786")  # set after Dask's import
        assert configured_cluster() == "scheduler:8786"
    with dask.config.set({"builder.cluster": "kubernetes"}):
        assert configured_cluster() == "scheduler:8786"
        monkeypatch.delenv("DASK_SCHEDULER_ADDRESS")
        assert configured_cluster() == "kubernetes"


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, "set DASK_SCHEDULER_ADDRESS=tcp://host:8786"),
        ({"builder.cluster": "pbs"}, "Dask config builder.cluster 'pbs' is neither"),
        ({"scheduler-address": "slurm"}, "scheduler-address) 'slurm' is not a scheduler address"),
    ],
)
def test_configured_cluster_errors_say_what_to_set(
    unconfigured: None, config: dict[str, str], expected: str
) -> None:
    with dask.config.set(config), pytest.raises(BuilderError) as error:
        configured_cluster()
    message = str(error.value)
    assert one_line(message) and expected in message, message


def test_cli_bare_cluster_with_nothing_configured_is_one_line(
    unconfigured: None, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    catalog = tmp_path / "never-read.yaml"  # the error comes before anything is read
    assert main(["run", "--catalog", str(catalog), "--output", str(tmp_path / "g.zarr"),
                 "--cluster", "--no-progress"]) == 1  # fmt: skip
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --cluster with no value: no cluster configured; set "), line
    assert "DASK_BUILDER__CLUSTER=slurm|kubernetes" in line
    assert not (tmp_path / "g.zarr.build").exists()


# --- the dashboard's port ---------------------------------------------------------------------


@contextlib.contextmanager
def occupied(port: int = 0) -> Iterator[int]:
    """A port held by a listening socket (``0``: any free one); yields its number."""
    with socket.socket() as holder:
        holder.bind(("", port))
        holder.listen()
        yield holder.getsockname()[1]


def test_free_dashboard_address_keeps_a_free_port_and_replaces_a_taken_one() -> None:
    with occupied() as taken:
        assert free_dashboard_address(f":{taken}") == ":0"
        assert free_dashboard_address(f"127.0.0.1:{taken}") == "127.0.0.1:0"
    with occupied() as free:
        pass  # closed: free again
    assert free_dashboard_address(f":{free}") == f":{free}"
    assert free_dashboard_address(":0") == ":0"


@pytest.mark.cluster
def test_a_taken_dashboard_port_gives_a_working_link_and_no_warning() -> None:
    with occupied() as taken, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with connect(None, 1, f":{taken}") as client:
            link = client.dashboard_link
            with urllib.request.urlopen(link, timeout=60) as answer:
                assert answer.status == 200
    assert f":{taken}/" not in link and link.startswith("http://")
    assert not [w for w in caught if "already in use" in str(w.message)], caught


@pytest.mark.cluster
def test_the_cli_prints_a_working_dashboard_link_when_8787_is_taken(
    demo_root: Path, tmp_path: Path
) -> None:
    """The default port taken (by this test, or by anyone else): no Dask warning on stderr,
    and the printed link names another port."""
    catalog = demo_catalog(tmp_path, copy_demo_subset(demo_root, tmp_path / "raw", ("S02",)))
    with contextlib.ExitStack() as stack:
        with contextlib.suppress(OSError):  # already taken: just as good
            stack.enter_context(occupied(8787))
        run = subprocess.run(
            [sys.executable, "-m", "builder", "run", "--catalog", str(catalog), "--workers", "1",
             "--output", str(tmp_path / "gait.zarr"), "--no-progress"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "already in use" not in run.stderr + run.stdout, run.stderr
    (link,) = [line for line in run.stderr.splitlines() if line.startswith("Dask dashboard: ")]
    assert link.startswith("Dask dashboard: http://") and ":8787/" not in link, link


@pytest.mark.parametrize(
    ("kind", "module"), [("slurm", "dask_jobqueue"), ("kubernetes", "dask_kubernetes.operator")]
)
def test_a_missing_extra_is_a_one_line_error_naming_it(
    kind: str, module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with (
        dask.config.set({**SLURM_CONFIG, **KUBERNETES_CONFIG}),
        pytest.raises(BuilderError) as error,
        connect(kind, 2, ":0"),
    ):
        pass
    message = str(error.value)
    assert one_line(message)
    assert f"pip install 'gait-builder[{kind}]'" in message


def cli_error(catalog: Path, output: Path, cluster: str, capsys: pytest.CaptureFixture) -> str:
    """The error line ``builder run --cluster CLUSTER`` ends with (exit code 1)."""
    run = ["run", "--catalog", str(catalog), "--output", str(output), "--no-progress"]
    assert main([*run, "--cluster", cluster]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: "), lines  # the build's own lines come before
    return lines[-1]


def test_cli_error_for_an_unknown_cluster_is_one_line(
    demo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    catalog = demo_catalog(tmp_path, demo_root)
    line = cli_error(catalog, tmp_path / "gait.zarr", "pbs", capsys)
    assert line.startswith("error: --cluster 'pbs': neither a scheduler address"), line


def test_cli_error_for_a_missing_extra_names_it(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    catalog = demo_catalog(tmp_path, demo_root)
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)
    line = cli_error(catalog, tmp_path / "gait.zarr", "slurm", capsys)
    assert "pip install 'gait-builder[slurm]'" in line, line


# --- local and existing clusters --------------------------------------------------------------


@pytest.mark.cluster
def test_local_cluster_and_an_existing_scheduler() -> None:
    with connect(None, 2, ":0") as client:
        assert sorted(client.nthreads().values()) == [1, 1]  # processes, one thread each
        address = client.scheduler.address
        with connect(address, None, ":0") as remote:
            assert remote.scheduler.address == address
            assert remote.submit(sum, [1, 2]).result() == 3
        host_port = address.removeprefix("tcp://")
        with connect(host_port, None, ":0") as remote:
            assert len(remote.nthreads()) == 2


def test_an_unreachable_scheduler_is_a_one_line_error() -> None:
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "1s"}),
        pytest.raises(BuilderError) as error,
        connect("tcp://127.0.0.1:9", None, ":0"),
    ):
        pass
    message = str(error.value)
    assert one_line(message) and message.startswith("--cluster tcp://127.0.0.1:9: cannot reach")


# --- SLURM (dask-jobqueue) ------------------------------------------------------------------


@requires_jobqueue
def test_slurm_worker_job_runs_single_threaded_workers_with_the_configured_resources() -> None:
    with dask.config.set(SLURM_CONFIG), slurm_cluster(":0") as cluster:
        assert not cluster.workers and not cluster.worker_spec  # no job submitted
        script = cluster.job_script()
        scheduler = cluster.scheduler_address

    directives = [
        line.split(None, 1)[1] for line in script.splitlines() if line.startswith("#SBATCH")
    ]
    assert "--cpus-per-task=4" in directives
    assert "-t 01:30:00" in directives and "-p gait" in directives
    assert any(d.startswith("--mem=") for d in directives)
    (command,) = [line for line in script.splitlines() if "distributed.cli.dask_worker" in line]
    argv = shlex.split(command)
    assert argv[:3] == [sys.executable, "-m", "distributed.cli.dask_worker"]
    params = dask_worker_cli.make_context("dask worker", argv[3:]).params
    assert params["scheduler"] == scheduler
    assert params["nthreads"] == 1
    assert int(params["n_workers"]) == 4  # one worker process per configured core
    assert params["memory_limit"] == "3.73GiB"  # 16 GB over 4 processes
    assert params["nanny"] is True


@requires_jobqueue
def test_slurm_processes_from_the_config_win() -> None:
    config = {**SLURM_CONFIG, "jobqueue.slurm.processes": 2}
    with dask.config.set(config), slurm_cluster(":0") as cluster:
        script = cluster.job_script()
    (command,) = [line for line in script.splitlines() if "distributed.cli.dask_worker" in line]
    params = dask_worker_cli.make_context("dask worker", shlex.split(command)[3:]).params
    assert (params["nthreads"], int(params["n_workers"])) == (2, 2)


@requires_jobqueue
def test_slurm_without_cores_or_sbatch_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {**SLURM_CONFIG, "jobqueue.slurm.cores": None}
    with dask.config.set(config), pytest.raises(BuilderError) as error, slurm_cluster(":0"):
        pass
    assert one_line(str(error.value)) and "DASK_JOBQUEUE__SLURM__CORES" in str(error.value)

    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch: nothing can be submitted
    with (
        dask.config.set(SLURM_CONFIG),
        pytest.raises(BuilderError) as error,
        connect("slurm", 2, ":0"),
    ):
        pass
    assert one_line(str(error.value)) and "'sbatch' not found" in str(error.value)


# --- Kubernetes (dask-kubernetes operator) --------------------------------------------------


@requires_dask_kubernetes
def test_kubernetes_cluster_spec_names_the_image_the_workers_and_their_command() -> None:
    with dask.config.set(KUBERNETES_CONFIG):
        spec = kubernetes_cluster_spec(3)
    assert (spec["apiVersion"], spec["kind"]) == ("kubernetes.dask.org/v1", "DaskCluster")
    name = spec["metadata"]["name"]
    assert name.startswith("gait-") and name == name.lower() and len(name) <= 63
    worker = spec["spec"]["worker"]
    assert worker["replicas"] == 3
    (worker_container,) = worker["spec"]["containers"]
    (scheduler_container,) = spec["spec"]["scheduler"]["spec"]["containers"]
    assert worker_container["image"] == scheduler_container["image"] == IMAGE
    assert {"name": "GAIT_DATA_ROOT", "value": "/data/raw"} in worker_container["env"]
    assert spec["spec"]["scheduler"]["service"]["selector"]["dask.org/cluster-name"] == name

    args = worker_container["args"]
    assert args[:2] == ["dask", "worker"] and DASK.exists()  # not the removed `dask-worker`
    params = dask_worker_cli.make_context("dask worker", args[2:]).params
    assert params["nthreads"] == 1
    args = scheduler_container["args"]
    assert args[:2] == ["dask", "scheduler"]
    assert dask_scheduler_cli.make_context("dask scheduler", args[2:]).params["host"] == "0.0.0.0"


@requires_dask_kubernetes
def test_kubernetes_worker_count_and_command_from_the_config() -> None:
    config = {
        **KUBERNETES_CONFIG,
        "kubernetes.count.start": 5,
        "kubernetes.worker-command": "dask worker --nthreads 2",
    }
    with dask.config.set(config):
        spec = kubernetes_cluster_spec(None)
    assert spec["spec"]["worker"]["replicas"] == 5
    (container,) = spec["spec"]["worker"]["spec"]["containers"]
    assert (
        dask_worker_cli.make_context("dask worker", container["args"][2:]).params["nthreads"] == 2
    )


@requires_dask_kubernetes
def test_kubernetes_refuses_the_stock_dask_image() -> None:
    stock = {**KUBERNETES_CONFIG, "kubernetes.image": "ghcr.io/dask/dask:latest"}
    with dask.config.set(stock), pytest.raises(BuilderError) as error:
        kubernetes_cluster_spec(2)
    assert one_line(str(error.value)) and "DASK_KUBERNETES__IMAGE" in str(error.value)
    pip = {**stock, "kubernetes.env": {"EXTRA_PIP_PACKAGES": "gait-builder"}}
    with dask.config.set(pip):
        assert kubernetes_cluster_spec(2)["spec"]["worker"]["replicas"] == 2


@requires_dask_kubernetes
def test_kubernetes_custom_cluster_spec_is_the_deploy_manifest() -> None:
    manifest = REPO / "deploy" / "kubernetes" / "daskcluster.yaml"
    config = {**KUBERNETES_CONFIG, "kubernetes.custom-cluster-spec": str(manifest)}
    with dask.config.set(config):
        spec = kubernetes_cluster_spec(6)
        again = kubernetes_cluster_spec(None)
    assert spec["kind"] == "DaskCluster" and spec["metadata"]["name"] == "gait-builder"
    assert spec["spec"]["worker"]["replicas"] == 6
    assert again["spec"]["worker"]["replicas"] == 4  # the manifest's own count
    (container,) = spec["spec"]["worker"]["spec"]["containers"]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/data/raw", "/data/output"}


@requires_dask_kubernetes
def test_kubernetes_without_credentials_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with (
        dask.config.set(KUBERNETES_CONFIG),
        pytest.raises(BuilderError) as error,
        connect("kubernetes", 2, ":0"),
    ):
        pass
    assert one_line(str(error.value)) and "no Kubernetes credentials" in str(error.value)

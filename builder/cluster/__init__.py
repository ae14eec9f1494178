"""The Dask cluster a build runs on: ``builder run [--cluster ADDRESS|slurm|kubernetes]``.

``connect(cluster, workers, dashboard_address)`` is a context manager that yields a
``dask.distributed.Client`` and tears down whatever it started:

==============================================  =================================================
``cluster``                                     what runs the trials
==============================================  =================================================
``None`` (no ``--cluster``)                     a ``LocalCluster``: ``workers`` single-threaded
                                                worker processes (default: CPU count)
``tcp://host:8786``, ``tls://…``, ``ws://…``,   an existing scheduler (``dask scheduler``, a
``host:8786``                                   compose or Dask-operator cluster); ``workers`` is
                                                ignored
``slurm``                                       ``dask_jobqueue.SLURMCluster``: the scheduler
                                                runs in this process, ``workers`` SLURM jobs
                                                (default 1) each run ``cores`` single-threaded
                                                worker processes; extra ``gait-builder[slurm]``
``kubernetes``                                  ``dask_kubernetes.operator.KubeCluster``: a
                                                ``DaskCluster`` resource with ``workers`` worker
                                                pods (default 2), one single-threaded worker
                                                each; extra ``gait-builder[kubernetes]``
==============================================  =================================================

``builder run --cluster`` with no value builds on the cluster this environment is set up for
(``configured_cluster()``): the scheduler Dask is configured with (``DASK_SCHEDULER_ADDRESS``,
or the Dask config key ``scheduler-address``), else the Dask config key ``builder.cluster``
(``DASK_BUILDER__CLUSTER=slurm``, or ``builder: {cluster: slurm}`` in
``~/.config/dask/builder.yaml``: ``slurm``, ``kubernetes`` or a scheduler address).

A dashboard this process starts (a local cluster's, a SLURM cluster's scheduler) takes the
port asked for, or a free one where that one is taken (quietly: the link printed is the one
that works).

Resources come from Dask's configuration system (YAML files in ``~/.config/dask/``, or
``DASK_*`` environment variables where ``__`` separates levels), never from the command line;
``builder.cluster.slurm`` and ``builder.cluster.kubernetes`` list the keys each reads.
Worker logs (``connect(..., log_file=PATH)``): ``builder.cluster.logs``.

Whatever the cluster, its scheduler and workers run the same gait-builder and Python
environment as the client (the same image, or the same virtual environment on a shared
filesystem), and the workers see the raw files at the paths the catalogue names and the output
at the path given to ``--output`` (a shared filesystem or object-storage URLs).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from collections.abc import Iterator

import dask.config
from dask.distributed import Client, LocalCluster

from builder.cluster._dashboard import _quiet_dashboard_port, free_dashboard_address
from builder.cluster._extras import EXTRAS, KINDS, _require
from builder.cluster.kubernetes import (
    DEFAULT_KUBERNETES_WORKERS,
    STOCK_DASK_IMAGE,
    _kubernetes_credentials,
    kubernetes_cluster_spec,
)
from builder.cluster.logs import log_workers_to, logs_to_file
from builder.cluster.slurm import (
    DEFAULT_SLURM_JOBS,
    DEFAULT_SLURM_POLL,
    REPLACEMENTS_PER_JOB,
    SlurmJobWatcher,
    _slurm_submit_command,
    slurm_cluster,
    slurm_poll_interval,
    slurm_replacements,
)
from builder.errors import BuilderError, one_line

__all__ = [
    "DEFAULT_KUBERNETES_WORKERS",
    "DEFAULT_SLURM_JOBS",
    "DEFAULT_SLURM_POLL",
    "EXTRAS",
    "KINDS",
    "REPLACEMENTS_PER_JOB",
    "STOCK_DASK_IMAGE",
    "SlurmJobWatcher",
    "cluster_kind",
    "configured_cluster",
    "connect",
    "free_dashboard_address",
    "kubernetes_cluster_spec",
    "log_workers_to",
    "logs_to_file",
    "slurm_cluster",
    "slurm_poll_interval",
    "slurm_replacements",
]

# tcp://host:8786, tls://…, ws://…, ucx://…, inproc://…; or host:port, [ipv6]:port
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$", re.IGNORECASE)
_HOST_PORT = re.compile(r"^(\[[0-9a-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}$", re.IGNORECASE)


def cluster_kind(cluster: str | None) -> str:
    """``"local"``, ``"address"``, ``"slurm"`` or ``"kubernetes"`` for a ``--cluster`` value."""
    if cluster is None or not cluster.strip():
        return "local"
    text = cluster.strip()
    if _URL.match(text) or _HOST_PORT.match(text):
        return "address"
    if text.lower() in KINDS:
        return text.lower()
    raise BuilderError(
        f"--cluster {cluster!r}: neither a scheduler address (tcp://host:8786, host:8786) "
        f"nor a cluster to start ({', '.join(KINDS)})"
    )


def configured_cluster() -> str:
    """What bare ``--cluster`` names: the scheduler address Dask is configured with
    (``DASK_SCHEDULER_ADDRESS`` / config ``scheduler-address``), else the config key
    ``builder.cluster`` (``slurm``, ``kubernetes`` or an address); else a one-line error
    saying what to set."""
    address = dask.config.get("scheduler-address", None) or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address:
        if cluster_kind(str(address)) != "address":
            raise BuilderError(
                f"--cluster: DASK_SCHEDULER_ADDRESS (Dask config scheduler-address) {address!r} "
                "is not a scheduler address (tcp://host:8786)"
            )
        return str(address).strip()
    kind = dask.config.get("builder.cluster", None)
    if kind:
        try:
            cluster_kind(str(kind))
        except BuilderError:
            raise BuilderError(
                f"--cluster: Dask config builder.cluster {kind!r} is neither a scheduler address "
                f"nor one of {', '.join(KINDS)}"
            ) from None
        return str(kind).strip()
    raise BuilderError(
        "--cluster with no value: no cluster configured; set DASK_SCHEDULER_ADDRESS="
        "tcp://host:8786 (a running scheduler) or the Dask config key builder.cluster "
        f"(DASK_BUILDER__CLUSTER={'|'.join(KINDS)}), or name one: --cluster ADDRESS|slurm"
    )


@contextlib.contextmanager
def connect(
    cluster: str | None,
    workers: int | None = None,
    dashboard_address: str = ":8787",
    log_file: str | None = None,
) -> Iterator[Client]:
    """A client of the cluster ``cluster`` names (see the module docstring); what this starts
    (a local cluster, SLURM jobs, a DaskCluster resource) is shut down on exit.

    ``log_file``: Dask's log records go there instead of stderr, from this process (a local
    cluster's scheduler and nannies run here) until the cluster is shut down, and from every
    worker and nanny from the moment the client connects (``log_workers_to``)."""
    with (
        logs_to_file(log_file) if log_file else contextlib.nullcontext(),
        _connect(cluster, workers, dashboard_address) as client,
    ):
        if log_file:
            log_workers_to(client, log_file)
        yield client


@contextlib.contextmanager
def _connect(cluster: str | None, workers: int | None, dashboard_address: str) -> Iterator[Client]:
    kind = cluster_kind(cluster)
    if kind == "local":
        with _quiet_dashboard_port():
            local = LocalCluster(
                n_workers=workers or os.cpu_count() or 1,
                threads_per_worker=1,
                processes=True,
                dashboard_address=free_dashboard_address(dashboard_address),
                silence_logs=logging.ERROR,
            )
        with local, Client(local) as client:
            yield client
    elif kind == "address":
        address = str(cluster).strip()
        try:
            client = Client(address)
        except (OSError, TimeoutError) as exc:
            raise BuilderError(
                f"--cluster {address}: cannot reach the Dask scheduler ({one_line(exc)})"
            ) from None
        with client:
            yield client
    elif kind == "slurm":
        submit = _slurm_submit_command()
        if shutil.which(submit) is None:
            raise BuilderError(
                f"--cluster slurm: {submit!r} not found on PATH; run the build on a SLURM login "
                "or compute node (see deploy/slurm/build.sbatch)"
            )
        jobs = workers or DEFAULT_SLURM_JOBS
        replacements, interval_s = slurm_replacements(jobs), slurm_poll_interval()
        with slurm_cluster(dashboard_address) as slurm:
            watcher = SlurmJobWatcher(slurm, replacements, interval_s)
            watcher.submit(jobs)
            watcher.start()
            try:
                with Client(slurm) as client:
                    yield client
            except Exception:
                # The watcher gave up and closed the cluster: whatever that made fail
                # (cancelled futures, a lost scheduler) is said by its one line.
                if watcher.failure is None:
                    raise
                raise BuilderError(watcher.failure) from None
    else:
        spec = kubernetes_cluster_spec(workers)
        operator = _require("kubernetes")
        _kubernetes_credentials()
        try:
            kube = operator.KubeCluster(custom_cluster_spec=spec)
        except Exception as exc:  # no kube config, no operator, scheduler pod failing…
            raise BuilderError(
                f"--cluster kubernetes: cannot start DaskCluster {spec['metadata']['name']!r} "
                f"({type(exc).__name__}: {one_line(exc)})"
            ) from None
        with kube, Client(kube) as client:
            yield client

"""``--cluster kubernetes``: the ``DaskCluster`` resource the Dask Kubernetes operator runs.

Resources come from Dask's configuration (see ``builder.cluster``):

Kubernetes (``kubernetes.*``, e.g. ``~/.config/dask/kubernetes.yaml``; needs the Dask
Kubernetes operator installed in the cluster and a kube config or in-cluster service account)
    ``kubernetes.image`` (``DASK_KUBERNETES__IMAGE``) is required: an image with gait-builder
    installed (``deploy/Dockerfile``); the stock ``ghcr.io/dask/dask`` image is refused unless
    ``kubernetes.env`` installs gait-builder through ``EXTRA_PIP_PACKAGES``. Also read:
    ``kubernetes.namespace``, ``kubernetes.name`` (``{user}``, ``{uuid}`` filled in),
    ``kubernetes.env``, ``kubernetes.resources``, ``kubernetes.worker-command`` (``--nthreads 1``
    is added unless it names ``--nthreads``), ``kubernetes.scheduler-service-type``,
    ``kubernetes.idle-timeout``. ``kubernetes.custom-cluster-spec`` (a path to a YAML file, whose
    ``DaskCluster`` document is used, e.g. ``deploy/kubernetes/daskcluster.yaml``, or a mapping)
    replaces the generated resource; use it to mount volumes. ``--workers N`` then sets its
    worker replicas.
"""

from __future__ import annotations

import getpass
import os
import re
import uuid
from typing import Any

import dask.config
import yaml

from builder.cluster._extras import _require
from builder.errors import BuilderError, one_line

DEFAULT_KUBERNETES_WORKERS = 2
STOCK_DASK_IMAGE = "ghcr.io/dask/dask"


def kubernetes_cluster_spec(workers: int | None = None) -> dict[str, Any]:
    """The ``DaskCluster`` resource (kubernetes.dask.org/v1) ``--cluster kubernetes`` creates,
    from the ``kubernetes.*`` configuration; ``workers`` sets its worker replicas."""
    operator = _require("kubernetes")
    custom = dask.config.get("kubernetes.custom-cluster-spec", None)
    if custom:
        spec = _custom_cluster_spec(custom)
        if workers:
            spec["spec"]["worker"]["replicas"] = workers
        return spec

    image = dask.config.get("kubernetes.image", None)
    env = dask.config.get("kubernetes.env", None) or {}
    extra_pip = isinstance(env, dict) and "EXTRA_PIP_PACKAGES" in env
    if not image or (str(image).startswith(STOCK_DASK_IMAGE) and not extra_pip):
        raise BuilderError(
            "--cluster kubernetes: set kubernetes.image (DASK_KUBERNETES__IMAGE) to an image "
            "with gait-builder installed (deploy/Dockerfile); the stock Dask image lacks it"
        )
    name = _cluster_name(str(dask.config.get("kubernetes.name", None) or "gait-{user}-{uuid}"))
    count = workers or dask.config.get("kubernetes.count.start", None) or DEFAULT_KUBERNETES_WORKERS
    spec = operator.make_cluster_spec(
        name=name,
        image=image,
        n_workers=int(count),
        resources=dask.config.get("kubernetes.resources", None) or None,
        env=env or None,
        worker_command=_worker_command(dask.config.get("kubernetes.worker-command", None)),
        scheduler_service_type=dask.config.get("kubernetes.scheduler-service-type", "ClusterIP"),
        idle_timeout=dask.config.get("kubernetes.idle-timeout", None) or 0,
    )
    for container in spec["spec"]["scheduler"]["spec"]["containers"]:
        # dask-kubernetes still writes the `dask-scheduler` command distributed has dropped
        if container.get("args", [])[:1] == ["dask-scheduler"]:
            container["args"] = ["dask", "scheduler", *container["args"][1:]]
    return spec


def _kubernetes_credentials() -> None:
    """Fail in one line, before any resource exists, where no cluster can be reached."""
    import kr8s  # a dependency of dask-kubernetes

    try:
        kr8s.api()
    except Exception as exc:
        raise BuilderError(
            "--cluster kubernetes: no Kubernetes credentials (kube config or in-cluster service "
            f"account): {type(exc).__name__}: {one_line(exc)}"
        ) from None


def _worker_command(configured: str | list[str] | None) -> list[str]:
    command = configured.split() if isinstance(configured, str) else list(configured or [])
    if not command or command[0] == "dask-worker":  # dask-kubernetes' default, long removed
        command = ["dask", "worker", *command[1:]]
    if not any(arg == "--nthreads" or arg.startswith("--nthreads=") for arg in command):
        command += ["--nthreads", "1"]
    return command


def _custom_cluster_spec(custom: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(custom, dict):
        documents = [custom]
        where = "kubernetes.custom-cluster-spec"
    else:
        where = str(custom)
        try:
            with open(os.path.expanduser(where)) as f:
                documents = [d for d in yaml.safe_load_all(f) if d]
        except (OSError, yaml.YAMLError) as exc:
            raise BuilderError(
                f"{where}: cannot read the DaskCluster spec ({one_line(exc)})"
            ) from None
    found = [d for d in documents if isinstance(d, dict) and d.get("kind") == "DaskCluster"]
    if len(found) != 1:
        raise BuilderError(f"{where}: expected one DaskCluster resource, found {len(found)}")
    spec = yaml.safe_load(yaml.safe_dump(found[0]))  # a private deep copy
    spec["metadata"]["name"] = _cluster_name(str(spec["metadata"]["name"]))
    return spec


def _cluster_name(template: str) -> str:
    try:
        name = template.format(user=getpass.getuser(), uuid=uuid.uuid4().hex[:10], **os.environ)
    except (KeyError, IndexError, ValueError) as exc:
        raise BuilderError(f"kubernetes.name {template!r}: {one_line(exc)}") from None
    name = re.sub(r"[^a-z0-9.-]+", "-", name.lower()).strip("-.")[:63].rstrip("-.")
    if not name:
        raise BuilderError(f"kubernetes.name {template!r}: not a valid resource name")
    return name

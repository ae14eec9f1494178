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
``DASK_*`` environment variables where ``__`` separates levels), never from the command line:

SLURM (``jobqueue.slurm.*``, e.g. ``~/.config/dask/jobqueue.yaml``)
    ``cores`` and ``memory`` per job are required (``DASK_JOBQUEUE__SLURM__CORES=16``,
    ``DASK_JOBQUEUE__SLURM__MEMORY=64GB``); ``processes`` defaults to ``cores`` here (one
    single-threaded worker per core, as locally); ``queue``, ``account``, ``walltime``,
    ``job-extra-directives``, ``job-script-prologue`` (e.g. activate an environment),
    ``interface`` (the network the compute nodes reach this process on, e.g. ``ib0``),
    ``local-directory``, ``python`` (default: this interpreter) as dask-jobqueue documents them.
    ``sbatch`` must be on ``PATH``: run the build on a login node or inside a small job
    (``deploy/slurm/build.sbatch``). A job SLURM ends before the build does (``scancel``,
    walltime, a node failing, a worker that cannot start) is replaced, which dask-jobqueue
    does not do: every ``builder.slurm.poll-interval`` (default ``5s``) ``squeue`` says which
    jobs left the queue, and each is cancelled for good and another submitted, up to
    ``builder.slurm.replacements`` replacements in all (default: three per requested job).
    With none left to submit and no job left, the build stops with one line (a re-run
    resumes it); a worker job ``sbatch`` refuses is that line at once.

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

Worker logs: ``connect(..., log_file=PATH)`` (or ``log_workers_to(client, PATH)`` and
``logs_to_file(PATH)`` separately) sends Dask's log records (``distributed``, ``tornado``,
``bokeh``; warnings and above) of the workers, the nannies and this process to the file
``PATH`` instead of stderr, appended to by every process: when tasks fail on workers (storage
gone, a server down mid-build), the user sees the builder's one-line error, not thirty worker
tracebacks. ``PATH`` is local to each machine (a shared filesystem gathers them). In the
worker processes, Python warnings and any other logger's records go there too.

Whatever the cluster, its scheduler and workers run the same gait-builder and Python
environment as the client (the same image, or the same virtual environment on a shared
filesystem), and the workers see the raw files at the paths the catalogue names and the output
at the path given to ``--output`` (a shared filesystem or object-storage URLs).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import importlib
import io
import logging
import os
import re
import shutil
import socket
import threading
import uuid
import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import IO, Any

import dask.config
import yaml
from dask.distributed import Client, LocalCluster
from dask.utils import parse_timedelta
from distributed.core import Status
from distributed.diagnostics.plugin import NannyPlugin, WorkerPlugin
from tornado.ioloop import PeriodicCallback

from builder.errors import BuilderError, one_line

KINDS = ("slurm", "kubernetes")
EXTRAS = {"slurm": "dask_jobqueue", "kubernetes": "dask_kubernetes.operator"}
DEFAULT_SLURM_JOBS = 1
DEFAULT_KUBERNETES_WORKERS = 2
DEFAULT_SLURM_POLL = "5s"
REPLACEMENTS_PER_JOB = 3
STOCK_DASK_IMAGE = "ghcr.io/dask/dask"

# tcp://host:8786, tls://…, ws://…, ucx://…, inproc://…; or host:port, [ipv6]:port
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$", re.IGNORECASE)
_HOST_PORT = re.compile(r"^(\[[0-9a-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}$", re.IGNORECASE)

_log = logging.getLogger("builder")


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


# --- dashboard ----------------------------------------------------------------------------


def free_dashboard_address(address: str) -> str:
    """``address`` (``":8787"``, ``"host:8787"``) where its port is free here, else the same
    host with port 0 (any free port) so that Dask does not warn that the port is in use."""
    host, _, port = address.rpartition(":")
    if not port.isdigit() or int(port) == 0:
        return address
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host.strip("[]") or "0.0.0.0", int(port)))
        except OSError:
            return f"{host}:0"
    return address


@contextlib.contextmanager
def _quiet_dashboard_port() -> Iterator[None]:
    """No "Port 8787 is already in use" warning from a scheduler started inside, where the
    port was taken between the check and the start: the link printed says which port it got.
    (Around the start only: the filters are the process's.)"""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Port \d+ is already in use")
        yield


# --- logs ---------------------------------------------------------------------------------

# Where Dask's records go; their StreamHandlers print to stderr (distributed.config).
_DASK_LOGGERS = ("distributed", "tornado", "bokeh")
_LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s [pid %(process)d]: %(message)s"
_CLOSING = (Status.closing, Status.closing_gracefully, Status.closed, Status.failed)


def log_workers_to(client: Client, path: str) -> None:
    """From now on, every worker (and nanny) of ``client``'s cluster, present or future, logs
    to the file ``path`` on its machine (appending; its folder created) instead of stderr.

    Registered under one name: a later call replaces the earlier file. A worker that cannot
    write the file drops the records rather than print them (the storage under it failed: the
    builder's own error says so)."""
    client.register_plugin(_WorkerLogFile(path))
    client.register_plugin(_NannyLogFile(path))


@contextlib.contextmanager
def logs_to_file(path: str) -> Iterator[None]:
    """Dask's loggers in this process write to ``path`` instead of stderr while inside."""
    redirect = _Redirect(path, everything=False)
    try:
        yield
    finally:
        redirect.undo()


class _WorkerLogFile(WorkerPlugin):
    name = "gait-builder-log-file"

    def __init__(self, path: str) -> None:
        self.path = path
        self._redirect: _Redirect | None = None
        self._own_process = False

    def setup(self, worker: Any) -> None:
        # Under a nanny a worker has a process of its own: its warnings and other libraries'
        # records go to the file too (without, it may share the client's process).
        self._own_process = worker.nanny is not None
        self._redirect = _Redirect(self.path, everything=self._own_process)

    def teardown(self, worker: Any) -> None:
        if self._redirect is None:
            return
        if self._own_process and worker.status in _CLOSING:
            return  # the process ends: its shutdown errors go to the file too
        self._redirect.undo()  # replaced by another file, or removed
        self._redirect = None


class _NannyLogFile(NannyPlugin):
    name = "gait-builder-log-file"

    def __init__(self, path: str) -> None:
        self.path = path
        self._redirect: _Redirect | None = None

    def setup(self, nanny: Any) -> None:
        # A nanny may share its process (a local cluster's nannies run in the client's).
        self._redirect = _Redirect(self.path, everything=False)

    def teardown(self, nanny: Any) -> None:
        if self._redirect is not None:
            self._redirect.undo()
            self._redirect = None


class _AppendToFile(logging.Handler):
    """Appends formatted records to ``path``, opened at the first record. Not a
    StreamHandler: Dask's ``silence_logs`` re-levels those, and this one keeps WARNING."""

    def __init__(self, path: str) -> None:
        super().__init__(logging.WARNING)
        self.path = path
        self.setFormatter(logging.Formatter(_LOG_FORMAT))
        self._file: IO[str] | None = None
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._guard:
            try:
                if self._file is None:
                    self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
                self._file.write(self.format(record) + "\n")
                self._file.flush()  # several processes append to it
            except Exception:
                # Unwritable (the storage under it failed): drop the record, never print it;
                # the next record tries again.
                self._close_file()

    def close(self) -> None:
        with self._guard:
            self._close_file()
        super().close()

    def _close_file(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None


class _Redirect:
    """Dask's loggers in this process (``everything``: all loggers, and warnings) write to
    ``path`` instead of stdout / stderr, until ``undo()``."""

    _lock = threading.Lock()

    def __init__(self, path: str, *, everything: bool) -> None:
        with contextlib.suppress(OSError):
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.handler = _AppendToFile(path)
        self._removed: list[tuple[logging.Logger, logging.Handler, int]] = []  # and its index
        self._added: list[logging.Logger] = []
        self._levels: list[tuple[logging.Logger, int]] = []
        self._warnings = everything
        with self._lock:
            existing = [
                logger
                for name, logger in list(logging.root.manager.loggerDict.items())
                if isinstance(logger, logging.Logger) and (everything or _is_dask(name))
            ]
            loggers = [*map(logging.getLogger, _DASK_LOGGERS), *existing]
            if everything:
                loggers.append(logging.root)  # for loggers with no handler of their own
            for logger in dict.fromkeys(loggers):
                self._take_over(logger, top=logger is logging.root or logger.name in _DASK_LOGGERS)
            distributed = logging.getLogger("distributed")
            if distributed.level > logging.WARNING:  # silence_logs=ERROR, meant for stderr
                self._levels.append((distributed, distributed.level))
                distributed.setLevel(logging.WARNING)
        if everything:
            logging.captureWarnings(True)

    def _take_over(self, logger: logging.Logger, *, top: bool) -> None:
        printing = [(i, h) for i, h in enumerate(logger.handlers) if _prints(h)]
        for index, handler in printing:
            logger.removeHandler(handler)
            self._removed.append((logger, handler, index))
        mine = any(
            isinstance(h, _AppendToFile) and h.path == self.handler.path for h in logger.handlers
        )
        if (printing or top) and not mine:
            logger.addHandler(self.handler)
            self._added.append(logger)

    def undo(self) -> None:
        with self._lock:
            for logger in self._added:
                logger.removeHandler(self.handler)
            for logger, handler, index in self._removed:  # back in their places, in order
                if handler not in logger.handlers:
                    logger.handlers.insert(min(index, len(logger.handlers)), handler)
            for logger, level in self._levels:
                logger.setLevel(level)
            self._added, self._removed, self._levels = [], [], []
        if self._warnings:
            logging.captureWarnings(False)
            self._warnings = False
        self.handler.close()


def _is_dask(name: str) -> bool:
    return any(name == top or name.startswith(top + ".") for top in _DASK_LOGGERS)


def _prints(handler: logging.Handler) -> bool:
    """Whether ``handler`` prints (to stderr, as Dask's do, or stdout): a StreamHandler not
    writing to a file or a string buffer (pytest's)."""
    return (
        isinstance(handler, logging.StreamHandler)
        and not isinstance(handler, logging.FileHandler)
        and not isinstance(handler.stream, io.StringIO)
    )


# --- SLURM --------------------------------------------------------------------------------


def slurm_cluster(dashboard_address: str = ":8787") -> Any:
    """A ``dask_jobqueue.SLURMCluster`` from the ``jobqueue.slurm`` configuration, with no job
    submitted yet (``connect`` scales it; ``cluster.job_script()`` shows a worker job).

    One single-threaded worker process per core unless ``jobqueue.slurm.processes`` says
    otherwise."""
    jobqueue = _require("slurm")
    cores = dask.config.get("jobqueue.slurm.cores", None)
    memory = dask.config.get("jobqueue.slurm.memory", None)
    if not cores or not memory:
        raise BuilderError(
            "--cluster slurm: set the cores and memory of one worker job in Dask's config: "
            "jobqueue.slurm.cores and jobqueue.slurm.memory (~/.config/dask/jobqueue.yaml, or "
            "DASK_JOBQUEUE__SLURM__CORES=16 DASK_JOBQUEUE__SLURM__MEMORY=64GB)"
        )
    processes = dask.config.get("jobqueue.slurm.processes", None) or int(cores)
    scheduler = dask.config.get("jobqueue.slurm.scheduler-options", None) or {}
    scheduler = {"dashboard_address": free_dashboard_address(dashboard_address), **scheduler}
    try:
        with _quiet_dashboard_port():
            return jobqueue.SLURMCluster(
                processes=processes, scheduler_options=scheduler, silence_logs=logging.ERROR
            )
    except (ValueError, TypeError, OSError) as exc:
        raise BuilderError(f"--cluster slurm: {one_line(exc)}") from None


def _slurm_submit_command() -> str:
    jobqueue = _require("slurm")
    return str(jobqueue.SLURMCluster.job_cls.submit_command)


def slurm_replacements(jobs: int) -> int:
    """How many worker jobs a SLURM build may submit in place of ended ones: the Dask config
    key ``builder.slurm.replacements``, default three per requested job."""
    value = dask.config.get("builder.slurm.replacements", None)
    if value is None:
        return REPLACEMENTS_PER_JOB * jobs
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = -1
    if count < 0 or str(count) != str(value).strip():
        raise BuilderError(
            f"--cluster slurm: Dask config builder.slurm.replacements {value!r} is not a "
            "whole number >= 0 (DASK_BUILDER__SLURM__REPLACEMENTS=6)"
        )
    return count


def slurm_poll_interval() -> float:
    """Seconds between two looks at the worker jobs' states (``builder.slurm.poll-interval``)."""
    value = dask.config.get("builder.slurm.poll-interval", None) or DEFAULT_SLURM_POLL
    try:
        seconds = float(parse_timedelta(value, default="seconds"))
    except (TypeError, ValueError, KeyError):
        seconds = 0.0
    if seconds <= 0:
        raise BuilderError(
            f"--cluster slurm: Dask config builder.slurm.poll-interval {value!r} is not a "
            "duration > 0 (DASK_BUILDER__SLURM__POLL_INTERVAL=5s)"
        )
    return seconds


# squeue states of a job that runs, or will run, its workers: any other state (CANCELLED,
# TIMEOUT, NODE_FAIL, FAILED…), or no record at all, means SLURM ended it. COMPLETING counts
# as live: moments later it says how the job ended.
_LIVE_JOB_STATES = frozenset(
    {
        "COMPLETING",
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "SUSPENDED",
        "RESIZING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESV_DEL_HOLD",
        "POWER_UP_NODE",
        "SIGNALING",
    }
)
_SQUEUE_TIMEOUT_S = 60.0


class SlurmJobWatcher:
    """Keeps a ``SLURMCluster`` at the requested number of worker jobs while SLURM ends some.

    dask-jobqueue leaves a job SLURM ended in ``cluster.worker_spec``, so ``scale()`` sees
    its target met and submits nothing (dask/dask-jobqueue#122, #611, dask/distributed#3154):
    a build whose jobs all ended would wait forever. Every poll interval (a periodic callback
    on the cluster's loop, stopped when the cluster closes) this asks ``squeue`` for the
    state of the cluster's jobs; each that ended is cancelled for good (a job SLURM would
    requeue must not come back unwatched), dropped from the spec, and replaced while
    replacements are left. When no job is left and none may be submitted, ``failure`` says
    so in one line and the cluster is closed: the client's futures fail and ``connect``
    raises that line instead."""

    def __init__(self, cluster: Any, replacements: int, interval_s: float | None = None) -> None:
        self.cluster = cluster
        self.allowed = replacements
        self.replaced = 0
        self.ended = 0  # jobs SLURM ended, or sbatch refused, since the first submission
        self.last = ""  # the last of them: "job 1234 CANCELLED"
        self.failure: str | None = None
        self.target = 0
        self._interval_s = interval_s if interval_s is not None else slurm_poll_interval()
        self._closing: asyncio.Future[None] | None = None

    def submit(self, jobs: int) -> None:
        """Submit the first ``jobs`` worker jobs, waiting for ``sbatch``: a refused one is a
        one-line error now rather than a build waiting for workers that never come."""
        self.target = jobs
        refused = self.cluster.sync(self._submit, jobs)
        if refused:
            raise BuilderError(f"--cluster slurm: sbatch refused the worker job: {refused}")

    def start(self) -> None:
        """Look at the jobs every poll interval from now until the cluster closes."""
        callback = PeriodicCallback(self._check, self._interval_s * 1000)
        self.cluster.periodic_callbacks["gait-builder-slurm-jobs"] = callback  # stopped by close
        self.cluster.loop.add_callback(callback.start)

    async def _check(self) -> None:
        try:
            await self._replace_ended()
        except Exception as exc:  # never stop watching for one bad look
            _log.warning("--cluster slurm: checking the worker jobs failed: %s", one_line(exc))

    async def _replace_ended(self) -> None:
        cluster = self.cluster
        if cluster.status != Status.running or self.failure is not None:
            return
        jobs = {name: job for name, job in cluster.workers.items() if name in cluster.worker_spec}
        ids = {name: str(job.job_id) for name, job in jobs.items() if job.job_id}
        states = await _slurm_job_states(sorted(set(ids.values()))) if ids else {}
        if states is None or cluster.status != Status.running:
            return  # squeue did not answer (the next look asks again), or the build is over
        ended = {
            name: f"job {job_id} {states.get(job_id, 'ENDED')}"
            for name, job_id in ids.items()
            if states.get(job_id) not in _LIVE_JOB_STATES
        }
        # Started and without a job id: sbatch refused it (said where it was submitted).
        ended |= {name: "a job sbatch refused" for name in jobs if name not in ids}
        for name, what in ended.items():
            await self._drop(name)
            self.ended += 1
            self.last = what
        submit = min(self.target - len(cluster.worker_spec), self.allowed - self.replaced)
        if ended:
            _log.warning(
                "SLURM ended worker %s; %s (%d of %d replacements used)",
                ", ".join(ended.values()),
                f"{submit} submitted in {'its' if len(ended) == 1 else 'their'} place"
                if submit > 0
                else "no replacement left",
                self.replaced + max(submit, 0),
                self.allowed,
            )
        if submit > 0:
            self.replaced += submit
            # A fresh name: the scheduler refuses a worker named as one it still lists.
            cluster._i += 1
            refused = await self._submit(len(cluster.worker_spec) + submit)
            if refused:
                self.last = f"sbatch refused a job: {refused}"
                _log.warning("--cluster slurm: %s", self.last)
        if not cluster.worker_spec and self.replaced >= self.allowed:
            self._give_up()

    async def _submit(self, jobs: int) -> str | None:
        """Scale to ``jobs`` and submit the jobs SLURM lacks. What ``sbatch`` said where it
        refused some; those are dropped from the spec and counted as ended."""
        self.cluster.scale(jobs=jobs)
        try:
            # Started here, before the callback scale() queued: this task submits, and its
            # error (sbatch's) comes here.
            await self.cluster._correct_state()
        except Exception as exc:
            refused = [n for n, job in self.cluster.workers.items() if not job.job_id]
            for name in refused:
                await self._drop(name)
            self.ended += len(refused)
            return _sbatch_said(exc)
        return None

    async def _drop(self, name: str) -> None:
        self.cluster.worker_spec.pop(name, None)
        job = self.cluster.workers.pop(name, None)
        if job is not None:
            await job.close()  # scancel (an ended job: a no-op); nothing without a job id
            job.status = Status.closed  # dask-jobqueue's close leaves it "running"

    def _give_up(self) -> None:
        # connect() serves builds, which publish only once it has returned.
        self.failure = (
            f"--cluster slurm: SLURM ended {self.ended} worker job"
            f"{'s' if self.ended != 1 else ''} (last: {self.last}) and none is left to finish "
            f"the build ({self.replaced} of {self.allowed} replacements used, Dask config "
            "builder.slurm.replacements); nothing was published and the previous version is "
            "intact; re-run to resume"
        )
        self._closing = asyncio.ensure_future(self.cluster._close())


async def _slurm_job_states(job_ids: list[str]) -> dict[str, str] | None:
    """squeue's state of each of ``job_ids`` it still knows (ended jobs stay a few minutes);
    None where squeue does not answer."""
    argv = ["squeue", "-h", "-t", "all", "-o", "%i %T", "-j", ",".join(job_ids)]
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except OSError as exc:
        _log.warning("--cluster slurm: cannot run squeue: %s", one_line(exc))
        return None
    try:
        out, err = await asyncio.wait_for(process.communicate(), _SQUEUE_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        return None
    if process.returncode != 0:
        # Every id given forgotten (ended long ago): "Invalid job id specified".
        return {} if b"Invalid job id" in err else None
    fields = (line.split() for line in out.decode().splitlines())
    return {f[0]: f[1] for f in fields if len(f) == 2}


def _sbatch_said(exc: BaseException) -> str:
    """``sbatch``'s own words from dask-jobqueue's error (its stderr), on one line."""
    text = str(exc)
    _, found, stderr = text.rpartition("stderr:")
    return one_line(RuntimeError(stderr if found and stderr.strip() else text))


# --- Kubernetes ---------------------------------------------------------------------------


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


# --- helpers ------------------------------------------------------------------------------


def _require(kind: str) -> ModuleType:
    """The module behind the optional cluster ``kind``, or a one-line error naming the extra."""
    try:
        return importlib.import_module(EXTRAS[kind])
    except ImportError as exc:
        raise BuilderError(
            f"--cluster {kind} needs the optional extra: pip install 'gait-builder[{kind}]' "
            f"({one_line(exc)})"
        ) from None

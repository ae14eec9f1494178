"""``--cluster slurm``: a ``dask_jobqueue.SLURMCluster`` whose ended worker jobs are replaced.

Resources come from Dask's configuration (see ``builder.cluster``):

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
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import dask.config
from dask.utils import parse_timedelta
from distributed.core import Status
from tornado.ioloop import PeriodicCallback

from builder.cluster._dashboard import _quiet_dashboard_port, free_dashboard_address
from builder.cluster._extras import _require
from builder.errors import BuilderError, one_line

DEFAULT_SLURM_JOBS = 1
DEFAULT_SLURM_POLL = "5s"
REPLACEMENTS_PER_JOB = 3

_log = logging.getLogger("builder")


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

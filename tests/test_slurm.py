"""``--cluster slurm`` on a real single-node SLURM cluster (``.ci/slurm.sh`` installs and
starts munged, slurmctld and slurmd): the worker jobs dask-jobqueue submits build a store equal
to a local build, a job cancelled mid-build changes nothing, jobs SLURM ended are replaced
(``builder.cluster.SlurmJobWatcher``) and, with no replacement left, the build stops in one
line. Skipped, with the reason, where no SLURM answers here.

Nothing here waits on the clock: a trial is held by a FIFO until the jobs are seen running,
and the timeouts only protect against a hang."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dask.config
import pytest
import xarray as xr
from dask.distributed import Client

from builder.catalog import expand_trials, load_catalog
from builder.cluster import slurm_poll_interval, slurm_replacements
from builder.errors import BuilderError
from builder.store.location import StoreLocation
from builder.store.reader import read_report
from builder.store.staging import trial_key

from helpers import (
    REPO,
    assert_same_arrays,
    build_store,
    copy_demo_subset,
    demo_catalog,
    requires_jobqueue,
)

pytestmark = [pytest.mark.cluster, requires_jobqueue]

START = "run `sudo bash .ci/slurm.sh` to start a single-node SLURM cluster"


def digest(url: str) -> dict[str, str]:
    """SHA-256 of every array's decoded values: bench/store_digest.py's digest."""
    spec = importlib.util.spec_from_file_location(
        "store_digest", REPO / "bench" / "store_digest.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found: dict[str, str] = module.digest(url)
    return found


def slurm(*argv: str) -> str:
    """The output of a SLURM command (it must succeed)."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr.strip()}"
    return done.stdout


@pytest.fixture(scope="module")
def slurm_node() -> str:
    """The name of an idle (or partly busy) SLURM node here; skip where SLURM does not answer."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        pytest.skip(f"SLURM unavailable: sinfo/sbatch not found ({START})")
    try:
        done = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%N %t"], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"SLURM unavailable: sinfo did not answer in 30 s ({START})")
    if done.returncode != 0:
        pytest.skip(f"SLURM unavailable: sinfo: {done.stderr.strip()[:200]} ({START})")
    nodes = [line.split() for line in done.stdout.splitlines() if line.strip()]
    ready = [name for name, state in nodes if state.rstrip("*~#") in ("idle", "mix")]
    if not ready:
        pytest.skip(f"SLURM unavailable: no idle node (sinfo: {done.stdout.strip()}; {START})")
    return ready[0]


@dataclass(frozen=True)
class Reference:
    """S01's and S03's raw files, their catalogue and their local build."""

    raw: Path
    catalog: Path
    store: Path
    digest: dict[str, str]
    n_strides: int


@pytest.fixture(scope="module")
def reference(
    slurm_node: str, demo_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Reference:
    """Built locally once for the tests that compare a SLURM build with it; read-only for
    them (a test that holds a raw file as a FIFO puts the file back)."""
    folder = tmp_path_factory.mktemp("slurm-reference")
    raw = copy_demo_subset(demo_root, folder / "raw", ("S01", "S03"))
    catalog = demo_catalog(folder, raw)
    local = build_store(catalog, folder / "local.zarr", workers=2)
    return Reference(
        raw, catalog, folder / "local.zarr", digest(str(local.output)), local.n_strides
    )


def job_env(folder: Path, name: str, **builder: str) -> dict[str, str]:
    """Dask config for small worker jobs (1 core, 1 single-threaded worker, 2 GB), named
    ``name``, running this venv's Python with their working and local folders in ``folder``;
    ``builder``: ``builder.slurm.*`` keys (``replacements="0"``). Jobs are looked at every
    second (the default is 5 s: only a quicker test)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DASK_JOBQUEUE__", "DASK_BUILDER__"))
    }
    env["DASK_BUILDER__SLURM__POLL_INTERVAL"] = "1s"
    env.update({f"DASK_BUILDER__SLURM__{k.upper()}": v for k, v in builder.items()})
    env.update(
        DASK_JOBQUEUE__SLURM__CORES="1",
        DASK_JOBQUEUE__SLURM__PROCESSES="1",
        DASK_JOBQUEUE__SLURM__MEMORY="2GB",
        DASK_JOBQUEUE__SLURM__WALLTIME="00:20:00",
        DASK_JOBQUEUE__SLURM__NAME=name,
        DASK_JOBQUEUE__SLURM__PYTHON=sys.executable,
        DASK_JOBQUEUE__SLURM__LOCAL_DIRECTORY=str(folder / "dask-local"),
        DASK_JOBQUEUE__SLURM__LOG_DIRECTORY=str(folder / "job-logs"),
        DASK_JOBQUEUE__SLURM__JOB_EXTRA_DIRECTIVES=repr([f"--chdir={folder}"]),
    )
    return env


def slurm_build(catalog: Path, output: Path, *extra: str, workers: int = 2) -> list[str]:
    return [
        sys.executable, "-m", "builder", "run", "--catalog", str(catalog), "--output",
        str(output), "--cluster", "slurm", "--workers", str(workers), "--no-progress", *extra,
    ]  # fmt: skip


def jobs_named(name: str) -> dict[str, dict[str, str]]:
    """SLURM's record of the jobs called ``name`` (kept a few minutes after they end):
    job id -> its fields (JobState, NodeList, …)."""
    found = {}
    for line in slurm("scontrol", "show", "job", "-o").splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if fields.get("JobName") == name:
            found[fields["JobId"]] = fields
    return found


def queued(name: str) -> dict[str, str]:
    """squeue's jobs called ``name``: job id -> state (PENDING, RUNNING, …)."""
    out = slurm("squeue", "-h", "-n", name, "-o", "%i %T")
    return dict(line.split() for line in out.splitlines() if line.strip())


@contextlib.contextmanager
def cancelled_at_exit(name: str) -> Iterator[None]:
    """No job called ``name`` outlives the test."""
    try:
        yield
    finally:
        subprocess.run(["scancel", "-n", name], capture_output=True, timeout=60)


def test_a_slurm_build_equals_a_local_build(
    slurm_node: str, reference: Reference, tmp_path: Path
) -> None:
    name = f"gait-test-{uuid.uuid4().hex[:8]}"
    with cancelled_at_exit(name):
        run = subprocess.run(
            slurm_build(reference.catalog, tmp_path / "slurm.zarr"),
            capture_output=True, text=True, timeout=600, cwd=tmp_path,
            env=job_env(tmp_path, name),
        )  # fmt: skip
    assert run.returncode == 0, run.stderr + run.stdout

    # Two worker jobs ran on the node; they were the only workers of the build's scheduler.
    jobs = jobs_named(name)
    assert len(jobs) == 2, jobs
    assert {job["NodeList"] for job in jobs.values()} == {slurm_node}
    for job_id in jobs:
        assert "Starting Worker plugin gait-builder-log-file" in job_log(tmp_path, name, job_id)

    assert xr.open_zarr(tmp_path / "slurm.zarr").sizes["stride"] == reference.n_strides == 20 * 16
    assert_same_arrays(tmp_path / "slurm.zarr", reference.store)
    assert digest(str(tmp_path / "slurm.zarr")) == reference.digest


def job_log(folder: Path, name: str, job_id: str) -> str:
    """A worker job's stderr (dask-jobqueue's ``log-directory``): the build's plugin line
    says its worker joined the build's scheduler."""
    return (folder / "job-logs" / f"{name}-{job_id}.err").read_text()


def scheduler_of(job_id: str) -> str:
    """The scheduler address a dask-jobqueue worker job connects to (from its batch script)."""
    script = slurm("scontrol", "write", "batch_script", job_id, "-")
    (address,) = re.findall(r"distributed\.cli\.dask_worker\s+(\S+)", script)
    return address


@contextlib.contextmanager
def held(catalog: Path, path: Path) -> Iterator[tuple[bytes, str]]:
    """``path`` is a FIFO inside (a trial reading it blocks in open until its job ends; put
    the real file back with ``os.replace`` to let its next run read it), its bytes again at
    exit. Yields those bytes and the key of the trial's Dask task."""
    content = path.read_bytes()
    path.unlink()
    os.mkfifo(path)
    try:
        specs, _ = expand_trials(load_catalog(catalog))
        yield content, "trial-" + trial_key(next(s for s in specs if s.url == str(path)))
    finally:
        if not path.is_file():
            path.unlink()
            path.write_bytes(content)


def run_cancelling(
    catalog: Path, argv: list[str], env: dict[str, str], name: str, path: Path, *, every_job: bool
) -> tuple[subprocess.Popen[str], str, dict[str, str]]:
    """Run the build ``argv`` of ``catalog`` (in the folder of ``env``'s jobs) holding the
    trial of ``path`` (see ``held``), and cancel the job running it (``every_job``: every
    worker job) while it does. Returns the finished build, its output and the cancelled job
    ids -> their squeue state at that moment."""
    cwd = Path(env["DASK_JOBQUEUE__SLURM__LOCAL_DIRECTORY"]).parent
    log = cwd / "build.log"  # a file: a pipe nobody reads could fill and block it
    with (
        cancelled_at_exit(name),
        held(catalog, path) as (content, task),
        open(log, "w") as log_file,
    ):
        build = subprocess.Popen(
            argv, stdout=log_file, stderr=log_file, text=True, cwd=cwd, env=env
        )
        try:
            cancelled = hold_and_cancel(build, name, path, content, task, every_job=every_job)
            build.wait(timeout=600)
        finally:
            if build.poll() is None:
                build.kill()
                build.wait()
    return build, log.read_text(), cancelled


def test_a_worker_job_cancelled_mid_build_changes_nothing(
    slurm_node: str, demo_root: Path, tmp_path: Path
) -> None:
    """``scancel`` of the worker job running a trial, while it runs it: either the build
    finishes on the other job (or its replacement) and publishes a store equal to the local
    build, or it fails with one line and the version published before stays, unchanged.

    The trial is held, whatever the machine's speed: its file is a FIFO (its reader blocks in
    open until the job is cancelled), and the real file by the time the trial runs again."""
    raw = copy_demo_subset(demo_root, tmp_path / "raw", ("S01", "S03"))
    catalog = demo_catalog(tmp_path, raw)
    output = tmp_path / "gait.zarr"
    build_store(catalog, output, workers=2)  # the local build, published as the first version
    location = StoreLocation(str(output))
    before = location.published_version()
    local_digest = digest(str(output))

    name = f"gait-test-{uuid.uuid4().hex[:8]}"
    build, err, cancelled = run_cancelling(
        catalog, slurm_build(catalog, output, "--fresh"), job_env(tmp_path, name), name,
        raw / "S03" / "rampup_v1.00_i+6_t01.c3d", every_job=False,
    )  # fmt: skip
    ((victim_job, seen),) = cancelled.items()
    assert seen == "RUNNING"  # squeue showed the job running when it was cancelled
    assert jobs_named(name)[victim_job]["JobState"] == "CANCELLED"

    # "Changes nothing": whatever the outcome, the published store is the local build's.
    after = StoreLocation(str(output)).published_version()
    assert digest(str(output)) == local_digest
    if build.returncode == 0:
        report = read_report(str(output))
        assert after != before, err
        assert report["n_trials_left_out"] == 0 and report["n_trials_built"] == 20, err
        assert xr.open_zarr(output).sizes["stride"] == 20 * 16
    else:
        lines = err.strip().splitlines()
        assert lines and lines[-1].startswith("error: "), err
        assert after == before, err


def test_worker_jobs_all_cancelled_mid_build_are_replaced(
    slurm_node: str, reference: Reference, tmp_path: Path
) -> None:
    """``scancel`` of both worker jobs while one runs a trial: the build submits two new jobs
    in their place, their workers finish it, and the store equals the local build."""
    name = f"gait-test-{uuid.uuid4().hex[:8]}"
    output = tmp_path / "gait.zarr"
    build, err, cancelled = run_cancelling(
        reference.catalog, slurm_build(reference.catalog, output), job_env(tmp_path, name),
        name, reference.raw / "S03" / "rampup_v1.00_i+6_t01.c3d", every_job=True,
    )  # fmt: skip
    assert build.returncode == 0, err
    assert len(cancelled) == 2 and set(cancelled.values()) == {"RUNNING"}, cancelled

    jobs = jobs_named(name)
    assert all(jobs[job_id]["JobState"] == "CANCELLED" for job_id in cancelled), jobs
    replacements = sorted(set(jobs) - set(cancelled), key=int)
    assert len(replacements) == 2, jobs  # one for each, no more
    assert all(int(new) > int(old) for new in replacements for old in cancelled)
    assert any(
        "Starting Worker plugin gait-builder-log-file" in job_log(tmp_path, name, job_id)
        for job_id in replacements
    ), "no replacement job's worker joined the build"
    assert "SLURM ended worker job" in err and "submitted in" in err, err  # one look or two

    report = read_report(str(output))
    assert report["n_trials_left_out"] == 0 and report["n_trials_built"] == 20, err
    assert digest(str(output)) == reference.digest


def test_with_no_replacement_left_the_build_stops_in_one_line(
    slurm_node: str, demo_root: Path, tmp_path: Path
) -> None:
    """``builder.slurm.replacements: 0`` and both worker jobs cancelled mid-build: the build
    exits non-zero with one line naming the jobs SLURM ended (it does not wait for workers
    forever), submits no other job, and the version published before stays."""
    raw = copy_demo_subset(demo_root, tmp_path / "raw", ("S02",))
    catalog = demo_catalog(tmp_path, raw)
    output = tmp_path / "gait.zarr"
    build_store(catalog, output, workers=2)  # the version published before
    before = StoreLocation(str(output)).published_version()
    local_digest = digest(str(output))

    name = f"gait-test-{uuid.uuid4().hex[:8]}"
    build, err, cancelled = run_cancelling(
        catalog, slurm_build(catalog, output, "--fresh"),
        job_env(tmp_path, name, replacements="0"), name, raw / "S02" / "walk_v1.20_i+0_t01.c3d",
        every_job=True,
    )  # fmt: skip
    assert build.returncode != 0, err
    assert len(cancelled) == 2, cancelled
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: --cluster slurm: SLURM ended 2 worker jobs (last: job "), err
    last = re.search(r"\(last: job (\d+) CANCELLED\)", line)
    assert last is not None and last[1] in cancelled, line
    assert "0 of 0 replacements used" in line and line.endswith("re-run to resume"), line
    assert set(jobs_named(name)) == set(cancelled)  # none submitted in their place

    assert StoreLocation(str(output)).published_version() == before
    assert digest(str(output)) == local_digest


def test_a_worker_job_that_cannot_start_is_replaced_then_the_build_stops(
    slurm_node: str, demo_root: Path, tmp_path: Path
) -> None:
    """Worker jobs whose Python does not exist end at once (FAILED): the one replacement
    allowed fails too, and the build stops in one line rather than wait for workers."""
    raw = copy_demo_subset(demo_root, tmp_path / "raw", ("S02",))
    catalog = demo_catalog(tmp_path, raw)
    name = f"gait-test-{uuid.uuid4().hex[:8]}"
    env = job_env(tmp_path, name, replacements="1")
    env["DASK_JOBQUEUE__SLURM__PYTHON"] = str(tmp_path / "no-such-python")
    with cancelled_at_exit(name):
        run = subprocess.run(
            slurm_build(catalog, tmp_path / "gait.zarr", workers=1),
            capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env,
        )  # fmt: skip
    assert run.returncode != 0, run.stderr + run.stdout
    line = run.stderr.strip().splitlines()[-1]
    jobs = jobs_named(name)
    assert len(jobs) == 2 and {job["JobState"] for job in jobs.values()} == {"FAILED"}, jobs
    last = max(jobs, key=int)
    assert line.startswith(
        f"error: --cluster slurm: SLURM ended 2 worker jobs (last: job {last} FAILED) and none "
        "is left to finish the build (1 of 1 replacements used"
    ), run.stderr
    assert "SLURM ended worker job" in run.stderr and "1 submitted in its place" in run.stderr


def test_a_worker_job_sbatch_refuses_is_one_line(
    slurm_node: str, demo_root: Path, tmp_path: Path
) -> None:
    """A worker job no node can hold (its memory): sbatch's reason, in one line, at once."""
    raw = copy_demo_subset(demo_root, tmp_path / "raw", ("S02",))
    catalog = demo_catalog(tmp_path, raw)
    name = f"gait-test-{uuid.uuid4().hex[:8]}"
    env = job_env(tmp_path, name)
    env["DASK_JOBQUEUE__SLURM__MEMORY"] = "1000000GB"
    with cancelled_at_exit(name):
        run = subprocess.run(
            slurm_build(catalog, tmp_path / "gait.zarr", workers=1),
            capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env,
        )  # fmt: skip
    assert run.returncode != 0, run.stderr + run.stdout
    lines = run.stderr.strip().splitlines()
    assert lines[-1].startswith("error: --cluster slurm: sbatch refused the worker job: "), lines
    assert "sbatch: error:" in lines[-1] and "Traceback" not in run.stderr, run.stderr
    # SLURM may keep a record of the refused submission (FAILED, on no node); no other try.
    refused = jobs_named(name)
    assert len(refused) <= 1 and all(not job["NodeList"] for job in refused.values()), refused


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("replacements", "-1", "builder.slurm.replacements '-1' is not a whole number >= 0"),
        ("replacements", "two", "builder.slurm.replacements 'two' is not a whole number >= 0"),
        ("poll-interval", "0s", "builder.slurm.poll-interval '0s' is not a duration > 0"),
        ("poll-interval", "soon", "builder.slurm.poll-interval 'soon' is not a duration > 0"),
    ],
)
def test_a_bad_replacement_setting_is_one_line(key: str, value: str, says: str) -> None:
    with dask.config.set({f"builder.slurm.{key}": value}), pytest.raises(BuilderError) as error:
        slurm_replacements(2)
        slurm_poll_interval()
    assert says in str(error.value) and "\n" not in str(error.value)


def test_replacements_default_to_three_per_job() -> None:
    assert slurm_replacements(2) == 6 and slurm_replacements(1) == 3
    with dask.config.set({"builder.slurm.replacements": 0, "builder.slurm.poll-interval": "2s"}):
        assert slurm_replacements(2) == 0 and slurm_poll_interval() == 2.0


def hold_and_cancel(
    build: subprocess.Popen[str],
    name: str,
    held: Path,
    content: bytes,
    held_task: str,
    *,
    every_job: bool,
) -> dict[str, str]:
    """Once a worker job runs the held trial and both jobs' workers are up: the real file in
    place, then ``scancel`` of that job (``every_job``: of both). Returns the cancelled job
    ids -> their squeue state at that moment."""
    jobs: dict[str, str] = {}
    while "RUNNING" not in jobs.values():  # the build's deadline is the test's timeout
        assert build.poll() is None, "the build ended before the job was cancelled"
        time.sleep(0.2)
        jobs = queued(name)
    address = scheduler_of(next(j for j, s in jobs.items() if s == "RUNNING"))
    with Client(address, timeout=60) as client:
        client.wait_for_workers(2, timeout=300)  # a worker stays to finish the build
        holding: list[str] = []
        while not holding:
            assert build.poll() is None, "the build ended before the job was cancelled"
            running = client.run(
                lambda dask_worker: [str(ts.key) for ts in dask_worker.state.executing]
            )
            holding = [worker for worker, keys in running.items() if held_task in keys]
            time.sleep(0.05)
        job_ids = client.run(lambda: os.environ["SLURM_JOB_ID"])
        victims = sorted(set(job_ids.values()) if every_job else {job_ids[holding[0]]})
        copy = held.with_suffix(".copy")
        copy.write_bytes(content)
        os.replace(copy, held)  # its next run reads the file; this one stays blocked
        states = queued(name)
        seen = {job_id: states.get(job_id, "gone") for job_id in victims}
        slurm("scancel", *victims)
    return seen

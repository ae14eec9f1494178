"""Dask's logs go to a file, not the terminal (builder.cluster): when trial or write tasks fail
on workers, stderr holds the builder's own line, not a worker traceback per task."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dask.distributed import Client, LocalCluster

import builder
from builder.cluster import log_workers_to, logs_to_file

# Tasks that fail on the workers (storage gone) and one that kills its worker, through
# connect(); the last line on stderr is the builder's own.
SCRIPT = """
import os, signal, sys
sys.path.insert(0, {repo!r})
import dask
from builder.cluster import connect


def fail(i):
    raise OSError(f"staging unwritable {{i}}")


def die():
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    options = {{"log_file": sys.argv[1]}} if len(sys.argv) > 1 else {{}}
    with (
        dask.config.set({{"distributed.scheduler.allowed-failures": 0}}),
        connect(None, 2, ":0", **options) as client,
    ):
        for future in client.map(fail, range(6), pure=False):
            try:
                future.result()
            except OSError:
                pass
        try:
            client.submit(die, pure=False).result()
        except Exception as exc:
            print("the builder's own line:", type(exc).__name__, file=sys.stderr)
"""


def run_script(tmp_path: Path, *args: str) -> str:
    script = tmp_path / "tasks_fail.py"
    script.write_text(SCRIPT.format(repo=str(Path(builder.__file__).parents[1])))
    done = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


@pytest.mark.cluster
def test_connect_with_a_log_file_leaves_stderr_to_the_builder(tmp_path: Path) -> None:
    flood = run_script(tmp_path)  # the problem: one traceback per failed task
    assert flood.count("Compute Failed") == 6
    assert "marked as failed because 1 workers died" in flood

    log = tmp_path / "out.zarr.build" / "logs" / "dask-workers.log"
    assert run_script(tmp_path, str(log)).splitlines() == ["the builder's own line: KilledWorker"]
    text = log.read_text()
    assert text.count("Compute Failed") == 6 and "staging unwritable 5" in text
    assert "marked as failed because 1 workers died" in text  # the scheduler, in the client
    assert "Restarting worker" in text  # the nanny


def fail(i: int) -> None:
    raise OSError(f"staging unwritable {i}")


def fail_all(client: Client, n: int) -> None:
    for future in client.map(fail, range(n), pure=False):
        with pytest.raises(OSError):
            future.result()


@pytest.mark.cluster
def test_log_workers_to_sends_the_workers_records_to_the_file(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "first" / "w.log", tmp_path / "second" / "w.log"
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        log_workers_to(client, str(first))
        fail_all(client, 3)
        log_workers_to(client, str(second))  # replaces the first
        fail_all(client, 2)
    assert "Compute Failed" not in capfd.readouterr().err  # the workers inherit our stderr
    assert first.read_text().count("Compute Failed") == 3
    assert second.read_text().count("Compute Failed") == 2


@pytest.fixture
def dask_stderr(tmp_path: Path) -> Iterator[tuple[logging.Logger, Path]]:
    """Dask's "distributed" logger with a handler that prints, to a file we can read."""
    logger = logging.getLogger("distributed.worker")
    printed = tmp_path / "stderr.txt"
    stream = printed.open("w")
    handler = logging.StreamHandler(stream)
    top = logging.getLogger("distributed")
    top.addHandler(handler)
    yield logger, printed
    top.removeHandler(handler)
    stream.close()


def test_logs_to_file_replaces_what_prints_and_restores_it(tmp_path: Path, dask_stderr) -> None:
    logger, printed = dask_stderr
    handlers = list(logging.getLogger("distributed").handlers)
    log = tmp_path / "logs" / "dask.log"
    with logs_to_file(str(log)):
        logger.error("Compute Failed inside")
        logger.info("not worth a line")
    logger.error("Compute Failed after")
    assert "Compute Failed inside" in log.read_text() and "not worth" not in log.read_text()
    assert printed.read_text().splitlines() == ["Compute Failed after"]
    assert logging.getLogger("distributed").handlers == handlers


def test_an_unwritable_log_file_drops_the_records_quietly(
    tmp_path: Path, dask_stderr, capsys: pytest.CaptureFixture[str]
) -> None:
    logger, printed = dask_stderr
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with logs_to_file(str(blocker / "logs" / "dask.log")):  # the storage under it failed
        logger.error("Compute Failed")
    assert printed.read_text() == ""
    assert "Logging error" not in capsys.readouterr().err

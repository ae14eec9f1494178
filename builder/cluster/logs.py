"""Dask's logs to a file, not the terminal.

Worker logs: ``connect(..., log_file=PATH)`` (or ``log_workers_to(client, PATH)`` and
``logs_to_file(PATH)`` separately) sends Dask's log records (``distributed``, ``tornado``,
``bokeh``; warnings and above) of the workers, the nannies and this process to the file
``PATH`` instead of stderr, appended to by every process: when tasks fail on workers (storage
gone, a server down mid-build), the user sees the builder's one-line error, not thirty worker
tracebacks. ``PATH`` is local to each machine (a shared filesystem gathers them). In the
worker processes, Python warnings and any other logger's records go there too.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
from collections.abc import Iterator
from typing import IO, Any

from dask.distributed import Client
from distributed.core import Status
from distributed.diagnostics.plugin import NannyPlugin, WorkerPlugin

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

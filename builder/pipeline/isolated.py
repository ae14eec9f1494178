"""Run adapters in a separate reader process, so that a malformed file cannot take a worker down.

Native parsers do not all fail politely: on corrupted C3D files ezc3d segfaults or loops
forever (seen while fuzzing). Each build worker therefore reads trials through one persistent
child process (``python -m builder.pipeline.isolated``) that it talks to over two private pipes
(length-prefixed pickles between our own processes; never input data). When the child dies,
the trial is reported and a fresh child serves the next one. A ``subprocess`` rather than
``multiprocessing``: Dask worker processes are daemonic and may not fork managed children.

Big arrays do not go through the pipe: the child pickles its result with protocol 5 and writes
every buffer of at least ``OUT_OF_BAND_MIN_BYTES`` into a file the worker named for this read
(in ``/dev/shm`` where there is one, so in memory), and the worker maps that file and unpickles
the arrays onto the mapping: one copy in all, where pipe chunks, joining them and unpickling
copied every array three times. The worker deletes the file whatever happens to the child.

Timeouts escalate, so that a busy machine never takes a good file out of a build: a read that
takes longer than the timeout ``T`` is stopped (the child killed) and tried again in a fresh
child with ``4 T`` (``RETRY_FACTORS``); only when that attempt overruns too is the trial
reported, as a file that hangs its parser (a ``SourceError``: permanent, since the next run
would hang the same way). Only a trial that times out is read again, and the clock runs from
the moment the child has started (imported the adapters) and received the trial, so neither a
fresh child's start-up nor a previous attempt counts against a trial's limit. A child that does
not start within ``STARTUP_TIMEOUT_S`` (or ``T``, if longer), or dies before it has, is an
``OSError``: the machine's fault, not the file's.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import mmap
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from typing import Any

from builder.errors import SourceError
from builder.records import TrialRecording, TrialSpec

DEFAULT_TIMEOUT_S = 600.0
# A read that overruns its limit is tried again in a fresh child with these multiples of the
# timeout: a good file on a busy machine gets through, a file that hangs its parser does not.
RETRY_FACTORS: tuple[float, ...] = (4.0,)
# A fresh child imports numpy, scipy, ezc3d, h5py…: seconds on a loaded machine, never the file's.
STARTUP_TIMEOUT_S = 120.0
_HEADER = struct.Struct("<Q")
# How the child is run (after the interpreter): tests run a script that adds test adapters.
_CHILD: tuple[str, ...] = ("-m", "builder.pipeline.isolated")
# What the child reads: a trial, the storage options of its files (never in the spec), and the
# file to write the result's big arrays into.
_Request = tuple[TrialSpec, dict[str, Any], str]
# Buffers (numpy arrays' data) at least this large go through the mapped file, not the pipe.
OUT_OF_BAND_MIN_BYTES = 1 << 16
_ALIGN = 64  # each buffer starts at a multiple of this in the file (aligned numpy arrays)
# What travels over the result pipe: the buffers' (offset, size) in the file, and the pickle.
_Envelope = tuple[list[tuple[int, int]], bytes]


def read_time_limits(timeout_s: float) -> tuple[float, ...]:
    """The limits, in seconds, of a trial's successive read attempts for ``timeout_s``; their
    sum bounds the reading time of a file that hangs its parser (after start-up)."""
    return (timeout_s, *(timeout_s * factor for factor in RETRY_FACTORS))


def read_trial_isolated(
    spec: TrialSpec,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> list[TrialRecording]:
    """``read_trial(spec, storage_options)``, run in this process's reader child.

    Raises SourceError when the file crashes the reader or hangs it through every attempt (see
    the module docstring), and for the adapter's own SourceErrors; OSError for failures that
    may pass (I/O, the reader killed from outside, e.g. out of memory, or not starting);
    RuntimeError for anything else the adapter raised.
    """
    limits = read_time_limits(timeout_s)
    arrays = os.path.join(_buffer_dir(), f"gait-builder-{os.getpid()}-{next(_CALLS)}.arrays")
    request = (spec, dict(storage_options or {}), arrays)
    with _LOCK:
        try:
            for limit in limits:
                try:
                    kind, payload = _call(request, limit)
                    break
                except TimeoutError:
                    continue  # _call killed the child: the next attempt starts a fresh one
            else:
                kind = ""
        finally:  # mapped already where the read succeeded; a dead child may have left it
            with contextlib.suppress(FileNotFoundError):
                os.remove(arrays)
        if not kind:
            first, *retried = (f"{limit:g} s" for limit in limits)
            again = f" and, retried, longer than {', then '.join(retried)}" if retried else ""
            raise SourceError(
                spec.url,
                f"reading took longer than {first}{again}; stopped (the {spec.adapter} reader "
                "hangs on this file?)",
            )
    if kind == "ok":
        return payload
    if kind == "source_error":
        raise SourceError(*payload)
    if kind == "transient":
        raise OSError(payload)
    raise RuntimeError(payload)


def _call(request: _Request, timeout_s: float) -> tuple[str, Any]:
    """One attempt in this process's child (started if needed); TimeoutError when the read
    overran ``timeout_s``, the child then killed. Called under ``_LOCK``."""
    global _READER
    if _READER is None or not _READER.alive():
        _READER = _Reader()
    reader = _READER
    spec = request[0]
    try:
        return reader.call(request, timeout_s)
    except _ReaderDied as died:
        reader.close()
        _READER = None
        if not reader.ready:  # it died before it read the trial
            raise OSError(f"the {spec.adapter} reader process failed to start ({died})") from None
        if died.returncode == -signal.SIGKILL:
            raise OSError(f"the {spec.adapter} reader was killed (out of memory?)") from None
        raise SourceError(
            spec.url,
            f"the {spec.adapter} reader crashed on this file ({died}): malformed file?",
        ) from None
    except _StartupTimeout as slow:
        reader.kill()
        _READER = None
        raise OSError(
            f"the {spec.adapter} reader process did not start within {slow.limit_s:g} s "
            "(machine overloaded?)"
        ) from None
    except TimeoutError:
        reader.kill()
        _READER = None
        raise


class _StartupTimeout(Exception):
    """The child did not get ready in time: the machine's fault, not the file's."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        super().__init__(f"not ready within {limit_s:g} s")


class _ReaderDied(Exception):
    def __init__(self, returncode: int | None) -> None:
        self.returncode = returncode
        if returncode is not None and returncode < 0:
            text = f"killed by {signal.Signals(-returncode).name}"
        else:
            text = f"exit code {returncode}"
        super().__init__(text)


class _Reader:
    """One child process and the two pipes to it."""

    def __init__(self) -> None:
        request_read, self._request = os.pipe()
        self._result, result_write = os.pipe()
        # Not Dask's MALLOC_TRIM_THRESHOLD_: it makes every large array a fresh mmap (see
        # builder.pipeline.trial.tune_allocator); the child is short of nothing it returns.
        env = {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}
        self._process = subprocess.Popen(
            [sys.executable, *_CHILD, str(request_read), str(result_write)],
            env=env,
            pass_fds=(request_read, result_write),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # libraries may print; the channel is the pipe
            stderr=subprocess.DEVNULL,
        )
        os.close(request_read)
        os.close(result_write)
        self.ready = False  # until the child says it has imported the adapters

    def alive(self) -> bool:
        return self._process.poll() is None

    def call(self, request: _Request, timeout_s: float) -> tuple[str, Any]:
        try:
            _write(self._request, pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL))
            if not self.ready:  # the child's imports are not the trial's time
                startup_s = max(STARTUP_TIMEOUT_S, timeout_s)
                try:
                    self._receive(time.monotonic() + startup_s)  # ("ready", None)
                except TimeoutError:
                    raise _StartupTimeout(startup_s) from None
                self.ready = True
            return self._receive(time.monotonic() + timeout_s, request[2])
        except (BrokenPipeError, EOFError):
            raise _ReaderDied(self._process.wait()) from None

    def _receive(self, deadline: float, arrays: str = "") -> tuple[str, Any]:
        (size,) = _HEADER.unpack(self._read(_HEADER.size, deadline))
        layout, body = pickle.loads(self._read(size, deadline))
        result: tuple[str, Any] = pickle.loads(body, buffers=_mapped(arrays, layout))
        return result

    def _read(self, n: int, deadline: float) -> bytes:
        chunks, remaining = [], n
        while remaining:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([self._result], [], [], wait)[0]:
                raise TimeoutError
            chunk = os.read(self._result, min(remaining, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def kill(self) -> None:
        self._process.kill()
        self._process.wait()
        self.close()

    def close(self) -> None:
        for fd in (self._request, self._result):
            with contextlib.suppress(OSError):
                os.close(fd)


def _write(fd: int, payload: bytes) -> None:
    view = memoryview(_HEADER.pack(len(payload)) + payload)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _buffer_dir() -> str:
    """Where big arrays pass from the child to the worker: shared memory where there is some."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()


def _mapped(path: str, layout: list[tuple[int, int]]) -> list[memoryview]:
    """The buffers ``layout`` places in ``path``, as views of one private (copy-on-write)
    mapping: the arrays unpickled onto them are writable and never change the file, and the
    mapping lives as long as they do."""
    if not layout:
        return []
    with open(path, "rb") as f:
        mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    view = memoryview(mapping)
    return [view[offset : offset + size] for offset, size in layout]


def _envelope(result: tuple[str, Any], arrays: str) -> bytes:
    """``result`` pickled (protocol 5) with its big buffers written to ``arrays``; all in the
    pickle when there are none or the file cannot be written (full shared memory, say)."""
    big: list[pickle.PickleBuffer] = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        if buffer.raw().nbytes < OUT_OF_BAND_MIN_BYTES:
            return True  # in the pickle
        big.append(buffer)
        return False

    body = pickle.dumps(result, protocol=5, buffer_callback=out_of_band)
    layout: list[tuple[int, int]] = []
    if big:
        try:
            with open(arrays, "wb") as f:
                offset = 0
                for buffer in big:
                    raw = buffer.raw()
                    offset = -(-offset // _ALIGN) * _ALIGN
                    f.seek(offset)
                    f.write(raw)
                    layout.append((offset, raw.nbytes))
                    offset += raw.nbytes
        except OSError:
            body, layout = pickle.dumps(result, protocol=5), []
    envelope: _Envelope = (layout, body)
    return pickle.dumps(envelope, protocol=pickle.HIGHEST_PROTOCOL)


_LOCK = threading.Lock()
_CALLS = itertools.count()
_READER: _Reader | None = None


@atexit.register
def _stop_reader() -> None:
    if _READER is not None and _READER.alive():
        _READER.close()  # the child sees end-of-file and exits


# --- the child ------------------------------------------------------------------------------


def _serve(request_fd: int, result_fd: int) -> None:
    from builder.datasets import read_trial

    # Ready: the parent starts a trial's clock only now (imports take seconds on a busy machine).
    _write(result_fd, _envelope(("ready", None), ""))
    with os.fdopen(request_fd, "rb") as requests:
        while True:
            header = requests.read(_HEADER.size)
            if len(header) < _HEADER.size:
                return  # the worker went away
            spec, storage_options, arrays = pickle.loads(requests.read(_HEADER.unpack(header)[0]))
            try:
                result: tuple[str, Any] = ("ok", read_trial(spec, storage_options))
            except SourceError as exc:
                result = ("source_error", (exc.path, exc.problem))
            except (OSError, TimeoutError, MemoryError) as exc:
                result = ("transient", f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # the worker reports it with the trial
                result = ("error", f"{type(exc).__name__}: {exc}")
            _write(result_fd, _envelope(result, arrays))


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))

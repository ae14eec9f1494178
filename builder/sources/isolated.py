"""Run adapters in a separate reader process, so that a malformed file cannot take a worker down.

Native parsers do not all fail politely: on corrupted C3D files ezc3d segfaults or loops
forever (seen while fuzzing). Each build worker therefore reads trials through one persistent
child process (``python -m builder.sources.isolated``) that it talks to over two private pipes
(length-prefixed pickles between our own processes; never input data). When the child dies,
the trial is reported and a fresh child serves the next one; when it takes longer than the
timeout, it is killed and the trial is reported. A ``subprocess`` rather than
``multiprocessing``: Dask worker processes are daemonic and may not fork managed children.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from typing import Any

from builder.errors import SourceError
from builder.records import TrialRecording, TrialSpec

DEFAULT_TIMEOUT_S = 600.0
_HEADER = struct.Struct("<Q")


def read_trial_isolated(
    spec: TrialSpec, timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[TrialRecording]:
    """``get_adapter(spec.adapter).read_trial(spec, …)``, run in this process's reader child.

    Raises SourceError when the file crashes or hangs the reader (and for the adapter's own
    SourceErrors), OSError for failures that may pass (I/O, the reader killed from outside,
    e.g. out of memory), RuntimeError for anything else the adapter raised.
    """
    with _LOCK:
        global _READER
        if _READER is None or not _READER.alive():
            _READER = _Reader()
        reader = _READER
        try:
            kind, payload = reader.call(spec, timeout_s)
        except _ReaderDied as died:
            reader.close()
            _READER = None
            if died.returncode == -signal.SIGKILL:
                raise OSError(f"the {spec.adapter} reader was killed (out of memory?)") from None
            raise SourceError(
                spec.url,
                f"the {spec.adapter} reader crashed on this file ({died}): malformed file?",
            ) from None
        except TimeoutError:
            reader.kill()
            _READER = None
            raise SourceError(
                spec.url,
                f"reading took longer than {timeout_s:g} s and was stopped (the {spec.adapter} "
                "reader hung: malformed file?)",
            ) from None
    if kind == "ok":
        return payload
    if kind == "source_error":
        raise SourceError(*payload)
    if kind == "transient":
        raise OSError(payload)
    raise RuntimeError(payload)


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
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "builder.sources.isolated",
                str(request_read),
                str(result_write),
            ],
            pass_fds=(request_read, result_write),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # libraries may print; the channel is the pipe
            stderr=subprocess.DEVNULL,
        )
        os.close(request_read)
        os.close(result_write)

    def alive(self) -> bool:
        return self._process.poll() is None

    def call(self, spec: TrialSpec, timeout_s: float) -> tuple[str, Any]:
        try:
            _write(self._request, pickle.dumps(spec, protocol=pickle.HIGHEST_PROTOCOL))
            deadline = time.monotonic() + timeout_s
            (size,) = _HEADER.unpack(self._read(_HEADER.size, deadline))
            return pickle.loads(self._read(size, deadline))
        except (BrokenPipeError, EOFError):
            raise _ReaderDied(self._process.wait()) from None

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


_LOCK = threading.Lock()
_READER: _Reader | None = None


@atexit.register
def _stop_reader() -> None:
    if _READER is not None and _READER.alive():
        _READER.close()  # the child sees end-of-file and exits


# --- the child ------------------------------------------------------------------------------


def _serve(request_fd: int, result_fd: int) -> None:
    from builder.sources import read_trial

    with os.fdopen(request_fd, "rb") as requests:
        while True:
            header = requests.read(_HEADER.size)
            if len(header) < _HEADER.size:
                return  # the worker went away
            spec: TrialSpec = pickle.loads(requests.read(_HEADER.unpack(header)[0]))
            try:
                result: tuple[str, Any] = ("ok", read_trial(spec))
            except SourceError as exc:
                result = ("source_error", (exc.path, exc.problem))
            except (OSError, TimeoutError, MemoryError) as exc:
                result = ("transient", f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # the worker reports it with the trial
                result = ("error", f"{type(exc).__name__}: {exc}")
            _write(result_fd, pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))

"""Resume state beside the store (``<output>.build/``): per-trial results and the manifest.

A trial is finished when its outcome file exists; the outcome is written after the stride
arrays, with a single atomic write, so a killed worker leaves either a whole result or none.
Keys hash everything that determines a trial's result, so a changed file or setting is
rebuilt and an unchanged one never is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import io
import json
import mmap
import os
import socket
import struct
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import filelock
import fsspec
import numpy as np

from builder.errors import StoreError
from builder.records import StrideBatch, TrialSpec
from builder.store._files import atomic_write
from builder.store.location import StoreLocation
from builder.store.ownership import MARKER, claim, marker_content, owned

LOCK_HEARTBEAT_S = 30.0  # object stores: how often a build refreshes its lock
LOCK_STALE_S = 300.0  # … and when a lock that is not refreshed counts as left by a dead build

# Bump when stride processing changes in a way that changes results.
PROCESSING_REVISION = 2  # 2: the quality gate, per-stride event sources

_BATCH_FIELDS = [f.name for f in dataclasses.fields(StrideBatch)]


def trial_key(spec: TrialSpec) -> str:
    """Content hash of everything that determines the trial's strides."""
    identity = {
        f.name: getattr(spec, f.name)
        for f in dataclasses.fields(spec)
        if f.name not in ("storage_options", "source")
    }
    identity["revision"] = PROCESSING_REVISION
    text = json.dumps(identity, sort_keys=True, default=str, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class TrialOutcome:
    """A finished trial: its stride summary (what the client needs to plan the store), or why
    it was left out. Saved as JSON, with null for NaN."""

    key: str
    ok: bool
    reason: str = ""
    notes: tuple[str, ...] = ()
    event_source: str = ""
    # Left-out trials whose cause may pass (I/O, a dead worker) are retried by the next run.
    retry: bool = False
    emg_lengths: tuple[int, ...] = ()
    side: tuple[str, ...] = ()
    start_s: tuple[float, ...] = ()  # NaN where the source gives no times
    duration_s: tuple[float, ...] = ()
    envelope_peak: tuple[tuple[float, ...], ...] = ()  # (N, 13) volts, NaN where absent
    # Per-stride trial-table columns (RECORDING_METADATA): one file may hold several subjects.
    columns: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    event_sources: tuple[str, ...] = ()  # per stride: the detectors of its two heel strikes
    # What the quality gate left out: stride-components per check and kind (emg, kinematics...).
    quality: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def n_strides(self) -> int:
        return len(self.side)

    @classmethod
    def from_batch(
        cls,
        key: str,
        batch: StrideBatch,
        notes: list[str],
        event_source: str,
        columns: dict[str, list[Any]],
        times_known: np.ndarray,
        quality: dict[str, dict[str, int]] | None = None,
    ) -> TrialOutcome:
        """``times_known`` (N,) says which strides have a real start time in their file."""
        return cls(
            key=key,
            ok=True,
            notes=tuple(notes),
            event_source=event_source,
            emg_lengths=tuple(int(n) for n in np.diff(batch.emg_offsets)),
            side=tuple(str(s) for s in batch.side),
            start_s=tuple(_float(t) for t in np.where(times_known, batch.start_s, np.nan)),
            duration_s=tuple(float(t) for t in batch.duration_s),
            envelope_peak=tuple(tuple(_float(v) for v in row) for row in batch.envelope_peak),
            columns={name: tuple(values) for name, values in columns.items()},
            event_sources=tuple(str(s) for s in batch.event_source),
            quality=quality or {},
        )

    def peaks_array(self, n_muscles: int) -> np.ndarray:
        if not self.envelope_peak:
            return np.empty((0, n_muscles), np.float64)
        return np.array(self.envelope_peak, np.float64)

    def to_json(self) -> bytes:
        return json.dumps(nan_to_null(dataclasses.asdict(self)), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> TrialOutcome:
        raw = json.loads(data)
        return cls(
            **{
                **raw,
                "notes": tuple(raw["notes"]),
                "emg_lengths": tuple(raw["emg_lengths"]),
                "side": tuple(raw["side"]),
                "start_s": tuple(_null_to_nan(raw["start_s"])),
                "duration_s": tuple(raw["duration_s"]),
                "envelope_peak": tuple(tuple(_null_to_nan(row)) for row in raw["envelope_peak"]),
                "columns": {name: tuple(_null_to_nan(v)) for name, v in raw["columns"].items()},
                "event_sources": tuple(raw["event_sources"]),
            }
        )


def _float(value: Any) -> float:
    """A plain float; every NaN the same ``np.nan``, so that outcomes compare equal."""
    return float(value) if np.isfinite(value) else np.nan


def nan_to_null(value: Any) -> Any:
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: nan_to_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [nan_to_null(v) for v in value]
    return value


def _null_to_nan(values: list[Any]) -> list[float]:
    return [np.nan if v is None else v for v in values]


class Staging:
    """The ``<output>.build/`` folder, on the output's filesystem."""

    def __init__(
        self, output: str | StoreLocation, storage_options: dict[str, Any] | None = None
    ) -> None:
        self.location = StoreLocation.of(output, storage_options)  # the output's, not ours

    @property
    def url(self) -> str:
        return f"{self.location.url}.build"

    @property
    def storage_options(self) -> dict[str, Any]:
        return self.location.storage_options

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return self.location.fs

    @property
    def root(self) -> str:
        """The staging folder's path on :attr:`fs` (no protocol)."""
        return f"{self.location.path}.build"

    @property
    def local(self) -> bool:
        return self.location.is_local

    def _path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    # per-trial results ---------------------------------------------------------------
    def save_batch(self, key: str, batch: StrideBatch) -> None:
        """An uncompressed ``.npz``; on local disk written straight to its file (no copy in
        memory first), elsewhere as one object."""
        arrays = {name: getattr(batch, name) for name in _BATCH_FIELDS}
        path = self._path("trials", f"{key}.npz")
        if not self.local:
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)
            atomic_write(self.fs, path, buffer.getvalue())
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = os.path.join(os.path.dirname(path), f".{key}.npz.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)  # a full or failing disk must not leave it behind
            raise

    def load_batch(self, key: str) -> StrideBatch:
        """A staged batch; from local disk its arrays are read-only maps of the file, so a
        writer that needs a few rows of a long trial reads those rows, not the whole trial."""
        path = self._path("trials", f"{key}.npz")
        if self.local:
            mapped = _mapped_npz(path)
            if mapped is not None:
                return StrideBatch(**{name: mapped[name] for name in _BATCH_FIELDS})
        with self.fs.open(path, "rb") as f:
            data = np.load(io.BytesIO(f.read()), allow_pickle=False)
            return StrideBatch(**{name: data[name] for name in _BATCH_FIELDS})

    def save_outcome(self, outcome: TrialOutcome) -> None:
        atomic_write(self.fs, self._path("trials", f"{outcome.key}.json"), outcome.to_json())

    def load_outcome(self, key: str) -> TrialOutcome | None:
        try:
            with self.fs.open(self._path("trials", f"{key}.json"), "rb") as f:
                return TrialOutcome.from_json(f.read())
        except FileNotFoundError:
            return None
        except (ValueError, TypeError, KeyError):
            return None  # unreadable: treat as unfinished and redo it

    def clear_trials(self) -> None:
        if self.fs.exists(self._path("trials")):
            self.fs.rm(self._path("trials"), recursive=True)

    # lock ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[str | None]:
        """One build per output at a time. Yields a line to show when the lock of a build
        that died was taken over (None otherwise); raises StoreError when a live build holds
        it. Refuses a staging folder that holds someone else's data."""
        if not owned(self.fs, self.root) and self.read_manifest().get("output"):
            # resume state of a builder from before ownership markers: ours
            self.fs.pipe_file(self._path(MARKER), marker_content("staging"))
        claim(self.fs, self.root, "staging", self.url)
        locking = self._local_lock if self.local else self._object_store_lock
        with locking() as taken_over:
            yield taken_over

    @contextlib.contextmanager
    def _local_lock(self) -> Iterator[str | None]:
        """An OS file lock (flock): atomic, and released by the kernel when its build dies,
        so no stale lock is ever removed by hand. ``lock.json`` says who holds it."""
        info = self._path("lock.json")
        lock = filelock.FileLock(self._path("lock"), timeout=0)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise self._busy(_read_json(info) or {}, age_s=None) from None
        try:
            left = _read_json(info)  # still there: its build ended without releasing it
            atomic_write(self.fs, info, json.dumps(_me()).encode())
            yield _taken_over(left, "it is no longer running") if left else None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(info)
            lock.release()

    @contextlib.contextmanager
    def _object_store_lock(self) -> Iterator[str | None]:
        """Object stores have no locks: the holder rewrites the lock object every
        ``LOCK_HEARTBEAT_S``. A lock belongs to a dead build when its holder ran on this host
        and its process is gone, or when it was not refreshed for ``LOCK_STALE_S``. After
        writing, the lock is read back, so of two builds starting together one yields."""
        path = self._path("lock")
        holder = self._lock_holder(path)
        taken_over = None
        if holder:
            age = time.time() - float(holder.get("heartbeat", 0))
            if holder.get("host") == socket.gethostname() and not _alive(holder):
                taken_over = _taken_over(holder, "its process is gone")
            elif age < LOCK_STALE_S:
                raise self._busy(holder, age_s=age)
            else:
                taken_over = _taken_over(holder, f"its lock was not refreshed for {age:.0f} s")
        me = {**_me(), "token": uuid.uuid4().hex}
        self.fs.pipe_file(path, json.dumps({**me, "heartbeat": time.time()}).encode())
        time.sleep(0.2)
        holder = self._lock_holder(path)
        if not holder or holder.get("token") != me["token"]:
            raise self._busy(holder or me, age_s=0.0)
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(LOCK_HEARTBEAT_S):
                with contextlib.suppress(OSError):
                    self.fs.pipe_file(path, json.dumps({**me, "heartbeat": time.time()}).encode())

        thread = threading.Thread(target=beat, name="builder-lock-heartbeat", daemon=True)
        thread.start()
        try:
            yield taken_over
        finally:
            stop.set()
            thread.join()
            with contextlib.suppress(FileNotFoundError, OSError):
                self.fs.rm_file(path)

    def _lock_holder(self, path: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.fs.cat_file(path))
        except (FileNotFoundError, ValueError):
            return None

    def _busy(self, holder: dict[str, Any], age_s: float | None) -> StoreError:
        who = f"pid {holder.get('pid')} on {holder.get('host')}"
        if holder.get("since"):
            who += f", started {holder['since']}"
        message = f"{self.url}: another build ({who}) is writing this output"
        if age_s is None:
            return StoreError(f"{message}; wait for it or stop it first")
        wait = max(LOCK_STALE_S - age_s, 0.0)
        return StoreError(
            f"{message} (its lock was refreshed {age_s:.0f} s ago); wait for it or stop it "
            f"first; if that build is no longer running, its lock counts as stale in "
            f"{wait:.0f} s and the next run takes it over (or delete {self.url}/lock)"
        )

    # leftovers -----------------------------------------------------------------------
    def remove_leftovers(self, keys: set[str]) -> None:
        """Under the lock, before processing: delete staged results of trials that are no
        longer in the trial table (their files changed or went away) and the temporary files
        of writes that failed."""
        try:
            names = self.fs.ls(self._path("trials"), detail=False)
        except FileNotFoundError:
            names = []
        doomed = []
        for name in names:
            base = os.path.basename(name.rstrip("/"))
            stem = base.split(".")[0] if not base.startswith(".") else ""
            if base.endswith(".tmp") or (stem and stem not in keys):
                doomed.append(name)
        if self.local:
            with contextlib.suppress(FileNotFoundError):
                doomed += [
                    os.path.join(self.root, n) for n in os.listdir(self.root) if n.endswith(".tmp")
                ]
        if doomed:
            self.fs.rm(doomed)

    # manifest ------------------------------------------------------------------------
    def last_build(self) -> str | None:
        """One line on how the last build ended when it did not publish (failed, or
        interrupted), or that one is still going; None when it published or none ran."""
        manifest = self.read_manifest()
        state = manifest.get("state")
        if state in ("failed", "interrupted"):
            when = manifest.get("failed", "at an unknown time")
            reason = manifest.get("failure", "no reason recorded")
            return f"the last build {state} at {when}: {reason}"
        if state in ("processing", "writing"):
            return (
                f"a build started at {manifest.get('started', 'an unknown time')} is under way "
                "or was killed (re-run `builder run` to finish it)"
            )
        return None

    def read_manifest(self) -> dict[str, Any]:
        try:
            with self.fs.open(self._path("manifest.json"), "rb") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            return {}

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write(
            self.fs,
            self._path("manifest.json"),
            json.dumps(manifest, indent=2, sort_keys=True).encode(),
        )

    def record_failure(self, reason: str, state: str = "failed") -> None:
        """Mark the manifest: the last build ended now (``state``: failed or interrupted), for
        ``reason`` (one line). Best effort: the storage that made the build fail may refuse
        this write too."""
        with contextlib.suppress(Exception):
            manifest = self.read_manifest()
            manifest.update(
                state=state,
                failed=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                failure=" ".join(reason.split()),
            )
            self.write_manifest(manifest)


def _mapped_npz(path: str) -> dict[str, np.ndarray] | None:
    """The arrays of an uncompressed ``.npz`` (as ``np.savez`` writes it) as read-only views
    of one map of the file; None when a member is compressed or holds Python objects (then
    ``np.load`` reads it)."""
    arrays: dict[str, np.ndarray] = {}
    with open(path, "rb") as f, zipfile.ZipFile(f) as archive:
        members = archive.infolist()
        if any(m.compress_type != zipfile.ZIP_STORED for m in members):
            return None
        mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        for member in members:
            f.seek(member.header_offset)
            local = f.read(_ZIP_LOCAL_HEADER.size)
            name_length, extra_length = _ZIP_LOCAL_HEADER.unpack(local)[-2:]
            f.seek(member.header_offset + len(local) + name_length + extra_length)
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            if dtype.hasobject:
                return None
            arrays[member.filename.removesuffix(".npy")] = np.ndarray(
                shape, dtype, buffer=mapping, offset=f.tell(), order="F" if fortran else "C"
            )
    return arrays


# A zip member's local header: signature … file name length, extra field length.
_ZIP_LOCAL_HEADER = struct.Struct("<4s5H3L2H")


def _read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _me() -> dict[str, Any]:
    since = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": since}


def _taken_over(holder: dict[str, Any], why: str) -> str:
    return (
        f"took over the build lock of pid {holder.get('pid')} on {holder.get('host')} "
        f"(started {holder.get('since', 'at an unknown time')}; {why}: killed or failed)"
    )


def _alive(holder: dict[str, Any]) -> bool:
    """Whether the lock holder still runs (a holder on another host is assumed alive)."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError, TypeError):
        return True
    return True

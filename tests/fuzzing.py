"""Seeded mutations of real input files, and the worker that runs them through the real
pipeline path (``builder.pipeline.trial.process_trial`` with isolated readers); for tests/test_fuzz.py.

A mutation is a pure function of (original bytes, file kind, seed): :func:`mutation` gives the
same description and bytes for the same seed, so any input a test reports can be rebuilt with
``mutation(Path(file).read_bytes(), kind, seed)`` and read on its own.

- binary files (C3D, MAT v5, MAT v7.3/HDF5): truncation (at 0 bytes, inside headers,
  anywhere), byte overwrites and bit flips concentrated in the format's header / parameter /
  metadata regions (:func:`regions`) or spread over the body, extreme integers and floats
  written into header fields, zeroed and random blocks, inserted and removed blocks;
- text tables (CSV, tab-separated text, OpenSim .mot/.sto): truncation, empty and header-only
  files, removed / duplicated / swapped lines, garbage cells (non-numeric text, NaN, inf,
  huge and tiny numbers), whole columns replaced, swapped, renamed or removed, ragged rows,
  broken time columns, damaged OpenSim headers, byte flips, CRLF / BOM / Latin-1 bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import faulthandler
import os
import re
import shutil
import struct
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from builder.conventions import JOINTS, MUSCLES, PLANES, SAMPLES_PER_STRIDE
from builder.pipeline.isolated import STARTUP_TIMEOUT_S, read_time_limits
from builder.pipeline.trial import process_trial
from builder.processing.strides import MAX_STRIDE_S, MIN_STRIDE_S
from builder.records import StrideBatch, TrialSpec
from builder.store.staging import Staging, TrialOutcome, trial_key

BASE_SEED = 20240611
Seed = tuple[int, int, int]

# Some mutated C3D headers make ezc3d allocate 12-17 GB and page it in for 10-50 s before it
# fails. Uncapped, whether such an input ends "rejected" or "reader hang" depends on the load,
# and two at once can exhaust the machine's memory (an OOM kill reads as retry=True). Under
# this address-space cap the allocation fails at once: std::bad_alloc, "rejected", anywhere.
MEMORY_CAP = 8 << 30


@contextlib.contextmanager
def memory_capped() -> Iterator[None]:
    """This process, and the processes it starts meanwhile (Dask workers, their readers),
    under an address-space limit of MEMORY_CAP (more if this process is already large)."""
    if sys.platform != "linux":
        yield
        return
    import resource  # POSIX only

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as status:
        size = next(int(line.split()[1]) << 10 for line in status if line.startswith("VmSize:"))
    cap = max(MEMORY_CAP, size + (4 << 30))  # room for this process's own allocations
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def watchdog_s(read_timeout_s: float) -> float:
    """Seconds after which a process_trial call is stuck outside its reader: every read
    attempt's limit and reader start-up, plus two minutes for the processing."""
    limits = read_time_limits(read_timeout_s)
    return sum(limits) + len(limits) * STARTUP_TIMEOUT_S + 120

# --- where the format keeps what its parser trusts --------------------------------------------


def regions(data: bytes, kind: str) -> list[tuple[int, int]]:
    """Byte ranges a parser trusts most (headers, parameter sections, element tags, HDF5
    metadata, zip directories): mutations concentrate there."""
    size = len(data)
    found: list[tuple[int, int]] = []
    if kind == "c3d":
        found.append((0, min(size, 512)))
        if size >= 18:
            first = max(data[0], 1)
            for fmt in ("<H", ">H"):
                (data_block,) = struct.unpack_from(fmt, data, 16)
                if first < data_block and (data_block - 1) * 512 <= size:
                    found.append(((first - 1) * 512, (data_block - 1) * 512))
                    break
            else:
                found.append((512, min(size, 512 * 12)))
    elif kind == "mat":
        found.append((0, min(size, 128)))
        if data[512:516] == b"\x89HDF":
            found += _hdf5_metadata(data)
        else:
            found += _mat5_tags(data)
            if size >= 124:
                (subsystem,) = struct.unpack_from("<q", data, 116)
                if 128 < subsystem < size:
                    found.append((subsystem, size))  # MCOS objects (tables, strings)
    return [(a, b) for a, b in found if b > a] or [(0, min(size, 512))]


def _mat5_tags(data: bytes) -> list[tuple[int, int]]:
    """The tag and first bytes of every top-level MAT v5 element (array flags, dimensions,
    name; the zlib header of a compressed one)."""
    found, offset = [], 128
    while offset + 8 <= len(data) and len(found) < 64:
        _, n = struct.unpack_from("<II", data, offset)
        found.append((offset, min(len(data), offset + 96)))
        offset += 8 + n + (-n % 8 if n else 0)
    return found


def _hdf5_metadata(data: bytes) -> list[tuple[int, int]]:
    """The superblock and the object headers, B-trees, heaps and symbol-table nodes."""
    found = [(512, min(len(data), 512 + 256))]
    pattern = re.compile(rb"OHDR|OCHK|TREE|HEAP|SNOD|GCOL|FRHP|FHDB|FHIB|BTHD|BTIN|BTLF")
    for match in pattern.finditer(data):
        found.append((match.start(), min(len(data), match.start() + 128)))
    return found


# --- binary mutations ---------------------------------------------------------------------

_EXTREME_INTS = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF)
_EXTREME_FLOATS = (0.0, -1.0, 1e-30, 1e30, 3.0e38, float("nan"), float("inf"), -float("inf"))


def _offset(rng: np.random.Generator, size: int, spots: list[tuple[int, int]]) -> int:
    """A byte offset: in a trusted region two times out of three, else anywhere."""
    if size == 0:
        return 0
    if rng.random() < 2 / 3:
        a, b = spots[int(rng.integers(len(spots)))]
        return int(rng.integers(a, max(b, a + 1))) % size
    return int(rng.integers(size))


def _binary(data: bytes, rng: np.random.Generator, kind: str) -> tuple[str, bytes]:
    size = len(data)
    spots = regions(data, kind)
    out = bytearray(data)
    op = rng.choice(
        ["truncate", "header", "bits", "ints", "floats", "body", "zero", "random", "insert",
         "delete", "empty"],
        p=[0.17, 0.2, 0.08, 0.1, 0.05, 0.12, 0.09, 0.06, 0.05, 0.06, 0.02],
    )
    if op == "empty":
        return "empty file", b""
    if op == "truncate":
        where = rng.random()
        if where < 0.3:
            n = int(rng.integers(1, min(size, 600)))  # inside the header
        elif where < 0.55:
            a, b = spots[int(rng.integers(len(spots)))]
            n = int(np.clip(int(rng.integers(a, b + 1)) + int(rng.integers(-8, 9)), 1, size - 1))
        else:
            n = int(rng.integers(1, size))
        return f"truncated to {n} of {size} bytes", bytes(out[:n])
    if op in ("header", "bits", "body"):
        k = int(rng.integers(1, 13 if op != "body" else 65))
        where = []
        for _ in range(k):
            i = _offset(rng, size, spots) if op != "body" else int(rng.integers(size))
            if op == "bits":
                out[i] ^= 1 << int(rng.integers(8))
            else:
                out[i] = int(rng.integers(256))
            where.append(i)
        what = {"header": "bytes overwritten", "bits": "bits flipped", "body": "bytes overwritten"}
        return f"{k} {what[op]} ({'headers' if op != 'body' else 'anywhere'}) at {where[:6]}…", bytes(out)
    if op == "ints":
        k = int(rng.integers(1, 4))
        done = []
        for _ in range(k):
            width = int(rng.choice([1, 2, 4]))
            i = _offset(rng, size, spots) & ~(width - 1)
            value = int(rng.choice(_EXTREME_INTS)) & ((1 << (8 * width)) - 1)
            order = "<" if rng.random() < 0.8 else ">"
            chunk = value.to_bytes(width, "little" if order == "<" else "big")
            out[i : i + width] = chunk[: max(0, size - i)]
            done.append(f"{value:#x}/{width}B{order}@{i}")
        return f"extreme integers {', '.join(done)}", bytes(out[:size])
    if op == "floats":
        i = _offset(rng, size, spots) & ~3
        value = float(rng.choice(_EXTREME_FLOATS))
        chunk = struct.pack("<f" if rng.random() < 0.5 else "<d", value)
        out[i : i + len(chunk)] = chunk[: max(0, size - i)]
        return f"float {value!r} ({len(chunk)} bytes) at {i}", bytes(out[:size])
    length = int(rng.choice([8, 64, 512, 4096]))
    i = _offset(rng, size, spots)
    if op == "zero":
        out[i : i + length] = bytes(min(length, size - i))
        return f"{length} bytes zeroed at {i}", bytes(out)
    if op == "random":
        out[i : i + length] = rng.integers(0, 256, min(length, size - i), dtype=np.uint8).tobytes()
        return f"{length} random bytes at {i}", bytes(out)
    if op == "insert":
        j = int(rng.integers(size))
        block = bytes(out[j : j + length])
        return f"{len(block)} bytes from {j} inserted at {i}", bytes(out[:i] + block + out[i:])
    return f"{length} bytes removed at {i}", bytes(out[:i] + out[i + length :])


# --- text mutations -----------------------------------------------------------------------

_GARBAGE = (
    "", " ", "abc", "NaN", "nan", "inf", "-inf", "Infinity", "1e308", "-1e308", "1e309",
    "1e-320", "9" * 400, "0x1A", "1,5", "--", '"', "'", "#", "N/A", "null", "true", "\x00",
    "é", "1e5000", "-0", "1.2.3", "١٢٣",
)


def _text(data: bytes, rng: np.random.Generator, kind: str) -> tuple[str, bytes]:
    text = data.decode("utf-8", "surrogateescape")
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.split(newline)
    trailing = lines[-1] == ""
    if trailing:
        lines.pop()
    head = 0
    if kind == "opensim":
        head = next((i + 1 for i, s in enumerate(lines) if s.strip().lower() == "endheader"), 0)
    sep = "\t" if head < len(lines) and "\t" in lines[head] else ","
    body = list(range(head + 1, len(lines)))

    def join(rows: list[str]) -> bytes:
        out = newline.join(rows) + (newline if trailing else "")
        return out.encode("utf-8", "surrogateescape")

    def cells(i: int) -> list[str]:
        return lines[i].split(sep)

    def some_rows(k: int) -> list[int]:
        return sorted(int(i) for i in rng.choice(body, size=min(k, len(body)), replace=False))

    def column() -> int:
        n = len(cells(head))
        return 0 if rng.random() < 0.3 or n == 1 else int(rng.integers(n))

    ops = [
        "truncate", "empty", "header_only", "no_header", "delete", "delete_block", "duplicate",
        "swap_lines", "cells", "column", "swap_columns", "rename", "drop_column", "ragged",
        "time", "scale", "block_values", "bytes", "encoding", "opensim_header",
    ]
    weights = np.array([8, 1, 1, 2, 5, 4, 5, 3, 12, 8, 5, 5, 4, 3, 6, 4, 4, 6, 3, 5], float)
    if kind != "opensim":
        weights[-1] = 0
    op = rng.choice(ops, p=weights / weights.sum())
    if op == "truncate":
        header_end = len("\n".join(lines[: head + 1]).encode())
        n = int(rng.integers(1, header_end + 1)) if rng.random() < 0.35 else int(
            rng.integers(1, len(data))
        )
        return f"truncated to {n} of {len(data)} bytes", data[:n]
    if op == "empty":
        return "empty file", b""
    if op == "header_only":
        return "header only, no data rows", join(lines[: head + 1])
    if op == "no_header":
        return "column-name line removed", join(lines[:head] + lines[head + 1 :])
    if op == "delete":
        gone = set(some_rows(int(rng.integers(1, 20))))
        return f"lines {sorted(gone)[:8]}… removed", join(
            [s for i, s in enumerate(lines) if i not in gone]
        )
    if op == "delete_block":
        a = int(rng.choice(body))
        b = a + int(rng.integers(1, max(2, len(lines) // 3)))
        return f"lines {a}:{b} removed", join(lines[:a] + lines[b:])
    if op == "duplicate":
        rows = some_rows(int(rng.integers(1, 10)))
        out = []
        for i, s in enumerate(lines):
            out += [s, s] if i in rows else [s]
        return f"lines {rows[:8]}… duplicated", join(out)
    if op == "swap_lines":
        a, b = some_rows(2) if len(body) > 1 else (head, head)
        lines[a], lines[b] = lines[b], lines[a]
        return f"lines {a} and {b} swapped", join(lines)
    if op == "cells":
        k = int(rng.integers(1, 30))
        done = []
        for i in some_rows(k):
            row = cells(i)
            j = int(rng.integers(len(row)))
            row[j] = str(rng.choice(_GARBAGE))
            lines[i] = sep.join(row)
            done.append(f"{i}:{j}={row[j][:12]!r}")
        return f"garbage cells {done[:6]}…", join(lines)
    if op in ("column", "scale"):
        j = column()
        token = str(rng.choice(_GARBAGE)) if op == "column" else ""
        factor = float(rng.choice([1e300, -1e300, 1e-300, 1e30, 0.0, -1.0]))
        for i in body:
            row = cells(i)
            if j < len(row):
                if op == "column":
                    row[j] = token
                else:
                    try:
                        row[j] = repr(float(row[j]) * factor)
                    except ValueError:
                        row[j] = "1e308"
                lines[i] = sep.join(row)
        what = f"= {token[:12]!r}" if op == "column" else f"× {factor:g}"
        return f"column {j} {what} in every row", join(lines)
    if op == "swap_columns":
        names = cells(head)
        if len(names) > 1:
            a, b = (int(x) for x in rng.choice(len(names), 2, replace=False))
            if rng.random() < 0.5:  # the names only
                names[a], names[b] = names[b], names[a]
                lines[head] = sep.join(names)
                return f"column names {a} and {b} swapped", join(lines)
            for i in [head, *body]:
                row = cells(i)
                if max(a, b) < len(row):
                    row[a], row[b] = row[b], row[a]
                    lines[i] = sep.join(row)
            return f"columns {a} and {b} swapped (names and data)", join(lines)
        return "column names swapped (single column: unchanged)", join(lines)
    if op == "rename":
        names = cells(head)
        j = column()
        new = str(rng.choice(["", "x", names[j].upper(), names[j] + "_2", " " + names[j] + " ",
                              names[0], "time", "Time", names[-1], "é"]))
        names[j] = new
        lines[head] = sep.join(names)
        return f"column {j} renamed {new!r}", join(lines)
    if op == "drop_column":
        j = column()
        for i in [head, *body]:
            row = cells(i)
            if j < len(row):
                del row[j]
                lines[i] = sep.join(row)
        return f"column {j} removed", join(lines)
    if op == "ragged":
        rows = some_rows(int(rng.integers(1, 8)))
        for i in rows:
            row = cells(i)
            lines[i] = sep.join(row[:-1] if rng.random() < 0.5 else [*row, "1.0"])
        return f"lines {rows[:8]}… have a cell too few or too many", join(lines)
    if op == "time":
        j = 0
        i = int(rng.choice(body)) if body else head
        how = str(rng.choice(["huge", "negative", "repeat", "reverse", "nan", "step"]))
        row = cells(i)
        if how == "reverse":
            rows = some_rows(2) if len(body) > 1 else [head, head]
            for r in range(rows[0], rows[1] + 1):
                rr = cells(r)
                rr[j] = f"{-float(rr[j]) if _is_number(rr[j]) else 0.0!r}"
                lines[r] = sep.join(rr)
        elif how == "step":
            for r in body[body.index(i) :] if i in body else []:
                rr = cells(r)
                if _is_number(rr[j]):
                    rr[j] = repr(float(rr[j]) + 1000.0)
                    lines[r] = sep.join(rr)
        else:
            row[j] = {"huge": "1e300", "negative": "-5", "nan": "nan"}.get(
                how, cells(i - 1)[j] if i - 1 > head else row[j]
            )
            lines[i] = sep.join(row)
        return f"time column: {how} at line {i}", join(lines)
    if op == "block_values":
        value = str(rng.choice(["nan", "inf", "-inf", "1e308", "0"]))
        rows = body[int(rng.integers(len(body))) :][: int(rng.integers(1, 200))] if body else []
        for i in rows:
            row = cells(i)
            lines[i] = sep.join([row[0], *([value] * (len(row) - 1))])
        return f"{len(rows)} lines from {rows[0] if rows else '-'} set to {value}", join(lines)
    if op == "bytes":
        out = bytearray(data)
        k = int(rng.integers(1, 20))
        end = len("\n".join(lines[: head + 1]).encode())
        for _ in range(k):
            i = int(rng.integers(end if rng.random() < 0.5 else len(out))) if out else 0
            if out:
                out[min(i, len(out) - 1)] = int(rng.integers(256))
        return f"{k} bytes overwritten", bytes(out)
    if op == "encoding":
        how = str(rng.choice(["crlf", "bom", "latin1", "nul", "cr"]))
        if how == "crlf":
            return "CRLF line ends", data.replace(b"\n", b"\r\n")
        if how == "cr":
            return "CR line ends", data.replace(b"\r\n", b"\n").replace(b"\n", b"\r")
        if how == "bom":
            return "UTF-8 byte-order mark", b"\xef\xbb\xbf" + data
        if how == "nul":
            i = int(rng.integers(len(data)))
            return f"NUL bytes at {i}", data[:i] + b"\x00" * 16 + data[i:]
        i = int(rng.integers(len(data)))
        return f"Latin-1 bytes at {i}", data[:i] + b"\xe9\xff\xfe" + data[i:]
    # opensim_header
    how = str(rng.choice(["no_endheader", "degrees", "nrows", "blank", "name"]))
    if how == "no_endheader":
        return "no endheader line", join([s for s in lines if s.strip().lower() != "endheader"])
    if how == "degrees":
        flip = {"inDegrees=yes": "inDegrees=no", "inDegrees=no": "inDegrees=yes"}
        return "inDegrees flipped", join([flip.get(s.strip(), s) for s in lines])
    if how == "nrows":
        return "nRows garbage", join(["nRows=abc" if s.startswith("nRows") else s for s in lines])
    if how == "blank":
        return "header emptied", join(["" for _ in lines[: max(head - 1, 0)]] + lines[max(head - 1, 0) :])
    return "name line removed", join(lines[1:])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def mutation(data: bytes, kind: str, seed: Seed) -> tuple[str, bytes]:
    """(description, mutated bytes) of ``data`` (a file of ``kind``: c3d, mat, csv,
    opensim), a pure function of its arguments."""
    rng = np.random.default_rng(list(seed))
    if kind in ("csv", "opensim"):
        if rng.random() < 0.12:  # the binary mutations apply to text too
            return _binary(data, rng, "text")
        return _text(data, rng, kind)
    return _binary(data, rng, kind)


# --- the worker ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One file to mutate ``count`` times, read through ``spec``'s trial."""

    family: str  # summary row: c3d, mat-v5, mat-v7.3, mat-table, csv, opensim
    name: str
    spec: TrialSpec  # over the pristine files under ``root``
    root: str  # the folder copied for each chunk (the trial's file and its siblings)
    file: str  # relative to root: the file mutated
    kind: str  # mutation kind (see :func:`mutation`)
    count: int
    copy: tuple[str, ...] = ()  # relative paths to copy; empty: all of ``root``

    @property
    def number(self) -> int:
        return zlib.crc32(self.name.encode())

    def seed(self, i: int) -> Seed:
        return (BASE_SEED, self.number, i)


@dataclass
class Result:
    family: str
    target: str
    index: int
    seed: Seed
    mutation: str
    kind: str = ""  # built, rejected, reader crash, reader hang, unhandled
    reason: str = ""
    retry: bool = False
    n_strides: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"{self.target} #{self.index} seed={self.seed} [{self.mutation}] -> {self.kind}: "
            f"{self.reason[:300]!r}"
        )


UNHANDLED = re.compile(r"^([A-Z]\w*(Error|Exception|Warning|Exit|Interrupt)\b:?\s*)+")


def classify(outcome: TrialOutcome) -> str:
    if outcome.ok:
        return "built"
    if "reader crashed on this file" in outcome.reason:
        return "reader crash"
    if "reading took longer than" in outcome.reason:
        return "reader hang"
    if UNHANDLED.match(outcome.reason):
        return "unhandled"  # a Python exception escaped the adapter or the processing
    return "rejected"


def run_chunk(
    target: Target, first: int, count: int, work: str, read_timeout_s: float, progress: str
) -> list[Result]:
    """Mutate ``target``'s file for inputs ``first`` … ``first + count - 1`` in a private copy
    and run each through ``process_trial``; every input's result with its problems."""
    private = Path(tempfile.mkdtemp(prefix=f"{target.family}-", dir=work))
    data_root = private / "data"
    source = Path(target.root)
    if target.copy:
        for rel in target.copy:
            (data_root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / rel, data_root / rel)
    else:
        shutil.copytree(source, data_root)
    spec = dataclasses.replace(
        target.spec,
        url=target.spec.url.replace(str(source), str(data_root), 1),
        root=target.spec.root.replace(str(source), str(data_root), 1),
    )
    path = data_root / target.file
    original = path.read_bytes()
    staging = Staging(str(private / "s.zarr"))
    results = []
    stamp = time.time_ns()
    with memory_capped():  # its reader children inherit the cap
        try:
            for i in range(first, first + count):
                seed = target.seed(i)
                what, data = mutation(original, target.kind, seed)
                result = Result(target.family, target.name, i, seed, what)
                with open(progress, "w") as f:  # the parent names the input if this process dies
                    f.write(f"{target.name} file={target.file} input={i} seed={seed} [{what}]\n")
                path.write_bytes(data)
                stamp += 10_000_000  # a distinct mtime per input (caches keyed on (mtime, size))
                os.utime(path, ns=(stamp, stamp))
                trial = dataclasses.replace(spec, file_id=f"fuzz:{target.name}:{i}")
                key = trial_key(trial)
                # Processing after the reader is not under the read timeout: a watchdog names a hang.
                faulthandler.dump_traceback_later(watchdog_s(read_timeout_s), exit=True)
                clock = time.perf_counter()
                try:
                    outcome = process_trial(trial, key, staging, read_timeout_s=read_timeout_s)
                except BaseException:  # process_trial must never raise
                    result.kind = "raised"
                    result.problems.append("process_trial raised: " + traceback.format_exc())
                    results.append(result)
                    continue
                finally:
                    faulthandler.cancel_dump_traceback_later()
                    result.seconds = time.perf_counter() - clock
                result.kind = classify(outcome)
                result.reason, result.retry, result.n_strides = outcome.reason, outcome.retry, outcome.n_strides
                result.problems += outcome_problems(outcome, staging, key)
                results.append(result)
        finally:
            path.write_bytes(original)
            shutil.rmtree(private, ignore_errors=True)
            with open(progress, "a") as f:
                f.write("done\n")
    return results


def outcome_problems(outcome: TrialOutcome, staging: Staging, key: str) -> list[str]:
    """What is wrong with one trial's outcome and staged batch (nothing, for a good one)."""
    npz = Path(staging.root) / "trials" / f"{key}.npz"
    staged = staging.load_outcome(key)
    problems = []
    if staged is None or staged.ok != outcome.ok or staged.reason != outcome.reason:
        problems.append("the staged outcome differs from the returned one")
    if not outcome.ok:
        reason = outcome.reason
        if not reason.strip():
            problems.append("empty reason")
        if "\n" in reason or "\r" in reason:
            problems.append(f"reason spans several lines: {reason[:500]!r}")
        if outcome.retry:
            problems.append(f"retry=True for a deterministic bad input: {reason[:300]!r}")
        if UNHANDLED.sub("", reason).strip() == "":
            problems.append(f"reason names no problem: {reason!r}")
        if outcome.n_strides:
            problems.append("a failed outcome lists strides")
        if npz.exists():
            problems.append("a failed trial left a staged stride batch")
        return problems
    try:
        batch = staging.load_batch(key)
    except Exception as exc:
        return [f"staged batch unreadable: {type(exc).__name__}: {exc}"]
    problems += batch_problems(batch)
    lengths = tuple(int(n) for n in np.diff(batch.emg_offsets))
    if outcome.n_strides != batch.n_strides or outcome.emg_lengths != lengths:
        problems.append("outcome and staged batch disagree on strides / EMG rows")
    elif not np.array_equal(np.asarray(outcome.duration_s), batch.duration_s):
        problems.append("outcome and staged batch disagree on durations")
    npz.unlink()  # keep the working folder small
    return problems


# EMG rows per stride: duration × 1 kHz, give or take the rounding of both ends (and one
# source sample of resampling at the end of a recording).
EMG_ROWS_SLACK = 3


def batch_problems(batch: StrideBatch) -> list[str]:
    """Internal consistency of one trial's strides: no partial stride."""
    n, m, s = batch.n_strides, len(MUSCLES), SAMPLES_PER_STRIDE
    j, p = len(JOINTS), len(PLANES)
    shapes = {
        "emg_envelope": (n, s, m),
        "kinematics": (n, s, j, p),
        "kinetics": (n, s, j, p),
        "emg_mask": (n, m),
        "kinematics_mask": (n, j, p),
        "kinetics_mask": (n, j, p),
        "envelope_peak": (n, m),
        "side": (n,),
        "start_s": (n,),
        "duration_s": (n,),
        "emg_offsets": (n + 1,),
    }
    problems = [
        f"{name} has shape {getattr(batch, name).shape}, expected {shape}"
        for name, shape in shapes.items()
        if getattr(batch, name).shape != shape
    ]
    if batch.emg.ndim != 2 or batch.emg.shape[1] != m:
        problems.append(f"emg has shape {batch.emg.shape}")
    if problems:
        return problems
    if n == 0:
        return ["a built trial with no stride"]
    for name in ("emg", "emg_envelope", "kinematics", "kinetics", "envelope_peak", "start_s",
                 "duration_s"):
        values = getattr(batch, name)
        if np.isinf(values).any():
            problems.append(f"{name} holds inf")
    offsets = batch.emg_offsets
    lengths = np.diff(offsets)
    if offsets[0] != 0 or (lengths < 0).any() or offsets[-1] != batch.emg.shape[0]:
        problems.append(f"emg_offsets {offsets[:5]}… not monotone from 0 to {batch.emg.shape[0]}")
        return problems
    d = batch.duration_s
    if not (np.isfinite(d).all() and (d >= MIN_STRIDE_S - 1e-9).all() and (d <= MAX_STRIDE_S + 1e-9).all()):
        problems.append(f"implausible stride durations {d[(d < MIN_STRIDE_S) | ~(d <= MAX_STRIDE_S)][:5]}")
    off = np.abs(lengths - d * 1000.0)
    if (off > EMG_ROWS_SLACK).any():
        i = int(np.argmax(off))
        problems.append(f"stride {i}: {lengths[i]} EMG rows for {d[i]:.4f} s")
    if not np.isfinite(batch.start_s).all():
        problems.append("non-finite stride start times")
    if not set(batch.side.tolist()) <= {"L", "R"}:
        problems.append(f"sides {sorted(set(batch.side.tolist()))}")
    problems += _mask_problems("emg_envelope", batch.emg_envelope, batch.emg_mask, axis=1)
    problems += _mask_problems("kinematics", batch.kinematics, batch.kinematics_mask, axis=1)
    problems += _mask_problems("kinetics", batch.kinetics, batch.kinetics_mask, axis=1)
    peak = batch.envelope_peak
    if not (np.isfinite(peak[batch.emg_mask]).all() and np.isnan(peak[~batch.emg_mask]).all()):
        problems.append("envelope_peak disagrees with emg_mask")
    for i in range(n):
        rows = batch.emg[offsets[i] : offsets[i + 1]]
        mask = batch.emg_mask[i]
        if rows.shape[0] and not (
            np.isfinite(rows[:, mask]).all() and np.isnan(rows[:, ~mask]).all()
        ):
            problems.append(f"stride {i}: EMG rows disagree with emg_mask")
            break
        if mask.any() and rows.shape[0] == 0:
            problems.append(f"stride {i}: EMG present but no rows")
            break
    return problems


def _mask_problems(name: str, values: np.ndarray, mask: np.ndarray, axis: int) -> list[str]:
    finite = np.isfinite(values).all(axis=axis)
    empty = np.isnan(values).all(axis=axis)
    problems = []
    if (mask & ~finite).any():
        problems.append(f"{name}: a component marked present is not finite throughout")
    if (~mask & ~empty).any():
        problems.append(f"{name}: a component marked absent is not all NaN")
    return problems


# --- a summary -------------------------------------------------------------------------------

KINDS = ("built", "rejected", "reader crash", "reader hang", "unhandled", "raised")


def summary(results: list[Any], families: list[str]) -> str:
    """A table of outcome kinds per format family."""
    rows = [("family", "inputs", *KINDS, "s/input")]
    for family in [*families, "total"]:
        mine = [r for r in results if family in (r.family, "total")]
        if not mine:
            continue
        counts = [sum(r.kind == k for r in mine) for k in KINDS]
        mean = sum(r.seconds for r in mine) / len(mine)
        rows.append((family, str(len(mine)), *map(str, counts), f"{mean:.3f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.rjust(w) if k else c.ljust(w) for k, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    )


def run_all(
    targets: list[Target],
    work: Path,
    *,
    read_timeout_s: float,
    chunk: int = 20,
    workers: int = 2,
    submit: Callable[..., Any] | None = None,
) -> tuple[list[Result], list[str]]:
    """Every target's inputs over ``workers`` spawned processes (each with its own reader
    child): (results, failures of the harness itself: a worker that died or hung)."""
    import concurrent.futures as cf
    import multiprocessing

    jobs = []
    for target in targets:
        for first in range(0, target.count, chunk):
            jobs.append((target, first, min(chunk, target.count - first)))
    jobs.sort(key=lambda job: -job[2] * (4 if job[0].family == "c3d" else 1))
    results: list[Result] = []
    failures: list[str] = []
    context = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {}
        for n, (target, first, count) in enumerate(jobs):
            progress = str(work / f"progress-{n}.txt")
            future = pool.submit(run_chunk, target, first, count, str(work), read_timeout_s, progress)
            futures[future] = progress
        for future in cf.as_completed(futures):
            try:
                results += future.result()
            except Exception as exc:
                last = Path(futures[future]).read_text() if Path(futures[future]).exists() else ""
                if last and not last.endswith("done\n"):
                    failures.append(f"worker died ({type(exc).__name__}) on: {last.strip()}")
                elif not failures:
                    failures.append(f"worker failed: {type(exc).__name__}: {exc}")
    sys.stdout.flush()
    return results, failures

"""Benchmark of the training loader on a store much larger than what the loader keeps.

Run: ``python bench/bench_loader.py [--store DEMO_STORE] [--repeats N]`` (needs the test
extra: PyTorch and moto's S3 server). A store of the builder's layout (its arrays, chunks,
shards and codecs, from ``create_template``) is filled with the demo store's stride values
tiled to ≥ ``SIZE_X`` × the chunks a ``StrideDataset`` holds (``max_chunks``), once on local
disk and once on moto's S3 server over HTTP. Then, side by side, interleaved over
``--repeats`` rounds (medians reported), one epoch each of the same chunk-shuffled batches of
32 (kinematics, kinetics, EMG envelopes and their masks):

- indexed out of in-RAM numpy copies of the arrays (the reference);
- ``stride_loader`` from local disk with 0 and 2 loader workers; with 0 workers once with the
  store's pages dropped from the OS page cache first (``posix_fadvise(DONTNEED)``: reads come
  from the disk) and once with them cached (reads are page-cache copies; decoding remains);
- ``stride_loader`` from the S3 server with 0 and 2 loader workers (moto keeps the objects in
  memory: what is timed is HTTP and decoding);
- the codec alone: the store's Blosc/zstd codec decoding the same chunks on one thread,
  the floor of any reader of this layout.

Every epoch reads every chunk from storage (the store is ≥ 10× the chunks held). CPU is the
process's and its workers' CPU time per stride. Prints a markdown report and writes it to
``bench/results/loader.md``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported

import argparse  # noqa: E402
import contextlib  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numcodecs  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
import s3fs  # noqa: E402
import torch  # noqa: E402
import zarr  # noqa: E402
from _report import publish  # noqa: E402
from bench_storage import Server, demo_build  # noqa: E402

from builder.demo import ensure_demo_sources  # noqa: E402
from builder.store.layout import ChunkLayout, create_template  # noqa: E402
from builder.training.data import (  # noqa: E402
    _MASKS,
    CACHED_CHUNKS,
    SIGNALS,
    ChunkShuffleSampler,
    StoreSource,
    StrideDataset,
    stride_loader,
)

BATCH = 32
SIZE_X = 12  # store size in chunks / chunks the loader holds
NAMES = tuple(n for s in SIGNALS for n in (s, _MASKS[s]))


def tiled_store(demo: str, url: str, options: dict[str, Any] | None, n_strides: int) -> None:
    """A store of the builder's layout whose loader arrays hold the demo's strides, tiled."""
    source = zarr.open_group(demo, mode="r")
    group = zarr.open_group(url, mode="w", zarr_format=3, storage_options=options)
    create_template(group, n_strides, 0, ChunkLayout())
    repeats = -(-n_strides // source["stride"].shape[0])
    group["stride"][...] = np.arange(n_strides)
    for name in NAMES:
        group[name][...] = np.concatenate([source[name][...]] * repeats)[:n_strides]


def server_process() -> tuple[Server, subprocess.Popen]:
    """moto's S3 server in a process of its own (its CPU is the server's, not the loader's)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = Server(f"http://127.0.0.1:{port}", process.terminate)
    for _ in range(300):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            break
        time.sleep(0.1)
    s3fs.S3FileSystem(**server.options).mkdir("stores")
    return server, process


def drop_page_cache(folder: Path) -> None:
    """Ask the OS to drop the store's files from the page cache (so reads hit the disk)."""
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


SERVER_PIDS: set[int] = set()


def cpu_seconds() -> float:
    """CPU time of this process and its loader workers so far (not the S3 server's)."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        if child.pid in SERVER_PIDS:
            continue
        with contextlib.suppress(psutil.Error):  # a worker that just ended
            total += sum(child.cpu_times()[:2])
    return total


def timed(epoch: Callable[[], int]) -> tuple[float, float]:
    """(strides/s, CPU µs per stride) of one call of ``epoch`` (which returns strides)."""
    cpu, start = cpu_seconds(), time.perf_counter()
    strides = epoch()
    seconds = time.perf_counter() - start
    return strides / seconds, (cpu_seconds() - cpu) / strides * 1e6


def consume(batches: Any) -> int:
    """Strides in ``batches``, touching every tensor as a training step would."""
    strides = 0
    for batch in batches:
        strides += len(batch["stride"])
        for value in batch.values():
            value.sum()
    return strides


def in_ram(source: StoreSource, indices: np.ndarray) -> Callable[[int], int]:
    """An epoch of the loader's batches indexed out of numpy arrays already in RAM."""
    group = source.group()
    arrays = {n: np.asarray(group[n][...]) for n in NAMES}
    sampler = ChunkShuffleSampler(StrideDataset(source, indices), BATCH)

    def epoch(number: int) -> int:
        sampler.set_epoch(number)
        batches = (
            {n: torch.from_numpy(a[indices[p]]) for n, a in arrays.items()}
            | {"stride": torch.from_numpy(indices[p])}
            for p in sampler
        )
        return consume(batches)

    return epoch


def loader(source: StoreSource, indices: np.ndarray, workers: int) -> Callable[[int], int]:
    """Epochs of one ``stride_loader`` (its workers started by a first, untimed epoch)."""
    batches = stride_loader(StrideDataset(source, indices), BATCH, num_workers=workers)
    sampler = batches.batch_sampler
    assert isinstance(sampler, ChunkShuffleSampler)
    consume(batches)

    def epoch(number: int) -> int:
        sampler.set_epoch(number)
        return consume(batches)

    return epoch


def codec_alone(source: StoreSource, chunks: int) -> tuple[float, float]:
    """(strides/s, CPU µs per stride) of the store's codec decoding ``chunks`` chunks."""
    group = source.group()
    size = source.chunk_strides()
    encoded = []
    for chunk in range(chunks):
        for name in NAMES:
            values = np.ascontiguousarray(group[name][chunk * size : (chunk + 1) * size])
            codec = numcodecs.Blosc("zstd", 3, numcodecs.Blosc.SHUFFLE)  # as layout.py
            encoded.append(codec.encode(values))
    numcodecs.blosc.use_threads = False

    def decode() -> int:
        for blob in encoded:
            numcodecs.blosc.decompress(blob)
        return chunks * size

    return timed(decode)


def bench(demo: str, folder: Path, server: Any, repeats: int) -> list[str]:
    chunk = zarr.open_group(demo, mode="r")["kinematics"].chunks[0]
    n_strides = SIZE_X * CACHED_CHUNKS * chunk
    tiled_store(demo, str(folder / "big.zarr"), None, n_strides)
    tiled_store(demo, "s3://stores/big.zarr", server.options, n_strides)
    local = StoreSource(str(folder / "big.zarr"))
    remote = StoreSource("s3://stores/big.zarr", server.options)
    indices = np.arange(n_strides)
    stride_bytes = sum(
        int(np.prod(local.array(n).shape[1:])) * local.array(n).dtype.itemsize for n in NAMES
    )
    stored = sum(p.stat().st_size for p in (folder / "big.zarr").rglob("*") if p.is_file())

    ram = in_ram(local, indices)
    local0, local2 = loader(local, indices, 0), loader(local, indices, 2)
    remote0, remote2 = loader(remote, indices, 0), loader(remote, indices, 2)

    def cold(number: int) -> int:
        drop_page_cache(folder / "big.zarr")
        return local0(number)

    rows: dict[str, tuple[str, Callable[[int], int]]] = {
        "in-RAM numpy arrays (same batches)": ("-", ram),
        "`stride_loader`, local disk, pages dropped first": ("0", cold),
        "`stride_loader`, local disk, page-cached": ("0", local0),
        "`stride_loader`, local disk, page-cached ": ("2", local2),
        "`stride_loader`, S3 server (moto, HTTP)": ("0", remote0),
        "`stride_loader`, S3 server (moto, HTTP) ": ("2", remote2),
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in rows}
    for round_ in range(repeats):  # interleaved: each round times every row once
        for name, (_, epoch) in rows.items():
            results[name].append(timed(lambda e=epoch, r=round_: e(r + 1)))
    median = {name: tuple(np.median(np.array(r), axis=0)) for name, r in results.items()}
    reference = median["in-RAM numpy arrays (same batches)"][0]
    decoded = codec_alone(local, min(24, n_strides // chunk))
    lines = [
        f"## Loader, first-epoch reads: {n_strides:,} strides ({n_strides // chunk} chunks of "
        f"{chunk}; {n_strides * stride_bytes / 1e6:.0f} MB decoded, {stored / 1e6:.0f} MB "
        f"stored), the loader holding {CACHED_CHUNKS} chunks; batches of {BATCH}; median of "
        f"{repeats} interleaved epochs",
        "",
        "| source | loader workers | strides/s | CPU µs/stride | vs in-RAM |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, (workers, _) in rows.items():
        rate, cpu = median[name]
        lines.append(
            f"| {name.strip()} | {workers} | {rate:,.0f} | {cpu:.1f} | {rate / reference:.2f}x |"
        )
    lines.append(
        f"| the codec alone (Blosc zstd-3 decoding the same chunks, one thread) | - "
        f"| {decoded[0]:,.0f} | {decoded[1]:.1f} | {decoded[0] / reference:.2f}x |"
    )
    cores = len(os.sched_getaffinity(0))
    lines += [
        "",
        f"{cores} cores here. A stride is {stride_bytes / 1e3:.1f} kB decoded; CPU counts the "
        "process and its loader workers, not the S3 server (a process of its own, on the same "
        "cores).",
        "",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="a built demo store to take stride values from")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    server, process = server_process()
    SERVER_PIDS.add(process.pid)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            demo = args.store
            if demo is None:
                demo = str(folder / "gait.zarr")
                root = str(ensure_demo_sources(folder / "cache"))
                demo_build(demo, 2, root, {})
            sections = bench(demo, folder, server, args.repeats)
    finally:
        process.terminate()
        process.wait()
    publish("Training loader at ≥ 10× its cache", sections, "loader")


if __name__ == "__main__":
    main()

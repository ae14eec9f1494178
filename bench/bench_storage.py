"""Benchmark of storage and build throughput, local disk against an S3-compatible server, and
the full-size build time projected from them.

Run: ``python bench/bench_storage.py`` (needs the test extra for the server:
``pip install -e ".[test]"``). Measures, side by side in one run:

- store array throughput: the demo store's numeric arrays (its real values, tiled 4×, with the
  builder's chunk/shard layout and codecs) written and read back with zarr on local disk and on
  moto's S3 server over HTTP (ThreadedMotoServer on loopback, the server the tests use);
- end-to-end demo build (the C3D demo and 14 miniature datasets) into a local store with 1 and
  with 2 worker processes, and with 2 workers from raw files in one bucket into a store in
  another: per-core build throughput (raw MB/s and strides/s per core) and the storage overhead;
- the projected full-size build (~700 GB raw, ~516 k strides) on 16, 64 and 256 workers.

Prints a markdown report and writes it to ``bench/results/storage.md``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported

import logging  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import s3fs  # noqa: E402
import zarr  # noqa: E402
from _report import publish  # noqa: E402

from builder.catalog import bundled_catalog  # noqa: E402
from builder.demo import ensure_demo_sources  # noqa: E402
from builder.pipeline.run import BuildOptions, BuildResult, build  # noqa: E402

TILE = 4  # the demo store's arrays repeated along their first axis, for volume
FULL_RAW_GB = 700.0
FULL_STRIDES = 516_000
WORKERS = (16, 64, 256)
KEY, SECRET = "bench-key", "bench-secret"


@dataclass
class Server:
    endpoint: str
    stop: object

    @property
    def options(self) -> dict[str, str]:
        return {"endpoint_url": self.endpoint, "key": KEY, "secret": SECRET}


def start_server() -> Server:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    found = Server(f"http://{host}:{port}", server.stop)
    fs = s3fs.S3FileSystem(**found.options)
    for bucket in ("raw", "stores", "arrays"):
        fs.mkdir(bucket)
    return found


# --- builds -----------------------------------------------------------------------------------


def demo_build(
    output: str, workers: int, demo_root: str, storage_options: dict
) -> tuple[float, BuildResult]:
    """The bundled demo catalogue over the raw files at ``demo_root``, timed."""
    options = BuildOptions(
        output=output,
        workers=workers,
        progress=False,
        dashboard_address=":0",
        variables={"demo_root": demo_root},
        storage_options=storage_options,
    )
    start = time.perf_counter()
    result = build(str(bundled_catalog("demo")), options)
    return time.perf_counter() - start, result


def bench_builds(root: Path, server: Server, folder: Path) -> tuple[list[str], dict[str, float]]:
    raw_files = [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]
    raw_mb = sum(p.stat().st_size for p in raw_files) / 1e6
    rows = []
    for workers in (1, 2):
        seconds, result = demo_build(str(folder / f"local{workers}.zarr"), workers, str(root), {})
        rows.append((f"local disk, {workers} worker(s)", workers, seconds, result))

    s3fs.S3FileSystem(**server.options).put(str(root) + "/", "raw/demo/", recursive=True)
    seconds, result = demo_build("s3://stores/gait.zarr", 2, "s3://raw/demo", server.options)
    rows.append(("S3 server → S3 server, 2 workers", 2, seconds, result))

    lines = [
        f"## End-to-end demo build ({len(raw_files)} raw files, {raw_mb:.1f} MB, "
        f"{rows[0][3].n_strides} strides)",
        "",
        "| raw files → store | wall s | processing s | writing s | raw MB/s per core "
        "| strides/s per core | wall vs local, 2 workers |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    local2 = rows[1][2]
    for label, workers, wall, result in rows:
        t = result.report.timings_s
        lines.append(
            f"| {label} | {wall:.1f} | {t['processing']:.1f} | {t['writing']:.1f} "
            f"| {raw_mb / t['processing'] / workers:.1f} "
            f"| {result.n_strides / t['processing'] / workers:.0f} "
            f"| {wall / local2:.2f}× |"
        )
    one = rows[0][3].report.timings_s
    two = rows[1][3].report.timings_s
    s3_two = rows[2][3].report.timings_s
    n = rows[0][3].n_strides
    figures = {
        "efficiency_2": one["processing"] / two["processing"] / 2,
        # per core with 2 workers (so the measured parallel efficiency is included)
        "local_mb_s_core": raw_mb / two["processing"] / 2,
        "s3_mb_s_core": raw_mb / s3_two["processing"] / 2,
        # worker-seconds of the writing stage per stride
        "local_write_s_stride": two["writing"] * 2 / n,
        "s3_write_s_stride": s3_two["writing"] * 2 / n,
    }
    lines += [
        "",
        "'processing' is reading and processing trials (scales with raw data; per core = divided "
        "by the workers); 'writing' is writing the store from the staged results, verifying and "
        "publishing it (for object storage: copying the version under the output URL).",
        "",
    ]
    return lines, figures


# --- store arrays -----------------------------------------------------------------------------


def bench_arrays(store: Path, server: Server, folder: Path) -> tuple[list[str], dict[str, float]]:
    source = zarr.open_group(str(store), mode="r")
    arrays = {
        name: array
        for name, array in source.arrays()
        if array.dtype.kind in "fiub" and array.nbytes > 1e5  # the bulk of a store
    }
    data = {name: np.concatenate([a[...]] * TILE) for name, a in arrays.items()}
    nbytes = sum(v.nbytes for v in data.values())
    targets = {
        "local disk": (str(folder / "arrays.zarr"), None),
        "S3 server (HTTP)": ("s3://arrays/arrays.zarr", server.options),
    }
    results = {}
    for label, (url, options) in targets.items():
        group = zarr.open_group(url, mode="w", storage_options=options)
        created = {}
        for name, array in arrays.items():
            created[name] = group.create_array(
                name,
                shape=data[name].shape,
                dtype=array.dtype,
                chunks=array.chunks,
                shards=array.shards,
                compressors=array.compressors,
                filters=array.filters,
                fill_value=array.fill_value,
            )
        start = time.perf_counter()
        for name, array in created.items():
            array[...] = data[name]
        write = time.perf_counter() - start
        stored = sum(a.nbytes_stored() for a in created.values())
        reopened = zarr.open_group(url, mode="r", storage_options=options)
        start = time.perf_counter()
        for name in created:
            reopened[name][...]
        read = time.perf_counter() - start
        results[label] = (write, read, stored)

    local_w, local_r, _ = results["local disk"]
    lines = [
        f"## Store arrays: {len(arrays)} numeric arrays of the demo store × {TILE} "
        f"({nbytes / 1e6:.0f} MB in memory), builder chunk/shard layout and codecs",
        "",
        "| target | MB stored | write MB/s | read MB/s | write time vs local | read time vs local |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, (write, read, stored) in results.items():
        lines.append(
            f"| {label} | {stored / 1e6:.0f} | {nbytes / 1e6 / write:.0f} | "
            f"{nbytes / 1e6 / read:.0f} | {write / local_w:.2f}× | {read / local_r:.2f}× |"
        )
    s3_w, s3_r, stored = results["S3 server (HTTP)"]
    n_strides = source["stride"].shape[0] * TILE
    figures = {
        "bytes_per_stride_memory": nbytes / n_strides,
        "bytes_per_stride_stored": stored / n_strides,
        "s3_write_mb_s": nbytes / 1e6 / s3_w,
        "s3_read_mb_s": nbytes / 1e6 / s3_r,
        "local_write_mb_s": nbytes / 1e6 / local_w,
    }
    lines += [
        "",
        "MB/s are of uncompressed array bytes, from one client process (zarr's async "
        "concurrency, default settings). moto is a single Python process answering on loopback: "
        "its figures are a floor for a real object store, not an estimate of one.",
        "",
    ]
    return lines, figures


# --- projection -------------------------------------------------------------------------------


def projection(builds: dict[str, float], arrays: dict[str, float]) -> list[str]:
    store_gb = FULL_STRIDES * arrays["bytes_per_stride_memory"] / 1e9
    stored_gb = FULL_STRIDES * arrays["bytes_per_stride_stored"] / 1e9

    def hours(target: str, workers: int) -> tuple[float, float]:
        processing = FULL_RAW_GB * 1e3 / (builds[f"{target}_mb_s_core"] * workers)
        writing = FULL_STRIDES * builds[f"{target}_write_s_stride"] / workers
        return processing / 3600, writing / 3600

    lines = [
        f"## Projected full-size build: {FULL_RAW_GB:.0f} GB raw, {FULL_STRIDES:,} strides",
        "",
        "| workers | shared disk: processing h | writing h | total h "
        "| S3: processing h | writing h | total h | S3 read rate needed |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for workers in WORKERS:
        lp, lw = hours("local", workers)
        sp, sw = hours("s3", workers)
        lines.append(
            f"| {workers} | {lp:.2f} | {lw:.2f} | {lp + lw:.2f} | {sp:.2f} | {sw:.2f} "
            f"| {sp + sw:.2f} | {FULL_RAW_GB / (sp * 3600):.2f} GB/s |"
        )
    lines += [
        "",
        "Assumptions (every rate is measured above, in this run):",
        f"- processing scales linearly from the 2-worker demo build: "
        f"{builds['local_mb_s_core']:.1f} raw MB/s per core from disk, "
        f"{builds['s3_mb_s_core']:.1f} from and to the S3 server (the 1 → 2 worker efficiency "
        f"was {builds['efficiency_2']:.2f}; beyond 2 workers it is assumed, not measured), and "
        "the real datasets' mix of C3D and MATLAB files costs per MB what the demo's mix does;",
        f"- the writing stage (staged results → store regions, verification, publishing) "
        f"scales with strides: {builds['local_write_s_stride'] * 1e3:.1f} / "
        f"{builds['s3_write_s_stride'] * 1e3:.1f} worker-ms per stride (disk / S3); the store "
        f"holds {store_gb:.0f} GB of values ({stored_gb:.0f} GB compressed);",
        "- the object store keeps up: the last column is the aggregate raw-read rate the S3 "
        "row implies (AWS S3 serves 5,500 GET/s per prefix; a MinIO or Ceph cluster must be "
        "sized for it); the moto server measured here is a single Python process, so the S3 "
        "rows are pessimistic per worker;",
        "- one trial is one task: a dataset that packs all its subjects in one file (Embry, "
        "~26 k strides) is one long task, so on 256 workers the slowest file, not the average, "
        "can set the end; the scheduler's per-task overhead (~1 ms) is negligible at ~30 k "
        "trials;",
        "- not counted: listing the raw files, the client's planning (seconds on the demo, "
        "linear in trials) and a real cluster's start-up.",
        "",
    ]
    return lines


def main() -> None:
    root = ensure_demo_sources()
    server = start_server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            build_lines, build_figures = bench_builds(root, server, folder)
            array_lines, array_figures = bench_arrays(folder / "local2.zarr", server, folder)
    finally:
        server.stop()
    sections = [*array_lines, *build_lines, *projection(build_figures, array_figures)]
    publish("Storage and build benchmark", sections, "storage")


if __name__ == "__main__":
    main()

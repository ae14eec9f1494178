"""Stage 3: write the planned store (template once, whole regions on the workers), check every
chunk, then the attributes, consolidated metadata, HDF5 index and build report of a version."""

from __future__ import annotations

import json
import os
import tempfile
import warnings

import zarr
from dask.distributed import Client, Future

from builder._version import __version__
from builder.conventions import JOINTS, MUSCLES, PLANES
from builder.errors import StoreError
from builder.pipeline.progress import OnProgress, track
from builder.pipeline.report import BuildReport
from builder.records import TrialSpec
from builder.store.index_hdf5 import write_stride_index
from builder.store.layout import (
    INDEX_NAME,
    REPORT_NAME,
    ChunkLayout,
    create_template,
    encode_root_attrs,
    expected_chunk_keys,
)
from builder.store.staging import Staging
from builder.store.versions import VersionedOutput
from builder.store.writer import (
    StorePlan,
    emg_regions,
    stride_regions,
    write_emg_region,
    write_stride_region,
)


def write_store(
    client: Client,
    output: VersionedOutput,
    version: str,
    plan: StorePlan,
    staging: Staging,
    layout: ChunkLayout,
    on_progress: OnProgress | None,
) -> None:
    """Write every region of ``plan`` into ``version`` on the cluster; StoreError, with nothing
    published, if a region failed or a chunk is missing afterwards."""
    url = output.version_url(version)
    group = output.location.open_group("w", version=version)  # the template, once
    create_template(group, plan.n_strides, plan.n_rows, layout, version)
    futures: dict[Future, str] = {}
    for i, region in enumerate(stride_regions(plan, layout)):
        table = {name: column[region] for name, column in plan.table.items()}
        future = client.submit(
            write_stride_region,
            version,
            region,
            plan.stride_pieces(region),
            table,
            plan.stride_starts[region],
            plan.stride_ends[region],
            staging,
            key=f"write-strides-{i}-{version}",
            pure=False,
        )
        futures[future] = f"strides {region.start}:{region.stop}"
    for i, region in enumerate(emg_regions(plan, layout)):
        future = client.submit(
            write_emg_region,
            version,
            region,
            plan.row_pieces(region),
            staging,
            key=f"write-emg-{i}-{version}",
            pure=False,
        )
        futures[future] = f"EMG rows {region.start}:{region.stop}"

    failures = []

    def on_error(region: str, exc: BaseException) -> None:
        failures.append(f"{region}: {type(exc).__name__}: {exc}")

    for _ in track(futures, "writing store", on_progress, on_error):
        pass
    if failures:
        raise StoreError(f"{url}: writing failed, nothing published ({failures[0]})")
    root = output.version_path(version)
    stored = {path[len(root) + 1 :] for path in output.fs.find(root)}
    missing = expected_chunk_keys(output.location.open_group("r", version=version)) - stored
    if missing:
        raise StoreError(
            f"{url}: {len(missing)} expected chunk(s) missing after writing "
            f"(e.g. {sorted(missing)[0]}); nothing published, re-run to finish"
        )


def finalise(
    output: VersionedOutput,
    version: str,
    plan: StorePlan,
    report: BuildReport,
    datasets: dict[str, dict[str, str]],
) -> None:
    """Attributes, then metadata consolidated exactly once, then the index and the report.

    The two non-Zarr files are added after consolidation so that zarr never walks over them.
    """
    group = output.location.open_group("r+", version=version)
    group.attrs.update(
        encode_root_attrs(  # lists and mappings as JSON text: netCDF-compatible attributes
            {
                "title": "gait stride store",
                "builder_version": __version__,
                "build_version": report.version,
                "created": report.created,
                "catalog": report.catalog,
                "catalog_sha256": report.catalog_sha256,
                "n_strides": plan.n_strides,
                "n_trials": report.n_trials_built,
                "joints": list(JOINTS),
                "planes": list(PLANES),
                "muscles": list(MUSCLES),
                "sign_convention": (
                    "flexion/dorsiflexion, adduction and internal rotation positive; "
                    "moments are internal net joint moments with the same axis signs"
                ),
                "emg_normalisation": (
                    "emg and emg_envelope are divided by emg_scale: per subject and muscle, the "
                    "median over strides of the envelope peak (volts); multiply to undo"
                ),
                "build_report": REPORT_NAME,
                "stride_index": INDEX_NAME,
                "datasets": datasets,
            }
        )
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        zarr.consolidate_metadata(group.store, path=group.path)
    root = output.version_path(version)
    with tempfile.TemporaryDirectory() as tmp:  # h5py needs a local file; upload it after
        local = os.path.join(tmp, INDEX_NAME)
        write_stride_index(local, plan.stride_starts, plan.stride_ends, plan.table)
        output.fs.put_file(local, f"{root}/{INDEX_NAME}")
    output.fs.pipe_file(f"{root}/{REPORT_NAME}", json.dumps(report.to_json(), indent=2).encode())


def dataset_sources(trials: dict[str, TrialSpec]) -> dict[str, dict[str, str]]:
    """Per dataset: its licence and the citation users owe it (root attribute ``datasets``)."""
    return {
        spec.dataset: {"licence": spec.licence, "citation": spec.citation}
        for spec in sorted(trials.values(), key=lambda s: s.dataset)
    }

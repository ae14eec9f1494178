"""Orchestration: catalogue → Dask tasks per trial → planned region writes → publish.

This module only wires the stages together; each stage's logic lives in its own module.

1. expand the catalogue into the trial table and key every trial by content;
2. process unfinished trials on Dask workers (read → EMG chain → strides), each staging its
   result beside the store; one bad trial becomes a report entry, the build goes on;
3. plan the layout on the client, write the template once, and let workers write whole
   regions; verify every chunk exists, write the HDF5 index and the report, consolidate;
4. move the output pointer to the new version.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import zarr
from dask.distributed import Client, as_completed
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import builder
from builder.catalog import (
    Catalog,
    UnavailableSource,
    expand_trials,
    load_catalog,
    resolve_metadata,
)
from builder.cluster import connect
from builder.conventions import JOINTS, MUSCLES, PLANES
from builder.datasets import read_trial
from builder.errors import BuilderError, SourceError, StoreError
from builder.pipeline.isolated import DEFAULT_TIMEOUT_S, read_trial_isolated
from builder.processing.emg import EmgProcessing
from builder.processing.quality import merge_counts
from builder.processing.trial import build_strides, concatenate_batches
from builder.records import RECORDING_METADATA, TrialSpec
from builder.store.index_hdf5 import write_stride_index
from builder.store.layout import (
    INDEX_NAME,
    REPORT_NAME,
    ChunkLayout,
    create_template,
    expected_chunk_keys,
)
from builder.store.staging import Staging, TrialOutcome, trial_key
from builder.store.versions import VersionedOutput, versioned_output
from builder.store.writer import (
    StorePlan,
    emg_regions,
    plan_store,
    stride_regions,
    write_emg_region,
    write_stride_region,
)


@dataclass(frozen=True)
class BuildOptions:
    output: str = "gait.zarr"
    workers: int | None = None  # LocalCluster worker processes (default: CPU count)
    cluster: str | None = None  # address of an existing Dask scheduler
    fresh: bool = False  # discard staged trial results and build a new version
    layout: ChunkLayout = field(default_factory=ChunkLayout)
    # Publish even with trials left out for reasons that may pass (I/O, a dead worker), or
    # with fewer strides than the current version from the same catalogue. Off: such a build
    # fails with one line and the current version stays.
    allow_partial: bool = False
    read_timeout_s: float = DEFAULT_TIMEOUT_S  # then one retry with 4x; then left out
    progress: bool = True
    dashboard_address: str = ":8787"  # ":0" for any free port
    variables: dict[str, str] = field(default_factory=dict)  # catalogue template variables
    storage_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildResult:
    output: str
    version: str
    n_strides: int
    n_trials_built: int
    n_trials_left_out: int
    up_to_date: bool
    report: dict[str, Any]


def build(catalog_path: str, options: BuildOptions, console: Console | None = None) -> BuildResult:
    """Build (or resume, or confirm up to date) the store described by a catalogue."""
    console = console or Console(stderr=True)
    catalog = load_catalog(catalog_path, options.variables)
    specs, unavailable = expand_trials(catalog, options.storage_options)
    for source in unavailable:
        console.print(f"[yellow]source {source.source!r}:[/] {source.reason}")
    staging = Staging(options.output, options.storage_options)
    try:
        with staging.lock() as taken_over:
            if taken_over:
                console.print(f"[yellow]{taken_over}[/]")
            try:
                return _build_locked(catalog, specs, unavailable, options, console, staging)
            except OSError as exc:  # storage that keeps failing after its own retries
                error = _storage_error(options.output, exc)
                staging.record_failure(str(error))
                raise error from None
            except (KeyboardInterrupt, SystemExit):
                staging.record_failure("interrupted; a re-run resumes it", state="interrupted")
                raise
            except Exception as exc:  # `info` then says how the last build ended
                staging.record_failure(str(exc) if isinstance(exc, BuilderError) else _what(exc))
                raise
    except OSError as exc:  # the lock itself: storage down before the build began
        raise _storage_error(options.output, exc) from None


def prune(
    output_url: str, keep: int, storage_options: dict[str, Any] | None = None
) -> tuple[list[str], list[str]]:
    """Delete all but the published and newest ``keep - 1`` versions of an output, under the
    build lock. Returns (removed, kept)."""
    output = versioned_output(output_url, storage_options)
    if output.published() is None:
        raise StoreError(f"{output_url}: no published build here; nothing to prune")
    staging = Staging(output_url, storage_options)
    try:
        with staging.lock():
            removed = output.prune(keep)
    except OSError as exc:
        raise _storage_error(output_url, exc) from None
    return removed, output.versions()


def worker_log_path(output: str, staging: Staging) -> str:
    """Where Dask's log records (worker tracebacks) go instead of stderr: beside the staging
    folder on local disk, else a local temporary folder."""
    if staging.local:
        return os.path.join(staging.root, "logs", "dask.log")
    name = os.path.basename(output.rstrip("/")) or "output"
    return os.path.join(tempfile.gettempdir(), "gait-builder-logs", f"{name}.dask.log")


def _storage_error(output: str, exc: OSError) -> StoreError:
    return StoreError(
        f"{output}: storage error ({_what(exc)}); nothing was published and the previous "
        "version is intact; re-run when the storage answers again"
    )


def _build_locked(
    catalog: Catalog,
    specs: list[TrialSpec],
    unavailable: list[UnavailableSource],
    options: BuildOptions,
    console: Console,
    staging: Staging,
) -> BuildResult:
    catalog_path = catalog.path
    trials = {trial_key(spec): spec for spec in specs}
    fingerprint = _fingerprint(trials, options.layout)

    output = versioned_output(options.output, options.storage_options)
    output.claim()
    manifest = staging.read_manifest()
    published = output.published()
    if published is not None and manifest.get("in_progress") == published:
        # The last run died after its switch: the version is published, hence immutable.
        manifest.update(
            published=published,
            published_fingerprint=manifest.get("in_progress_fingerprint"),
            in_progress=None,
            in_progress_fingerprint=None,
            state="published",
        )
    if not options.fresh and _up_to_date(output, manifest, published, fingerprint):
        report = _read_report(output, str(published))
        console.print(f"{options.output} is up to date (version {published}); nothing to do.")
        return _result(options.output, str(published), report, up_to_date=True)

    version, resuming = _start_version(output, staging, manifest, fingerprint, options.fresh)
    staging.remove_leftovers(set(trials))
    manifest.update(
        output=options.output,
        in_progress=version,
        in_progress_fingerprint=fingerprint,
        catalog=str(catalog_path),
        started=_now(),
        state="processing",
    )
    staging.write_manifest(manifest)
    console.print(
        f"{'Resuming' if resuming else 'Building'} {options.output} version {version}: "
        f"{len(trials)} trials from {catalog_path}"
    )

    clock = time.perf_counter()
    timings: dict[str, float] = {}
    log_file = worker_log_path(options.output, staging)
    with connect(
        options.cluster, options.workers, options.dashboard_address, log_file=log_file
    ) as client:
        console.print(f"Dask dashboard: {client.dashboard_link}")
        console.print(f"Dask's logs (worker errors): {log_file}", highlight=False, soft_wrap=True)
        timings["cluster_start"] = time.perf_counter() - clock
        outcomes = _process_trials(client, trials, staging, console, options)
        timings["processing"] = time.perf_counter() - clock - timings["cluster_start"]
        manifest["state"] = "writing"
        staging.write_manifest(manifest)
        plan = plan_store(trials, outcomes)
        report = _report(
            catalog_path, catalog.sha256, version, fingerprint, trials, outcomes, unavailable, plan
        )
        refusal = _must_not_publish(output, published, report, options) if plan.n_strides else ""
        if plan.n_strides == 0 or refusal:
            staging.write_manifest({**manifest, "state": "failed", "last_report": report})
            if refusal:
                raise StoreError(refusal)
            passing = [e for e in report["trials_left_out"] if e["retry"]]
            if passing and len(passing) == len(report["trials_left_out"]):
                raise StoreError(
                    f"{options.output}: storage error: every trial failed with errors that "
                    f"may pass (first: {_first_reason(report)}); nothing was published and "
                    "the previous version is intact; re-run when the storage answers again"
                )
            raise BuilderError(
                f"{catalog_path}: no trial produced a stride, nothing to publish "
                f"({len(report['trials_left_out'])} left out; first reason: "
                f"{_first_reason(report)})"
            )
        clock = time.perf_counter()
        _write_store(client, output, version, plan, staging, options, console)
        timings["writing"] = time.perf_counter() - clock

    report["timings_s"] = timings
    _finalise(output, version, plan, report, catalog_path, _dataset_sources(trials))
    output.publish(version)
    manifest.update(
        published=version,
        published_fingerprint=fingerprint,
        in_progress=None,
        in_progress_fingerprint=None,
        state="published",
        finished=_now(),
    )
    staging.write_manifest(manifest)
    console.print(
        f"Published {options.output} -> version {version}: {plan.n_strides} strides from "
        f"{report['n_trials_built']} trials; {report['n_trials_left_out']} left out."
    )
    return _result(options.output, version, report, up_to_date=False)


def _must_not_publish(
    output: VersionedOutput, published: str | None, report: dict[str, Any], options: BuildOptions
) -> str:
    """Why this build must not become the current version ("" when it may): trials left out
    for reasons that may pass, or fewer strides than the current version of the same
    catalogue. ``allow_partial`` publishes anyway (the report keeps the reasons)."""
    if options.allow_partial:
        return ""
    current = f"version {published} stays current" if published else "nothing was published"
    passing = [e for e in report["trials_left_out"] if e["retry"]]
    if passing:
        first = passing[0]
        return (
            f"{options.output}: {len(passing)} trial(s) could not be processed or staged for "
            f"reasons that may pass (first: {first['trial']}: {first['reason']}); {current}; "
            "re-run to finish the job (--allow-partial publishes without them)"
        )
    if published is None:
        return ""
    previous = _read_report(output, published)
    if (
        previous.get("catalog_sha256") == report["catalog_sha256"]
        and report["n_strides"] < previous["n_strides"]
    ):
        return (
            f"{options.output}: this build has {report['n_strides']} strides, fewer than the "
            f"{previous['n_strides']} of version {published}, built from the same catalogue; "
            f"{current}; see the trials left out with `builder report` (--allow-partial "
            "publishes it anyway)"
        )
    return ""


def _up_to_date(
    output: VersionedOutput, manifest: dict[str, Any], published: str | None, fingerprint: str
) -> bool:
    """The published build is of these exact inputs, and none of its left-out trials could
    succeed on a retry."""
    if published is None or manifest.get("published") != published:
        return False
    if manifest.get("published_fingerprint") != fingerprint:
        return False
    report = _read_report(output, published)
    return not any(entry.get("retry") for entry in report["trials_left_out"])


def _start_version(
    output: VersionedOutput,
    staging: Staging,
    manifest: dict[str, Any],
    fingerprint: str,
    fresh: bool,
) -> tuple[str, bool]:
    """The version to build into, and whether it resumes an interrupted build of the same
    inputs. ``fresh`` discards staged trial results too."""
    if fresh:
        staging.clear_trials()
    version = manifest.get("in_progress")
    if (
        not fresh
        and version is not None
        and manifest.get("in_progress_fingerprint") == fingerprint
        and output.exists(version)
    ):
        return version, True
    if version and version != output.published():
        output.discard(version)  # an interrupted build of other inputs
    return output.new_version(), False


# --- stage 2: trials ----------------------------------------------------------------------


def process_trial(
    spec: TrialSpec,
    key: str,
    staging: Staging,
    *,
    isolate: bool = True,
    read_timeout_s: float = DEFAULT_TIMEOUT_S,
) -> TrialOutcome:
    """Worker task: read, process, gate and stage one trial. Never raises for bad input.

    The adapter runs in an isolated reader process (``isolate``), so a file that crashes or
    hangs its parser becomes a report entry instead of a dead worker. Every reason a trial is
    left out is a sentence that says what went wrong where.
    """
    stage = f"reading it with the {spec.adapter} adapter"
    try:
        recordings = read_trial_isolated(spec, read_timeout_s) if isolate else read_trial(spec, spec.storage_options)
        stage = "checking the catalogue's EMG processing settings"
        settings = EmgProcessing.model_validate(spec.processing)
        stage = "cutting and processing its strides"
        batches, notes, sources, quality = [], [], [], []
        columns: dict[str, list[Any]] = {name: [] for name in RECORDING_METADATA}
        times_known = []
        for recording in recordings:
            try:
                values, bad_metadata = resolve_metadata(spec, recording.meta), None
            except ValueError as exc:
                values, bad_metadata = None, str(exc)
            strides = build_strides(
                recording, settings, activity=values["activity"] if values else None
            )
            notes.extend(strides.notes)
            quality.append(strides.quality)
            if strides.batch.n_strides == 0:
                continue
            if values is None:
                raise SourceError(spec.url, str(bad_metadata))
            for name, value in values.items():
                columns[name].extend([value] * strides.batch.n_strides)
            times_known.extend([recording.times_absolute] * strides.batch.n_strides)
            batches.append(strides.batch)
            sources.append(recording.event_source)
        if not batches:
            detail = "; ".join(dict.fromkeys(notes)) if notes else "no heel-strike pairs"
            raise SourceError(spec.url, f"no complete stride ({detail})")
        notes = list(dict.fromkeys(notes))  # runs of one trial repeat the same findings
        batch = concatenate_batches(batches, by_time=False)
        stage = "staging its strides"
        staging.save_batch(key, batch)
        outcome = TrialOutcome.from_batch(
            key,
            batch,
            notes,
            "+".join(dict.fromkeys(sources)),
            columns,
            np.asarray(times_known),
            merge_counts(quality),
        )
    except SourceError as exc:
        outcome = TrialOutcome(key, ok=False, reason=exc.problem)
    except (OSError, TimeoutError, MemoryError) as exc:
        # Possibly passing (I/O, memory): reported now, retried by the next run.
        outcome = TrialOutcome(
            key,
            ok=False,
            reason=f"{_what(exc)} while {stage}; the next run retries it",
            retry=True,
        )
    except Exception as exc:  # one bad input must never stop the build
        outcome = TrialOutcome(
            key,
            ok=False,
            reason=(
                f"unexpected error while {stage} ({_what(exc)}): the file has a layout the "
                f"{spec.adapter} adapter does not handle, or the builder has a bug; please "
                "report it with the file"
            ),
        )
    staging.save_outcome(outcome)
    return outcome


def _what(exc: BaseException) -> str:
    """``exc`` in one line: its type and message (the isolated reader's already has both)."""
    message = " ".join(str(exc).split())
    if isinstance(exc, RuntimeError) and ": " in message:
        return message  # "ValueError: ..." relayed from the reader process
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _process_trials(
    client: Client,
    trials: dict[str, TrialSpec],
    staging: Staging,
    console: Console,
    options: BuildOptions,
) -> dict[str, TrialOutcome]:
    with ThreadPoolExecutor(max_workers=16) as pool:
        staged = dict(zip(trials, pool.map(staging.load_outcome, trials), strict=True))
    outcomes = {k: o for k, o in staged.items() if o is not None and not o.retry}
    todo = [k for k in trials if k not in outcomes]
    if outcomes:
        console.print(f"{len(outcomes)} trials already processed; {len(todo)} to go.")
    futures = {
        client.submit(
            process_trial,
            trials[k],
            k,
            staging,
            read_timeout_s=options.read_timeout_s,
            key=f"trial-{k}",
            pure=False,
        ): k
        for k in todo
    }

    def on_error(key: str, exc: BaseException) -> None:
        # The task catches every input error, so this is its worker dying under it, or its
        # outcome that could not be staged (storage).
        outcomes[key] = TrialOutcome(
            key,
            ok=False,
            reason=(
                f"its task failed ({_what(exc)}): the Dask worker died or the result could "
                "not be staged; the next run retries it"
            ),
            retry=True,
        )

    for key, outcome in _track(futures, "processing trials", console, options.progress, on_error):
        outcomes[key] = outcome
    return outcomes


# --- stage 3: store ---------------------------------------------------------------------


def _write_store(
    client: Client,
    output: VersionedOutput,
    version: str,
    plan: StorePlan,
    staging: Staging,
    options: BuildOptions,
    console: Console,
) -> None:
    url = output.version_url(version)
    group = _open_group(url, "w", output.storage_options)  # the template, once
    create_template(group, plan.n_strides, plan.n_rows, options.layout, version)
    futures = {}
    for i, region in enumerate(stride_regions(plan, options.layout)):
        table = {name: column[region] for name, column in plan.table.items()}
        future = client.submit(
            write_stride_region,
            url,
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
    for i, region in enumerate(emg_regions(plan, options.layout)):
        future = client.submit(
            write_emg_region,
            url,
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

    for _ in _track(futures, "writing store", console, options.progress, on_error):
        pass
    if failures:
        raise StoreError(f"{url}: writing failed, nothing published ({failures[0]})")
    root = output.version_path(version)
    stored = {path[len(root) + 1 :] for path in output.fs.find(root)}
    missing = expected_chunk_keys(_open_group(url, "r", output.storage_options)) - stored
    if missing:
        raise StoreError(
            f"{url}: {len(missing)} expected chunk(s) missing after writing "
            f"(e.g. {sorted(missing)[0]}); nothing published, re-run to finish"
        )


def _finalise(
    output: VersionedOutput,
    version: str,
    plan: StorePlan,
    report: dict[str, Any],
    catalog_path: str,
    datasets: dict[str, dict[str, str]],
) -> None:
    """Attributes, then metadata consolidated exactly once, then the index and the report.

    The two non-Zarr files are added after consolidation so that zarr never walks over them.
    """
    group = _open_group(output.version_url(version), "r+", output.storage_options)
    group.attrs.update(
        {
            "title": "gait stride store",
            "builder_version": builder.__version__,
            "build_version": report["version"],
            "created": report["created"],
            "catalog": catalog_path,
            "catalog_sha256": report["catalog_sha256"],
            "n_strides": plan.n_strides,
            "n_trials": report["n_trials_built"],
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
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        zarr.consolidate_metadata(group.store, path=group.path)
    root = output.version_path(version)
    with tempfile.TemporaryDirectory() as tmp:  # h5py needs a local file; upload it after
        local = os.path.join(tmp, INDEX_NAME)
        write_stride_index(local, plan.stride_starts, plan.stride_ends, plan.table)
        output.fs.put_file(local, f"{root}/{INDEX_NAME}")
    output.fs.pipe_file(f"{root}/{REPORT_NAME}", json.dumps(report, indent=2).encode())


def _open_group(url: str, mode: str, storage_options: dict[str, Any]) -> zarr.Group:
    return zarr.open_group(url, mode=mode, zarr_format=3, storage_options=storage_options or None)


# --- helpers ------------------------------------------------------------------------------


def _track(
    futures: dict[Any, Any],
    description: str,
    console: Console,
    show_progress: bool,
    on_error: Callable[[Any, BaseException], None],
) -> Iterator[tuple[Any, Any]]:
    """Yield (label, result) as futures finish, with a progress bar; errors go to on_error."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=not show_progress, transient=False) as bar:
        task = bar.add_task(description, total=len(futures))
        for future in as_completed(list(futures)):
            label = futures[future]
            try:
                yield label, future.result()
            except Exception as exc:
                on_error(label, exc)
            finally:
                future.release()
                bar.advance(task)


def _dataset_sources(trials: dict[str, TrialSpec]) -> dict[str, dict[str, str]]:
    """Per dataset: its licence and the citation users owe it (root attribute ``datasets``)."""
    return {
        spec.dataset: {"licence": spec.licence, "citation": spec.citation}
        for spec in sorted(trials.values(), key=lambda s: s.dataset)
    }


def _fingerprint(trials: dict[str, TrialSpec], layout: ChunkLayout) -> str:
    text = json.dumps([sorted(trials), asdict(layout), builder.__version__])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _report(
    catalog_path: str,
    catalog_sha: str,
    version: str,
    fingerprint: str,
    trials: dict[str, TrialSpec],
    outcomes: dict[str, TrialOutcome],
    unavailable: list[UnavailableSource],
    plan: StorePlan,
) -> dict[str, Any]:
    built, left_out = [], []
    quality: dict[str, list[dict[str, dict[str, int]]]] = {}
    for key, spec in trials.items():
        outcome = outcomes.get(key)
        entry = {"trial": spec.label, "source": spec.source, "url": spec.url}
        if outcome is not None and outcome.ok:
            built.append(
                {
                    **entry,
                    "strides": outcome.n_strides,
                    "events": outcome.event_source,
                    "notes": list(outcome.notes),
                    "quality": outcome.quality,
                }
            )
            quality.setdefault(spec.dataset, []).append(outcome.quality)
        else:
            reason = outcome.reason if outcome is not None else "not processed"
            retry = outcome.retry if outcome is not None else True
            left_out.append({**entry, "reason": reason, "retry": retry})
    return {
        "version": version,
        "created": _now(),
        "builder_version": builder.__version__,
        "catalog": str(catalog_path),
        "catalog_sha256": catalog_sha,
        "fingerprint": fingerprint,
        "n_strides": plan.n_strides,
        "n_trials_built": len(built),
        "n_trials_left_out": len(left_out),
        "trials_built": built,
        "trials_left_out": left_out,
        "sources_unavailable": [asdict(u) for u in unavailable],
        # Stride-components the quality gate left out: dataset -> check -> kind -> count.
        "quality": {dataset: merge_counts(counts) for dataset, counts in sorted(quality.items())},
    }


def _read_report(output: VersionedOutput, version: str) -> dict[str, Any]:
    return json.loads(output.fs.cat_file(f"{output.version_path(version)}/{REPORT_NAME}"))


def _result(output: str, version: str, report: dict[str, Any], *, up_to_date: bool) -> BuildResult:
    return BuildResult(
        output=output,
        version=version,
        n_strides=report["n_strides"],
        n_trials_built=report["n_trials_built"],
        n_trials_left_out=report["n_trials_left_out"],
        up_to_date=up_to_date,
        report=report,
    )


def _first_reason(report: dict[str, Any]) -> str:
    left = report["trials_left_out"]
    return f"{left[0]['trial']}: {left[0]['reason']}" if left else "no trials matched"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

"""Orchestration: catalogue → Dask tasks per trial → planned region writes → publish.

This module only wires the stages together; each stage's logic lives in its own module.

1. expand the catalogue into the trial table and key every trial by content
   (``builder.catalog``, ``builder.store.staging.trial_key``);
2. process unfinished trials on Dask workers (read → EMG chain → strides), each staging its
   result beside the store; one bad trial becomes a report entry, the build goes on
   (``trial.process_trial``, readers sandboxed by ``isolated``);
3. plan the layout on the client, write the template once, and let workers write whole
   regions; verify every chunk exists, write the HDF5 index and the report (``report``),
   consolidate (``publish``);
4. move the output pointer to the new version.

Options are ``options.BuildOptions``; messages go to the ``builder`` logger and progress to a
callback (``progress``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from dask.distributed import Client, Future

from builder._version import __version__
from builder.catalog import (
    Catalog,
    UnavailableSource,
    check_drivers,
    expand_trials,
    load_catalog,
)
from builder.cluster import connect
from builder.errors import BuilderError, StoreError
from builder.pipeline.options import BuildOptions
from builder.pipeline.progress import OnProgress, log, track
from builder.pipeline.publish import dataset_sources, finalise, write_store
from builder.pipeline.report import BuildReport, make_report, now_utc, parse_report
from builder.pipeline.trial import describe_error, process_trial
from builder.records import TrialSpec
from builder.store.faults import is_storage_error, storage_error
from builder.store.layout import ChunkLayout
from builder.store.location import StoreLocation
from builder.store.staging import Staging, TrialOutcome, trial_key
from builder.store.versions import VersionedOutput
from builder.store.writer import plan_store

__all__ = ["BuildOptions", "BuildResult", "build", "prune", "worker_log_path"]


@dataclass(frozen=True)
class BuildResult:
    output: str
    version: str
    n_strides: int
    n_trials_built: int
    n_trials_left_out: int
    up_to_date: bool
    report: BuildReport


def build(
    catalog_path: str, options: BuildOptions, on_progress: OnProgress | None = None
) -> BuildResult:
    """Build (or resume, or confirm up to date) the store described by a catalogue.

    Messages go to the ``builder`` logger; progress (when ``options.progress``) to
    ``on_progress`` (see :mod:`builder.pipeline.progress`).

    What can be known before any work fails at once, in one line, before the output is
    touched or a cluster started: a bad catalogue or misspelt driver, an output that cannot
    be reached or written (no credentials, wrong endpoint, no such bucket, a file in the way),
    a catalogue that gives no trial at all.
    """
    catalog = load_catalog(catalog_path, options.variables)
    check_drivers(catalog)
    location = StoreLocation(options.output, options.storage_options)
    location.check_reachable()
    specs, unavailable = expand_trials(catalog, options.storage_options)
    staging = location.staging
    if not specs:  # said once, in the error; a first build touches nothing
        with location.storage_errors():
            first = not staging.fs.exists(staging.root)
        if first:
            raise _no_trials(catalog_path, unavailable)
    for source in unavailable:
        log.warning("source %r: %s", source.source, source.reason)
    progress = on_progress if options.progress else None
    # Storage faults of the lock itself (storage down before the build began) as one line.
    with location.storage_errors(_INTACT), staging.lock() as taken_over:
        if taken_over:
            log.warning(taken_over)
        try:
            return _build_locked(catalog, specs, unavailable, options, progress, location)
        except (KeyboardInterrupt, SystemExit):
            staging.record_failure("interrupted; a re-run resumes it", state="interrupted")
            raise
        except Exception as exc:  # `info` (and <output>, before a first build) say why
            error = _translated(options.output, exc, _INTACT)
            message = str(error) if isinstance(error, BuilderError) else describe_error(exc)
            staging.record_failure(message)
            location.versions.mark_failed(message)
            if error is exc:
                raise
            raise error from None


def prune(
    output_url: str, keep: int, storage_options: dict[str, Any] | None = None
) -> tuple[list[str], list[str]]:
    """Delete all but the published and newest ``keep - 1`` versions of an output, under the
    build lock. Returns (removed, kept)."""
    location = StoreLocation(output_url, storage_options)
    output = location.versions
    with location.storage_errors():
        published = output.published()
    if published is None:
        raise StoreError(f"{output_url}: no published build here; nothing to prune")
    with location.storage_errors("the published version is intact"), location.staging.lock():
        removed = output.prune(keep)
    return removed, output.versions()


def worker_log_path(staging: Staging) -> str:
    """Where Dask's log records (worker tracebacks) go instead of stderr: beside the staging
    folder on local disk, else a local temporary folder."""
    if staging.location.is_local:
        return os.path.join(staging.root, "logs", "dask.log")
    name = os.path.basename(staging.location.url) or "output"
    return os.path.join(tempfile.gettempdir(), "gait-builder-logs", f"{name}.dask.log")


_INTACT = "nothing was published and the previous version is intact"


def _no_trials(catalog_path: str, unavailable: list[UnavailableSource]) -> BuilderError:
    reasons = "; ".join(f"source {u.source!r}: {u.reason}" for u in unavailable[:3])
    return BuilderError(f"{catalog_path}: no trial to build ({reasons or 'it declares no source'})")


def _translated(output: str, exc: Exception, outcome: str) -> Exception:
    """A storage exception as one line saying what to fix (re-running only for faults that
    may pass); any other exception as it is."""
    return storage_error(output, exc, outcome) if is_storage_error(exc) else exc


def _build_locked(
    catalog: Catalog,
    specs: list[TrialSpec],
    unavailable: list[UnavailableSource],
    options: BuildOptions,
    on_progress: OnProgress | None,
    location: StoreLocation,
) -> BuildResult:
    catalog_path = catalog.path
    if not specs:  # before the output is claimed or a cluster started
        raise _no_trials(catalog_path, unavailable)
    trials = {trial_key(spec): spec for spec in specs}
    fingerprint = _fingerprint(trials, options.layout)

    output, staging = location.versions, location.staging
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
    if not options.fresh and _up_to_date(location, manifest, published, fingerprint):
        report = _read_report(location, str(published))
        log.info("%s is up to date (version %s); nothing to do.", options.output, published)
        return _result(options.output, str(published), report, up_to_date=True)

    version, resuming = _start_version(output, staging, manifest, fingerprint, options.fresh)
    staging.remove_leftovers(set(trials))
    manifest.update(
        output=options.output,
        in_progress=version,
        in_progress_fingerprint=fingerprint,
        catalog=str(catalog_path),
        started=now_utc(),
        state="processing",
    )
    staging.write_manifest(manifest)
    log.info(
        "%s %s version %s: %d trials from %s",
        "Resuming" if resuming else "Building",
        options.output,
        version,
        len(trials),
        catalog_path,
    )

    clock = time.perf_counter()
    timings: dict[str, float] = {}
    log_file = worker_log_path(staging)
    with connect(
        options.cluster, options.workers, options.dashboard_address, log_file=log_file
    ) as client:
        log.info("Dask dashboard: %s", client.dashboard_link)
        log.info("Dask's logs (worker errors): %s", log_file)
        timings["cluster_start"] = time.perf_counter() - clock
        outcomes = _process_trials(client, trials, staging, options, on_progress)
        timings["processing"] = time.perf_counter() - clock - timings["cluster_start"]
        manifest["state"] = "writing"
        staging.write_manifest(manifest)
        plan = plan_store(trials, outcomes)
        report = make_report(
            catalog_path,
            catalog.sha256,
            version,
            fingerprint,
            trials,
            outcomes,
            unavailable,
            plan.n_strides,
        )
        refusal = _must_not_publish(location, published, report, options) if plan.n_strides else ""
        if plan.n_strides == 0 or refusal:
            failed = {**manifest, "state": "failed", "last_report": report.to_json()}
            staging.write_manifest(failed)
            if refusal:
                raise StoreError(refusal)
            passing = report.retryable()
            if passing and len(passing) == len(report.trials_left_out):
                raise StoreError(
                    f"{options.output}: every trial failed with storage or machine errors "
                    f"(first: {report.first_reason()}); nothing was published and the previous "
                    "version is intact; the next run retries them"
                )
            raise BuilderError(
                f"{catalog_path}: no trial produced a stride, nothing to publish "
                f"({len(report.trials_left_out)} left out; first reason: "
                f"{report.first_reason()})"
            )
        clock = time.perf_counter()
        write_store(client, output, version, plan, staging, options.layout, on_progress)
        timings["writing"] = time.perf_counter() - clock

    report = report.model_copy(update={"timings_s": timings})
    finalise(output, version, plan, report, dataset_sources(trials))
    output.publish(version)
    manifest.update(
        published=version,
        published_fingerprint=fingerprint,
        in_progress=None,
        in_progress_fingerprint=None,
        state="published",
        finished=now_utc(),
    )
    staging.write_manifest(manifest)
    log.info(
        "Published %s -> version %s: %d strides from %d trials; %d left out.",
        options.output,
        version,
        plan.n_strides,
        report.n_trials_built,
        report.n_trials_left_out,
    )
    return _result(options.output, version, report, up_to_date=False)


def _must_not_publish(
    location: StoreLocation, published: str | None, report: BuildReport, options: BuildOptions
) -> str:
    """Why this build must not become the current version ("" when it may): trials left out
    for reasons that may pass, or fewer strides than the current version of the same
    catalogue. ``allow_partial`` publishes anyway (the report keeps the reasons)."""
    if options.allow_partial:
        return ""
    current = f"version {published} stays current" if published else "nothing was published"
    passing = report.retryable()
    if passing:
        first = passing[0]
        return (
            f"{options.output}: {len(passing)} trial(s) could not be processed or staged for "
            f"reasons that may pass (first: {first.trial}: {first.reason}); {current}; "
            "re-run to finish the job (--allow-partial publishes without them)"
        )
    if published is None:
        return ""
    previous = _read_report(location, published)
    if previous.catalog_sha256 == report.catalog_sha256 and report.n_strides < previous.n_strides:
        return (
            f"{options.output}: this build has {report.n_strides} strides, fewer than the "
            f"{previous.n_strides} of version {published}, built from the same catalogue; "
            f"{current}; see the trials left out with `builder report` (--allow-partial "
            "publishes it anyway)"
        )
    return ""


def _up_to_date(
    location: StoreLocation, manifest: dict[str, Any], published: str | None, fingerprint: str
) -> bool:
    """The published build is of these exact inputs, and none of its left-out trials could
    succeed on a retry."""
    if published is None or manifest.get("published") != published:
        return False
    if manifest.get("published_fingerprint") != fingerprint:
        return False
    return not _read_report(location, published).retryable()


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


def _process_trials(
    client: Client,
    trials: dict[str, TrialSpec],
    staging: Staging,
    options: BuildOptions,
    on_progress: OnProgress | None,
) -> dict[str, TrialOutcome]:
    """Stage 2: every trial not staged yet (or staged with a reason that may pass) through
    :func:`~builder.pipeline.trial.process_trial` on the cluster."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        staged = dict(zip(trials, pool.map(staging.load_outcome, trials), strict=True))
    outcomes = {k: o for k, o in staged.items() if o is not None and not o.retry}
    todo = [k for k in trials if k not in outcomes]
    if outcomes:
        log.info("%d trials already processed; %d to go.", len(outcomes), len(todo))
    futures: dict[Future, str] = {
        client.submit(
            process_trial,
            trials[k],
            k,
            staging,
            storage_options=options.storage_options,
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
                f"its task failed ({describe_error(exc)}): the Dask worker died or the result could "
                "not be staged; the next run retries it"
            ),
            retry=True,
        )

    for key, outcome in track(futures, "processing trials", on_progress, on_error):
        outcomes[key] = outcome
    return outcomes


# --- helpers ------------------------------------------------------------------------------


def _fingerprint(trials: dict[str, TrialSpec], layout: ChunkLayout) -> str:
    text = json.dumps([sorted(trials), asdict(layout), __version__])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read_report(location: StoreLocation, version: str) -> BuildReport:
    """The build report of ``version`` (StoreError when it has none)."""
    return parse_report(location.version_url(version), location.read_report(version))


def _result(output: str, version: str, report: BuildReport, *, up_to_date: bool) -> BuildResult:
    return BuildResult(
        output=output,
        version=version,
        n_strides=report.n_strides,
        n_trials_built=report.n_trials_built,
        n_trials_left_out=report.n_trials_left_out,
        up_to_date=up_to_date,
        report=report,
    )

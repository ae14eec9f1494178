"""Command line: ``python -m builder run | info | export-index | export-h5 | report | catalog |
train | export | engines`` (also ``builder``)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from builder._version import __version__
from builder.errors import BuilderError
from builder.pipeline.options import BuildOptions  # light: no Dask before a command runs
from builder.training import defaults as train_defaults
from builder.training.progress import EpochLoss  # light: no PyTorch

_BUILD = BuildOptions()  # the library's defaults
_CONFIGURED_CLUSTER = object()  # bare --cluster: builder.cluster.configured_cluster()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    err = Console(stderr=True)
    try:
        return int(args.handler(args) or 0)
    except BuilderError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        err.print("interrupted; re-run the same command to resume")
        return 130
    except Exception as exc:  # an object store's error not translated where it was raised
        from builder.store.faults import storage_error, storage_fault

        fault = storage_fault(exc)
        if fault is None or not fault.remote:
            raise
        url = next((v for n in ("url", "output", "store") if (v := getattr(args, n, None))), "")
        message = str(storage_error(url or "storage", exc))
        err.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="builder",
        description="Build one clean, indexable gait stride store (Zarr v3) from raw gait datasets.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="build (or resume) a store from a catalogue; the built-in demo by default",
        description=(
            "Build the store described by a catalogue on a Dask cluster. With no --catalog, "
            "generates the built-in demo's raw C3D files into a cache folder and builds them. "
            "A re-run resumes an interrupted build; --fresh starts a new version from scratch."
        ),
    )
    run.add_argument(
        "--catalog", metavar="PATH", help="catalogue YAML (default: the built-in demo)"
    )
    run.add_argument(
        "--output",
        metavar="URL",
        default=_BUILD.output,
        help="store to write (default: %(default)s)",
    )
    run.add_argument(
        "--workers",
        metavar="N",
        type=_positive_int,
        help="local worker processes (default: CPU count)",
    )
    run.add_argument(
        "--cluster",
        metavar="ADDRESS",
        nargs="?",
        const=_CONFIGURED_CLUSTER,
        help=(
            "existing Dask scheduler (tcp://host:8786), or a cluster to start: 'slurm' "
            "(dask-jobqueue; --workers N jobs) or 'kubernetes' (Dask operator; --workers N "
            "pods); resources come from Dask's config (see builder.cluster). With no value: "
            "the cluster this environment is set up for (DASK_SCHEDULER_ADDRESS, else Dask "
            "config builder.cluster)"
        ),
    )
    run.add_argument(
        "--fresh", action="store_true", help="ignore staged results; build a new version"
    )
    run.add_argument(
        "--allow-partial",
        action="store_true",
        help=(
            "publish even when trials were left out for reasons that may pass (storage, a dead "
            "worker) or the new version has fewer strides than the current one from the same "
            "catalogue (by default such a build fails and the current version stays)"
        ),
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument(
        "--read-timeout",
        metavar="SECONDS",
        type=float,
        default=_BUILD.read_timeout_s,
        help=(
            "a trial whose reader takes longer is retried once with 4x the limit, then left "
            "out (default: %(default)g)"
        ),
    )
    _add_storage_options(run)
    run.set_defaults(handler=_run)

    prune = sub.add_parser(
        "prune",
        help="delete old versions of a store (the only way versions are removed)",
        description=(
            "Keep the published version and the newest KEEP-1 others of a store; delete the "
            "rest. Readers of a deleted version's URL lose it; readers of the store's name "
            "keep reading (its recent versions' chunks stay there)."
        ),
    )
    prune.add_argument("url", metavar="URL", help="the store (its --output)")
    prune.add_argument(
        "--keep", metavar="N", type=_positive_int, required=True, help="versions to keep"
    )
    _add_storage_options(prune)
    prune.set_defaults(handler=_prune)

    info = sub.add_parser(
        "info",
        help="what a store holds: strides per dataset, activity and side; the build report",
        description="Print the stride counts of a store and its build report.",
    )
    info.add_argument("url", metavar="URL", help="store path or URL")
    _add_storage_options(info)
    info.set_defaults(handler=_info)

    export = sub.add_parser(
        "export-index",
        help="write the HDF5 stride index of a store",
        description="Write stride_starts, stride_ends and stride_metadata/<column> to HDF5.",
    )
    export.add_argument("url", metavar="URL", help="store path or URL")
    export.add_argument("--to", metavar="FILE.h5", required=True, help="HDF5 file to write")
    _add_storage_options(export)
    export.set_defaults(handler=_export_index)

    export_h5 = sub.add_parser(
        "export-h5",
        help="write selected strides with their signals to HDF5 (for MATLAB h5read)",
        description=(
            "Write the selected strides' arrays, masks, raw EMG rows (with new stride_starts/"
            "stride_ends into them) and stride table to one chunked, gzip-compressed HDF5 file. "
            "MATLAB reads it with h5read; its arrays arrive with their dims reversed (each "
            "dataset's matlab_dims attribute names them)."
        ),
    )
    export_h5.add_argument("url", metavar="URL", help="store path or URL")
    export_h5.add_argument("--to", metavar="FILE.h5", required=True, help="HDF5 file to write")
    export_h5.add_argument(
        "--query",
        metavar="EXPR",
        help=(
            "pandas query over the stride table, e.g. \"dataset == 'demo' and activity == "
            "'walk'\" (default: every stride)"
        ),
    )
    _add_storage_options(export_h5)
    export_h5.set_defaults(handler=_export_h5)

    report = sub.add_parser(
        "report",
        help="write an HTML quality report of a store (stride counts, curves per dataset)",
        description=(
            "Write DIR/index.html with PNG figures: strides per dataset and activity, component "
            "coverage, every dataset's mean ± SD curves of the joint angles, moments and EMG "
            "envelopes overlaid, mask checks, and the trials left out and sources unavailable."
        ),
    )
    report.add_argument("url", metavar="URL", help="store path or URL")
    report.add_argument(
        "--out",
        metavar="DIR",
        help="folder to write (default: <store name>-report in the current folder)",
    )
    _add_storage_options(report)
    report.set_defaults(handler=_report)

    catalog = sub.add_parser(
        "catalog",
        help="write an intake catalogue with one entry for a store (opens as xarray)",
        description=(
            "Write an intake YAML catalogue whose one entry (driver gait_store) opens the store "
            "as xarray: intake.open_catalog(FILE)[NAME].to_dask(). Its metadata record the "
            "store's version and stride count now; it opens the version published when read."
        ),
    )
    catalog.add_argument("url", metavar="URL", help="store path or URL")
    catalog.add_argument(
        "--out", metavar="FILE", help="catalogue to write (default: NAME.yaml here)"
    )
    catalog.add_argument(
        "--name", metavar="NAME", help="the entry's name (default: the store's, e.g. gait)"
    )
    _add_storage_options(catalog)
    catalog.set_defaults(handler=_catalog)
    _add_training_commands(sub)
    return parser


def _add_training_commands(sub: argparse._SubParsersAction) -> None:
    models = train_defaults.MODEL_NAMES
    train = sub.add_parser(
        "train",
        help="train a reference model on a store (needs the train extra: PyTorch)",
        description=(
            "Train a reference model on the strides of a store (local or s3://): hip-moment "
            "(causal TCN, hip angle -> hip moment, K2MUSE protocol), emg-torque (kinematics -> "
            "torques -> sEMG of 7 muscles, with a baseline MLP), gait-phase (4 phases from "
            "kinematics and sEMG). Writes checkpoint.pt, metrics.json and "
            "predicted_vs_measured.png into --out."
        ),
    )
    train.add_argument("model", choices=models, help="which reference model")
    train.add_argument(
        "--store", metavar="URL", default=_BUILD.output, help="store (default: %(default)s)"
    )
    train.add_argument("--out", metavar="DIR", help="run folder (default: runs/<model>)")
    train.add_argument("--seed", type=int, default=train_defaults.SEED,
                       help="seed of splits, weights and batches (default: %(default)s)")
    train.add_argument("--epochs", type=_positive_int, default=train_defaults.EPOCHS,
                       help="training epochs (default: %(default)s)")
    train.add_argument("--batch-strides", type=_positive_int, default=train_defaults.BATCH_STRIDES,
                       help="strides per batch (default: %(default)s)")  # fmt: skip
    train.add_argument(
        "--max-subjects",
        type=_positive_int,
        help="train on the first N subjects only (stable order)",
    )
    train.add_argument("--loader-workers", type=int, default=train_defaults.LOADER_WORKERS,
                       help="DataLoader worker processes (default: %(default)s)")  # fmt: skip
    for column in ("dataset", "activity", "side", "population", "emg-kind"):
        train.add_argument(f"--{column}", action="append", default=[], metavar="VALUE",
                           help=f"only strides with this {column} (repeatable)")  # fmt: skip
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_storage_options(train)
    train.set_defaults(handler=_train)

    export = sub.add_parser(
        "export",
        help="write a trained run as ONNX (+ TensorRT engines where possible) with a manifest",
        description=(
            "Export RUN_DIR/checkpoint.pt to ONNX with a dynamic batch axis, check onnxruntime "
            "against PyTorch, build fp32/fp16 TensorRT engines when TensorRT and a GPU are "
            "present (else say why not), and write manifest.json; into --out "
            "(default RUN_DIR/release)."
        ),
    )
    export.add_argument("run", metavar="RUN_DIR", help="folder written by `builder train`")
    export.add_argument(
        "--out",
        metavar="DIR",
        help="release folder: new, empty or an earlier export (default: RUN_DIR/release)",
    )
    export.add_argument("--subject", help="hip-moment: whose mode models to ship (default: first)")
    export.add_argument("--no-engines", action="store_true", help="do not try TensorRT")
    export.set_defaults(handler=_export)

    engines = sub.add_parser(
        "engines",
        help="push, pull or list engine releases in a bucket",
        description="Releases live at URL/<model>/<version>/ with a manifest of sha256 sums.",
    )
    verbs = engines.add_subparsers(dest="verb", required=True, metavar="VERB")
    push = verbs.add_parser("push", help="upload a release folder as a new version")
    push.add_argument("folder", metavar="RELEASE_DIR", help="folder written by `builder export`")
    push.add_argument("url", metavar="URL", help="bucket URL (s3://bucket/releases, a folder, ...)")
    push.add_argument("--version", help="version name vN (default: the next number)")
    pull = verbs.add_parser("pull", help="download and verify a release")
    pull.add_argument("url", metavar="URL")
    pull.add_argument("model", choices=models)
    pull.add_argument("--version", help="default: the latest complete version")
    pull.add_argument("--to", metavar="DIR", default="engines", help="(default: %(default)s)")
    listing = verbs.add_parser("list", help="list the releases in a bucket")
    listing.add_argument("url", metavar="URL")
    for verb in (push, pull, listing):
        _add_storage_options(verb)
    engines.set_defaults(handler=_engines)


def _add_storage_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage-option",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        dest="storage_options",
        type=_key_value,
        help=(
            "fsspec/s3fs option for every URL (repeatable), e.g. endpoint_url=http://host:9000, "
            "profile=lab, anon=true, client_kwargs.region_name=eu-west-1; VALUE is JSON when it "
            "parses as JSON. Credentials usually come from the environment, AWS profiles or "
            "fsspec's config instead; they are never written to the store, report or logs"
        ),
    )


def _key_value(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def storage_options(pairs: list[tuple[str, object]]) -> dict[str, Any]:
    """``[("client_kwargs.region_name", "x")]`` → ``{"client_kwargs": {"region_name": "x"}}``."""
    options: dict[str, Any] = {}
    for key, value in pairs:
        *parents, leaf = key.split(".")
        node = options
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return options


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _run(args: argparse.Namespace) -> int:
    from builder.catalog import bundled_catalog
    from builder.pipeline.run import build

    err = Console(stderr=True)  # messages and progress bars share it
    cluster = args.cluster
    if cluster is _CONFIGURED_CLUSTER:
        from builder.cluster import configured_cluster

        cluster = configured_cluster()
    variables: dict[str, str] = {}
    catalog = args.catalog
    if catalog is None:
        from builder.demo import ensure_demo_sources

        err.print("Writing the built-in demo's raw sources (once, into the cache folder)…")
        variables["demo_root"] = str(ensure_demo_sources())
        catalog = str(bundled_catalog("demo"))
    options = BuildOptions(
        output=args.output,
        workers=args.workers,
        cluster=cluster,
        fresh=args.fresh,
        progress=not args.no_progress,
        variables=variables,
        read_timeout_s=args.read_timeout,
        allow_partial=args.allow_partial,
        storage_options=storage_options(args.storage_options),
    )
    bars = _StageBars(err)
    try:
        with _messages_to(err):
            build(catalog, options, on_progress=bars)
    finally:
        bars.close()  # a stage cut short by an error
    return 0


class _StageBars:
    """``build()``'s progress (an :class:`~builder.pipeline.progress.OnProgress`): one rich
    bar per stage, left on screen when the stage ends."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if done == 0 or self._bar is None or self._task is None:
            self.close()
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            self._bar = Progress(*columns, console=self._console, transient=False)
            self._bar.start()
            self._task = self._bar.add_task(stage, total=total)
        self._bar.update(self._task, completed=done)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar, self._task = None, None


class _ConsoleHandler(logging.Handler):
    """The ``builder`` logger's messages on a rich console: warnings in yellow."""

    def __init__(self, console: Console) -> None:
        super().__init__(logging.INFO)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            style = "yellow" if record.levelno >= logging.WARNING else None
            text = record.getMessage()
            self.console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)
        except Exception:
            self.handleError(record)


@contextmanager
def _messages_to(console: Console) -> Iterator[None]:
    """The library's messages (logger ``builder``) on ``console`` while the command runs."""
    logger = logging.getLogger("builder")
    handler = _ConsoleHandler(console)
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # printed here, not again by a root handler
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def _prune(args: argparse.Namespace) -> int:
    from builder.pipeline.run import prune

    removed, kept = prune(args.url, args.keep, storage_options(args.storage_options))
    Console(stderr=True).print(
        f"{args.url}: removed {len(removed)} version(s) {', '.join(removed) or ''}; "
        f"kept {', '.join(kept)}",
        highlight=False,
    )
    return 0


def _info(args: argparse.Namespace) -> int:
    from builder.pipeline.report import parse_report
    from builder.store.layout import decode_root_attrs
    from builder.store.location import StoreLocation
    from builder.store.reader import group_stride_table, stride_counts

    so = storage_options(args.storage_options)
    moving = StoreLocation(args.url, so)
    location = StoreLocation(moving.pin(), so)  # every figure below from one version
    url = location.url
    report = parse_report(url, location.read_report())
    store = location.open_group()
    counts = stride_counts(group_stride_table(store))
    out = Console()
    if status := moving.staging.last_build():
        out.print(
            f"[bold yellow]Note:[/] {escape(status)}. Shown below: version {report.version}, "
            f"built {report.created}.",
            highlight=False,
        )
    table = Table(title=f"{args.url} — version {report.version}, {report.n_strides} strides")
    for column in ("dataset", "activity", "side", "strides", "% of total"):
        table.add_column(column, justify="right" if column in ("strides", "% of total") else "left")
    for dataset, group in counts.groupby("dataset", sort=True):
        for row in group.itertuples():
            table.add_row(
                str(dataset), row.activity, row.side, f"{row.strides}", f"{row.percent:.1f}"
            )
        share = group["percent"].sum()
        table.add_row(
            f"[bold]{dataset}[/]",
            "[bold]all[/]",
            "",
            f"[bold]{group['strides'].sum()}[/]",
            f"[bold]{share:.1f}[/]",
            end_section=True,
        )
    out.print(table)
    attrs = decode_root_attrs(store.attrs.asdict())  # datasets: JSON text in the store
    sources = cast(dict[str, dict[str, str]], attrs.get("datasets", {}))
    for dataset, source in sorted(sources.items()):
        out.print(
            f"[bold]{dataset}[/] ({source['licence']}): cite {source['citation']}", highlight=False
        )

    if url != args.url:
        out.print(f"This version, unchanged until pruned: {url}", highlight=False)
    out.print(
        f"Build report: {report.n_trials_built} trials built, "
        f"{report.n_trials_left_out} left out, "
        f"{len(report.sources_unavailable)} sources unavailable."
    )
    if quality := report.quality:
        from builder.processing.quality import CHECK_DESCRIPTIONS, KINDS

        gate = Table(title="Left out by the quality gate (stride-components)")
        for column in ("dataset", "check", *KINDS):
            gate.add_column(column, justify="right" if column in KINDS else "left")
        for dataset, checks in sorted(quality.items()):
            for check, per_kind in sorted(checks.items()):
                gate.add_row(dataset, check, *(str(per_kind.get(k, "")) for k in KINDS))
        out.print(gate)
        for check in sorted({c for checks in quality.values() for c in checks}):
            out.print(f"  {check}: {CHECK_DESCRIPTIONS.get(check, '')}", highlight=False)
    if report.trials_left_out:
        left = Table(title="Trials left out")
        left.add_column("trial")
        left.add_column("reason")
        for entry in report.trials_left_out:
            left.add_row(entry.trial, entry.reason)
        out.print(left)
    if report.sources_unavailable:
        gone = Table(title="Sources unavailable")
        gone.add_column("source")
        gone.add_column("reason")
        for unavailable in report.sources_unavailable:
            gone.add_row(unavailable.source, unavailable.reason)
        out.print(gone)
    return 0


def _export_index(args: argparse.Namespace) -> int:
    import numpy as np
    import zarr

    from builder.store.index_hdf5 import write_stride_index
    from builder.store.location import StoreLocation
    from builder.store.reader import group_stride_table

    so = storage_options(args.storage_options)
    location = StoreLocation(StoreLocation(args.url, so).pin(), so)
    group = location.open_group()
    table = group_stride_table(group)
    try:
        write_stride_index(
            args.to,
            np.asarray(cast(zarr.Array, group["stride_starts"])[:]),
            np.asarray(cast(zarr.Array, group["stride_ends"])[:]),
            {name: table[name].to_numpy() for name in table.columns},
        )
    except OSError as exc:
        raise BuilderError(f"{args.to}: cannot write HDF5 ({exc})") from None
    Console(stderr=True).print(f"Wrote {args.to}: {len(table)} strides")
    return 0


def _export_h5(args: argparse.Namespace) -> int:
    from builder.store.export_hdf5 import export_hdf5

    summary = export_hdf5(
        args.url, args.to, query=args.query, storage_options=storage_options(args.storage_options)
    )
    Console(stderr=True).print(
        f"Wrote {summary.path}: {summary.n_strides} strides, {summary.n_emg_rows} EMG rows, "
        f"{summary.size_bytes / 1e6:.1f} MB (from {summary.store_url})",
        highlight=False,
        soft_wrap=True,
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    from builder.report import default_report_dir, write_report

    out = args.out or default_report_dir(args.url)
    index = write_report(args.url, out, storage_options=storage_options(args.storage_options))
    Console(stderr=True).print(f"Wrote {index}", highlight=False)
    return 0


def _catalog(args: argparse.Namespace) -> int:
    from pathlib import Path

    from builder.store.intake_catalog import default_name, store_catalog

    name = args.name or default_name(args.url)
    out = Path(args.out or f"{name}.yaml")
    text, meta = store_catalog(args.url, name, storage_options(args.storage_options))
    try:
        out.write_text(text)
    except OSError as exc:
        raise BuilderError(f"{out}: cannot write the catalogue ({exc.strerror or exc})") from None
    Console(stderr=True).print(
        f"Wrote {out}: entry {name!r}, version {meta['build_version']}, "
        f"{meta['n_strides']} strides. Open it with:\n"
        f"  import intake; ds = intake.open_catalog({str(out)!r})[{name!r}].to_dask()",
        highlight=False,
        soft_wrap=True,
    )
    return 0


def _require_torch() -> None:
    import importlib.util

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("onnxruntime") is None:
        raise BuilderError(
            "training needs PyTorch and onnxruntime: pip install -e '.[train]' "
            "(installs torch==2.13.0, the CPU build)"
        )


def _train(args: argparse.Namespace) -> int:
    _require_torch()
    from pathlib import Path

    from builder.training.data import StoreSource, StrideQuery
    from builder.training.loop import TrainSettings
    from builder.training.run import check_run_folder, train

    out = Path(args.out or f"runs/{args.model}")
    check_run_folder(out)  # before the store is opened: not after training
    query = StrideQuery(
        datasets=tuple(args.dataset),
        activities=tuple(args.activity),
        sides=tuple(args.side),
        populations=tuple(args.population),
        emg_kinds=tuple(args.emg_kind),
    )
    settings = TrainSettings(
        source=StoreSource(args.store, storage_options(args.storage_options)),
        query=query,
        seed=args.seed,
        epochs=args.epochs,
        batch_strides=args.batch_strides,
        loader_workers=args.loader_workers,
        max_subjects=args.max_subjects,
    )
    console = Console()
    if args.no_progress:
        files = train(args.model, settings, out)
    else:
        with _TrainingBars(console) as bars:
            files = train(args.model, settings, out, on_progress=bars)
    metrics = json.loads(files.metrics.read_text())["metrics"]
    console.print(f"{args.model}: {_headline(args.model, metrics)}", highlight=False)
    console.print(f"wrote {files.checkpoint}, {files.metrics}, {files.figure}", highlight=False)
    return 0


class _TrainingBars:
    """``train()``'s progress (an :class:`~builder.training.progress.OnTrainingProgress`): one
    rich bar per stage, with the validation loss after each epoch, all left on screen."""

    def __init__(self, console: Console) -> None:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
        )
        self._bar = Progress(*columns, console=console, transient=False)
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> _TrainingBars:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def __call__(self, stage: str, done: int, total: int, loss: EpochLoss | None = None) -> None:
        task = self._tasks.get(stage)
        if task is None:
            task = self._tasks[stage] = self._bar.add_task(stage, total=total, status="")
        self._bar.update(task, completed=done, total=total)
        if loss is not None:
            self._bar.update(task, status=f"val {loss.validation:.4g} best {loss.best:.4g}")


def _headline(model: str, metrics: dict) -> str:
    if model == "hip-moment":
        pooled = metrics["pooled"]
        return f"RMSE {pooled['rmse']:.3f} N·m/kg, R² {pooled['r2']:.3f} (out of fold, pooled)"
    if model == "emg-torque":
        rows = metrics["r2_of_ensemble_average"]
        scores = ", ".join(
            f"{m} {_fmt(r['r2_torque_based'])}/{_fmt(r['r2_baseline'])}" for m, r in rows.items()
        )
        return f"R² of ensemble averages, torque-based/baseline: {scores}"
    return f"accuracy {metrics['accuracy']:.3f} on held-out subjects"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _export(args: argparse.Namespace) -> int:
    _require_torch()
    from pathlib import Path

    from builder.training.export import export

    exported = export(
        Path(args.run), Path(args.out) if args.out else None, args.subject, not args.no_engines
    )
    onnx = exported.manifest["onnx"]
    console = Console()
    console.print(
        f"wrote {exported.folder}: ONNX opset {onnx['opset']}, onnxruntime vs PyTorch max abs "
        f"difference {onnx['parity']['max_abs_diff']:.2g}",
        highlight=False,
    )
    if onnx["operators_outside_tensorrt_parser"]:
        console.print(
            f"operators outside TensorRT's ONNX parser: {onnx['operators_outside_tensorrt_parser']}"
        )
    step = exported.manifest["step"]
    if step["kind"] == "streaming":  # a window model's one-sample step (issue 13)
        console.print(
            f"streaming step {step['file']}: equal to {step['parity']['against']} within "
            f"{step['parity']['max_abs_diff']:.2g} over {step['parity']['samples']} samples",
            highlight=False,
        )
        if step["operators_outside_tensorrt_parser"]:
            outside = step["operators_outside_tensorrt_parser"]
            console.print(f"step operators outside TensorRT's ONNX parser: {outside}")
    trt = exported.manifest["tensorrt"]
    if trt["skipped"]:
        console.print(f"TensorRT engines skipped: {trt['skipped']}", highlight=False)
    for engine in trt["built"]:
        console.print(
            f"TensorRT {engine['precision']}: {engine['file']}, batch-1 latency p50 "
            f"{engine['latency_ms_p50']:.3f} ms, p99 {engine['latency_ms_p99']:.3f} ms",
            highlight=False,
        )
    return 0


def _engines(args: argparse.Namespace) -> int:
    import warnings

    from builder.training.releases import ReleaseWarning

    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ReleaseWarning)  # shown once each, below
            return _engines_verb(args)
    except OSError as exc:
        from builder.store.faults import storage_error

        raise storage_error(args.url, exc) from None
    finally:  # before any error: a skipped release can explain it
        err = Console(stderr=True)
        skipped = dict.fromkeys(str(w.message) for w in caught if w.category is ReleaseWarning)
        for message in skipped:
            err.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)
        for w in caught:
            if w.category is not ReleaseWarning:  # others as Python would show them
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def _engines_verb(args: argparse.Namespace) -> int:
    from pathlib import Path

    from builder.training import releases

    options = storage_options(args.storage_options)
    console = Console()
    if args.verb == "push":
        release = releases.push(Path(args.folder), args.url, options, args.version)
        console.print(f"pushed {release.model} {release.version} to {args.url}", highlight=False)
    elif args.verb == "pull":
        folder = releases.pull(args.url, args.model, Path(args.to), args.version, options)
        console.print(f"pulled and verified {folder}", highlight=False)
    else:
        table = Table("model", "version", "created", "store", "files", "state")
        for r in releases.list_releases(args.url, options):
            if r.problem:  # skipped, with a warning
                continue
            m = r.manifest or {}
            store = m["store"] if isinstance(m.get("store"), dict) else {}
            table.add_row(
                r.model, r.version, str(m.get("created", "")),
                f"{store.get('version', '')} {store.get('fingerprint', '')}".strip(),
                str(len(m.get("files", {}))), "complete" if r.manifest else "incomplete (no manifest)",
            )  # fmt: skip
        console.print(table)
    return 0


if __name__ == "__main__":  # last: every handler above is defined by then
    sys.exit(main())

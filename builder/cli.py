"""Command line: ``python -m builder run | info | export-index | report`` (also ``builder``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from builder.errors import BuilderError

DEFAULT_OUTPUT = "gait.zarr"


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="builder",
        description="Build one clean, indexable gait stride store (Zarr v3) from raw gait datasets.",
    )
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
        default=DEFAULT_OUTPUT,
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
        help=(
            "existing Dask scheduler (tcp://host:8786), or a cluster to start: 'slurm' "
            "(dask-jobqueue; --workers N jobs) or 'kubernetes' (Dask operator; --workers N "
            "pods); resources come from Dask's config (see builder.cluster)"
        ),
    )
    run.add_argument(
        "--fresh", action="store_true", help="ignore staged results; build a new version"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument(
        "--read-timeout",
        metavar="SECONDS",
        type=float,
        default=600.0,
        help="leave out a trial whose reader takes longer (default: %(default)g)",
    )
    _add_storage_options(run)
    run.set_defaults(handler=_run)

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
    return parser


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


def storage_options(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """``[("client_kwargs.region_name", "x")]`` → ``{"client_kwargs": {"region_name": "x"}}``."""
    options: dict[str, object] = {}
    for key, value in pairs:
        *parents, leaf = key.split(".")
        node = options
        for parent in parents:
            node = node.setdefault(parent, {})  # type: ignore[assignment]
        node[leaf] = value  # type: ignore[index]
    return options


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _run(args: argparse.Namespace) -> int:
    from builder.build import BuildOptions, build
    from builder.catalog import bundled_catalog

    variables: dict[str, str] = {}
    catalog = args.catalog
    if catalog is None:
        from builder.demo import ensure_demo_sources

        console = Console(stderr=True)
        console.print("Writing the built-in demo's raw sources (once, into the cache folder)…")
        variables["demo_root"] = str(ensure_demo_sources())
        catalog = str(bundled_catalog("demo"))
    options = BuildOptions(
        output=args.output,
        workers=args.workers,
        cluster=args.cluster,
        fresh=args.fresh,
        progress=not args.no_progress,
        variables=variables,
        read_timeout_s=args.read_timeout,
        storage_options=storage_options(args.storage_options),
    )
    build(catalog, options)
    return 0


def _info(args: argparse.Namespace) -> int:
    from builder.store.reader import open_group, read_report, stride_counts, stride_table

    so = storage_options(args.storage_options)
    report = read_report(args.url, so)
    counts = stride_counts(stride_table(args.url, so))
    out = Console()
    table = Table(title=f"{args.url} — version {report['version']}, {report['n_strides']} strides")
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
    for dataset, source in sorted(open_group(args.url, so).attrs.get("datasets", {}).items()):
        out.print(
            f"[bold]{dataset}[/] ({source['licence']}): cite {source['citation']}", highlight=False
        )

    out.print(
        f"Build report: {report['n_trials_built']} trials built, "
        f"{report['n_trials_left_out']} left out, "
        f"{len(report['sources_unavailable'])} sources unavailable."
    )
    if report["trials_left_out"]:
        left = Table(title="Trials left out")
        left.add_column("trial")
        left.add_column("reason")
        for entry in report["trials_left_out"]:
            left.add_row(entry["trial"], entry["reason"])
        out.print(left)
    if report["sources_unavailable"]:
        gone = Table(title="Sources unavailable")
        gone.add_column("source")
        gone.add_column("reason")
        for entry in report["sources_unavailable"]:
            gone.add_row(entry["source"], entry["reason"])
        out.print(gone)
    return 0


def _export_index(args: argparse.Namespace) -> int:
    from builder.store.index_hdf5 import write_stride_index
    from builder.store.reader import open_group, stride_table

    so = storage_options(args.storage_options)
    group = open_group(args.url, so)
    table = stride_table(args.url, so)
    try:
        write_stride_index(
            args.to,
            group["stride_starts"][:],
            group["stride_ends"][:],
            {name: table[name].to_numpy() for name in table.columns},
        )
    except OSError as exc:
        raise BuilderError(f"{args.to}: cannot write HDF5 ({exc})") from None
    Console(stderr=True).print(f"Wrote {args.to}: {len(table)} strides")
    return 0


def _report(args: argparse.Namespace) -> int:
    from builder.report import default_report_dir, write_report

    out = args.out or default_report_dir(args.url)
    index = write_report(args.url, out, storage_options=storage_options(args.storage_options))
    Console(stderr=True).print(f"Wrote {index}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

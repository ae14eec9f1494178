"""gait-builder: turn heterogeneous public gait datasets into one clean, indexable Zarr store.

Public API (imported lazily, so ``python -m builder --help`` stays quick)::

    from builder import BuildOptions, build, load_catalog, open_store

    build("catalogs/demo.yaml", BuildOptions(output="gait.zarr", workers=2))
    ds = open_store("gait.zarr")  # xarray.open_zarr, pinned, the stride table in memory
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from builder._version import __version__

_PUBLIC = {
    "BuildOptions": "builder.pipeline.options",
    "BuildReport": "builder.pipeline.report",
    "BuildResult": "builder.pipeline.run",
    "build": "builder.pipeline.run",
    "load_catalog": "builder.catalog",
    "expand_trials": "builder.catalog",
    "open_store": "builder.store.reader",
    "read_report": "builder.store.reader",
    "read_build_report": "builder.pipeline.report",
}
__all__ = [
    "BuildOptions",
    "BuildReport",
    "BuildResult",
    "__version__",
    "build",
    "expand_trials",
    "load_catalog",
    "open_store",
    "read_build_report",
    "read_report",
]

if TYPE_CHECKING:
    from builder.catalog import expand_trials, load_catalog
    from builder.pipeline.options import BuildOptions
    from builder.pipeline.report import BuildReport, read_build_report
    from builder.pipeline.run import BuildResult, build
    from builder.store.reader import open_store, read_report


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'builder' has no attribute {name!r}")

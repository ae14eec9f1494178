"""What a build is asked to do (``BuildOptions``): light to import, so that the command line
takes its defaults from here without loading Dask."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from builder.pipeline.isolated import DEFAULT_TIMEOUT_S
from builder.store.layout import ChunkLayout


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
    progress: bool = True  # report progress to build()'s on_progress
    dashboard_address: str = ":8787"  # ":0" for any free port
    variables: dict[str, str] = field(default_factory=dict)  # catalogue template variables
    storage_options: dict[str, Any] = field(default_factory=dict)

"""Shared fixtures: the demo's raw files, generated once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.demo import ensure_demo_sources


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 40 demo trials as C3D files, in a session-wide temporary cache."""
    return ensure_demo_sources(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def demo_store(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The whole built-in demo (C3D demo + 14 miniature datasets) built once: (store, report).
    Read-only for the tests that share it."""
    from rich.console import Console

    from builder.catalog import bundled_catalog
    from builder.pipeline.run import BuildOptions, build

    from helpers import SMALL_LAYOUT

    folder = tmp_path_factory.mktemp("demo-store")
    options = BuildOptions(
        output=str(folder / "gait.zarr"),
        workers=2,
        layout=SMALL_LAYOUT,
        progress=False,
        dashboard_address=":0",
        variables={"demo_root": str(demo_root)},
    )
    result = build(str(bundled_catalog("demo")), options, console=Console(quiet=True))
    return folder / "gait.zarr", result.report

"""Shared fixtures: the demo's raw files and the dataset miniatures, generated once per test
session."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.demo import ensure_demo_sources
from builder.pipeline.report import BuildReport

from helpers import SMALL_LAYOUT, Miniature, MiniatureFactory, file_digests, write_miniature

# Fixtures that build the whole demo store: a test that needs one is slow.
SLOW_FIXTURES = frozenset({"demo_store"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``slow`` on every test that starts a Dask cluster (``cluster``: builds, S3 servers,
    the notebook, training on the demo store) or builds the whole demo, so that
    ``-m "not slow"`` is a quick loop; the full run (CI) still runs them all."""
    for item in items:
        fixtures = set(item.fixturenames) if isinstance(item, pytest.Function) else set()
        if item.get_closest_marker("cluster") or SLOW_FIXTURES & fixtures:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def miniature(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MiniatureFactory]:
    """``miniature(source_key)``: that dataset's miniature (folder and facts), written on first
    use into its own session-wide root. Tests share it read-only; at the end of the session
    every file must still hold the bytes it was written with."""
    written: dict[str, tuple[Miniature, dict[str, str]]] = {}

    def get(source: str) -> Miniature:
        if source not in written:
            root = tmp_path_factory.mktemp(f"miniature-{source}")
            found = write_miniature(root, source)
            written[source] = (found, file_digests(found.folder))
        found = written[source][0]
        return Miniature(found.source, found.root, copy.deepcopy(found.facts))  # facts: private

    yield get
    changed = sorted(s for s, (m, digests) in written.items() if file_digests(m.folder) != digests)
    assert not changed, f"tests changed the shared miniatures {changed}: break a copy instead"


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 40 demo trials as C3D files, in a session-wide temporary cache."""
    return ensure_demo_sources(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def demo_store(
    demo_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, BuildReport]:
    """The whole built-in demo (C3D demo + 14 miniature datasets) built once: (store, report).
    Read-only for the tests that share it."""

    from builder.catalog import bundled_catalog
    from builder.pipeline.run import BuildOptions, build

    folder = tmp_path_factory.mktemp("demo-store")
    options = BuildOptions(
        output=str(folder / "gait.zarr"),
        workers=2,
        layout=SMALL_LAYOUT,
        progress=False,
        dashboard_address=":0",
        variables={"demo_root": str(demo_root)},
    )
    result = build(str(bundled_catalog("demo")), options)
    return folder / "gait.zarr", result.report

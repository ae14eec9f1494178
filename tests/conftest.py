"""Shared fixtures: the demo's raw files, generated once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.demo import ensure_demo_sources


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 40 demo trials as C3D files, in a session-wide temporary cache."""
    return ensure_demo_sources(tmp_path_factory.mktemp("cache"))

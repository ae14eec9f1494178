"""Miniature copies of the 14 source datasets, in exactly their documented layouts.

No raw file of these datasets is available here, so each adapter is proven on a miniature
written by a generator in this package: a few subjects and trials, plausible curves from
:mod:`builder.synthetic.gait_model`, the dataset's own file names, formats, field names, units,
axes and sign conventions. The built-in demo writes every miniature into
``<demo root>/datasets/<source key>/`` and builds them through the real entries of
``catalogs/datasets.yaml`` (with ``GAIT_DATA_ROOT`` pointed there).

A generator is a function ``write(folder) -> dict`` registered with :func:`miniature` under
its catalogue source key; it writes deterministically (same bytes every time) and returns
what tests need to check the adapter (e.g. the number of strides it generated).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Any

Generator = Callable[[Path], dict[str, Any]]
MINIATURES: dict[str, Generator] = {}

def miniature(source: str) -> Callable[[Generator], Generator]:
    """Register ``write(folder)`` as the generator of catalogue source ``source``."""

    def register(write: Generator) -> Generator:
        if source in MINIATURES and MINIATURES[source] is not write:
            raise ValueError(f"two miniature generators for {source!r}")
        MINIATURES[source] = write
        return write

    return register


def miniature_sources() -> list[str]:
    """Catalogue source keys that have a miniature generator."""
    from builder.datasets.registry import miniature_modules

    for module in miniature_modules():
        import_module(module)
    return sorted(MINIATURES)


def write_miniatures(folder: Path) -> dict[str, dict[str, Any]]:
    """Write every miniature into ``folder/<source key>/``; return each one's facts."""
    miniature_sources()
    folder.mkdir(parents=True, exist_ok=True)
    facts = {}
    for source, write in sorted(MINIATURES.items()):
        target = folder / source
        target.mkdir(parents=True, exist_ok=True)
        facts[source] = write(target)
    return facts

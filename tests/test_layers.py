"""The package's layers, checked on the source with ``ast``: each layer imports only the
layers below it, so that a file reader never drags in the pipeline, a driver never reaches
into the store, and only the command line knows the command line.

    formats     -> builder.errors, builder.conventions, builder.records (and libraries)
    processing  -> not datasets, pipeline, store, training, cli
    datasets    -> not pipeline, store, training, cli
    store       -> not pipeline, datasets, training, cli
    builder.cli -> imported by builder.cli and builder.__main__ only

Every import counts: module level, inside functions (lazy imports) and under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import builder

PACKAGE = Path(builder.__file__).parent

FORBIDDEN = {
    "processing": ("datasets", "pipeline", "store", "training", "cli"),
    "datasets": ("pipeline", "store", "training", "cli"),
    "store": ("pipeline", "datasets", "training", "cli"),
}
# formats sits just above the shared vocabulary: what it may import, besides itself.
FORMATS_ALLOWED = ("errors", "conventions", "records", "formats")
CLI_IMPORTERS = ("cli", "__main__")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every ``builder.*`` module ``path`` imports; ``from builder.x import y`` counts as both
    ``builder.x`` and ``builder.x.y`` (y may be a module), relative imports resolved."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}
    return {n for n in names if n == "builder" or n.startswith("builder.")}


def layer(name: str) -> str:
    """The top-level subpackage or module of ``builder.x.y`` (``x``); '' for ``builder``."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def modules() -> dict[str, set[str]]:
    return {module_name(p): imported(p) for p in sorted(PACKAGE.rglob("*.py"))}


IMPORTS = modules()


def violations(rule) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, targets in IMPORTS.items()
        for target in targets
        if rule(module, target)
    )


def test_the_check_sees_the_package() -> None:
    """Guard against a vacuous pass: the walk finds the layers and their imports."""
    assert {"builder.formats.c3d", "builder.datasets.c3d.adapter", "builder.cli"} <= set(IMPORTS)
    assert "builder.formats.c3d" in IMPORTS["builder.datasets.c3d.adapter"]


def test_formats_import_only_the_shared_vocabulary() -> None:
    assert not violations(
        lambda module, target: layer(module) == "formats"
        and layer(target) not in FORMATS_ALLOWED
        and target != "builder"
    )


@pytest.mark.parametrize("lower", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_upper_ones(lower: str) -> None:
    assert not violations(
        lambda module, target: layer(module) == lower and layer(target) in FORBIDDEN[lower]
    )


def test_only_the_command_line_imports_the_command_line() -> None:
    assert not violations(
        lambda module, target: layer(target) == "cli" and layer(module) not in CLI_IMPORTERS
    )


def test_no_module_imports_the_package_root() -> None:
    """``builder/__init__`` is the public face; the version comes from ``builder._version``, so
    nothing inside runs back up to the top (training used to, for ``__version__``)."""
    assert not violations(lambda module, target: target == "builder" and module != "builder")

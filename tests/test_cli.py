"""The command line: help everywhere, one-line errors with a non-zero exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "builder", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=900,  # against a hang only
    )


@pytest.mark.parametrize("command", [[], ["run"], ["info"], ["export-index"]])
def test_help_everywhere(command: list[str]) -> None:
    result = run_cli(*command, "--help")
    assert result.returncode == 0
    assert "usage: builder" in result.stdout


def test_help_lists_the_commands() -> None:
    out = run_cli("--help").stdout
    for command in ("run", "info", "prune", "export-index"):
        assert command in out


def test_the_cli_module_runs_as_a_script_too() -> None:
    """`python -m builder.cli --help` raised NameError (its __main__ block ran before the
    training handlers were defined)."""
    result = subprocess.run(
        [sys.executable, "-m", "builder.cli", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "usage: builder" in result.stdout


def test_missing_catalogue_is_a_one_line_error(tmp_path: Path) -> None:
    result = run_cli(
        "run", "--catalog", str(tmp_path / "missing.yaml"), "--output", str(tmp_path / "o.zarr")
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "missing.yaml: cannot read catalogue" in lines[0]


def test_info_on_a_path_without_a_store(tmp_path: Path) -> None:
    result = run_cli("info", str(tmp_path / "nothing.zarr"))
    assert result.returncode == 1
    assert "nothing.zarr: no store here" in result.stderr


def test_invalid_catalogue_names_file_entry_and_field(tmp_path: Path) -> None:
    path = tmp_path / "cat.yaml"
    path.write_text(
        "sources:\n  lab:\n    driver: c3d\n    args: {urlpath: '/x/{subject}.c3d'}\n"
        "    metadata: {dataset: lab, citation: x}\n"
    )
    result = run_cli("run", "--catalog", str(path), "--output", str(tmp_path / "o.zarr"))
    assert result.returncode == 1
    assert "cat.yaml: source 'lab': metadata.licence: Field required" in result.stderr


def test_workers_must_be_positive(tmp_path: Path) -> None:
    result = run_cli("run", "--workers", "0", "--output", str(tmp_path / "o.zarr"))
    assert result.returncode != 0 and "--workers" in result.stderr


def test_version_is_the_installed_packages() -> None:
    from importlib.metadata import version

    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"builder {version('gait-builder')}"


def test_the_repository_can_be_handed_on() -> None:
    """Licence file = pyproject's licence, a citation file of the same version, typed package."""
    import tomllib

    import yaml

    from helpers import REPO

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    licence = (REPO / "LICENSE").read_text()
    assert project["license"]["text"] == "Apache-2.0"
    assert licence.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in licence
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["license"] == project["license"]["text"]
    assert citation["version"] == project["version"] and citation["authors"]
    assert (REPO / "builder" / "py.typed").is_file()  # hatch ships every file of the package

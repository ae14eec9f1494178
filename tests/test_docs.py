"""The documentation stays inside the repository and in step with the code: every relative
link resolves to a file of the repository, and the data contract's tables name exactly the
arrays, dims, dtypes, columns and vocabularies the builder writes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from builder.conventions import ACTIVITIES, MUSCLE_ABBREVIATIONS, MUSCLES, POPULATIONS
from builder.processing.trial import _SOURCE_ORDER
from builder.store.layout import ARRAYS, DATA_VARIABLES, STRING, TABLE_COLUMNS

from helpers import REPO

DOCS = REPO / "docs"
CONTRACT = DOCS / "data-contract.md"
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]+`")
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
ABSOLUTE = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:, s3:, ...


def _text(page: Path) -> str:
    """The page without its fenced code blocks and code spans (code is not a link)."""
    return CODE_SPAN.sub("", FENCE.sub("", page.read_text(encoding="utf-8")))


def _links(page: Path) -> list[str]:
    text = _text(page)
    return INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)


def test_the_link_finder_finds_inline_reference_and_image_links(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        '[a](docs/a.md) ![img](fig.png "title") [b](<../outside.md>) [c](#anchor)\n'
        "[ref]: ../shared/SPEC.md\n```\n[not a link](inside/code.md)\n```\n"
        '`cat["demo"](demo_root="x")` is code too\n'
    )
    assert sorted(_links(page)) == sorted(
        ["docs/a.md", "fig.png", "../outside.md", "#anchor", "../shared/SPEC.md"]
    )


def _broken_links(page: Path, root: Path) -> list[str]:
    """Relative links of ``page`` that leave ``root`` or name no file."""
    problems = []
    for link in _links(page):
        if ABSOLUTE.match(link) or link.startswith("#"):
            continue  # a web address, or a heading of the same page
        target = (page.parent / link.split("#", 1)[0]).resolve()
        if not target.is_relative_to(root):
            problems.append(f"{link}: outside the repository")
        elif not target.exists():
            problems.append(f"{link}: no such file")
    return problems


def test_links_out_of_the_root_or_to_missing_files_are_found(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "README.md").write_text("")
    page = root / "docs" / "page.md"
    page.write_text(
        "[up](../README.md#top) [web](https://example.org/x.md) [here](#a)\n"
        "[spec](../../shared/SPEC.md) [gone](missing.md)\n"
    )
    assert _broken_links(page, root.resolve()) == [
        "../../shared/SPEC.md: outside the repository",
        "missing.md: no such file",
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves_to_a_file_inside_the_repository(page: Path) -> None:
    assert page.is_file()
    assert _broken_links(page, REPO) == []


def test_the_docs_name_nothing_outside_the_repository() -> None:
    for page in PAGES[1:]:
        assert "../shared" not in page.read_text(encoding="utf-8"), page.name
    assert {p.name for p in PAGES[1:]} >= {"README.md", "data-contract.md", "datasets.md"}


# --- the contract's tables ------------------------------------------------------------------


def _table(text: str, first_header: str) -> list[dict[str, str]]:
    """The markdown table whose first header cell is ``first_header``, as rows of cells."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        cells = _cells(line)
        if cells and cells[0] == first_header and i + 1 < len(lines):
            assert set(lines[i + 1].replace("|", "").strip()) <= set("-: "), lines[i + 1]
            rows = []
            for row in lines[i + 2 :]:
                if not row.strip().startswith("|"):
                    break
                values = _cells(row)
                assert len(values) == len(cells), row
                rows.append(dict(zip(cells, values, strict=True)))
            return rows
    raise AssertionError(f"no table with first header {first_header!r}")


def _cells(line: str) -> list[str]:
    line = line.strip()
    if not line.startswith("|"):
        return []
    return [cell.strip() for cell in line.strip("|").split("|")]


def _name(cell: str) -> str:
    """The first `code` of a cell: the array, coordinate or column it documents."""
    found = re.match(r"`([^`]+)`", cell)
    assert found, f"{cell!r} does not start with a `name`"
    return found.group(1)


def _dims(cell: str) -> tuple[str, ...]:
    return tuple(d.strip() for d in cell.strip("()").split(",") if d.strip())


def _dtype(dtype: object) -> str:
    return "string" if dtype == STRING else np.dtype(dtype).name


@pytest.fixture(scope="module")
def contract() -> str:
    return CONTRACT.read_text(encoding="utf-8")


def test_the_array_tables_name_exactly_the_stores_arrays_with_their_dims_and_dtypes(
    contract: str,
) -> None:
    specs = {spec.name: spec for spec in ARRAYS}
    variables = {_name(row["array"]): row for row in _table(contract, "array")}
    coordinates = {_name(row["coordinate"]): row for row in _table(contract, "coordinate")}
    columns = {_name(row["column"]): row for row in _table(contract, "column")}
    assert list(variables) == list(DATA_VARIABLES)
    assert list(columns) == list(TABLE_COLUMNS)  # in the order users see them
    assert set(coordinates) == set(specs) - set(DATA_VARIABLES) - set(TABLE_COLUMNS)
    assert len(variables) + len(coordinates) + len(columns) == len(specs)
    for name, row in {**variables, **coordinates}.items():
        assert _dims(row["dims"]) == specs[name].dims, name
        assert row["dtype"] == _dtype(specs[name].dtype), name
    for name, row in columns.items():
        assert specs[name].dims == ("stride",)
        assert row["dtype"] == _dtype(TABLE_COLUMNS[name]), name


def test_the_contracts_units_agree_with_the_arrays_attributes(contract: str) -> None:
    variables = {_name(row["array"]): row for row in _table(contract, "array")}
    units = {spec.name: spec.attrs.get("units", "") for spec in ARRAYS}
    assert variables["kinematics"]["units"] == units["kinematics"] == "deg"
    assert units["kinetics"] == "N.m/kg" and variables["kinetics"]["units"] == "N·m/kg"
    assert variables["emg_scale"]["units"].startswith(units["emg_scale"])
    for name in ("emg", "emg_envelope"):
        assert units[name].startswith("1") and variables[name]["units"].startswith("1"), name
    assert "1000" in variables["emg"]["meaning"]
    assert str(ARRAYS[0].attrs["sampling_rate_hz"]).startswith("1000")


def test_the_contracts_vocabularies_are_the_builders(contract: str) -> None:
    muscles = _table(contract, "#")
    assert [_name(row["muscle"]) for row in muscles] == list(MUSCLES)
    assert [row["abbreviation"] for row in muscles] == [MUSCLE_ABBREVIATIONS[m] for m in MUSCLES]
    coordinates = {_name(row["coordinate"]): row for row in _table(contract, "coordinate")}
    assert re.findall(r"`(\w+)`", coordinates["joint"]["values"]) == ["hip", "knee", "ankle"]
    assert re.findall(r"`(\w+)`", coordinates["plane"]["values"]) == [
        "adduction",
        "rotation",
        "flexion",
    ]
    activities = re.search(r"\*\*Activities\*\*:(.*?)\. Source", contract, re.DOTALL)
    assert activities and re.findall(r"`(\w+)`", activities.group(1)) == list(ACTIVITIES)
    columns = {_name(row["column"]): row for row in _table(contract, "column")}
    assert re.findall(r"`(\w+)`", columns["population"]["meaning"]) == list(POPULATIONS)


def test_every_event_source_the_builder_writes_is_documented(contract: str) -> None:
    documented = {_name(row["value"]) for row in _table(contract, "value")}
    written = set(_SOURCE_ORDER)  # the detectors of continuous trials
    for adapter in (REPO / "builder" / "datasets").rglob("*.py"):
        written |= set(re.findall(r"event_source=\"(\w+)\"", adapter.read_text()))
    assert written and written == documented
    assert "+".join(_SOURCE_ORDER) in contract.replace("`, `", "+")  # the joining order


# --- the datasets page ----------------------------------------------------------------------


def test_every_catalogued_dataset_is_described_with_its_licence() -> None:
    text = " ".join((DOCS / "datasets.md").read_text(encoding="utf-8").split())
    headings = set(re.findall(r"^## (\S+) \(`(\w+)`\)$", (DOCS / "datasets.md").read_text(), re.M))
    entries = [
        (path.parent.name, source["metadata"])
        for path in sorted((REPO / "builder" / "datasets").glob("*/catalog.yaml"))
        for source in yaml.safe_load(path.read_text())["sources"].values()
    ]
    assert len({m["dataset"] for _, m in entries}) >= 14
    for driver, metadata in entries:
        assert (metadata["dataset"], driver) in headings, metadata["dataset"]
        licence = " ".join(metadata["licence"].split())
        assert f"**Licence**: {licence}" in text, metadata["dataset"]
        if metadata.get("homepage"):
            assert metadata["homepage"] in text, metadata["dataset"]

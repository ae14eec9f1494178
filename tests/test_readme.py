"""Every ```python block of README.md runs, as written, against the demo store.

Blocks are collected when the tests are collected (one test per block, named after its
heading), so a block added to the README is tested without touching this file. Each block runs
in a fresh namespace (after ``import xarray as xr`` and ``import numpy as np``, the README's
conventions) in a temporary working directory where ``gait.zarr`` is the demo store.

What a block may need, and how it gets it:

- ``s3://`` anywhere in the block: an S3 server on localhost (moto) holding a copy of the demo
  store at ``s3://gait/store.zarr``; :data:`SUBSTITUTIONS` turns the README's example endpoint
  into the server's before the block runs;
- anything else: declare it in :data:`CANNOT_RUN` with the reason (the test is then reported
  as skipped with that reason, never silently), or make the block runnable here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import pytest

from helpers import REPO, moto_server

README = REPO / "README.md"

# Text replaced in every block before it runs: what the README shows -> what the test has.
# "{endpoint}" is the local S3 server's URL.
SUBSTITUTIONS = {
    "https://minio.lab:9000": "{endpoint}",
}
# Blocks that cannot run here: block id -> why (reported as a skip with that reason).
CANNOT_RUN: dict[str, str] = {}

S3_STORE = "gait/store.zarr"  # the bucket path the README's S3 examples use
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIAREADME000000", "AWS_SECRET_ACCESS_KEY": "readme-secret"}
PRELUDE = "import numpy as np\nimport xarray as xr\n"


@dataclass(frozen=True)
class Block:
    id: str  # <heading slug>-<n>: the n-th python block under that heading
    line: int  # of the opening fence, 1-based
    code: str

    @property
    def needs_s3(self) -> bool:
        return "s3://" in self.code


def python_blocks(text: str) -> list[Block]:
    """The ```python blocks of a Markdown text, each named after the heading above it."""
    blocks: list[Block] = []
    heading, counts = "top", dict[str, int]()
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if match := re.match(r"#{1,6}\s+(.*)", line):
            heading = re.sub(r"[^a-z0-9]+", "-", match.group(1).lower()).strip("-")
        elif line.strip() == "```python":
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            counts[heading] = counts.get(heading, 0) + 1
            code = "\n".join(lines[i + 1 : end]) + "\n"
            blocks.append(Block(f"{heading}-{counts[heading]}", i + 1, code))
            i = end
        i += 1
    return blocks


BLOCKS = python_blocks(README.read_text())


def test_the_readme_has_python_blocks_and_every_exception_names_one() -> None:
    assert BLOCKS and len({b.id for b in BLOCKS}) == len(BLOCKS)
    assert set(CANNOT_RUN) <= {b.id for b in BLOCKS}
    found = python_blocks("# A b\n```python\nx = 1\n```\n## C\n```python\ny = 2\n```\n")
    assert [(b.id, b.line, b.code) for b in found] == [
        ("a-b-1", 2, "x = 1\n"),
        ("c-1", 6, "y = 2\n"),
    ]


@pytest.fixture(scope="module")
def s3_demo(demo_store: tuple[Path, Any]) -> Iterator[str]:
    """A moto S3 server on localhost holding the demo store (moving name and versions) at
    ``s3://gait/store.zarr``; yields the endpoint URL."""
    pytest.importorskip("moto", reason="moto not installed (extra: test)")
    with moto_server(CREDENTIALS, (S3_STORE.split("/")[0],)) as endpoint:
        fs = fsspec.filesystem("s3", endpoint_url=endpoint)
        path = demo_store[0]
        for local, remote in ((path, S3_STORE), (Path(f"{path}.versions"), f"{S3_STORE}.versions")):
            for file in (f for f in local.rglob("*") if f.is_file()):
                fs.put_file(str(file), f"{remote}/{file.relative_to(local).as_posix()}")
        yield endpoint


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_readme_block_runs(
    block: Block,
    demo_store: tuple[Path, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    if block.id in CANNOT_RUN:
        pytest.skip(f"README line {block.line}: {CANNOT_RUN[block.id]}")
    path = demo_store[0]
    for name in ("gait.zarr", "gait.zarr.versions"):  # the name and the version it pins
        (tmp_path / name).symlink_to(path.parent / name, target_is_directory=True)
    code = block.code
    if block.needs_s3:
        endpoint = request.getfixturevalue("s3_demo")
        for shown, used in SUBSTITUTIONS.items():
            code = code.replace(shown, used.format(endpoint=endpoint))
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(PRELUDE, namespace)
    exec(compile(code, f"README.md:{block.line} ({block.id})", "exec"), namespace)

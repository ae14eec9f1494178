"""OpenSim storage files (``.mot``, ``.sto``): a header up to ``endheader``, then a
whitespace- (or tab-) separated table with one header row of column names."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from builder.errors import SourceError


@dataclass(frozen=True)
class Storage:
    header: dict[str, str]  # "key=value" header lines; the first line is the name
    table: pd.DataFrame  # columns as named in the file; "time" among them

    @property
    def in_degrees(self) -> bool | None:
        """The ``inDegrees`` header flag; None when the file does not say."""
        flag = self.header.get("inDegrees", "").strip().lower()
        return {"yes": True, "no": False}.get(flag)


def read_storage(path: str, url: str | None = None) -> Storage:
    """Parse an OpenSim storage file; errors name the file."""
    where = url or path
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise SourceError(where, f"cannot read ({exc.strerror or exc})") from None
    try:
        end = next(i for i, line in enumerate(lines) if line.strip().lower() == "endheader")
    except StopIteration:
        raise SourceError(where, "not an OpenSim storage file: no 'endheader' line") from None
    header = {"name": lines[0].strip()} if lines else {}
    for line in lines[1:end]:
        key, sep, value = line.partition("=")
        if sep:
            header[key.strip()] = value.strip()
    body = [line for line in lines[end + 1 :] if line.strip()]
    if len(body) < 2:
        raise SourceError(where, "OpenSim storage file has no data rows")
    names = body[0].split()
    rows = [line.split() for line in body[1:]]
    if any(len(row) != len(names) for row in rows):
        bad = next(i for i, row in enumerate(rows) if len(row) != len(names))
        raise SourceError(
            where, f"row {bad + 1} has {len(rows[bad])} values for {len(names)} columns"
        )
    try:
        table = pd.DataFrame(rows, columns=names).astype(float)
    except ValueError as exc:
        raise SourceError(where, f"non-numeric value in the table ({exc})") from None
    return Storage(header, table)


def write_storage(path: str, table: pd.DataFrame, *, name: str, in_degrees: bool = True) -> None:
    """Write a table as OpenSim writes it (used by the miniature-dataset generators)."""
    rows, cols = table.shape
    header = [
        name,
        "version=1",
        f"nRows={rows}",
        f"nColumns={cols}",
        f"inDegrees={'yes' if in_degrees else 'no'}",
        "endheader",
    ]
    body = table.to_csv(sep="\t", index=False, float_format="%.8f", lineterminator="\n")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(header) + "\n" + body)

"""What the builder owns: a marker object in every folder or prefix it creates.

The builder deletes or overwrites only inside folders (or object-store prefixes) that carry
its marker. A non-empty folder without one belongs to someone else and is refused, whatever
it holds; an empty or missing one is claimed by writing the marker first.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import fsspec

from builder.errors import BuilderError
from builder.store._files import is_local
from builder.store.location import StoreLocation

MARKER = ".gait-builder"  # a small JSON file: what the builder made here, and when


class NotOwnedError(BuilderError):
    """A folder or prefix holds data the builder did not create."""


def marker_content(kind: str) -> bytes:
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return json.dumps({"created_by": "gait builder", "kind": kind, "created": created}).encode()


def claim(fs: fsspec.AbstractFileSystem, path: str, kind: str, what: str) -> None:
    """Make ``path`` (no protocol) a folder the builder owns, or refuse in one line.

    ``what`` names the folder for the message (e.g. the URL the user typed); ``kind`` is
    recorded in the marker ("store", "versions", "staging", "release", ...).
    """
    path = path.rstrip("/")
    marker = f"{path}/{MARKER}"
    if is_local(fs) and os.path.islink(path):
        raise NotOwnedError(
            f"{what}: is a symbolic link (to {os.readlink(path)}); the builder does not follow "
            "or re-point links it did not create; give the real folder or another name"
        )
    if fs.exists(marker):
        return
    if fs.exists(path):
        if not fs.isdir(path):
            raise NotOwnedError(f"{what}: exists and is a file; choose another name")
        if _has_content(fs, path):
            raise NotOwnedError(
                f"{what}: holds data the builder did not create (no {MARKER} marker); "
                "nothing was changed; choose an empty or new location, or move the data away"
            )
    fs.makedirs(path, exist_ok=True)
    fs.pipe_file(marker, marker_content(kind))


def owned(fs: fsspec.AbstractFileSystem, path: str) -> bool:
    return bool(fs.exists(f"{path.rstrip('/')}/{MARKER}"))


def claim_local(folder: Path, kind: str) -> None:
    """:func:`claim` for a local folder."""
    location = StoreLocation(str(folder.absolute()))
    claim(location.fs, location.path, kind, str(folder))


def _has_content(fs: fsspec.AbstractFileSystem, path: str) -> bool:
    try:
        return bool(fs.ls(path, detail=False))
    except FileNotFoundError:
        return False

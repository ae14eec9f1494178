"""File helpers the store modules share: local or not, and writes readers never see torn."""

from __future__ import annotations

import contextlib
import os
import uuid

import fsspec


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def atomic_write(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Readers see the old file or the whole new one, never a torn write; a failed write
    leaves no temporary file behind."""
    if not is_local(fs):
        fs.pipe_file(path, data)  # a single object PUT is atomic on object stores
        return
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)  # a full or failing disk must not leave it behind
        raise

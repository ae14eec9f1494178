"""Confined file access for adapters: any fsspec URL, only inside the source's declared root."""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
from typing import Self

import fsspec

from builder.errors import SourceError


class FileAccess:
    """Opens trial files for adapters, whatever the URL's protocol, inside the source's root.

    ``root`` is the folder the catalogue entry declares (``args.root``, else the fixed part of
    its ``urlpath``): a file outside it (``../`` in a sibling path, a symbolic link out of the
    tree) is refused with a SourceError. Libraries that need a real local file (ezc3d, h5py)
    get a remote one through fsspec's ``simplecache`` in a folder private to the trial, which
    ``close()`` removes: a worker's disk holds only the trial at hand, and a file that changed
    since an earlier build is never served from a stale copy.
    """

    def __init__(self, storage_options: dict | None = None, root: str | None = None) -> None:
        self.storage_options = dict(storage_options or {})
        self.root = root
        self._scratch: str | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def check(self, url: str) -> str:
        """``url`` itself when it lies inside the root; a SourceError otherwise."""
        if self.root is not None and not within_root(url, self.root):
            raise SourceError(url, f"outside the source's declared root {self.root}")
        return url

    def filesystem(self, url: str) -> tuple[fsspec.AbstractFileSystem, str]:
        """The fsspec filesystem and path of ``url`` (for listing siblings)."""
        return fsspec.core.url_to_fs(self.check(url), **self.storage_options)

    def local_path(self, url: str) -> str:
        protocol, path = fsspec.core.split_protocol(self.check(url))
        if protocol in (None, "file", "local"):
            return path
        if self._scratch is None:
            self._scratch = tempfile.mkdtemp(prefix="builder-read-")
        # fsspec's whole-file cache, private to this trial: removed by close().
        cache = {"cache_storage": self._scratch, "skip_instance_cache": True}
        return fsspec.open_local(
            f"simplecache::{url}", simplecache=cache, **{protocol: self.storage_options}
        )

    def open(self, url: str, mode: str = "rb"):
        return fsspec.open(self.check(url), mode, **self.storage_options).open()


def within_root(url: str, root: str) -> bool:
    """Whether ``url`` lies inside the folder ``root`` (same protocol; local paths compared
    after resolving ``..`` and symbolic links, remote ones after resolving ``..``)."""
    protocol, path = fsspec.core.split_protocol(url)
    root_protocol, root_path = fsspec.core.split_protocol(root)
    local = {None, "file", "local"}
    if protocol in local and root_protocol in local:
        path, root_path = os.path.realpath(path), os.path.realpath(root_path)
    elif protocol == root_protocol:
        path, root_path = posixpath.normpath("/" + path), posixpath.normpath("/" + root_path)
    else:
        return False
    return path == root_path or path.startswith(root_path.rstrip("/") + "/")

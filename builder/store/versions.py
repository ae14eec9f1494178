"""Versioned outputs: each build writes a fresh prefix; the output moves to it when complete.

Every build is written to ``<output>.versions/v<N>/`` (beside the resume state in
``<output>.build/``), so a build in progress, failed or killed is never what readers open.
Publishing makes a complete version what ``xarray.open_zarr(<output>)`` opens:

- **local disk** (:class:`LinkedOutput`): ``<output>`` is a symbolic link, moved with one atomic
  ``rename``;
- **object stores** (:class:`CopiedOutput`, e.g. ``s3://``): no links and no atomic multi-object
  operations, so the version's objects are copied (server side) under ``<output>/`` and the root
  ``zarr.json`` — the consolidated metadata every reader starts from — is written last, in one
  PUT. Consecutive versions use different chunk-key separators (``/`` for odd versions, ``.``
  for even ones), so the new version's chunks never overwrite the live one's: a reader that
  opened the previous version keeps reading it, whole, until the next publish removes it.

Before the first build completes, ``<output>`` holds a placeholder whose metadata makes zarr
fail with a message that says a build is under way.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from abc import ABC, abstractmethod
from typing import Any

import fsspec

from builder.errors import StoreError

_VERSION = re.compile(r"v(\d{4,})\Z")
_PLACEHOLDER = "_no_complete_build"
_PLACEHOLDER_MESSAGE = (
    "none: no complete build of this store exists yet; a build is under way or was "
    "interrupted (re-run `builder run` to finish it; progress in {output}.build)"
)


def chunk_key_separator(version: str) -> str:
    """Chunk-key separator of a version: ``/`` for odd numbers, ``.`` for even ones."""
    return "/" if int(_VERSION.match(version).group(1)) % 2 else "."  # type: ignore[union-attr]


def versioned_output(url: str, storage_options: dict[str, Any] | None = None) -> VersionedOutput:
    """The publishing strategy for ``url``: a link on local disk, a copy on object stores."""
    fs, _ = fsspec.core.url_to_fs(url, **(storage_options or {}))
    local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
    return (LinkedOutput if local else CopiedOutput)(url, storage_options)


class VersionedOutput(ABC):
    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.fs, path = fsspec.core.url_to_fs(self.url, **self.storage_options)
        self.path = path.rstrip("/")
        self.versions_path = self.path + ".versions"

    def version_path(self, version: str) -> str:
        """Filesystem path of a version (no protocol)."""
        return f"{self.versions_path}/{version}"

    def version_url(self, version: str) -> str:
        """URL of a version, for zarr and xarray (with this output's storage options)."""
        return self.fs.unstrip_protocol(self.version_path(version))

    def exists(self, version: str) -> bool:
        return bool(self.fs.exists(self.version_path(version)))

    def versions(self) -> list[str]:
        try:
            names = self.fs.ls(self.versions_path, detail=False)
        except FileNotFoundError:
            return []
        return sorted(
            n for n in (os.path.basename(p.rstrip("/")) for p in names) if _VERSION.match(n)
        )

    def new_version(self) -> str:
        numbers = [int(_VERSION.match(v).group(1)) for v in self.versions()]  # type: ignore[union-attr]
        version = f"v{max(numbers, default=0) + 1:04d}"
        self.fs.makedirs(self.version_path(version), exist_ok=True)
        if self.published() is None:
            self._show_placeholder()
        return version

    def discard(self, version: str) -> None:
        if self.fs.exists(self.version_path(version)):
            self.fs.rm(self.version_path(version), recursive=True)

    def prune(self, keep: int) -> list[str]:
        """Keep the published version and the newest ``keep - 1`` others; delete the rest.

        Called after publishing, when no other build is in progress in this output.
        """
        published = self.published()
        candidates = [v for v in self.versions() if v != published]
        doomed = candidates[: max(0, len(candidates) - max(keep - 1, 0))]
        for version in doomed:
            self.discard(version)
        return doomed

    @abstractmethod
    def published(self) -> str | None:
        """The version the output opens, or None before the first complete build."""

    @abstractmethod
    def publish(self, version: str) -> None:
        """Make a complete ``version`` what the output opens."""

    @abstractmethod
    def _show_placeholder(self) -> None:
        """Make the output say that a build is under way (only when nothing is published)."""

    def _placeholder_metadata(self) -> bytes:
        message = _PLACEHOLDER_MESSAGE.format(output=self.url)
        return json.dumps({"zarr_format": message, "node_type": "group"}).encode()


class LinkedOutput(VersionedOutput):
    """Local disk: ``<output>`` is a symbolic link into ``<output>.versions/``."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        super().__init__(url, storage_options)
        self.path = os.path.abspath(self.path)
        self.versions_path = self.path + ".versions"

    def version_url(self, version: str) -> str:
        return self.version_path(version)  # a plain path: zarr's local store, no fsspec layer

    def published(self) -> str | None:
        if not os.path.lexists(self.path):
            return None
        if not os.path.islink(self.path):
            raise StoreError(
                f"{self.path}: exists but was not written by builder (expected a link to a "
                "build version); choose another --output or move it away"
            )
        target = os.path.basename(os.readlink(self.path).rstrip("/"))
        return target if _VERSION.match(target) else None

    def publish(self, version: str) -> None:
        self._point_at(version)
        shutil.rmtree(os.path.join(self.versions_path, _PLACEHOLDER), ignore_errors=True)

    def _show_placeholder(self) -> None:
        placeholder = os.path.join(self.versions_path, _PLACEHOLDER)
        os.makedirs(placeholder, exist_ok=True)
        with open(os.path.join(placeholder, "zarr.json"), "wb") as f:
            f.write(self._placeholder_metadata())
        self._point_at(_PLACEHOLDER)

    def _point_at(self, target_name: str) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        relative = os.path.join(os.path.basename(self.versions_path), target_name)
        tmp = f"{self.path}.{uuid.uuid4().hex}.link"
        os.symlink(relative, tmp)
        os.replace(tmp, self.path)


class CopiedOutput(VersionedOutput):
    """Object stores: versions are copied under ``<output>/``, the root metadata last."""

    def published(self) -> str | None:
        root = f"{self.path}/zarr.json"
        try:
            metadata = json.loads(self.fs.cat_file(root))
        except FileNotFoundError:
            return None
        except ValueError:
            raise StoreError(
                f"{self.url}: its zarr.json is not JSON (not written by builder?)"
            ) from None
        if metadata.get("zarr_format") != 3:
            return None  # the placeholder: nothing complete yet
        version = metadata.get("attributes", {}).get("build_version")
        if not isinstance(version, str) or not _VERSION.match(version):
            raise StoreError(
                f"{self.url}: holds a Zarr store that builder did not write; choose another "
                "--output or move it away"
            )
        return version

    def publish(self, version: str) -> None:
        source = self.version_path(version)
        files = sorted(_relative(self.fs.find(source), source))
        separator = chunk_key_separator(version)
        # The version before last used this separator: its chunks go (nobody should still
        # read them), the previous version's stay readable for readers that opened it.
        stale = [
            f"{self.path}/{key}"
            for key in _relative(self.fs.find(self.path), self.path)
            if _chunk_separator(key) == separator
        ]
        if stale:
            self.fs.rm(stale)
        body = [key for key in files if key != "zarr.json"]
        if body:
            self.fs.copy([f"{source}/{k}" for k in body], [f"{self.path}/{k}" for k in body])
        self.fs.copy(f"{source}/zarr.json", f"{self.path}/zarr.json")  # the switch, last

    def _show_placeholder(self) -> None:
        if not self.fs.exists(f"{self.path}/zarr.json"):
            self.fs.pipe_file(f"{self.path}/zarr.json", self._placeholder_metadata())


def _relative(paths: list[str], root: str) -> list[str]:
    prefix = root.rstrip("/") + "/"
    return [p[len(prefix) :] for p in paths if p.startswith(prefix)]


def _chunk_separator(key: str) -> str | None:
    """``/`` or ``.`` for a chunk object key such as ``emg/c/0/0`` or ``emg/c.0.0``."""
    _, _, tail = key.partition("/")
    if tail == "c" or tail.startswith("c/"):
        return "/"
    if tail.startswith("c."):
        return "."
    return None

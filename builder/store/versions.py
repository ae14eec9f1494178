"""Versioned outputs: each build writes a fresh prefix; a small pointer moves when it is complete.

On a local filesystem the output path is a symbolic link into ``<output>.versions/``::

    gait.zarr -> gait.zarr.versions/v0002     (the latest complete build: what readers open)
    gait.zarr.versions/v0003/                 (a build in progress, invisible to readers)
    gait.zarr.build/                          (resume state, see staging.py)

Moving the link is a single atomic ``rename``, so ``xarray.open_zarr("gait.zarr")`` always
opens a complete build. Before the first build completes, the link points at a placeholder
whose metadata makes zarr fail with a message that says a build is under way.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from typing import Any

import fsspec

from builder.errors import StoreError

_VERSION = re.compile(r"v(\d{4,})\Z")
_PLACEHOLDER = "_no_complete_build"


class VersionedOutput:
    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url.rstrip("/")
        self.fs, self.path = fsspec.core.url_to_fs(self.url, **(storage_options or {}))
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        if protocol not in ("file", "local"):
            raise StoreError(
                f"{url}: writing stores to {protocol}:// is not supported yet "
                "(local paths only in this version)"
            )
        self.path = os.path.abspath(self.path)
        self.versions_dir = self.path + ".versions"

    def version_path(self, version: str) -> str:
        return os.path.join(self.versions_dir, version)

    def published(self) -> str | None:
        """The version the output path points at, or None before the first complete build."""
        if not os.path.lexists(self.path):
            return None
        if not os.path.islink(self.path):
            raise StoreError(
                f"{self.path}: exists but was not written by builder (expected a link to a "
                "build version); choose another --output or move it away"
            )
        target = os.path.basename(os.readlink(self.path).rstrip("/"))
        return target if _VERSION.match(target) else None

    def versions(self) -> list[str]:
        if not os.path.isdir(self.versions_dir):
            return []
        return sorted(v for v in os.listdir(self.versions_dir) if _VERSION.match(v))

    def new_version(self) -> str:
        existing = [int(_VERSION.match(v).group(1)) for v in self.versions()]  # type: ignore[union-attr]
        version = f"v{max(existing, default=0) + 1:04d}"
        os.makedirs(self.version_path(version), exist_ok=True)
        if self.published() is None:
            self._point_at_placeholder()
        return version

    def discard(self, version: str) -> None:
        shutil.rmtree(self.version_path(version), ignore_errors=True)

    def publish(self, version: str) -> None:
        """Atomically make ``version`` what the output path opens."""
        self._point_at(version)
        shutil.rmtree(os.path.join(self.versions_dir, _PLACEHOLDER), ignore_errors=True)

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

    def _point_at(self, target_name: str) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        relative = os.path.join(os.path.basename(self.versions_dir), target_name)
        tmp = f"{self.path}.{uuid.uuid4().hex}.link"
        os.symlink(relative, tmp)
        os.replace(tmp, self.path)

    def _point_at_placeholder(self) -> None:
        placeholder = os.path.join(self.versions_dir, _PLACEHOLDER)
        os.makedirs(placeholder, exist_ok=True)
        message = (
            "none: no complete build of this store exists yet; a build is under way or was "
            f"interrupted (re-run `builder run` to finish it; progress in {self.path}.build)"
        )
        with open(os.path.join(placeholder, "zarr.json"), "w") as f:
            json.dump({"zarr_format": message, "node_type": "group"}, f)
        self._point_at(_PLACEHOLDER)

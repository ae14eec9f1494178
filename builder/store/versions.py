"""Versioned outputs: immutable versions at stable URLs, and a moving name for the latest.

Every build is written to ``<output>.versions/vNNNN/`` (beside the resume state in
``<output>.build/``). A version is never changed once published, and is removed only by an
explicit ``builder prune --keep N``; its URL is stable, so a reader of a version URL reads
exactly that version for as long as it exists. The builder's own readers always pin one.

``<output>`` itself is the moving name: a plain Zarr store (a real folder, or an object-store
prefix) that ``xarray.open_zarr(<output>)`` opens as the latest version. Publishing adds the
new version's chunk objects under ``<output>/`` (hard links on local disk, server-side copies
on object stores) and writes the root ``zarr.json`` (the consolidated metadata every reader
starts from) last, in one atomic step. Readers keep chunk keys, not names, so versions must not
share keys: each version writes its chunks with one of the chunk-key encodings Zarr offers,
in turn. A reader that opened ``<output>`` has its version's metadata in memory and its chunk
keys stay untouched by the next publishes, as long as the encodings do not repeat:

- arrays of 2 or more dimensions (the signals, masks, scales): 4 distinct encodings
  (``c/0/0``, ``c.0.0``, ``0.0``, ``0/0``), so their chunks stay for the next **3** publishes;
- 1-D arrays (stride table, stride offsets): Zarr gives only 3 distinct keys for one index
  (``c/0``, ``c.0``, ``0``), so they stay for the next **2** publishes. The third reuses
  them with another chunk size in the same shard, so that a reader holding them fails to
  decode (the shard index checksum) instead of reading another version's values (see
  :func:`one_dim_chunk_halved`).

Keys of publishes older than that are deleted only after the switch; the keys the builder
put there are recorded in the marker file, so nothing else under ``<output>/`` is touched.
Before the first build completes, ``<output>/zarr.json`` is a placeholder that makes zarr
fail with a message that says a build is under way.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from typing import Any

import fsspec

from builder.errors import StoreError
from builder.store._files import atomic_write
from builder.store.location import StoreLocation
from builder.store.ownership import MARKER, claim, marker_content

_VERSION = re.compile(r"v(\d{4,})\Z")
_PLACEHOLDER_MESSAGE = (
    "none: no complete build of this store exists yet; a build is under way or was "
    "interrupted (re-run `builder run` to finish it; progress in {output}.build)"
)
_FAILED_MESSAGE = (  # the placeholder after a failed build, until one is published
    "none: no complete build of this store exists yet; the last build failed: {reason} "
    "(re-run `builder run` once that is fixed; see `builder info {output}`)"
)
# Chunk-key encodings, used in turn by consecutive versions (see the module docstring).
_ENCODINGS_ND = (("default", "/"), ("default", "."), ("v2", "."), ("v2", "/"))
_ENCODINGS_1D = (("default", "/"), ("default", "."), ("v2", "."))
SAFE_PUBLISHES_ND = len(_ENCODINGS_ND) - 1  # publishes a moving-name reader survives
SAFE_PUBLISHES_1D = len(_ENCODINGS_1D) - 1


def version_number(version: str) -> int:
    match = _VERSION.match(version)
    if match is None:
        raise ValueError(f"{version!r} is not a build version (vNNNN)")
    return int(match.group(1))


def chunk_key_encoding(version: str, ndim: int) -> dict[str, Any]:
    """The chunk-key encoding of an array of ``ndim`` dimensions in ``version`` (zarr's
    ``chunk_key_encoding`` parameter: a name and a separator)."""
    cycle = _ENCODINGS_ND if ndim >= 2 else _ENCODINGS_1D
    name, separator = cycle[version_number(version) % len(cycle)]
    return {"name": name, "separator": separator}


def one_dim_chunk_halved(version: str) -> bool:
    """Whether ``version``'s stride-partitioned arrays (1-D ones included, all alike) use
    half-size chunks: alternate in each round of the 1-D encodings, so two versions sharing
    1-D keys never share their chunk size."""
    return (version_number(version) // len(_ENCODINGS_1D)) % 2 == 1


def versioned_output(url: str, storage_options: dict[str, Any] | None = None) -> VersionedOutput:
    """The versions of the output at ``url`` (its :attr:`StoreLocation.versions`)."""
    return StoreLocation(url, storage_options).versions


class VersionedOutput:
    """The versions of one output and its moving name, on the output's filesystem."""

    def __init__(
        self, output: str | StoreLocation, storage_options: dict[str, Any] | None = None
    ) -> None:
        self.location = StoreLocation.of(output, storage_options)

    @property
    def url(self) -> str:
        return self.location.url

    @property
    def storage_options(self) -> dict[str, Any]:
        return self.location.storage_options

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return self.location.fs

    @property
    def local(self) -> bool:
        return self.location.is_local

    @property
    def path(self) -> str:
        """The moving name's path on :attr:`fs` (no protocol)."""
        return self.location.path

    @property
    def versions_path(self) -> str:
        return self.path + ".versions"

    # --- versions ------------------------------------------------------------------------
    def version_path(self, version: str) -> str:
        """Filesystem path of a version (no protocol)."""
        return f"{self.versions_path}/{version}"

    def version_url(self, version: str) -> str:
        """The stable URL of a version, for zarr and xarray (with this output's options)."""
        if self.local:
            return self.version_path(version)  # a plain path: zarr's local store
        return self.fs.unstrip_protocol(self.version_path(version))

    def exists(self, version: str) -> bool:
        return bool(self.fs.exists(self.version_path(version)))

    def versions(self) -> list[str]:
        try:
            names = self.fs.ls(self.versions_path, detail=False)
        except FileNotFoundError:
            return []
        found = (os.path.basename(p.rstrip("/")) for p in names)
        return sorted((n for n in found if _VERSION.match(n)), key=version_number)

    def claim(self) -> None:
        """Refuse, in one line, an output, or a versions folder, that holds someone else's
        data; otherwise mark them as the builder's."""
        legacy = self._legacy_published()
        if legacy:  # written before markers existed: adopt it and republish its version
            if self.local and os.path.islink(self.path):
                os.remove(self.path)  # the old pointer: a link into <output>.versions/
            for path, kind in ((self.path, "store"), (self.versions_path, "versions")):
                self.fs.makedirs(path, exist_ok=True)
                self.fs.pipe_file(f"{path}/{MARKER}", marker_content(kind))
        claim(self.fs, self.path, "store", self.url)
        claim(self.fs, self.versions_path, "versions", f"{self.url}.versions")
        if legacy and self.published() != legacy:
            self.publish(legacy)

    def _legacy_published(self) -> str | None:
        """The published version of an output written by builder before ownership markers
        (a link into ``<output>.versions/``, or a copied root naming one), else None."""
        if self.fs.exists(f"{self.path}/{MARKER}") or self.fs.exists(
            f"{self.versions_path}/{MARKER}"
        ):
            return None
        if self.local and os.path.islink(self.path):
            target = os.path.realpath(self.path)
            inside = os.path.dirname(target) == os.path.realpath(self.versions_path)
            name = os.path.basename(target)
            return name if inside and _VERSION.match(name) and os.path.isdir(target) else None
        try:
            version = self.published()
        except StoreError:
            return None
        return version if version and self.exists(version) else None

    def new_version(self) -> str:
        numbers = [version_number(v) for v in self.versions()]
        version = f"v{max(numbers, default=0) + 1:04d}"
        self.fs.makedirs(self.version_path(version), exist_ok=True)
        if self.published() is None:
            self._show_placeholder()
        return version

    def discard(self, version: str) -> None:
        """Remove a version that was never published (an interrupted build of other inputs)."""
        if version in self.published_history():
            raise StoreError(f"{self.version_url(version)}: was published; only prune removes it")
        if self.fs.exists(self.version_path(version)):
            self.fs.rm(self.version_path(version), recursive=True)

    def prune(self, keep: int) -> list[str]:
        """Keep the published version and the newest ``keep - 1`` others; delete the rest.

        The only way versions are removed; the caller holds the build lock.
        """
        if keep < 1:
            raise ValueError("keep must be at least 1 (the published version is always kept)")
        published = self.published()
        others = [v for v in self.versions() if v != published]
        doomed = others[: max(0, len(others) - (keep - 1))]
        for version in doomed:
            self.fs.rm(self.version_path(version), recursive=True)
        return doomed

    # --- the moving name -------------------------------------------------------------------
    def published(self) -> str | None:
        """The version ``<output>`` opens, or None before the first complete build."""
        try:
            metadata = json.loads(self.fs.cat_file(f"{self.path}/zarr.json"))
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

    def published_history(self) -> list[str]:
        """Versions published into the moving name, oldest first, whose keys may remain."""
        return [entry["version"] for entry in self._history(self._marker())]

    def publish(self, version: str) -> None:
        """Make a complete ``version`` what ``<output>`` opens (see the module docstring)."""
        marker = self._marker()
        history = [e for e in self._history(marker) if e["version"] != version]
        for ndim, window in ((2, SAFE_PUBLISHES_ND), (1, SAFE_PUBLISHES_1D)):
            for previous in (e["version"] for e in history[-window:]):
                if chunk_key_encoding(previous, ndim) == chunk_key_encoding(version, ndim):
                    raise StoreError(  # never expected: published numbers are consecutive
                        f"{self.url}: {version} would reuse the chunk keys of {previous}, "
                        "which readers may still hold; re-run with --fresh for a new version"
                    )
        source = self.version_path(version)
        files = sorted(_relative(self.fs.find(source), source))
        body = [key for key in files if key not in ("zarr.json", MARKER)]
        self._place([f"{source}/{k}" for k in body], [f"{self.path}/{k}" for k in body])
        self._place([f"{source}/zarr.json"], [f"{self.path}/zarr.json"])  # the switch, last

        history.append({"version": version, "keys": body})
        live = history[-(SAFE_PUBLISHES_ND + 1) :]
        keep = {key for entry in live for key in entry["keys"]}
        stale = {key for entry in history[: -len(live)] for key in entry["keys"]} - keep
        if stale:
            self.fs.rm([f"{self.path}/{key}" for key in sorted(stale)])
        # The marker keeps what claim() wrote and records the keys a reader may still hold.
        marker = marker or json.loads(marker_content("store"))
        atomic_write(
            self.fs, f"{self.path}/{MARKER}", json.dumps({**marker, "published": live}).encode()
        )

    def _place(self, sources: list[str], targets: list[str]) -> None:
        """Put each source at its target in one atomic step, replacing what was there."""
        if not sources:
            return
        if not self.local:
            self.fs.copy(sources, targets)  # server-side copies; each object PUT is atomic
            return
        for source, target in zip(sources, targets, strict=True):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            tmp = f"{os.path.dirname(target)}/.{uuid.uuid4().hex}.tmp"
            try:
                try:
                    os.link(source, tmp)  # no second copy of the data on local disk
                except OSError:
                    shutil.copyfile(source, tmp)
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.remove(tmp)  # a failed publish leaves no temporary file behind
                raise

    def _marker(self) -> dict[str, Any]:
        try:
            marker = json.loads(self.fs.cat_file(f"{self.path}/{MARKER}"))
        except (FileNotFoundError, ValueError):
            return {}
        return marker if isinstance(marker, dict) else {}

    @staticmethod
    def _history(marker: dict[str, Any]) -> list[dict[str, Any]]:
        history = marker.get("published", [])
        return history if isinstance(history, list) else []

    def mark_failed(self, reason: str) -> None:
        """After a failed build, while none is published: ``<output>`` (if the builder's) says
        that the last build failed and why, instead of "under way" (or being empty). Best
        effort: the storage that made the build fail may refuse this write too."""
        with contextlib.suppress(Exception):
            if self.fs.exists(f"{self.path}/{MARKER}") and self.published() is None:
                self._show_placeholder(_FAILED_MESSAGE.format(reason=reason, output=self.url))

    def _show_placeholder(self, message: str | None = None) -> None:
        """Write the placeholder ``zarr.json`` (only while nothing is published)."""
        message = message or _PLACEHOLDER_MESSAGE.format(output=self.url)
        metadata = json.dumps({"zarr_format": message, "node_type": "group"}).encode()
        self.fs.makedirs(self.path, exist_ok=True)
        self.fs.pipe_file(f"{self.path}/zarr.json", metadata)


def _relative(paths: list[str], root: str) -> list[str]:
    prefix = root.rstrip("/") + "/"
    return [p[len(prefix) :] for p in paths if p.startswith(prefix)]

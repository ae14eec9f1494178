"""Releases of engines in a bucket (any fsspec URL): ``<url>/<model>/<version>/``.

A release is its files plus ``manifest.json``, which lists every file's sha256 and size and
is uploaded last: a release without a manifest is incomplete and never pulled. ``pull``
downloads into a scratch folder, verifies every file against the manifest and refuses a
missing, extra or altered file; only a verified release reaches the destination.

A release whose manifest is unreadable (not JSON, fields missing) is skipped by ``list`` and
by ``pull`` of the latest version, with a :class:`ReleaseWarning`; pulling exactly that
version fails naming its manifest. The builder's ownership marker is never part of a release.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec

from builder.errors import TrainingError, one_line
from builder.store.location import StoreLocation
from builder.store.ownership import MARKER, NotOwnedError, marker_content
from builder.training.export import MANIFEST

_VERSION = re.compile(r"^v(\d+)$")


class ReleaseWarning(UserWarning):
    """A release that is skipped (its manifest cannot be read); the others go on."""


@dataclass(frozen=True)
class Release:
    model: str
    version: str
    manifest: dict[str, Any] | None  # None: incomplete (no manifest) or unreadable
    problem: str | None = None  # why the manifest is unreadable, naming it; None if readable


def push(
    folder: Path,
    url: str,
    storage_options: dict[str, Any] | None = None,
    version: str | None = None,
) -> Release:
    """Upload the release folder written by ``export`` as a new version of its model."""
    manifest = _read_manifest(folder / MANIFEST, str(folder))
    model = str(manifest["model"])
    fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    # an unreadable release keeps its number: releases are never overwritten
    existing = [
        r.version
        for r in _scan(url, storage_options)
        if r.model == model and (r.manifest or r.problem)
    ]
    if version is None:
        numbers = [int(m.group(1)) for v in existing if (m := _VERSION.match(v))]
        version = f"v{max(numbers, default=0) + 1}"
    elif version in existing:
        raise TrainingError(
            f"{url}: {model} {version} is already released; releases are never overwritten"
        )
    # the ownership marker says who made the folder; it is not part of the release
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name not in (MANIFEST, MARKER))
    absent = sorted(named_files(manifest) - {p.name for p in files})
    if absent:
        raise TrainingError(
            f"{folder}: {MANIFEST} names {', '.join(absent)}, which the folder lacks; nothing "
            "was pushed (export again)"
        )
    manifest = manifest | {
        "version": version,
        "files": {
            p.name: {"sha256": _sha256(p.read_bytes()), "bytes": p.stat().st_size} for p in files
        },
    }
    target = f"{root.rstrip('/')}/{model}/{version}"
    fs.makedirs(target, exist_ok=True)
    for path in files:
        fs.put_file(str(path), f"{target}/{path.name}")
    with fs.open(f"{target}/{MANIFEST}", "wb") as f:  # last: marks the release complete
        f.write((json.dumps(manifest, indent=2) + "\n").encode())
    return Release(model, version, manifest)


def pull(
    url: str,
    model: str,
    dest: Path,
    version: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Path:
    """Download and verify ``model`` (latest complete version by default) into
    ``dest/<model>-<version>``; raise ``TrainingError`` naming what is wrong, leaving nothing."""
    releases = [r for r in _scan(url, storage_options) if r.model == model]
    if version is None:
        _warn_unreadable(releases)
        complete = [r for r in releases if r.manifest]
        if not complete:
            raise TrainingError(f"{url}: no complete release of {model!r}")
        version = complete[-1].version
    release = next((r for r in releases if r.version == version), None)
    if release is None:
        raise TrainingError(f"{url}: no release {model} {version}")
    if release.problem:
        raise TrainingError(release.problem)
    if release.manifest is None:
        raise TrainingError(f"{url}: {model} {version} is incomplete (no {MANIFEST}); not pulled")
    fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    source = f"{root.rstrip('/')}/{model}/{version}"
    listed: dict[str, dict[str, Any]] = release.manifest.get("files") or {}
    present = {Path(p).name for p in fs.ls(source, detail=False)} - {MANIFEST, MARKER}
    problems = [f"{name} is missing" for name in sorted(set(listed) - present)]
    problems += [f"{name} is not in the manifest" for name in sorted(present - set(listed))]
    unlisted = named_files(release.manifest) - set(listed)
    problems += [
        f"{name} is named by the manifest but has no sha256 in it" for name in sorted(unlisted)
    ]
    final = dest / f"{model}-{version}"
    dest.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=dest, prefix=".pull-"))
    try:
        for name in sorted(set(listed) & present):
            fs.get_file(f"{source}/{name}", str(scratch / name))
            data = (scratch / name).read_bytes()
            if len(data) != listed[name]["bytes"] or _sha256(data) != listed[name]["sha256"]:
                problems.append(f"{name} does not match its sha256 in the manifest")
        if problems:
            raise TrainingError(f"{url}: refusing {model} {version}: " + "; ".join(problems))
        (scratch / MANIFEST).write_text(json.dumps(release.manifest, indent=2) + "\n")
        (scratch / MARKER).write_bytes(marker_content("pulled release"))
        if final.exists() or final.is_symlink():
            if final.is_symlink() or not (final / MARKER).is_file():
                raise NotOwnedError(
                    f"{final}: exists and was not pulled by the builder; nothing was changed; "
                    "move it away or pull --to another folder"
                )
            shutil.rmtree(final)  # an earlier pull of this release: ours to replace
        scratch.rename(final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return final


def list_releases(url: str, storage_options: dict[str, Any] | None = None) -> list[Release]:
    """Every release under ``url``, by model then version number; one whose manifest cannot
    be read is listed with its ``problem`` and a :class:`ReleaseWarning`."""
    location = StoreLocation(url, storage_options)
    if location.is_local and not location.fs.isdir(location.path):
        raise TrainingError(f"{url}: no such folder (no releases pushed here)")
    releases = _scan(url, storage_options)
    _warn_unreadable(releases)
    return releases


def _warn_unreadable(releases: list[Release]) -> None:
    for release in releases:
        if release.problem:
            warnings.warn(f"{release.problem}; release skipped", ReleaseWarning, stacklevel=3)


def _scan(url: str, storage_options: dict[str, Any] | None) -> list[Release]:
    """Every release under ``url``, by model then version number, without warnings."""
    fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    root = root.rstrip("/")
    fs.invalidate_cache()
    location = StoreLocation(url, storage_options)
    if not location.is_local:  # a missing bucket, refused credentials: one line, not "none"
        location.check_reachable()
    releases = []
    for model_path in _folders(fs, root):
        for version_path in _folders(fs, model_path):
            version = Path(version_path).name
            if not _VERSION.match(version):
                continue
            manifest_path = f"{version_path}/{MANIFEST}"
            manifest, problem = None, None
            if fs.exists(manifest_path):
                with fs.open(manifest_path, "rb") as f:
                    data = f.read()
                try:
                    manifest = _parse_manifest(data, fs.unstrip_protocol(manifest_path))
                except TrainingError as exc:  # one bad release must not hide the others
                    problem = str(exc)
            releases.append(Release(Path(model_path).name, version, manifest, problem))
    return sorted(releases, key=lambda r: (r.model, int(_VERSION.match(r.version).group(1))))  # type: ignore[union-attr]


def _folders(fs: fsspec.AbstractFileSystem, path: str) -> list[str]:
    try:
        return [e["name"].rstrip("/") for e in fs.ls(path, detail=True) if e["type"] == "directory"]
    except FileNotFoundError:
        return []


def _read_manifest(path: Path, where: str) -> dict[str, Any]:
    if not path.exists():
        raise TrainingError(f"{where}: no {MANIFEST} (write one with `builder export`)")
    return _parse_manifest(path.read_bytes(), str(path))


def _parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        raise TrainingError(f"{where}: manifest is not JSON ({one_line(exc)})") from None
    if not isinstance(manifest, dict) or "model" not in manifest:
        raise TrainingError(f"{where}: not a release manifest (no model)")
    files = manifest.get("files") or {}
    if not isinstance(files, dict):
        raise TrainingError(f"{where}: not a release manifest (files is not a mapping)")
    for name, entry in files.items():  # pull checks each file against these two
        if not isinstance(entry, dict):
            raise TrainingError(f"{where}: files entry {name!r} is not a mapping")
        if not isinstance(entry.get("bytes"), int) or isinstance(entry.get("bytes"), bool):
            raise TrainingError(f"{where}: files entry {name!r} has no size (bytes)")
        if not isinstance(entry.get("sha256"), str):
            raise TrainingError(f"{where}: files entry {name!r} has no sha256")
    return manifest


def named_files(manifest: dict[str, Any]) -> set[str]:
    """The files a manifest says the release is made of: the ONNX, the streaming step (a
    window model's; other models name ``model.onnx`` again) and the engines."""
    entries = [manifest.get("onnx"), manifest.get("step")]
    engines = manifest.get("tensorrt")
    if isinstance(engines, dict) and isinstance(engines.get("built"), list):
        entries += engines["built"]
    return {e["file"] for e in entries if isinstance(e, dict) and isinstance(e.get("file"), str)}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

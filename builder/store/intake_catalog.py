"""An intake catalogue (YAML, intake's v1 format) with one entry for a built store.

The entry's driver, ``gait_store`` (builder.intake_drivers.GaitStore), opens the store as
builder.store.reader.open_store does; writing the catalogue needs no intake. It names the
store's moving URL, so it opens the version published when it is read; its metadata record the
version and strides at the time it was written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import yaml

from builder.errors import StoreError
from builder.store.location import StoreLocation

DRIVER = "gait_store"
# Storage options that are credentials: a catalogue is shared, so they are never written.
_SECRET = re.compile(r"key|secret|token|password|credential", re.IGNORECASE)
_SAFE = frozenset({"endpoint_url", "region_name", "key_prefix"})


def store_catalog(
    url: str, name: str, storage_options: Mapping[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """The catalogue's YAML text, and the entry's metadata (read from the store's attributes).

    Raises :class:`StoreError` when ``url`` holds no complete build, or when a storage option
    is a credential (it would be written into the file).
    """
    options = dict(storage_options or {})
    secrets = _secret_keys(options)
    if secrets:
        raise StoreError(
            f"{url}: storage option(s) {', '.join(secrets)} are credentials and would be written "
            "into the catalogue; give them through the environment, an AWS profile or fsspec's "
            "config instead"
        )
    location = StoreLocation(url, options)
    # the pinned version's attributes (StoreError, one line, when there is no store)
    attrs: dict[str, Any] = dict(location.open_group().attrs.asdict())
    if "://" not in url:
        url = os.path.abspath(url)  # the catalogue opens from any folder
    metadata: dict[str, Any] = {
        "build_version": str(attrs.get("build_version", "")),
        "n_strides": int(attrs.get("n_strides", 0)),
        "n_trials": int(attrs.get("n_trials", 0)),
        "created": str(attrs.get("created", "")),
        "builder_version": str(attrs.get("builder_version", "")),
        "datasets": sorted(attrs.get("datasets") or {}),
    }
    entry: dict[str, Any] = {
        "driver": DRIVER,
        "description": (
            f"gait stride store {url}: {metadata['n_strides']} strides of "
            f"{len(metadata['datasets'])} datasets (version {metadata['build_version']}, built "
            f"{metadata['created']}); opens as xarray (to_dask() lazily, read() in memory)"
        ),
        "args": {"urlpath": url, **({"storage_options": options} if options else {})},
        "metadata": metadata,
    }
    document = {
        "metadata": {
            "version": 1,
            "description": f"A gait stride store written by builder {metadata['builder_version']}",
        },
        "sources": {name: entry},
    }
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True), metadata


def default_name(url: str) -> str:
    """An entry name from a store URL: ``s3://lab/gait.zarr`` -> ``gait``."""
    stem = url.rstrip("/").rsplit("/", 1)[-1].split(".", 1)[0]
    return re.sub(r"\W", "_", stem) or "gait"


def _secret_keys(options: Mapping[str, Any], prefix: str = "") -> list[str]:
    found = []
    for key, value in options.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            found += _secret_keys(value, f"{dotted}.")
        elif key not in _SAFE and _SECRET.search(str(key)):
            found.append(dotted)
    return found

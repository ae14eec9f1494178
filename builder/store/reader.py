"""Reading a built store: open it (with clear errors), its build report, its stride counts."""

from __future__ import annotations

import json
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import xarray as xr
import zarr

from builder.errors import StoreError
from builder.store.layout import REPORT_NAME, TABLE_COLUMNS
from builder.store.staging import Staging


def pin_version(url: str, storage_options: dict[str, Any] | None = None) -> str:
    """The stable URL of the version ``url`` opens now.

    A store's moving name (``gait.zarr``) gives its published version's URL
    (``gait.zarr.versions/vNNNN``), which reads the same data for as long as it exists; a
    version URL, or a store the builder did not write, is returned as it is.
    """
    metadata = _check_complete(url, storage_options)
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    path = path.rstrip("/")
    version = metadata.get("attributes", {}).get("build_version")
    if not isinstance(version, str) or path.endswith(f"/{version}"):
        return url
    if not fs.exists(f"{path}.versions/{version}/zarr.json"):
        return url  # a copy of a store without its versions (e.g. cp -r gait.zarr elsewhere)
    return f"{url.rstrip('/')}.versions/{version}"


def open_store(url: str, storage_options: dict[str, Any] | None = None) -> xr.Dataset:
    """The latest complete build at ``url`` as a labelled dataset (as xarray.open_zarr gives
    it), pinned to its version: a later publish never changes what it reads."""
    return xr.open_zarr(pin_version(url, storage_options), storage_options=storage_options or None)


def open_group(url: str, storage_options: dict[str, Any] | None = None) -> zarr.Group:
    """The zarr group of the version ``url`` opens now (pinned, as :func:`open_store`)."""
    pinned = pin_version(url, storage_options)
    return zarr.open_group(pinned, mode="r", storage_options=storage_options or None)


def read_report(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The build report of the version ``url`` opens now; pass :func:`pin_version`'s URL to
    read several things of one version."""
    url = pin_version(url, storage_options)
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    try:
        with fs.open(f"{path.rstrip('/')}/{REPORT_NAME}", "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        raise StoreError(
            f"{url}: the store has no {REPORT_NAME} (not written by builder?)"
        ) from None


def stride_table(url: str, storage_options: dict[str, Any] | None = None) -> pd.DataFrame:
    """The stride table (one row per stride) as a DataFrame, read without the signal arrays."""
    group = open_group(url, storage_options)
    return pd.DataFrame({name: np.asarray(group[name][:]) for name in TABLE_COLUMNS})


def stride_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Strides per dataset, activity and side, with each row's share of the total (%)."""
    counts = table.groupby(["dataset", "activity", "side"]).size().rename("strides").reset_index()
    counts["percent"] = 100.0 * counts["strides"] / max(int(counts["strides"].sum()), 1)
    return counts


def last_build(url: str, storage_options: dict[str, Any] | None = None) -> str | None:
    """One line on how the last build of ``url`` ended when it did not publish (failed, or
    interrupted), or is still going; None when the last build published or none ran."""
    manifest = Staging(url, storage_options).read_manifest()
    state = manifest.get("state")
    if state in ("failed", "interrupted"):
        when = manifest.get("failed", "at an unknown time")
        return f"the last build {state} at {when}: {manifest.get('failure', 'no reason recorded')}"
    if state in ("processing", "writing"):
        return (
            f"a build started at {manifest.get('started', 'an unknown time')} is under way or "
            "was killed (re-run `builder run` to finish it)"
        )
    return None


def _check_complete(url: str, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    """The root metadata of a complete store at ``url``; StoreError saying why otherwise."""
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    if not fs.exists(f"{path.rstrip('/')}/zarr.json"):
        if fs.exists(f"{path.rstrip('/')}.build"):
            status = last_build(url, storage_options) or "a build is under way or was killed"
            raise StoreError(f"{url}: no complete build yet; {status}")
        raise StoreError(f"{url}: no store here")
    try:
        with fs.open(f"{path.rstrip('/')}/zarr.json", "rb") as f:
            meta = json.loads(f.read())
    except (OSError, ValueError) as exc:
        raise StoreError(f"{url}: unreadable store metadata ({exc})") from None
    if meta.get("zarr_format") != 3:
        status = last_build(url, storage_options) or "a build is under way or was killed"
        raise StoreError(f"{url}: no complete build yet; {status}")
    return meta

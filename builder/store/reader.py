"""Reading a built store by URL: open it (with clear errors), its build report, its strides.

Each function is one :class:`StoreLocation` call for the URL and its storage options; hold a
location (or :func:`pin_version`'s URL) to read several things of one version.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import zarr

from builder.store.layout import TABLE_COLUMNS, store_array
from builder.store.location import StoreLocation


def pin_version(url: str, storage_options: dict[str, Any] | None = None) -> str:
    """The stable URL of the version ``url`` opens now (see :meth:`StoreLocation.pin`)."""
    return StoreLocation(url, storage_options).pin()


def open_store(url: str, storage_options: dict[str, Any] | None = None) -> xr.Dataset:
    """The latest complete build at ``url`` as a labelled dataset (as xarray.open_zarr gives
    it), pinned to its version: a later publish never changes what it reads."""
    return StoreLocation(url, storage_options).open_dataset()


def open_group(url: str, storage_options: dict[str, Any] | None = None) -> zarr.Group:
    """The zarr group of the version ``url`` opens now (pinned, as :func:`open_store`)."""
    return StoreLocation(url, storage_options).open_group()


def read_report(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The build report of the version ``url`` opens now; pass :func:`pin_version`'s URL to
    read several things of one version."""
    return StoreLocation(url, storage_options).read_report()


def stride_table(url: str, storage_options: dict[str, Any] | None = None) -> pd.DataFrame:
    """The stride table (one row per stride) as a DataFrame, read without the signal arrays."""
    return group_stride_table(open_group(url, storage_options))


def group_stride_table(group: zarr.Group) -> pd.DataFrame:
    """The stride table of an open store group."""
    return pd.DataFrame({name: np.asarray(store_array(group, name)[:]) for name in TABLE_COLUMNS})


def stride_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Strides per dataset, activity and side, with each row's share of the total (%)."""
    counts = table.groupby(["dataset", "activity", "side"]).size().rename("strides").reset_index()
    counts["percent"] = 100.0 * counts["strides"] / max(int(counts["strides"].sum()), 1)
    return counts


def last_build(url: str, storage_options: dict[str, Any] | None = None) -> str | None:
    """One line on how the last build of ``url`` ended when it did not publish (failed, or
    interrupted), or is still going; None when the last build published or none ran."""
    return StoreLocation(url, storage_options).staging.last_build()

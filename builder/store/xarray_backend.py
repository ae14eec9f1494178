"""The store as xarray users expect it: the ``gait`` engine of ``xarray.open_dataset``.

Both ``xr.open_dataset("gait.zarr", engine="gait")`` and
:func:`builder.store.reader.open_store` open the version the URL names now (pinned: a later
publish never changes what they read), through :meth:`StoreLocation.open_dataset`, as
:func:`gait_dataset` shapes it:

- the stride table (every column of ``TABLE_COLUMNS``, ``stride_starts``, ``stride_ends``)
  is read into memory, so ``groupby("activity")``, ``where(..., drop=True)``,
  ``query(stride=...)`` and ``.item()`` work on it (dask arrays support none of these);
- ``gait_cycle_pct`` is an index of ``sample``: ``sel(gait_cycle_pct=50, method="nearest")``;
- the signals stay lazy: dask arrays from ``open_store``; with the engine, xarray's
  ``chunks`` argument decides. xarray then chunks every variable that is not an index, the
  stride table too (``chunks={}`` gives a dask table), so ``open_store`` is the way to have
  dask signals beside an in-memory table.

The engine also answers xarray's engine guess for a local builder store (its root
``zarr.json`` names a build version), so plain ``xr.open_dataset("gait.zarr")`` uses it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from xarray.backends import BackendEntrypoint

from builder.store.layout import JSON_ROOT_ATTRS, TABLE_COLUMNS
from builder.store.location import StoreLocation
from builder.store.versions import version_number

if TYPE_CHECKING:
    import xarray as xr

# Read into memory on open: the stride table and the row offsets of each stride into ``emg``.
IN_MEMORY = (*TABLE_COLUMNS, "stride_starts", "stride_ends")


def gait_dataset(ds: xr.Dataset) -> xr.Dataset:
    """A dataset opened from a store (``xarray.open_zarr``) as the builder's readers give it:
    the stride table in memory, ``gait_cycle_pct`` indexing ``sample``, root attributes
    netCDF takes."""
    names = [name for name in IN_MEMORY if name in ds.variables]
    table = ds[names].compute()  # one pass over the table's chunks
    ds = ds.assign_coords({n: table.variables[n] for n in names if n in ds.coords})
    ds = ds.assign({n: table.variables[n] for n in names if n in ds.data_vars})
    if "gait_cycle_pct" in ds.coords and "gait_cycle_pct" not in ds.xindexes:
        ds = ds.set_xindex("gait_cycle_pct")
    # Stores built before issue 12 hold lists and mappings: netCDF takes only JSON text.
    old = {k: json.dumps(ds.attrs[k]) for k in JSON_ROOT_ATTRS if not _is_text(ds.attrs.get(k))}
    return ds.assign_attrs(old) if old else ds


def _is_text(value: Any) -> bool:
    return value is None or isinstance(value, str)


class GaitBackendEntrypoint(BackendEntrypoint):
    """``xr.open_dataset(url, engine="gait", storage_options=...)``: see the module docstring."""

    description = "A gait-builder stride store, pinned: the stride table in memory"
    open_dataset_parameters = ("filename_or_obj", "drop_variables", "storage_options")

    def open_dataset(  # type: ignore[override]  # xarray's signature takes more file kinds
        self,
        filename_or_obj: str | os.PathLike[Any],
        *,
        drop_variables: str | Iterable[str] | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> xr.Dataset:
        if not isinstance(filename_or_obj, str | os.PathLike):
            raise TypeError(
                f"engine 'gait' opens a store URL or path, not {type(filename_or_obj).__name__}"
            )
        location = StoreLocation(os.fspath(filename_or_obj), storage_options)
        # Unchunked here: xarray chunks the signals afterwards as its ``chunks`` says.
        return location.open_dataset(chunks=None, drop_variables=drop_variables)

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        """A local builder store (moving name or version): its root metadata names a build
        version. Remote URLs need ``engine="gait"`` (guessing gets no storage options)."""
        if not isinstance(filename_or_obj, str | os.PathLike):
            return False
        path = os.fspath(filename_or_obj)
        if "://" in path:
            return False
        try:
            with open(os.path.join(path, "zarr.json"), "rb") as f:
                version = json.load(f)["attributes"]["build_version"]
            version_number(version)
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return True

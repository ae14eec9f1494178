"""intake drivers: a catalogue entry opens as its trial table, a built store as xarray.

intake (its v1 catalogue API, in intake 0.7 and 2.x) finds these through the entry-point group
``intake.drivers`` (pyproject.toml): one driver per builder driver name (``c3d``, ``bacek``,
...), ``gait_included`` and ``gait_store``. So::

    cat = intake.open_catalog("catalogs/datasets.yaml")
    cat["bacek2024"].read()    # the trial table (pandas): one row per trial file
    intake.open_catalog("gait.yaml")["gait"].to_dask()   # a store, as `builder catalog` lists it

- ``<driver>`` (``container: dataframe``): the entry's ``args`` and ``metadata`` as intake gives
  them (its templates rendered, user parameters applied) are the builder's source entry, expanded
  as a build expands it (builder.catalog.expand_trials).
- ``gait_included``: intake reads no ``include``; such an entry names a source that the builder
  catalogue ``args.catalog`` declares or includes, expanded by the builder's own loader (its
  includes, variables and ``env()`` templates, exactly as ``builder run`` reads them).
- ``gait_store`` (``container: xarray``): builder.store.reader.open_store's dataset.

Errors are :class:`builder.errors.BuilderError` subclasses, one line each.
"""

from __future__ import annotations

import abc
import dataclasses
import os
import re
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar

from intake.source.base import DataSource, Schema
from pydantic import ValidationError

from builder._version import __version__
from builder.catalog import (
    Catalog,
    CatalogSource,
    ProcessingOverrides,
    expand_trials,
    load_catalog,
    parse_entry,
    unset_templates,
)
from builder.datasets import available_adapters
from builder.errors import CatalogError, one_line
from builder.records import TrialSpec

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

# Trial-table columns: the TrialSpec fields that are one value per trial (adapter options and
# processing settings are the entry's, in the source's metadata).
TRIAL_COLUMNS = tuple(
    f.name
    for f in dataclasses.fields(TrialSpec)
    if f.name not in ("activity_map", "options", "processing")
)
# What intake adds to an entry's metadata before it reaches the driver.
_INTAKE_METADATA = ("catalog_dir", "cache")


def _tidy(path: Any) -> Any:
    """intake's ``{{ CATALOG_DIR }}`` ends in '/': ``dir//raw`` would match no listed file."""
    if isinstance(path, str) and "://" not in path:
        return re.sub(r"/{2,}", "/", path)
    return path


def trial_table(specs: list[TrialSpec]) -> pd.DataFrame:
    """One row per trial: its file, the fields parsed from its path, the entry's metadata."""
    import pandas as pd

    return pd.DataFrame(
        [{column: getattr(spec, column) for column in TRIAL_COLUMNS} for spec in specs],
        columns=list(TRIAL_COLUMNS),
    )


class _TrialSource(DataSource, abc.ABC):  # intake ships no type information (Any)
    """A builder catalogue source as an intake ``dataframe`` source (its trial table)."""

    container = "dataframe"
    version = __version__
    partition_access = False

    def __init__(
        self,
        storage_options: Mapping[str, Any] | None = None,
        variables: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(metadata=dict(metadata or {}))
        self.storage_options = dict(storage_options or {})  # to list the files
        self.variables = dict(variables or {})  # builder template variables ({{ demo_root }})
        self._table: pd.DataFrame | None = None

    @abc.abstractmethod
    def _catalog(self) -> Catalog:
        """A builder catalogue holding this one source."""

    def _source_name(self) -> str:
        # intake names the instance after its catalogue entry (the class's name is the driver's)
        return str(self.__dict__.get("name") or "source")

    def _trials(self) -> pd.DataFrame:
        if self._table is None:
            catalog = self._catalog()
            (name, source), *_ = catalog.sources.items()
            specs, unavailable = expand_trials(catalog, self.storage_options)
            reasons = [u.reason for u in unavailable]
            if not specs:
                why = "; ".join(reasons) or "no trials"
                raise CatalogError(f"{source.path}: source {name!r}: {why}")
            self._table = trial_table(specs)
            self._extra = {
                **source.entry.metadata.model_dump(mode="json"),
                "trials": len(specs),
                "unavailable": reasons,
            }
        return self._table

    def _get_schema(self) -> Schema:
        table = self._trials()
        return Schema(
            datashape=None,  # intake 0.7 reads it
            dtype={str(k): str(v) for k, v in table.dtypes.items()},
            shape=table.shape,
            npartitions=1,
            extra_metadata=self._extra,
        )

    def _get_partition(self, i: int) -> pd.DataFrame:
        return self._trials().copy()

    def read(self) -> pd.DataFrame:
        self._load_metadata()
        return self._get_partition(0)

    def _close(self) -> None:
        self._table = None


class TrialTable(_TrialSource):
    """The trial table of a catalogue entry whose ``driver`` is a builder driver
    (:attr:`driver`); one subclass per driver, made by :func:`trial_table_driver`."""

    driver: ClassVar[str] = ""

    def __init__(
        self,
        urlpath: str,
        root: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
        variables: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(storage_options, variables, metadata)
        self.urlpath = urlpath
        self.root = root
        self.options = options  # the adapter's args (layout, emg, kinematics, ...)
        self._entry_metadata = {
            k: v for k, v in (metadata or {}).items() if k not in _INTAKE_METADATA
        }
        self._catalog_dir = str((metadata or {}).get("catalog_dir") or "")

    def _catalog(self) -> Catalog:
        name = self._source_name()
        path = str(getattr(self.cat, "path", "") or f"intake driver {self.driver}")
        self._check_templates(f"{path}: source {name!r}")
        args = {"urlpath": _tidy(self.urlpath), **self.options}
        if self.root is not None:
            args["root"] = _tidy(self.root)
        entry = parse_entry(
            {
                "driver": self.driver,
                "description": self.description or "",
                "args": args,
                "metadata": self._entry_metadata,
            },
            f"{path}: source {name!r}",
        )
        variables = dict(self.variables)
        if self._catalog_dir:
            variables.setdefault("CATALOG_DIR", self._catalog_dir.rstrip("/"))
        try:  # the catalogue-wide EMG settings (metadata.processing) apply as in a build
            processing = ProcessingOverrides.model_validate(
                (getattr(self.cat, "metadata", None) or {}).get("processing", {})
            )
        except ValidationError as exc:
            raise CatalogError(f"{path}: metadata.processing: {one_line(exc)}") from None
        source = CatalogSource(entry, path, variables, processing)
        return Catalog(path, "", {name: source}, "")

    def _check_templates(self, where: str) -> None:
        """intake renders a template it has no value for as '' (``/{subject}.c3d`` would
        list the whole disk): name what the entry's raw ``urlpath``/``root`` lack instead."""
        if self._entry is None:  # opened directly: the builder renders the templates itself
            return
        described = self._entry.describe()
        given = {
            *getattr(self, "_passed_kwargs", ()),  # entry(name=value)
            *(p["name"] for p in described.get("user_parameters") or ()),
            *self.variables,
            "CATALOG_DIR",
        }
        raw = described.get("args") or {}
        for key in ("urlpath", "root"):
            if isinstance(raw.get(key), str):
                unset = [
                    f"environment variable {name} is not set"
                    if kind == "env"
                    else f"{{{{ {name} }}}} has no value (give it: entry({name}=...))"
                    for kind, name in unset_templates(raw[key], dict.fromkeys(given, ""))
                ]
                if unset:
                    raise CatalogError(f"{where}: args.{key}: {'; '.join(unset)}")


class IncludedTrialTable(_TrialSource):
    """The trial table of source ``source`` (default: the intake entry's name) of the builder
    catalogue ``catalog``, read by the builder's loader (includes, variables, ``env()``)."""

    name = "gait_included"

    def __init__(
        self,
        catalog: str,
        source: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
        variables: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(storage_options, variables, metadata)
        self.catalog = catalog
        self.source = source

    def _catalog(self) -> Catalog:
        path = os.path.normpath(self.catalog) if "://" not in self.catalog else self.catalog
        name = self.source or self._source_name()
        catalog = load_catalog(path, self.variables)
        if name not in catalog.sources:
            known = ", ".join(catalog.sources) or "none"
            raise CatalogError(f"{path}: no source named {name!r} (sources: {known})")
        return dataclasses.replace(catalog, sources={name: catalog.sources[name]})


@cache
def trial_table_driver(driver: str) -> type[TrialTable]:
    """The intake driver (a :class:`TrialTable` subclass) of builder driver ``driver``."""
    if driver not in available_adapters():
        raise CatalogError(f"no builder driver named {driver!r}")
    attributes = {
        "name": driver,
        "driver": driver,
        "__module__": __name__,
        "__qualname__": driver,  # pickle finds it through this module's __getattr__
        "__doc__": f"The trial table of a catalogue entry read by the builder's {driver} driver.",
    }
    return type(driver, (TrialTable,), attributes)


def __getattr__(name: str) -> type[TrialTable]:
    """``builder.intake_drivers:<driver>``: the entry points' targets, made on first use."""
    if name in available_adapters():
        return trial_table_driver(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class GaitStore(DataSource):  # intake ships no type information (Any)
    """A built stride store (``urlpath``: its output URL) as an intake ``xarray`` source:
    ``to_dask()`` is :func:`builder.store.reader.open_store`'s dataset, ``read()`` the same
    in memory. Pinned to the version published when first opened."""

    name = "gait_store"
    container = "xarray"
    version = __version__
    partition_access = False

    def __init__(
        self,
        urlpath: str,
        storage_options: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(metadata=dict(metadata or {}))
        self.urlpath = urlpath
        self.storage_options = dict(storage_options or {})
        self._ds: xr.Dataset | None = None

    def _open(self) -> xr.Dataset:
        if self._ds is None:
            from builder.store.reader import open_store

            self._ds = open_store(self.urlpath, self.storage_options)
        return self._ds

    def _get_schema(self) -> Schema:
        ds = self._open()
        return Schema(
            datashape=None,
            dtype=None,
            shape=None,
            npartitions=None,
            extra_metadata={
                "dims": {str(k): int(v) for k, v in ds.sizes.items()},
                "data_vars": [str(v) for v in ds.data_vars],
                "coords": [str(c) for c in ds.coords],
            },
        )

    def to_dask(self) -> xr.Dataset:
        self._load_metadata()
        return self._open()

    def read(self) -> xr.Dataset:
        return self.to_dask().compute()

    def _get_partition(self, i: int) -> xr.Dataset:
        return self.read()

    def _close(self) -> None:
        self._ds = None

"""Which dataset drivers exist, loaded lazily (as xarray finds its backends).

A driver is the ``driver:`` of a catalogue entry. Built-in drivers are listed in
:data:`BUILTIN`; an installed package adds one through the entry-point group
``gait_builder.datasets`` (name = driver, value = ``"package.adapter:AdapterClass"``)::

    [project.entry-points."gait_builder.datasets"]
    my_lab = "my_lab_gait.adapter:MyLabAdapter"

A driver's package may hold ``catalog.yaml`` (its catalogue entries, included by
``catalogs/datasets.yaml``) and ``miniature.py`` (its demo generator). Nothing is imported
until a driver is used.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Mapping
from functools import cache
from importlib import import_module, resources
from importlib.metadata import entry_points
from importlib.util import find_spec
from pathlib import Path
from typing import Any, get_args

from builder.conventions import EmgKind
from builder.datasets.base import SourceAdapter
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.processing.checks import check_recordings
from builder.records import TrialRecording, TrialSpec

ENTRY_POINT_GROUP = "gait_builder.datasets"

# driver -> "module:class". The order is the catalogue's (datasets.yaml numbers them 1-14).
BUILTIN: dict[str, str] = {
    "c3d": "builder.datasets.c3d.adapter:C3DAdapter",
    "matlab_struct": "builder.datasets.matlab_struct.adapter:MatlabStructAdapter",
    "bacek": "builder.datasets.bacek.adapter:BacekAdapter",
    "macaluso": "builder.datasets.macaluso.adapter:MacalusoAdapter",
    "camargo": "builder.datasets.camargo.adapter:CamargoAdapter",
    "k2muse": "builder.datasets.k2muse.adapter:K2museAdapter",
    "angelidou": "builder.datasets.angelidou.adapter:AngelidouAdapter",
    "embry": "builder.datasets.embry.adapter:EmbryAdapter",
    "grimmer": "builder.datasets.grimmer.adapter:GrimmerAdapter",
    "hu_enabl3s": "builder.datasets.hu_enabl3s.adapter:HuEnabl3sAdapter",
    "gait120": "builder.datasets.gait120.adapter:Gait120Adapter",
    "moreira": "builder.datasets.moreira.adapter:MoreiraAdapter",
    "van_criekinge": "builder.datasets.van_criekinge.adapter:VanCriekingeAdapter",
    "lencioni": "builder.datasets.lencioni.adapter:LencioniAdapter",
    "siat_llmd": "builder.datasets.siat_llmd.adapter:SiatLlmdAdapter",
    "moghadam": "builder.datasets.moghadam.adapter:MoghadamAdapter",
}


# Adapters defined at run time (a notebook, a test's reader child): name -> class.
_RUNTIME: dict[str, type[SourceAdapter[Any]]] = {}


def register_adapter(cls: type[SourceAdapter[Any]]) -> type[SourceAdapter[Any]]:
    """Class decorator for an adapter defined at run time; packages use the entry points."""
    _check_declarations(cls, cls.name)
    if cls.name in _drivers() or _RUNTIME.get(cls.name, cls) is not cls:
        raise ValueError(f"two source adapters are registered as {cls.name!r}")
    _RUNTIME[cls.name] = cls
    return cls


@cache
def _drivers() -> dict[str, str]:
    """Built-in drivers, then those installed packages declare (a clash keeps the built-in)."""
    table = dict(BUILTIN)
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name in table and table[point.name] != point.value:
            warnings.warn(
                f"dataset driver {point.name!r} of {point.value} ignored: "
                f"{table[point.name]} is registered under that name",
                stacklevel=2,
            )
            continue
        table[point.name] = point.value
    return table


def available_adapters() -> list[str]:
    """Every driver name, built-in, installed and registered at run time (nothing is imported)."""
    return sorted({*_drivers(), *_RUNTIME})


def suggest(name: str) -> str:
    """`` (did you mean 'x'?)`` for the nearest driver name, or nothing."""
    near = difflib.get_close_matches(name, available_adapters(), n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def adapter_class(name: str) -> type[SourceAdapter[Any]]:
    """The adapter class of driver ``name``; ``KeyError`` names the drivers that exist."""
    if name in _RUNTIME:
        return _RUNTIME[name]
    return _load(name)


@cache
def _load(name: str) -> type[SourceAdapter[Any]]:
    try:
        target = _drivers()[name]
    except KeyError:
        known = ", ".join(available_adapters())
        raise KeyError(
            f"no source adapter named {name!r}{suggest(name)} (available: {known})"
        ) from None
    module, _, attribute = target.partition(":")
    cls = getattr(import_module(module), attribute)
    if not (isinstance(cls, type) and issubclass(cls, SourceAdapter)):
        raise TypeError(f"dataset driver {name!r}: {target} is not a SourceAdapter subclass")
    if cls.name != name:
        raise TypeError(f"dataset driver {name!r}: {target} calls itself {cls.name!r}")
    _check_declarations(cls, name)
    return cls


def _check_declarations(cls: type[SourceAdapter[Any]], name: str) -> None:
    """An adapter declares the EMG kinds it reads: some of the known ones."""
    kinds = getattr(cls, "emg_kinds", None)
    known = set(get_args(EmgKind))
    if not isinstance(kinds, frozenset) or not kinds or not kinds <= known:
        raise TypeError(
            f"dataset driver {name!r}: emg_kinds must be a non-empty frozenset of {sorted(known)}"
        )


def get_adapter(name: str) -> SourceAdapter[Any]:
    """An instance of driver ``name``'s adapter."""
    return adapter_class(name)()


def _package(name: str) -> str:
    """The package that holds driver ``name`` (its adapter module's parent)."""
    return _drivers()[name].partition(":")[0].rpartition(".")[0]


def catalog_files() -> list[Path]:
    """Each driver's ``catalog.yaml``, in registry order (drivers without entries have none)."""
    found = []
    for name in _drivers():
        entry = resources.files(_package(name)) / "catalog.yaml"
        if entry.is_file():
            found.append(Path(str(entry)))
    return found


def miniature_modules() -> list[str]:
    """The ``miniature`` modules of the drivers that have one."""
    modules = []
    for name in _drivers():
        module = f"{_package(name)}.miniature"
        if find_spec(module) is not None:
            modules.append(module)
    return modules


def read_trial(
    spec: TrialSpec, storage_options: Mapping[str, Any] | None = None
) -> list[TrialRecording]:
    """``spec``'s recordings through its adapter, its files confined to the source's root;
    ``storage_options`` are fsspec's for the source's URLs (credentials, endpoint)."""
    with FileAccess(dict(storage_options or {}), root=spec.root or None) as files:
        return read_recordings(spec, files)


def read_recordings(spec: TrialSpec, files: FileAccess) -> list[TrialRecording]:
    """What every read goes through: the adapter's options validated (once per source and
    process, :meth:`AdapterOptions.of`), ``adapter.read``, then every recording's EMG kind
    checked against the catalogue's ``emg_kind`` (:func:`check_recordings`)."""
    cls = adapter_class(spec.adapter)
    if spec.emg_kind not in cls.emg_kinds:
        raise SourceError(spec.url, kinds_refused(spec.emg_kind, cls))
    recordings = cls().read(spec, cls.options_model.of(spec), files)
    check_recordings(spec, recordings, cls.emg_kinds)
    return recordings


def kinds_refused(emg_kind: str, cls: type[SourceAdapter[Any]]) -> str:
    """Why driver ``cls`` cannot read EMG of kind ``emg_kind`` (one line)."""
    return (
        f"emg_kind {emg_kind!r} is not one the {cls.name} driver reads "
        f"({', '.join(sorted(cls.emg_kinds))})"
    )

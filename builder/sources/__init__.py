"""Source adapters, one per raw format or dataset, registered by name (xarray-backend style)."""

from __future__ import annotations

from importlib import import_module

from builder.records import TrialRecording, TrialSpec
from builder.sources.base import AdapterOptions, FileAccess, SourceAdapter, within_root

_REGISTRY: dict[str, type[SourceAdapter]] = {}


def register_adapter(cls: type[SourceAdapter]) -> type[SourceAdapter]:
    """Class decorator: make ``cls`` available to catalogues as ``driver: <cls.name>``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"two source adapters are registered as {cls.name!r}")
    _REGISTRY[cls.name] = cls
    return cls


def get_adapter(name: str) -> SourceAdapter:
    """The adapter registered as ``name``; ``KeyError`` names the ones that exist."""
    try:
        return _REGISTRY[name]()
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise KeyError(f"no source adapter named {name!r} (available: {known})") from None


def read_trial(spec: TrialSpec) -> list[TrialRecording]:
    """``spec``'s recordings through its adapter, its files confined to the source's root."""
    with FileAccess(spec.storage_options, root=spec.root or None) as files:
        return get_adapter(spec.adapter).read_trial(spec, files)


def available_adapters() -> list[str]:
    return sorted(_REGISTRY)


# Adapters register themselves on import: one module per format or dataset.
_ADAPTER_MODULES = (
    "angelidou",
    "bacek",
    "c3d",
    "camargo",
    "embry",
    "gait120",
    "grimmer",
    "hu_enabl3s",
    "k2muse",
    "lencioni",
    "macaluso",
    "matlab_struct",
    "moghadam",
    "moreira",
    "siat_llmd",
    "van_criekinge",
)
for _module in _ADAPTER_MODULES:
    import_module(f"builder.sources.{_module}")

__all__ = [
    "AdapterOptions",
    "FileAccess",
    "SourceAdapter",
    "available_adapters",
    "get_adapter",
    "read_trial",
    "register_adapter",
    "within_root",
]

"""The datasets: one package per driver (``builder/datasets/<name>/``: ``adapter.py``,
``miniature.py``, ``catalog.yaml``), found through :mod:`builder.datasets.registry`."""

from builder.datasets.base import AdapterOptions, SourceAdapter
from builder.datasets.registry import (
    adapter_class,
    available_adapters,
    catalog_files,
    get_adapter,
    read_recordings,
    read_trial,
    register_adapter,
)

__all__ = [
    "AdapterOptions",
    "SourceAdapter",
    "adapter_class",
    "available_adapters",
    "catalog_files",
    "get_adapter",
    "read_recordings",
    "read_trial",
    "register_adapter",
]

"""gait-builder: turn heterogeneous public gait datasets into one clean, indexable Zarr store."""

from __future__ import annotations

__version__ = "0.1.0"

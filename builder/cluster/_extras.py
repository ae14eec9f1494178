"""What the cluster modules share: the optional extra behind each cluster kind."""

from __future__ import annotations

import importlib
from types import ModuleType

from builder.errors import BuilderError, one_line

KINDS = ("slurm", "kubernetes")
EXTRAS = {"slurm": "dask_jobqueue", "kubernetes": "dask_kubernetes.operator"}


def _require(kind: str) -> ModuleType:
    """The module behind the optional cluster ``kind``, or a one-line error naming the extra."""
    try:
        return importlib.import_module(EXTRAS[kind])
    except ImportError as exc:
        raise BuilderError(
            f"--cluster {kind} needs the optional extra: pip install 'gait-builder[{kind}]' "
            f"({one_line(exc)})"
        ) from None

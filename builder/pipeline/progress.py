"""How a build tells its caller what it is doing, without drawing anything itself.

Messages go to the ``builder`` logger (warnings for what the user should look at, info for
the rest); progress goes to an :class:`OnProgress` callback. The command line renders both
with rich; a library caller chooses (logging's configuration, its own callback, or none).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

from dask.distributed import Future, as_completed

log = logging.getLogger("builder")

Label = TypeVar("Label")


class OnProgress(Protocol):
    """Called with ``done == 0`` when a stage of ``total`` items starts and after each item;
    the stage is over when ``done == total``."""

    def __call__(self, stage: str, done: int, total: int) -> None: ...


def track(
    futures: dict[Future, Label],
    stage: str,
    on_progress: OnProgress | None,
    on_error: Callable[[Label, BaseException], None],
) -> Iterator[tuple[Label, Any]]:
    """Yield (label, result) as futures finish, reporting progress; errors go to on_error."""
    total, done = len(futures), 0
    if on_progress is not None:
        on_progress(stage, done, total)
    for future in as_completed(list(futures)):
        label = futures[future]
        try:
            yield label, future.result()
        except Exception as exc:
            on_error(label, exc)
        finally:
            future.release()
            done += 1
            if on_progress is not None:
                on_progress(stage, done, total)

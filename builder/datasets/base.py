"""What every source adapter is: a name, an options model, the EMG kinds it reads, and
``read``."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import lru_cache
from typing import ClassVar, Generic, Self, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from builder.conventions import EmgKind
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.records import TrialRecording, TrialSpec


class AdapterOptions(BaseModel):
    """Base for an adapter's catalogue ``args`` (besides ``urlpath``); unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def of(cls, spec: TrialSpec) -> Self:
        """The spec's options as this model; invalid ones are a SourceError naming the first
        bad key (``invalid <adapter> options: <key>: <problem>``).

        Validated once per distinct options in a process: every trial of a source carries the
        same options (the catalogue's, already validated there, as JSON), so a worker that
        reads a source's trials validates them once. The model is frozen, so sharing it is
        safe.
        """
        try:
            text = json.dumps(spec.options)  # keeps key order: it can matter to an adapter
        except (TypeError, ValueError):  # a hand-made spec holding other objects: no cache
            text = None
        try:
            if text is None:
                return cls.model_validate(spec.options)
            return _validated(cls, text)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise SourceError(
                spec.url, f"invalid {spec.adapter} options: {where}: {first['msg']}"
            ) from None


Options = TypeVar("Options", bound=AdapterOptions)


@lru_cache(maxsize=256)
def _validated(model: type[Options], text: str) -> Options:
    return model.model_validate(json.loads(text))


class SourceAdapter(ABC, Generic[Options]):
    """Reads one raw trial and converts it to the canonical conventions.

    Subclasses set ``name`` (the catalogue ``driver``), ``options_model`` and ``emg_kinds``
    and are listed in :mod:`builder.datasets.registry`, whose ``read_recordings`` hands
    ``read`` the options already validated (shared between trials: never change them), and
    afterwards checks every recording's EMG kind against the catalogue's ``emg_kind``
    (:func:`builder.processing.checks.check_recordings`; the quality gate judges the signals):
    an adapter checks only what is particular to its source. ``read`` raises :class:`builder.errors.SourceError` naming the
    file and the broken assumption.
    """

    name: ClassVar[str]
    options_model: ClassVar[type[AdapterOptions]] = AdapterOptions  # ``read``'s Options
    # The catalogue ``metadata.emg_kind`` values this adapter reads (its entries may declare
    # no other; see builder.catalog).
    emg_kinds: ClassVar[frozenset[EmgKind]]

    @abstractmethod
    def read(self, spec: TrialSpec, options: Options, files: FileAccess) -> list[TrialRecording]:
        """Read ``spec.url`` (and any sibling files): one recording per trial it holds.

        A file with one trial gives one recording; a file that packs several subjects,
        activities or speeds gives one per unit, each with its ``meta``. ``options`` are
        ``spec.options`` as ``options_model``.
        """

    def parts(self, url: str, options: Options, files: FileAccess) -> list[FilePart] | None:
        """The units of a file that packs many (subjects, trials) which ``read`` can read
        alone, in the order ``read`` gives them; the catalogue makes one row (one task) of
        each, with ``TrialSpec.part`` set. None (the default): the file is read whole.
        Called while planning, so it reads only names (HDF5 group names), never data."""
        return None


@dataclass(frozen=True)
class FilePart:
    """One unit inside a file: its ``path`` (``TrialSpec.part``) and the trial-table columns
    it fixes (e.g. ``{"subject": "AB01"}``), which order the rows and name them in reports."""

    path: str
    columns: dict[str, str] = field(default_factory=dict)

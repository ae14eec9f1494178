"""What every source adapter is: a name, an options model, and ``read_trial``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.records import TrialRecording, TrialSpec


class AdapterOptions(BaseModel):
    """Base for an adapter's catalogue ``args`` (besides ``urlpath``); unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def of(cls, spec: TrialSpec) -> Self:
        """The spec's options as this model; invalid ones are a SourceError naming the first
        bad key (``invalid <adapter> options: <key>: <problem>``)."""
        try:
            return cls.model_validate(spec.options)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise SourceError(
                spec.url, f"invalid {spec.adapter} options: {where}: {first['msg']}"
            ) from None


class SourceAdapter(ABC):
    """Reads one raw trial and converts it to the canonical conventions.

    Subclasses set ``name`` (the catalogue ``driver``) and ``options_model`` and are registered
    listed in :mod:`builder.datasets.registry`. ``read_trial`` raises
    :class:`builder.errors.SourceError` naming the file and the broken assumption.
    """

    name: ClassVar[str]
    options_model: ClassVar[type[AdapterOptions]] = AdapterOptions

    @abstractmethod
    def read_trial(self, spec: TrialSpec, files: FileAccess) -> list[TrialRecording]:
        """Read ``spec.url`` (and any sibling files): one recording per trial it holds.

        A file with one trial gives one recording; a file that packs several subjects,
        activities or speeds gives one per unit, each with its ``meta``.
        """

"""Errors the builder reports to users: each says which file and what is wrong, in one line."""

from __future__ import annotations


def one_line(error: BaseException) -> str:
    """An exception's message on one line, or its type's name when it has none."""
    return " ".join(str(error).split()) or type(error).__name__


class BuilderError(Exception):
    """Base class: the CLI prints these as one line and exits non-zero."""


class CatalogError(BuilderError):
    """A catalogue file is missing, unsafe or invalid (names file, entry and field)."""


class SourceError(BuilderError):
    """A raw input trial cannot be read or does not meet its adapter's assumptions."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class StoreError(BuilderError):
    """A store cannot be opened, or a build is under way or incomplete."""


class TrainingError(BuilderError):
    """Training, export or a release cannot go on (no matching strides, a bad checkpoint, a
    tampered or incomplete release, ...)."""

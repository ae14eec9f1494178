"""Catalogue ``args`` shared by the dataset adapters (see the key reference at the top of
``catalogs/datasets.yaml``). Each adapter validates its entry with :class:`DatasetOptions` (or
a subclass) and reads what it needs; unknown keys are errors that name the key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from builder.conventions import JOINTS, MUSCLES, PLANES, Side
from builder.datasets.base import AdapterOptions
from builder.datasets.mapping import sign_for


def known_muscles(channels: dict) -> dict:
    """Pydantic validator: every key of a channel map is a canonical muscle."""
    unknown = sorted(set(channels) - set(MUSCLES))
    if unknown:
        raise ValueError(f"unknown muscle(s) {unknown}; canonical muscles are {list(MUSCLES)}")
    return channels


class Rates(AdapterOptions):
    """Nominal rates (Hz; None = unknown: derive from a time column or stride durations)."""

    emg_hz: float | None = Field(default=None, gt=0)
    kinematics_hz: float | None = Field(default=None, gt=0)
    kinetics_hz: float | None = Field(default=None, gt=0)
    from_file: dict[str, str] = Field(default_factory=dict)  # where the file states a rate
    # Arrays time-normalised per stride: points per stride (both heel strikes included).
    points_per_stride: dict[Literal["emg", "kinematics", "kinetics"], int | None] = Field(
        default_factory=dict
    )


class EmgMap(AdapterOptions):
    """Source channel names per canonical muscle and side; a list is an explicit merge."""

    channels: dict[str, dict[Side, str | list[str]]]
    container: str | None = None  # where the channels live inside a file (struct path, folder)
    unused: list[str] = Field(default_factory=list)
    # Source order where channels are unnamed rows/columns (per side where the sides differ).
    order: list[str] | dict[str, list[str]] | None = None
    units: str | None = None
    source_processing: str | None = None  # what the source already did; None = raw

    _known_muscles = field_validator("channels")(known_muscles)

    def names(self, side: Side) -> dict[str, list[str]]:
        """Canonical muscle -> source names of ``side`` (several = averaged)."""
        out = {}
        for muscle, per_side in self.channels.items():
            if side in per_side:
                value = per_side[side]
                out[muscle] = [value] if isinstance(value, str) else list(value)
        return out


class JointMap(AdapterOptions):
    """Where a source keeps joint angles or moments, and how to reach canonical signs/units.

    Either ``columns`` (joint -> plane -> side -> column/field/row) or ``labels`` + ``axes``
    (joint -> a container of three components, and plane -> component).
    """

    convention: str
    container: str | None = None  # where the components live inside a file
    columns: dict[str, dict[str, dict[Side, str | int]]] | None = None
    labels: dict[str, Any] | None = None
    axes: dict[str, str] | None = None
    sign: dict[str, float] = Field(default_factory=dict)
    units: str | None = None
    body_mass: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _known_names(self) -> JointMap:
        joints = set(self.columns or {}) | set(self.labels or {})
        if bad := sorted(joints - set(JOINTS)):
            raise ValueError(f"unknown joint(s) {bad}; joints are {list(JOINTS)}")
        planes = {p for per_joint in (self.columns or {}).values() for p in per_joint}
        planes |= set(self.axes or {})
        if bad := sorted(planes - set(PLANES)):
            raise ValueError(f"unknown plane(s) {bad}; planes are {list(PLANES)}")
        return self

    def sign_of(self, joint: str, plane: str) -> float:
        return sign_for(self.sign, joint, plane)

    def component_columns(self, side: Side) -> dict[tuple[str, str], str | int]:
        """{(joint, plane): source column} of ``side`` from ``columns``."""
        return {
            (joint, plane): per_side[side]
            for joint, planes in (self.columns or {}).items()
            for plane, per_side in planes.items()
            if side in per_side
        }


def both_sides() -> list[Side]:
    return ["L", "R"]


def per_side(left: str, right: str) -> Callable[[], dict[Side, str]]:
    """A ``default_factory`` of a {side: name} mapping."""
    return lambda: {"L": left, "R": right}


class DatasetOptions(AdapterOptions):
    """The keys every dataset adapter shares. ``layout`` (where things are in the files) and
    ``events`` (how strides are found) differ per source: an adapter narrows them to its own
    model, or to a plain mapping."""

    layout: dict[str, Any] | AdapterOptions = Field(default_factory=dict)
    sides: list[Side] = Field(default_factory=both_sides)
    rates: Rates = Field(default_factory=Rates)
    emg: EmgMap | None = None
    kinematics: JointMap | None = None
    kinetics: JointMap | None = None
    events: dict[str, Any] | AdapterOptions = Field(default_factory=dict)
    assumptions: list[str] = Field(default_factory=list)

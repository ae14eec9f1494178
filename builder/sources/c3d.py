"""C3D source adapter (ezc3d): Plug-in-Gait-style model outputs, analog EMG, events.

Catalogue ``args`` for ``driver: c3d`` (validated by :class:`C3DOptions`)::

    emg:
      match: label            # or: description (ANALOG:DESCRIPTIONS)
      channels:               # canonical muscle -> side -> channel name(s), case-insensitive
        tibialis_anterior: {L: LTIB, R: [RTIB, "R Tib Ant"]}
    kinematics: plug-in-gait  # preset, or {labels, axes, sign, units}
    kinetics: plug-in-gait    # preset: external moments in N.mm/kg -> internal N.m/kg
    events:
      detect: [events, force_plate, kinematics]
      force_threshold_n: 50
    body_mass_kg: null        # only needed for moments in N.m / N.mm
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from builder.conventions import JOINTS, MUSCLES, PLANES
from builder.errors import SourceError
from builder.records import TrialRecording, TrialSpec
from builder.sources import register_adapter
from builder.sources.base import AdapterOptions, FileAccess, SourceAdapter

Axis = Literal["X", "Y", "Z"]


class EmgOptions(AdapterOptions):
    match: Literal["label", "description"] = "label"
    channels: dict[str, dict[Literal["L", "R"], str | list[str]]] = Field(default_factory=dict)

    @field_validator("channels")
    @classmethod
    def _known_muscles(cls, value: dict) -> dict:
        unknown = sorted(set(value) - set(MUSCLES))
        if unknown:
            raise ValueError(f"unknown muscle(s) {unknown}; canonical muscles are {list(MUSCLES)}")
        return value


class ModelOutputOptions(AdapterOptions):
    """Where joint angles or moments live among the C3D points, and how to convert them.

    ``labels`` map each joint to a point label with a ``{side}`` placeholder ("L"/"R"); a
    subject prefix such as ``A22:`` is matched automatically. ``axes`` say which point
    component holds each canonical plane. ``sign`` multiplies components after the axis map:
    keys ``"<joint>.<plane>"``, ``"<joint>"``, ``"<plane>"`` or ``"*"``; the most specific wins.
    ``units`` overrides the file's POINT:ANGLE_UNITS / POINT:MOMENT_UNITS.
    """

    labels: dict[str, str]
    axes: dict[str, Axis]
    sign: dict[str, float] = Field(default_factory=dict)
    units: str | None = None

    @field_validator("labels")
    @classmethod
    def _known_joints(cls, value: dict) -> dict:
        unknown = sorted(set(value) - set(JOINTS))
        if unknown:
            raise ValueError(f"unknown joint(s) {unknown}; joints are {list(JOINTS)}")
        return value

    @field_validator("axes")
    @classmethod
    def _all_planes(cls, value: dict) -> dict:
        if set(value) != set(PLANES):
            raise ValueError(f"axes must map exactly the planes {list(PLANES)}")
        return value


# Plug-in Gait / CGM: X flexion (dorsiflexion), Y adduction, Z internal rotation, degrees,
# the same clinical signs on both sides. Moments are an *external* description in N·mm/kg
# (MOMENT_UNITS says "Nmm" but values are per kg): internal = -external, so every component
# flips. Checked on gait-pig.c3d and the CGM2.4 sample: hip X +0.8 at loading (extensor),
# ankle X +1.6 at 50 % (plantarflexor).
PLUG_IN_GAIT_ANGLES = ModelOutputOptions(
    labels={"hip": "{side}HipAngles", "knee": "{side}KneeAngles", "ankle": "{side}AnkleAngles"},
    axes={"adduction": "Y", "rotation": "Z", "flexion": "X"},
)
PLUG_IN_GAIT_MOMENTS = ModelOutputOptions(
    labels={"hip": "{side}HipMoment", "knee": "{side}KneeMoment", "ankle": "{side}AnkleMoment"},
    axes={"adduction": "Y", "rotation": "Z", "flexion": "X"},
    sign={"*": -1.0},
    units="N.mm/kg",
)
_PRESETS = {
    "kinematics": {"plug-in-gait": PLUG_IN_GAIT_ANGLES},
    "kinetics": {"plug-in-gait": PLUG_IN_GAIT_MOMENTS},
}


class EventOptions(AdapterOptions):
    # Tried in order until one gives heel strikes for a side.
    detect: list[Literal["events", "force_plate", "kinematics"]] = Field(
        default_factory=lambda: ["events", "force_plate", "kinematics"]
    )
    force_threshold_n: float = Field(50.0, gt=0)


class C3DOptions(AdapterOptions):
    emg: EmgOptions | None = None
    kinematics: ModelOutputOptions | None = PLUG_IN_GAIT_ANGLES
    kinetics: ModelOutputOptions | None = PLUG_IN_GAIT_MOMENTS
    events: EventOptions = Field(default_factory=EventOptions)
    body_mass_kg: float | None = Field(None, gt=0)

    @field_validator("kinematics", "kinetics", mode="before")
    @classmethod
    def _preset(cls, value, info):
        if isinstance(value, str):
            presets = _PRESETS[info.field_name]
            if value not in presets:
                raise ValueError(f"unknown preset {value!r}; known: {sorted(presets)}")
            return presets[value]
        return value


@register_adapter
class C3DAdapter(SourceAdapter):
    name = "c3d"
    options_model = C3DOptions

    def read_trial(self, spec: TrialSpec, files: FileAccess) -> TrialRecording:
        raise SourceError(spec.url, "the C3D reader is being written")

"""From a source's named columns to the canonical arrays: muscles (13 slots) and joints
(3 joints × 3 planes), with the catalogue's sign rules. Shared by every adapter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from builder.conventions import JOINTS, MUSCLES, PLANES


def sign_for(signs: Mapping[str, float], joint: str, plane: str) -> float:
    """The most specific sign rule: ``"<joint>.<plane>"``, ``"<joint>"``, ``"<plane>"``, ``"*"``."""
    for key in (f"{joint}.{plane}", joint, plane, "*"):
        if key in signs:
            return float(signs[key])
    return 1.0


def muscle_matrix(
    columns: Mapping[str, np.ndarray | Sequence[np.ndarray]], shape: tuple[int, ...]
) -> np.ndarray:
    """``shape + (13,)`` in canonical muscle order; NaN for muscles not given (never 0).

    A muscle given as a sequence of arrays is their mean: the explicit merge of e.g. soleus
    medialis and lateralis, or upper and lower tibialis anterior.
    """
    out = np.full((*shape, len(MUSCLES)), np.nan)
    for muscle, values in columns.items():
        if isinstance(values, np.ndarray):
            out[..., MUSCLES.index(muscle)] = values
        else:
            out[..., MUSCLES.index(muscle)] = np.mean(np.stack(values), axis=0)
    return out


def joint_array(
    columns: Mapping[tuple[str, str], np.ndarray],
    shape: tuple[int, ...],
    *,
    signs: Mapping[str, float] | None = None,
    factor: float = 1.0,
) -> np.ndarray:
    """``shape + (3, 3)`` (joint, plane) from ``{(joint, plane): values}``, each multiplied by
    its sign rule and ``factor`` (a unit conversion); NaN where a component is not given."""
    out = np.full((*shape, len(JOINTS), len(PLANES)), np.nan)
    for (joint, plane), values in columns.items():
        sign = sign_for(signs or {}, joint, plane)
        out[..., JOINTS.index(joint), PLANES.index(plane)] = sign * factor * np.asarray(values)
    return out

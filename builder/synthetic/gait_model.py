"""Deterministic simulation of normal walking for the demo source (numpy only, no I/O).

Everything is in the canonical conventions (SPEC.md): joints (hip, knee, ankle), planes
(adduction, rotation, flexion), degrees, flexion / dorsiflexion, adduction and internal rotation
positive; moments are *internal* net joint moments in N·m/kg with the same axis signs.

The chain is causal, so that a model trained on the demo learns relations that exist:

    gait phase ──► joint angles ──► joint moments ──► muscle activations ──► EMG
        │                                  ▲
        └── stance / load weighting ───────┘

- Phase: each leg's gait phase is a smooth (C¹) monotone function of time whose integer
  crossings are heel strikes; stride durations jitter by up to ±3 %. The right leg runs half a
  cycle behind the left.
- Angles: smooth periodic curves (truncated Fourier series fitted to normal-gait key points),
  time-warped so that toe off lands at the speed's stance fraction, scaled with speed, shifted
  with incline, plus per-subject offsets and smooth per-stride jitter.
- Moments: a quasi-stiffness about an equilibrium angle weighted by the leg's share of body
  weight (zero in swing), stance damping, and inertia I·θ̈ + B·θ̇ over the whole cycle — all
  computed from the angle time series, so perturbing the angles changes the moments.
- Activations: phase-locked bursts plus terms proportional to the moment each muscle produces
  (read 40 ms ahead: EMG leads force by the electromechanical delay), smoothed, with a tonic
  baseline; EMG is the activation-modulated carrier of :mod:`builder.synthetic.emg_model`.
- Markers: a planar three-segment leg per side, pelvis moving forward at the walking speed and
  lowered so that the lower leg touches the ground, so marker-based event detection can be
  checked against the true events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from builder.conventions import JOINTS, PLANES, SIDES, Side
from builder.synthetic.emg_model import add_mains_hum, add_sensor_noise, synthesize_emg

# The muscles the demo records on each leg (canonical names, canonical order).
DEMO_MUSCLES: Final = (
    "vastus_lateralis",
    "rectus_femoris",
    "vastus_medialis",
    "tibialis_anterior",
    "biceps_femoris",
    "semitendinosus",
    "gastrocnemius_medialis",
    "gastrocnemius_lateralis",
    "soleus",
    "gluteus_medius",
)
MARKERS: Final = (
    "SACR",
    "LASI",
    "RASI",
    "LKNE",
    "RKNE",
    "LANK",
    "RANK",
    "LHEE",
    "RHEE",
    "LTOE",
    "RTOE",
)
ACTIVITIES: Final = ("walk", "ramp_ascent", "ramp_descent")

_HIP, _KNEE, _ANKLE = (JOINTS.index(j) for j in ("hip", "knee", "ankle"))
_ADD, _ROT, _FLEX = (PLANES.index(p) for p in ("adduction", "rotation", "flexion"))
_M = {name: i for i, name in enumerate(DEMO_MUSCLES)}

_REFERENCE_SPEED = 1.2  # m/s: the speed the template curves describe
_TEMPLATE_TOE_OFF = 0.62  # stance fraction of the template curves
_N_HARMONICS = 7  # enough for the knee's swing peak, few enough to stay smooth

# Tables of key points read best one curve per line.
# fmt: off
# Key points (percent of the gait cycle, degrees) of normal level walking at 1.2 m/s.
_KEYPOINTS: Final[dict[tuple[str, str], tuple[tuple[float, float], ...]]] = {
    ("hip", "flexion"): ((0, 31), (8, 30), (30, 9), (50, -11), (56, -10), (64, 0), (76, 22),
                         (90, 34), (100, 31)),
    ("knee", "flexion"): ((0, 4), (4, 8), (14, 20), (22, 15), (38, 4), (46, 6), (54, 15),
                          (63, 42), (72, 64), (78, 56), (90, 20), (98, 3), (100, 4)),
    ("ankle", "flexion"): ((0, 0), (7, -6), (14, -2), (30, 6), (46, 12), (52, 9), (58, -6),
                           (64, -22), (68, -16), (78, -2), (88, 1), (95, 0), (100, 0)),
    ("hip", "adduction"): ((0, 2), (18, 8), (45, 3), (62, -4), (75, -6), (90, -1), (100, 2)),
    ("hip", "rotation"): ((0, 3), (20, 2), (50, -3), (70, -6), (88, 2), (100, 3)),
    ("knee", "adduction"): ((0, 1), (20, 3), (50, 1), (72, 7), (90, 2), (100, 1)),
    ("knee", "rotation"): ((0, -4), (20, 3), (50, -2), (70, -10), (90, -7), (100, -4)),
    ("ankle", "adduction"): ((0, 0), (30, 2), (60, 5), (75, 1), (100, 0)),
    ("ankle", "rotation"): ((0, -10), (45, -7), (70, -15), (85, -12), (100, -10)),
}
# Shifts per degree of ramp ascent (deg/deg): more hip and knee flexion around heel strike and
# more dorsiflexion in stance, to lift the body up the slope.
_ASCENT_PER_DEG: Final = {
    ("hip", "flexion"): ((0, 1.4), (15, 1.2), (40, 0.5), (60, 0.3), (75, 0.8), (90, 1.4),
                         (100, 1.4)),
    ("knee", "flexion"): ((0, 1.5), (12, 1.6), (30, 0.8), (50, 0.2), (70, 0.2), (88, 0.6),
                          (100, 1.5)),
    ("ankle", "flexion"): ((0, 0.6), (20, 0.6), (45, 0.5), (62, 0.0), (80, 0.2), (100, 0.6)),
}
# Shifts per degree of ramp descent: the opposite tendencies — less hip flexion and a more
# plantarflexed foot at heel strike, a knee that yields into flexion through late stance.
_DESCENT_PER_DEG: Final = {
    ("hip", "flexion"): ((0, -0.7), (20, -0.5), (50, 0.2), (70, 0.0), (90, -0.6), (100, -0.7)),
    ("knee", "flexion"): ((0, -0.2), (15, 0.8), (40, 2.0), (55, 2.5), (65, 1.0), (80, 0.0),
                          (100, -0.2)),
    ("ankle", "flexion"): ((0, -0.8), (10, -0.5), (30, 0.1), (50, 0.1), (62, 0.2), (80, -0.2),
                           (100, -0.8)),
}
# fmt: on
# Excursion gain per m/s above the reference speed, per joint (rows) and plane (columns).
_SPEED_GAIN: Final = np.array([[0.2, 0.2, 0.32], [0.2, 0.2, 0.15], [0.2, 0.2, 0.15]])


def _fourier_coefficients(points: tuple[tuple[float, float], ...]) -> np.ndarray:
    """Complex coefficients c₀…c_N of the truncated Fourier series through periodic key points.

    Truncating the spectrum of the piecewise-linear curve is its least-squares projection onto
    the first N harmonics: smooth, periodic, and close to the key points.
    """
    pct, value = np.asarray(points, dtype=float).T
    grid = np.arange(1024) / 1024
    dense = np.interp(grid * 100.0, pct, value, period=100.0)
    return np.fft.rfft(dense)[: _N_HARMONICS + 1] / grid.size


def _coefficient_table(curves: dict) -> np.ndarray:
    table = np.zeros((len(JOINTS), len(PLANES), _N_HARMONICS + 1), dtype=complex)
    for (joint, plane), points in curves.items():
        table[JOINTS.index(joint), PLANES.index(plane)] = _fourier_coefficients(points)
    return table


_TEMPLATE: Final = _coefficient_table(_KEYPOINTS)
_ASCENT: Final = _coefficient_table(_ASCENT_PER_DEG)
_DESCENT: Final = _coefficient_table(_DESCENT_PER_DEG)


def _evaluate(table: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Evaluate a (3, 3, N+1) coefficient table at ``phase`` (cycles) → (T, 3, 3)."""
    harmonics = np.arange(table.shape[-1])
    basis = np.exp(2j * np.pi * np.asarray(phase)[:, None] * harmonics)
    weights = np.where(harmonics == 0, 1.0, 2.0)  # real signal: c₋ₙ = conj(cₙ)
    return np.real(basis @ (table * weights).reshape(-1, harmonics.size).T).reshape(-1, 3, 3)


# --------------------------------------------------------------------------------------------
# Subjects, timing and phase
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubjectParams:
    """What makes one simulated person differ from another.

    ``angle_offsets_deg`` is (side L/R, joint, plane): static offsets such as marker placement
    and pelvic tilt produce in real model outputs. ``emg_gains`` is (side, muscle): electrode
    placement, skin and fat make the same activation give different amplitudes.
    """

    subject_id: str
    height_m: float
    mass_kg: float
    angle_offsets_deg: tuple[tuple[tuple[float, ...], ...], ...]
    emg_gains: tuple[tuple[float, ...], ...]
    excursion_gain: float = 1.0
    pelvic_tilt_deg: float = 10.0

    @classmethod
    def generate(cls, subject_id: str, height_m: float, mass_kg: float, seed: int) -> SubjectParams:
        """A subject with offsets and gains drawn deterministically from ``seed``."""
        rng = np.random.default_rng(seed)
        # Sagittal offsets are shared by both sides (pelvic tilt), the others differ per side.
        scale = np.array([2.0, 3.5, 3.0])  # deg, per plane (adduction, rotation, flexion)
        common = rng.normal(0.0, 1.0, (1, 3, 3)) * scale
        per_side = rng.normal(0.0, 1.0, (2, 3, 3)) * scale * np.array([1.0, 1.0, 0.3])
        offsets = np.round(common * np.array([0.3, 0.3, 1.0]) + per_side, 2)
        gains = np.round(rng.uniform(0.6, 1.4, (2, len(DEMO_MUSCLES))), 3)
        return cls(
            subject_id=subject_id,
            height_m=height_m,
            mass_kg=mass_kg,
            angle_offsets_deg=tuple(tuple(map(tuple, side)) for side in offsets.tolist()),
            emg_gains=tuple(map(tuple, gains.tolist())),
            excursion_gain=round(float(rng.uniform(0.94, 1.06)), 3),
            pelvic_tilt_deg=round(float(rng.uniform(7.0, 13.0)), 2),
        )

    def offsets(self, side: Side) -> np.ndarray:
        return np.asarray(self.angle_offsets_deg[SIDES.index(side)], dtype=float)

    def gains(self, side: Side) -> np.ndarray:
        return np.asarray(self.emg_gains[SIDES.index(side)], dtype=float)


def stride_time_s(speed_mps: float, incline_deg: float = 0.0, height_m: float = 1.75) -> float:
    """Mean stride duration: ≈1.3 s at 0.8 m/s to ≈1.0 s at 1.6 m/s, longer for tall people."""
    base = 1.15 - 0.375 * (speed_mps - _REFERENCE_SPEED)
    return float(base * np.sqrt(height_m / 1.75) * (1.0 + 0.005 * abs(incline_deg)))


def stance_fraction(speed_mps: float) -> float:
    """Fraction of the cycle in stance: ≈0.64 at 0.8 m/s, 0.62 at 1.2, 0.60 at 1.6."""
    return float(np.clip(_TEMPLATE_TOE_OFF - 0.05 * (speed_mps - _REFERENCE_SPEED), 0.56, 0.68))


def _hermite_phase(t: np.ndarray, knots: np.ndarray, slopes: np.ndarray) -> np.ndarray:
    """C¹ monotone phase through (knots[k], k) with the given slopes (cycles per second)."""
    k = np.clip(np.searchsorted(knots, t, side="right") - 1, 0, knots.size - 2)
    h = knots[k + 1] - knots[k]
    s = (t - knots[k]) / h
    h10, h01, h11 = s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
    return k + h01 + h * (slopes[k] * h10 + slopes[k + 1] * h11)


def _smooth_series(values: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Cosine-interpolate per-stride ``values`` (K, ...) with nodes at mid-stride (k + 0.5).

    Gives a value that changes stride to stride without jumps in the curves it scales.
    """
    pos = np.clip(phase - 0.5, 0.0, values.shape[0] - 1.000001)
    j = np.floor(pos).astype(int)
    w = (0.5 - 0.5 * np.cos(np.pi * (pos - j))).reshape((-1,) + (1,) * (values.ndim - 1))
    return values[j] * (1.0 - w) + values[j + 1] * w


# --------------------------------------------------------------------------------------------
# Kinematics, weighting, moments, activations
# --------------------------------------------------------------------------------------------


def _smootherstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x**3 * (x * (6 * x - 15) + 10)


def _bump(phase: np.ndarray, centre: float, kappa: float) -> np.ndarray:
    """Periodic bump (von Mises shape) with peak 1 at ``centre`` (cycles)."""
    return np.exp(kappa * (np.cos(2 * np.pi * (phase - centre)) - 1.0))


def warp_phase(phase: np.ndarray, stance: float) -> np.ndarray:
    """Map a leg's phase to template phase so that toe off at ``stance`` lands on the template's.

    ψ = φ + a·sin(2πφ)/2π keeps heel strikes fixed, is smooth and periodic, and monotone.
    """
    a = (_TEMPLATE_TOE_OFF - stance) * 2 * np.pi / np.sin(2 * np.pi * stance)
    return phase + a * np.sin(2 * np.pi * phase) / (2 * np.pi)


def joint_angles(
    phase: np.ndarray,
    *,
    speed_mps: float,
    incline_deg: float = 0.0,
    offsets_deg: np.ndarray | None = None,
    excursion_gain: float = 1.0,
    stride_gain: np.ndarray | None = None,
    stride_offset_deg: np.ndarray | None = None,
) -> np.ndarray:
    """Joint angles (T, 3, 3) in degrees for one leg at gait ``phase`` (cycles, 0 = heel strike).

    ``stride_gain`` / ``stride_offset_deg`` are (T, 3, 3) smooth per-stride jitter (or None).
    """
    phase = np.asarray(phase, dtype=float)
    psi = warp_phase(phase, stance_fraction(speed_mps))
    mean = np.real(_TEMPLATE[..., 0])
    gain = (1.0 + _SPEED_GAIN * (speed_mps - _REFERENCE_SPEED)) * excursion_gain
    if stride_gain is not None:
        gain = gain * stride_gain
    angles = mean + gain * (_evaluate(_TEMPLATE, psi) - mean)
    if incline_deg > 0:
        angles = angles + incline_deg * _evaluate(_ASCENT, psi)
    elif incline_deg < 0:
        angles = angles - incline_deg * _evaluate(_DESCENT, psi)
    if offsets_deg is not None:
        angles = angles + offsets_deg
    if stride_offset_deg is not None:
        angles = angles + stride_offset_deg
    return angles


def stance_weights(phase: np.ndarray, stance: float, speed_mps: float = _REFERENCE_SPEED):
    """Smooth weights of one leg at ``phase``: (stance window, load share, vertical force).

    - stance window: ≈1 from heel strike to toe off, ≈0 in swing (a few % transitions);
    - load share: the leg's share of body weight, rising through loading response until the
      other foot leaves the ground (phase ``stance − 0.5``), falling through pre-swing;
    - vertical force (body weights): the load share with the classic double hump, deeper at
      higher speed.
    """
    frac = np.mod(phase, 1.0)
    centre, half = stance / 2, np.pi * stance
    window = 1.0 / (1.0 + np.exp(-12.0 * (np.cos(2 * np.pi * (frac - centre)) - np.cos(half))))
    single_support = stance - 0.5
    load = _smootherstep(frac / single_support) * (
        1.0 - _smootherstep((frac - 0.5) / single_support)
    )
    load = np.where(frac < stance, load, 0.0)
    v = speed_mps / _REFERENCE_SPEED
    mid = (single_support + 0.5) / 2
    force = load * (1.0 + 0.12 * v - 0.25 * v * np.exp(-(((frac - mid) / 0.09) ** 2)))
    return window, load, force


@dataclass(frozen=True)
class MomentModel:
    """Parameters of the dynamics-like moment model (per kg of body mass).

    Sagittal: M = load·(−K·(θ − θ_eq)) − window·B_s·θ̇ + (1 − 0.8·load)·I·θ̈ + B·θ̇: while the
    foot carries weight the ground reaction, not the limb's inertia, dominates. Frontal: the body-weight
    moment about the joint, M = −F·(c + K_f·θ), with F the vertical force in body weights.
    Transverse: −F·K_t·(θ − θ_eq) + 0.2·I·θ̈. K in N·m/kg per degree, B in N·m/kg per rad/s, I in m².
    """

    stiffness: tuple[float, float, float] = (0.047, 0.05, 0.108)  # hip, knee, ankle flexion
    equilibrium_deg: tuple[float, float, float] = (9.0, 8.0, -3.0)
    stance_damping: tuple[float, float, float] = (0.04, 0.04, 0.05)
    inertia: tuple[float, float, float] = (0.012, 0.0025, 0.0006)
    damping: tuple[float, float, float] = (0.02, 0.01, 0.005)
    frontal_arm: tuple[float, float, float] = (0.58, 0.3, 0.06)
    frontal_stiffness: tuple[float, float, float] = (0.04, 0.025, 0.01)
    transverse_stiffness: tuple[float, float, float] = (0.025, 0.015, 0.01)
    transverse_equilibrium_deg: tuple[float, float, float] = (0.0, -4.0, -10.0)
    knee_release: tuple[float, float] = (0.38, 0.14)  # knee stiffness fades over mid stance


DEFAULT_MOMENTS: Final = MomentModel()


def joint_moments(
    angles: np.ndarray,
    phase: np.ndarray,
    rate_hz: float,
    *,
    speed_mps: float,
    equilibrium_offsets_deg: np.ndarray | None = None,
    model: MomentModel = DEFAULT_MOMENTS,
) -> np.ndarray:
    """Internal joint moments (T, 3, 3) in N·m/kg that follow from the angle time series.

    ``angles`` (T, 3, 3) in degrees, sampled at ``rate_hz``, with the leg's ``phase``.
    ``equilibrium_offsets_deg`` (3, 3) moves the equilibrium angles with a subject's static
    offsets, so that a marker-placement offset does not read as a load.
    """
    angles = np.asarray(angles, dtype=float)
    stance = stance_fraction(speed_mps)
    window, load, force = (w[:, None] for w in stance_weights(phase, stance, speed_mps))
    frac = np.mod(phase, 1.0)
    start, width = model.knee_release
    knee_load = load[:, 0] * (1.0 - _smootherstep((frac - start) / width))
    sagittal_load = np.stack([load[:, 0], knee_load, load[:, 0]], axis=1)

    rad = np.deg2rad(angles)
    velocity = np.gradient(rad, 1.0 / rate_hz, axis=0)
    acceleration = np.gradient(velocity, 1.0 / rate_hz, axis=0)
    offsets = np.zeros((3, 3)) if equilibrium_offsets_deg is None else equilibrium_offsets_deg

    moments = np.empty_like(angles)
    flex = angles[..., _FLEX]
    moments[..., _FLEX] = (
        -sagittal_load
        * np.asarray(model.stiffness)
        * (flex - model.equilibrium_deg - offsets[:, _FLEX])
        - window * np.asarray(model.stance_damping) * velocity[..., _FLEX]
        + (1.0 - 0.8 * load) * np.asarray(model.inertia) * acceleration[..., _FLEX]
        + np.asarray(model.damping) * velocity[..., _FLEX]
    )
    # Adduction positive, so the abductor moment that holds the pelvis up is negative.
    moments[..., _ADD] = (
        -force
        * (
            np.asarray(model.frontal_arm)
            + np.asarray(model.frontal_stiffness) * (angles[..., _ADD] - offsets[:, _ADD])
        )
        + 0.2 * np.asarray(model.inertia) * acceleration[..., _ADD]
    )
    # The limb's inertia about its long axis keeps swing moments small but never exactly 0
    # (exact zeros are what the quality gate refuses as a dropout).
    moments[..., _ROT] = (
        -force
        * np.asarray(model.transverse_stiffness)
        * (angles[..., _ROT] - model.transverse_equilibrium_deg - offsets[:, _ROT])
        + 0.2 * np.asarray(model.inertia) * acceleration[..., _ROT]
    )
    return moments


_TONIC: Final = np.array([0.03, 0.03, 0.03, 0.04, 0.03, 0.03, 0.03, 0.03, 0.04, 0.03])
_ELECTROMECHANICAL_DELAY_S = 0.04


def _lead(x: np.ndarray, samples: int) -> np.ndarray:
    """``x`` read ``samples`` ahead (the last value repeated at the end)."""
    return np.concatenate([x[samples:], np.repeat(x[-1:], samples, axis=0)]) if samples else x


def _gaussian_smooth(x: np.ndarray, sigma_samples: float) -> np.ndarray:
    """Gaussian smoothing along axis 0 with edge padding, vectorised over the other axes."""
    half = int(np.ceil(3 * sigma_samples))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma_samples) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(x, [(half, half)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, kernel.size, axis=0)
    return windows @ kernel


def muscle_activations(
    phase: np.ndarray,
    angles: np.ndarray,
    moments: np.ndarray,
    rate_hz: float,
    *,
    speed_mps: float,
    incline_deg: float = 0.0,
) -> np.ndarray:
    """Activations (T, len(DEMO_MUSCLES)) in 0..1 from gait phase, angles and moments.

    Each muscle gets a tonic baseline, the share of the joint moment it produces (plantarflexors
    with the plantarflexor moment, quadriceps with the knee extensor moment, gluteus medius with
    the hip abductor moment, hamstrings with the hip extensor and terminal-swing knee flexor
    moments) and the phase-locked bursts gait needs (TA lifting the foot in swing and lowering it
    after heel strike, hamstrings braking the swing, RF in pre-swing), all scaled with speed and
    incline. Moments are read 40 ms ahead: EMG leads the force it produces.
    """
    phase = np.asarray(phase, dtype=float)
    stance = stance_fraction(speed_mps)
    window, _, _ = stance_weights(phase, stance, speed_mps)
    swing = 1.0 - window
    ahead = _lead(moments, round(_ELECTROMECHANICAL_DELAY_S * rate_hz))
    hip, knee, ankle = ahead[:, _HIP], ahead[:, _KNEE], ahead[:, _ANKLE]
    plantarflexor = np.maximum(-ankle[:, _FLEX], 0.0)
    dorsiflexor = np.maximum(ankle[:, _FLEX], 0.0)
    knee_extensor = np.maximum(-knee[:, _FLEX], 0.0)
    knee_flexor = np.maximum(knee[:, _FLEX], 0.0)
    hip_extensor = np.maximum(-hip[:, _FLEX], 0.0)
    hip_flexor = np.maximum(hip[:, _FLEX], 0.0)
    abductor = np.maximum(-hip[:, _ADD], 0.0)
    ankle_velocity = np.gradient(angles[:, _ANKLE, _FLEX], 1.0 / rate_hz)  # deg/s
    lift = np.maximum(ankle_velocity, 0.0) * swing  # dorsiflexing the foot in swing

    drive = np.zeros((phase.size, len(DEMO_MUSCLES)))
    drive[:, _M["vastus_lateralis"]] = 0.75 * knee_extensor + 0.12 * _bump(phase, 0.96, 40)
    drive[:, _M["vastus_medialis"]] = 0.68 * knee_extensor + 0.10 * _bump(phase, 0.96, 40)
    drive[:, _M["rectus_femoris"]] = (
        0.45 * knee_extensor
        + 0.12 * hip_flexor * _bump(phase, stance - 0.1, 20)
        + 0.18 * _bump(phase, stance - 0.02, 30)
    )
    drive[:, _M["tibialis_anterior"]] = (
        0.32 * _bump(phase, 0.02, 25)
        + 0.10 * _bump(phase, stance + 0.06, 25)
        + 0.0012 * lift
        + 0.6 * dorsiflexor
    )
    hamstring_swing = _bump(phase, 0.91, 22)
    drive[:, _M["biceps_femoris"]] = (
        0.28 * hamstring_swing + 0.22 * hip_extensor + 0.6 * knee_flexor * swing
    )
    drive[:, _M["semitendinosus"]] = (
        0.30 * hamstring_swing + 0.18 * hip_extensor + 0.6 * knee_flexor * swing
    )
    # Soleus carries the plantarflexor moment through stance; the gastrocnemii are recruited
    # later, for push-off (lateral later still), so the three never share one shape.
    push_off = _smootherstep((np.mod(phase, 1.0) - 0.1) / max(stance - 0.2, 0.1))
    drive[:, _M["gastrocnemius_medialis"]] = 0.36 * plantarflexor * (0.4 + 0.6 * push_off)
    drive[:, _M["gastrocnemius_lateralis"]] = 0.28 * plantarflexor * (0.2 + 0.8 * push_off**2)
    drive[:, _M["soleus"]] = 0.42 * plantarflexor
    drive[:, _M["gluteus_medius"]] = 0.36 * abductor + 0.08 * _bump(phase, 0.96, 40)

    # Faster and steeper walking recruits more: EMG grows faster than the moments do.
    scale = (speed_mps / _REFERENCE_SPEED) ** 0.8 * (1.0 + 0.02 * abs(incline_deg))
    activation = _TONIC + scale * _gaussian_smooth(drive, 0.02 * rate_hz)
    return _saturate(np.maximum(activation, 0.0))


def _saturate(activation: np.ndarray, knee: float = 0.8) -> np.ndarray:
    """Activations above ``knee`` approach 1 smoothly (C¹) instead of being clipped flat: a
    muscle's drive saturates, it does not hold a constant that reads as a frozen signal."""
    over = activation > knee
    out = activation.copy()
    out[over] = knee + (1.0 - knee) * np.tanh((activation[over] - knee) / (1.0 - knee))
    return out


# --------------------------------------------------------------------------------------------
# Markers
# --------------------------------------------------------------------------------------------


def _leg_points(
    angles: np.ndarray, height_m: float, pelvic_tilt_deg: float
) -> dict[str, np.ndarray]:
    """Sagittal (T, 2) positions (forward, up) in metres relative to the hip joint centre.

    Segment orientations from the vertical, positive when the distal end is forward: thigh =
    hip flexion − pelvic tilt, shank = thigh − knee flexion; foot pitch (toe up) = shank +
    dorsiflexion. Segment lengths are Winter's fractions of body height.
    """
    thigh = np.deg2rad(angles[:, _HIP, _FLEX] - pelvic_tilt_deg)
    shank = thigh - np.deg2rad(angles[:, _KNEE, _FLEX])
    pitch = shank + np.deg2rad(angles[:, _ANKLE, _FLEX])
    h = height_m
    knee = 0.245 * h * np.stack([np.sin(thigh), -np.cos(thigh)], axis=1)
    ankle = knee + 0.246 * h * np.stack([np.sin(shank), -np.cos(shank)], axis=1)
    forward = np.stack([np.cos(pitch), np.sin(pitch)], axis=1)
    up = np.stack([-np.sin(pitch), np.cos(pitch)], axis=1)
    sole = ankle - 0.039 * h * up
    return {
        "KNE": knee,
        "ANK": ankle,
        "HEE": sole + 0.02 * h * up - 0.035 * h * forward,
        "TOE": sole + 0.012 * h * up + 0.075 * h * forward,
        "sole_heel": sole - 0.03 * h * forward,
        "sole_ball": sole + 0.08 * h * forward,
    }


def leg_markers(
    angles: dict[Side, np.ndarray],
    phase: dict[Side, np.ndarray],
    rate_hz: float,
    *,
    speed_mps: float,
    incline_deg: float,
    height_m: float,
    pelvic_tilt_deg: float,
) -> dict[str, np.ndarray]:
    """Marker trajectories (T, 3) in mm: X forward, Y left, Z up (lab frame, overground).

    ``angles`` are the legs' true angles (without model-output offsets). The pelvis moves
    forward at the walking speed, up the slope on a ramp, and sits at the height the supporting
    legs allow: each leg's lowest sole point is weighted by how much it supports the body — from
    its heel strike until the other heel strikes — so the heel meets the ground at heel strike
    and the pelvis rises and falls naturally.
    """
    n = phase["L"].size
    slope = np.tan(np.deg2rad(incline_deg))
    stance = stance_fraction(speed_mps)
    legs = {side: _leg_points(angles[side], height_m, pelvic_tilt_deg) for side in SIDES}
    # Sole height above the (sloped) ground under it, relative to the hip joint centre.
    lowest = np.stack(
        [
            np.minimum(
                legs[s]["sole_heel"][:, 1] - slope * legs[s]["sole_heel"][:, 0],
                legs[s]["sole_ball"][:, 1] - slope * legs[s]["sole_ball"][:, 0],
            )
            for s in SIDES
        ]
    )
    support = np.stack(
        [
            stance_weights(phase[s], stance, speed_mps)[0]
            * (1.0 - _smootherstep((np.mod(phase[s], 1.0) - 0.42) / 0.1))
            for s in SIDES
        ]
    )
    hip_z = -np.sum(support * lowest, axis=0) / np.maximum(support.sum(axis=0), 1e-9)
    t = np.arange(n) / rate_hz
    hip_x = speed_mps * (t - t[-1] / 2)  # centred on the lab origin
    hip_z = hip_z + slope * hip_x  # walking up (or down) the ramp
    sway = 0.02 * np.cos(2 * np.pi * (phase["L"] - 0.3))  # towards the supporting leg
    s = height_m / 1.75
    lateral = {"KNE": 0.095, "ANK": 0.085, "HEE": 0.065, "TOE": 0.08}

    def at(x: np.ndarray | float, y: np.ndarray | float, z: np.ndarray | float) -> np.ndarray:
        return 1000.0 * np.stack(np.broadcast_arrays(x, y, z), axis=1)

    markers = {"SACR": at(hip_x - 0.12 * s, sway, hip_z + 0.09 * s)}
    for side, sign in zip(SIDES, (1.0, -1.0), strict=True):
        markers[f"{side}ASI"] = at(hip_x + 0.055 * s, sway + sign * 0.12 * s, hip_z + 0.075 * s)
        for part, offset in lateral.items():
            rel = legs[side][part]
            markers[f"{side}{part}"] = at(
                hip_x + rel[:, 0], sway + sign * offset * s, hip_z + rel[:, 1]
            )
    return {name: markers[name] for name in MARKERS}


# --------------------------------------------------------------------------------------------
# A whole trial
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulatedTrial:
    """One simulated trial. Times are absolute in the file's time base: point frame k is at
    ``(first_frame + k) / point_rate_hz`` s, analog sample j at ``first_frame / point_rate_hz
    + j / analog_rate_hz`` s; event times use the same base.

    - ``kinematics`` / ``kinetics``: {side: (T, 3, 3)} degrees / internal N·m/kg, canonical.
    - ``phase``: {side: (T,)} continuous gait phase in cycles (integer = heel strike).
    - ``activations`` / ``emg``: {side: (Ta, len(muscles))} 0..1 / volts at the analog rate.
    - ``markers``: {name: (T, 3)} mm, X forward, Y left, Z up.
    """

    subject_id: str
    activity: str
    speed_mps: float
    incline_deg: float
    body_mass_kg: float
    height_m: float
    point_rate_hz: float
    analog_rate_hz: float
    first_frame: int
    muscles: tuple[str, ...]
    kinematics: dict[Side, np.ndarray]
    kinetics: dict[Side, np.ndarray]
    phase: dict[Side, np.ndarray]
    activations: dict[Side, np.ndarray]
    emg: dict[Side, np.ndarray]
    markers: dict[str, np.ndarray]
    heel_strikes: dict[Side, np.ndarray]
    toe_offs: dict[Side, np.ndarray]
    mains_hz: float | None

    @property
    def n_frames(self) -> int:
        return int(self.kinematics["L"].shape[0])

    @property
    def n_analog(self) -> int:
        return int(self.emg["L"].shape[0])

    @property
    def start_s(self) -> float:
        return self.first_frame / self.point_rate_hz

    def times(self) -> np.ndarray:
        return self.start_s + np.arange(self.n_frames) / self.point_rate_hz


def simulate_trial(
    *,
    subject: SubjectParams,
    activity: str,
    speed_mps: float,
    incline_deg: float,
    n_strides: int,
    seed: int,
    point_rate_hz: float = 100.0,
    analog_rate_hz: float = 2000.0,
    variability: bool = True,
    mains_hz: float | None = None,
    first_frame: int = 0,
    emg_amplitude_v: float = 5e-4,
    noise_rms_v: float = 4e-6,
    hum_amplitude_v: float = 1.5e-4,
) -> SimulatedTrial:
    """Simulate one walking trial with ``n_strides`` complete strides on each leg.

    ``variability=False`` removes stride-to-stride jitter and the random start phase (the
    ground truth is then exactly periodic); EMG stays a random process either way. Hum at
    ``mains_hz`` (and its third harmonic) is added only when ``mains_hz`` is given.
    """
    if activity not in ACTIVITIES:
        raise ValueError(f"unknown activity {activity!r}; known: {ACTIVITIES}")
    ratio = analog_rate_hz / point_rate_hz
    if ratio != int(ratio) or ratio < 1:
        raise ValueError("the analog rate must be an integer multiple of the point rate")
    ratio = int(ratio)
    timing_rng, kin_rng, marker_rng, emg_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
    )

    # Phase of the left leg: knots at heel strikes, C¹ Hermite in between.
    n_cycles = n_strides + 3
    mean_stride = stride_time_s(speed_mps, incline_deg, subject.height_m)
    jitter = np.clip(timing_rng.normal(0.0, 0.015, n_cycles), -0.03, 0.03)
    durations = mean_stride * (1.0 + (jitter if variability else np.zeros(n_cycles)))
    knots = np.concatenate([[0.0], np.cumsum(durations)])
    # Slope at a knot: the mean cadence of the strides either side (keeps the phase C¹).
    slopes = np.concatenate(
        [[1.0 / durations[0]], 2.0 / (durations[:-1] + durations[1:]), [1.0 / durations[-1]]]
    )
    fine_t = np.arange(int(knots[-1] * analog_rate_hz)) / analog_rate_hz
    fine_phase = _hermite_phase(fine_t, knots, slopes)

    # Start part-way through a cycle so that both legs have n_strides whole strides.
    phase0 = 0.2 + (timing_rng.uniform(-0.1, 0.1) if variability else 0.0)
    i0 = int(np.searchsorted(fine_phase, phase0))
    i_end = int(np.searchsorted(fine_phase, n_strides + 1.25))
    n_frames = (i_end - i0) // ratio
    n_analog = n_frames * ratio
    phase_left = fine_phase[i0 : i0 + n_analog]
    phase_analog = {"L": phase_left, "R": phase_left - 0.5}
    t0 = fine_t[i0]
    start_s = first_frame / point_rate_hz

    def event_times(targets: np.ndarray) -> np.ndarray:
        times = np.interp(targets, fine_phase, fine_t) - t0
        keep = (times >= 0) & (times <= (n_frames - 1) / point_rate_hz)
        return start_s + times[keep]

    stance = stance_fraction(speed_mps)
    cycles = np.arange(-1, n_cycles + 1, dtype=float)
    heel_strikes: dict[Side, np.ndarray] = {
        "L": event_times(cycles),
        "R": event_times(cycles + 0.5),
    }
    toe_offs: dict[Side, np.ndarray] = {
        "L": event_times(cycles + stance),
        "R": event_times(cycles + 0.5 + stance),
    }

    offsets_rng = kin_rng.spawn(2)
    kinematics: dict[Side, np.ndarray] = {}
    kinetics: dict[Side, np.ndarray] = {}
    phase: dict[Side, np.ndarray] = {}
    activations: dict[Side, np.ndarray] = {}
    for side, rng in zip(SIDES, offsets_rng, strict=True):
        phase[side] = phase_analog[side][::ratio]
        gains: np.ndarray | None
        shifts: np.ndarray | None
        if variability:
            n_nodes = n_cycles + 3
            gains = _smooth_series(
                np.clip(rng.normal(1.0, 0.03, (n_nodes, 3, 3)), 0.92, 1.08), phase[side] + 1
            )
            shifts = _smooth_series(rng.normal(0.0, 0.6, (n_nodes, 3, 3)), phase[side] + 1)
        else:
            gains = shifts = None
        kinematics[side] = joint_angles(
            phase[side],
            speed_mps=speed_mps,
            incline_deg=incline_deg,
            offsets_deg=subject.offsets(side),
            excursion_gain=subject.excursion_gain,
            stride_gain=gains,
            stride_offset_deg=shifts,
        )
        kinetics[side] = joint_moments(
            kinematics[side],
            phase[side],
            point_rate_hz,
            speed_mps=speed_mps,
            equilibrium_offsets_deg=subject.offsets(side),
        )
        coarse = muscle_activations(
            phase[side],
            kinematics[side],
            kinetics[side],
            point_rate_hz,
            speed_mps=speed_mps,
            incline_deg=incline_deg,
        )
        activations[side] = _upsample(coarse, ratio)

    # EMG of both legs at once: one carrier per channel, then per-electrode gains.
    both = np.concatenate([activations["L"], activations["R"]], axis=1)
    gains = np.concatenate([subject.gains("L"), subject.gains("R")])
    emg = synthesize_emg(both, analog_rate_hz, emg_rng, amplitude_v=emg_amplitude_v) * gains
    emg = add_sensor_noise(emg, analog_rate_hz, noise_rms_v, emg_rng)
    if mains_hz is not None:
        emg = add_mains_hum(emg, analog_rate_hz, mains_hz, hum_amplitude_v, emg_rng)
    n_m = len(DEMO_MUSCLES)

    markers = leg_markers(
        {side: kinematics[side] - subject.offsets(side) for side in SIDES},
        phase,
        point_rate_hz,
        speed_mps=speed_mps,
        incline_deg=incline_deg,
        height_m=subject.height_m,
        pelvic_tilt_deg=subject.pelvic_tilt_deg,
    )
    if variability:  # sub-millimetre marker noise, as a calibrated system gives
        markers = {k: v + marker_rng.normal(0.0, 0.3, v.shape) for k, v in markers.items()}

    return SimulatedTrial(
        subject_id=subject.subject_id,
        activity=activity,
        speed_mps=speed_mps,
        incline_deg=incline_deg,
        body_mass_kg=subject.mass_kg,
        height_m=subject.height_m,
        point_rate_hz=point_rate_hz,
        analog_rate_hz=analog_rate_hz,
        first_frame=first_frame,
        muscles=DEMO_MUSCLES,
        kinematics=kinematics,
        kinetics=kinetics,
        phase=phase,
        activations=activations,
        emg={"L": emg[:, :n_m], "R": emg[:, n_m:]},
        markers=markers,
        heel_strikes=heel_strikes,
        toe_offs=toe_offs,
        mains_hz=mains_hz,
    )


def _upsample(x: np.ndarray, ratio: int) -> np.ndarray:
    """Linear interpolation of (T, C) by an integer ``ratio`` → (T·ratio, C), last value held."""
    pos = np.arange(x.shape[0] * ratio) / ratio
    j = np.minimum(np.floor(pos).astype(int), x.shape[0] - 2)
    w = np.clip(pos - j, 0.0, 1.0)[:, None]
    return x[j] * (1.0 - w) + x[j + 1] * w

"""Simulation helpers shared by the miniature generators: from a simulated trial of
:mod:`builder.synthetic.gait_model` to the arrays a dataset stores (strides on a time grid, raw EMG).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from builder.conventions import SIDES, Side
from builder.synthetic import gait_model as gm
from builder.synthetic.emg_model import add_mains_hum, add_sensor_noise, synthesize_emg


def activity_of(incline_deg: float) -> str:
    """The gait model's activity for a slope: walk, ramp_ascent or ramp_descent."""
    if incline_deg > 0:
        return "ramp_ascent"
    return "ramp_descent" if incline_deg < 0 else "walk"


def analog_times(sim: gm.SimulatedTrial) -> np.ndarray:
    """Time (s, the trial's time base) of every analog (EMG) sample."""
    return sim.start_s + np.arange(sim.n_analog) / sim.analog_rate_hz


def recorded_heel_strikes(sim: gm.SimulatedTrial, side: Side) -> np.ndarray:
    """Heel strikes of ``side`` (s) inside the recorded frames."""
    times = sim.times()
    hs = sim.heel_strikes[side]
    return hs[(hs >= times[0]) & (hs <= times[-1])]


def resample(times: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``values`` (T, ...) sampled at ``times``, linearly interpolated at ``at`` (any shape,
    e.g. (N strides, P points)): shape ``(*at.shape, *values.shape[1:])``."""
    flat = values.reshape(values.shape[0], -1)
    columns = [np.interp(at.ravel(), times, flat[:, c]) for c in range(flat.shape[1])]
    return np.stack(columns, axis=-1).reshape(*at.shape, *values.shape[1:])


def record_emg(
    activations: np.ndarray,
    rate_hz: float,
    rng: np.random.Generator,
    *,
    gains: np.ndarray | None = None,
    mains_hz: float | None = None,
) -> np.ndarray:
    """Raw EMG (V) of activations (T, channels): the EMG model's carrier, per-electrode
    ``gains``, 4 µV sensor noise and, with ``mains_hz``, 150 µV of hum (the gait model's
    recording chain, for channels it does not simulate)."""
    emg = synthesize_emg(activations, rate_hz, rng)
    if gains is not None:
        emg = emg * gains
    emg = add_sensor_noise(emg, rate_hz, 4e-6, rng)
    if mains_hz is not None:
        emg = add_mains_hum(emg, rate_hz, mains_hz, 1.5e-4, rng)
    return emg


@dataclass(frozen=True)
class StrideSet:
    """One leg's strides, time-normalised: ``time`` (N, P) stride time stamps (both heel
    strikes included), ``kinematics`` / ``kinetics`` (N, P, 3, 3) canonical (degrees, internal
    N·m/kg), ``activations`` (N, P_emg, len(gm.DEMO_MUSCLES)) in 0..1 times electrode gains."""

    time: np.ndarray
    kinematics: np.ndarray
    kinetics: np.ndarray
    activations: np.ndarray

    def envelope(self, muscle: str) -> np.ndarray:
        return self.activations[..., gm.DEMO_MUSCLES.index(muscle)]


def simulate_strides(
    *,
    subject: gm.SubjectParams,
    speed_mps: float,
    incline_deg: float,
    n_strides: int,
    seed: int,
    points: int,
    emg_points: int,
) -> dict[Side, StrideSet]:
    """Simulate a treadmill trial and cut each leg into ``n_strides`` time-normalised strides."""
    sim = gm.simulate_trial(
        subject=subject,
        activity=activity_of(incline_deg),
        speed_mps=speed_mps,
        incline_deg=incline_deg,
        n_strides=n_strides,
        seed=seed,
        point_rate_hz=100.0,
        analog_rate_hz=1000.0,
    )
    frames = sim.times()
    analog = analog_times(sim)
    out = {}
    for side in SIDES:
        hs = recorded_heel_strikes(sim, side)[: n_strides + 1]
        time = np.stack([np.linspace(a, b, points) for a, b in pairwise(hs)])
        emg_time = np.stack([np.linspace(a, b, emg_points) for a, b in pairwise(hs)])
        out[side] = StrideSet(
            time=time,
            kinematics=resample(frames, sim.kinematics[side], time),
            kinetics=resample(frames, sim.kinetics[side], time),
            activations=resample(analog, sim.activations[side], emg_time) * subject.gains(side),
        )
    return out

"""Typed records passed between the pipeline stages.

catalogue --TrialSpec--> source adapter --TrialRecording--> processing --StrideBatch--> store

Arrays carry their sampling rate, start time and units (as pyomeca / kineticstoolkit do), so a
processing function never has to guess what a number means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from builder.conventions import EmgKind, Side


@dataclass(frozen=True)
class TimeSeries:
    """Uniformly sampled samples along axis 0, with the rate and units that give them meaning."""

    data: np.ndarray  # (T, ...) float
    rate_hz: float
    start_s: float  # time of data[0] in the source file's own time base (absolute seconds)
    units: str

    def __post_init__(self) -> None:
        if self.data.ndim < 1:
            raise ValueError("a time series needs a time axis")
        if not self.rate_hz > 0:
            raise ValueError(f"sampling rate must be positive, got {self.rate_hz}")

    @property
    def n_samples(self) -> int:
        return int(self.data.shape[0])

    @property
    def end_s(self) -> float:
        """Time of the last sample."""
        return self.start_s + (self.n_samples - 1) / self.rate_hz

    def times(self) -> np.ndarray:
        return self.start_s + np.arange(self.n_samples) / self.rate_hz


@dataclass(frozen=True)
class SideRecording:
    """Everything one leg contributes to a trial, already in the canonical conventions.

    - ``emg``: (T, 13) in volts at the source's native rate; a muscle the source does not
      record is a NaN column (never zeros). For ``emg_kind == "envelope"`` it holds envelopes.
    - ``kinematics``: (T, 3, 3) degrees, dims (joint, plane), canonical signs; NaN where absent.
    - ``kinetics``: (T, 3, 3) internal moments in N·m/kg; NaN where absent.
    - ``heel_strikes_s`` / ``toe_offs_s``: event times in the source time base, sorted.
    - ``kinetics_valid_s``: (K, 2) time windows in which the kinetics are trustworthy (e.g. the
      foot was on a force plate); ``None`` means the whole recording.
    - ``heel_strike_sources``: which detector gave each heel strike (``"events"``,
      ``"force_plate"``, ``"kinematics"``, ...), parallel to ``heel_strikes_s``; empty means
      all came from the recording's ``event_source``. Each stride records its two ends' sources.
    """

    side: Side
    emg: TimeSeries | None
    kinematics: TimeSeries | None
    kinetics: TimeSeries | None
    heel_strikes_s: np.ndarray
    toe_offs_s: np.ndarray = field(default_factory=lambda: np.empty(0))
    kinetics_valid_s: np.ndarray | None = None
    heel_strike_sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.heel_strike_sources and len(self.heel_strike_sources) != len(self.heel_strikes_s):
            raise ValueError("heel_strike_sources must name the source of every heel strike")


# Trial-table columns an adapter may set per recording (a file can hold several subjects,
# activities or speeds); the rest (dataset, licence, ...) are the catalogue entry's.
RECORDING_METADATA = (
    "subject",
    "activity",
    "trial",
    "subtrial",
    "speed_mps",
    "incline_deg",
    "condition",
    "population",
)


@dataclass(frozen=True)
class TrialRecording:
    """One recording an adapter read: a continuous trial, or a set of pre-segmented strides.

    ``sides`` may hold several :class:`SideRecording` per leg: a source that ships strides
    already cut (or time-normalised) gives one per stride, each spanning exactly its two heel
    strikes (see :func:`builder.datasets.segments.cycle_sides`). ``meta`` overrides trial-table
    columns (keys from :data:`RECORDING_METADATA`) for this recording; activity tokens go
    through the catalogue's ``activity_map``. ``times_absolute`` is False when the source gives
    stride durations but no times: strides then carry no ``source_start_s``.
    ``shared_emg`` names groups of muscles one channel feeds on purpose.
    """

    sides: tuple[SideRecording, ...]
    emg_kind: EmgKind
    event_source: str  # "events", "force_plate", "kinematics", "pre_segmented", ...
    mains_hz: float | None = None  # mains frequency where the recording may carry hum
    notes: tuple[str, ...] = ()  # non-fatal findings, copied into the build report
    meta: dict[str, Any] = field(default_factory=dict)
    times_absolute: bool = True
    # Muscles the catalogue explicitly feeds from one channel (e.g. one electrode over both
    # gastrocnemius heads): the quality gate does not call them duplicates.
    shared_emg: tuple[frozenset[str], ...] = ()


@dataclass(frozen=True)
class TrialSpec:
    """One row of the trial table: a raw trial and everything needed to build it.

    Picklable and hashable by content, so it can travel to Dask workers and key their results.
    It carries no storage options (credentials): the pipeline hands those to the task once.
    """

    source: str  # catalogue entry name
    adapter: str  # registered adapter name (the catalogue's ``driver``)
    url: str  # fsspec URL of the trial's main file
    dataset: str
    subject: str
    activity: str
    trial: str
    subtrial: str = ""
    speed_mps: float = float("nan")
    incline_deg: float = 0.0
    condition: str = ""
    population: str = "healthy"
    licence: str = ""
    citation: str = ""
    emg_kind: EmgKind = "raw"
    file_id: str = ""  # changes when the file changes (size + ETag/mtime)
    activity_map: dict[str, str] = field(default_factory=dict)  # source token -> vocabulary
    options: dict[str, Any] = field(default_factory=dict)  # adapter options (validated)
    processing: dict[str, Any] = field(default_factory=dict)  # EMG processing settings
    root: str = field(default="", compare=False, repr=False)  # files outside it are refused
    # The unit inside a file that packs many (a subject, a trial: its path in the file, as the
    # adapter's ``parts`` names it) that this row reads alone; "" = the whole file.
    part: str = ""

    @property
    def label(self) -> str:
        """Human-readable name for progress and reports; the file name keeps it unique."""
        return f"{self.dataset}/{self.subject}/{self.trial} ({PurePosixPath(self.url).name})"


@dataclass(frozen=True)
class StrideBatch:
    """All strides of one trial in store layout (N strides), before subject normalisation.

    ``emg`` rows of all strides are concatenated; stride i is rows
    ``emg_offsets[i]:emg_offsets[i+1]``. EMG is in volts here; the store divides by the
    per-subject scale at write time and keeps the scale.
    """

    emg: np.ndarray  # (ΣT, 13) float32 at 1 kHz
    emg_offsets: np.ndarray  # (N + 1,) int64
    emg_envelope: np.ndarray  # (N, 200, 13) float32
    kinematics: np.ndarray  # (N, 200, 3, 3) float32
    kinetics: np.ndarray  # (N, 200, 3, 3) float32
    emg_mask: np.ndarray  # (N, 13) bool
    kinematics_mask: np.ndarray  # (N, 3, 3) bool
    kinetics_mask: np.ndarray  # (N, 3, 3) bool
    envelope_peak: np.ndarray  # (N, 13) float32, volts; NaN where the channel is absent
    side: np.ndarray  # (N,) '<U1'
    start_s: np.ndarray  # (N,) float64, source time base
    duration_s: np.ndarray  # (N,) float64
    event_source: np.ndarray  # (N,) str: the detectors of the stride's two heel strikes

    @property
    def n_strides(self) -> int:
        return int(self.side.shape[0])

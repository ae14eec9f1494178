"""Moghadam, Yeung & Choisne 2023 (Sci Rep 13:5046): overground walking, 100 Hz EMG envelopes,
OpenSim joint angles (.mot) and moments (.sto), one file per trial and modality.

Layout (``Gait_Time_Series/<P>Data/{EMG,IMU,Joints_Kinematics,Joints_Kinetics}/<trial>.*``):

- ``EMG/<trial>.csv``: a time column (``time`` or ``Time``) and 16 envelope columns, 8 muscles
  per leg (``R``/``L`` + muscle). The names are matched ignoring case, ``_``, ``-``, ``.`` and
  spaces; when they do not match, the catalogue's ``emg.order`` (the documented column order)
  is used positionally, and the recording says so in its notes.
- ``Joints_Kinematics/<trial>.mot`` / ``Joints_Kinetics/<trial>.sto``: OpenSim storage files
  (header up to ``endheader``); coordinates ``hip_flexion_r`` … and generalised forces
  ``hip_flexion_r_moment`` …. OpenSim inverse-dynamics generalised forces are the *internal*
  net joint moments about the coordinate axes, so the canonical signs need no flip when the
  model's coordinates are flexion / adduction / internal-rotation positive — checked on the data
  (knee flexion peaks positive, the ankle's stance moment is plantarflexor, i.e. negative).
- The streams cover different time spans (the foundation cropped them to the common span):
  each keeps its own time column, and strides outside any stream are dropped by the pipeline.
- Moment units are not documented: N·m/kg or N·m is decided by magnitude (the ankle's
  plantarflexor peak is ~1.5 N·m/kg, ~100 N·m); N·m is divided by the body mass from the
  catalogue (``kinetics.body_mass: {subject: kg}``) or from ``Study Summary.xlsx`` at the root
  of the repository (two header rows: ``ID / WS-key`` and ``Participant Info / Weight (kg)``,
  as the foundation repository reads it).

The files carry NO gait events, and the upstream segmentation (peaks of the foot IMUs'
vertical acceleration) is unreliable. Heel strikes are detected from the sagittal hip and knee
angles with :func:`kinematic_heel_strikes` (documented and tested below). Overground trials
have force plates under a few steps only: a stride whose stance shows no plantarflexor moment
(the foot was not on a plate, so inverse dynamics saw no ground reaction) gets no kinetics
(``kinetics_valid_s`` covers only the loaded strides).

This module also holds the generic helpers the three adapters of this family share (heel
strikes from joint angles, moment units and sign checks by magnitude, a minimal ``.xlsx``
reader); they are candidates for ``builder/sources/gait_events.py`` and a shared checks module.
"""

from __future__ import annotations

import itertools
import posixpath
import re
import zipfile
from collections.abc import Sequence
from typing import Any, Literal
from xml.etree import ElementTree

import fsspec
import numpy as np
import pandas as pd
from pydantic import Field
from scipy.signal import butter, find_peaks, sosfiltfilt

from builder.conventions import (
    ANGLE_UNITS,
    JOINTS,
    MOMENT_UNITS,
    PLANES,
    Side,
    angle_factor,
    moment_factor,
)
from builder.errors import SourceError
from builder.records import SideRecording, TimeSeries, TrialRecording, TrialSpec
from builder.sources import register_adapter
from builder.sources.base import AdapterOptions, FileAccess, SourceAdapter
from builder.sources.gait_events import MIN_STRIDE_S, fill_gaps
from builder.sources.mapping import joint_array, muscle_matrix
from builder.sources.opensim import read_storage
from builder.sources.options import DatasetOptions, JointMap

_HIP, _KNEE, _ANKLE = (JOINTS.index(j) for j in ("hip", "knee", "ankle"))
_FLEX = PLANES.index("flexion")

# =============================================================================================
# Generic helpers (pure functions; proposed for builder/sources/gait_events.py and a shared
# plausibility-check module — the Grimmer and Angelidou adapters import them from here)
# =============================================================================================

# A knee swing peak stands at least this far above the knee angle either side of it (swing
# peaks are ~60° in walking, 90-100° on stairs; the stance flexion bump is ~15-20°).
MIN_SWING_KNEE_DEG = 25.0
# After its terminal-swing minimum the knee flexes again (loading response, ~15° in walking):
# a rise of this much above the running minimum confirms the minimum was the contact.
CONTACT_RISE_DEG = 3.0
# Zero-phase low-pass of the angles before detection: gait angles live below ~6 Hz, sensor
# and IK noise above it.
ANGLE_CUTOFF_HZ = 6.0


def kinematic_heel_strikes(
    hip_flexion_deg: np.ndarray,
    knee_flexion_deg: np.ndarray,
    rate_hz: float,
    start_s: float = 0.0,
    *,
    cutoff_hz: float = ANGLE_CUTOFF_HZ,
    min_swing_deg: float = MIN_SWING_KNEE_DEG,
    rise_deg: float = CONTACT_RISE_DEG,
    min_interval_s: float = MIN_STRIDE_S,
) -> np.ndarray:
    """Heel-strike times of one leg from its sagittal hip and knee angles (canonical signs:
    flexion positive, degrees), for walking on level ground and ramps.

    Rule (knee maximal extension in terminal swing; Perry & Burnfield, *Gait Analysis*: the
    knee reaches its swing extension just before initial contact and flexes again in loading
    response): in every swing the knee flexes to a peak while the hip flexes forward; the
    heel strike is the first minimum of knee flexion after that peak, confirmed when the knee
    has flexed ``rise_deg`` above it again (loading response). Steps:

    1. bridge NaN gaps up to 0.1 s, zero-phase 2nd-order Butterworth low-pass at ``cutoff_hz``;
    2. swing peaks: knee maxima with prominence ≥ ``min_swing_deg``, at least
       ``min_interval_s`` apart, while the hip is flexing (this rejects the stance bump);
    3. after each swing peak, follow the running minimum of the knee until it rises
       ``rise_deg`` above it; the minimum is refined to a fraction of a sample by a parabola;
    4. keep it only if the hip is in the flexed half of its range there (terminal swing, not
       mid-stance).

    Accuracy (tests/test_source_moghadam.py; simulated gait of builder.demo.gait_model with
    known heel strikes, 0.8-1.6 m/s, 100/200 Hz, up to 1° white noise): every heel strike
    with its swing in the recording is found, none invented; detected − true is −10…+1 ms on
    level ground, −20…−5 ms on ±5° ramps and −35…−5 ms on ±10° ramps (steeper ascent →
    earlier). On real gait the knee's terminal-swing minimum precedes force-plate contact by
    roughly 0-50 ms: expect that bias (unverified on real data). Not for stairs (the knee does
    not extend before contact on stair ascent) nor running. A heel strike whose swing lies
    before the recording is not reported.
    """
    hip = np.asarray(hip_flexion_deg, dtype=float)
    knee = np.asarray(knee_flexion_deg, dtype=float)
    if hip.shape != knee.shape or hip.ndim != 1:
        raise ValueError("hip and knee angles must be 1-D arrays of the same length")
    if not rate_hz > 0:
        raise ValueError(f"rate must be positive, got {rate_hz}")
    gap = max(1, round(0.1 * rate_hz))
    hip, knee = fill_gaps(hip, gap), fill_gaps(knee, gap)
    times: list[float] = []
    for a, b in _finite_runs(np.isfinite(hip) & np.isfinite(knee)):
        times.extend(
            start_s + (a + i) / rate_hz
            for i in _heel_strike_samples(
                _lowpass(hip[a:b], rate_hz, cutoff_hz),
                _lowpass(knee[a:b], rate_hz, cutoff_hz),
                rate_hz,
                min_swing_deg,
                rise_deg,
                min_interval_s,
            )
        )
    return _spaced(np.asarray(times, dtype=float), min_interval_s)


def _finite_runs(finite: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate(([0], finite.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def _lowpass(x: np.ndarray, rate_hz: float, cutoff_hz: float) -> np.ndarray:
    if cutoff_hz >= 0.45 * rate_hz:
        return x
    sos = butter(2, cutoff_hz, btype="lowpass", fs=rate_hz, output="sos")
    padlen = min(x.size - 1, 3 * round(rate_hz / cutoff_hz))
    return sosfiltfilt(sos, x, padlen=padlen) if padlen > 0 else x


def _heel_strike_samples(
    hip: np.ndarray,
    knee: np.ndarray,
    rate_hz: float,
    min_swing_deg: float,
    rise_deg: float,
    min_interval_s: float,
) -> list[float]:
    if knee.size < 3:
        return []
    distance = max(1, round(min_interval_s * rate_hz))
    peaks = find_peaks(knee, distance=distance, prominence=min_swing_deg)[0]
    hip_velocity = np.gradient(hip)
    peaks = peaks[hip_velocity[peaks] > 0]  # swing: the hip flexes while the knee peaks
    hip_middle = 0.5 * (np.percentile(hip, 2) + np.percentile(hip, 98))
    found: list[float] = []
    for k, p in enumerate(peaks):
        stop = peaks[k + 1] if k + 1 < len(peaks) else knee.size
        j = _terminal_minimum(knee, int(p), int(stop), rise_deg)
        if j is None or hip[j] < hip_middle:
            continue
        found.append(j + _parabola_shift(knee, j))
    return found


def _terminal_minimum(knee: np.ndarray, start: int, stop: int, rise_deg: float) -> int | None:
    """First sample after ``start`` whose value the knee later exceeds by ``rise_deg``, with
    no lower value in between: the running minimum at the moment the knee rises again."""
    lowest = start
    for i in range(start + 1, stop):
        if knee[i] < knee[lowest]:
            lowest = i
        elif knee[i] > knee[lowest] + rise_deg:
            return lowest
    return None


def _parabola_shift(x: np.ndarray, j: int) -> float:
    if j <= 0 or j >= x.size - 1:
        return 0.0
    left, centre, right = x[j - 1], x[j], x[j + 1]
    curvature = left - 2 * centre + right
    return float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5)) if curvature > 0 else 0.0


def _spaced(times: np.ndarray, min_interval_s: float) -> np.ndarray:
    times = np.sort(times)
    kept: list[float] = []
    for t in times:
        if not kept or t - kept[-1] >= min_interval_s:
            kept.append(float(t))
    return np.asarray(kept, dtype=float)


# Plausible peak of |internal ankle sagittal moment| over a walking / stair trial, per unit:
# 0.5-4 N·m/kg; the same for 45-120 kg people in N·m; ×1000 in N·mm/kg.
MOMENT_PEAK_RANGES: dict[str, tuple[float, float]] = {
    "N.m/kg": (0.5, 4.0),
    "N.m": (35.0, 400.0),
    "N.mm/kg": (500.0, 4000.0),
}


def moment_units_by_magnitude(
    ankle_moment: np.ndarray, allowed: Sequence[str] = tuple(MOMENT_PEAK_RANGES)
) -> tuple[str | None, float]:
    """The unit (among ``allowed``) whose plausible range holds the robust peak (99th
    percentile of |ankle sagittal moment|), or None when none or several do; and the peak."""
    values = np.abs(np.asarray(ankle_moment, dtype=float))
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None, float("nan")
    peak = float(np.percentile(values, 99))
    fits = [u for u in allowed if MOMENT_PEAK_RANGES[u][0] <= peak <= MOMENT_PEAK_RANGES[u][1]]
    return (fits[0] if len(fits) == 1 else None), peak


def check_knee_flexion(kinematics: np.ndarray, url: str, where: str = "") -> None:
    """Canonical knee angles flex positive to a swing peak of tens of degrees: otherwise the
    source is extension-positive, in radians or not the knee (SourceError)."""
    knee = np.asarray(kinematics, dtype=float)[..., _KNEE, _FLEX].ravel()
    knee = knee[np.isfinite(knee)]
    if knee.size == 0:
        return
    low, high = np.percentile(knee, [1, 99])
    if high < 30.0 or high < -low:
        raise SourceError(
            url,
            f"knee flexion{where} spans {low:.3g}..{high:.3g} after the catalogue's sign and "
            "units: expected flexion positive with a swing peak of 40-110 deg (is the knee "
            "extension-positive, or in radians? fix kinematics.sign / units)",
        )


def check_plantarflexor_moment(kinetics: np.ndarray, url: str, where: str = "") -> None:
    """In stance the internal ankle moment is plantarflexor: canonical (dorsiflexion positive)
    values go to about -1.5 N·m/kg and far less positive. An ankle moment that peaks positive
    is an external-moment or plantarflexion-positive convention (SourceError)."""
    ankle = np.asarray(kinetics, dtype=float)[..., _ANKLE, _FLEX].ravel()
    ankle = ankle[np.isfinite(ankle)]
    if ankle.size == 0:
        return
    low, high = np.percentile(ankle, [1, 99])
    if not -low > high:
        raise SourceError(
            url,
            f"ankle moment{where} spans {low:.3g}..{high:.3g} after the catalogue's sign: "
            "expected the internal plantarflexor moment of stance to be negative and dominant "
            "(external moments or plantarflexion positive? fix kinetics.sign)",
        )


def read_xlsx(path: str, url: str, sheet: str | None = None) -> list[list[Any]]:
    """The cells of one worksheet of an Office Open XML workbook as rows of values (str,
    float or None), dense from A1; the first sheet unless ``sheet`` names one.

    Stdlib only (zipfile + ElementTree): shared strings, inline strings, numbers, booleans
    and formula results (their cached values). Merged cells keep their value in the first
    cell only, as Excel stores them.
    """
    ns = {
        "m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
        "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
        "p": "http://schemas.openxmlformats.org/package/2006/relationships",
    }
    try:
        with zipfile.ZipFile(path) as book:
            workbook = ElementTree.fromstring(book.read("xl/workbook.xml"))
            sheets = workbook.findall("m:sheets/m:sheet", ns)
            chosen = next((s for s in sheets if sheet in (None, s.get("name"))), None)
            if chosen is None:
                names = [s.get("name") for s in sheets]
                raise SourceError(url, f"no worksheet {sheet!r} (found {names})")
            rel_id = chosen.get(f"{{{ns['r']}}}id")
            rels = ElementTree.fromstring(book.read("xl/_rels/workbook.xml.rels"))
            target = next(r.get("Target") for r in rels if r.get("Id") == rel_id)
            target = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
            shared = []
            if "xl/sharedStrings.xml" in book.namelist():
                for item in ElementTree.fromstring(book.read("xl/sharedStrings.xml")):
                    shared.append("".join(t.text or "" for t in item.iter(f"{{{ns['m']}}}t")))
            cells = ElementTree.fromstring(book.read(target)).iter(f"{{{ns['m']}}}c")
            grid: dict[tuple[int, int], Any] = {}
            for cell in cells:
                row, col = _cell_position(cell.get("r", ""))
                grid[row, col] = _cell_value(cell, shared, ns["m"])
    except (OSError, KeyError, StopIteration, zipfile.BadZipFile, ElementTree.ParseError) as exc:
        raise SourceError(url, f"not a readable .xlsx workbook ({exc})") from None
    if not grid:
        return []
    n_rows = 1 + max(r for r, _ in grid)
    n_cols = 1 + max(c for _, c in grid)
    return [[grid.get((r, c)) for c in range(n_cols)] for r in range(n_rows)]


def _cell_position(ref: str) -> tuple[int, int]:
    match = re.fullmatch(r"([A-Z]+)(\d+)", ref)
    if not match:
        raise KeyError(f"cell reference {ref!r}")
    col = 0
    for char in match.group(1):
        col = col * 26 + ord(char) - ord("A") + 1
    return int(match.group(2)) - 1, col - 1


def _cell_value(cell: ElementTree.Element, shared: list[str], m: str) -> Any:
    kind = cell.get("t", "n")
    if kind == "inlineStr":
        return "".join(t.text or "" for t in cell.iter(f"{{{m}}}t"))
    value = cell.find(f"{{{m}}}v")
    if value is None or value.text is None:
        return None
    if kind == "s":
        return shared[int(value.text)]
    if kind in ("str", "e"):
        return value.text
    if kind == "b":
        return value.text.strip() == "1"
    return float(value.text)


# =============================================================================================
# The adapter
# =============================================================================================


class MoghadamLayout(AdapterOptions):
    format: str = "csv"
    per_file: Literal["trial"] = "trial"
    inside: str | None = None
    siblings: list[str] = Field(default_factory=list)
    activity_from: str = "path"
    # Relative to the EMG file; body masses for moments in N·m (None: catalogue only).
    subject_info: str | None = None
    subject_info_sheet: str | None = None


class MoghadamEvents(AdapterOptions):
    kind: Literal["none"] = "none"
    detect: list[Literal["kinematics"]] = Field(default_factory=lambda: ["kinematics"])
    imu: dict[str, str] = Field(default_factory=dict)  # documented, deliberately unused
    # A stride was on a force plate when its ankle moment peaks in stance (the first
    # ``stance_fraction`` of the cycle) at least ``loaded_ratio`` × its swing peak: without a
    # ground reaction inverse dynamics sees only the foot's inertia, as in swing. Unit-free.
    loaded_ratio: float = Field(3.0, gt=1)
    stance_fraction: float = Field(0.65, gt=0, lt=1)


class MoghadamOptions(DatasetOptions):
    layout: MoghadamLayout = Field(default_factory=MoghadamLayout)
    events: MoghadamEvents = Field(default_factory=MoghadamEvents)


_TIME_COLUMNS = ("time", "Time", "TIME")
# A uniformly sampled time column deviates from its median step by less than this fraction.
_TIME_JITTER = 0.02


@register_adapter
class MoghadamAdapter(SourceAdapter):
    name = "moghadam"
    options_model = MoghadamOptions

    def read_trial(self, spec: TrialSpec, files: FileAccess) -> list[TrialRecording]:
        options = MoghadamOptions.model_validate(spec.options)
        if options.emg is None or options.kinematics is None:
            raise SourceError(spec.url, "catalogue entry needs emg and kinematics maps")
        notes: list[str] = []
        emg_table, emg_time = _read_emg_csv(files.local_path(spec.url), spec.url)
        kin_url, mom_url = _sibling_urls(spec, options)
        kinematics = read_storage(files.local_path(kin_url), kin_url)
        kin_time = _time_axis(kinematics.table, kin_url)

        emg_url = spec.url
        emg_rate = _rate(emg_time, emg_url)
        if options.rates.emg_hz and abs(emg_rate / options.rates.emg_hz - 1) > 0.02:
            raise SourceError(
                emg_url,
                f"EMG time column gives {emg_rate:.4g} Hz, the catalogue says "
                f"{options.rates.emg_hz:g} Hz (100 Hz envelopes assumed)",
            )
        columns, emg_note = _emg_columns(emg_table, options, emg_url)
        if emg_note:
            notes.append(emg_note)
        emg_values = {name: emg_table[col].to_numpy(float) for name, col in columns.items()}
        _check_envelopes(emg_values, emg_url)

        kin_rate = _rate(kin_time, kin_url)
        angle_unit = options.kinematics.units or "deg"
        if kinematics.in_degrees is False:
            angle_unit = "rad"
        angles = {
            side: _joints(
                kinematics.table, options.kinematics, side, kin_url, angle_factor(angle_unit)
            )
            for side in options.sides
        }
        for side, values in angles.items():
            check_knee_flexion(values, kin_url, f" ({side})")

        heel_strikes = {
            side: kinematic_heel_strikes(
                angles[side][:, _HIP, _FLEX],
                angles[side][:, _KNEE, _FLEX],
                kin_rate,
                float(kin_time[0]),
            )
            for side in options.sides
        }
        kinetics: dict[Side, TimeSeries] = {}
        loaded: dict[Side, np.ndarray] = {}
        if options.kinetics is not None and mom_url is not None:
            kinetics, loaded, kinetic_notes = _kinetics(
                spec, files, options, options.kinetics, mom_url, heel_strikes
            )
            notes.extend(kinetic_notes)

        sides = []
        for side in options.sides:
            emg = muscle_matrix(
                {m: [emg_values[n] for n in names] for m, names in options.emg.names(side).items()},
                (emg_time.size,),
            )
            sides.append(
                SideRecording(
                    side=side,
                    emg=TimeSeries(emg, emg_rate, float(emg_time[0]), options.emg.units or ""),
                    kinematics=TimeSeries(angles[side], kin_rate, float(kin_time[0]), ANGLE_UNITS),
                    kinetics=kinetics.get(side),
                    heel_strikes_s=heel_strikes[side],
                    kinetics_valid_s=loaded.get(side),
                )
            )
        notes.append(
            "heel strikes detected from the hip and knee angles (terminal-swing knee extension; "
            "typically 0-50 ms before contact)"
        )
        return [
            TrialRecording(
                sides=tuple(sides),
                emg_kind=spec.emg_kind,
                event_source="kinematics",
                notes=tuple(notes),
            )
        ]


def _sibling_urls(spec: TrialSpec, options: MoghadamOptions) -> tuple[str, str | None]:
    """The kinematics and kinetics files of the trial (the catalogue's ``siblings``)."""
    trial = posixpath.splitext(posixpath.basename(fsspec.core.split_protocol(spec.url)[1]))[0]
    found: dict[str, str] = {}
    for pattern in options.layout.siblings:
        url = _relative(spec.url, pattern.format(trial=trial))
        if url.endswith(".mot"):
            found.setdefault("kinematics", url)
        elif url.endswith(".sto"):
            found.setdefault("kinetics", url)
    if "kinematics" not in found:
        raise SourceError(spec.url, "layout.siblings names no kinematics (.mot) file")
    for kind, url in found.items():
        fs, path = fsspec.core.url_to_fs(url, **spec.storage_options)
        if not fs.exists(path):
            raise SourceError(spec.url, f"the trial's {kind} file {url} does not exist")
    return found["kinematics"], found.get("kinetics")


def _relative(url: str, relative: str) -> str:
    protocol, path = fsspec.core.split_protocol(url)
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(path), relative))
    return joined if protocol in (None, "file") else f"{protocol}://{joined}"


def _read_emg_csv(path: str, url: str) -> tuple[pd.DataFrame, np.ndarray]:
    try:
        table = pd.read_csv(path, sep=None, engine="python")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise SourceError(url, f"not a readable CSV file ({exc})") from None
    table.columns = [str(c).strip() for c in table.columns]
    return table, _time_axis(table, url)


def _time_axis(table: pd.DataFrame, url: str) -> np.ndarray:
    name = next((c for c in _TIME_COLUMNS if c in table.columns), None)
    if name is None:
        raise SourceError(
            url, f"no time column ({'/'.join(_TIME_COLUMNS)}); found {list(table.columns)[:8]}"
        )
    time = table[name].to_numpy(float)
    if time.size < 2 or not np.isfinite(time).all():
        raise SourceError(url, "time column is too short or has missing values")
    return time


def _rate(time: np.ndarray, url: str) -> float:
    steps = np.diff(time)
    step = float(np.median(steps))
    if not step > 0 or np.max(np.abs(steps - step)) > _TIME_JITTER * step:
        raise SourceError(
            url,
            f"time column is not uniformly sampled (steps {steps.min():.4g}..{steps.max():.4g} s)",
        )
    return 1.0 / step


def _normalised_name(name: str) -> str:
    return re.sub(r"[\s_\-.]", "", name).casefold()


def _emg_columns(
    table: pd.DataFrame, options: MoghadamOptions, url: str
) -> tuple[dict[str, str], str | None]:
    """Source channel name -> CSV column; by name, else by the documented column order."""
    assert options.emg is not None
    wanted = sorted(
        {n for side in options.sides for names in options.emg.names(side).values() for n in names}
    )
    by_key = {_normalised_name(c): c for c in table.columns}
    found = {
        name: by_key[_normalised_name(name)] for name in wanted if _normalised_name(name) in by_key
    }
    if len(found) == len(wanted):
        return found, None
    order = options.emg.order
    data_columns = [c for c in table.columns if c not in _TIME_COLUMNS]
    if isinstance(order, list) and len(order) == len(data_columns) and set(wanted) <= set(order):
        mapping = dict(zip(order, data_columns, strict=True))
        return (
            {name: mapping[name] for name in wanted},
            f"EMG columns {data_columns[:3]}… do not name the muscles: the documented column "
            "order (emg.order) was used",
        )
    missing = sorted(set(wanted) - set(found))
    raise SourceError(
        url,
        f"EMG channels {missing} not found (names compared ignoring case and separators) and "
        f"the {len(data_columns)} data columns do not match emg.order; found {data_columns[:10]}",
    )


def _check_envelopes(values: dict[str, np.ndarray], url: str) -> None:
    """[C] the EMG is a pre-processed envelope: non-negative (a little filter undershoot
    allowed). Bipolar raw EMG would be about half negative."""
    for name, x in values.items():
        finite = x[np.isfinite(x)]
        if finite.size and np.mean(finite < 0) > 0.05:
            raise SourceError(
                url,
                f"EMG channel {name} is {100 * np.mean(finite < 0):.0f}% negative: not the "
                "documented 100 Hz envelope (raw EMG? then emg_kind must be raw)",
            )


def _joints(
    table: pd.DataFrame, joint_map: JointMap, side: Side, url: str, factor: float
) -> np.ndarray:
    columns = joint_map.component_columns(side)
    missing = sorted(str(c) for c in columns.values() if c not in table.columns)
    if missing:
        raise SourceError(url, f"columns {missing} not found; found {list(table.columns)[:12]}")
    return joint_array(
        {key: table[col].to_numpy(float) for key, col in columns.items()},
        (len(table),),
        signs=joint_map.sign,
        factor=factor,
    )


def _moment_factor(
    raw: dict[Side, np.ndarray],
    joint_map: JointMap,
    spec: TrialSpec,
    files: FileAccess,
    options: MoghadamOptions,
    url: str,
) -> tuple[float, str]:
    """Factor to N·m/kg: the catalogue's unit, or N·m/kg vs N·m by the magnitude of the
    ankle moment ``raw`` (stance of the loaded strides only)."""
    ankle = np.concatenate([v.ravel() for v in raw.values()])
    unit = joint_map.units
    inferred, peak = moment_units_by_magnitude(ankle, allowed=("N.m/kg", "N.m"))
    if unit is None:
        if inferred is None:
            raise SourceError(
                url,
                f"moment units unknown and the ankle moment peak {peak:.3g} fits neither N.m/kg "
                "(0.5-4) nor N.m (35-400): set kinetics.units",
            )
        unit = inferred
    elif inferred is not None and not _same_moment_unit(inferred, unit):
        raise SourceError(
            url,
            f"kinetics.units says {unit} but the ankle moment peak {peak:.3g} looks like {inferred}",
        )
    note = f"moments in {unit} (ankle peak {peak:.3g})"
    try:
        per_kg = moment_factor(unit, 1.0) == moment_factor(unit, 2.0)
    except ValueError as exc:
        raise SourceError(url, f"kinetics: {exc}") from None
    if per_kg:
        return moment_factor(unit), note
    mass = _body_mass(spec, files, options, joint_map, url)
    return moment_factor(unit, mass), f"{note} divided by the body mass {mass:g} kg"


def _same_moment_unit(a: str, b: str) -> bool:
    try:
        return all(moment_factor(a, m) == moment_factor(b, m) for m in (1.0, 2.0))
    except ValueError:
        return False


def _body_mass(
    spec: TrialSpec, files: FileAccess, options: MoghadamOptions, joint_map: JointMap, url: str
) -> float:
    subject = spec.subject
    if joint_map.body_mass and subject in joint_map.body_mass:
        mass = float(joint_map.body_mass[subject])
    elif options.layout.subject_info:
        info_url = _relative(spec.url, options.layout.subject_info)
        rows = read_xlsx(files.local_path(info_url), info_url, options.layout.subject_info_sheet)
        mass = _mass_from_summary(rows, subject, info_url)
    else:
        raise SourceError(url, f"moments in N.m need the body mass of {subject}: none given")
    if not 25.0 <= mass <= 250.0:
        raise SourceError(url, f"body mass of {subject} is {mass:g} kg: not a plausible mass")
    return mass


def _mass_from_summary(rows: list[list[Any]], subject: str, url: str) -> float:
    """Body mass (kg) of ``subject`` from the study summary: two header rows (a group row whose
    merged cells fill to the right, then the column names); the id column is 'ID / WS-key'."""
    if len(rows) < 3:
        raise SourceError(url, "study summary has no participant rows")
    groups, names = [], [str(n or "").strip() for n in rows[1]]
    current = ""
    for value in rows[0]:
        current = str(value).strip() if value not in (None, "") else current
        groups.append(current)
    headers = [(g.casefold(), n.casefold()) for g, n in zip(groups, names, strict=False)]
    id_col = next((i for i, (g, n) in enumerate(headers) if "id" in g and "ws" in n), None)
    mass_col = next(
        (i for i, (_, n) in enumerate(headers) if ("weight" in n or "mass" in n) and "kg" in n),
        None,
    )
    if id_col is None or mass_col is None:
        raise SourceError(
            url, f"study summary lacks the 'ID / WS-key' or 'Weight (kg)' column; found {headers}"
        )
    for row in rows[2:]:
        if str(row[id_col] or "").strip().casefold() == subject.casefold():
            try:
                return float(row[mass_col])
            except (TypeError, ValueError):
                raise SourceError(url, f"body mass of {subject} is {row[mass_col]!r}") from None
    raise SourceError(url, f"participant {subject} is not in the study summary")


def _loaded_strides(
    times: np.ndarray, ankle: np.ndarray, heel_strikes: np.ndarray, events: MoghadamEvents
) -> tuple[np.ndarray, np.ndarray]:
    """(K, 2) windows of the strides that were on a force plate — the ankle moment peaks in
    stance at ``loaded_ratio`` × its swing peak (sign- and unit-free) — and the stance samples
    of those strides (a boolean mask over ``times``)."""
    windows, stance_mask = [], np.zeros(times.shape, bool)
    for start, end in itertools.pairwise(heel_strikes):
        split = start + events.stance_fraction * (end - start)
        stance = (times >= start) & (times <= split)
        swing = (times > split) & (times <= end)
        stance_peak = np.nanmax(np.abs(ankle[stance]), initial=0.0)
        swing_peak = np.nanmax(np.abs(ankle[swing]), initial=0.0)
        covered = stance.sum() > 2 and swing.sum() > 2
        if covered and stance_peak > events.loaded_ratio * swing_peak:
            windows.append((start, end))
            stance_mask |= stance
    return np.asarray(windows, dtype=float).reshape(-1, 2), stance_mask


def _kinetics(
    spec: TrialSpec,
    files: FileAccess,
    options: MoghadamOptions,
    joint_map: JointMap,
    url: str,
    heel_strikes: dict[Side, np.ndarray],
) -> tuple[dict[Side, TimeSeries], dict[Side, np.ndarray], list[str]]:
    """Moments in N·m/kg per side, the loaded-stride windows, and notes. Units and sign are
    judged on the stance of the loaded strides only; a trial without any keeps no kinetics."""
    storage = read_storage(files.local_path(url), url)
    time = _time_axis(storage.table, url)
    rate = _rate(time, url)
    raw = {side: _joints(storage.table, joint_map, side, url, 1.0) for side in options.sides}
    loaded, stance = {}, {}
    for side, values in raw.items():
        loaded[side], stance[side] = _loaded_strides(
            time, values[:, _ANKLE, _FLEX], heel_strikes[side], options.events
        )
    notes = []
    for side in options.sides:
        n_off = max(heel_strikes[side].size - 1, 0) - len(loaded[side])
        if n_off:
            notes.append(
                f"{side}: {n_off} stride(s) without a stance ankle moment (foot off the force "
                "plates): kinetics left out"
            )
    if not any(mask.any() for mask in stance.values()):
        return {}, {}, [*notes, "no stride on a force plate: the trial keeps no kinetics"]
    ankle = {side: raw[side][stance[side], _ANKLE, _FLEX] for side in options.sides}
    factor, unit_note = _moment_factor(ankle, joint_map, spec, files, options, url)
    moments = {}
    for side in options.sides:
        values = raw[side] * factor
        check_plantarflexor_moment(values[stance[side]], url, f" ({side})")
        moments[side] = TimeSeries(values, rate, float(time[0]), MOMENT_UNITS)
    return moments, loaded, [unit_note, *notes]

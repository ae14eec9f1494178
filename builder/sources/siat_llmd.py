"""SIAT-LLMD (Wei et al. 2023, Sci Data 10:358): one CSV per subject and movement.

Layout (catalogue ``siat_llmd2023``)::

    SIAT_LLMD20230404/SubXX/Data/SubXX_<MOV>_Data.csv
    SIAT_LLMD20230404/SubXX/Labels/SubXX_<MOV>_Label.csv

Data CSV: ``Time``, 8 kinematic columns (``Kinematic: left hip adduction angle`` …, OpenSim),
8 kinetic columns (``Kinetic: left hip adduction torque`` …) and 9 sEMG columns of the LEFT leg
(``sEMG: rectus femoris`` …), every column on the EMG time base. Label CSV: ``Time, Status,
Group``, one row per data row: ``Status`` is the gait phase that row lies in (1 heel strike →
max stance flexion, 2 → max stance extension, 3 → toe off, 4 → max swing flexion, 5 → heel
strike for WAK; 1 heel strike → toe off, 2, 3 for UPS/DNS), NaN outside labelled cycles; ``A``/``R``
(active/rest) in the non-gait movements, which therefore have no strides.

What the adapter does, and what it checks on the data (the [F/C]/[I] facts of DATASETS.md §13):

- the sampling rate (1920 or 1926 Hz are both reported) is derived from ``Time`` and must be
  uniform; the label file must share the data file's time base row for row;
- a heel strike is a row where ``Status`` enters 1; a stride runs from one heel strike to the
  next within the same ``Group`` through every phase in order (cycles of different groups are
  separate walking passes and are never joined into a stride);
- ``Group`` 1–5 are right-leg cycles and 6–10 left-leg cycles [F/C]: checked on level walking,
  where the leg that strikes has the more flexed hip of the two;
- OpenSim signs (knee flexion, ankle dorsiflexion, hip flexion positive) are checked on the
  mean stride; moment units are not documented: per kg (≈1 N·m/kg at the ankle) or N·m
  (≈70 N·m) is decided by magnitude, and N·m without a readable body mass is an error; the
  moments must be internal (plantarflexor ankle moment negative in stance);
- EMG is the left leg only: the right leg's strides carry kinematics and kinetics only. The
  upper and lower tibialis anterior are averaged (explicit merge); the semimembranosus feeds the
  semitendinosus/semimembranosus slot; the tensor fascia lata has no slot.

Helpers shared with the other CSV-style adapters (:mod:`builder.sources.hu_enabl3s`,
:mod:`builder.sources.moreira`) live here too: table reading, rate derivation, cropping and the
gait-pattern checks on mean strides.
"""

from __future__ import annotations

import io
import posixpath
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import fsspec
import numpy as np
import pandas as pd
from pydantic import Field

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
from builder.processing.strides import time_normalise
from builder.records import SideRecording, TimeSeries, TrialRecording, TrialSpec
from builder.sources import register_adapter
from builder.sources.base import AdapterOptions, FileAccess, SourceAdapter
from builder.sources.mapping import joint_array, muscle_matrix
from builder.sources.options import DatasetOptions, JointMap

_HIP, _KNEE, _ANKLE = (JOINTS.index(j) for j in ("hip", "knee", "ankle"))
_FLEX = PLANES.index("flexion")

# --------------------------------------------------------------------------------------------
# Helpers shared by the SIAT-LLMD, Hu/ENABL3S and Moreira adapters
# --------------------------------------------------------------------------------------------

# Relative spread of the sample interval a "uniform" time column may show (rounding of the
# printed times); a dropped or duplicated sample is a 100 % jump.
_TIME_JITTER = 0.05
# Plausible peak |internal ankle moment| of a mean stride: per kg (walking ≈1.5, very slow
# walking ≈0.8) and absolute (30–120 kg people).
_PER_KG = (0.3, 5.0)
_ABSOLUTE_NM = (15.0, 500.0)
# Stride time-normalisation used by the checks (percent of the gait cycle).
_CHECK_POINTS = 101
# Margin kept around the strides when a recording is cropped (filter edge effects stay out).
CROP_MARGIN_S = 1.0


def sibling_url(url: str, relative: str) -> str:
    """The URL of ``relative`` (``../x/y``) next to ``url``, for local paths and fsspec URLs."""
    protocol, path = fsspec.core.split_protocol(url)
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(path), relative))
    return joined if protocol in (None, "file", "local") else f"{protocol}://{joined}"


def url_exists(files: FileAccess, url: str) -> bool:
    fs, path = fsspec.core.url_to_fs(url, **files.storage_options)
    return bool(fs.exists(path))


def read_table(
    files: FileAccess, url: str, *, sep: str = ",", what: str = "CSV file", **kwargs: Any
) -> pd.DataFrame:
    """A delimited text table with a header row; a SourceError names the file when it cannot
    be read."""
    try:
        with files.open(url, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise SourceError(url, f"{what} not found") from None
    try:
        table = pd.read_csv(io.BytesIO(raw), sep=sep, **kwargs)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise SourceError(url, f"not a readable {what} ({reason})") from None
    table.columns = [str(c).strip() for c in table.columns]
    return table


def require_columns(table: pd.DataFrame, names: Iterable[str], url: str, why: str) -> None:
    missing = [n for n in dict.fromkeys(names) if n not in table.columns]
    if missing:
        have = ", ".join(list(table.columns)[:8])
        raise SourceError(url, f"missing column(s) {missing} ({why}); found {have}, …")


def numeric(table: pd.DataFrame, column: str, url: str) -> np.ndarray:
    """A column as float64; text that is not a number is an error naming the column."""
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(np.float64)
    bad = np.isnan(values) & table[column].notna().to_numpy()
    if bad.any():
        example = table[column][bad].iloc[0]
        raise SourceError(url, f"column {column!r} holds non-numeric values such as {example!r}")
    return values


def emg_matrix(
    table: pd.DataFrame, names: Mapping[str, list[str]], url: str, why: str
) -> np.ndarray:
    """(T, 13) EMG from named columns (``EmgMap.names(side)``); several names are averaged."""
    require_columns(table, [n for ns in names.values() for n in ns], url, why)
    columns = {
        muscle: numeric(table, ns[0], url) if len(ns) == 1 else [numeric(table, n, url) for n in ns]
        for muscle, ns in names.items()
    }
    return muscle_matrix(columns, (len(table),))


def joint_matrix(
    table: pd.DataFrame, joints: JointMap, side: Side, url: str, why: str, factor: float = 1.0
) -> np.ndarray | None:
    """(T, 3, 3) from the named columns of ``side`` (``JointMap.columns``), canonical signs,
    times ``factor``; None when the side has no column."""
    columns = joints.component_columns(side)
    if not columns:
        return None
    require_columns(table, [str(c) for c in columns.values()], url, why)
    values = {key: numeric(table, str(col), url) for key, col in columns.items()}
    return joint_array(values, (len(table),), signs=joints.sign, factor=factor)


def rate_from_times(times: np.ndarray, url: str, column: str) -> tuple[float, float]:
    """(rate Hz, first time s) of a time column that must be finite, increasing and uniform."""
    t = np.asarray(times, dtype=np.float64)
    if t.size < 3 or not np.isfinite(t).all():
        raise SourceError(url, f"time column {column!r} is too short or has gaps")
    steps = np.diff(t)
    dt = float(np.median(steps))
    if not dt > 0:
        raise SourceError(url, f"time column {column!r} does not increase")
    worst = float(np.max(np.abs(steps - dt)) / dt)
    if worst > _TIME_JITTER:
        where = int(np.argmax(np.abs(steps - dt)))
        raise SourceError(
            url,
            f"time column {column!r} is not uniformly sampled: step {steps[where]:.6g} s at "
            f"row {where + 1} vs median {dt:.6g} s (dropped or repeated samples?)",
        )
    # The printed times are rounded: a least-squares line gives the rate to ~1e-6.
    slope = float(np.polyfit(np.arange(t.size, dtype=np.float64), t - t[0], 1)[0])
    return 1.0 / slope, float(t[0])


def crop(series: TimeSeries | None, start_s: float, end_s: float) -> TimeSeries | None:
    """The samples of ``series`` between two times (clipped to the recording)."""
    if series is None:
        return None
    first = max(0, int(np.floor((start_s - series.start_s) * series.rate_hz)))
    stop = min(series.n_samples, int(np.ceil((end_s - series.start_s) * series.rate_hz)) + 1)
    start = series.start_s + first / series.rate_hz
    return TimeSeries(series.data[first:stop], series.rate_hz, start, series.units)


def mean_stride(
    series: TimeSeries | None, starts: np.ndarray, ends: np.ndarray
) -> np.ndarray | None:
    """(101, 3, 3) mean of the strides (percent of the cycle), or None without strides."""
    if series is None or len(starts) == 0:
        return None
    curves = time_normalise(series, np.asarray(starts), np.asarray(ends), _CHECK_POINTS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # components absent in every stride
        return np.nanmean(curves, axis=0) if np.isfinite(curves).any() else None


def _window(curve: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return curve[lo : hi + 1]


def check_angles(
    mean: np.ndarray | None,
    url: str,
    *,
    assumption: str,
    level_walking: bool,
    joints: Sequence[str] = ("hip", "knee", "ankle"),
) -> None:
    """The mean stride's sagittal angles must look like degrees with canonical signs.

    Every gait: the knee's largest excursion is flexion (positive), 25–160° of range. Level
    walking also: the knee peaks in swing (55–90 %); the ankle plantarflexes after toe off
    (minimum at 55–75 % below the late-stance dorsiflexion peak at 35–55 %); the hip is flexed
    at heel strike and extended at 45–55 %. Differences, not levels, so that goniometer or
    model offsets do not matter.
    """
    if mean is None:
        return
    knee, ankle, hip = mean[:, _KNEE, _FLEX], mean[:, _ANKLE, _FLEX], mean[:, _HIP, _FLEX]
    if "knee" in joints and np.isfinite(knee).all():
        span = float(knee.max() - knee.min())
        if not 25.0 <= span <= 160.0:
            raise SourceError(
                url,
                f"{assumption}: the mean stride's knee flexion spans {span:.3g} (expected "
                "25-160 deg of a knee in degrees)",
            )
        middle = float(np.median(knee))
        if middle - knee.min() > knee.max() - middle:
            raise SourceError(
                url,
                f"{assumption}: the knee's largest excursion is negative ({knee.min():.0f} vs "
                f"+{knee.max():.0f} deg): flexion is not positive",
            )
        peak = int(np.argmax(knee))
        if level_walking and not 55 <= peak <= 90:
            raise SourceError(
                url,
                f"{assumption}: the knee flexion peak is at {peak} % of the stride, not in swing "
                "(55-90 %): flexion is not positive or the strides are not heel strike to heel "
                "strike of this leg",
            )
    if not level_walking:
        return
    if "ankle" in joints and np.isfinite(ankle).all():
        push_off = float(_window(ankle, 55, 75).min())
        stance = float(_window(ankle, 35, 55).max())
        if not push_off < stance - 3.0:
            raise SourceError(
                url,
                f"{assumption}: the ankle is not plantarflexed after toe off (min {push_off:.1f} "
                f"deg at 55-75 % vs {stance:.1f} deg at 35-55 %): dorsiflexion is not positive",
            )
    if "hip" in joints and np.isfinite(hip).all():
        strike, extended = float(_window(hip, 0, 5).mean()), float(_window(hip, 45, 55).mean())
        if not strike > extended + 10.0:
            raise SourceError(
                url,
                f"{assumption}: the hip is not flexed at heel strike ({strike:.1f} deg) relative "
                f"to terminal stance ({extended:.1f} deg): flexion is not positive",
            )


def ankle_moment_peak(mean: np.ndarray | None) -> float | None:
    """Peak |sagittal ankle moment| of a mean stride (the largest joint moment in gait)."""
    if mean is None or not np.isfinite(mean[:, _ANKLE, _FLEX]).all():
        return None
    return float(np.max(np.abs(mean[:, _ANKLE, _FLEX])))


def moment_scale(peak: float | None, url: str, *, assumption: str) -> str:
    """ "per_kg" or "absolute" from the mean stride's peak ankle moment; anything else is an
    error that names the assumption."""
    if peak is None:
        return "per_kg"
    if _PER_KG[0] <= peak <= _PER_KG[1]:
        return "per_kg"
    if _ABSOLUTE_NM[0] <= peak <= _ABSOLUTE_NM[1]:
        return "absolute"
    raise SourceError(
        url,
        f"{assumption}: peak ankle moment {peak:.4g} fits neither N.m/kg "
        f"({_PER_KG[0]}-{_PER_KG[1]}) nor N.m ({_ABSOLUTE_NM[0]:g}-{_ABSOLUTE_NM[1]:g})",
    )


def check_internal_moments(mean: np.ndarray | None, url: str, *, assumption: str) -> None:
    """Internal moments with dorsiflexion positive: the ankle moment is plantarflexor
    (negative) through mid and late stance (20–50 % of the stride) in every gait."""
    if mean is None or not np.isfinite(mean[:, _ANKLE, _FLEX]).all():
        return
    ankle = mean[:, _ANKLE, _FLEX]
    stance = float(_window(ankle, 20, 50).mean())
    if not stance < -0.2 * float(np.max(np.abs(ankle))):
        raise SourceError(
            url,
            f"{assumption}: the ankle moment in stance is {stance:+.3g} (mean at 20-50 %), not "
            "plantarflexor-negative: the moments are external or of the opposite sign",
        )


def _scaled(series: TimeSeries | None, factor: float) -> TimeSeries | None:
    if series is None or factor == 1.0:
        return series
    return TimeSeries(series.data * factor, series.rate_hz, series.start_s, series.units)


# --------------------------------------------------------------------------------------------
# SIAT-LLMD
# --------------------------------------------------------------------------------------------


class SiatEvents(AdapterOptions):
    """Where the gait events live (Label CSV) and what its codes mean."""

    kind: str = "labels"
    file: str = "../Labels/{name}_Label.csv"  # {name} = SubXX_<MOV>
    time_column: str = "Time"
    status_column: str = "Status"
    group_column: str = "Group"
    heel_strike_status: int = 1
    phases: dict[str, int] = Field(default_factory=lambda: {"WAK": 5, "UPS": 3, "DNS": 3})
    toe_off_status: dict[str, int] = Field(default_factory=lambda: {"WAK": 4, "UPS": 2, "DNS": 2})
    groups: dict[Side, list[int]]
    non_gait_status: list[str] = Field(default_factory=lambda: ["A", "R"])
    level_walking: list[str] = Field(default_factory=lambda: ["WAK"])


class SiatOptions(DatasetOptions):
    events: SiatEvents  # type: ignore[assignment]


Strides = dict[Side, list[tuple[int, np.ndarray]]]  # side -> [(group, heel-strike times)]


@register_adapter
class SiatLlmdAdapter(SourceAdapter):
    name = "siat_llmd"
    options_model = SiatOptions

    def read_trial(self, spec: TrialSpec, files: FileAccess) -> list[TrialRecording]:
        options = SiatOptions.model_validate(spec.options)
        events, url = options.events, spec.url
        name = posixpath.basename(url).removesuffix("_Data.csv")
        movement = name.rpartition("_")[2]
        label_url = sibling_url(url, events.file.format(name=name))
        labels = _gait_labels(files, label_url, url, movement, events)

        data = read_table(files, url, what="data CSV")
        time_column = options.layout.get("time_column", "Time")
        require_columns(data, [time_column], url, "time column [F]")
        times = numeric(data, time_column, url)
        rate, start = rate_from_times(times, url, time_column)
        notes = [f"sampling rate {rate:.3f} Hz from the {time_column!r} column"]
        label_times = numeric(labels, events.time_column, label_url)
        if label_times.size != times.size or not np.allclose(
            label_times, times, atol=0.5 / rate, rtol=0
        ):
            raise SourceError(
                label_url,
                "[F/C] the label file does not share the data file's time base "
                f"({label_times.size} rows vs {times.size})",
            )

        status = numeric(labels, events.status_column, label_url)
        group = numeric(labels, events.group_column, label_url)
        runs, skipped = _labelled_cycles(
            status, group, events.phases[movement], events.heel_strike_status
        )
        if skipped:
            notes.append(f"{skipped} labelled cycle(s) whose phases do not run in order skipped")
        side_of = _group_sides(events.groups, runs, label_url)
        strides: Strides = {s: [] for s in options.sides}
        for group_id, rows in runs:
            if side_of[group_id] in strides:
                strides[side_of[group_id]].append((group_id, times[rows]))
        if not any(strides.values()):
            raise SourceError(url, "no complete labelled gait cycle (heel strike to heel strike)")

        emg = _emg_series(data, options, url, rate, start)
        kinematics = {
            s: _joint_series(data, options.kinematics, s, url, rate, start, angles=True)
            for s in options.sides
        }
        kinetics = {
            s: _joint_series(data, options.kinetics, s, url, rate, start, angles=False)
            for s in options.sides
        }
        factor = _check_conventions(
            kinematics,
            kinetics,
            strides,
            url,
            movement in events.level_walking,
            options,
            spec.subject,
        )
        kinetics = {s: _scaled(series, factor) for s, series in kinetics.items()}

        to_status = events.toe_off_status.get(movement)
        toe_offs = times[_onsets(status, to_status)] if to_status is not None else np.empty(0)
        sides = []
        for side in options.sides:
            for _, hs in strides[side]:  # one recording per run: never joined across groups
                lo, hi = hs[0] - CROP_MARGIN_S, hs[-1] + CROP_MARGIN_S
                sides.append(
                    SideRecording(
                        side=side,
                        emg=crop(emg, lo, hi) if side == "L" else None,  # left leg only [F]
                        kinematics=crop(kinematics[side], lo, hi),
                        kinetics=crop(kinetics[side], lo, hi),
                        heel_strikes_s=hs,
                        toe_offs_s=toe_offs[(toe_offs > hs[0]) & (toe_offs < hs[-1])],
                    )
                )
        return [
            TrialRecording(
                sides=tuple(sides),
                emg_kind=spec.emg_kind,
                event_source="labels",
                notes=tuple(notes),
            )
        ]


def _gait_labels(
    files: FileAccess, label_url: str, url: str, movement: str, events: SiatEvents
) -> pd.DataFrame:
    """The label table of a gait movement; a non-gait movement (A/R labels) is an error that
    says it has no strides."""
    labels = read_table(files, label_url, what="label CSV", low_memory=False)
    require_columns(
        labels,
        [events.time_column, events.status_column, events.group_column],
        label_url,
        "Label CSV columns Time, Status, Group [F]",
    )
    text = labels[events.status_column].dropna().astype(str).str.strip()
    if len(text) and text.isin(events.non_gait_status).all():
        raise SourceError(
            url,
            f"{movement} is a non-gait movement: its labels are {'/'.join(sorted(set(text)))} "
            "(active/rest), not gait phases, so it has no strides to segment",
        )
    if movement not in events.phases:
        raise SourceError(
            url,
            f"movement {movement!r} has no gait-phase definition (events.phases knows "
            f"{sorted(events.phases)}) but its labels are not A/R either",
        )
    return labels


def _check_conventions(
    kinematics: Mapping[Side, TimeSeries | None],
    kinetics: Mapping[Side, TimeSeries | None],
    strides: Strides,
    url: str,
    level: bool,
    options: SiatOptions,
    subject: str,
) -> float:
    """Check the angle signs, the Group → side rule and the moments on each leg's mean stride;
    return the factor that brings the moments to N·m/kg.

    The knee sign goes first (it does not depend on the groups, and the Group check relies on
    it); then the Group check (a swapped leg would otherwise fail as a misplaced knee peak);
    then the full angle pattern and the moments."""
    means = {}
    for side, runs in strides.items():
        if runs:
            starts = np.concatenate([hs[:-1] for _, hs in runs])
            ends = np.concatenate([hs[1:] for _, hs in runs])
            means[side] = (
                mean_stride(kinematics[side], starts, ends),
                mean_stride(kinetics[side], starts, ends),
            )
    for side, (angles, _) in means.items():
        check_angles(
            angles,
            url,
            assumption=f"[I] OpenSim angle signs ({side} leg)",
            level_walking=False,
            joints=("knee",),
        )
    _check_group_sides(kinematics, strides, url, level)
    scales = set()
    for side, (angles, moments) in means.items():
        check_angles(
            angles, url, assumption=f"[I] OpenSim angle signs ({side} leg)", level_walking=level
        )
        check_internal_moments(
            moments, url, assumption=f"[I] internal moments, OpenSim signs ({side} leg)"
        )
        peak = ankle_moment_peak(moments)
        scales.add(moment_scale(peak, url, assumption="[I] torque units not documented"))
    joints = options.kinetics
    masses = (joints.body_mass or {}) if joints else {}
    return kinetic_factor(scales, joints.units if joints else None, masses.get(subject), url)


def kinetic_factor(
    scales: set[str], units: str | None, body_mass_kg: float | None, url: str
) -> float:
    """The factor to N·m/kg for moments whose mean strides looked ``scales`` ("per_kg" /
    "absolute"): the catalogue's ``units`` must agree with the magnitude; without units the
    magnitude decides, and N·m needs ``body_mass_kg``."""
    if len(scales) > 1:
        raise SourceError(
            url, "moment magnitudes differ between legs (per kg on one, N.m on the other)"
        )
    scale = next(iter(scales), "per_kg")
    if units is not None:
        declared = "per_kg" if "/kg" in units.replace(" ", "").lower() else "absolute"
        if declared != scale:
            raise SourceError(
                url,
                f"moments declared {units} but their magnitude is that of "
                f"{'N.m/kg' if scale == 'per_kg' else 'N.m'} (peak ankle moment check)",
            )
    if scale == "per_kg":
        return moment_factor(units or "N.m/kg")
    if body_mass_kg is None:
        raise SourceError(
            url,
            "[I] torque units not documented: the moments are N.m (peak ankle moment of tens "
            "of N.m), which needs the subject's body mass (SubjectInformation.xlsx is not read; "
            "give kinetics.body_mass {subject: kg} in the catalogue)",
        )
    return moment_factor(units or "N.m", body_mass_kg)


def _labelled_cycles(
    status: np.ndarray, group: np.ndarray, n_phases: int, heel_strike: int
) -> tuple[list[tuple[int, np.ndarray]], int]:
    """Runs of consecutive complete cycles as (group, row indices of their heel strikes), and
    how many labelled cycles were skipped because their phases do not run in order.

    A cycle starts at a row entering ``heel_strike`` (from another phase, an unlabelled row or
    another group) and ends where its last phase ends: at the next cycle's heel strike, or at
    the first row after it that is unlabelled or of another group (the last cycle of a group).
    It counts only if its phases run heel_strike, heel_strike + 1, …, n_phases in order within
    one group. The returned row of a cycle's end is the first row after it.
    """
    n = status.size
    labelled = np.isfinite(status) & np.isfinite(group)
    same = np.zeros(n, bool)  # row i continues the labelled block of row i - 1
    same[1:] = labelled[1:] & labelled[:-1] & (group[1:] == group[:-1])
    entering = labelled & (status == heel_strike)
    entering[1:] &= ~same[1:] | (status[:-1] != heel_strike)
    # Block boundaries: a heel strike, or a row that does not continue the previous block.
    starts = np.flatnonzero(entering)
    breaks = np.flatnonzero(~same)
    expected = np.arange(heel_strike, n_phases + 1, dtype=np.float64)
    runs: list[tuple[int, list[int]]] = []
    skipped = 0
    for a in starts:
        later = [x for x in (starts[starts > a][:1], breaks[breaks > a][:1]) if x.size]
        b = int(min(x[0] for x in later)) if later else n
        if b >= n:  # the file ends inside the cycle: its end has no time
            continue
        block = status[a:b]
        phases = block[np.concatenate([[True], block[1:] != block[:-1]])]
        if phases.size != expected.size or not (phases == expected).all():
            skipped += 1
            continue
        g = int(group[a])
        if runs and runs[-1][0] == g and runs[-1][1][-1] == a:
            runs[-1][1].append(b)
        else:
            runs.append((g, [int(a), b]))
    return [(g, np.asarray(rows)) for g, rows in runs], skipped


def _group_sides(
    groups: Mapping[Side, list[int]], runs: list[tuple[int, np.ndarray]], url: str
) -> dict[int, Side]:
    side_of = {g: side for side, ids in groups.items() for g in ids}
    unknown = sorted({g for g, _ in runs} - set(side_of))
    if unknown:
        raise SourceError(
            url,
            f"[F/C] Group 1-5 right, 6-10 left: found labelled cycles in group(s) {unknown}",
        )
    return side_of


def _onsets(status: np.ndarray, code: int) -> np.ndarray:
    entering = status == code
    entering[1:] &= status[:-1] != code
    return np.flatnonzero(entering)


def _emg_series(
    data: pd.DataFrame, options: DatasetOptions, url: str, rate: float, start: float
) -> TimeSeries | None:
    if options.emg is None:
        return None
    matrix = emg_matrix(data, options.emg.names("L"), url, "sEMG columns 17-25, left leg [F]")
    return TimeSeries(matrix, rate, start, options.emg.units or "unknown")


def _joint_series(
    data: pd.DataFrame,
    joints: JointMap | None,
    side: Side,
    url: str,
    rate: float,
    start: float,
    *,
    angles: bool,
) -> TimeSeries | None:
    """(T, 3, 3) angles in degrees or moments in the file's unit, canonical signs."""
    if joints is None:
        return None
    factor = angle_factor(joints.units or "deg") if angles else 1.0
    array = joint_matrix(data, joints, side, url, f"{joints.convention} columns [F]", factor)
    if array is None:
        return None
    return TimeSeries(array, rate, start, ANGLE_UNITS if angles else MOMENT_UNITS)


def _check_group_sides(
    kinematics: Mapping[Side, TimeSeries | None],
    strides: Mapping[Side, list[tuple[int, np.ndarray]]],
    url: str,
    level: bool,
) -> None:
    """[F/C] Group → side: in level walking the striking leg's knee is near full extension
    while the other knee flexes before its toe off (≈ +30° more); needs positive knee flexion,
    which is checked first."""
    left, right = kinematics.get("L"), kinematics.get("R")
    if not level or left is None or right is None:
        return
    for side, groups in strides.items():
        if not groups:
            continue
        hs = np.concatenate([g[1] for g in groups])
        index = np.clip(np.round((hs - left.start_s) * left.rate_hz).astype(int), 0, None)
        other = right if side == "L" else left
        own = left if side == "L" else right
        lead = other.data[index, _KNEE, _FLEX] - own.data[index, _KNEE, _FLEX]
        if np.isfinite(lead).all() and float(np.mean(lead)) < 0:
            ids = sorted({g for g, _ in groups})
            raise SourceError(
                url,
                f"[F/C] Group 1-5 right, 6-10 left: at the heel strikes of group(s) {ids} "
                f"({'left' if side == 'L' else 'right'} by that rule) that knee is the more "
                f"flexed by {-float(np.mean(lead)):.0f} deg on average: the other leg strikes",
            )

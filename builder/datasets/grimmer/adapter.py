"""Grimmer et al. (stair ascent and descent at six stair inclinations): one MAT v5 file per
subject and modality, matched by the trailing number of the file name::

    Processed/Joint_Kinematics/*<n>.mat   Joint_Kinematics{activity}{trial}.<angle field>
    Processed/Joint_Kinetics/*<n>.mat     Joint_Kinetics{activity}{trial}.<moment field>
    Processed/Touchdowns/*<n>.mat         TD_ascent / TD_descent{activity}{trial}.{tdR, tdL}
    Preprocessed/EMG/*<n>.mat             Emg{activity}{trial}.<muscle>_{r,l}   (1111.11 Hz)

``activity`` indexes the six stair inclinations, ``trial`` the repetitions; every trial holds a
stair ascent and a descent, whose touchdowns are listed separately. The catalogue's urlpath
matches the kinematics file; the adapter gathers the subject's three other files.

Time bases. Touchdowns are 1-based frame indices of the *kinematics* (whose rate nobody
documents); the EMG runs at 1111.11 Hz. The foundation sliced the EMG with the kinematic frame
indices — wrong by a factor ~5-11. Here every touchdown becomes a time, ``(index - 1) /
kinematics rate``, and each stream keeps its own rate. The kinematics rate is derived from the
lengths (EMG and kinematics of a trial span the same interval): ``emg_rate · n_kin / n_emg``;
the trials of a subject must agree on it (else SourceError), and it snaps to a standard motion-
capture rate within 0.5 %. A catalogue ``rates.kinematics_hz`` must agree with it too.

Checked on the data (SourceError otherwise): kinetics and kinematics of a trial have the same
length; touchdown indices are whole, increasing and inside the kinematics (EMG sample indices
would overrun it); the median touchdown interval is a plausible stride; knee flexion peaks
positive (degrees, flexion-positive); moment units by the ankle's magnitude when the catalogue
gives none (N·m/kg, N·mm/kg, or N·m — which needs a body mass the files do not hold); the
ankle's stance moment is plantarflexor (internal moments); the EMG is raw (bipolar).

One recording per trial and direction (ascent / descent), both on the trial's time base: the
stride table gets the direction as activity, the inclination index as condition
(``stair_inclination_<k>``) and, when the catalogue lists the six values, ``incline_deg``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Literal

import fsspec
import numpy as np
from pydantic import Field

from builder.conventions import (
    ANGLE_UNITS,
    MOMENT_UNITS,
    Side,
    angle_factor,
    emg_factor,
    moment_factor,
)
from builder.datasets.base import AdapterOptions, SourceAdapter
from builder.datasets.mapping import joint_array, muscle_matrix
from builder.datasets.options import DatasetOptions, per_side
from builder.datasets.segments import crop
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.formats.matlab import load_mat
from builder.processing.checks import (
    ANKLE_PEAK_BANDS,
    check_knee_flexion_percentiles,
    check_plantarflexor_moment,
    check_raw_emg,
    moment_units_by_magnitude,
    robust_peak,
)
from builder.records import SideRecording, TimeSeries, TrialRecording, TrialSpec

# Motion-capture rates a derived kinematics rate snaps to (within 0.5 %).
STANDARD_RATES_HZ = (50.0, 60.0, 100.0, 120.0, 150.0, 200.0, 240.0, 250.0, 300.0, 500.0, 1000.0)
_SNAP = 0.005
# Trials of one subject must agree on the derived rate within this fraction.
_RATE_AGREEMENT = 0.01
_MARGIN_S = 0.5  # each direction's recording keeps this much signal around its touchdowns


class GrimmerLayout(AdapterOptions):
    format: Literal["mat-v5"] = "mat-v5"
    per_file: Literal["subject"] = "subject"
    inside: str | None = None
    # Sibling files relative to the dataset root (two levels above the kinematics folder);
    # <n> is the subject's trailing number.
    siblings: list[str] = Field(
        default_factory=lambda: [
            "Processed/Joint_Kinetics/*<n>.mat",
            "Processed/Touchdowns/*<n>.mat",
            "Preprocessed/EMG/*<n>.mat",
        ]
    )
    activity_from: str = "Touchdowns.TD_ascent / TD_descent"
    variables: dict[str, str] = Field(
        default_factory=lambda: {
            "kinematics": "Joint_Kinematics",
            "kinetics": "Joint_Kinetics",
            "emg": "Emg",
        }
    )
    # The six stair inclinations (deg) in the order of the activity cells, when known.
    inclinations_deg: list[float] | None = None


class GrimmerEvents(AdapterOptions):
    kind: Literal["touchdown_indices"] = "touchdown_indices"
    fields: dict[Side, str] = Field(default_factory=per_side("tdL", "tdR"))
    # MAT variables of the Touchdowns file; each is also the activity token of its strides.
    variables: list[str] = Field(default_factory=lambda: ["TD_ascent", "TD_descent"])
    index_of: Literal["kinematics"] = "kinematics"
    index_base: Literal[0, 1] = 1
    # The median touchdown interval of a trial must lie in here (s), else the indices are not
    # what they are assumed to be.
    plausible_stride_s: tuple[float, float] = (0.6, 3.0)


class GrimmerOptions(DatasetOptions):
    layout: GrimmerLayout = Field(default_factory=GrimmerLayout)
    events: GrimmerEvents = Field(default_factory=GrimmerEvents)


class GrimmerAdapter(SourceAdapter[GrimmerOptions]):
    name = "grimmer"
    options_model = GrimmerOptions
    emg_kinds = frozenset({"raw"})

    def read(
        self, spec: TrialSpec, options: GrimmerOptions, files: FileAccess
    ) -> list[TrialRecording]:
        if options.emg is None or options.kinematics is None:
            raise SourceError(spec.url, "catalogue entry needs emg and kinematics maps")
        number = _trailing_number(spec.url)
        urls = _subject_files(spec, number, options.layout.siblings, files)
        names = options.layout.variables
        kin_cells = _cells(files, spec.url, names["kinematics"])
        kinetic_cells = (
            _cells(files, _pick(urls, "kinetics", spec.url), names["kinetics"])
            if options.kinetics is not None
            else None
        )
        emg_cells = _cells(files, _pick(urls, "emg", spec.url), names["emg"])
        touchdown_url = _pick(urls, "touchdown", spec.url)
        touchdowns = load_mat(files.local_path(touchdown_url), touchdown_url)

        trials = _trials(kin_cells, emg_cells, kinetic_cells, spec.url)
        kin_rate, rate_note = _kinematics_rate(trials, options, spec.url)
        notes = [rate_note]
        if options.emg.units is None:
            notes.append("EMG units not documented: the EMG scale is in source units")
        emg_scale = emg_factor(options.emg.units) if options.emg.units else 1.0
        angle_scale = angle_factor(options.kinematics.units or "deg")
        moment_scale, moment_note = _moment_scale(trials, options, number, spec.url)
        if moment_note:
            notes.append(moment_note)

        recordings: list[TrialRecording] = []
        pending = notes  # notes not yet attached to a recording (each is reported once)
        for (a, t), trial in trials.items():
            arrays = _side_arrays(trial, options, angle_scale, moment_scale, emg_scale, spec.url)
            for token in options.events.variables:
                heel_strikes = {
                    side: _touchdown_times(
                        touchdowns, token, a, t, options.events, side, trial, kin_rate, spec.url
                    )
                    for side in options.sides
                }
                if all(len(h) < 2 for h in heel_strikes.values()):
                    pending.append(f"{token} {a + 1}/{t + 1}: fewer than two touchdowns per foot")
                    continue
                recordings.append(
                    _recording(
                        spec, options, token, a, t, arrays, heel_strikes, kin_rate, number, pending
                    )
                )
                pending = []
        if recordings and pending:
            last = recordings[-1]
            recordings[-1] = dataclasses.replace(last, notes=last.notes + tuple(pending))
        if not recordings:
            raise SourceError(spec.url, "no trial with two touchdowns of one foot")
        return recordings


# --- files --------------------------------------------------------------------------------------


def _trailing_number(url: str) -> str:
    stem = url.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    match = re.search(r"(\d+)$", stem)
    if match is None:
        raise SourceError(url, "file name does not end in the subject number")
    return str(int(match.group(1)))


def _subject_files(
    spec: TrialSpec, number: str, patterns: list[str], files: FileAccess
) -> dict[str, str]:
    """The subject's other files, {folder name: url}: exactly one per sibling pattern whose
    trailing number equals ``number`` (so that subject 1 never picks up subject 10's file)."""
    fs, path = files.filesystem(spec.url)
    protocol = fsspec.core.split_protocol(spec.url)[0]
    root = path.rsplit("/", 3)[0]  # <root>/Processed/Joint_Kinematics/<file>
    found = {}
    for pattern in patterns:
        folder, _, name = pattern.rpartition("/")
        candidates = [
            p
            for p in fs.glob(f"{root}/{folder}/" + name.replace("<n>", "*").replace("**", "*"))
            if re.search(rf"(?<!\d)0*{number}\.mat$", p)
        ]
        if len(candidates) != 1:
            raise SourceError(
                spec.url,
                f"expected one {folder}/ file for subject {number} (trailing number), "
                f"found {len(candidates)}: {[c.rsplit('/', 1)[-1] for c in candidates]}",
            )
        url = candidates[0] if protocol in (None, "file") else f"{protocol}://{candidates[0]}"
        found[folder.rsplit("/", 1)[-1]] = url
    return found


def _pick(urls: dict[str, str], word: str, url: str) -> str:
    """The sibling whose folder name contains ``word`` (Joint_Kinetics, Touchdowns, EMG)."""
    found = [u for folder, u in urls.items() if word in folder.casefold()]
    if len(found) != 1:
        raise SourceError(url, f"layout.siblings must name one {word} folder; found {sorted(urls)}")
    return found[0]


def _cells(files: FileAccess, url: str, variable: str) -> list[list[Any]]:
    """``variable{activity}{trial}`` as nested lists (activity, trial) of structs."""
    content = load_mat(files.local_path(url), url, variables=[variable])
    if variable not in content:
        raise SourceError(url, f"no variable {variable!r} in the file")
    outer = content[variable]
    if not isinstance(outer, list):
        raise SourceError(url, f"{variable} is not a cell array of activities")
    return [inner if isinstance(inner, list) else [inner] for inner in outer]


# --- trials -------------------------------------------------------------------------------------


def _trials(
    kin_cells: list[list[Any]],
    emg_cells: list[list[Any]],
    kinetic_cells: list[list[Any]] | None,
    url: str,
) -> dict[tuple[int, int], dict[str, Any]]:
    """{(activity, trial): {"kinematics", "kinetics", "emg"}} for the cells holding data."""
    trials = {}
    for a, activity in enumerate(kin_cells):
        for t, kin in enumerate(activity):
            if not isinstance(kin, dict) or not kin:
                continue  # an empty cell: trial not recorded
            emg = _cell(emg_cells, a, t)
            if not isinstance(emg, dict):
                raise SourceError(url, f"trial {a + 1}/{t + 1} has kinematics but no EMG")
            kinetics = _cell(kinetic_cells, a, t) if kinetic_cells is not None else None
            trials[a, t] = {"kinematics": kin, "kinetics": kinetics, "emg": emg}
    if not trials:
        raise SourceError(url, "no trial holds kinematics")
    return trials


def _cell(cells: list[list[Any]] | None, a: int, t: int) -> Any:
    if cells is None or a >= len(cells) or t >= len(cells[a]):
        return None
    return cells[a][t]


def _series(struct: dict[str, Any], name: str, url: str, where: str) -> np.ndarray:
    if name not in struct:
        raise SourceError(url, f"{where}: no field {name}; found {sorted(struct)[:12]}")
    return np.asarray(struct[name], dtype=float).ravel()


def _length(struct: dict[str, Any], names: list[str], url: str, where: str) -> int:
    lengths = {n: _series(struct, n, url, where).size for n in names}
    if len(set(lengths.values())) != 1:
        raise SourceError(url, f"{where}: fields of different lengths {lengths}")
    return next(iter(lengths.values()))


def _kinematics_rate(
    trials: dict[tuple[int, int], dict[str, Any]], options: GrimmerOptions, url: str
) -> tuple[float, str]:
    """The kinematics rate from the EMG/kinematics length ratio, checked across trials."""
    assert options.emg is not None and options.kinematics is not None
    emg_rate = options.rates.emg_hz
    if emg_rate is None:
        raise SourceError(url, "rates.emg_hz is needed to derive the kinematics rate")
    emg_names = [n for side in options.sides for ns in options.emg.names(side).values() for n in ns]
    kin_names = [
        str(c)
        for side in options.sides
        for c in options.kinematics.component_columns(side).values()
    ]
    estimates = {}
    for (a, t), trial in trials.items():
        where = f"trial {a + 1}/{t + 1}"
        n_kin = _length(trial["kinematics"], kin_names, url, f"{where} kinematics")
        n_emg = _length(trial["emg"], emg_names, url, f"{where} EMG")
        trial["n_kin"], trial["n_emg"] = n_kin, n_emg
        if trial["kinetics"] is not None and options.kinetics is not None:
            mom_names = [
                str(c)
                for s in options.sides
                for c in options.kinetics.component_columns(s).values()
            ]
            n_mom = _length(trial["kinetics"], mom_names, url, f"{where} kinetics")
            if n_mom != n_kin:
                raise SourceError(
                    url, f"{where}: {n_mom} kinetics frames for {n_kin} kinematics frames"
                )
        estimates[a, t] = emg_rate * n_kin / n_emg
    values = np.array(list(estimates.values()))
    if values.max() / values.min() - 1 > _RATE_AGREEMENT:
        listed = ", ".join(f"{a + 1}/{t + 1}: {r:.4g}" for (a, t), r in estimates.items())
        raise SourceError(
            url,
            "the kinematics rate derived from the EMG/kinematics lengths (EMG at "
            f"{emg_rate:g} Hz, both spanning the trial) disagrees between trials ({listed} Hz)",
        )
    derived = float(np.median(values))
    snapped = min(STANDARD_RATES_HZ, key=lambda r: abs(r / derived - 1))
    rate = snapped if abs(snapped / derived - 1) <= _SNAP else derived
    nominal = options.rates.kinematics_hz
    if nominal is not None and abs(nominal / derived - 1) > _RATE_AGREEMENT:
        raise SourceError(
            url, f"rates.kinematics_hz is {nominal:g} Hz but the lengths give {derived:.4g} Hz"
        )
    rate = nominal or rate
    return (
        rate,
        f"kinematics at {rate:g} Hz (derived {derived:.5g} Hz from the EMG/kinematics lengths)",
    )


def _moment_scale(
    trials: dict[tuple[int, int], dict[str, Any]], options: GrimmerOptions, subject: str, url: str
) -> tuple[float, str | None]:
    """Factor to N·m/kg: the catalogue's unit (checked against the magnitude) or the unit the
    ankle's magnitude implies; N·m needs a body mass (``kinetics.body_mass: {subject: kg}``),
    which the files do not hold."""
    kinetics = options.kinetics
    if kinetics is None:
        return 1.0, None
    columns = [kinetics.component_columns(s).get(("ankle", "flexion")) for s in options.sides]
    ankle = [
        np.asarray(trial["kinetics"][c], float).ravel()
        for trial in trials.values()
        if trial["kinetics"] is not None
        for c in columns
        if c is not None and c in trial["kinetics"]
    ]
    if not ankle:
        return 1.0, None
    peak = robust_peak(np.concatenate(ankle))
    inferred = moment_units_by_magnitude(peak, ANKLE_PEAK_BANDS)
    unit = kinetics.units or inferred
    if unit is None:
        raise SourceError(
            url,
            f"moment units unknown: the ankle moment peak {peak:.3g} fits none of N.m/kg "
            "(0.5-4), N.m (35-400), N.mm/kg (500-4000); set kinetics.units",
        )
    mass = (kinetics.body_mass or {}).get(subject)
    try:
        if (
            kinetics.units
            and inferred
            and moment_factor(inferred, 70.0) != moment_factor(unit, 70.0)
        ):
            raise SourceError(
                url,
                f"kinetics.units is {unit} but the ankle moment peak {peak:.3g} looks like "
                f"{inferred}",
            )
        factor = moment_factor(unit, mass)
    except ValueError as exc:
        raise SourceError(url, f"kinetics: {exc} (the files hold no body mass)") from None
    return factor, f"moments in {unit} (ankle peak {peak:.3g})"


def _side_arrays(
    trial: dict[str, Any],
    options: GrimmerOptions,
    angle_scale: float,
    moment_scale: float,
    emg_scale: float,
    url: str,
) -> dict[Side, dict[str, np.ndarray | None]]:
    assert options.emg is not None and options.kinematics is not None
    out: dict[Side, dict[str, np.ndarray | None]] = {}
    for side in options.sides:
        kin_columns = options.kinematics.component_columns(side)
        kinematics = joint_array(
            {
                k: _series(trial["kinematics"], str(c), url, "kinematics")
                for k, c in kin_columns.items()
            },
            (trial["n_kin"],),
            signs=options.kinematics.sign,
            factor=angle_scale,
        )
        check_knee_flexion_percentiles(
            kinematics, url, assumption=f"[I] knee flexion positive, in degrees ({side})"
        )
        kinetics = None
        if options.kinetics is not None and trial["kinetics"] is not None:
            mom_columns = options.kinetics.component_columns(side)
            kinetics = joint_array(
                {
                    k: _series(trial["kinetics"], str(c), url, "kinetics")
                    for k, c in mom_columns.items()
                },
                (trial["n_kin"],),
                signs=options.kinetics.sign,
                factor=moment_scale,
            )
            check_plantarflexor_moment(kinetics, url, f" ({side})")
        emg_columns = {
            muscle: [_series(trial["emg"], n, url, "EMG") * emg_scale for n in names]
            for muscle, names in options.emg.names(side).items()
        }
        for muscle, values in emg_columns.items():
            # [I] 'Preprocessed' EMG is still bipolar (raw-like): a rectified or enveloped
            # channel would be non-negative, and emg_kind raw would filter it wrongly.
            check_raw_emg(
                values[0],
                url,
                assumption=f"EMG {muscle} ({side}) is rectified or an envelope, not raw EMG "
                "(emg_kind raw assumed)",
            )
        out[side] = {
            "kinematics": kinematics,
            "kinetics": kinetics,
            "emg": muscle_matrix(emg_columns, (trial["n_emg"],)),
        }
    return out


# --- events -------------------------------------------------------------------------------------


def _touchdown_times(
    touchdowns: dict[str, Any],
    token: str,
    a: int,
    t: int,
    events: GrimmerEvents,
    side: Side,
    trial: dict[str, Any],
    kin_rate: float,
    url: str,
) -> np.ndarray:
    """Touchdown frames of one foot → seconds on the trial's time base (frame 1 = 0 s)."""
    where = f"{token}{{{a + 1}}}{{{t + 1}}}.{events.fields[side]}"
    cells = touchdowns.get(token)
    if not isinstance(cells, list):
        raise SourceError(url, f"Touchdowns file has no cell array {token}")
    cell = _cell([c if isinstance(c, list) else [c] for c in cells], a, t)
    if not isinstance(cell, dict):
        return np.empty(0)
    if events.fields[side] not in cell:
        raise SourceError(url, f"no touchdown field {where}; found {sorted(cell)}")
    frames = np.atleast_1d(np.asarray(cell[events.fields[side]], dtype=float)).ravel()
    frames = frames[np.isfinite(frames)]
    if frames.size == 0:
        return frames
    if np.any(np.abs(frames - np.round(frames)) > 1e-6) or np.any(np.diff(frames) <= 0):
        raise SourceError(url, f"{where} are not increasing whole frame indices: {frames[:6]}")
    first = events.index_base
    last = trial["n_kin"] - 1 + first
    if frames.min() < first or frames.max() > last:
        raise SourceError(
            url,
            f"{where} reach frame {frames.max():g} of {trial['n_kin']} kinematics frames: not "
            "kinematic frame indices (EMG sample indices?)",
        )
    times = (frames - first) / kin_rate
    if times.size >= 2:
        low, high = events.plausible_stride_s
        median = float(np.median(np.diff(times)))
        if not low <= median <= high:
            raise SourceError(
                url,
                f"{where}: the median touchdown interval is {median:.3g} s at {kin_rate:g} Hz, "
                f"not a stride ({low:g}-{high:g} s): wrong kinematics rate or not one foot's "
                "touchdowns",
            )
    return times


def _recording(
    spec: TrialSpec,
    options: GrimmerOptions,
    token: str,
    a: int,
    t: int,
    arrays: dict[Side, dict[str, np.ndarray | None]],
    heel_strikes: dict[Side, np.ndarray],
    kin_rate: float,
    number: str,
    notes: list[str],
) -> TrialRecording:
    """One direction of one trial; streams cropped to its touchdowns ± a margin."""
    assert options.rates.emg_hz is not None
    emg_rate = options.rates.emg_hz
    events = np.concatenate([h for h in heel_strikes.values() if h.size])
    begin, end = events.min() - _MARGIN_S, events.max() + _MARGIN_S
    sides = []
    for side in options.sides:
        data = arrays[side]
        sides.append(
            SideRecording(
                side=side,
                emg=_crop(data["emg"], emg_rate, begin, end, options.emg.units or "")
                if options.emg
                else None,
                kinematics=_crop(data["kinematics"], kin_rate, begin, end, ANGLE_UNITS),
                kinetics=_crop(data["kinetics"], kin_rate, begin, end, MOMENT_UNITS),
                heel_strikes_s=heel_strikes[side],
            )
        )
    inclinations = options.layout.inclinations_deg
    incline = float("nan")
    if inclinations is not None and a < len(inclinations):
        incline = inclinations[a] if token.endswith("ascent") else -inclinations[a]
    return TrialRecording(
        sides=tuple(sides),
        emg_kind=spec.emg_kind,
        event_source="touchdowns",
        notes=tuple(notes),
        meta={
            "subject": number,
            "activity": token,
            "trial": f"inclination{a + 1}_trial{t + 1}",
            "subtrial": token.removeprefix("TD_"),
            "condition": f"stair_inclination_{a + 1}",
            "incline_deg": incline,
        },
    )


def _crop(
    data: np.ndarray | None, rate: float, begin: float, end: float, units: str
) -> TimeSeries | None:
    """The stretch ``begin``..``end`` (s) of a stream that starts at t = 0."""
    if data is None:
        return None
    return crop(TimeSeries(np.asarray(data), rate, 0.0, units), begin, end)

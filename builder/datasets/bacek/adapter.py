"""Bacek et al. 2024 (Sci Data): segmented MAT files of treadmill walking, free or with the left
knee locked by a passive orthosis.

One catalogue row per ``SubN_segMechanics.mat``; the adapter also reads the subject's
``SubN_segEnergetics.mat`` and ``Subjects_Info.mat`` (``layout.siblings``) and returns one
:class:`TrialRecording` per test ``T<k>``:

- strides: ``segMechanics.T<k>.GaitIndex.LHS_1kHz`` / ``RHS_1kHz`` (1-based indices of the
  1 kHz force-plate signals) give the heel strikes and every stride's absolute time;
- EMG: ``segEnergetics.T<k>.EMG.Activity.<Side>_<Muscle>`` (cycles × 1001, 100 ms RMS
  envelopes divided by baseline NormFactors) -> ``emg_kind`` envelope;
- kinematics: ``segMechanics.T<k>.Angles.{Hip,Knee,Ankle}_{Left,Right}`` (cycles × P, sagittal
  only; the 100 Hz cycle cut is ≤ 5 ms off the 1 kHz one); no joint moments.

Which heel strikes cut the arrays (the upstream bug not to repeat). The README says every
segmented cycle, of both legs, runs from one LEFT heel strike to the next; the dataset's sample
MATLAB code cuts the right leg at RIGHT heel strikes. The foundation repository stretched
right-leg arrays over right-heel-strike intervals, which is wrong for left-cut arrays. So the
adapter measures, per test and per file (angles, EMG), where the right leg's curve sits in the
cycle: the circular lag that best aligns the mean right hip-flexion (EMG: all muscles) curve
with the left one. A lag at the right heel strike's phase in the left cycle (≈ 50 %) means
left-cut arrays: the right leg is then RE-CUT — consecutive left cycles are laid on their
GaitIndex times and resampled from each right heel strike (inside left cycle i) to the next
(inside cycle i + 1), so a right stride really is right HS -> right HS. A lag ≈ 0 means the
right arrays are already right-cut and are used over their RHS intervals. Anything else is a
SourceError: the adapter does not guess.

Test conditions come from the README test table (catalogue ``tests``: speed, knee orthosis,
cadence in % of preferred), cross-checked against ``Subjects_Info.mat`` (TestOrder, bouts'
ConditionOrder and WalkSpeedOrder, CadenceRef / PrefCadence) and against the measured stride
time (GaitIndex in samples at 1 kHz, metronome cadence). Each recording's ``condition`` is
``knee_orthosis`` or ``free`` plus the cadence, e.g. ``knee_orthosis;cadence=-5%``.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

import numpy as np
from pydantic import Field

from builder.conventions import JOINTS, MUSCLES, PLANES, Side, angle_factor
from builder.datasets.base import AdapterOptions, SourceAdapter
from builder.datasets.mapping import joint_array, muscle_matrix
from builder.datasets.options import DatasetOptions
from builder.datasets.segments import cycle_sides
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.formats.matlab import field, load_mat
from builder.formats.tables import sibling_url, url_exists
from builder.processing.checks import check_envelope_undershoot, check_sagittal_signs
from builder.records import SideRecording, TrialRecording, TrialSpec

_TEST = re.compile(r"T(\d+)")
_SIDE_NAMES: dict[Side, str] = {"L": "Left", "R": "Right"}
_HIP = JOINTS.index("hip")
_FLEX = PLANES.index("flexion")
# A right-leg curve whose best alignment with the left one lies within this distance (fraction
# of the cycle) of a hypothesis (left-cut: the RHS phase; right-cut: 0) and at least
# _LAG_SEPARATION from the other one decides the cut.
_LAG_TOLERANCE = 0.1
_LAG_SEPARATION = 0.25
_MIN_LAG_CORRELATION = 0.5
# Mean stride time may differ this much from the metronome's 120 / CadenceRef before the test
# mapping (or the 1 kHz index rate) is considered broken.
_CADENCE_TOLERANCE = 0.25


class TestConditions(AdapterOptions):
    speed_mps: float = Field(gt=0)
    orthosis: bool
    cadence_pct: float


class Siblings(AdapterOptions):
    """The subject's other files, relative to the matched segMechanics file ({subject})."""

    energetics: str  # the subject's EMG file
    subject_info: str | list[str]  # candidates, the first that exists wins


class BacekLayout(AdapterOptions):
    format: str = "mat-v5"
    per_file: str = "subject"
    inside: str = ""
    siblings: Siblings
    skip_fields: list[str] = Field(default_factory=list)
    activity_from: str = "path"


class SubjectInfoOptions(AdapterOptions):
    variable: str = "SubjectInfo"
    sessions: list[str] = Field(default_factory=lambda: ["Session2", "Session3"])
    speed_levels_mps: list[float]  # WalkSpeedOrder level 1, 2, 3 -> m/s
    tests_per_bout: int = Field(default=5, gt=0)
    orthosis_code: int = 2  # ConditionOrder: 1 free, 2 orthosis
    cadence_tolerance_pct: float = Field(default=3.0, ge=0)


class BacekOptions(DatasetOptions):
    layout: BacekLayout
    events: dict[str, Any] = Field(default_factory=dict)
    tests: dict[str, TestConditions]
    subject_info: SubjectInfoOptions


class BacekAdapter(SourceAdapter[BacekOptions]):
    name = "bacek"
    options_model = BacekOptions
    emg_kinds = frozenset({"envelope"})

    def read(
        self, spec: TrialSpec, options: BacekOptions, files: FileAccess
    ) -> list[TrialRecording]:
        url = spec.url
        mechanics = field(load_mat(files.local_path(url), url), "segMechanics", url)
        energetics_url = _sibling(url, options.layout.siblings.energetics, spec, files)
        energetics = field(
            load_mat(files.local_path(energetics_url), energetics_url),
            "segEnergetics",
            energetics_url,
        )
        info_url = _sibling(url, options.layout.siblings.subject_info, spec, files)
        info = load_mat(files.local_path(info_url), info_url)
        everyone = field(info, options.subject_info.variable, info_url)
        subject_info = everyone.get(spec.subject) if isinstance(everyone, dict) else None

        tests = sorted((k for k in mechanics if _TEST.fullmatch(k)), key=lambda k: int(k[1:]))
        notes = []
        other = sorted(set(mechanics) - set(tests) - set(options.layout.skip_fields))
        if other:
            notes.append(f"segMechanics fields that are no test, ignored: {', '.join(other)}")
        missing_emg = sorted(set(k for k in energetics if _TEST.fullmatch(k)) - set(tests))
        if missing_emg:
            notes.append(f"EMG without GaitIndex (no segMechanics test) left out: {missing_emg}")
        if subject_info is None:
            notes.append(
                f"{spec.subject} is not in {posixpath.basename(info_url)}: test conditions "
                "from the README table only, not cross-checked"
            )
        if not tests:
            raise SourceError(url, "segMechanics holds no test field T<k>")
        recordings: list[TrialRecording] = []
        for test in tests:
            reading = _TestReader(
                url, test, options, field(mechanics, test, url), energetics.get(test), spec
            )
            recordings.append(reading.recording(subject_info, notes if not recordings else []))
        return recordings


def _sibling(url: str, names: str | list[str], spec: TrialSpec, files: FileAccess) -> str:
    """The first of ``names`` (relative to the matched file, {subject} filled in) that exists."""
    tried = []
    for name in [names] if isinstance(names, str) else names:
        candidate = sibling_url(url, name.format(subject=spec.subject))
        tried.append(candidate)
        if url_exists(files, candidate):
            return candidate
    raise SourceError(url, f"sibling file not found (tried {', '.join(tried)})")


def _cycles(value: Any, url: str, what: str) -> np.ndarray:
    """A cycles × points array (one cycle may come squeezed to a vector)."""
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] < 2:
        raise SourceError(url, f"{what} is not cycles × points (shape {array.shape})")
    return array


def _indices(value: Any, url: str, what: str) -> np.ndarray:
    array = np.atleast_1d(np.asarray(value, dtype=np.float64)).ravel()
    if array.size < 2 or not (np.diff(array) > 0).all():
        raise SourceError(url, f"{what} is not an increasing list of heel-strike indices")
    return array


def circular_lag(left: np.ndarray, right: np.ndarray) -> tuple[float, float]:
    """Where ``right`` sits in the cycle relative to ``left``: (lag, correlation).

    ``left`` / ``right``: (N, P) or (N, P, C) cycle arrays (P points, first and last at heel
    strikes). Returns the fraction τ of the cycle that maximises the summed correlation of
    right(φ) with left(φ - τ) over channels, and that correlation (-1..1).
    """

    def mean_cycle(x: np.ndarray) -> np.ndarray:
        m = np.nanmean(x.reshape(x.shape[0], x.shape[1], -1), axis=0)[:-1]  # periodic
        return m - m.mean(axis=0)

    a, b = mean_cycle(left), mean_cycle(right)
    if a.shape != b.shape:
        return float("nan"), 0.0
    na, nb = np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0)
    valid = (na > 0) & (nb > 0) & np.isfinite(na) & np.isfinite(nb)
    if not valid.any():
        return float("nan"), 0.0
    a, b = a[:, valid] / na[valid], b[:, valid] / nb[valid]
    # c[τ] = Σ_t a[t - τ] b[t], all τ at once.
    spectrum = np.conj(np.fft.rfft(a, axis=0)) * np.fft.rfft(b, axis=0)
    corr = np.fft.irfft(spectrum, n=a.shape[0], axis=0).sum(axis=1) / a.shape[1]
    best = int(np.argmax(corr))
    return best / a.shape[0], float(corr[best])


def _distance(a: float, b: float) -> float:
    d = abs(a - b) % 1.0
    return min(d, 1.0 - d)


class _TestReader:
    """One test T<k>: conditions, strides of both legs, checks."""

    def __init__(
        self,
        url: str,
        test: str,
        options: BacekOptions,
        mechanics: dict,
        energetics: dict | None,
        spec: TrialSpec,
    ) -> None:
        self.url, self.test, self.options, self.spec = url, test, options, spec
        self.mechanics, self.energetics = mechanics, energetics
        rate = float(options.events.get("index_rate_hz", 1000))
        base = float(options.events.get("index_base", 1))
        gait = field(mechanics, "GaitIndex", url, why="heel-strike indices")
        self.lhs = (_indices(field(gait, "LHS_1kHz", url), url, f"{test} LHS_1kHz") - base) / rate
        self.rhs = (_indices(field(gait, "RHS_1kHz", url), url, f"{test} RHS_1kHz") - base) / rate
        self.n_cycles = self.lhs.size - 1
        # Right heel strikes inside each left cycle: where the right leg's stride starts.
        cycle = np.searchsorted(self.lhs, self.rhs, side="right") - 1
        inside = (cycle >= 0) & (cycle < self.n_cycles)
        self.rhs_phase = (self.rhs[inside] - self.lhs[cycle[inside]]) / np.diff(self.lhs)[
            cycle[inside]
        ]
        if self.rhs_phase.size == 0:
            raise SourceError(url, f"{test}: no right heel strike inside the left cycles")
        self.notes: list[str] = []

    # --- conditions ------------------------------------------------------------------

    def conditions(self, subject_info: dict | None) -> TestConditions:
        """The README table's conditions, checked against Subjects_Info and the stride time."""
        table = self.options.tests.get(self.test)
        if table is None:
            raise SourceError(self.url, f"{self.test} is not in the catalogue's test table")
        if subject_info is None:
            return table
        opts = self.options.subject_info
        number = int(self.test[1:])
        for session in opts.sessions:
            record = subject_info.get(session)
            if not isinstance(record, dict) or "TestOrder" not in record:
                continue
            order = [int(k) for k in np.atleast_1d(record["TestOrder"]).ravel()]
            if number not in order:
                continue
            where = f"Subjects_Info {self.spec.subject}.{session}"
            position = order.index(number)
            bout = position // opts.tests_per_bout
            condition = np.atleast_1d(field(record, "ConditionOrder", self.url)).ravel()
            level = int(np.atleast_1d(field(record, "WalkSpeedOrder", self.url)).ravel()[bout])
            speed = opts.speed_levels_mps[level - 1]
            orthosis = int(condition[bout]) == opts.orthosis_code
            cadence = float(np.atleast_1d(field(record, "CadenceRef", self.url)).ravel()[position])
            preferred = np.atleast_2d(field(record, "PrefCadence", self.url))[
                int(orthosis), level - 1
            ]
            pct = 100.0 * (cadence / preferred - 1.0)
            slack = opts.cadence_tolerance_pct + 100.0 / preferred  # integer steps/min
            if (
                abs(speed - table.speed_mps) > 1e-6
                or orthosis != table.orthosis
                or abs(pct - table.cadence_pct) > slack
            ):
                raise SourceError(
                    self.url,
                    f"{self.test}: the README test table says {table.speed_mps} m/s, "
                    f"{'orthosis' if table.orthosis else 'free'}, cadence "
                    f"{table.cadence_pct:+g} %; {where} says {speed} m/s, "
                    f"{'orthosis' if orthosis else 'free'}, cadence {pct:+.1f} % "
                    "(bout ConditionOrder / WalkSpeedOrder, CadenceRef / PrefCadence)",
                )
            stride = float(np.median(np.diff(self.lhs)))
            expected = 120.0 / cadence
            if abs(stride / expected - 1.0) > _CADENCE_TOLERANCE:
                raise SourceError(
                    self.url,
                    f"{self.test}: median stride {stride:.3f} s from GaitIndex (read as 1 kHz "
                    f"samples) vs the metronome's {expected:.3f} s at {cadence:g} steps/min: "
                    "the index rate or the test mapping is wrong",
                )
            return table
        self.notes.append(f"{self.test} not in the Subjects_Info TestOrder: README table only")
        return table

    # --- strides ---------------------------------------------------------------------

    def _right_cut(self, left: np.ndarray, right: np.ndarray, what: str) -> str:
        """'left' or 'right': which heel strikes cut the right leg's arrays (see module doc)."""
        lag, corr = circular_lag(left, right)
        phase = float(np.median(self.rhs_phase))
        to_left, to_right = _distance(lag, phase), _distance(lag, 0.0)
        if corr >= _MIN_LAG_CORRELATION:
            if to_left <= _LAG_TOLERANCE and to_right >= _LAG_SEPARATION:
                return "left"
            if to_right <= _LAG_TOLERANCE and to_left >= _LAG_SEPARATION:
                return "right"
        raise SourceError(
            self.url,
            f"{self.test}: cannot tell which heel strikes cut the right-leg {what}: its curve "
            f"best matches the left one {100 * lag:.0f} % into the cycle (correlation "
            f"{corr:.2f}); left-HS cycles put it at the right HS ({100 * phase:.0f} %), "
            "right-HS cycles at 0 %",
        )

    def _recut(self, cycles: np.ndarray) -> dict[int, np.ndarray]:
        """Right strides j (RHS j -> RHS j+1) resampled from consecutive left-HS cycles."""
        points = cycles.shape[1]
        frac = np.linspace(0.0, 1.0, points)
        times = self.lhs[:-1, None] + np.diff(self.lhs)[:, None] * frac
        t = np.concatenate([times[:, :-1].ravel(), times[-1:, -1]])
        values = np.concatenate([cycles[:, :-1].reshape(-1, *cycles.shape[2:]), cycles[-1:, -1]])
        out = {}
        for j in range(self.rhs.size - 1):
            a, b = self.rhs[j], self.rhs[j + 1]
            if a < self.lhs[0] or b > self.lhs[-1]:
                continue
            position = np.interp(a + (b - a) * frac, t, np.arange(t.size))
            i0 = np.minimum(np.floor(position).astype(int), t.size - 2)
            w = (position - i0).reshape(-1, *([1] * (values.ndim - 1)))
            out[j] = values[i0] * (1.0 - w) + values[i0 + 1] * w
        return out

    def _right_strides(self, cycles: np.ndarray, cut: str) -> dict[int, np.ndarray]:
        if cut == "left":
            return self._recut(cycles)
        if cycles.shape[0] > self.rhs.size - 1:
            raise SourceError(
                self.url,
                f"{self.test}: {cycles.shape[0]} right-HS cycles but only "
                f"{self.rhs.size} right heel strikes",
            )
        return {j: cycles[j] for j in range(cycles.shape[0])}

    def _left_rows(self, cycles: np.ndarray, what: str) -> np.ndarray:
        if cycles.shape[0] != self.n_cycles:
            raise SourceError(
                self.url,
                f"{self.test}: {what} has {cycles.shape[0]} cycles, GaitIndex.LHS_1kHz "
                f"{self.n_cycles}",
            )
        return cycles

    def kinematics(self) -> tuple[dict[Side, Any], str | None]:
        """Canonical (N, P, 3, 3) per side (right: {stride j: (P, 3, 3)}), and the cut found."""
        spec = self.options.kinematics
        if spec is None:
            return {}, None
        factor = angle_factor(spec.units or "deg")
        per_side: dict[Side, np.ndarray] = {}
        for side in self.options.sides:
            columns = {
                key: _cycles(
                    field(self.mechanics, str(path), self.url, why="sagittal angles"),
                    self.url,
                    f"{self.test} {path}",
                )
                for key, path in spec.component_columns(side).items()
            }
            shapes = {c.shape for c in columns.values()}
            if len(shapes) != 1:
                raise SourceError(self.url, f"{self.test}: angle arrays differ in shape {shapes}")
            per_side[side] = joint_array(
                columns, next(iter(shapes)), signs=spec.sign, factor=factor
            )
        out: dict[Side, Any] = {}
        cut = None
        if "L" in per_side:
            out["L"] = self._left_rows(per_side["L"], "Angles (left)")
        if "R" in per_side:
            right = per_side["R"]
            if "L" in per_side:
                hip = (slice(None), slice(None), _HIP, _FLEX)
                cut = self._right_cut(per_side["L"][hip], right[hip], "angles")
            else:
                raise SourceError(self.url, "the right leg's cut is found against the left leg")
            if cut == "left":
                self._left_rows(right, "Angles (right)")
            out["R"] = self._right_strides(right, cut)
        return out, cut

    def emg(self) -> tuple[dict[Side, Any], str | None]:
        """Envelopes (N, 1001, 13) per side (right: {stride j: (1001, 13)}), and the cut."""
        spec = self.options.emg
        if spec is None or self.energetics is None:
            if spec is not None:
                self.notes.append(f"{self.test}: no EMG in segEnergetics")
            return {}, None
        activity = field(self.energetics, _activity_path(spec.container), self.url)
        points = self.options.rates.points_per_stride.get("emg")
        per_side: dict[Side, np.ndarray] = {}
        for side in self.options.sides:
            columns: dict[str, list[np.ndarray]] = {}
            missing = []
            for muscle, names in spec.names(side).items():
                arrays = []
                for name in names:
                    if name not in activity:
                        missing.append(name)
                        continue
                    arrays.append(_cycles(activity[name], self.url, f"{self.test} EMG {name}"))
                if arrays:
                    columns[muscle] = arrays
            if not columns:
                raise SourceError(
                    self.url,
                    f"{self.test}: no EMG field named as the catalogue says "
                    f"(<Side>_<Muscle>, e.g. {next(iter(spec.names(side).values()))[0]}); "
                    f"found {sorted(activity)[:8]}",
                )
            if missing:
                self.notes.append(f"{self.test}: EMG {', '.join(missing)} absent (NaN)")
            shapes = {a.shape for arrays in columns.values() for a in arrays}
            if len(shapes) != 1:
                raise SourceError(self.url, f"{self.test}: EMG arrays differ in shape {shapes}")
            shape = next(iter(shapes))
            if points is not None and shape[1] != points:
                raise SourceError(
                    self.url,
                    f"{self.test}: EMG has {shape[1]} points per cycle, the catalogue says "
                    f"{points}",
                )
            check_envelope_undershoot(
                np.concatenate([a.ravel() for arrays in columns.values() for a in arrays]),
                self.url,
                assumption=f"{self.test}: EMG has negative values: not the rectified RMS "
                "envelope the catalogue (emg_kind envelope) describes",
                max_undershoot=1e-6,
                peak_floor=1e-12,
            )
            per_side[side] = muscle_matrix(
                {m: a[0] if len(a) == 1 else a for m, a in columns.items()}, shape
            )
        out: dict[Side, Any] = {}
        cut = None
        if "L" in per_side:
            out["L"] = self._left_rows(per_side["L"], "EMG (left)")
        if "R" in per_side:
            right = per_side["R"]
            if "L" not in per_side:
                raise SourceError(self.url, "the right leg's cut is found against the left leg")
            both = [i for i in range(len(MUSCLES)) if np.isfinite(per_side["L"][..., i]).any()]
            both = [i for i in both if np.isfinite(right[..., i]).any()]
            cut = self._right_cut(per_side["L"][..., both], right[..., both], "EMG")
            if cut == "left":
                self._left_rows(right, "EMG (right)")
            out["R"] = self._right_strides(right, cut)
        return out, cut

    # --- the recording ---------------------------------------------------------------

    def recording(self, subject_info: dict | None, notes: list[str]) -> TrialRecording:
        conditions = self.conditions(subject_info)
        kinematics, kin_cut = self.kinematics()
        emg, emg_cut = self.emg()
        _check_signs(kinematics, conditions.orthosis, self.url, self.test)
        sides: list[SideRecording] = []
        if "L" in kinematics or "L" in emg:
            starts, durations = self.lhs[:-1], np.diff(self.lhs)
            sides += cycle_sides(
                "L",
                durations,
                kinematics=kinematics.get("L"),
                emg=emg.get("L"),
                emg_units="normalised",
                starts_s=starts,
            )
        right = [s for s in (kinematics.get("R"), emg.get("R")) if s is not None]
        if right:
            strides = sorted(set.intersection(*(set(s) for s in right)))
            dropped = sorted(set.union(*(set(s) for s in right)) - set(strides))
            if dropped:
                self.notes.append(
                    f"{self.test}: right strides {dropped} lack angles or EMG, left out"
                )
            if strides:
                index = np.array(strides)
                sides += cycle_sides(
                    "R",
                    self.rhs[index + 1] - self.rhs[index],
                    kinematics=_stack(kinematics.get("R"), strides),
                    emg=_stack(emg.get("R"), strides),
                    emg_units="normalised",
                    starts_s=self.rhs[index],
                )
        cuts = {"angles": kin_cut, "EMG": emg_cut}
        found = ", ".join(f"{k} {v}-HS" for k, v in cuts.items() if v)
        if found:
            self.notes.append(
                f"{self.test}: right-leg arrays found cut at {found} cycles"
                + (" (re-cut at right heel strikes)" if "left" in cuts.values() else "")
            )
        pct = conditions.cadence_pct
        cadence = "preferred" if pct == 0 else f"{pct:+g}%"
        return TrialRecording(
            sides=tuple(sides),
            emg_kind="envelope",
            event_source="pre_segmented",
            notes=tuple(notes + self.notes),
            meta={
                "trial": self.test,
                "speed_mps": conditions.speed_mps,
                "incline_deg": 0.0,
                "condition": f"{'knee_orthosis' if conditions.orthosis else 'free'};"
                f"cadence={cadence}",
            },
            times_absolute=True,
        )


def _activity_path(container: str | None) -> str:
    """The catalogue's ``segEnergetics.T<k>.EMG.Activity.<Side>_<Muscle>`` -> ``EMG.Activity``,
    the path inside one test."""
    parts = (container or "EMG.Activity").split(".")
    parts = [p for p in parts if p not in ("segEnergetics", "T<k>") and "<" not in p]
    return ".".join(parts)


def _stack(strides: dict[int, np.ndarray] | None, keys: list[int]) -> np.ndarray | None:
    return None if strides is None else np.stack([strides[k] for k in keys])


def _check_signs(kinematics: dict[Side, Any], orthosis: bool, url: str, test: str) -> None:
    """[I] flexion / dorsiflexion positive: hip flexed at heel strike, knee flexed in swing,
    ankle plantarflexing after late-stance dorsiflexion (a locked knee is not checked)."""
    for side, value in kinematics.items():
        if not len(value):
            continue
        curves = value if isinstance(value, np.ndarray) else np.stack(list(value.values()))
        check_sagittal_signs(
            np.nanmean(curves[..., _FLEX], axis=0),  # (P, 3)
            url,
            assumption=f"{test}: {side} sagittal angle signs are not flexion / dorsiflexion "
            "positive ([I] assumption)",
            check_knee=not (side == "L" and orthosis),
            nan="omit",
        )

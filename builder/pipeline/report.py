"""The build report (``build_report.json`` beside the arrays of every version), typed.

Written by the pipeline, read by ``builder info``, the HTML quality report and training. The
JSON keeps the shape it has always had (these models' fields, in this order): other readers
parse it as plain JSON.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from builder._version import __version__
from builder.catalog import UnavailableSource
from builder.errors import StoreError
from builder.processing.quality import merge_counts
from builder.records import TrialSpec
from builder.store.layout import REPORT_NAME
from builder.store.location import StoreLocation
from builder.store.staging import TrialOutcome

Quality = dict[str, dict[str, int]]  # check -> kind (emg, kinematics...) -> stride-components


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True)

    trial: str  # TrialSpec.label
    source: str  # catalogue entry
    url: str


class TrialBuilt(_Entry):
    strides: int
    events: str  # the event sources of its recordings, "+"-joined
    notes: list[str]
    quality: Quality


class TrialLeftOut(_Entry):
    reason: str
    retry: bool  # the cause may pass (I/O, a dead worker): the next run tries again


class SourceUnavailable(BaseModel):
    model_config = ConfigDict(frozen=True)

    source: str
    reason: str


class BuildReport(BaseModel):
    """What one build made of its catalogue: trials built and left out (and why), sources
    unavailable, what the quality gate removed, and the timings of a published build."""

    model_config = ConfigDict(frozen=True)

    version: str
    created: str  # ISO 8601, UTC, seconds
    builder_version: str
    catalog: str
    catalog_sha256: str
    fingerprint: str
    n_strides: int
    n_trials_built: int
    n_trials_left_out: int
    trials_built: list[TrialBuilt] = []
    trials_left_out: list[TrialLeftOut] = []
    sources_unavailable: list[SourceUnavailable] = []
    # Stride-components the quality gate left out: dataset -> check -> kind -> count.
    quality: dict[str, Quality] = {}
    timings_s: dict[str, float] | None = None  # published builds only

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BuildReport:
        """The report from its parsed JSON; pydantic's ValidationError if it is not one."""
        return cls.model_validate(data)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict, key for key as written to ``build_report.json``."""
        unset = {"timings_s"} if self.timings_s is None else None  # builds not published
        return self.model_dump(mode="json", exclude=unset)

    def retryable(self) -> list[TrialLeftOut]:
        """Trials left out for reasons that may pass."""
        return [entry for entry in self.trials_left_out if entry.retry]

    def first_reason(self) -> str:
        left = self.trials_left_out
        return f"{left[0].trial}: {left[0].reason}" if left else "no trials matched"


def make_report(
    catalog_path: str,
    catalog_sha: str,
    version: str,
    fingerprint: str,
    trials: dict[str, TrialSpec],
    outcomes: dict[str, TrialOutcome],
    unavailable: list[UnavailableSource],
    n_strides: int,
) -> BuildReport:
    """The report of a build of ``trials`` (keyed by trial key) with these outcomes."""
    built: list[TrialBuilt] = []
    left_out: list[TrialLeftOut] = []
    quality: dict[str, list[Quality]] = {}
    for key, spec in trials.items():
        outcome = outcomes.get(key)
        where = {"trial": spec.label, "source": spec.source, "url": spec.url}
        if outcome is not None and outcome.ok:
            built.append(
                TrialBuilt(
                    **where,
                    strides=outcome.n_strides,
                    events=outcome.event_source,
                    notes=list(outcome.notes),
                    quality=outcome.quality,
                )
            )
            quality.setdefault(spec.dataset, []).append(outcome.quality)
        else:
            reason = outcome.reason if outcome is not None else "not processed"
            retry = outcome.retry if outcome is not None else True
            left_out.append(TrialLeftOut(**where, reason=reason, retry=retry))
    return BuildReport(
        version=version,
        created=now_utc(),
        builder_version=__version__,
        catalog=str(catalog_path),
        catalog_sha256=catalog_sha,
        fingerprint=fingerprint,
        n_strides=n_strides,
        n_trials_built=len(built),
        n_trials_left_out=len(left_out),
        trials_built=built,
        trials_left_out=left_out,
        sources_unavailable=[SourceUnavailable(**asdict(u)) for u in unavailable],
        quality={dataset: merge_counts(counts) for dataset, counts in sorted(quality.items())},
    )


def read_build_report(url: str, storage_options: dict[str, Any] | None = None) -> BuildReport:
    """The build report of the version ``url`` opens now (see ``StoreLocation.read_report``),
    named by that version's URL; pinned once, so a publish meanwhile cannot mix two versions."""
    version = StoreLocation(StoreLocation(url, storage_options).pin(), storage_options)
    return parse_report(version.url, version.read_report())


def parse_report(url: str, data: dict[str, Any]) -> BuildReport:
    """``data`` (the parsed JSON of ``url``'s report) as a BuildReport; StoreError if it is
    not one."""
    try:
        return BuildReport.from_json(data)
    except ValidationError as exc:
        problem = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'report'}: {e['msg']}" for e in exc.errors()
        )
        raise StoreError(f"{url}: {REPORT_NAME} is not a build report ({problem})") from None


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

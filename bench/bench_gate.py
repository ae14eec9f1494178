"""What the quality gate costs: every demo recording cut into strides with and without it.

Run: ``python bench/bench_gate.py``. One process, single-threaded numeric libraries; the
demo's recordings are read once, then ``build_strides`` runs over all of them with the gate
and with the gate replaced by a no-op, alternately (median of 3 each), split by recording
kind: continuous trials (the C3D demo, CSV/OpenSim sources) and sources that ship strides
already cut (one recording per stride). Prints a markdown report and writes it to
``bench/results/gate.md``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported

import statistics  # noqa: E402
import time  # noqa: E402

from _report import publish  # noqa: E402

from builder.catalog import (  # noqa: E402
    bundled_catalog,
    expand_trials,
    load_catalog,
    resolve_metadata,
)
from builder.datasets import read_trial  # noqa: E402
from builder.demo import ensure_demo_sources  # noqa: E402
from builder.errors import SourceError  # noqa: E402
from builder.processing import trial  # noqa: E402
from builder.processing.emg import EmgProcessing  # noqa: E402
from builder.processing.quality import GateResult  # noqa: E402
from builder.records import TrialRecording  # noqa: E402

REPEATS = 3


def _recordings() -> list[tuple[TrialRecording, EmgProcessing, str]]:
    root = ensure_demo_sources()
    catalog = load_catalog(str(bundled_catalog("demo")), {"demo_root": str(root)})
    specs, _ = expand_trials(catalog)
    work = []
    for spec in specs:
        try:
            recordings = read_trial(spec)
        except SourceError:
            continue  # the demo's deliberately unreadable trials
        settings = EmgProcessing.model_validate(spec.processing)
        for recording in recordings:
            activity = resolve_metadata(spec, recording.meta)["activity"]
            work.append((recording, settings, activity))
    return work


def _seconds(work: list[tuple[TrialRecording, EmgProcessing, str]]) -> float:
    clock = time.perf_counter()
    for recording, settings, activity in work:
        trial.build_strides(recording, settings, activity=activity)
    return time.perf_counter() - clock


def main() -> None:
    work = _recordings()
    groups = {
        "continuous trials": [w for w in work if w[0].event_source != "pre_segmented"],
        "strides cut by the source": [w for w in work if w[0].event_source == "pre_segmented"],
        "whole demo": work,
    }
    gate = trial.run_gate
    rows = []
    for name, group in groups.items():
        with_gate, without = [], []
        for _ in range(REPEATS):
            trial.run_gate = gate
            with_gate.append(_seconds(group))
            trial.run_gate = lambda *args, **kwargs: GateResult()
            without.append(_seconds(group))
        trial.run_gate = gate
        strides = sum(trial.build_strides(r, s, activity=a).batch.n_strides for r, s, a in group)
        a, b = statistics.median(with_gate), statistics.median(without)
        rows.append(f"| {name} | {len(group)} | {strides} | {b:.2f} | {a:.2f} | {a / b:.2f}× |")
    publish(
        "Quality gate cost",
        [
            "Cutting, processing and gating every demo recording in one process (median of "
            f"{REPEATS}); the gate replaced by a no-op for the baseline.",
            "",
            "| recordings | n | strides | without gate s | with gate s | ratio |",
            "|---|---:|---:|---:|---:|---:|",
            *rows,
        ],
        "gate",
    )


if __name__ == "__main__":
    main()

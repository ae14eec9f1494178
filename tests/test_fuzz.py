"""Fuzzing (issue 4): over a thousand mutated or truncated C3D, MATLAB (v5 structs, v7.3/HDF5,
tables), CSV and OpenSim inputs, each through the real pipeline path (``process_trial`` with
isolated readers). Each one is a per-trial error with a one-line reason, or a harmless
mutation whose strides are whole; a process_trial never raises and no partial stride is staged
or written.

The mutations are seeded (tests/fuzzing.py): a failure names the target, input number, seed and
mutation; ``fuzzing.mutation(original_bytes, kind, seed)`` rebuilds the input. Run with ``-s``
for the table of outcomes per format.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from fuzzing import BASE_SEED, KINDS, Result, Target, memory_capped, mutation, run_all, summary

from builder.catalog import bundled_catalog, expand_trials, load_catalog
from builder.pipeline.run import BuildOptions, build
from builder.records import TrialSpec

from helpers import REAL_DATA, SMALL_LAYOUT, copy_demo_subset, demo_catalog, trial_specs

# No input hangs its reader for good (under fuzzing.MEMORY_CAP); one that overruns this on a busy
# machine is retried with 4 x 15 = 60 s. The outcome kinds are not asserted per input.
READ_TIMEOUT_S = 15.0
FAMILIES = ["c3d", "mat-v5", "mat-v7.3", "mat-table", "csv", "opensim"]
MIN_INPUTS = 1000

# (family, catalogue source, trial whose url ends with, file mutated (relative to the source
# folder), mutation kind, inputs). The trial's other files stay intact beside the mutated one.
DATASET_TARGETS = [
    ("mat-v5", "lencioni2019", "S01.mat", "S01.mat", "mat", 40),
    ("mat-v5", "angelidou", "P0004.mat", "P0004.mat", "mat", 40),
    ("mat-v5", "grimmer", "Kinematics_P1.mat", "Processed/Joint_Kinematics/Kinematics_P1.mat", "mat", 20),
    ("mat-v5", "grimmer", "Kinematics_P1.mat", "Processed/Touchdowns/Touchdowns_P1.mat", "mat", 15),
    ("mat-v5", "grimmer", "Kinematics_P1.mat", "Processed/Joint_Kinetics/Kinetics_P1.mat", "mat", 10),
    ("mat-v5", "grimmer", "Kinematics_P1.mat", "Preprocessed/EMG/EMG_P1.mat", "mat", 10),
    ("mat-v5", "macaluso2020", "AB01.mat", "AB01.mat", "mat", 20),
    ("mat-v5", "van_criekinge2023", "AbleBodiedAdults_v06-03-23.mat",
     "MAT_normalizedData_AbleBodiedAdults_v06-03-23.mat", "mat", 20),
    ("mat-v5", "moreira2021", "Participant1/Processed_Data.mat",
     "MAT_files/Participant1/Processed_Data.mat", "mat", 20),
    ("mat-v5", "bacek2024", "Sub1_segMechanics.mat", "Sub1_segMechanics.mat", "mat", 20),
    ("mat-v5", "bacek2024", "Sub1_segMechanics.mat", "Subjects_Info.mat", "mat", 10),
    ("mat-v7.3", "k2muse2025", "O1.mat", "ProcessedData/O1.mat", "mat", 70),
    ("mat-v7.3", "embry2018", "InclineExperiment.mat", "InclineExperiment.mat", "mat", 45),
    ("mat-v7.3", "bacek2024", "Sub1_segMechanics.mat", "Sub1_segEnergetics.mat", "mat", 55),
    ("mat-table", "camargo2021", "treadmill/emg/treadmill_01_01.mat",
     "AB06/10_09_18/treadmill/emg/treadmill_01_01.mat", "mat", 40),
    ("mat-table", "camargo2021", "treadmill/emg/treadmill_01_01.mat",
     "AB06/10_09_18/treadmill/ik/treadmill_01_01.mat", "mat", 30),
    ("mat-table", "camargo2021", "treadmill/emg/treadmill_01_01.mat",
     "AB06/10_09_18/treadmill/id/treadmill_01_01.mat", "mat", 25),
    ("mat-table", "camargo2021", "treadmill/emg/treadmill_01_01.mat",
     "AB06/10_09_18/treadmill/gcLeft/treadmill_01_01.mat", "mat", 20),
    ("mat-table", "camargo2021", "treadmill/emg/treadmill_01_01.mat",
     "AB06/10_09_18/treadmill/conditions/treadmill_01_01.mat", "mat", 15),
    ("mat-table", "camargo2021", "treadmill/emg/treadmill_01_01.mat", "SubjectInfo.mat", "mat", 10),
    ("mat-table", "gait120", "S061/EMG/RawData.mat",
     "Gait120_061_to_070/S061/EMG/RawData.mat", "mat", 40),
    ("csv", "moghadam2023", "P10Data/EMG/1.csv", "Gait_Time_Series/P10Data/EMG/1.csv", "csv", 60),
    ("csv", "siat_llmd2023", "Sub01_WAK_Data.csv",
     "SIAT_LLMD20230404/Sub01/Data/Sub01_WAK_Data.csv", "csv", 45),
    ("csv", "siat_llmd2023", "Sub01_WAK_Data.csv",
     "SIAT_LLMD20230404/Sub01/Labels/Sub01_WAK_Label.csv", "csv", 35),
    ("csv", "hu2018_enabl3s", "AB185_Circuit_001_post.csv",
     "AB185/AB185/Processed/AB185_Circuit_001_post.csv", "csv", 40),
    ("csv", "moreira2021_ascii", "V25/L/Angles/T3.txt",
     "ASCII_files/Participant3/Processed_Data/V25/L/Angles/T3.txt", "csv", 20),
    ("csv", "moreira2021_ascii", "V25/L/Angles/T3.txt",
     "ASCII_files/Participant3/Processed_Data/V25/L/EMGs_env/T3.txt", "csv", 15),
    ("csv", "moreira2021_ascii", "V25/L/Angles/T3.txt",
     "ASCII_files/Participant3/Processed_Data/V25/L/Torques_Norm/T3.txt", "csv", 10),
    ("csv", "moreira2021_ascii", "V25/L/Angles/T3.txt",
     "ASCII_files/Participant3/Processed_Data/V25/L/Stride_Time/T3.txt", "csv", 10),
    ("opensim", "moghadam2023", "P10Data/EMG/1.csv",
     "Gait_Time_Series/P10Data/Joints_Kinematics/1.mot", "opensim", 45),
    ("opensim", "moghadam2023", "P10Data/EMG/1.csv",
     "Gait_Time_Series/P10Data/Joints_Kinetics/1.sto", "opensim", 35),
    ("opensim", "gait120", "S061/EMG/RawData.mat",
     "Gait120_061_to_070/S061/JointAngle/LevelWalking/Trial01/step01.mot", "opensim", 40),
]
# The demo's C3D files: one of each writing style (plain, subject prefix, lower-case events and
# a non-zero first frame, events in CONTEXTS).
DEMO_C3D = [
    ("S01/walk_v0.80_i+0_t01.c3d", 100),
    ("S02/walk_v1.20_i+0_t01.c3d", 40),
    ("S03/rampup_v1.00_i+6_t01.c3d", 40),
    ("S04/walk_v1.60_i+0_t02.c3d", 40),
]
# Real third-party files, when ../shared/data/real is there.
REAL_C3D = [
    ("gait-pig.c3d", 30),
    ("pyCGM2 lower limb CGM24 Walking01.c3d", 30),
    ("gait-raw.c3d", 20),
    ("Gait with EMG.c3d", 20),
    ("newwalk.c3d", 20),
    ("walking2.c3d", 15),
]


def fuzz_targets(demo_root: Path, folder: Path) -> list[Target]:
    targets = []
    datasets = demo_root / "datasets"  # the miniatures the demo wrote beside its C3D files
    specs: dict[str, list[TrialSpec]] = {}
    for family, source, trial, rel, kind, count in DATASET_TARGETS:
        if source not in specs:
            specs[source] = trial_specs(datasets, source)
        (spec,) = [s for s in specs[source] if s.url.endswith(trial)]
        root = datasets / source.removesuffix("_ascii")
        name = f"{source}:{rel}"
        targets.append(Target(family, name, spec, str(root), rel, kind, count))

    catalog = demo_catalog(folder, demo_root)
    demo_specs, _ = expand_trials(load_catalog(catalog))
    for rel, count in DEMO_C3D:
        (spec,) = [s for s in demo_specs if s.url == str(demo_root / rel)]
        targets.append(Target("c3d", f"demo:{rel}", spec, str(demo_root), rel, "c3d", count, (rel,)))

    if REAL_DATA.is_dir():
        for name, count in REAL_C3D:
            spec = TrialSpec(
                source="real", adapter="c3d", url=str(REAL_DATA / name), dataset="real",
                subject="s01", activity="walk", trial=Path(name).stem,
            )  # fmt: skip
            targets.append(Target("c3d", f"real:{name}", spec, str(REAL_DATA), name, "c3d", count, (name,)))
        variables = {"GAIT_REAL_DATA": str(REAL_DATA)}
        (spec,), _ = expand_trials(load_catalog(bundled_catalog("experimental_data"), variables))
        targets.append(
            Target("mat-v5", "real:ExperimentalData.mat", spec, str(REAL_DATA),
                   "ExperimentalData.mat", "mat", 25, ("ExperimentalData.mat",))
        )  # fmt: skip
    return targets


@pytest.fixture(scope="module")
def fuzzed(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Result]:
    """Every mutated input through process_trial, on 2 processes (each with its reader)."""
    folder = tmp_path_factory.mktemp("fuzz")
    targets = fuzz_targets(demo_root, folder)
    results, failures = run_all(
        targets, folder, read_timeout_s=READ_TIMEOUT_S, workers=min(2, os.cpu_count() or 1)
    )
    print("\nfuzzing: outcomes per format\n" + summary(results, FAMILIES))
    assert not failures, "\n".join(failures)
    assert len(results) == sum(t.count for t in targets)
    return results


@pytest.mark.parametrize("family", FAMILIES)
def test_every_mutated_input_is_a_per_trial_error_or_whole_strides(fuzzed, family) -> None:
    mine = [r for r in fuzzed if r.family == family]
    if not mine:
        pytest.skip(f"no {family} inputs")
    bad = [r for r in mine if r.problems]
    message = "\n".join(f"{r.describe()}\n    " + "\n    ".join(r.problems) for r in bad[:20])
    assert not bad, f"{len(bad)} of {len(mine)} {family} inputs went wrong:\n{message}"
    assert {r.kind for r in mine} <= set(KINDS) - {"raised"}


def test_over_a_thousand_inputs_of_every_format(fuzzed) -> None:
    per_family = {f: sum(r.family == f for r in fuzzed) for f in FAMILIES}
    assert sum(per_family.values()) >= MIN_INPUTS, per_family
    for family in ("c3d", "mat-v5", "mat-v7.3", "mat-table", "csv", "opensim"):
        assert per_family[family] >= 100, per_family
        failed = [r for r in fuzzed if r.family == family and r.kind != "built"]
        assert len(failed) >= per_family[family] // 3, f"{family}: mutations too mild"


# --- a real build over a catalogue with mutated files -------------------------------------------

N_MUTATED = 60


@pytest.mark.cluster
def test_a_build_over_mutated_files_completes_with_whole_strides(demo_root: Path, tmp_path: Path) -> None:
    raw = copy_demo_subset(demo_root, tmp_path / "raw", ("S01",))
    good = sorted(p.name for p in (raw / "S01").glob("*.c3d"))
    mutated = {}
    for i in range(N_MUTATED):
        base = good[i % len(good)]
        what, data = mutation((raw / "S01" / base).read_bytes(), "c3d", (BASE_SEED, 1, i))
        # Same activity, speed and incline as the base; its own trial token.
        name = base.rsplit("_", 1)[0] + f"_f{i:02d}.c3d"
        (raw / "S01" / name).write_bytes(data)
        mutated[name] = f"seed {(BASE_SEED, 1, i)} [{what}] of {base}"
    options = BuildOptions(
        output=str(tmp_path / "gait.zarr"),
        workers=2,
        progress=False,
        dashboard_address=":0",
        # Generous: no mutated file hangs its reader (under the memory cap), and no good file
        # may be left out however busy the machine (retried with 240 s).
        read_timeout_s=60,
        layout=SMALL_LAYOUT,
    )
    with memory_capped():  # the Dask workers and their readers inherit it
        result = build(str(demo_catalog(tmp_path, raw)), options)
    report = result.report
    built = {Path(e.url).name: e for e in report.trials_built}
    left = {Path(e.url).name: e for e in report.trials_left_out}
    assert set(built) | set(left) == set(good) | set(mutated) and not set(built) & set(left)
    assert all(built[name].strides == 16 for name in good), "a good trial was not built whole"
    for name, entry in left.items():
        assert name in mutated, f"good trial {name} left out: {entry.reason}"
        reason = entry.reason
        assert reason.strip() and "\n" not in reason, (mutated[name], reason)
        assert not entry.retry, (mutated[name], reason)
    assert len(left) >= N_MUTATED // 3, "mutations too mild"
    print(
        f"\nbuild over {N_MUTATED} mutated + {len(good)} good C3D files: "
        f"{len(built) - len(good)} mutated built, {len(left)} left out, {result.n_strides} strides"
    )

    ds = xr.open_zarr(tmp_path / "gait.zarr").load()
    n = ds.sizes["stride"]
    assert n == result.n_strides == sum(e.strides for e in built.values())
    assert {Path(p).name for p in ds.source_path.values} <= set(built)
    starts, ends = ds.stride_starts.values, ds.stride_ends.values
    rows = ends - starts
    assert starts[0] == 0 and (rows > 0).all() and ends[-1] == ds.sizes["emg_sample"]
    assert (np.abs(rows - ds.duration_s.values * 1000) <= 3).all()
    for name, mask in (
        ("emg_envelope", "emg_mask"),
        ("kinematics", "kinematics_mask"),
        ("kinetics", "kinetics_mask"),
    ):
        values, present = ds[name].values, ds[mask].values
        assert not np.isinf(values).any(), name
        assert np.isfinite(values).all(axis=1)[present].all(), f"{name}: present but not finite"
        assert np.isnan(values).all(axis=1)[~present].all(), f"{name}: absent but not NaN"
    emg, emg_mask = ds.emg.values, ds.emg_mask.values
    for i in range(n):
        stride = emg[starts[i] : ends[i]]
        assert np.isfinite(stride[:, emg_mask[i]]).all() and np.isnan(stride[:, ~emg_mask[i]]).all()
    saved = json.loads((tmp_path / "gait.zarr" / "build_report.json").read_text())
    assert saved["n_trials_left_out"] == len(left)
    assert dataclasses.is_dataclass(result)

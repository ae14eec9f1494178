"""End to end: demo C3D files → Dask LocalCluster → Zarr store, checked against ground truth."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

from builder.conventions import JOINTS, MUSCLES, PLANES
from builder.demo import demo_trials, simulate_demo_trial
from builder.errors import BuilderError
from builder.pipeline.report import BuildReport
from builder.store.layout import TABLE_COLUMNS, expected_chunk_keys

from helpers import (
    REAL_DATA,
    assert_same_arrays,
    build_store,
    copy_demo_subset,
    demo_catalog,
    requires_real_data,
)

pytestmark = pytest.mark.cluster

DEMO_MUSCLES = {
    "vastus_lateralis", "rectus_femoris", "vastus_medialis", "tibialis_anterior", "biceps_femoris",
    "semitendinosus", "gastrocnemius_medialis", "gastrocnemius_lateralis", "soleus", "gluteus_medius",
}  # fmt: skip


@pytest.fixture(scope="module")
def demo_store(
    demo_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, BuildReport]:
    """The whole demo built once with 2 workers (and small shards: many write regions)."""
    folder = tmp_path_factory.mktemp("demo_store")
    result = build_store(demo_catalog(folder, demo_root), folder / "gait.zarr", workers=2)
    return folder / "gait.zarr", result.report


def test_store_opens_with_xarray_with_named_dims_and_coordinates(demo_store) -> None:
    path, _ = demo_store
    ds = xr.open_zarr(path)
    assert ds.kinematics.dims == ("stride", "sample", "joint", "plane")
    assert ds.emg_envelope.dims == ("stride", "sample", "muscle")
    assert ds.emg.dims == ("emg_sample", "muscle")
    assert list(ds.joint.values) == list(JOINTS) and list(ds.plane.values) == list(PLANES)
    assert list(ds.muscle.values) == list(MUSCLES)
    for column in TABLE_COLUMNS:
        assert ds[column].dims == ("stride",), column
    walking_left = ds.sel(stride=(ds.activity == "walk") & (ds.side == "L"))
    assert walking_left.sizes["stride"] == 4 * 3 * 2 * 8
    assert ds.kinetics.attrs["units"] == "N.m/kg" and ds.kinematics.attrs["units"] == "deg"


def test_every_generated_stride_is_in_the_store_and_traceable(demo_store, demo_root: Path) -> None:
    path, report = demo_store
    ds = xr.open_zarr(path)
    trials = demo_trials(demo_root.parent.parent)
    assert ds.sizes["stride"] == len(trials) * 2 * 8 == report.n_strides
    assert report.n_trials_built == 40 and report.trials_left_out == []
    table = pd.DataFrame({"subject": ds.subject.values, "activity": ds.activity.values})
    counts = table.groupby(["subject", "activity"]).size()
    assert set(counts.values) == {96, 32}  # walk: 3 speeds x 2 trials x 16; ramps: 2 x 16
    assert sorted(set(ds.patient_id.values.tolist())) == [0, 1, 2, 3]
    assert all(Path(p).is_file() for p in set(ds.source_path.values.tolist()))
    starts, ends = ds.stride_starts.values, ds.stride_ends.values
    np.testing.assert_array_equal(starts[1:], ends[:-1])
    assert starts[0] == 0 and ends[-1] == ds.sizes["emg_sample"]
    np.testing.assert_allclose(ends - starts, ds.duration_s.values * 1000, atol=1.0)


def test_masks_follow_the_recorded_muscles_and_missing_channels_are_nan(demo_store) -> None:
    ds = xr.open_zarr(demo_store[0])
    recorded = np.array([m in DEMO_MUSCLES for m in MUSCLES])
    assert (ds.emg_mask.values == recorded).all()
    assert ds.kinematics_mask.values.all() and ds.kinetics_mask.values.all()
    absent = ds.emg_envelope.sel(muscle=["peroneus_longus", "peroneus_brevis", "gluteus_maximus"])
    assert np.isnan(absent.values).all()
    assert np.isnan(ds.emg.values[:, ~recorded]).all()
    assert np.isfinite(ds.emg.values[:, recorded]).all()


def test_curves_match_the_generating_model(demo_store, demo_root: Path) -> None:
    """Known curves through C3D, the adapter and the pipeline, within stated tolerances."""
    ds = xr.open_zarr(demo_store[0]).load()
    for trial in demo_trials(demo_root.parent.parent)[::7]:  # one of each subject's styles
        truth = simulate_demo_trial(trial)
        strides = ds.sel(stride=ds.source_path == str(trial.path))
        for side in ("L", "R"):
            mine = strides.sel(stride=strides.side == side)
            hs = truth.heel_strikes[side]
            # Heel strikes in the file's absolute time base (S03 has a non-zero first frame).
            np.testing.assert_allclose(mine.source_start_s.values, hs[:-1], atol=1e-4)
            np.testing.assert_allclose(mine.duration_s.values, np.diff(hs), atol=1e-4)
            times = truth.times()
            for i, (start, end) in enumerate(itertools.pairwise(hs)):
                query = np.linspace(start, end, 200)
                expected_kin = _interp(times, truth.kinematics[side], query)
                expected_mom = _interp(times, truth.kinetics[side], query)
                # float32 storage and the C3D's float32 points: 1e-3 deg / 1e-4 N·m/kg.
                np.testing.assert_allclose(mine.kinematics.values[i], expected_kin, atol=1e-3)
                np.testing.assert_allclose(mine.kinetics.values[i], expected_mom, atol=1e-4)


def test_envelopes_follow_the_generating_activations(demo_store, demo_root: Path) -> None:
    ds = xr.open_zarr(demo_store[0]).load()
    trial = demo_trials(demo_root.parent.parent)[0]
    truth = simulate_demo_trial(trial)
    mine = ds.sel(stride=(ds.source_path == str(trial.path)) & (ds.side == "L"))
    t = truth.start_s + np.arange(truth.n_analog) / truth.analog_rate_hz
    hs = truth.heel_strikes["L"]
    for m, muscle in enumerate(truth.muscles):
        expected = np.stack(
            [
                np.interp(np.linspace(a, b, 200), t, truth.activations["L"][:, m])
                for a, b in itertools.pairwise(hs)
            ]
        )
        got = mine.emg_envelope.sel(muscle=muscle).values
        r = np.corrcoef(expected.ravel(), got.ravel())[0, 1]
        assert r > 0.9, (muscle, r)


def test_normalisation_is_undone_by_the_scale(demo_store) -> None:
    ds = xr.open_zarr(demo_store[0])
    scale = ds.emg_scale.values
    mask = ds.emg_mask.values
    assert (scale[mask] > 0).all() and np.isnan(scale[:, ~mask.any(axis=0)]).all()
    # Per subject and muscle the median stride envelope peak is 1 after normalisation.
    peaks = ds.emg_envelope.sel(muscle=sorted(DEMO_MUSCLES)).max("sample").to_dataframe()
    medians = peaks.groupby(["patient_id", "muscle"])["emg_envelope"].median().dropna()
    np.testing.assert_allclose(medians.values, 1.0, rtol=1e-5)
    # Undoing it gives volts of the size the demo records (≈0.1–1 mV envelope peaks).
    recorded = sorted(DEMO_MUSCLES)
    volts = ds.emg_envelope.sel(muscle=recorded).max("sample") * ds.emg_scale.sel(muscle=recorded)
    assert 1e-5 < float(np.median(volts.values)) < 1e-3


def test_every_chunk_is_written_and_the_index_matches(demo_store) -> None:
    path, _ = demo_store
    group = zarr.open_group(str(path), mode="r")
    stored = {str(p.relative_to(path.resolve())) for p in path.resolve().rglob("*") if p.is_file()}
    assert expected_chunk_keys(group) <= stored
    with h5py.File(path / "stride_index.h5") as f:
        np.testing.assert_array_equal(f["stride_starts"][:], group["stride_starts"][:])
        np.testing.assert_array_equal(f["stride_ends"][:], group["stride_ends"][:])
        assert set(f["stride_metadata"]) == set(TABLE_COLUMNS)
        sides = f["stride_metadata/side"].asstr()[:]
        assert list(sides) == [str(s) for s in group["side"][:]]
        np.testing.assert_array_equal(f["stride_metadata/patient_id"][:], group["patient_id"][:])


def test_one_and_two_workers_give_identical_arrays(
    demo_store, demo_root: Path, tmp_path: Path
) -> None:
    one_worker = build_store(demo_catalog(tmp_path, demo_root), tmp_path / "gait.zarr", workers=1)
    assert one_worker.n_strides == demo_store[1].n_strides
    assert_same_arrays(tmp_path / "gait.zarr", demo_store[0])


def test_rerun_is_up_to_date_and_fresh_makes_a_new_version(demo_root: Path, tmp_path: Path) -> None:
    raw = copy_demo_subset(demo_root, tmp_path / "raw", ("S01",))
    catalog = demo_catalog(tmp_path, raw)
    first = build_store(catalog, tmp_path / "gait.zarr", workers=1)
    again = build_store(catalog, tmp_path / "gait.zarr", workers=1)
    assert not first.up_to_date and again.up_to_date and again.version == first.version
    fresh = build_store(catalog, tmp_path / "gait.zarr", workers=1, fresh=True)
    assert fresh.version != first.version and not fresh.up_to_date
    assert_same_arrays(tmp_path / "gait.zarr", tmp_path / "gait.zarr.versions" / first.version)

    # A new file is an incremental build: a new version, only the new trial processed.
    extra = next((demo_root / "S02").glob("*.c3d"))
    (raw / "S02").mkdir()
    (raw / "S02" / extra.name).write_bytes(extra.read_bytes())
    grown = build_store(catalog, tmp_path / "gait.zarr", workers=1)
    assert grown.n_trials_built == first.n_trials_built + 1
    assert grown.n_strides == first.n_strides + 16


def test_bad_files_are_reported_and_everything_else_is_built(
    demo_root: Path, tmp_path: Path
) -> None:
    raw = copy_demo_subset(demo_root, tmp_path / "raw", ("S01",))
    good = sorted((raw / "S01").glob("*.c3d"))
    truncated = raw / "S01" / "walk_v0.90_i+0_t01.c3d"
    truncated.write_bytes(good[0].read_bytes()[: len(good[0].read_bytes()) // 2])
    (raw / "S01" / "walk_v0.90_i+0_t02.c3d").write_bytes(b"this is not a C3D file" * 40)
    (raw / "S01" / "walk_v0.90_i+0_t03.c3d").write_bytes(b"")

    result = build_store(demo_catalog(tmp_path, raw), tmp_path / "gait.zarr", workers=2)

    assert result.n_trials_built == len(good) and result.n_strides == len(good) * 16
    left = {Path(e.url).name: e.reason for e in result.report.trials_left_out}
    assert set(left) == {
        "walk_v0.90_i+0_t01.c3d",
        "walk_v0.90_i+0_t02.c3d",
        "walk_v0.90_i+0_t03.c3d",
    }
    assert "truncated" in left["walk_v0.90_i+0_t01.c3d"]
    assert "not a readable C3D file" in left["walk_v0.90_i+0_t02.c3d"]
    ds = xr.open_zarr(tmp_path / "gait.zarr")
    assert "0.90" not in " ".join(ds.source_path.values.tolist())
    report = json.loads((tmp_path / "gait.zarr" / "build_report.json").read_text())
    assert len(report["trials_left_out"]) == 3


def test_nothing_built_is_an_error_and_nothing_is_published(tmp_path: Path) -> None:
    raw = tmp_path / "raw" / "S01"
    raw.mkdir(parents=True)
    (raw / "walk_v1.00_i+0_t01.c3d").write_bytes(b"garbage")
    with pytest.raises(BuilderError, match="no trial produced a stride"):
        build_store(demo_catalog(tmp_path, tmp_path / "raw"), tmp_path / "gait.zarr", workers=1)
    with pytest.raises(ValueError, match="no complete build of this store exists yet"):
        xr.open_zarr(tmp_path / "gait.zarr")


def test_info_after_a_failed_build_says_it_failed_when_and_why(
    demo_root: Path, tmp_path: Path
) -> None:
    """Issue 9, defect 6: not "a build is under way or was interrupted"."""
    raw = tmp_path / "raw" / "S01"
    raw.mkdir(parents=True)
    trial = raw / "walk_v1.20_i+0_t01.c3d"
    trial.write_bytes(b"garbage")
    catalog, output = demo_catalog(tmp_path, tmp_path / "raw"), tmp_path / "gait.zarr"
    with pytest.raises(BuilderError):
        build_store(catalog, output, workers=1)

    def info() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "builder", "info", str(output)], capture_output=True, text=True
        )

    failed = info()
    assert failed.returncode == 1
    assert "no complete build yet; the last build failed at 20" in failed.stderr
    assert "no trial produced a stride" in failed.stderr
    assert "not a readable C3D file" in failed.stderr  # the first reason
    assert "under way" not in failed.stderr

    trial.write_bytes((demo_root / "S01" / trial.name).read_bytes())
    version = build_store(catalog, output, workers=1).version
    assert "Note" not in info().stdout
    trial.write_bytes(b"garbage again")
    with pytest.raises(BuilderError):
        build_store(catalog, output, workers=1)
    after = info()
    assert after.returncode == 0, after.stderr
    text = " ".join(after.stdout.split())
    assert "Note: the last build failed at 20" in text and "not a readable C3D file" in text
    assert f"Shown below: version {version}" in text


def _interp(times: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    flat = values.reshape(len(times), -1)
    out = np.stack([np.interp(query, times, flat[:, c]) for c in range(flat.shape[1])], axis=1)
    return out.reshape((len(query), *values.shape[1:]))


@requires_real_data
def test_real_recordings_build_with_masks_from_plates_and_gaps(tmp_path: Path) -> None:
    """gait-pig (stored events) and gait-raw (no events) through the whole pipeline."""
    catalog = tmp_path / "real.yaml"
    catalog.write_text(
        f"""
sources:
  real:
    driver: c3d
    args:
      urlpath: "{REAL_DATA}/gait-{{trial}}.c3d"
      emg: {{match: label, channels: {{tibialis_anterior: {{L: EMG1, R: EMG2}}}}}}
    metadata:
      dataset: c3d.org
      licence: c3d.org free sample data
      citation: c3d.org sample 03
      defaults: {{subject: A22, activity: walk}}
"""
    )
    result = build_store(catalog, tmp_path / "gait.zarr", workers=1)
    ds = xr.open_zarr(tmp_path / "gait.zarr").load()
    pig = ds.sel(stride=ds.trial == "pig")
    raw = ds.sel(stride=ds.trial == "raw")
    # gait-pig: L 0.570→1.520→2.480, R 1.036→2.000 (its stored events).
    np.testing.assert_allclose(pig.source_start_s.values, [0.570, 1.036, 1.520], atol=1e-3)
    assert list(pig.side.values) == ["L", "R", "L"]
    # Plates covered L's first and R's stance; the last L stride had no plate and its angles
    # end before it does (invalid frames), so both are masked, never filled.
    assert pig.kinetics_mask.values.all(axis=(1, 2)).tolist() == [True, True, False]
    assert pig.kinematics_mask.values.all(axis=(1, 2)).tolist() == [True, True, False]
    assert np.isnan(pig.kinetics.values[2]).all()
    ankle = pig.kinetics.sel(joint="ankle", plane="flexion").min("sample").values[:2]
    assert ((ankle < -1.0) & (ankle > -1.8)).all()  # internal plantarflexor moment, N·m/kg
    # gait-raw: no events, no model outputs; strides from plates + kinematics.
    assert len(raw.stride) == 4 and not raw.kinematics_mask.values.any()
    # EMG1/EMG2 are unplugged electrodes (five ADC levels of noise that hold one level for
    # 5-10 samples): the quality gate leaves them out of every stride, and says so.
    assert not ds.emg_mask.values.any()
    assert result.report.quality == {"c3d.org": {"constant_run": {"emg": 7}}}
    built = {entry.trial: entry for entry in result.report.trials_built}
    assert built["c3d.org/A22/raw (gait-raw.c3d)"].events == "force_plate+kinematics"
    # each stride names the detectors of its two heel strikes
    assert set(raw.event_source.values) == {"force_plate+kinematics", "kinematics"}
    assert set(pig.event_source.values) == {"events"}


def test_the_report_file_is_the_typed_report_key_for_key(demo_store) -> None:
    """build_report.json keeps its JSON shape: BuildReport reads it and writes it back
    byte for byte."""
    path, report = demo_store
    text = (path / "build_report.json").read_text()
    assert BuildReport.from_json(json.loads(text)) == report
    assert json.dumps(report.to_json(), indent=2) == text


def test_info_and_export_index_from_the_command_line(demo_store, tmp_path: Path) -> None:
    path, report = demo_store
    info = subprocess.run(
        [sys.executable, "-m", "builder", "info", str(path)], capture_output=True, text=True
    )
    assert info.returncode == 0, info.stderr
    assert "ramp_ascent" in info.stdout and "% of total" in info.stdout
    assert f"{report.n_strides} strides" in info.stdout
    assert "40 trials built, 0 left out" in info.stdout
    exported = subprocess.run(
        [
            sys.executable,
            "-m",
            "builder",
            "export-index",
            str(path),
            "--to",
            str(tmp_path / "i.h5"),
        ],
        capture_output=True,
        text=True,
    )
    assert exported.returncode == 0, exported.stderr
    with h5py.File(tmp_path / "i.h5") as f, h5py.File(path / "stride_index.h5") as g:
        np.testing.assert_array_equal(f["stride_ends"][:], g["stride_ends"][:])
        assert list(f["stride_metadata/activity"].asstr()[:]) == list(
            g["stride_metadata/activity"].asstr()[:]
        )

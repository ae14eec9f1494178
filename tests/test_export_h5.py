"""``builder export-h5``: the selected strides with their signals in one HDF5 file that MATLAB's
``h5read`` takes: every array equal to the store's, gzip only, fixed-length text, units and
dims (reversed for MATLAB) as scalar string attributes; bad or empty queries fail in one line.

The file is read back "the way MATLAB would": with plain h5py, no builder code, and only the
filters MATLAB's HDF5 library has (deflate, shuffle)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr

from builder.store.layout import TABLE_COLUMNS

QUERY = "dataset == 'demo' and activity == 'walk'"
SIGNALS = ("emg_envelope", "kinematics", "kinetics", "emg_scale")
MASKS = ("emg_mask", "kinematics_mask", "kinetics_mask")
TEXT = ("dataset", "subject", "activity", "trial", "side", "licence", "source_path")
MATLAB_FILTERS = {h5py.h5z.FILTER_DEFLATE, h5py.h5z.FILTER_SHUFFLE}


def export_h5(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "builder", "export-h5", *args],
        capture_output=True,
        text=True,
        timeout=900,  # against a hang only
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def exported(demo_store, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("export-h5") / "walk.h5"
    result = export_h5(str(demo_store[0]), "--to", str(path), "--query", QUERY)
    assert result.returncode == 0, result.stderr
    return path, one_line(result)


@pytest.fixture(scope="module")
def store(demo_store) -> zarr.Group:
    return zarr.open_group(str(demo_store[0]), mode="r")


def text(store: zarr.Group, name: str) -> np.ndarray:
    """A text array of the store as Python strings (zarr gives numpy's StringDType)."""
    return np.array([str(v) for v in store[name][:]], dtype=object)


def expected_selection(store: zarr.Group) -> np.ndarray:
    """The strides QUERY picks, worked out from the store's own columns."""
    dataset, activity = text(store, "dataset"), text(store, "activity")
    return np.flatnonzero((dataset == "demo") & (activity == "walk"))


def test_the_command_prints_one_line_with_counts_and_size(exported, store) -> None:
    path, line = exported
    n = len(expected_selection(store))
    assert line.startswith(f"Wrote {path}: {n} strides, ")
    assert "EMG rows" in line and f"{path.stat().st_size / 1e6:.1f} MB" in line


def test_every_array_equals_the_stores_selected_strides(exported, store) -> None:
    path, _ = exported
    selected = expected_selection(store)
    assert 0 < len(selected) < store["stride"].shape[0]  # a real subset
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["stride_index"][:], selected)
        for name in SIGNALS:
            got = f[name][:]
            assert got.dtype == store[name].dtype
            np.testing.assert_array_equal(got, np.asarray(store[name][:])[selected])
        for name in MASKS:
            assert f[name].dtype == np.uint8  # not HDF5's boolean enum, which MATLAB reads as text
            expected = np.asarray(store[name][:])[selected].astype(np.uint8)
            np.testing.assert_array_equal(f[name][:], expected)
        # raw EMG: each selected stride's rows, concatenated, with offsets into them
        starts, ends = f["stride_starts"][:], f["stride_ends"][:]
        store_starts = np.asarray(store["stride_starts"][:])[selected]
        store_ends = np.asarray(store["stride_ends"][:])[selected]
        np.testing.assert_array_equal(ends - starts, store_ends - store_starts)
        assert starts[0] == 0 and (starts[1:] == ends[:-1]).all()
        emg, store_emg = f["emg"][:], np.asarray(store["emg"][:])
        assert emg.shape == (ends[-1], store_emg.shape[1])
        for i in range(len(selected)):
            np.testing.assert_array_equal(
                emg[starts[i] : ends[i]], store_emg[store_starts[i] : store_ends[i]]
            )
        # coordinates
        np.testing.assert_array_equal(f["gait_cycle_pct"][:], store["gait_cycle_pct"][:])
        for name in ("joint", "plane", "muscle"):
            got = [v.decode() for v in f[name][:]]
            assert got == list(text(store, name))


def test_the_stride_table_is_numbers_and_fixed_length_text(exported, store) -> None:
    path, _ = exported
    selected = expected_selection(store)
    with h5py.File(path, "r") as f:
        meta = f["stride_metadata"]
        for name in ("patient_id", "speed_mps", "incline_deg", "duration_s", "source_start_s"):
            assert meta[name].dtype == store[name].dtype
            np.testing.assert_array_equal(meta[name][:], np.asarray(store[name][:])[selected])
        for name in TEXT:
            info = h5py.check_string_dtype(meta[name].dtype)
            assert info is not None and info.length is not None  # fixed-length, not vlen
            assert info.encoding == "utf-8" and meta[name].dtype.kind == "S"
            got = [v.decode("utf-8") for v in meta[name][:]]
            assert got == list(text(store, name)[selected])
        assert list(meta) == sorted(TABLE_COLUMNS)  # every column (h5py lists them sorted)
        assert {v.decode() for v in meta["dataset"][:]} == {"demo"}
        assert {v.decode() for v in meta["activity"][:]} == {"walk"}


def test_it_reads_like_matlab_gzip_chunks_scalar_attrs_reversed_dims(exported, store) -> None:
    """Only plain h5py: every dataset chunked with deflate (+ shuffle), no enum or vlen types,
    attributes scalar, and ``matlab_dims`` the reverse of ``dims`` (h5read is column-major)."""
    path, _ = exported
    datasets: dict[str, h5py.Dataset] = {}
    with h5py.File(path, "r") as f:

        def collect(name: str, node: object) -> None:  # returning a value stops visititems
            if isinstance(node, h5py.Dataset):
                datasets[name] = node

        f.visititems(collect)
        assert {"emg", *SIGNALS, *MASKS, "stride_starts", "stride_ends"} <= set(datasets)
        for name, ds in datasets.items():
            assert ds.chunks is not None and ds.compression == "gzip" and ds.shuffle, name
            plist = ds.id.get_create_plist()
            filters = {plist.get_filter(i)[0] for i in range(plist.get_nfilters())}
            assert filters <= MATLAB_FILTERS and h5py.h5z.FILTER_DEFLATE in filters, name
            assert ds.dtype.kind in "iufS", (name, ds.dtype)  # no enum, no vlen, no object
            dims = ds.attrs["dims"].split(",")
            assert len(dims) == ds.ndim and ds.attrs["matlab_dims"].split(",") == dims[::-1]
            assert [d.label for d in ds.dims] == dims  # HDF5's DIMENSION_LABELS too
            for key, value in ds.attrs.items():
                if key not in ("DIMENSION_LABELS",):
                    assert np.ndim(value) == 0, (name, key)  # scalar, as h5readatt wants
        # units from the store's own attributes
        for name in (*SIGNALS, "emg", "gait_cycle_pct"):
            assert f[name].attrs["units"] == store[name].attrs["units"]
        assert f["emg"].attrs["sampling_rate_hz"] == store["emg"].attrs["sampling_rate_hz"]
        # MATLAB's view is the transpose: kinematics(plane, joint, sample, stride)
        kinematics = f["kinematics"]
        assert f["kinematics"].attrs["matlab_dims"] == "plane,joint,sample,stride"
        as_matlab = kinematics[:].T
        assert as_matlab.shape == (3, 3, 200, kinematics.shape[0])
        # a 1-based MATLAB index: emg(:, stride_starts(k)+1 : stride_ends(k)) is stride k's rows
        k = 5
        starts, ends = f["stride_starts"][:], f["stride_ends"][:]
        rows = f["emg"][:].T[:, starts[k - 1] : ends[k - 1]]
        first = int(np.asarray(store["stride_starts"][:])[f["stride_index"][k - 1]])
        expected = np.asarray(store["emg"][first : first + rows.shape[1]]).T
        np.testing.assert_array_equal(rows, expected)


def test_root_attributes_name_the_store_build_query_and_builder(exported, store) -> None:
    path, _ = exported
    with h5py.File(path, "r") as f:
        attrs = dict(f.attrs)
    assert attrs["query"] == QUERY
    assert attrs["store_url"].endswith("gait.zarr")
    assert attrs["build_version"] == store.attrs["build_version"] == "v0001"
    assert attrs["store_version_url"].endswith("gait.zarr.versions/v0001")
    assert attrs["builder_version"] == store.attrs["builder_version"]
    assert attrs["exported_by"].startswith("gait-builder ")
    assert attrs["n_strides"] == len(expected_selection(store))
    assert attrs["store_n_strides"] == store["stride"].shape[0]
    assert attrs["n_emg_rows"] > 0
    for value in attrs.values():
        assert np.ndim(value) == 0


def test_without_a_query_every_stride_is_exported(demo_store, store, tmp_path) -> None:
    from builder.store.export_hdf5 import export_hdf5

    summary = export_hdf5(str(demo_store[0]), tmp_path / "all.h5")
    n = store["stride"].shape[0]
    assert summary.n_strides == n and summary.n_emg_rows == store["emg"].shape[0]
    with h5py.File(tmp_path / "all.h5", "r") as f:
        np.testing.assert_array_equal(f["emg"][:], store["emg"][:])  # all rows, in order
        np.testing.assert_array_equal(f["kinetics"][:], store["kinetics"][:])
        assert f.attrs["query"] == ""


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("speed > 1", ["bad --query", "'speed'", "not defined", "speed_mps"]),
        ("dataset ==", ["bad --query", "SyntaxError"]),
        ("speed_mps + 1", ["bad --query", "not true/false"]),
        ("dataset == 'nowhere'", ["selects no strides", "of "]),
    ],
)
def test_bad_or_empty_queries_fail_in_one_line_and_write_nothing(
    demo_store, tmp_path, query: str, words: list[str]
) -> None:
    result = export_h5(str(demo_store[0]), "--to", str(tmp_path / "x.h5"), "--query", query)
    assert result.returncode == 1
    line = one_line(result)
    assert str(demo_store[0]) in line
    for word in words:
        assert word in line, line
    assert list(tmp_path.iterdir()) == []


def test_a_missing_folder_or_store_is_one_line(demo_store, tmp_path) -> None:
    missing = tmp_path / "no" / "x.h5"
    line = one_line(export_h5(str(demo_store[0]), "--to", str(missing)))
    assert f"{missing}: the folder" in line and "does not exist" in line
    line = one_line(export_h5(str(tmp_path / "none.zarr"), "--to", str(tmp_path / "x.h5")))
    assert "none.zarr: no store here" in line


def test_the_selection_matches_a_pandas_query_of_the_table(demo_store, tmp_path) -> None:
    from builder.store.export_hdf5 import export_hdf5

    query = "side == 'L' and speed_mps > 1.0"
    export_hdf5(str(demo_store[0]), tmp_path / "l.h5", query=query)
    group = zarr.open_group(str(demo_store[0]), mode="r")
    side, speed = text(group, "side"), np.asarray(group["speed_mps"][:])
    expected = np.flatnonzero((side == "L") & (speed > 1.0))
    assert 0 < len(expected) < len(side)
    with h5py.File(tmp_path / "l.h5", "r") as f:
        np.testing.assert_array_equal(f["stride_index"][:], expected)
        assert {v.decode() for v in f["stride_metadata/side"][:]} == {"L"}


def test_the_command_has_help_and_is_listed() -> None:
    result = export_h5("--help")
    assert result.returncode == 0 and "--query" in result.stdout and "matlab_dims" in result.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "builder", "--help"], capture_output=True, text=True
    )
    assert "export-h5" in listed.stdout

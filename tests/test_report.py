"""The quality report: tables, figures and the ensemble statistics behind them, and its CLI."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from builder.conventions import JOINTS, MUSCLES, PLANES
from builder.report import _table, default_report_dir, ensemble_curves, write_report

from helpers import build_store, copy_demo_subset, demo_catalog

pytestmark = pytest.mark.cluster

LAB_B_MUSCLES = ("rectus_femoris", "tibialis_anterior", "soleus")
BROKEN = "walk_v0.90_i+0_t01.c3d"
ACTIVITIES = ("walk", "ramp_ascent", "ramp_descent", "all_activities")
FIGURES = {
    "strides_per_dataset.png",
    "coverage.png",
    *(f"{v}_{a}.png" for v in ("kinematics", "kinetics", "emg_envelope") for a in ACTIVITIES),
}


@pytest.fixture(scope="module")
def store(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two datasets with different coverage, a broken trial and a source without an adapter.

    ``demo``: subject S01, all 10 trials (full kinematics, kinetics, 10 muscles), plus a
    truncated copy of one of its files. ``labB``: subject S02's 6 level-walking trials read
    with only 3 EMG channels and no kinetics. ``ghost``: an entry whose files do not exist.
    """
    folder = tmp_path_factory.mktemp("report_store")
    raw_a = copy_demo_subset(demo_root, folder / "raw_a", ("S01",))
    good = sorted((raw_a / "S01").glob("walk_*.c3d"))[0].read_bytes()
    (raw_a / "S01" / BROKEN).write_bytes(good[: len(good) // 2])
    raw_b = copy_demo_subset(demo_root, folder / "raw_b", ("S02",))

    catalog = yaml.safe_load(demo_catalog(folder, raw_a).read_text())
    catalog["metadata"].pop("include", None)  # only the sources below
    demo = catalog["sources"]["demo"]
    lab_b = yaml.safe_load(yaml.safe_dump(demo))  # a deep copy
    lab_b["args"]["urlpath"] = (
        f"{raw_b}/{{subject}}/walk_v{{speed_mps}}_i{{incline_deg}}_{{trial}}.c3d"
    )
    lab_b["args"]["emg"]["channels"] = {
        m: c for m, c in demo["args"]["emg"]["channels"].items() if m in LAB_B_MUSCLES
    }
    lab_b["args"]["kinetics"] = None
    lab_b["metadata"]["dataset"] = "labB"
    lab_b["metadata"]["defaults"] = {"activity": "walk"}
    lab_b["metadata"]["activity_map"] = {"walk": "walk"}
    catalog["sources"]["labB"] = lab_b
    catalog["sources"]["ghost"] = {
        "driver": "c3d",
        "args": {"urlpath": f"{folder}/ghost/{{subject}}.dat"},
        "metadata": {"dataset": "ghost", "licence": "none", "citation": "none"},
    }
    path = folder / "report.yaml"
    path.write_text(yaml.safe_dump(catalog, sort_keys=False))
    build_store(path, folder / "gait.zarr", workers=2)
    return folder / "gait.zarr"


@pytest.fixture(scope="module")
def report(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(str(store), tmp_path_factory.mktemp("report") / "out")


class _Page(HTMLParser):
    """Tables (as lists of rows of cell text), image sources, and tag balance of a page."""

    VOID = frozenset({"meta", "img", "br", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tables: list[list[list[str]]] = []
        self.images: list[str] = []
        self.headings: list[str] = []
        self._cell: list[str] | None = None
        self._heading: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")
        if tag in self.VOID:
            return
        self.stack.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag in ("h2", "h3"):
            self._heading = []

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {self.stack[-3:]})")
            return
        self.stack.pop()
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag in ("h2", "h3") and self._heading is not None:
            self.headings.append("".join(self._heading).strip())
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._heading is not None:
            self._heading.append(data)

    def table_with(self, first_header: str, *headers: str) -> list[list[str]]:
        for table in self.tables:
            if table and table[0][: 1 + len(headers)] == [first_header, *headers]:
                return table
        raise AssertionError(f"no table with headers {[first_header, *headers]}")


def _parse(index: Path) -> _Page:
    page = _Page()
    page.feed(index.read_text(encoding="utf-8"))
    page.close()
    assert page.errors == [] and page.stack == [], (page.errors, page.stack)
    return page


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR" and data[-8:-4] == b"IEND", f"{path.name} is not a whole PNG"
    return struct.unpack(">II", data[16:24])


def test_html_lists_every_dataset_with_its_strides_and_share(store: Path, report: Path) -> None:
    ds = xr.open_zarr(store)
    datasets = ds["dataset"].to_series().value_counts()
    assert dict(datasets) == {"demo": 10 * 16, "labB": 6 * 16}
    page = _parse(report)
    per_dataset = page.table_with("dataset", "subjects", "strides", "% of total")
    rows = {row[0]: row[1:] for row in per_dataset[1:]}
    total = int(datasets.sum())
    for name, n in datasets.items():
        assert rows[name] == ["1", str(n), f"{100 * n / total:.2f}"], name
    assert rows["total"] == ["2", str(total), "100.00"]
    by_activity = page.table_with("dataset", "walk", "ramp_ascent", "ramp_descent")
    rows = {row[0]: row[1:] for row in by_activity[1:]}
    assert rows["demo"] == ["96", "32", "32", "160", "62.50"]
    assert rows["labB"] == ["96", "", "", "96", "37.50"]
    assert rows["total"] == ["192", "32", "32", "256", "100.00"]


def test_left_out_trials_and_unavailable_sources_are_listed_with_reasons(report: Path) -> None:
    page = _parse(report)
    left = page.table_with("trial", "source", "file", "reason")[1:]
    (broken,) = [row for row in left if row[2].endswith(BROKEN)]
    assert broken[1] == "demo" and "truncated" in broken[3]
    unavailable = page.table_with("source", "reason")[1:]
    assert [row[0] for row in unavailable] == ["ghost"]
    assert "no files match" in unavailable[0][1]
    text = report.read_text()
    assert "Trials left out (1)" in page.headings and "Sources unavailable (1)" in page.headings
    build = {row[0]: row[1] for row in page.tables[0]}
    assert build["build version"] == "v0001" and build["trials built"] == "16"
    assert build["built"][:4].isdigit() and "Every mask agrees with its data" in text


def test_every_figure_exists_and_is_a_plausible_png(report: Path) -> None:
    page = _parse(report)
    assert set(page.images) == {f"figures/{name}" for name in FIGURES}
    assert {p.name for p in (report.parent / "figures").iterdir()} == FIGURES
    for src in page.images:
        path = report.parent / src
        width, height = _png_size(path)
        assert 600 <= width <= 3000 and 150 <= height <= 2000, (src, width, height)
        assert path.stat().st_size > 10_000, src  # drawn, not blank


def test_ensemble_curves_equal_a_direct_mean_over_masked_strides(store: Path) -> None:
    ds = xr.open_zarr(store)
    curves = ensemble_curves(ds)
    assert list(curves["dataset"].values) == ["demo", "labB"]
    assert curves["n_strides"].values.tolist() == [160, 96]
    loaded = ds.load()
    for dataset in ("demo", "labB"):
        part = loaded.sel(stride=loaded["dataset"] == dataset)
        knee = part.kinematics.sel(joint="knee", plane="flexion").values
        present = part.kinematics_mask.sel(joint="knee", plane="flexion").values
        assert present.all()
        mine = curves.sel(dataset=dataset, joint="knee", plane="flexion")
        np.testing.assert_allclose(mine.kinematics_mean, knee[present].mean(axis=0), atol=1e-4)
        np.testing.assert_allclose(
            mine.kinematics_sd, knee[present].std(axis=0, ddof=1), rtol=1e-4, atol=1e-4
        )
        assert int(mine.kinematics_n) == present.sum()
        assert 50 < float(mine.kinematics_mean.max()) < 75  # swing knee flexion, degrees
        soleus = part.emg_envelope.sel(muscle="soleus").values
        np.testing.assert_allclose(
            curves.emg_envelope_mean.sel(dataset=dataset, muscle="soleus"),
            soleus.mean(axis=0),
            rtol=1e-5,
            atol=1e-6,
        )
    lab_b = curves.sel(dataset="labB")
    assert (lab_b.kinetics_n == 0).all() and np.isnan(lab_b.kinetics_mean).all()
    assert {m for m in MUSCLES if lab_b.emg_envelope_n.sel(muscle=m) > 0} == set(LAB_B_MUSCLES)
    walk = ensemble_curves(ds, activity="ramp_ascent")
    assert list(walk["dataset"].values) == ["demo"] and walk["n_strides"].item() == 32


def _synthetic(chunks: int | None) -> xr.Dataset:
    """Three datasets; masked-out components hold finite garbage that must never count."""
    rng = np.random.default_rng(0)
    n, samples = 11, 5
    kin = rng.normal(10, 3, (n, samples, 3, 3)).astype(np.float32)
    kin_mask = np.ones((n, 3, 3), bool)
    kin_mask[[1, 4], 1, 2] = False  # knee flexion absent in two "a" strides ...
    kin[[1, 4], :, 1, 2] = 1e6  # ... whose values are garbage (a contract violation)
    kin_mask[5:8, 0, :] = False  # hip absent in dataset "b", NaN as it should be
    kin[5:8, :, 0, :] = np.nan
    kinetics = np.full((n, samples, 3, 3), np.nan, np.float32)  # nobody has moments
    emg = rng.random((n, samples, len(MUSCLES))).astype(np.float32)
    emg_mask = np.ones((n, len(MUSCLES)), bool)
    emg_mask[8:, :] = False
    emg[8:] = np.nan
    emg_mask[0, 0] = True
    emg[0, 2, 0] = np.nan  # present but not finite throughout (a contract violation)
    ds = xr.Dataset(
        {
            "kinematics": (("stride", "sample", "joint", "plane"), kin),
            "kinematics_mask": (("stride", "joint", "plane"), kin_mask),
            "kinetics": (("stride", "sample", "joint", "plane"), kinetics),
            "kinetics_mask": (("stride", "joint", "plane"), np.zeros((n, 3, 3), bool)),
            "emg_envelope": (("stride", "sample", "muscle"), emg),
            "emg_mask": (("stride", "muscle"), emg_mask),
        },
        coords={
            "dataset": ("stride", ["a"] * 5 + ["b"] * 3 + ["c"] * 3),
            "activity": ("stride", ["walk", "run"] * 5 + ["walk"]),
            "joint": list(JOINTS),
            "plane": list(PLANES),
            "muscle": list(MUSCLES),
            "gait_cycle_pct": ("sample", np.linspace(0, 100, samples)),
        },
    )
    return ds.chunk({"stride": chunks}) if chunks else ds


@pytest.mark.parametrize("chunks", [None, 3])
def test_masks_decide_what_counts_in_memory_and_chunked(chunks: int | None) -> None:
    ds = _synthetic(chunks)
    curves = ensemble_curves(ds)
    kin, mask = ds.kinematics.values, ds.kinematics_mask.values
    a = slice(0, 5)
    keep = mask[a, 1, 2]
    expected = kin[a][keep][:, :, 1, 2]
    got = curves.sel(dataset="a", joint="knee", plane="flexion")
    np.testing.assert_allclose(got.kinematics_mean, expected.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(got.kinematics_sd, expected.std(axis=0, ddof=1), rtol=1e-5)
    assert int(got.kinematics_n) == 3 and curves.kinematics_any.sel(dataset="a") == 5
    assert (curves.kinematics_n.sel(dataset="b", joint="hip") == 0).all()
    assert np.isnan(curves.kinematics_mean.sel(dataset="b", joint="hip")).all()
    assert (curves.kinetics_n == 0).all() and np.isnan(curves.kinetics_mean).all()
    assert curves.emg_envelope_n.sel(dataset="c").values.tolist() == [0] * len(MUSCLES)
    assert curves.emg_envelope_any.values.tolist() == [5, 3, 0]
    walk = ensemble_curves(ds, activity="walk")
    assert walk.n_strides.values.tolist() == [3, 1, 2]  # a: 0 2 4; b: 6; c: 8 10
    np.testing.assert_allclose(
        walk.kinematics_mean.sel(dataset="c", joint="ankle", plane="rotation"),
        kin[[8, 10], :, 2, 1].mean(axis=0),
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match="no strides of activity 'swim'"):
        ensemble_curves(ds, activity="swim")


def test_mask_checks_flag_data_that_disagrees_with_its_mask(tmp_path: Path) -> None:
    from builder.report import _moments

    moments = _moments(_synthetic(3)).groupby("dataset").sum("group")
    garbage = moments.kinematics_absent_not_nan.sel(dataset="a", joint="knee", plane="flexion")
    assert int(garbage) == 2 and int(moments.kinematics_absent_not_nan.sum()) == 2
    holes = moments.emg_envelope_present_not_finite.sel(dataset="a", muscle=MUSCLES[0])
    assert int(holes) == 1 and int(moments.emg_envelope_present_not_finite.sum()) == 1


def test_text_is_escaped_and_default_folder_is_named_after_the_store() -> None:
    html = _table(("a<b", "n"), [("<script>x</script>", 3)], {1})
    assert "<script>" not in html and "&lt;script&gt;" in html and "a&lt;b" in html
    assert default_report_dir("gait.zarr") == Path("gait-report")
    assert default_report_dir("s3://bucket/stores/big.zarr/") == Path("big-report")


def test_report_from_the_command_line(store: Path, tmp_path: Path) -> None:
    helped = subprocess.run(
        [sys.executable, "-m", "builder", "report", "--help"], capture_output=True, text=True
    )
    assert helped.returncode == 0 and "usage: builder report" in helped.stdout
    assert "--out DIR" in helped.stdout
    out = tmp_path / "cli report"
    done = subprocess.run(
        [sys.executable, "-m", "builder", "report", str(store), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,  # against a hang only
    )
    assert done.returncode == 0, done.stderr
    assert (out / "index.html").is_file() and "Wrote" in done.stderr
    page = _parse(out / "index.html")
    assert {Path(src).name for src in page.images} == FIGURES
    shutil.rmtree(out)

    missing = subprocess.run(
        [sys.executable, "-m", "builder", "report", str(tmp_path / "nothing.zarr")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=900,
    )
    assert missing.returncode == 1
    lines = [line for line in missing.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "no store here" in lines[0]
    assert not (tmp_path / "nothing-report").exists()

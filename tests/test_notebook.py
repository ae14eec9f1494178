"""notebooks/walkthrough.ipynb runs top to bottom on a store and prints the store's facts."""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
import xarray as xr
from nbclient import NotebookClient

from helpers import REPO, build_store, copy_demo_subset, demo_catalog

pytestmark = pytest.mark.cluster

NOTEBOOK = REPO / "notebooks" / "walkthrough.ipynb"


@pytest.fixture(scope="module")
def store(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("notebook_store")
    raw = copy_demo_subset(demo_root, folder / "raw", ("S01", "S02"))
    build_store(demo_catalog(folder, raw), folder / "gait.zarr", workers=2)
    return folder / "gait.zarr"


@pytest.fixture(scope="module")
def executed(store: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    """Execute the notebook on ``store`` with the venv's python3 kernel: its stdout, and the
    text of the values its cells display."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    workdir = tmp_path_factory.mktemp("notebook_run")
    env = {
        **os.environ,
        "GAIT_STORE": str(store),
        # Figures inline even where CI sets MPLBACKEND=Agg. (The kernelspec's "python" is
        # this interpreter: jupyter_client substitutes sys.executable.)
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=900,  # per cell, against a hang only
        startup_timeout=600,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute(env=env)  # raises CellExecutionError on the first failing cell
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert not [o for o in outputs if o.get("name") == "stderr" and "Traceback" in o.text]
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(images) == 2  # the ensemble curves and the EMG of one stride
    results = [o.data["text/plain"] for o in outputs if o.output_type == "execute_result"]
    return "".join(o.text for o in outputs if o.get("name") == "stdout"), results


def _value(text: str, label: str) -> str:
    match = re.search(rf"^{re.escape(label)}: (.*)$", text, re.MULTILINE)
    assert match, f"{label!r} not printed:\n{text}"
    return match.group(1)


def test_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    assert any("GAIT_STORE" in c.source for c in code)


def test_prints_the_store_and_its_stride_table(store: Path, executed) -> None:
    printed, results = executed
    ds = xr.open_zarr(store)
    assert int(_value(printed, "strides")) == ds.sizes["stride"] == 2 * 10 * 16
    assert _value(printed, "build").startswith(ds.attrs["build_version"])
    assert _value(printed, "datasets: 1, subjects") == "2"
    assert _value(printed, "demo") == "320 strides (100.0 %)"
    (pivot,) = [r for r in results if "ramp_ascent" in r]  # strides per dataset and activity
    assert re.search(r"^demo\s+64\s+64\s+192\s*$", pivot, re.MULTILINE), pivot


def test_selection_curves_and_raw_emg_match_the_store(store: Path, executed) -> None:
    printed, _ = executed
    ds = xr.open_zarr(store).load()
    chosen = (ds.activity == "walk") & (ds.side == "L") & (ds.dataset == "demo")
    walk = ds.sel(stride=chosen)
    assert _value(printed, "dataset") == "demo"
    assert int(_value(printed, "selected strides")) == walk.sizes["stride"] == 2 * 6 * 8

    knee = walk.kinematics.sel(joint="knee", plane="flexion").values
    mask = walk.kinematics_mask.sel(joint="knee", plane="flexion").values
    mean = knee[mask].mean(axis=0)
    peak = int(np.argmax(mean))
    expected = f"{mean[peak]:.2f} deg at {ds.gait_cycle_pct.values[peak]:.1f} % of the cycle"
    assert _value(printed, "peak knee flexion") == expected
    assert int(_value(printed, "strides with hip moments")) == 96

    first = int(walk.stride[0])
    start, end = int(ds.stride_starts[first]), int(ds.stride_ends[first])
    assert _value(printed, f"stride {first}") == f"EMG rows {start}:{end} = {end - start} rows"
    assert _value(printed, "muscles recorded") == "10 of 13"
    rows = ds.emg.values[start:end, 0].astype(np.float64)
    volts = rows * float(ds.emg_scale.values[first, 0])
    microvolts = float(np.sqrt(np.mean(volts**2))) * 1e6
    assert _value(printed, "rms vastus_lateralis") == f"{microvolts:.1f} uV"
    assert 5 < microvolts < 2000  # surface EMG, once the normalisation is undone

    assert int(_value(printed, "index strides")) == ds.sizes["stride"]
    assert _value(printed, "index matches the store") == "True"
    assert _value(printed, f"index row of stride {first}") == f"demo, EMG rows {start}:{end}"

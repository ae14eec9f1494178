"""The driver registry: built-in drivers load lazily, and an installed package adds a dataset
(adapter, catalogue entries, miniature) through the ``gait_builder.datasets`` entry points,
without a line of builder's code changing."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from builder.datasets import AdapterOptions, SourceAdapter, registry
from builder.errors import SourceError
from builder.formats.files import FileAccess
from builder.records import SideRecording, TimeSeries, TrialRecording, TrialSpec

REPO = Path(__file__).resolve().parent.parent


def test_every_builtin_driver_names_an_importable_adapter_of_that_name() -> None:
    for name in registry.BUILTIN:
        assert registry.adapter_class(name).name == name


def test_an_unknown_driver_names_the_nearest_one() -> None:
    with pytest.raises(KeyError, match=r"'grimer'.*did you mean 'grimmer'"):
        registry.adapter_class("grimer")


def test_catalog_files_follow_the_builtin_order() -> None:
    packages = [path.parent.name for path in registry.catalog_files()]
    assert packages == [name for name in registry.BUILTIN if name not in ("c3d", "matlab_struct")]


def test_listing_drivers_imports_no_adapter() -> None:
    code = (
        "import sys; from builder.datasets import available_adapters; names = available_adapters();"
        "print(sorted(m for m in sys.modules if m.endswith('.adapter')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _plugin(site: Path) -> None:
    """An installed distribution ``lab-gait`` with driver ``lab_csv``: Hu/ENABL3S's reader under
    another name, its own catalogue entry ``lab2026`` and a miniature."""
    package = site / "lab_gait"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "adapter.py").write_text(
        textwrap.dedent(
            """
            from builder.datasets.hu_enabl3s.adapter import HuEnabl3sAdapter


            class LabAdapter(HuEnabl3sAdapter):
                name = "lab_csv"
            """
        )
    )
    (package / "miniature.py").write_text(
        textwrap.dedent(
            """
            from builder.datasets.hu_enabl3s.miniature import write
            from builder.datasets.miniatures import miniature

            miniature("lab2026")(write)
            """
        )
    )
    entries = yaml.safe_load(
        (REPO / "builder/datasets/hu_enabl3s/catalog.yaml").read_text()
    )["sources"]
    (entry,) = entries.values()
    entry["driver"] = "lab_csv"
    entry["metadata"]["dataset"] = "Lab2026"
    text = json.dumps(entry).replace("/hu2018_enabl3s", "/lab2026")
    (package / "catalog.yaml").write_text(yaml.safe_dump({"sources": {"lab2026": json.loads(text)}}))
    info = site / "lab_gait-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lab-gait\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[gait_builder.datasets]\nlab_csv = lab_gait.adapter:LabAdapter\n"
    )


@pytest.mark.slow
@pytest.mark.cluster
def test_an_installed_package_adds_a_dataset_end_to_end(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _plugin(site)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    raw = tmp_path / "raw"
    catalog = tmp_path / "lab.yaml"
    catalog.write_text(
        yaml.safe_dump(
            {
                "metadata": {
                    "version": 1,
                    "include": [
                        {
                            "path": str(REPO / "catalogs/datasets.yaml"),
                            "variables": {"GAIT_DATA_ROOT": str(raw)},
                        }
                    ],
                }
            }
        )
    )
    setup = (
        "import sys; from pathlib import Path\n"
        "from builder.datasets import available_adapters\n"
        "from builder.datasets.miniatures import MINIATURES, miniature_sources\n"
        "assert 'lab_csv' in available_adapters(), available_adapters()\n"
        "assert 'lab2026' in miniature_sources()\n"
        f"folder = Path({str(raw)!r}) / 'lab2026'; folder.mkdir(parents=True)\n"
        "MINIATURES['lab2026'](folder)\n"
    )
    subprocess.run([sys.executable, "-c", setup], env=env, check=True, cwd=tmp_path)
    store = tmp_path / "gait.zarr"
    run = subprocess.run(
        [sys.executable, "-m", "builder", "run", "--catalog", str(catalog), "--output",
         str(store), "--workers", "1", "--no-progress"],
        env=env, cwd=tmp_path, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    check = (
        "from builder.store.reader import stride_table\n"
        f"table = stride_table({str(store)!r})\n"
        "print(sorted(set(table['dataset'])), len(table))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", check], env=env, capture_output=True, text=True, check=True
    )
    datasets, strides = out.stdout.rsplit(" ", 1)
    assert datasets == "['Lab2026']" and int(strides) > 0


# --- the adapter contract: options validated once, EMG kinds declared and checked ---------------


def _spec(tmp_path: Path, adapter: str, emg_kind: str = "raw", **options: object) -> TrialSpec:
    return TrialSpec(
        source="test", adapter=adapter, url=str(tmp_path / "trial.bin"), dataset="test",
        subject="s01", activity="walk", trial="t01", emg_kind=emg_kind, options=options,
    )  # fmt: skip


def _recording(emg: np.ndarray, emg_kind: str) -> TrialRecording:
    side = SideRecording("L", TimeSeries(emg, 1000.0, 0.0, "V"), None, None, np.array([0.0]))
    return TrialRecording((side,), emg_kind, "events")  # type: ignore[arg-type]


# Run-time drivers (registered once per process): they return what their spec's trial names.
_RETURNED: dict[str, TrialRecording] = {}


@registry.register_adapter
class _Echo(SourceAdapter[AdapterOptions]):
    name = "test_echo_raw"
    emg_kinds = frozenset({"raw"})

    def read(self, spec: TrialSpec, options: AdapterOptions, files: FileAccess) -> list:
        return [_RETURNED[spec.trial]]


def test_a_sources_options_are_validated_once_per_process(tmp_path: Path) -> None:
    first = _spec(tmp_path, "c3d", events={"force_threshold_n": 30})
    again = dataclasses.replace(first, url=str(tmp_path / "other.c3d"))
    model = registry.adapter_class("c3d").options_model
    assert model.of(first) is model.of(again)  # the same frozen model, not a second validation
    with pytest.raises(SourceError, match=r"other\.c3d: invalid c3d options: events\.force"):
        model.of(dataclasses.replace(again, options={"events": {"force_threshold_n": -1}}))


def test_an_adapter_declares_the_emg_kinds_it_reads() -> None:
    class Undeclared(SourceAdapter[AdapterOptions]):
        name = "test_undeclared"

        def read(self, spec: TrialSpec, options: AdapterOptions, files: FileAccess) -> list:
            return []

    with pytest.raises(TypeError, match="emg_kinds must be a non-empty frozenset"):
        registry.register_adapter(Undeclared)
    assert all(registry.adapter_class(name).emg_kinds for name in registry.BUILTIN)


def test_every_recording_is_checked_against_the_catalogues_emg_kind(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    raw = rng.standard_normal((2000, 13)) * 1e-4
    _RETURNED.update(
        signed=_recording(raw, "raw"),
        rectified=_recording(np.abs(raw), "raw"),
        mislabelled=_recording(raw, "envelope"),
        without_emg=_recording(np.full((2000, 13), np.nan), "raw"),
    )
    read = registry.read_trial
    assert read(dataclasses.replace(_spec(tmp_path, "test_echo_raw"), trial="signed"))
    assert read(dataclasses.replace(_spec(tmp_path, "test_echo_raw"), trial="without_emg"))
    # Content is the quality gate's call (flag emg_kind, test_quality.py): it keeps the trial.
    assert read(dataclasses.replace(_spec(tmp_path, "test_echo_raw"), trial="rectified"))
    with pytest.raises(SourceError, match=r"trial\.bin: the adapter read EMG of kind 'envelope'"):
        read(dataclasses.replace(_spec(tmp_path, "test_echo_raw"), trial="mislabelled"))
    with pytest.raises(SourceError, match=r"emg_kind 'envelope' is not one the test_echo_raw"):
        read(dataclasses.replace(_spec(tmp_path, "test_echo_raw", "envelope"), trial="signed"))


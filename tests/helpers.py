"""Test helpers: demo catalogues and subsets, store builds, store comparison, and the
miniature datasets through their real catalogue entries."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
import zarr
from rich.console import Console

from builder.catalog import bundled_catalog, expand_trials, load_catalog
from builder.datasets import get_adapter
from builder.datasets.miniatures import MINIATURES, miniature_sources
from builder.formats.files import FileAccess
from builder.pipeline.run import BuildOptions, BuildResult, build, process_trial
from builder.records import SideRecording, TrialRecording, TrialSpec
from builder.store.layout import ARRAYS, ChunkLayout
from builder.store.staging import Staging, trial_key

# Real third-party recordings (../shared/data/real); never copied into the repository.
REAL_DATA = Path(
    os.environ.get("GAIT_REAL_DATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
)
requires_real_data = pytest.mark.skipif(
    not REAL_DATA.is_dir(), reason=f"real recordings not found at {REAL_DATA} (set GAIT_REAL_DATA)"
)

# Small chunks and shards, so even the demo spans several write regions of each partition.
SMALL_LAYOUT = ChunkLayout(
    strides_per_chunk=32,
    strides_per_shard=128,
    emg_rows_per_chunk=16_384,
    emg_rows_per_shard=131_072,
)


def read_c3d(path: Path, **options) -> TrialRecording:
    """One C3D file through the C3D adapter, with catalogue ``args`` as keyword options."""
    spec = TrialSpec(
        source="test",
        adapter="c3d",
        url=str(path),
        dataset="test",
        subject="s01",
        activity="walk",
        trial=path.stem,
        options=options,
    )
    (recording,) = get_adapter("c3d").read_trial(spec, FileAccess())
    return recording


def side(recording: TrialRecording, name: str) -> SideRecording:
    """The recording of leg ``name`` ("L" or "R")."""
    (found,) = [s for s in recording.sides if s.side == name]
    return found


def demo_catalog(folder: Path, raw_root: Path | str) -> Path:
    """The bundled demo catalogue's C3D source alone, pointed at ``raw_root`` (for subsets
    and CLI runs; the 14 included datasets have their own tests)."""
    catalog = yaml.safe_load(bundled_catalog("demo").read_text())
    catalog["metadata"].pop("include", None)
    text = yaml.safe_dump(catalog, sort_keys=False).replace("{{ demo_root }}", str(raw_root))
    path = folder / "demo.yaml"
    path.write_text(text)
    return path


def copy_demo_subset(demo_root: Path, dest: Path, subjects: tuple[str, ...]) -> Path:
    for subject in subjects:
        shutil.copytree(demo_root / subject, dest / subject)
    return dest


def build_store(
    catalog: Path,
    output: Path,
    *,
    workers: int = 2,
    fresh: bool = False,
    layout: ChunkLayout = SMALL_LAYOUT,
    allow_partial: bool = False,
) -> BuildResult:
    options = BuildOptions(
        output=str(output),
        workers=workers,
        fresh=fresh,
        layout=layout,
        allow_partial=allow_partial,
        progress=False,
        dashboard_address=":0",  # any free port: tests may run beside a real dashboard
    )
    return build(str(catalog), options, console=Console(quiet=True))


def assert_same_arrays(a: Path, b: Path) -> None:
    """Every array of two stores is identical (NaN equal to NaN)."""
    first, second = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    for spec in ARRAYS:
        x, y = first[spec.name][...], second[spec.name][...]
        assert x.shape == y.shape, spec.name
        if x.dtype.kind == "f":
            np.testing.assert_array_equal(x, y, err_msg=spec.name)
        else:
            assert (np.asarray(x) == np.asarray(y)).all(), spec.name


# --- the miniature datasets (builder.datasets.miniatures) through catalogs/datasets.yaml --------------


def trial_specs(root: Path, *sources: str) -> list[TrialSpec]:
    """The trial table of the real ``catalogs/datasets.yaml`` entries ``sources`` over raw data
    under ``root`` (``GAIT_DATA_ROOT``), in catalogue order."""
    catalog = load_catalog(bundled_catalog("datasets"), {"GAIT_DATA_ROOT": str(root)})
    specs, _ = expand_trials(catalog)
    return [s for s in specs if s.source in sources]


def miniature_specs(root: Path, source: str) -> tuple[dict[str, Any], list[TrialSpec]]:
    """Write the miniature of catalogue source ``source`` into ``root/<source>`` (where the
    demo puts it) and expand its real catalogue entry over ``root``: (facts, specs)."""
    miniature_sources()  # imports (registers) every generator
    folder = root / source
    folder.mkdir(parents=True, exist_ok=True)
    facts = MINIATURES[source](folder)
    return facts, trial_specs(root, source)


def copy_miniature(root: Path, source: str, dest: Path) -> Path:
    """A private copy of ``root/<source>`` at ``dest/<source>`` (to break a file in); ``dest``."""
    shutil.copytree(root / source, dest / source)
    return dest


def relocated(spec: TrialSpec, root: Path, dest: Path, **changes: Any) -> TrialSpec:
    """``spec`` (expanded over ``root``) for the same file in a copy under ``dest``."""
    return dataclasses.replace(
        spec,
        url=spec.url.replace(str(root), str(dest), 1),
        root=spec.root.replace(str(root), str(dest), 1),
        **changes,
    )


def spec_reader(specs: list[TrialSpec], root: Path, participant: str):
    """read(where, participant, **spec changes): the adapter's recordings of the one
    trial-table row of ``participant`` (its subject; default the given one), for its file under
    ``where`` (``root`` or a copy of it), with TrialSpec fields changed by ``changes``."""

    def read(where: Path, participant: str = participant, **changes: Any) -> list[TrialRecording]:
        (spec,) = [s for s in specs if s.subject == participant]
        spec = relocated(spec, root, where, **changes)
        return get_adapter(spec.adapter).read_trial(spec, FileAccess())

    return read


def process_all(specs: dict[str, TrialSpec], folder: Path) -> dict[str, tuple[TrialSpec, Any, Any]]:
    """Every spec through ``builder.pipeline.run.process_trial`` into one staging store under
    ``folder``; each must succeed: {name: (spec, outcome, staged batch)}."""
    staging = Staging(str(folder / "s.zarr"))
    out = {}
    for name, spec in specs.items():
        key = trial_key(spec)
        outcome = process_trial(spec, key, staging)
        assert outcome.ok, (name, outcome.reason)
        out[name] = (spec, outcome, staging.load_batch(key))
    return out

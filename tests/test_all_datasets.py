"""The whole demo: the C3D demo and all 14 miniature datasets through the bundled catalogue
(``catalogs/demo.yaml`` includes ``catalogs/datasets.yaml``), built into one store.

Checks that every dataset arrives with the strides its miniature generated, with the muscles
its catalogue entry maps, the EMG kind it declares, and canonical conventions that agree
across datasets (each adapter converts from a different source convention).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import yaml

from builder.conventions import MUSCLES
from builder.datasets import catalog_files
from builder.datasets.miniatures import miniature_sources

from helpers import MiniatureFactory

pytestmark = pytest.mark.cluster


def _sum(value: Any) -> int:
    if isinstance(value, dict):
        return sum(_sum(v) for v in value.values())
    return value if isinstance(value, int) else 0


def _pairs(event_lists: Any) -> int:
    """Strides from lists of one leg's heel strikes: consecutive pairs."""
    return sum(max(len(times) - 1, 0) for times in event_lists)


# How many strides each miniature generated, from the facts its generator returns.
EXPECTED_STRIDES = {
    "angelidou": lambda f: sum(len(c) for c in f["cycles"].values()),
    "bacek2024": lambda f: _sum(f["strides"]),
    "camargo2021": lambda f: sum(_sum(t["strides"]) for t in f["trials"].values()),
    "embry2018": lambda f: f["strides"],
    "gait120": lambda f: sum(_sum(s["steps"]) for s in f["subjects"].values()),
    "grimmer": lambda f: sum(_pairs(d.values()) for t in f["trials"].values() for d in t.values()),
    "hu2018_enabl3s": lambda f: sum(_sum(c["strides"]) for c in f["circuits"].values()),
    "k2muse2025": lambda f: _sum(f["strides"]),
    "lencioni2019": lambda f: _sum(f["entries"]),
    "macaluso2020": lambda f: f["strides"],
    "moghadam2023": lambda f: sum(
        _pairs(t["heel_strikes_s"].values()) for t in f["trials"].values()
    ),
    "moreira2021": lambda f: _sum(f["strides"]),
    "siat_llmd2023": lambda f: _sum(f["strides"]),
    "van_criekinge2023": lambda f: _sum(f["strides"]),
}


@pytest.fixture(scope="module")
def catalogue_entries() -> dict[str, dict]:
    # catalogs/datasets.yaml includes every registered driver's own catalog.yaml
    entries: dict[str, dict] = {}
    for path in catalog_files():
        entries |= yaml.safe_load(path.read_text())["sources"]
    return entries


@pytest.fixture(scope="module")
def everything(demo_store: tuple[Path, dict], miniature: MiniatureFactory):
    store, report = demo_store
    # The generators are deterministic: their facts describe the files in demo_root too.
    facts = {source: miniature(source).facts for source in miniature_sources()}
    return xr.open_zarr(store).load(), report, facts


def test_every_dataset_is_built_with_the_strides_its_miniature_generated(
    everything, catalogue_entries
) -> None:
    ds, report, facts = everything
    assert set(facts) == set(EXPECTED_STRIDES) and len(facts) == 14
    counts = Counter(ds.dataset.values.tolist())
    for source, count in EXPECTED_STRIDES.items():
        if source == "moreira2021":  # the MAT and the ASCII copy are two catalogue entries
            names = {
                catalogue_entries[s]["metadata"]["dataset"]
                for s in ("moreira2021", "moreira2021_ascii")
            }
            assert len(names) == 1
        dataset = catalogue_entries[source]["metadata"]["dataset"]
        assert counts[dataset] == count(facts[source]), source
    assert counts["demo"] == 640
    assert report.sources_unavailable == []
    # The one trial left out is a non-gait movement, reported with its reason.
    (left,) = report.trials_left_out
    assert "STDUP" in left.url and "non-gait" in left.reason


def test_masks_match_each_datasets_muscle_set_and_emg_kind(everything, catalogue_entries) -> None:
    ds, _, _ = everything
    for source, entry in catalogue_entries.items():
        dataset = entry["metadata"]["dataset"]
        strides = ds.sel(stride=ds.dataset == dataset)
        mapped = set(entry["args"]["emg"]["channels"])
        recorded = {
            m for m, any_ in zip(MUSCLES, strides.emg_mask.values.any(axis=0), strict=True) if any_
        }
        assert recorded == mapped, source
        assert set(strides.emg_kind.values.tolist()) == {entry["metadata"]["emg_kind"]}, source
        # A muscle never recorded is NaN, never zero.
        absent = [MUSCLES.index(m) for m in MUSCLES if m not in mapped]
        assert np.isnan(strides.emg_envelope.values[:, :, absent]).all(), source


def test_canonical_conventions_agree_across_datasets(everything) -> None:
    ds, _, _ = everything
    walking = ds.sel(stride=ds.activity == "walk")
    checked_kinematics, checked_kinetics = [], []
    for dataset in sorted(set(walking.dataset.values.tolist())):
        strides = walking.sel(stride=walking.dataset == dataset)
        knee = strides.kinematics.sel(joint="knee", plane="flexion").where(
            strides.kinematics_mask.sel(joint="knee", plane="flexion")
        )
        if int(knee.notnull().any("sample").sum()) >= 2:
            mean = knee.mean("stride").values
            swing_peak = np.nanmax(mean[110:180])  # 55-90 % of the cycle
            assert 35 < swing_peak < 75 and swing_peak > np.nanmax(mean[:60]), dataset
            checked_kinematics.append(dataset)
        present = strides.kinetics_mask.sel(joint="ankle", plane="flexion")
        if int(present.sum()) >= 2:
            moments = strides.kinetics.where(strides.kinetics_mask).mean("stride")
            ankle = moments.sel(joint="ankle", plane="flexion").values
            assert -2.2 < np.nanmin(ankle[60:120]) < -0.8, dataset  # plantarflexor, N·m/kg
            hip = moments.sel(joint="hip", plane="flexion").values
            if np.isfinite(hip).all():
                assert hip[10:30].mean() < 0 < hip[80:110].mean(), dataset  # extensor, then flexor
            checked_kinetics.append(dataset)
    assert len(checked_kinematics) >= 12 and len(checked_kinetics) >= 9

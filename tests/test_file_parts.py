"""Files that pack many subjects or trials, read part by part (issue 13, item 3): the lazy
MATLAB v7.3 reader gives what the whole-file reader gives; the catalogue fans a large file out
into one row per part, in the order its adapter reads them; one broken subject is one report
line; reading a part reads only that part's bytes, whatever the file's size."""

from __future__ import annotations

import dataclasses
import pickle
import shutil
from pathlib import Path
from typing import Any

import fsspec
import h5py
import numpy as np
import pytest
from fsspec.implementations.local import LocalFileOpener, LocalFileSystem

from builder.catalog import SPLIT_ABOVE_BYTES, expand_trials, load_catalog, split_threshold
from builder.datasets import read_trial
from builder.errors import CatalogError
from builder.formats.matlab import LazyMat, is_mat_v73, load_mat
from builder.pipeline.trial import process_trial
from builder.records import TrialRecording, TrialSpec
from builder.store.staging import Staging, trial_key
from builder.synthetic import realsize

from helpers import MiniatureFactory

DATASETS = Path(__file__).resolve().parent.parent / "builder" / "datasets"


def specs_of(driver: str, root: Path, split_above_bytes: int | None) -> list[TrialSpec]:
    """The trial table of a dataset's own catalogue entry over raw data under ``root``."""
    catalog = load_catalog(DATASETS / driver / "catalog.yaml", {"GAIT_DATA_ROOT": str(root)})
    specs, unavailable = expand_trials(catalog, split_above_bytes=split_above_bytes)
    assert not unavailable
    return specs


def same_values(recordings: list[TrialRecording]) -> list[bytes]:
    """What a recording holds but its notes (file-level notes go with a file's first
    recording, so they move when a file is read part by part)."""
    return [pickle.dumps(dataclasses.replace(r, notes=())) for r in recordings]


def equal_trees(a: Any, b: Any, where: str = "") -> None:
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            equal_trees(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            equal_trees(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b, where


# --- the lazy reader ---------------------------------------------------------------------------


def test_lazy_subtrees_equal_the_whole_file(miniature: MiniatureFactory) -> None:
    path = str(miniature("k2muse2025").folder / "ProcessedData" / "P1.mat")
    whole = load_mat(path, variables=["OriginalData", "NormalizedData"])
    assert is_mat_v73(path)
    with LazyMat(path, path) as mat:
        assert mat.names() == ["NormalizedData", "OriginalData"]
        for variable in ("OriginalData", "NormalizedData"):
            equal_trees(mat.load(variable), whole[variable], variable)
            for condition in mat.names(variable):  # a subtree, read alone
                equal_trees(
                    mat.load(f"{variable}/{condition}"), whole[variable][condition], condition
                )


def test_a_v5_file_is_not_lazy(miniature: MiniatureFactory) -> None:
    (path,) = sorted((miniature("lencioni2019").folder).rglob("*.mat"))[:1]
    assert not is_mat_v73(str(path))
    with open(path, "rb") as f:
        assert not is_mat_v73(f) and f.tell() == 0  # a file object is left where it was


# --- fan-out in the catalogue -----------------------------------------------------------------


def test_embry_fans_out_one_row_per_subject(miniature: MiniatureFactory) -> None:
    root = miniature("embry2018").root
    (whole,) = specs_of("embry", root, split_above_bytes=None)  # a small file: one task
    parts = specs_of("embry", root, split_above_bytes=0)
    assert [(s.subject, s.part) for s in parts] == [
        ("AB01", "Gaitcycle/AB01"),
        ("AB02", "Gaitcycle/AB02"),
    ]
    assert whole.part == "" and all(s.url == whole.url for s in parts)
    assert len({trial_key(s) for s in parts}) == 2
    pieces = [r for spec in parts for r in read_trial(spec)]
    assert same_values(pieces) == same_values(read_trial(whole))
    assert {r.meta["subject"] for r in read_trial(parts[1])} == {"AB02"}


def test_k2muse_fans_out_one_row_per_trial_in_read_order(miniature: MiniatureFactory) -> None:
    root = miniature("k2muse2025").root
    whole = specs_of("k2muse", root, split_above_bytes=None)
    parts = specs_of("k2muse", root, split_above_bytes=0)
    assert [s.subject for s in whole] == ["O1", "P1", "P2"]
    assert [(s.subject, s.part) for s in parts] == [
        ("O1", "InterDay/LG_0/S_0x5/T1"),
        ("P1", "Ideal/AS_10/S_0x5/T2"),
        ("P1", "Ideal/LG_0/S_1x0/T1"),
        ("P2", "Fatigue/DS_5/S_1x5/T7"),
        ("P2", "ShiftUpward/LG_0/S_1x0/T1"),
    ]
    assert all(s.trial == s.part for s in parts)  # the row names its trial in reports
    for spec in whole:
        pieces = []
        for part in (p for p in parts if p.url == spec.url):
            if part.part == "Ideal/AS_10/S_0x5/T2":  # the trial without stride events
                with pytest.raises(Exception, match=r"T2: no NormalizedData"):
                    read_trial(part)
                continue
            pieces.extend(read_trial(part))
        assert same_values(pieces) == same_values(read_trial(spec)), spec.url


def test_a_file_whose_parts_cannot_be_listed_is_one_row(
    miniature: MiniatureFactory, tmp_path: Path
) -> None:
    root = miniature("embry2018").copy(tmp_path)
    path = root / "embry2018" / "InclineExperiment.mat"
    path.write_bytes(path.read_bytes()[:2000])  # truncated: HDF5 cannot open it
    (spec,) = specs_of("embry", root, split_above_bytes=0)
    assert spec.part == ""  # reading it reports the damage, as for any file
    with pytest.raises(Exception, match=r"not a MATLAB v7\.3"):
        read_trial(spec)


def test_split_threshold_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GAIT_SPLIT_ABOVE_MB", raising=False)
    assert split_threshold() == SPLIT_ABOVE_BYTES
    monkeypatch.setenv("GAIT_SPLIT_ABOVE_MB", "0.5")
    assert split_threshold() == 2**19
    monkeypatch.setenv("GAIT_SPLIT_ABOVE_MB", "big")
    with pytest.raises(CatalogError, match="GAIT_SPLIT_ABOVE_MB='big'"):
        split_threshold()


def test_a_broken_subject_is_one_report_line(miniature: MiniatureFactory, tmp_path: Path) -> None:
    root = miniature("embry2018").copy(tmp_path)
    with h5py.File(root / "embry2018" / "InclineExperiment.mat", "r+") as h5:
        for trial in h5["Gaitcycle/AB02"].values():
            if isinstance(trial, h5py.Group):
                del trial["cycles"]  # no stride times: none of AB02's trials can be read
    staging = Staging(str(tmp_path / "s.zarr"))
    specs = {s.subject: s for s in specs_of("embry", root, split_above_bytes=0)}
    outcomes = {
        subject: process_trial(spec, trial_key(spec), staging, isolate=False)
        for subject, spec in specs.items()
    }
    assert outcomes["AB01"].ok and outcomes["AB01"].n_strides > 0
    assert not outcomes["AB02"].ok and not outcomes["AB02"].retry
    # The report's line: the row's label (dataset/subject/... (file)) and the reason.
    assert specs["AB02"].label == "Embry2018/AB02/InclineExperiment (InclineExperiment.mat)"
    reason = outcomes["AB02"].reason
    assert reason.startswith("none of 3 trial(s) could be read; first: AB02/s0x8d10: no field")


# --- bytes read per part ------------------------------------------------------------------------


class _CountingFile(LocalFileOpener):
    """A local file that adds every byte read to :attr:`CountingFileSystem.bytes_read`."""

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        CountingFileSystem.bytes_read += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        n = self.f.readinto(buffer)
        CountingFileSystem.bytes_read += n or 0
        return n


class CountingFileSystem(LocalFileSystem):
    """The local filesystem under another protocol, so adapters read it as a remote file (a
    file object, by byte ranges) and the bytes they read can be counted."""

    protocol = ("counting",)
    bytes_read = 0  # by every file opened through it

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        return super()._strip_protocol(str(path).removeprefix("counting://"))

    def _open(self, path: Any, mode: str = "rb", **kwargs: Any) -> _CountingFile:
        return _CountingFile(self._strip_protocol(path), mode, fs=self, **kwargs)


def test_a_part_reads_only_its_share_of_a_large_file(tmp_path: Path) -> None:
    fsspec.register_implementation("counting", CountingFileSystem, clobber=True)
    pool = realsize.embry_base_strides(2)
    pool = {trial: pool[trial] for trial in ("s1i0", "s1i5", "s1d5")}
    path = tmp_path / "embry2018" / "InclineExperiment.mat"
    facts = realsize.write_embry(path, pool)
    size = path.stat().st_size
    assert len(facts["subjects"]) == 10 and facts["strides"] == 10 * 3 * 2 * 2

    local = specs_of("embry", tmp_path, split_above_bytes=0)
    assert len(local) == 10
    url = f"counting://{path}"
    root = f"counting://{tmp_path}"
    counted: dict[str, int] = {}
    for spec in (local[4], dataclasses.replace(local[4], part="")):
        remote = dataclasses.replace(spec, url=url, root=root)
        before = CountingFileSystem.bytes_read
        recordings = read_trial(remote)
        counted[spec.part or "whole"] = CountingFileSystem.bytes_read - before
        assert {r.meta["subject"] for r in recordings} == (
            {"AB05"} if spec.part else set(facts["subjects"])
        )
    # The whole file's read takes the arrays the adapter uses (not jointforce, pelvis, foot);
    # one subject's, a tenth of them plus a little HDF5 metadata.
    assert counted["whole"] > 0.6 * size, (counted, size)
    assert counted["Gaitcycle/AB05"] < 0.12 * counted["whole"], (counted, size)


def test_real_size_generators_are_cached(tmp_path: Path) -> None:
    facts = realsize.write_realsize(
        tmp_path, 0.004, participant_gb=0.004, k2muse_strides=3, embry_strides=2
    )
    files = realsize.raw_files(tmp_path)
    assert [p.name for p in files] == ["InclineExperiment.mat", "P1.mat"]
    trials = facts["k2muse2025"]["P1.mat"]["trials"]
    assert trials[0] == "Ideal/LG_0/S_0x5/T1" and len(trials) >= 2
    stamps = [p.stat().st_mtime_ns for p in files]
    again = realsize.write_realsize(
        tmp_path, 0.004, participant_gb=0.004, k2muse_strides=3, embry_strides=2
    )
    assert again == facts and [p.stat().st_mtime_ns for p in files] == stamps  # kept
    parts = specs_of("k2muse", tmp_path, split_above_bytes=0)
    assert [s.part for s in parts] == sorted(trials, key=lambda t: t.split("/")[:3])
    for spec in parts[:2]:
        (recording,) = read_trial(spec)
        assert recording.meta["trial"] == spec.part and len(recording.sides) == 2
    shutil.rmtree(tmp_path / "embry2018")

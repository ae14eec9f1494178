"""The contract every dataset driver keeps, run once per driver (as xarray runs one base test
class per backend). Each ``tests/datasets/test_<name>.py`` ends with::

    class TestContract(AdapterContract):
        driver = "<driver>"
        source = "<miniature source key>"

The checks read the driver's miniature through its real catalogue entries
(``builder/datasets/<name>/catalog.yaml``) with :func:`builder.datasets.registry.read_trial`,
the way a build reads a trial.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, get_args

import numpy as np
import pytest

from builder.conventions import JOINTS, MUSCLES, PLANES, EmgKind, Side
from builder.datasets.miniatures import MINIATURES
from builder.datasets.registry import adapter_class, available_adapters, read_trial
from builder.errors import SourceError
from builder.records import RECORDING_METADATA, SideRecording, TrialRecording, TrialSpec

from helpers import REPO, MiniatureFactory, file_digests, relocated

# Canonical units of the (T, joint, plane) arrays an adapter hands on.
KINEMATICS_UNITS = "deg"
KINETICS_UNITS = "N.m/kg"
# Event times may sit on a series' first or last sample up to float round-off of
# start + (n - 1) / rate.
TIME_TOLERANCE_S = 1e-9
UNKNOWN_OPTION = "no_such_option"

# Run in a fresh interpreter: the adapter modules that listing the drivers imports (none should)
# and the module each driver loads.
_IMPORTS = """
import json, sys
from builder.datasets import adapter_class, available_adapters
names = available_adapters()
listed = sorted(m for m in sys.modules if m.startswith("builder.datasets.") and m.endswith(".adapter"))
loaded = {name: adapter_class(name).__module__ for name in names}
print(json.dumps({"names": names, "listed": listed, "loaded": loaded}))
"""


@cache
def driver_imports() -> dict[str, Any]:
    """What listing and loading the drivers imports, in a fresh interpreter (run once)."""
    run = subprocess.run(
        [sys.executable, "-c", _IMPORTS], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.splitlines()[-1])


def mapped_muscles(spec: TrialSpec) -> dict[str, set[str]] | None:
    """Side -> muscles the catalogue entry maps (``args.emg.channels``), or None when the
    entry does not list channels per side."""
    channels = (spec.options.get("emg") or {}).get("channels")
    if not isinstance(channels, dict) or not all(isinstance(v, dict) for v in channels.values()):
        return None
    return {side: {m for m, per in channels.items() if side in per} for side in get_args(Side)}


def assert_side_contract(
    side: SideRecording, mapped: dict[str, set[str]] | None, where: str
) -> None:
    """One leg's arrays and events as builder.records.SideRecording documents them."""
    assert side.side in get_args(Side), where
    series = [s for s in (side.emg, side.kinematics, side.kinetics) if s is not None]
    assert series, f"{where}: no EMG, kinematics or kinetics"
    for s in series:
        assert s.data.dtype.kind == "f" and not np.isinf(s.data).any(), where
    if side.emg is not None:
        emg = side.emg.data
        assert emg.ndim == 2 and emg.shape[1] == len(MUSCLES), (where, emg.shape)
        zeros = [m for m, column in zip(MUSCLES, emg.T, strict=True) if (column == 0).all()]
        assert not zeros, f"{where}: absent muscles must be NaN, not zero: {zeros}"
        if mapped is not None:
            unmapped = [
                m
                for m, column in zip(MUSCLES, emg.T, strict=True)
                if m not in mapped[side.side] and not np.isnan(column).all()
            ]
            assert not unmapped, (
                f"{where}: muscles the catalogue does not map hold data: {unmapped}"
            )
    for name, s, units in (
        ("kinematics", side.kinematics, KINEMATICS_UNITS),
        ("kinetics", side.kinetics, KINETICS_UNITS),
    ):
        if s is None:
            continue
        assert s.data.shape[1:] == (len(JOINTS), len(PLANES)), (where, name, s.data.shape)
        assert s.units == units, (where, name, s.units)
        zeros = np.argwhere((s.data == 0).all(axis=0)).tolist()
        assert not zeros, f"{where}: absent {name} components must be NaN, not zero: {zeros}"
    start = min(s.start_s for s in series) - TIME_TOLERANCE_S
    end = max(s.end_s for s in series) + TIME_TOLERANCE_S
    for name, events in (("heel strikes", side.heel_strikes_s), ("toe-offs", side.toe_offs_s)):
        events = np.asarray(events)
        assert events.ndim == 1 and events.dtype.kind == "f", (where, name)
        assert (np.diff(events) > 0).all(), f"{where}: {name} not sorted: {events}"
        outside = events[(events < start) | (events > end)]
        assert not outside.size, f"{where}: {name} {outside} outside [{start}, {end}]"
    if side.heel_strike_sources:
        assert len(side.heel_strike_sources) == len(side.heel_strikes_s), where
        assert all(isinstance(s, str) and s for s in side.heel_strike_sources), where
    if side.kinetics_valid_s is not None:
        windows = np.asarray(side.kinetics_valid_s)
        assert windows.ndim == 2 and windows.shape[1] == 2, (where, windows.shape)
        assert (windows[:, 1] >= windows[:, 0]).all(), where


def assert_record_contract(recording: TrialRecording, spec: TrialSpec) -> None:
    """``recording`` (read from ``spec``) as builder.records.TrialRecording documents it."""
    where = spec.label
    assert isinstance(recording, TrialRecording), where
    assert recording.emg_kind in get_args(EmgKind), (where, recording.emg_kind)
    assert isinstance(recording.event_source, str) and recording.event_source, where
    assert set(recording.meta) <= set(RECORDING_METADATA), (where, sorted(recording.meta))
    assert recording.mains_hz is None or recording.mains_hz > 0, where
    assert recording.sides, f"{where}: a recording without sides"
    mapped = mapped_muscles(spec)
    for side in recording.sides:
        assert isinstance(side, SideRecording), where
        assert_side_contract(side, mapped, f"{where} {side.side}")


class AdapterContract:
    """What every driver does on its miniature, whatever its source format."""

    driver: ClassVar[str]  # the catalogue ``driver`` (registry name)
    source: ClassVar[str | None]  # the miniature generator's source key; None: no miniature
    sources: ClassVar[tuple[str, ...]] = ()  # catalogue entries over it (default: ``source``)
    # File name of a trial the miniature makes unreadable on purpose -> its SourceError (regex).
    refused: ClassVar[dict[str, str]] = {}
    single_file: ClassVar[bool] = False  # a trial is one self-contained file: copy it alone

    @pytest.fixture(scope="class")
    @classmethod
    def specs(cls, miniature: MiniatureFactory) -> list[TrialSpec]:
        """The trial table of the driver's catalogue entries over its miniature (drivers
        without a miniature override this fixture)."""
        assert cls.source is not None, f"{cls.__name__}: override the specs fixture"
        return miniature(cls.source).specs(*cls.sources)

    def private_copy(self, spec: TrialSpec, dest: Path) -> TrialSpec:
        """``spec`` over a private copy of its files under ``dest`` (to break one): the whole
        source root, or the trial's file alone (``single_file``)."""
        dest.mkdir(parents=True)
        if self.single_file:
            target = dest / Path(spec.url).name
            shutil.copyfile(spec.url, target)
            return dataclasses.replace(spec, url=str(target), root=str(dest))
        root = Path(spec.root)
        shutil.copytree(root, dest / root.name)
        return relocated(spec, root, dest / root.name)

    def readable(self, specs: list[TrialSpec]) -> list[TrialSpec]:
        """The first trial of each catalogue entry that the miniature does not refuse."""
        first: dict[str, TrialSpec] = {}
        for spec in specs:
            if Path(spec.url).name not in self.refused:
                first.setdefault(spec.source, spec)
        return list(first.values())

    def test_driver_is_registered_and_loaded_lazily(self, specs: list[TrialSpec]) -> None:
        assert self.driver in available_adapters()
        cls = adapter_class(self.driver)
        assert cls.name == self.driver
        assert specs and {s.adapter for s in specs} == {self.driver}
        # Listing the drivers imports no adapter; using one imports its module.
        found = driver_imports()
        assert self.driver in found["names"]
        assert cls.__module__ not in found["listed"], "listing the drivers imported the adapter"
        assert found["loaded"][self.driver] == cls.__module__

    def test_every_trial_keeps_the_record_contract(self, specs: list[TrialSpec]) -> None:
        names = {Path(s.url).name for s in specs}
        assert set(self.refused) <= names, "a refused trial that the miniature does not have"
        for spec in specs:
            name = Path(spec.url).name
            if name in self.refused:
                with pytest.raises(SourceError, match=self.refused[name]) as error:
                    read_trial(spec)
                assert name in str(error.value)
                continue
            recordings = read_trial(spec)
            assert recordings, spec.label
            for recording in recordings:
                assert_record_contract(recording, spec)
        assert len(names) > len(self.refused), "no trial read"

    def test_miniature_is_deterministic(
        self, request: pytest.FixtureRequest, tmp_path: Path
    ) -> None:
        if self.source is None:
            pytest.skip(f"driver {self.driver!r} has no miniature generator")
        miniature: MiniatureFactory = request.getfixturevalue("miniature")
        written = miniature(self.source)
        again = tmp_path / self.source
        again.mkdir()
        MINIATURES[self.source](again)
        assert file_digests(again) == file_digests(written.folder)

    def test_an_unknown_option_is_a_one_line_error_naming_it(self, specs: list[TrialSpec]) -> None:
        for spec in self.readable(specs):
            broken = dataclasses.replace(spec, options={**spec.options, UNKNOWN_OPTION: 1})
            with pytest.raises(SourceError) as error:
                read_trial(broken)
            message = str(error.value)
            assert UNKNOWN_OPTION in message and "\n" not in message, message
            assert Path(spec.url).name in message, message

    def test_a_missing_file_is_a_source_error_naming_it(
        self, specs: list[TrialSpec], tmp_path: Path
    ) -> None:
        for n, spec in enumerate(self.readable(specs)):
            copy = self.private_copy(spec, tmp_path / str(n))
            Path(copy.url).unlink()
            with pytest.raises(SourceError) as error:
                read_trial(copy)
            assert Path(copy.url).name in str(error.value), str(error.value)

    def test_a_truncated_file_is_a_source_error_naming_it(
        self, specs: list[TrialSpec], tmp_path: Path
    ) -> None:
        for n, spec in enumerate(self.readable(specs)):
            copy = self.private_copy(spec, tmp_path / str(n))
            path = Path(copy.url)
            content = path.read_bytes()
            for size in (len(content) // 2, 0):
                path.write_bytes(content[:size])
                with pytest.raises(SourceError) as error:
                    read_trial(copy)
                assert path.name in str(error.value), (size, str(error.value))

"""The generic C3D driver under the shared adapter contract, on the built-in demo's C3D files
(its other tests read real recordings: tests/test_c3d_*.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder import demo
from builder.catalog import bundled_catalog, expand_trials, load_catalog
from builder.records import TrialSpec

from contract import AdapterContract


class TestContract(AdapterContract):
    driver = "c3d"
    source = None  # the demo's C3D files come from builder.demo, not a miniature generator
    single_file = True

    @pytest.fixture(scope="class")
    @classmethod
    def specs(cls, demo_root: Path) -> list[TrialSpec]:
        """The demo catalogue's C3D entry over the session's demo files."""
        catalog = load_catalog(bundled_catalog("demo"), {"demo_root": str(demo_root)})
        specs, _ = expand_trials(catalog)
        return [s for s in specs if s.source == "demo"]

    @pytest.mark.slow  # regenerates demo files (and the miniatures the demo holds)
    def test_miniature_is_deterministic(
        self, request: pytest.FixtureRequest, tmp_path: Path
    ) -> None:
        """One demo file per subject (each subject's files vary in style) written again."""
        demo_root: Path = request.getfixturevalue("demo_root")
        monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
        trials = demo.demo_trials(tmp_path)
        subset = [next(t for t in trials if t.subject == s.subject_id) for s in demo.SUBJECTS]
        monkeypatch.setattr(demo, "demo_trials", lambda cache_dir=None: subset)
        demo.ensure_demo_sources(tmp_path)
        for trial in subset:
            again = trial.path.read_bytes()
            assert again == (demo_root / trial.relative_path).read_bytes(), trial.relative_path

"""Catalogue safety: files stay inside their source's declared root, and no input is ever
unpickled or evaluated (safe YAML loading itself is tested in test_catalog.py)."""

from __future__ import annotations

import ast
import os
import shutil
from pathlib import Path

import pytest
import yaml

from builder.catalog import expand_trials, load_catalog
from builder.errors import CatalogError, SourceError
from builder.formats.files import FileAccess, within_root

from helpers import build_store, copy_demo_subset, demo_catalog

PACKAGE = Path(__file__).resolve().parents[1] / "builder"


@pytest.mark.parametrize(
    ("url", "root", "inside"),
    [
        ("/data/ds/S01/a.c3d", "/data/ds", True),
        ("/data/ds", "/data/ds", True),
        ("/data/ds/../other/a.c3d", "/data/ds", False),
        ("/data/ds-evil/a.c3d", "/data/ds", False),  # a prefix of the name is not the folder
        ("/etc/passwd", "/data/ds", False),
        ("s3://bucket/ds/S01/a.c3d", "s3://bucket/ds", True),
        ("s3://bucket/ds/S01/../../secrets/key", "s3://bucket/ds", False),
        ("s3://other-bucket/ds/a.c3d", "s3://bucket/ds", False),
        ("/data/ds/a.c3d", "s3://bucket/ds", False),  # another protocol is never inside
        ("gs://bucket/ds/a.c3d", "s3://bucket/ds", False),
    ],
)
def test_within_root(url: str, root: str, inside: bool) -> None:
    assert within_root(url, root) is inside


def test_file_access_refuses_every_way_out_of_the_root(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    (root / "S01").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("not gait data")
    (root / "S01" / "trial.csv").write_text("a,b\n1,2\n")
    os.symlink(tmp_path / "secret.txt", root / "S01" / "link.csv")  # a link out of the tree

    files = FileAccess(root=str(root))
    assert files.local_path(str(root / "S01" / "trial.csv")) == str(root / "S01" / "trial.csv")
    for escape in (
        str(root / "S01" / ".." / ".." / "secret.txt"),
        str(root / "S01" / "link.csv"),
        str(tmp_path / "secret.txt"),
    ):
        for open_it in (files.local_path, files.open, files.filesystem):
            with pytest.raises(SourceError, match="outside the source's declared root"):
                open_it(escape)


def _catalog_with(folder: Path, raw: Path, **args: str) -> Path:
    catalog = yaml.safe_load(demo_catalog(folder, raw).read_text())
    (entry,) = catalog["sources"].values()
    entry["args"].update(args)
    path = folder / "catalog.yaml"
    path.write_text(yaml.safe_dump(catalog, sort_keys=False))
    return path


def test_the_root_defaults_to_the_fixed_part_of_the_pattern(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "S01").mkdir(parents=True)
    (raw / "S01" / "walk_v1.20_i+0_t01.c3d").write_bytes(b"")
    specs, _ = expand_trials(load_catalog(demo_catalog(tmp_path, raw)))
    assert [s.root for s in specs] == [str(raw)]


def test_a_pattern_outside_its_declared_root_is_a_catalogue_error(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "S01").mkdir(parents=True)
    (raw / "S01" / "walk_v1.20_i+0_t01.c3d").write_bytes(b"")
    pattern = f"{tmp_path}/data/../raw/{{subject}}/{{activity}}_v{{speed_mps}}_i{{incline_deg}}_{{trial}}.c3d"
    catalog = load_catalog(_catalog_with(tmp_path, raw, urlpath=pattern, root=f"{tmp_path}/data"))
    with pytest.raises(CatalogError, match=r"args.urlpath .* is outside args.root"):
        expand_trials(catalog)


def test_links_are_followed_inside_the_root_and_reported_out_of_it(
    demo_root: Path, tmp_path: Path
) -> None:
    raw = copy_demo_subset(demo_root, tmp_path / "raw", ("S01",))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "walk.c3d").write_bytes((raw / "S01" / "walk_v0.80_i+0_t01.c3d").read_bytes())
    os.symlink(outside / "walk.c3d", raw / "S01" / "walk_v0.80_i+0_t09.c3d")
    # a subject folder kept elsewhere in the tree, linked in under its name: built
    (raw / "more" / "S05").mkdir(parents=True)
    shutil.copyfile(
        raw / "S01" / "walk_v0.80_i+0_t01.c3d", raw / "more" / "S05" / "walk_v0.80_i+0_t01.c3d"
    )
    os.symlink("more/S05", raw / "S05")

    result = build_store(demo_catalog(tmp_path, raw), tmp_path / "gait.zarr")
    assert not [e for e in result.report.trials_left_out if "t09" in e.trial]
    (gone,) = result.report.sources_unavailable  # the link out of the tree, by name
    link = raw / "S01" / "walk_v0.80_i+0_t09.c3d"
    assert gone.reason.startswith(f"symbolic link {link} -> {outside / 'walk.c3d'} not followed")
    assert "outside the source's root" in gone.reason
    built = {e.url for e in result.report.trials_built}
    assert str(raw / "S05" / "walk_v0.80_i+0_t01.c3d") in built
    assert result.n_trials_built == 11  # the 10 trials of S01 and the one linked in as S05


# --- no pickle, no eval ------------------------------------------------------------------------

# The one reviewed exception: the isolated reader's pipe between a worker and its own child
# process (builder.pipeline.isolated) carries objects both sides built, never input bytes.
PICKLE_ALLOWED = {"builder/pipeline/isolated.py"}


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = (
                f"{getattr(func.value, 'id', '?')}.{func.attr}"
                if isinstance(func, ast.Attribute)
                else getattr(func, "id", "?")
            )
            found.append((name, node))
    return found


def test_no_input_is_unpickled_or_evaluated() -> None:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = str(path.relative_to(PACKAGE.parent))
        for name, call in _calls(ast.parse(path.read_text())):
            line = f"{where}:{call.lineno} {name}"
            if name in ("eval", "exec", "compile", "marshal.loads", "shelve.open"):
                problems.append(line)
            if name.startswith("pickle.") and where not in PICKLE_ALLOWED:
                problems.append(line)
            if name in ("yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.full_load"):
                problems.append(line)
            if name == "torch.load" and not any(
                k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value
                for k in call.keywords
            ):
                problems.append(f"{line} without weights_only=True")  # checkpoints: data only
            for keyword in call.keywords:
                if keyword.arg == "allow_pickle" and not (
                    isinstance(keyword.value, ast.Constant) and keyword.value.value is False
                ):
                    problems.append(f"{line} allow_pickle")
    assert not problems, problems

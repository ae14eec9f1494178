"""Catalogue loading, validation errors and expansion into the trial table."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import yaml

from builder.catalog import bundled_catalog, expand_trials, load_catalog
from builder.errors import CatalogError

ENTRY = {
    "driver": "c3d",
    "description": "test source",
    "args": {
        "urlpath": "{{ CATALOG_DIR }}/raw/{subject}/{activity}_v{speed_mps}_{trial}.c3d",
        "emg": {"match": "label", "channels": {"soleus": {"L": "LSOL", "R": "RSOL"}}},
        "kinematics": "plug-in-gait",
    },
    "metadata": {
        "dataset": "lab",
        "licence": "CC-BY-4.0",
        "citation": "Someone et al.",
        "fields": {"speed_mps": "float"},
        "activity_map": {"walk": "walk", "up": "ramp_ascent"},
    },
}


def write_catalog(folder: Path, sources: dict, metadata: dict | None = None) -> Path:
    path = folder / "catalog.yaml"
    path.write_text(yaml.safe_dump({"metadata": metadata or {}, "sources": sources}))
    return path


def touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")


def test_expands_one_row_per_file_with_parsed_fields(tmp_path: Path) -> None:
    touch(
        tmp_path / "raw", "S02/up_v1.00_t01.c3d", "S01/walk_v1.20_t02.c3d", "S01/walk_v1.20_t01.c3d"
    )
    touch(tmp_path / "raw", "S01/notes.txt")  # does not match the pattern
    for name in ("S01/walk_v1.20_t01.c3d", "S01/walk_v1.20_t02.c3d"):  # same size, same time
        os.utime(tmp_path / "raw" / name, ns=(1_700_000_000 * 10**9,) * 2)
    trials, unavailable = expand_trials(load_catalog(write_catalog(tmp_path, {"lab": ENTRY})))
    assert unavailable == []
    assert [(t.subject, t.trial) for t in trials] == [
        ("S01", "t01"),
        ("S01", "t02"),
        ("S02", "t01"),
    ]
    first = trials[0]
    assert first.activity == "walk" and math.isclose(first.speed_mps, 1.2)
    assert trials[2].activity == "ramp_ascent"
    assert first.dataset == "lab" and first.licence == "CC-BY-4.0" and first.adapter == "c3d"
    assert first.options["emg"]["channels"]["soleus"] == {"L": "LSOL", "R": "RSOL"}
    assert first.options["kinematics"]["labels"]["hip"] == "{side}HipAngles"  # preset expanded
    assert first.processing["bandpass_hz"] == [20.0, 450.0]  # defaults filled in
    assert first.file_id and first.file_id == trials[1].file_id  # both empty files


def test_processing_overrides_merge_catalogue_then_source(tmp_path: Path) -> None:
    touch(tmp_path / "raw", "S01/walk_v1.20_t01.c3d")
    entry = {**ENTRY, "metadata": {**ENTRY["metadata"], "processing": {"emg": {"mains_hz": 60}}}}
    path = write_catalog(
        tmp_path,
        {"lab": entry},
        {"processing": {"emg": {"mains_hz": 50, "envelope_lowpass_hz": 8}}},
    )
    (trial,), _ = expand_trials(load_catalog(path))
    assert trial.processing["mains_hz"] == 60 and trial.processing["envelope_lowpass_hz"] == 8


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda e: e["metadata"].pop("licence"),
            r"source 'lab': metadata\.licence: Field required",
        ),
        (
            lambda e: e["metadata"].update(emg_kind="rectified"),
            r"source 'lab': metadata\.emg_kind: Input should be 'raw' or 'envelope'",
        ),
        (
            lambda e: e["metadata"].update(activity_map={"jog": "jogging"}),
            r"metadata\.activity_map: .*jogging.* not in the vocabulary",
        ),
        (lambda e: e["args"].pop("urlpath"), r"args: .*urlpath"),
        (
            lambda e: e["args"].update(urlpath="/x/{patient}.c3d"),
            r"urlpath fields \['patient'\] are not trial-table columns",
        ),
        (lambda e: e.update(drvier="c3d"), r"source 'lab': drvier: Extra inputs are not permitted"),
    ],
)
def test_schema_errors_name_file_entry_and_field(tmp_path: Path, change, expected: str) -> None:
    entry = yaml.safe_load(yaml.safe_dump(ENTRY))
    change(entry)
    path = write_catalog(tmp_path, {"lab": entry})
    with pytest.raises(CatalogError, match=expected) as info:
        load_catalog(path)
    assert str(path) in str(info.value)


def test_adapter_option_errors_name_the_option(tmp_path: Path) -> None:
    touch(tmp_path / "raw", "S01/walk_v1.20_t01.c3d")
    entry = yaml.safe_load(yaml.safe_dump(ENTRY))
    entry["args"]["emg"]["channels"] = {"soleus_lateralis": {"L": "x"}}
    path = write_catalog(tmp_path, {"lab": entry})
    with pytest.raises(
        CatalogError, match=r"source 'lab': args\.emg\.channels: .*soleus_lateralis"
    ):
        expand_trials(load_catalog(path))


def test_an_emg_kind_the_driver_does_not_read_is_refused(tmp_path: Path) -> None:
    touch(tmp_path / "raw", "S01/walk_v1.20_t01.c3d")
    entry = yaml.safe_load(yaml.safe_dump(ENTRY))
    entry["driver"], entry["metadata"]["emg_kind"] = "k2muse", "envelope"
    path = write_catalog(tmp_path, {"lab": entry})
    with pytest.raises(
        CatalogError,
        match=r"source 'lab': metadata\.emg_kind 'envelope' is not one the k2muse driver reads "
        r"\(raw\)",
    ):
        expand_trials(load_catalog(path))


def test_unsafe_yaml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("sources: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog(path)


def test_missing_file_and_bad_yaml_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read catalogue"):
        load_catalog(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: [unclosed\n")
    with pytest.raises(CatalogError) as info:
        load_catalog(bad)
    assert "\n" not in str(info.value)


def test_unknown_adapter_and_missing_files_are_reported_not_raised(tmp_path: Path) -> None:
    touch(tmp_path / "raw", "S01/walk_v1.20_t01.c3d")
    later = {**ENTRY, "driver": "camargo_mat"}
    nothing = {
        **ENTRY,
        "args": {**ENTRY["args"], "urlpath": "{{ CATALOG_DIR }}/none/{subject}.c3d"},
    }
    path = write_catalog(tmp_path, {"lab": ENTRY, "camargo": later, "empty": nothing})
    trials, unavailable = expand_trials(load_catalog(path))
    assert len(trials) == 1
    reasons = {u.source: u.reason for u in unavailable}
    assert "no adapter for driver 'camargo_mat'" in reasons["camargo"]
    assert "no files match" in reasons["empty"]


def test_activity_outside_vocabulary_is_an_error(tmp_path: Path) -> None:
    touch(tmp_path / "raw", "S01/hop_v1.20_t01.c3d")
    with pytest.raises(CatalogError, match="activity 'hop' is not in the vocabulary"):
        expand_trials(load_catalog(write_catalog(tmp_path, {"lab": ENTRY})))


def test_field_of_wrong_type_names_the_file(tmp_path: Path) -> None:
    touch(tmp_path / "raw", "S01/walk_vfast_t01.c3d")
    with pytest.raises(
        CatalogError, match=r"walk_vfast_t01\.c3d: field speed_mps='fast' is not a float"
    ):
        expand_trials(load_catalog(write_catalog(tmp_path, {"lab": ENTRY})))


def test_env_template_and_unknown_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    touch(tmp_path / "data", "S01/walk_v1.00_t01.c3d")
    monkeypatch.setenv("GAIT_TEST_ROOT", str(tmp_path / "data"))
    entry = {
        **ENTRY,
        "args": {
            **ENTRY["args"],
            "urlpath": "{{ env(GAIT_TEST_ROOT) }}/{subject}/{activity}_v{speed_mps}_{trial}.c3d",
        },
    }
    trials, _ = expand_trials(load_catalog(write_catalog(tmp_path, {"lab": entry})))
    assert len(trials) == 1
    entry["args"]["urlpath"] = "{{ nowhere }}/{subject}.c3d"
    with pytest.raises(CatalogError, match=r"unknown template variable \{\{ nowhere \}\}"):
        expand_trials(load_catalog(write_catalog(tmp_path, {"lab": entry})))


def test_bundled_catalogues_are_valid() -> None:
    for name in ("demo", "datasets"):
        catalog = load_catalog(bundled_catalog(name), {"demo_root": "/nonexistent"})
        assert catalog.sources


def link(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def test_links_that_stay_inside_the_root_are_followed(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    touch(raw, "S01/walk_v1.20_t01.c3d", "data/S03/up_v1.00_t02.c3d")
    link(raw / "S02", "S01")  # a folder linked under another subject's name
    link(raw / "S03", str(raw / "data" / "S03"))  # absolute, still inside the root
    link(raw / "S01" / "walk_v1.20_t05.c3d", "walk_v1.20_t01.c3d")  # a file
    trials, unavailable = expand_trials(load_catalog(write_catalog(tmp_path, {"lab": ENTRY})))
    assert unavailable == []
    assert [(t.subject, t.trial, Path(t.url).relative_to(raw).as_posix()) for t in trials] == [
        ("S01", "t01", "S01/walk_v1.20_t01.c3d"),
        ("S01", "t05", "S01/walk_v1.20_t05.c3d"),
        ("S02", "t01", "S02/walk_v1.20_t01.c3d"),
        ("S02", "t05", "S02/walk_v1.20_t05.c3d"),
        ("S03", "t02", "S03/up_v1.00_t02.c3d"),
    ]
    by_trial = {(t.subject, t.trial): t for t in trials}
    assert by_trial["S02", "t01"].file_id == by_trial["S01", "t01"].file_id  # the same file


def test_links_out_of_the_root_nowhere_or_in_a_loop_are_reported(tmp_path: Path) -> None:
    raw, outside = tmp_path / "raw", tmp_path / "outside"
    touch(raw, "S01/walk_v1.20_t01.c3d")
    touch(outside, "S09/walk_v1.00_t01.c3d")
    link(raw / "S09", str(outside / "S09"))
    link(raw / "S01" / "walk_v1.20_t07.c3d", str(outside / "S09" / "walk_v1.00_t01.c3d"))
    link(raw / "S01" / "walk_v1.20_t08.c3d", "gone.c3d")
    link(raw / "S04", ".")  # the root itself
    link(raw / "S01" / "notes.txt", "/etc/hostname")  # matches nothing: not worth a line
    trials, unavailable = expand_trials(load_catalog(write_catalog(tmp_path, {"lab": ENTRY})))
    assert [(t.subject, t.trial) for t in trials] == [("S01", "t01")]
    assert {u.source for u in unavailable} == {"lab"}
    reasons = sorted(u.reason for u in unavailable)
    assert len(reasons) == 4, reasons
    expected = [
        (raw / "S01" / "walk_v1.20_t07.c3d", outside / "S09" / "walk_v1.00_t01.c3d", "outside"),
        (raw / "S01" / "walk_v1.20_t08.c3d", raw / "S01" / "gone.c3d", "cannot be reached"),
        (raw / "S04", raw, "loop"),
        (raw / "S09", outside / "S09", "outside"),
    ]
    for reason, (path, target, why) in zip(reasons, expected, strict=True):
        assert reason.startswith(f"symbolic link {path} -> {target} not followed"), reason
        assert why in reason and "\n" not in reason


def test_a_loop_of_links_under_a_recursive_pattern_ends(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    touch(raw, "a/walk_v1.20_t01.c3d")
    link(raw / "a" / "up", "..")  # back to the root
    link(raw / "a" / "b", "../c")  # b -> c -> b: a loop of links that resolves nowhere
    link(raw / "c", "a/b")
    link(raw / "d", "a")  # a second way to the same folder: followed once, under its name
    entry = yaml.safe_load(yaml.safe_dump(ENTRY))
    entry["args"]["urlpath"] = "{{ CATALOG_DIR }}/raw/**/{activity}_v{speed_mps}_{trial}.c3d"
    trials, unavailable = expand_trials(load_catalog(write_catalog(tmp_path, {"lab": entry})))
    assert [Path(t.url).relative_to(raw).as_posix() for t in trials] == [
        "a/walk_v1.20_t01.c3d",
        "d/walk_v1.20_t01.c3d",
    ]
    reasons = " | ".join(sorted(u.reason for u in unavailable))
    assert "loop" in reasons and "cannot be reached" in reasons

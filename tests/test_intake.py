"""The catalogues and a built store through intake (builder.intake_drivers): entries open as
their trial tables, intake's and the builder's templates work in both loaders, and
``builder catalog`` writes an intake catalogue whose entry opens the store as xarray."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pandas as pd
import pytest
import yaml

from builder.catalog import bundled_catalog, expand_trials, load_catalog
from builder.cli import main
from builder.datasets.registry import BUILTIN
from builder.errors import CatalogError

from helpers import REPO, MiniatureFactory, import_optional, trial_specs

intake = import_optional("intake")  # skips the module without it (extra: test)
from builder.intake_drivers import TRIAL_COLUMNS, trial_table  # noqa: E402  (needs intake)

DATASETS = str(bundled_catalog("datasets"))
METADATA = {"dataset": "lab", "licence": "CC-BY-4.0", "citation": "Someone et al."}
PATTERN = "/{subject}/{activity}_v{speed_mps}_{trial}.c3d"


def package_catalog(driver: str) -> str:
    """The catalogue a dataset package ships (the entries datasets.yaml includes)."""
    return str(REPO / "builder" / "datasets" / driver / "catalog.yaml")


def builder_table(catalog: str, source: str, variables: dict[str, str]) -> pd.DataFrame:
    """The trial table the builder's own loader gives for one source (what a build reads)."""
    specs, _ = expand_trials(load_catalog(catalog, variables))
    return trial_table([s for s in specs if s.source == source])


def write_catalog(folder: Path, sources: dict, metadata: dict | None = None) -> Path:
    path = folder / "catalog.yaml"
    path.write_text(yaml.safe_dump({"metadata": metadata or {}, "sources": sources}))
    return path


def c3d_entry(urlpath: str) -> dict:
    return {"driver": "c3d", "args": {"urlpath": urlpath}, "metadata": METADATA}


def touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")


def test_every_builtin_driver_is_an_intake_driver() -> None:
    ours = {
        point.name: point.value
        for point in entry_points(group="intake.drivers")
        if point.value.startswith("builder.")
    }
    assert set(ours) == {*BUILTIN, "gait_included", "gait_store"}, (
        "reinstall the package (pip install -e .) after changing its entry points"
    )
    for driver in BUILTIN:
        source = intake.registry[driver]
        assert source.driver == driver and source.container == "dataframe"
    assert intake.registry["gait_store"].container == "xarray"
    assert intake.registry["gait_included"].container == "dataframe"


def test_datasets_catalogue_lists_every_source_it_includes() -> None:
    listed = list(intake.open_catalog(DATASETS))
    assert listed == list(load_catalog(DATASETS).sources)
    assert "moreira2021_ascii" in listed and len(listed) >= 14


@pytest.mark.parametrize(
    ("source", "driver"),
    [
        ("bacek2024", "bacek"),
        ("camargo2021", "camargo"),
        ("hu2018_enabl3s", "hu_enabl3s"),
        ("van_criekinge2023", "van_criekinge"),
    ],
)
def test_entries_read_as_their_trial_tables(
    source: str, driver: str, miniature: MiniatureFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = miniature(source)
    monkeypatch.setenv("GAIT_DATA_ROOT", str(found.root))
    expected = trial_table(trial_specs(found.root, source))
    assert len(expected) > 0 and list(expected.columns) == list(TRIAL_COLUMNS)
    assert all(Path(url).is_file() and str(found.folder) in url for url in expected["url"])

    # datasets.yaml (its includes, read by the builder's loader) ...
    included = intake.open_catalog(DATASETS)[source]
    pd.testing.assert_frame_equal(included.read(), expected)
    # ... and the dataset package's own catalogue (intake renders the templates)
    direct = intake.open_catalog(package_catalog(driver))[source]
    assert direct.container == "dataframe"
    pd.testing.assert_frame_equal(direct.read(), expected)
    for opened in (included, direct):
        info = opened.discover()
        assert info["shape"] == expected.shape and info["npartitions"] == 1
        assert info["metadata"]["dataset"] == expected["dataset"].iloc[0]
        assert info["metadata"]["trials"] == len(expected)


def test_the_demo_entry_takes_its_root_as_a_parameter(demo_root: Path) -> None:
    catalog = intake.open_catalog(str(bundled_catalog("demo")))
    assert list(catalog) == ["demo"]
    with pytest.raises(CatalogError, match=r"args\.urlpath: \{\{ demo_root \}\} has no value"):
        catalog["demo"].read()  # intake would render it as '' and list the disk's root
    table = catalog["demo"](demo_root=str(demo_root)).read()
    expected = builder_table(str(bundled_catalog("demo")), "demo", {"demo_root": str(demo_root)})
    assert len(table) == 40
    pd.testing.assert_frame_equal(table, expected)
    assert set(table["activity"]) == {"walk", "ramp_ascent", "ramp_descent"}


@pytest.mark.parametrize(
    "template",
    [
        '{{ env("GAIT_TEST_ROOT") }}',  # intake's form
        "{{ env('GAIT_TEST_ROOT') }}",
        "{{ env(GAIT_TEST_ROOT) }}",  # the builder's
        '{{env("GAIT_TEST_ROOT")}}',
    ],
)
def test_env_templates_work_in_both_loaders(
    template: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    touch(tmp_path / "data", "S01/walk_v1.00_t01.c3d", "S02/walk_v1.20_t01.c3d")
    monkeypatch.setenv("GAIT_TEST_ROOT", str(tmp_path / "data"))
    path = write_catalog(tmp_path, {"lab": c3d_entry(template + PATTERN)})
    expected = builder_table(str(path), "lab", {})
    assert list(expected["subject"]) == ["S01", "S02"]
    pd.testing.assert_frame_equal(intake.open_catalog(str(path))["lab"].read(), expected)

    monkeypatch.delenv("GAIT_TEST_ROOT")
    _, unavailable = expand_trials(load_catalog(path))
    assert [u.reason for u in unavailable] == ["environment variable GAIT_TEST_ROOT is not set"]
    with pytest.raises(CatalogError, match=r"environment variable GAIT_TEST_ROOT is not set$"):
        intake.open_catalog(str(path))["lab"].read()


def test_env_default_and_catalog_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    touch(tmp_path / "raw", "S01/walk_v1.00_t01.c3d")
    monkeypatch.delenv("GAIT_UNSET_ROOT", raising=False)
    sources = {
        "with_default": c3d_entry('{{ env("GAIT_UNSET_ROOT", "' + str(tmp_path / "raw") + '") }}'),
        "catalog_dir": c3d_entry("{{ CATALOG_DIR }}/raw"),
        "catalog_dir_tight": c3d_entry("{{CATALOG_DIR}}/raw"),
    }
    for entry in sources.values():
        entry["args"]["urlpath"] += PATTERN
    path = write_catalog(tmp_path, sources)
    cat = intake.open_catalog(str(path))
    for name in sources:
        expected = builder_table(str(path), name, {})
        assert list(expected["url"]) == [str(tmp_path / "raw/S01/walk_v1.00_t01.c3d")]
        pd.testing.assert_frame_equal(cat[name].read(), expected)


def test_a_driver_opened_directly_renders_builder_templates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    touch(tmp_path / "data", "S01/walk_v1.00_t01.c3d")
    monkeypatch.setenv("GAIT_TEST_ROOT", str(tmp_path / "data"))
    source = intake.open_c3d(urlpath='{{ env("GAIT_TEST_ROOT") }}' + PATTERN, metadata=METADATA)
    table = source.read()
    assert list(table["subject"]) == ["S01"] and list(table["adapter"]) == ["c3d"]
    other = intake.open_c3d(
        urlpath="{{ lab }}" + PATTERN, variables={"lab": str(tmp_path / "data")}
    )
    with pytest.raises(CatalogError, match=r"metadata\.dataset: Field required"):
        other.read()  # the entry's metadata are validated as a catalogue's are


def test_bad_entries_fail_in_one_line(tmp_path: Path) -> None:
    touch(tmp_path / "raw", "S01/walk_v1.00_t01.c3d")
    bad_option = c3d_entry("{{ CATALOG_DIR }}/raw" + PATTERN)
    bad_option["args"]["no_such_option"] = 1
    nothing = c3d_entry("{{ CATALOG_DIR }}/empty" + PATTERN)
    path = write_catalog(tmp_path, {"bad_option": bad_option, "nothing": nothing})
    cat = intake.open_catalog(str(path))
    with pytest.raises(CatalogError) as bad:
        cat["bad_option"].read()
    assert "source 'bad_option': args.no_such_option: Extra inputs are not permitted" in str(
        bad.value
    )
    with pytest.raises(CatalogError, match=r"source 'nothing': no files match ") as empty:
        cat["nothing"].read()
    for error in (bad.value, empty.value):
        assert "\n" not in str(error) and str(path) in str(error)


def test_included_entries_must_name_an_included_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    touch(tmp_path / "raw", "S01/walk_v1.00_t01.c3d")
    write_catalog(tmp_path, {"lab": c3d_entry("{{ CATALOG_DIR }}/raw" + PATTERN)})
    (tmp_path / "other.yaml").write_text((tmp_path / "catalog.yaml").read_text())
    included = {"driver": "gait_included", "args": {"catalog": "{{ CATALOG_DIR }}/main.yaml"}}
    main_catalog = tmp_path / "main.yaml"
    main_catalog.write_text(
        yaml.safe_dump(
            {"metadata": {"include": [{"path": "other.yaml"}]}, "sources": {"lab": included}}
        )
    )
    loaded = load_catalog(main_catalog)
    assert list(loaded.sources) == ["lab"] and loaded.sources["lab"].entry.driver == "c3d"
    table = intake.open_catalog(str(main_catalog))["lab"].read()
    pd.testing.assert_frame_equal(table, builder_table(str(main_catalog), "lab", {}))

    main_catalog.write_text(main_catalog.read_text().replace("  lab:", "  stale:"))
    with pytest.raises(CatalogError, match=r"sources \['stale'\] \(driver: gait_included\)"):
        load_catalog(main_catalog)
    with pytest.raises(CatalogError, match=r"sources \['stale'\]"):
        intake.open_catalog(str(main_catalog))["stale"].read()


def test_catalog_command_refuses_missing_stores_and_credentials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gait.yaml"
    assert main(["catalog", str(tmp_path / "none.zarr"), "--out", str(out)]) == 1
    assert "none.zarr: no store here" in capsys.readouterr().err
    args = ["catalog", str(tmp_path / "none.zarr"), "--out", str(out)]
    assert main([*args, "--storage-option", "secret=abc"]) == 1
    err = capsys.readouterr().err
    assert "storage option(s) secret are credentials" in err and "abc" not in err
    assert not out.exists()


@pytest.mark.slow
def test_catalog_command_writes_an_entry_that_opens_the_store(
    demo_store: tuple[Path, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from xarray.testing import assert_identical

    from builder.store.reader import open_store

    store, _ = demo_store
    out = tmp_path / "stores.yaml"
    assert main(["catalog", str(store), "--out", str(out), "--name", "demo_store"]) == 0
    assert "intake.open_catalog(" in capsys.readouterr().err
    source = intake.open_catalog(str(out))["demo_store"]
    assert source.container == "xarray"
    expected = open_store(str(store))
    lazy = source.to_dask()
    assert_identical(lazy, expected)
    assert_identical(source.read(), expected.compute())
    metadata = source.discover()["metadata"]
    assert metadata["n_strides"] == expected.sizes["stride"] > 0
    assert metadata["build_version"] == expected.attrs["build_version"]
    assert metadata["dims"]["stride"] == expected.sizes["stride"]

    # default name and file: the store's name, in the current folder
    assert main(["catalog", str(store), "--out", str(tmp_path / "gait.yaml")]) == 0
    assert list(intake.open_catalog(str(tmp_path / "gait.yaml"))) == ["gait"]

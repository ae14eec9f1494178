"""Catalogue: YAML (intake v1 shape) describing raw sources, expanded into a trial table.

A catalogue is ``sources:`` → entry → ``driver`` (a registered adapter), ``args`` (``urlpath``
plus the adapter's options) and ``metadata`` (dataset, licence, citation, fields, …)::

    sources:
      demo:
        driver: c3d
        args:
          urlpath: "{{ demo_root }}/{subject}/{activity}_v{speed_mps}_i{incline_deg}_{trial}.c3d"
          kinematics: plug-in-gait
        metadata: {dataset: demo, licence: CC0-1.0, citation: "…", fields: {speed_mps: float}}

``{{ name }}`` is a template (``demo_root``, ``CATALOG_DIR``, ``env(VAR)``, or intake's
``env("VAR")`` and ``env("VAR", "default")``); ``{field}`` is a trial-table column parsed from
each matching path. The YAML is read with a safe loader and every error names the file, the
entry and the field.

intake reads the same files (builder.intake_drivers) but knows no ``include``: an entry with
``driver: gait_included`` lists, for intake, a source that the catalogue's includes declare;
the builder checks that one does and otherwise skips the entry.

A file that packs many subjects or trials (Embry's one HDF5 file, a K2MUSE participant's) is
one row per part when it is larger than ``SPLIT_ABOVE_BYTES`` (``GAIT_SPLIT_ABOVE_MB``
overrides it): its adapter lists the parts (``SourceAdapter.parts``, group names only) and
reads each alone, so a task never holds a whole multi-GB file.

In a local raw tree, a symbolic link (to a file or a folder) is followed when its real target
stays inside the source's root; one that leads out of it, nowhere or into a loop is not, and
is reported with the source's unavailable parts (the build report's ``sources_unavailable``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import fsspec
import yaml
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from builder.conventions import ACTIVITIES, POPULATIONS, EmgKind
from builder.datasets import adapter_class, available_adapters, catalog_files
from builder.datasets.base import FilePart, SourceAdapter
from builder.datasets.registry import kinds_refused, suggest
from builder.errors import CatalogError, StoreError
from builder.formats.files import FileAccess, within_root
from builder.processing.emg import EmgProcessing
from builder.records import RECORDING_METADATA, TrialSpec
from builder.store.faults import is_storage_error, storage_error
from builder.store.location import StoreLocation

# Trial-table columns a path pattern may fill, and their types.
_COLUMN_TYPES: dict[str, type] = {
    "subject": str,
    "activity": str,
    "trial": str,
    "subtrial": str,
    "speed_mps": float,
    "incline_deg": float,
    "condition": str,
    "population": str,
}
# A file larger than this that packs many subjects or trials (an adapter with ``parts``) is
# read as one task per part, so that no task holds a multi-GB file or runs for a large share
# of the build; a smaller one is one task (parts that small would cost more than they save).
SPLIT_ABOVE_BYTES = 64 * 2**20
_TEMPLATE = re.compile(r"\{\{\s*(.+?)\s*\}\}")
# env(NAME), env("NAME") or env('NAME'), optionally with a quoted default (intake's jinja form)
_ENV = re.compile(r"""env\(\s*(["']?)(\w+)\1\s*(?:,\s*(["'])(.*?)\3\s*)?\)""")
# The driver of an entry that lists an included source for intake (see the module docstring).
INCLUDED_DRIVER = "gait_included"
_FIELD = re.compile(r"\{(\w+)\}")


class ProcessingOverrides(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    emg: dict[str, Any] = Field(default_factory=dict)

    @field_validator("emg")
    @classmethod
    def _valid_emg_settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        EmgProcessing.model_validate(value)  # fail early, with the setting's name
        return value


class SourceMetadata(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field(min_length=1)
    licence: str = Field(min_length=1)
    citation: str = Field(min_length=1)
    population: str = "healthy"
    condition: str = ""
    emg_kind: EmgKind = "raw"
    fields: dict[str, Literal["str", "float", "int"]] = Field(default_factory=dict)
    activity_map: dict[str, str] = Field(default_factory=dict)
    defaults: dict[str, str | float] = Field(default_factory=dict)
    processing: ProcessingOverrides = Field(default_factory=ProcessingOverrides)
    homepage: str = ""
    notes: str = ""

    @field_validator("activity_map")
    @classmethod
    def _controlled_vocabulary(cls, value: dict[str, str]) -> dict[str, str]:
        bad = sorted({v for v in value.values() if v not in ACTIVITIES})
        if bad:
            raise ValueError(f"activities {bad} are not in the vocabulary {list(ACTIVITIES)}")
        return value

    @field_validator("defaults")
    @classmethod
    def _known_columns(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(_COLUMN_TYPES))
        if unknown:
            raise ValueError(f"unknown columns {unknown}; columns are {sorted(_COLUMN_TYPES)}")
        return value


class SourceEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    driver: str = Field(min_length=1)
    description: str = ""
    args: dict[str, Any]
    metadata: SourceMetadata

    @field_validator("args")
    @classmethod
    def _has_urlpath(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(value.get("urlpath"), str) or not value["urlpath"]:
            raise ValueError("args.urlpath (the source's file pattern) is required")
        fields = set(_FIELD.findall(_TEMPLATE.sub("", value["urlpath"])))
        unknown = sorted(fields - set(_COLUMN_TYPES))
        if unknown:
            raise ValueError(
                f"urlpath fields {unknown} are not trial-table columns {sorted(_COLUMN_TYPES)}"
            )
        return value


class _Include(BaseModel):
    """One included catalogue: a file (``path``), or ``datasets: registered`` for the entries
    every registered dataset package ships (``builder/datasets/<name>/catalog.yaml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = None  # relative to the including catalogue's folder
    datasets: Literal["registered"] | None = None
    variables: dict[str, str] = Field(default_factory=dict)  # templates allowed

    @model_validator(mode="after")
    def _one_target(self) -> _Include:
        if (self.path is None) == (self.datasets is None):
            raise ValueError("an include names either a path or 'datasets: registered'")
        return self

    def targets(self, folder: Path) -> list[Path]:
        if self.path is not None:
            return [folder / self.path]
        return catalog_files()


class _CatalogMetadata(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    description: str = ""
    processing: ProcessingOverrides = Field(default_factory=ProcessingOverrides)
    include: list[_Include] = Field(default_factory=list)


class _CatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metadata: _CatalogMetadata = Field(default_factory=_CatalogMetadata)
    sources: dict[str, SourceEntry] = Field(default_factory=dict)


@dataclass(frozen=True)
class UnavailableSource:
    """A catalogue entry that produced no trials, or a part of one that could not be used (a
    symbolic link not followed), and why (goes into the build report)."""

    source: str
    reason: str


@dataclass(frozen=True)
class CatalogSource:
    """One source entry with the context of the file that declares it."""

    entry: SourceEntry
    path: str  # the catalogue file that declares it
    variables: dict[str, str]  # template variables in force there
    processing: ProcessingOverrides  # that file's catalogue-wide EMG settings


@dataclass(frozen=True)
class Catalog:
    path: str
    description: str
    sources: dict[str, CatalogSource]
    sha256: str  # of the catalogue and every file it includes


def bundled_catalog(name: str) -> Path:
    """A catalogue shipped with builder (``catalogs/<name>.yaml``), from a checkout or a wheel."""
    for folder in (
        Path(__file__).resolve().parent.parent / "catalogs",
        Path(__file__).parent / "_catalogs",
    ):
        candidate = folder / f"{name}.yaml"
        if candidate.is_file():
            return candidate
    raise CatalogError(f"no bundled catalogue named {name!r}")


def load_catalog(
    path: str | os.PathLike[str], variables: Mapping[str, str] | None = None
) -> Catalog:
    """Read and validate a catalogue (and the catalogues it includes).

    ``variables`` fill ``{{ name }}`` templates; ``{{ env(NAME) }}`` takes a variable of that
    name first, then the environment, so an including catalogue can point an included one at
    other files. Raises :class:`CatalogError` naming the file, entry and field.
    """
    sources: dict[str, CatalogSource] = {}
    digest = hashlib.sha256()
    description = _load_into(str(path), dict(variables or {}), sources, digest, seen=())
    return Catalog(str(path), description, sources, digest.hexdigest())


def _load_into(
    path: str,
    variables: dict[str, str],
    sources: dict[str, CatalogSource],
    digest: Any,
    seen: tuple[str, ...],
) -> str:
    resolved = str(Path(path).resolve())
    if resolved in seen:
        raise CatalogError(f"{path}: includes itself (via {' -> '.join(seen)})")
    try:
        with open(path, "rb") as f:
            raw_bytes = f.read()
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read catalogue ({exc.strerror or exc})") from None
    digest.update(raw_bytes)
    try:
        raw = yaml.safe_load(raw_bytes)
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML ({_one_line(str(exc))})") from None
    if not isinstance(raw, dict):
        raise CatalogError(f"{path}: a catalogue is a mapping with a 'sources:' key")
    raw, listed = _without_included(raw)
    try:
        parsed = _CatalogFile.model_validate(raw)
    except ValidationError as exc:
        raise CatalogError(_describe_validation_error(path, exc)) from None
    variables = {**variables, "CATALOG_DIR": str(Path(resolved).parent)}
    for name, entry in parsed.sources.items():
        if name in sources:
            raise CatalogError(f"{path}: source {name!r} is also declared in {sources[name].path}")
        sources[name] = CatalogSource(entry, path, variables, parsed.metadata.processing)
    for include in parsed.metadata.include:
        where = f"{path}: include {include.path or include.datasets!r}"
        included_vars = {
            **variables,
            **{k: _render_templates(v, variables, where) for k, v in include.variables.items()},
        }
        for target in include.targets(Path(resolved).parent):
            _load_into(str(target), included_vars, sources, digest, (*seen, resolved))
    missing = [name for name in listed if name not in sources]
    if missing:
        raise CatalogError(
            f"{path}: sources {missing} (driver: {INCLUDED_DRIVER}) are declared by no "
            "catalogue it includes"
        )
    return parsed.metadata.description


def _without_included(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The catalogue without its ``driver: gait_included`` entries, and their names."""
    entries = raw.get("sources")
    if not isinstance(entries, dict):
        return raw, []
    listed = [
        name
        for name, entry in entries.items()
        if isinstance(entry, dict) and entry.get("driver") == INCLUDED_DRIVER
    ]
    kept = {name: entry for name, entry in entries.items() if name not in listed}
    return {**raw, "sources": kept}, listed


def parse_entry(entry: Mapping[str, Any], where: str) -> SourceEntry:
    """One source entry (``driver``, ``args``, ``metadata``) given outside a catalogue file
    (an intake driver's arguments); :class:`CatalogError` names ``where`` and the field."""
    try:
        return SourceEntry.model_validate(dict(entry))
    except ValidationError as exc:
        raise CatalogError(_describe_validation_error(where, exc)) from None


def check_drivers(catalog: Catalog) -> None:
    """Refuse, before any work, an entry whose driver is not registered: one line naming the
    file, the entry, the nearest driver and the drivers there are. (:func:`expand_trials`
    alone reports such an entry as unavailable, for tools that list what a catalogue holds.)"""
    known = set(available_adapters())
    for name, source in sorted(catalog.sources.items()):
        driver = source.entry.driver
        if driver not in known:
            near = suggest(driver) or (
                "; if a package provides it (entry point group gait_builder.datasets), "
                "install it"
            )
            raise CatalogError(
                f"{source.path}: source {name!r}: no driver {driver!r}{near}; drivers: "
                f"{', '.join(sorted(known))}"
            )


def expand_trials(
    catalog: Catalog,
    storage_options: Mapping[str, Any] | None = None,
    *,
    split_above_bytes: int | None = None,
) -> tuple[list[TrialSpec], list[UnavailableSource]]:
    """The trial table: one :class:`TrialSpec` per matching file — or per part of a file that
    packs many subjects or trials, where its adapter lists them (``SourceAdapter.parts``) —
    sorted deterministically.

    Entries that cannot produce trials (no such adapter yet, no files, pattern unreachable)
    are returned as :class:`UnavailableSource` instead of raising, so that one missing dataset
    never stops the others from building. ``storage_options`` serve to list the files only;
    the specs do not carry them. Files larger than ``split_above_bytes`` (default
    :func:`split_threshold`) are split into their parts; smaller ones are one task each.
    """
    threshold = split_threshold() if split_above_bytes is None else split_above_bytes
    trials: list[TrialSpec] = []
    unavailable: list[UnavailableSource] = []
    for name, source in sorted(catalog.sources.items()):
        try:
            specs, problems = _expand_source(
                name, source, dict(storage_options or {}), threshold
            )
        except _Unavailable as exc:
            unavailable.append(UnavailableSource(name, str(exc)))
            continue
        trials.extend(specs)
        unavailable.extend(UnavailableSource(name, problem) for problem in problems)
    # Stable: the parts of one file that tie keep the order their adapter reads them in.
    trials.sort(key=lambda t: (t.dataset, t.subject, t.url))
    return trials, unavailable


class _Unavailable(Exception):
    pass


def split_threshold() -> int:
    """Bytes above which a file that packs many subjects or trials becomes one task per part:
    ``GAIT_SPLIT_ABOVE_MB`` (MiB) if set, else :data:`SPLIT_ABOVE_BYTES`."""
    value = os.environ.get("GAIT_SPLIT_ABOVE_MB")
    if value is None:
        return SPLIT_ABOVE_BYTES
    try:
        return int(float(value) * 2**20)
    except ValueError:
        raise CatalogError(f"GAIT_SPLIT_ABOVE_MB={value!r} is not a number of MiB") from None


def _expand_source(
    name: str, source: CatalogSource, storage_options: dict[str, Any], split_above: int
) -> tuple[list[TrialSpec], list[str]]:
    """The source's trials, and what of it could not be used (links not followed; no files)."""
    entry = source.entry
    where = f"{source.path}: source {name!r}"
    try:
        adapter = adapter_class(entry.driver)
    except KeyError:
        known = ", ".join(available_adapters())
        raise _Unavailable(
            f"no adapter for driver {entry.driver!r} yet (available: {known})"
        ) from None
    if entry.metadata.emg_kind not in adapter.emg_kinds:
        raise CatalogError(f"{where}: metadata.{kinds_refused(entry.metadata.emg_kind, adapter)}")
    adapter_args = {k: v for k, v in entry.args.items() if k not in ("urlpath", "root")}
    try:
        options = adapter.options_model.model_validate(adapter_args)
    except ValidationError as exc:
        raise CatalogError(_describe_validation_error(where, exc, prefix="args")) from None
    try:
        processing = EmgProcessing.model_validate(
            {**source.processing.emg, **entry.metadata.processing.emg}
        )
    except ValidationError as exc:
        raise CatalogError(
            _describe_validation_error(where, exc, prefix="metadata.processing.emg")
        ) from None

    urlpath = _render_templates(entry.args["urlpath"], source.variables, where)
    root = _declared_root(urlpath, entry.args.get("root"), source.variables, where)
    matches, links = _match_files(urlpath, storage_options, root)
    if not matches:
        return [], [f"no files match {urlpath!r}", *links]

    specs: list[TrialSpec] = []
    reader = adapter()
    for url, fields, file_id, size in matches:
        parts = (
            _file_parts(reader, url, options, storage_options, root)
            if size is None or size > split_above
            else [FilePart("")]
        )
        specs.extend(
            _spec(
                name,
                entry,
                url,
                {**fields, **part.columns},
                file_id,
                where,
                options=options.model_dump(mode="json"),
                processing=processing.model_dump(mode="json"),
                root=root,
                part=part.path,
            )
            for part in parts
        )
    return specs, links


def _file_parts(
    reader: SourceAdapter[Any],
    url: str,
    options: Any,
    storage_options: dict[str, Any],
    root: str,
) -> list[FilePart]:
    """The units of a file its adapter reads one by one (one row, one task each), or the
    whole file as one part. A file whose units cannot be listed (damaged, unreachable) is one
    part: reading it then reports what is wrong, as for any file."""
    try:
        with FileAccess(storage_options, root=root) as files:
            parts = reader.parts(url, options, files)
    except Exception:  # any damage: one task, whose read then reports it
        parts = None
    return parts if parts else [FilePart("")]


def _spec(
    name: str,
    entry: SourceEntry,
    url: str,
    fields: dict[str, str],
    file_id: str,
    where: str,
    **settings: Any,
) -> TrialSpec:
    """One trial-table row of a file (or of one part of it): columns from the path's fields
    and the entry's metadata; ``settings`` are the remaining TrialSpec fields (options,
    processing, root, part)."""
    meta = entry.metadata
    columns = {**meta.defaults, **fields}
    columns = {k: _convert(k, v, meta.fields.get(k), f"{where}: {url}") for k, v in columns.items()}
    activity = str(columns.get("activity", "other"))
    activity = meta.activity_map.get(activity, activity)
    if activity not in ACTIVITIES:
        raise CatalogError(
            f"{where}: {url}: activity {activity!r} is not in the vocabulary; "
            f"map it in metadata.activity_map to one of {list(ACTIVITIES)}"
        )
    return TrialSpec(
        source=name,
        adapter=entry.driver,
        url=url,
        dataset=meta.dataset,
        subject=str(columns.get("subject", "")),
        activity=activity,
        trial=str(columns.get("trial", Path(url).stem)),
        subtrial=str(columns.get("subtrial", "")),
        speed_mps=float(columns.get("speed_mps", float("nan"))),
        incline_deg=float(columns.get("incline_deg", 0.0)),
        condition=str(columns.get("condition", meta.condition)),
        population=str(columns.get("population", meta.population)),
        licence=meta.licence,
        citation=meta.citation,
        emg_kind=meta.emg_kind,
        file_id=file_id,
        activity_map=dict(meta.activity_map),
        **settings,
    )


def _declared_root(urlpath: str, declared: Any, variables: dict[str, str], where: str) -> str:
    """The folder a source's files must stay in: ``args.root`` if given (the pattern must lie
    inside it), else the pattern's fixed part up to its last ``/`` before a field or wildcard."""
    fixed = re.split(r"[{*?\[]", urlpath, maxsplit=1)[0]
    protocol, path = fsspec.core.split_protocol(fixed)
    folder = path.rsplit("/", 1)[0] if "/" in path else "."
    if protocol not in (None, "file", "local"):
        folder = f"{protocol}://{folder}"
    if declared is None:
        return folder
    if not isinstance(declared, str) or not declared:
        raise CatalogError(f"{where}: args.root must be a folder path or URL")
    root = _render_templates(declared, variables, where)
    if not within_root(folder, root):
        raise CatalogError(f"{where}: args.urlpath {urlpath!r} is outside args.root {root!r}")
    return root


def resolve_metadata(spec: TrialSpec, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The trial-table columns of one recording: the spec's, overridden by the adapter's.

    Activity tokens from inside a file go through the catalogue's ``activity_map``; a token
    that maps to nothing in the vocabulary is an error naming the token (never ``other``).
    """
    unknown = sorted(set(overrides) - set(RECORDING_METADATA))
    if unknown:
        raise ValueError(f"adapter set unknown trial-table columns {unknown}")
    values = {name: getattr(spec, name) for name in RECORDING_METADATA} | dict(overrides)
    activity = str(values["activity"])
    activity = spec.activity_map.get(activity, activity)
    if activity not in ACTIVITIES:
        raise ValueError(
            f"activity {activity!r} is not in the vocabulary; map it in metadata.activity_map "
            f"to one of {list(ACTIVITIES)}"
        )
    values["activity"] = activity
    if values["population"] not in POPULATIONS:
        raise ValueError(f"population {values['population']!r} is not one of {list(POPULATIONS)}")
    for name in ("speed_mps", "incline_deg"):
        values[name] = float(values[name])
    for name in ("subject", "trial", "subtrial", "condition", "population"):
        values[name] = str(values[name])
    return values


def unset_templates(text: str, variables: Mapping[str, str]) -> list[tuple[str, str]]:
    """What the ``{{ ... }}`` templates of ``text`` lack: ``("env", NAME)`` for an environment
    variable that is not set (and has no default), ``("variable", name)`` for a variable that
    ``variables`` does not hold. For text another loader renders (intake's jinja turns what it
    lacks into '')."""
    unset = []
    for match in _TEMPLATE.finditer(text):
        expr = match.group(1)
        env = _ENV.fullmatch(expr)
        if env:
            name = env.group(2)
            if env.group(4) is None and name not in variables and name not in os.environ:
                unset.append(("env", name))
        elif re.fullmatch(r"\w+", expr) and expr not in variables:
            unset.append(("variable", expr))
    return unset


def _render_templates(text: str, variables: Mapping[str, str], where: str) -> str:
    def substitute(match: re.Match[str]) -> str:
        expr = match.group(1)
        env = _ENV.fullmatch(expr)
        if env:
            name, default = env.group(2), env.group(4)
            value = variables.get(name, os.environ.get(name, default))
            if value is None:
                raise _Unavailable(f"environment variable {name} is not set")
            return value
        if expr not in variables:
            raise CatalogError(f"{where}: unknown template variable {{{{ {expr} }}}}")
        return variables[expr]

    return _TEMPLATE.sub(substitute, text)


def _match_files(
    urlpath: str, storage_options: dict[str, Any], root: str
) -> tuple[list[tuple[str, dict[str, str], str, int | None]], list[str]]:
    """Files matching ``urlpath`` as (url, parsed fields, file identity, size), sorted by url; and,
    sorted by link, why each local symbolic link that could have led to a match was not
    followed."""
    protocol, path = fsspec.core.split_protocol(urlpath)
    fs: fsspec.AbstractFileSystem
    if protocol in (None, "file", "local"):
        fs = _LinkFollowingFileSystem(root, **storage_options)
    else:
        fs = fsspec.filesystem(protocol, **storage_options)
        try:  # no credentials, a wrong endpoint, no such bucket: said in one line, at once
            StoreLocation(root, storage_options).check_reachable()
        except StoreError as exc:
            raise _Unavailable(str(exc)) from None
    fs.invalidate_cache()  # list afresh: files may have arrived since this process last looked
    glob_pattern = _FIELD.sub("*", path)
    regex = re.compile(_pattern_regex(path) + r"\Z")
    try:
        found = fs.glob(glob_pattern, detail=True)
    except ValueError as exc:
        raise _Unavailable(f"cannot list {urlpath!r}: {exc}") from None
    except Exception as exc:
        if not is_storage_error(exc):
            raise
        raise _Unavailable(f"cannot list: {storage_error(urlpath, exc)}") from None
    matches = []
    for found_path, info in sorted(found.items()):
        if info.get("type") in ("directory", _REFUSED_LINK):
            continue
        m = regex.search(found_path)
        if m is None:
            continue
        url = found_path if protocol in (None, "file") else f"{protocol}://{found_path}"
        size = info.get("size")
        matches.append(
            (url, m.groupdict(), _file_identity(info), None if size is None else int(size))
        )
    # a refused link is worth a line only where the pattern could have gone through it
    refused = getattr(fs, "refused", {})
    could_match = _prefix_regexes(fs._strip_protocol(path)) if refused else []
    links = [refused[k] for k in sorted(refused) if any(r.fullmatch(k) for r in could_match)]
    return matches, links


_REFUSED_LINK = "refused-link"  # the listing type of a symbolic link that is not followed


class _LinkFollowingFileSystem(LocalFileSystem):
    """The local filesystem, listed through symbolic links whose real target stays inside
    ``root``; any other link is left out of listings and recorded in ``refused``.

    fsspec lists a link to a folder as a non-folder and never descends into it: a linked
    subject folder would vanish without a word. A link to a folder that contains it (or to
    one of its own parents) is a loop and is refused, so a walk always ends.
    """

    cachable = False  # ``refused`` belongs to one expansion, never to a shared instance

    def __init__(self, root: str, **storage_options: Any) -> None:
        super().__init__(**storage_options)
        self.root = root
        self.refused: dict[str, str] = {}  # link path -> one line: link, target, why

    def info(self, path: Any, **kwargs: Any) -> dict[str, Any]:
        info: dict[str, Any] = super().info(path, **kwargs)
        if not info.get("islink"):
            return info
        link = info["name"]
        target = os.path.realpath(link)
        why = self._why_not_followed(link, target)
        if why is not None:
            self.refused[link] = f"symbolic link {link} -> {target} not followed: {why}"
            return {**info, "type": _REFUSED_LINK}
        real = os.stat(target)  # the target's type, size and time: a changed file is seen
        kind = (
            "directory"
            if stat.S_ISDIR(real.st_mode)
            else "file"
            if stat.S_ISREG(real.st_mode)
            else "other"
        )
        return {**info, "type": kind, "size": real.st_size, "mtime": real.st_mtime}

    def ls(self, path: Any, detail: bool = False, **kwargs: Any) -> list[Any]:
        listing = [
            entry
            for entry in super().ls(path, detail=True, **kwargs)
            if entry["type"] != _REFUSED_LINK
        ]
        return listing if detail else [entry["name"] for entry in listing]

    def _why_not_followed(self, link: str, target: str) -> str | None:
        if not os.path.exists(target):
            return "its target cannot be reached (missing, or a loop of links)"
        if not within_root(target, self.root):
            return f"its target is outside the source's root {self.root}"
        if os.path.isdir(target):
            for parent in Path(link).parents:
                real = os.path.realpath(parent)
                if real == target or real.startswith(target.rstrip("/") + "/"):
                    return "its target is a folder the link itself lies in (a loop)"
        return None


def _prefix_regexes(path: str) -> list[re.Pattern[str]]:
    """Regexes (for ``fullmatch``) of the paths a match can lie under or be: one per leading
    run of the pattern's segments; at a ``**``, anything below the segments before it."""
    parts = path.split("/")
    found = []
    for k in range(1, len(parts) + 1):
        if parts[k - 1] == "**":
            head = _pattern_regex("/".join(parts[: k - 1]))
            found.append(re.compile(head + r"(/.*)?"))
            break
        found.append(re.compile(_pattern_regex("/".join(parts[:k]))))
    return found


def _pattern_regex(path: str) -> str:
    """Regex for a path pattern: ``{field}`` captures one path segment's part, globs match."""
    out, pos = [], 0
    for m in re.finditer(r"\{(\w+)\}|\*\*|\*|\?", path):
        out.append(re.escape(path[pos : m.start()]))
        token = m.group(0)
        if m.group(1):
            out.append(f"(?P<{m.group(1)}>[^/]+?)")
        elif token == "**":
            out.append(".*")
        elif token == "*":
            out.append("[^/]*")
        else:
            out.append("[^/]")
        pos = m.end()
    out.append(re.escape(path[pos:]))
    return "".join(out)


def _file_identity(info: Mapping[str, Any]) -> str:
    """What changes when a file changes: size plus ETag or modification time."""
    stamp = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified")
    return hashlib.sha256(json.dumps([info.get("size"), str(stamp)]).encode()).hexdigest()[:16]


def _convert(column: str, value: Any, declared: str | None, where: str) -> Any:
    kind = {"float": float, "int": int, "str": str}.get(declared or "", _COLUMN_TYPES[column])
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise CatalogError(f"{where}: field {column}={value!r} is not a {kind.__name__}") from None


def _describe_validation_error(where: str, exc: ValidationError, prefix: str = "") -> str:
    """One line per problem: ``file: source 'x': field.path: message``."""
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        if loc[:1] == ["sources"] and len(loc) > 1:
            head, loc = f"source {loc[1]!r}: ", loc[2:]
        else:
            head = ""
        dotted = ".".join([prefix, *loc] if prefix else loc) or "(top level)"
        problems.append(f"{head}{dotted}: {_one_line(err['msg'])}")
    return f"{where}: " + "; ".join(problems)


def _one_line(text: str) -> str:
    return " ".join(text.split())

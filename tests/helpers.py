"""Test helpers: shared constants, the optional-dependency table, demo catalogues and subsets,
store builds, store comparison, and the miniature datasets through their real catalogue
entries."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import shutil
import urllib.request
from collections.abc import Callable, Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
import zarr

from builder.catalog import bundled_catalog, expand_trials, load_catalog
from builder.conventions import JOINTS, PLANES, EmgKind
from builder.datasets.miniatures import MINIATURES, miniature_sources
from builder.datasets.registry import read_trial
from builder.pipeline.run import BuildOptions, BuildResult, build
from builder.pipeline.trial import process_trial
from builder.records import SideRecording, TrialRecording, TrialSpec
from builder.store.layout import ARRAYS, ChunkLayout
from builder.store.staging import Staging, trial_key

REPO = Path(__file__).resolve().parents[1]

# Real third-party recordings (../shared/data/real); never copied into the repository.
REAL_DATA = Path(os.environ.get("GAIT_REAL_DATA") or REPO.parent / "shared" / "data" / "real")
REAL_DATA_MISSING = f"real recordings not found at {REAL_DATA} (set GAIT_REAL_DATA)"

# Each miniature dataset stays small (bytes, all its files together).
MINIATURE_MAX_BYTES = 5e6

# Indices into the canonical (joint, plane) axes of kinematics and kinetics.
HIP, KNEE, ANKLE = (JOINTS.index(j) for j in ("hip", "knee", "ankle"))
ADD, ROT, FLEX = (PLANES.index(p) for p in ("adduction", "rotation", "flexion"))

# --- optional dependencies and data: one table, one skip marker each ---------------------------

# name -> (module that must be importable, why the test is skipped without it)
OPTIONAL: dict[str, tuple[str, str]] = {
    "torch": ("torch", "PyTorch not installed (extra: train)"),
    "onnx": ("onnx", "onnx not installed (extra: train)"),
    "onnxruntime": ("onnxruntime", "onnxruntime not installed (extra: train)"),
    "moto": ("moto", "moto not installed (extra: test)"),
    "jobqueue": ("dask_jobqueue", "dask-jobqueue not installed (extra: slurm)"),
    "kubernetes": ("kubernetes", "kubernetes client not installed (extra: kubernetes)"),
    "dask_kubernetes": ("dask_kubernetes", "dask-kubernetes not installed (extra: kubernetes)"),
    "jsonschema": ("jsonschema", "jsonschema not installed (extra: test)"),
    "nbclient": ("nbclient", "nbclient not installed (extra: test)"),
    "intake": ("intake", "intake not installed (extra: test)"),
    "pint": ("pint", "pint not installed (extra: test)"),
    "cf_xarray": ("cf_xarray", "cf_xarray not installed (extra: test)"),
    "h5netcdf": ("h5netcdf", "h5netcdf not installed (extra: test)"),
}


def installed(name: str) -> bool:
    """Whether the module of optional dependency ``name`` can be found (without importing it:
    collection stays fast)."""
    return find_spec(OPTIONAL[name][0]) is not None


def import_optional(name: str) -> Any:
    """Optional dependency ``name``'s module, or skip the whole test module (for modules that
    import it at the top)."""
    module, reason = OPTIONAL[name]
    return pytest.importorskip(module, reason=reason)


def _requires(name: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not installed(name), reason=OPTIONAL[name][1])


requires_torch = _requires("torch")
requires_onnx = _requires("onnx")
requires_onnxruntime = _requires("onnxruntime")
requires_moto = _requires("moto")
requires_jobqueue = _requires("jobqueue")
requires_kubernetes = _requires("kubernetes")
requires_dask_kubernetes = _requires("dask_kubernetes")
requires_jsonschema = _requires("jsonschema")
requires_nbclient = _requires("nbclient")
requires_intake = _requires("intake")
requires_pint = _requires("pint")
requires_cf_xarray = _requires("cf_xarray")
requires_h5netcdf = _requires("h5netcdf")
requires_real_data = pytest.mark.skipif(not REAL_DATA.is_dir(), reason=REAL_DATA_MISSING)

# Small chunks and shards, so even the demo spans several write regions of each partition.
SMALL_LAYOUT = ChunkLayout(
    strides_per_chunk=32,
    strides_per_shard=128,
    emg_rows_per_chunk=16_384,
    emg_rows_per_shard=131_072,
)


def read_c3d(path: Path, emg_kind: EmgKind = "raw", **options) -> TrialRecording:
    """One C3D file through the C3D adapter, with catalogue ``args`` as keyword options and
    the catalogue's ``emg_kind`` (the EMG read is checked to be of that kind)."""
    spec = TrialSpec(
        source="test",
        adapter="c3d",
        url=str(path),
        dataset="test",
        subject="s01",
        activity="walk",
        trial=path.stem,
        emg_kind=emg_kind,
        options=options,
    )
    (recording,) = read_trial(spec)
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
    return build(str(catalog), options)


def assert_same_arrays(a: Path, b: Path) -> None:
    """Every array of two stores is identical (NaN equal to NaN)."""
    first, second = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    for spec in ARRAYS:
        x_array, y_array = first[spec.name], second[spec.name]
        assert isinstance(x_array, zarr.Array) and isinstance(y_array, zarr.Array), spec.name
        x, y = np.asarray(x_array[...]), np.asarray(y_array[...])
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


@dataclasses.dataclass(frozen=True)
class Miniature:
    """A dataset's miniature, written once per test session (the ``miniature`` fixture):
    ``root/<source>`` as the demo lays it out, ``root`` being the catalogue's
    ``GAIT_DATA_ROOT``. Shared and read-only: break files in a :meth:`copy`."""

    source: str  # the generator's catalogue source key
    root: Path
    facts: dict[str, Any]  # what the generator returned

    @property
    def folder(self) -> Path:
        return self.root / self.source

    def specs(self, *sources: str) -> list[TrialSpec]:
        """The trial table of the real catalogue entries ``sources`` (default: the generator's
        own) over this miniature."""
        return trial_specs(self.root, *(sources or (self.source,)))

    def copy(self, dest: Path) -> Path:
        """A private copy at ``dest/<source>`` (to break a file in); ``dest``, its root."""
        shutil.copytree(self.folder, dest / self.source)
        return dest


MiniatureFactory = Callable[[str], Miniature]


def write_miniature(root: Path, source: str) -> Miniature:
    """Write the miniature of catalogue source ``source`` into ``root/<source>``."""
    miniature_sources()  # imports (registers) every generator
    folder = root / source
    folder.mkdir(parents=True, exist_ok=True)
    return Miniature(source, root, MINIATURES[source](folder))


def file_digests(folder: Path) -> dict[str, str]:
    """The SHA-256 of every file under ``folder``, by relative path: two trees hold the same
    bytes when their digests are equal."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


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
        return read_trial(spec)

    return read


def process_all(specs: dict[str, TrialSpec], folder: Path) -> dict[str, tuple[TrialSpec, Any, Any]]:
    """Every spec through ``builder.pipeline.trial.process_trial`` into one staging store under
    ``folder``; each must succeed: {name: (spec, outcome, staged batch)}."""
    staging = Staging(str(folder / "s.zarr"))
    out = {}
    for name, spec in specs.items():
        key = trial_key(spec)
        outcome = process_trial(spec, key, staging)
        assert outcome.ok, (name, outcome.reason)
        out[name] = (spec, outcome, staging.load_batch(key))
    return out


@contextlib.contextmanager
def moto_server(credentials: dict[str, str], buckets: tuple[str, ...] = ()) -> Iterator[str]:
    """A moto S3 server over HTTP on localhost (its endpoint URL), with ``credentials`` in the
    environment (restored afterwards) and ``buckets`` created, empty of anything else."""
    import fsspec
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    saved = {k: os.environ.get(k) for k in credentials}
    os.environ.update(credentials)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        # moto keeps its buckets per process, not per server: start each module from nothing.
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))
        fs = fsspec.filesystem("s3", endpoint_url=endpoint, skip_instance_cache=True)
        for bucket in buckets:
            fs.mkdir(bucket)
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

"""Errors said once and early (issue 12): one line naming the URL or file and what to set,
before any work starts; permanent faults never say "re-run when the storage answers"; a
failed build leaves nothing dangling at ``<output>``.

Every end-to-end case runs the real command line in a subprocess; object storage is moto's
S3 server over HTTP (on port 0), with its credential check switched on where a test needs
credentials refused.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import xarray as xr
import zarr

from builder.store.faults import RERUN, storage_error, storage_fault

from helpers import (
    build_store,
    copy_demo_subset,
    demo_catalog,
    moto_server,
    requires_moto,
    requires_torch,
)

KEY_ID, SECRET = "AKIAEARLYERRORS0000", "early-errors-secret"
MARKER = ".gait-builder"


# --- helpers -----------------------------------------------------------------------------------


def closed_port() -> int:
    """A localhost port nothing listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "builder", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,  # against a hang only
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The command failed with exactly one line on stderr, and no traceback."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a command that printed progress messages before it failed."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def write_catalogue(folder: Path, urlpath: str, driver: str = "c3d") -> Path:
    """One source; a file matching it may hold anything: these builds never read it."""
    path = folder / "catalog.yaml"
    path.write_text(
        "sources:\n"
        "  lab:\n"
        f"    driver: {driver}\n"
        f"    args: {{urlpath: {json.dumps(urlpath)}}}\n"
        "    metadata: {dataset: lab, licence: CC0-1.0, citation: test, "
        "defaults: {activity: walk}}\n"
    )
    return path


def one_trial(folder: Path) -> Path:
    """A catalogue with one trial (whose file is never read: the cluster is never reached)."""
    (folder / "raw" / "S01").mkdir(parents=True)
    (folder / "raw" / "S01" / "t01.c3d").write_bytes(b"not read")
    return write_catalogue(folder, "{{ CATALOG_DIR }}/raw/{subject}/{trial}.c3d")


def unreachable_cluster(env: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """``--cluster`` at a scheduler address nothing listens on (reaching it fails in 2 s)."""
    env = dict(os.environ if env is None else env)
    env["DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT"] = "2s"
    return ["--cluster", f"tcp://127.0.0.1:{closed_port()}"], env


# --- the classifier, on real exception objects -------------------------------------------------


def client_error(code: str, status: int, operation: str = "PutObject") -> Exception:
    from botocore.exceptions import ClientError

    response = {
        "Error": {"Code": code, "Message": f"{code} from the server"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)  # type: ignore[arg-type]


def s3fs_translated(code: str, status: int) -> Exception:
    """The error as s3fs raises it: an OSError whose cause is botocore's ClientError."""
    from s3fs.errors import translate_boto_error

    cause = client_error(code, status)
    try:
        raise translate_boto_error(cause) from cause
    except OSError as exc:
        return exc


def botocore_error(name: str) -> Exception:
    from botocore import exceptions

    if name == "NoCredentialsError":
        return exceptions.NoCredentialsError()
    return getattr(exceptions, name)(endpoint_url="http://127.0.0.1:9")


PERMANENT = [
    ("no-credentials", lambda: botocore_error("NoCredentialsError")),
    ("refused-credentials", lambda: client_error("InvalidAccessKeyId", 403)),
    ("refused-credentials", lambda: s3fs_translated("SignatureDoesNotMatch", 403)),
    ("permission", lambda: client_error("AccessDenied", 403)),
    ("permission", lambda: s3fs_translated("403", 403)),  # a HEAD request: no error code
    ("no-bucket", lambda: client_error("NoSuchBucket", 404)),
    ("no-bucket", lambda: s3fs_translated("NoSuchBucket", 404)),
    ("permission", lambda: PermissionError(errno.EACCES, "Permission denied", "/x")),
    ("read-only", lambda: OSError(errno.EROFS, "Read-only file system", "/x")),
    ("not-a-folder", lambda: NotADirectoryError(errno.ENOTDIR, "Not a directory", "/x")),
    ("full", lambda: OSError(errno.ENOSPC, "No space left on device", "/x")),
]
PASSING = [
    ("passing", lambda: client_error("SlowDown", 503)),
    ("passing", lambda: s3fs_translated("InternalError", 500)),
    ("passing", lambda: botocore_error("ReadTimeoutError")),
    ("passing", lambda: ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")),
    ("passing", lambda: TimeoutError("timed out")),
    ("unreachable", lambda: botocore_error("EndpointConnectionError")),
]


@pytest.mark.parametrize(("kind", "make"), PERMANENT + PASSING)
def test_storage_errors_are_sorted_into_what_to_fix_and_what_may_pass(kind, make) -> None:
    exc = make()
    fault = storage_fault(exc, "s3://bucket/gait.zarr")
    assert fault is not None and fault.kind == kind
    message = str(storage_error("s3://bucket/gait.zarr", exc, "nothing was changed"))
    assert "\n" not in message and message.startswith("s3://bucket/gait.zarr: ")
    assert "nothing was changed" in message
    if (kind, make) in PERMANENT:
        assert fault.permanent and RERUN not in message
    else:
        assert not fault.permanent and RERUN in message
    if kind == "unreachable":
        assert "endpoint_url" in message
    if "credentials" in kind:
        assert "AWS_ACCESS_KEY_ID" in message and "AWS_PROFILE" in message
    if kind == "no-bucket":
        assert "no such bucket 'bucket'" in message


def test_other_errors_are_not_storage_errors() -> None:
    assert storage_fault(ValueError("bad value")) is None
    try:
        try:
            raise OSError(errno.EIO, "I/O error")
        except OSError:
            raise KeyError("raised while handling it") from None
    except KeyError as exc:
        assert storage_fault(exc) is None


# --- local outputs and catalogues ----------------------------------------------------------------


def test_an_output_under_a_file_fails_before_any_work(tmp_path: Path) -> None:
    catalog = one_trial(tmp_path)
    (tmp_path / "a-file").write_text("in the way")
    output = tmp_path / "a-file" / "gait.zarr"
    cluster, env = unreachable_cluster()
    line = one_line_error(
        cli("run", "--catalog", str(catalog), "--output", str(output), *cluster, env=env)
    )
    assert str(output) in line and "a file is in the way" in line and "a-file" in line
    assert RERUN not in line and "scheduler" not in line  # the cluster was never reached


def test_a_misspelt_driver_fails_before_the_cluster_with_the_nearest_name(tmp_path: Path) -> None:
    catalog = write_catalogue(tmp_path, "{{ CATALOG_DIR }}/raw/{subject}/{trial}.c3d", "grimer")
    output = tmp_path / "gait.zarr"
    cluster, env = unreachable_cluster()
    line = one_line_error(
        cli("run", "--catalog", str(catalog), "--output", str(output), *cluster, env=env)
    )
    assert str(catalog) in line and "source 'lab'" in line
    assert "did you mean 'grimmer'" in line
    assert "scheduler" not in line and "Dask" not in line
    assert not any(tmp_path.glob("gait.zarr*"))  # nothing was created


def test_an_unknown_driver_fails_before_the_cluster_naming_the_drivers(tmp_path: Path) -> None:
    catalog = write_catalogue(tmp_path, "{{ CATALOG_DIR }}/raw/{subject}/{trial}.c3d", "xyzzy")
    cluster, env = unreachable_cluster()
    line = one_line_error(
        cli("run", "--catalog", str(catalog), "--output", str(tmp_path / "o.zarr"), *cluster, env=env)
    )
    assert str(catalog) in line and "no driver 'xyzzy'" in line and "gait_builder.datasets" in line
    assert "drivers: angelidou, " in line and "scheduler" not in line
    assert not any(tmp_path.glob("o.zarr*"))


def test_a_catalogue_without_trials_fails_before_the_cluster(tmp_path: Path) -> None:
    catalog = write_catalogue(tmp_path, "{{ CATALOG_DIR }}/none/{subject}/{trial}.c3d")
    cluster, env = unreachable_cluster()
    output = tmp_path / "gait.zarr"
    line = one_line_error(
        cli("run", "--catalog", str(catalog), "--output", str(output), *cluster, env=env)
    )
    assert "no trial to build" in line and "no files match" in line and "scheduler" not in line
    assert not any(tmp_path.glob("gait.zarr*"))


def test_a_failed_first_build_leaves_no_half_output(tmp_path: Path) -> None:
    """The cluster cannot be reached: ``<output>`` is the builder's placeholder, which says
    the build failed and why; not a link, not an empty folder, not a half store."""
    catalog = one_trial(tmp_path)
    output = tmp_path / "gait.zarr"
    cluster, env = unreachable_cluster()
    failed = cli("run", "--catalog", str(catalog), "--output", str(output), *cluster, env=env)
    assert "cannot reach the Dask scheduler" in error_line(failed)

    assert output.is_dir() and not output.is_symlink()
    assert sorted(p.name for p in output.iterdir()) == [MARKER, "zarr.json"]
    with pytest.raises(ValueError, match="no complete build of this store exists yet") as opened:
        xr.open_zarr(output)
    assert "the last build failed: --cluster" in str(opened.value)
    info = one_line_error(cli("info", str(output)))
    assert "the last build failed" in info and "cannot reach the Dask scheduler" in info


@pytest.mark.slow
def test_a_failed_later_build_keeps_the_published_version(demo_root: Path, tmp_path: Path) -> None:
    raw = copy_demo_subset(demo_root, tmp_path / "raw", ("S01",))
    catalog, output = demo_catalog(tmp_path, raw), tmp_path / "gait.zarr"
    first = build_store(catalog, output, workers=1)
    root = (output / "zarr.json").read_bytes()

    cluster, env = unreachable_cluster()
    args = ["--catalog", str(catalog), "--output", str(output), "--fresh", "--no-progress"]
    failed = cli("run", *args, *cluster, env=env)
    assert "cannot reach the Dask scheduler" in error_line(failed)

    assert (output / "zarr.json").read_bytes() == root
    ds = xr.open_zarr(output)
    assert ds.attrs["build_version"] == first.version and ds.sizes["stride"] == first.n_strides
    info = cli("info", str(output))
    assert info.returncode == 0, info.stderr
    assert "the last build failed" in " ".join(info.stdout.split())


# --- training: the run folder is checked before the store is opened ------------------------------


@requires_torch
def test_train_with_an_unwritable_out_fails_before_reading_the_store(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("in the way")
    out = tmp_path / "a-file" / "run"
    missing = tmp_path / "missing.zarr"  # opening it would fail too, naming it instead
    result = cli("train", "hip-moment", "--store", str(missing), "--out", str(out), "--no-progress")
    line = one_line_error(result)
    assert f"--out {out}" in line and "a file is in the way" in line
    assert "missing.zarr" not in line and "epoch" not in result.stdout.lower()

    (tmp_path / "run-file").write_text("a file")
    line = one_line_error(
        cli("train", "gait-phase", "--store", str(missing), "--out", str(tmp_path / "run-file"))
    )
    assert "run-file: exists and is a file" in line


# --- a Zarr store the builder did not make ------------------------------------------------------


@pytest.fixture
def foreign_store(tmp_path: Path) -> Path:
    import numpy as np

    path = tmp_path / "theirs.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    group.create_array("x", data=np.arange(5))
    group.attrs["title"] = "made elsewhere"
    return path


@pytest.mark.parametrize(
    "command",
    [
        ["info"],
        ["export-index", "--to", "{tmp}/index.h5"],
        ["report", "--out", "{tmp}/report"],
        pytest.param(["train", "hip-moment", "--store"], marks=requires_torch),
    ],
    ids=["info", "export-index", "report", "train"],
)
def test_a_store_the_builder_did_not_make_is_one_line(
    foreign_store: Path, tmp_path: Path, command: list[str]
) -> None:
    args = [a.format(tmp=tmp_path) for a in command]
    if args[0] == "train":
        args += [str(foreign_store), "--out", str(tmp_path / "run"), "--no-progress"]
    else:
        args.insert(1, str(foreign_store))
    line = one_line_error(cli(*args))
    assert str(foreign_store) in line and "KeyError" not in line
    assert "not written by builder" in line or "not a builder store" in line


# --- object storage ------------------------------------------------------------------------------


@dataclass
class S3:
    endpoint: str
    folder: Path  # empty AWS config files and fsspec config: no credentials from elsewhere

    def env(self, credentials: tuple[str, str] | None = (KEY_ID, SECRET)) -> dict[str, str]:
        """The command's environment: credentials only from the variables set here."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env |= {
            "AWS_CONFIG_FILE": str(self.folder / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.folder / "credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata lookups
            "FSSPEC_CONFIG_DIR": str(self.folder),
        }
        if credentials:
            env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = credentials
        return env

    def option(self, endpoint: str | None = None) -> list[str]:
        return ["--storage-option", f"endpoint_url={endpoint or self.endpoint}"]

    def fs(self):  # type: ignore[no-untyped-def]
        import s3fs

        fs = s3fs.S3FileSystem(endpoint_url=self.endpoint, key=KEY_ID, secret=SECRET)
        fs.invalidate_cache()  # list afresh: the commands change the bucket
        return fs

    def buckets(self) -> list[str]:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
        )
        return [b["Name"] for b in client.list_buckets()["Buckets"]]


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    with moto_server({}) as endpoint:  # no credentials in the environment: each case sets its own
        store = S3(endpoint, tmp_path_factory.mktemp("aws"))
        for bucket in ("stores", "raw"):
            store.fs().mkdir(bucket)
        store.fs().pipe_file("raw/demo/S01/t01.c3d", b"not read")
        yield store


@contextlib.contextmanager
def credentials_checked() -> Iterator[None]:
    """moto checks access keys (by default it takes any), as S3 does."""
    from moto import settings

    saved = settings.INITIAL_NO_AUTH_ACTION_COUNT
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    try:
        yield
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = saved


# problem -> (output URL, credentials, endpoint: None for the server's, what the line says)
S3_PROBLEMS = {
    "no credentials": ("s3://stores/gait.zarr", None, None, "no credentials found"),
    "wrong endpoint": ("s3://stores/gait.zarr", (KEY_ID, SECRET), "closed", "cannot connect"),
    "no such bucket": (
        "s3://no-such-bucket/gait.zarr",
        (KEY_ID, SECRET),
        None,
        "no such bucket 'no-such-bucket'",
    ),
    "refused credentials": ("s3://stores/gait.zarr", ("AKIAWRONG", "wrong"), None, "denied"),
}
ADVICE = {  # what the line says to set
    "no credentials": ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "--storage-option"),
    "wrong endpoint": ("endpoint_url",),
    "no such bucket": ("create it", "endpoint_url"),
    "refused credentials": ("AWS_ACCESS_KEY_ID", "AWS_PROFILE"),
}


@pytest.mark.slow
@requires_moto
@pytest.mark.parametrize("command", ["run", "info"])
@pytest.mark.parametrize("problem", list(S3_PROBLEMS))
def test_object_storage_problems_are_one_line_saying_what_to_set(
    s3: S3, tmp_path: Path, problem: str, command: str
) -> None:
    url, credentials, endpoint, says = S3_PROBLEMS[problem]
    option = s3.option(f"http://127.0.0.1:{closed_port()}" if endpoint else None)
    env = s3.env(credentials)
    if command == "run":
        cluster, env = unreachable_cluster(env)
        args = ["run", "--catalog", str(one_trial(tmp_path)), "--output", url, *cluster]
    else:
        args = ["info", url]
    with credentials_checked() if problem == "refused credentials" else contextlib.nullcontext():
        result = cli(*args, *option, env=env)
    line = one_line_error(result)
    assert line.startswith(f"error: {url}: ") and says in line
    assert all(advice in line for advice in ADVICE[problem]), line
    assert "scheduler" not in line  # failed before the cluster
    if problem != "wrong endpoint":
        assert RERUN not in line  # permanent: re-running alone cannot help
    assert s3.fs().find("stores/gait.zarr") == []  # nothing was written
    assert "no-such-bucket" not in s3.buckets()  # and no bucket created


@pytest.mark.slow
@requires_moto
@pytest.mark.parametrize(
    ("problem", "root", "says"),
    [
        ("no credentials", "s3://raw/demo", "no credentials found"),
        ("no such bucket", "s3://no-such-bucket/demo", "no such bucket 'no-such-bucket'"),
    ],
)
def test_a_catalogue_source_in_a_bucket_that_cannot_be_read(
    s3: S3, tmp_path: Path, problem: str, root: str, says: str
) -> None:
    catalog = write_catalogue(tmp_path, root + "/{subject}/{trial}.c3d")
    output = tmp_path / "gait.zarr"
    env = s3.env(None if problem == "no credentials" else (KEY_ID, SECRET))
    line = one_line_error(
        cli("run", "--catalog", str(catalog), "--output", str(output), *s3.option(), env=env)
    )
    assert str(catalog) in line and "source 'lab'" in line and root in line and says in line
    assert RERUN not in line
    assert not any(tmp_path.glob("gait.zarr*"))


@pytest.mark.slow
@requires_moto
def test_a_failed_first_build_on_s3_leaves_no_half_output(s3: S3, tmp_path: Path) -> None:
    url = "s3://stores/first.zarr"
    cluster, env = unreachable_cluster(s3.env())
    args = ["run", "--catalog", str(one_trial(tmp_path)), "--output", url, *cluster]
    assert "cannot reach the Dask scheduler" in error_line(cli(*args, *s3.option(), env=env))

    fs = s3.fs()
    assert sorted(fs.find("stores/first.zarr")) == [
        f"stores/first.zarr/{MARKER}",
        "stores/first.zarr/zarr.json",
    ]
    assert not fs.exists("stores/first.zarr.build/lock")
    options = {"endpoint_url": s3.endpoint, "key": KEY_ID, "secret": SECRET}
    with pytest.raises(ValueError, match="no complete build of this store exists yet") as opened:
        xr.open_zarr(url, storage_options=options)
    assert "the last build failed" in str(opened.value)


@pytest.mark.slow
@requires_moto
def test_a_failed_later_build_on_s3_keeps_the_published_version(
    s3: S3, demo_root: Path, tmp_path: Path
) -> None:
    from builder.pipeline.run import BuildOptions, build

    raw = copy_demo_subset(demo_root, tmp_path / "raw", ("S01",))
    catalog, url = demo_catalog(tmp_path, raw), "s3://stores/later.zarr"
    options = {"endpoint_url": s3.endpoint, "key": KEY_ID, "secret": SECRET}
    first = build(
        str(catalog),
        BuildOptions(output=url, workers=1, progress=False, storage_options=options),
    )
    root = s3.fs().cat_file("stores/later.zarr/zarr.json")

    cluster, env = unreachable_cluster(s3.env())
    args = ["run", "--catalog", str(catalog), "--output", url, "--fresh", *cluster]
    assert "cannot reach the Dask scheduler" in error_line(cli(*args, *s3.option(), env=env))

    assert s3.fs().cat_file("stores/later.zarr/zarr.json") == root
    ds = xr.open_zarr(url, storage_options=options)
    assert ds.attrs["build_version"] == first.version and ds.sizes["stride"] == first.n_strides


@pytest.mark.slow
@requires_moto
@pytest.mark.parametrize("problem", ["no such bucket", "no credentials"])
def test_engines_list_on_a_bucket_that_cannot_be_read_is_one_line(s3: S3, problem: str) -> None:
    url = "s3://no-such-bucket/engines" if problem == "no such bucket" else "s3://stores/engines"
    env = s3.env(None if problem == "no credentials" else (KEY_ID, SECRET))
    line = one_line_error(cli("engines", "list", url, *s3.option(), env=env))
    assert line.startswith(f"error: {url}: ") and S3_PROBLEMS[problem][3] in line
    assert RERUN not in line


def test_engines_list_on_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    line = one_line_error(cli("engines", "list", str(tmp_path / "nowhere")))
    assert "nowhere: no such folder" in line

"""Where a store lives: one output URL and its storage options, and everything built on them.

A :class:`StoreLocation` is the one place that turns a URL and storage options into an fsspec
filesystem and path for the store; every store user goes through it: the versions
(``<output>.versions/vNNNN``, see store/versions.py), the moving name ``<output>``, the resume
state and build lock in ``<output>.build/`` (store/staging.py), the version a reader should
hold, and that version's zarr group, xarray dataset and build report. zarr and xarray are
given the URL and the options (they open their own asynchronous store from them).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import fsspec
import zarr

from builder.errors import BuilderError, StoreError
from builder.store._files import is_local
from builder.store.faults import is_storage_error, no_such_bucket, storage_error

if TYPE_CHECKING:
    import xarray as xr

    from builder.store.staging import Staging
    from builder.store.versions import VersionedOutput

# zarr's access modes: read; read/write an existing group; create or open; overwrite; create.
Mode = Literal["r", "r+", "a", "w", "w-"]


class StoreLocation:
    """One output (a local path or any fsspec URL) and its storage options.

    Immutable. The filesystem is created on first use, once per process: a location sent to
    another process (a Dask worker, a DataLoader worker) carries only its URL and options and
    opens its own filesystem there (s3fs is not fork-safe).
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self._url = url.rstrip("/")
        self._options = dict(storage_options or {})

    @classmethod
    def of(
        cls, output: str | StoreLocation, storage_options: Mapping[str, Any] | None = None
    ) -> StoreLocation:
        """``output`` as a location: a location as it is, a URL with its options."""
        if isinstance(output, StoreLocation):
            if storage_options:
                raise TypeError("a StoreLocation carries its own storage options")
            return output
        return cls(output, storage_options)

    @property
    def url(self) -> str:
        """The output URL as given (without a trailing slash)."""
        return self._url

    @property
    def storage_options(self) -> dict[str, Any]:
        """A copy of the storage options (for passing on; the location keeps its own)."""
        return dict(self._options)

    @property
    def zarr_options(self) -> dict[str, Any] | None:
        """The storage options as zarr and xarray take them (None for none: a local path
        with options is an error there)."""
        return self.storage_options or None

    # --- the filesystem ----------------------------------------------------------------------
    @cached_property
    def _fs_and_path(self) -> tuple[fsspec.AbstractFileSystem, str]:
        fs, path = fsspec.core.url_to_fs(self._url, **self._options)
        return fs, os.path.abspath(path) if is_local(fs) else path.rstrip("/")

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return self._fs_and_path[0]

    @property
    def path(self) -> str:
        """The output's path on :attr:`fs` (no protocol; absolute on local disk)."""
        return self._fs_and_path[1]

    @property
    def is_local(self) -> bool:
        return is_local(self.fs)

    def check_reachable(self) -> None:
        """Fail at once, in one line saying what to set, when the output's storage cannot be
        used: no or refused credentials, a wrong endpoint, a bucket that does not exist (the
        builder never creates buckets), a file where a folder should be, a read-only place.
        One request on an object store; none on local disk."""
        with self.storage_errors():
            if self.is_local:
                _check_local_folder(self.path)
                return
            bucket = self._bucket()
            if bucket is None:
                return
            try:
                self.fs.info(bucket)
            except FileNotFoundError:
                raise no_such_bucket(self._url) from None

    @contextlib.contextmanager
    def storage_errors(self, outcome: str = "") -> Iterator[None]:
        """Storage exceptions (fsspec, s3fs, botocore, the OS) raised inside as one
        :class:`StoreError` line naming this URL, what went wrong and what to set; ``outcome``
        says what the failure left. Other exceptions pass through."""
        try:
            yield
        except BuilderError:
            raise
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            raise storage_error(self._url, exc, outcome) from None

    def _bucket(self) -> str | None:
        """The bucket (container) of an object-store output; None for other filesystems."""
        split = getattr(self.fs, "split_path", None)  # s3fs, gcsfs, adlfs: (bucket, key, …)
        if not callable(split):
            return None
        return str(split(self.path)[0]) or None

    # --- what lives beside the output ------------------------------------------------------
    # versions.py and staging.py build on this module, hence the imports in the methods.
    @cached_property
    def versions(self) -> VersionedOutput:
        """The versions of this output and its moving name (the writer's side)."""
        from builder.store.versions import VersionedOutput

        return VersionedOutput(self)

    @cached_property
    def staging(self) -> Staging:
        """The resume state and build lock in ``<output>.build/``."""
        from builder.store.staging import Staging

        return Staging(self)

    def version_url(self, version: str) -> str:
        """The stable URL of ``version`` (``<output>.versions/<version>``), for zarr/xarray."""
        return self.versions.version_url(version)

    # --- the reader's side -------------------------------------------------------------------
    def published_version(self) -> str | None:
        """The build version this URL opens now (a version URL opens itself), checked to be a
        complete build; None for a complete Zarr store without one (not written by builder).
        StoreError, saying why, when there is no complete store here."""
        version = self._root_metadata().get("attributes", {}).get("build_version")
        return version if isinstance(version, str) else None

    def pin(self) -> str:
        """The stable URL of the version this URL opens now.

        A store's moving name (``gait.zarr``) gives its published version's URL
        (``gait.zarr.versions/vNNNN``, built on the URL as given), which reads the same data
        for as long as it exists; a version URL, or a store the builder did not write, is
        returned as it is.
        """
        return self._pinned()[0]

    def open_group(self, mode: Mode = "r", version: str | None = None) -> zarr.Group:
        """The zarr (v3) group of ``version``; with none, to read: the version :meth:`pin`
        gives; to write: the group at this URL itself (the location of one version)."""
        if version is not None:
            url = self.version_url(version)
        else:
            url = self.pin() if mode == "r" else self._url
        with self.storage_errors():
            return zarr.open_group(url, mode=mode, zarr_format=3, storage_options=self.zarr_options)

    def open_dataset(self, **options: Any) -> xr.Dataset:
        """The pinned version as a labelled dataset (as ``xarray.open_zarr`` gives it, with
        ``options``): a later publish never changes what it reads. The stride table is in
        memory (store/xarray_backend.py)."""
        import xarray as xr  # readers only: the build and its workers never need it

        from builder.store.xarray_backend import gait_dataset

        return gait_dataset(xr.open_zarr(self.pin(), storage_options=self.zarr_options, **options))

    def read_report(self, version: str | None = None) -> dict[str, Any]:
        """The build report (JSON) of ``version``, or of the version :meth:`pin` gives."""
        from builder.store.layout import REPORT_NAME

        if version is None:
            url, path = self._pinned()
        else:
            url, path = self.version_url(version), self.versions.version_path(version)
        with self.storage_errors():
            try:
                with self.fs.open(f"{path}/{REPORT_NAME}", "rb") as f:
                    return json.loads(f.read())
            except FileNotFoundError:
                raise StoreError(
                    f"{url}: the store has no {REPORT_NAME} (not written by builder?)"
                ) from None

    def _pinned(self) -> tuple[str, str]:
        """(URL, path) of the version this URL opens now (see :meth:`pin`)."""
        version = self.published_version()
        if version is None or self.path.endswith(f"/{version}"):
            return self._url, self.path
        path = f"{self.path}.versions/{version}"
        with self.storage_errors():
            copied = not self.fs.exists(f"{path}/zarr.json")
        if copied:
            return self._url, self.path  # a copy without its versions (cp -r gait.zarr ...)
        return f"{self._url}.versions/{version}", path

    def _root_metadata(self) -> dict[str, Any]:
        """The root metadata of a complete store here; StoreError saying why otherwise."""
        root = f"{self.path}/zarr.json"
        with self.storage_errors():  # the first request of every reader
            found = self.fs.exists(root)
            if not found and self.fs.exists(f"{self.path}.build"):
                raise StoreError(f"{self._url}: no complete build yet; {self._build_status()}")
        if not found:
            if not self.is_local:  # no such bucket (or no access to it): say so
                self.check_reachable()
            raise StoreError(f"{self._url}: no store here")
        try:
            with self.fs.open(root, "rb") as f:
                meta = json.loads(f.read())
        except ValueError as exc:
            raise StoreError(f"{self._url}: unreadable store metadata ({exc})") from None
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            raise storage_error(self._url, exc, "cannot read its metadata") from None
        if not isinstance(meta, dict) or meta.get("zarr_format") != 3:
            raise StoreError(f"{self._url}: no complete build yet; {self._build_status()}")
        return meta

    def _build_status(self) -> str:
        return self.staging.last_build() or "a build is under way or was killed"

    # --- identity ------------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StoreLocation):
            return NotImplemented
        return (self._url, self._options) == (other._url, other._options)

    def __hash__(self) -> int:
        return hash(self._url)

    def __repr__(self) -> str:
        return f"StoreLocation({self._url!r}, {self._options!r})"

    def __reduce__(self) -> tuple[type[StoreLocation], tuple[str, dict[str, Any]]]:
        # Only the URL and the options travel; the filesystem is opened again where it lands.
        return StoreLocation, (self._url, self._options)


def _check_local_folder(path: str) -> None:
    """Raise the OSError that writing ``path`` (a folder to create) would meet: its nearest
    existing parent is a file, or read-only, or not writable by this user."""
    if os.path.lexists(path) and not os.path.isdir(path):
        return  # the output's own name: the ownership check says "exists and is a file"
    parent = path
    while not os.path.lexists(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", parent)
    if os.statvfs(parent).f_flag & os.ST_RDONLY:
        raise OSError(errno.EROFS, "Read-only file system", parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "Permission denied", parent)

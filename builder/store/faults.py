"""What a storage exception means for the user, in one line: the problem, and what to fix.

fsspec, s3fs and botocore raise many kinds of exceptions for the same few causes (missing or
refused credentials, a wrong endpoint, a bucket that does not exist, a read-only or full disk,
a file where a folder should be, an outage). :func:`storage_fault` sorts a real exception into
one of them; :func:`storage_error` turns it into the :class:`~builder.errors.StoreError` the
command line prints as one line naming the URL. Only transient faults (timeouts, 5xx answers,
dropped connections) say to re-run when the storage answers; a permanent one says what to set.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from builder.errors import StoreError, one_line

RERUN = "re-run when the storage answers again"
_CREDENTIALS = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or --storage-option "
    "key=… and secret=… (anon=true for a public bucket)"
)
_ENDPOINT = "--storage-option endpoint_url=URL or AWS_ENDPOINT_URL"

# botocore ClientError codes (S3 and S3-compatible servers), by what they mean.
_REFUSED_CREDENTIALS = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "AuthorizationHeaderMalformed",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
    }
)
_DENIED = frozenset({"AccessDenied", "AllAccessDisabled", "AccountProblem", "Forbidden", "403"})
_PASSING = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "ServiceUnavailable",
     "InternalError", "RequestLimitExceeded", "TooManyRequests"}
)  # fmt: skip
_NOT_FOUND = frozenset({"NoSuchKey", "NotFound", "404"})
# Local errno values, by what they mean (anything else counts as passing).
_ERRNO: dict[int, str] = {
    errno.EROFS: "read-only",
    errno.EACCES: "permission",
    errno.EPERM: "permission",
    errno.ENOTDIR: "not-a-folder",
    errno.EISDIR: "not-a-folder",
    errno.EEXIST: "not-a-folder",  # makedirs over a file
    errno.ENOSPC: "full",
    errno.EDQUOT: "full",
    errno.ENOENT: "not-found",
    errno.ECONNREFUSED: "unreachable",
}


@dataclass(frozen=True)
class StorageFault:
    """What went wrong (``kind``, ``problem``), what to do (``advice``), and whether re-running
    alone can help (``permanent`` is False only for faults that may pass)."""

    kind: str
    problem: str
    advice: str
    permanent: bool
    detail: str  # the exception that says most, on one line
    remote: bool  # raised by an object store's client (botocore), not the local system


def storage_fault(exc: BaseException, url: str = "") -> StorageFault | None:
    """What ``exc`` (with its causes) means, or None when it is not about storage.

    ``url`` (the location being used) names the bucket in the advice."""
    botocore = _botocore() or ()
    if not isinstance(exc, (OSError, *botocore)):
        return None  # raised for another reason, even if during a storage error
    chain = list(_chain(exc))
    remote = any(isinstance(e, botocore) for e in chain)
    for e in chain:
        kind = _botocore_kind(e)
        if kind is not None:
            return _fault(kind, e, url, remote=True)
    for e in chain:
        if isinstance(e, OSError):
            kind = "permission" if isinstance(e, PermissionError) else None
            kind = kind or _ERRNO.get(e.errno or 0, "passing")
            return _fault(kind, e, url, remote=remote)
    return None


def is_storage_error(exc: BaseException) -> bool:
    return storage_fault(exc) is not None


def storage_error(url: str, exc: BaseException, outcome: str = "") -> StoreError:
    """``exc`` as the one line the user sees: ``url: problem (detail); outcome; advice``.

    ``outcome`` says what the failure left (e.g. "the previous version is intact"). An
    exception that is not about storage is described as a passing storage error."""
    fault = storage_fault(exc, url) or _fault("passing", exc, url, remote=False)
    parts = [f"{url}: {fault.problem} ({fault.detail})", outcome, fault.advice]
    return StoreError("; ".join(p for p in parts if p))


def no_such_bucket(url: str) -> StoreError:
    """The error for an object-store URL whose bucket does not exist (found by a listing)."""
    fault = _fault("no-bucket", None, url, remote=True)
    return StoreError(f"{url}: {fault.problem}; {fault.advice}")


def _fault(kind: str, exc: BaseException | None, url: str, *, remote: bool) -> StorageFault:
    bucket = _bucket(url)
    detail = "" if exc is None else _describe(exc)
    permanent = kind not in ("passing", "unreachable")
    problem, advice = {
        "no-credentials": ("no credentials found", _CREDENTIALS),
        "refused-credentials": (
            "the storage refused the credentials",
            f"check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE (or --storage-option "
            f"key/secret/profile), and that the endpoint is the right one ({_ENDPOINT})",
        ),
        "permission": (
            (
                "access denied",
                "check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE or --storage-option profile=…) and that they may read and write "
                "here, or choose another location",
            )
            if remote
            else ("permission denied", "choose a location you may write to, or fix its permissions")
        ),
        "no-bucket": (
            f"no such bucket {bucket!r}" if bucket else "no such bucket",
            f"create it, or fix the URL or the endpoint that should hold it ({_ENDPOINT})",
        ),
        "not-found": ("not found", "check the URL or path"),
        "refused": ("the storage refused the request", "check the URL and the storage options"),
        "read-only": ("read-only file system", "choose a writable location"),
        "not-a-folder": (
            "a file is in the way",
            "a part of the path is a file, not a folder: choose another location, or move "
            "the file away",
        ),
        "full": ("no space left", "free space, or choose another location"),
        "unreachable": (
            "cannot connect to the storage endpoint",
            f"check the endpoint ({_ENDPOINT}); if it is right, {RERUN}",
        ),
        "passing": ("storage error", RERUN),
    }[kind]
    return StorageFault(kind, problem, advice, permanent, detail, remote)


def _botocore_kind(exc: BaseException) -> str | None:
    """The fault kind of a botocore exception (None for any other exception)."""
    try:
        from botocore import exceptions as bx
    except ImportError:  # pragma: no cover - s3fs requires botocore
        return None
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return "no-credentials"
    if isinstance(exc, bx.CredentialRetrievalError):
        return "refused-credentials"
    if isinstance(exc, bx.EndpointConnectionError):
        return "unreachable"  # refused or no such host: a wrong endpoint, or one down
    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code == "NoSuchBucket":
            return "no-bucket"
        if code in _REFUSED_CREDENTIALS:
            return "refused-credentials"
        if code in _DENIED or status == 403:
            return "permission"
        if code in _PASSING or status >= 500 or status in (408, 429):
            return "passing"
        if code in _NOT_FOUND or status == 404:
            return "not-found"
        return "refused" if 400 <= status < 500 else "passing"
    if isinstance(exc, bx.BotoCoreError):
        return "passing"  # timeouts, dropped connections, a response cut short
    return None


def _botocore() -> tuple[type[BaseException], ...] | None:
    try:
        from botocore import exceptions as bx
    except ImportError:  # pragma: no cover - s3fs requires botocore
        return None
    return (bx.BotoCoreError, bx.ClientError)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what caused it (``raise … from``), then what it was raised during."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 16:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo.extend(x for x in (e.__cause__, e.__context__) if x is not None)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {one_line(exc)}"


def _bucket(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc if parts.scheme not in ("", "file", "local") else ""

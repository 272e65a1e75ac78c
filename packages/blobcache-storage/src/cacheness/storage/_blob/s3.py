"""``s3``: blobs as objects in an S3 bucket (AWS, MinIO, any S3-compatible server).

boto3 is imported when a backend is created, never by ``import cacheness.storage``.
Keys are ``prefix`` + the reference, with the same git-style sharding as the filesystem
(``"team-cache/ab/abcdef..."``).

**Writes** spool the stream (in memory up to ``multipart_threshold``, then in a
temporary file under ``spool_dir``) while hashing it, then upload with boto3's managed
transfer: one ``PutObject`` below the threshold, a parallel multipart upload above. The
XXH3-128 content hash travels as object metadata (``x-amz-meta-xxh3-128``) set at
creation, so :meth:`~S3BlobBackend.stat` answers from one HEAD. S3 only accepts
metadata before the bytes, which is why the stream is spooled (see ``docs/blob-backends.md``
for the trade-offs); the spool also lets retries resend a failed part. ETag and
VersionId come from the upload's own response, not from a later HEAD.

**Exclusive writes** send ``If-None-Match: *`` (single and multipart uploads), so two
writers of one content-addressed name cannot both create it; servers that answer 501
fall back to a HEAD check (``conditional_writes="auto"``).

**Faults**: botocore retries (``retry_mode="standard"`` or ``"adaptive"``, ``max_attempts``)
plus a circuit breaker: after ``breaker_threshold`` consecutive connection failures,
calls fail fast with :class:`~cacheness.storage.errors.BackendUnavailableError` for
``breaker_reset_timeout`` seconds, then one trial call probes the server.

Example:
    >>> from cacheness.storage import S3BlobBackend
    >>> S3BlobBackend.name, S3BlobBackend.scope
    ('s3', 'shared')
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import IO, Any, BinaryIO, ClassVar, Final, Literal, NamedTuple, cast

from cacheness.storage._blob._args import data_view, local_file, ref_list, ref_prefix
from cacheness.storage._blob._circuit_breaker import CircuitBreaker
from cacheness.storage._blob._io import CHUNK_SIZE, atomic_output
from cacheness.storage._blob._s3_requests import S3RequestCounter
from cacheness.storage._blob._sharding import validate_name
from cacheness.storage._blob.base import BlobBackend, BlobInfo, BlobWriter
from cacheness.storage._hashing import BytesLike, hash_bytes, hash_stream
from cacheness.storage._optional import import_optional
from cacheness.storage._pairing import Scope
from cacheness.storage._validate import check_choice, check_int, check_seconds, is_int
from cacheness.storage.errors import (
    BackendUnavailableError,
    BlobExistsError,
    BlobNotFoundError,
    CacheError,
    ConfigError,
    StorageError,
)

log = logging.getLogger(__name__)

HASH_METADATA_KEY = "xxh3-128"
"""User-metadata key of the content hash (sent as ``x-amz-meta-xxh3-128``)."""

_TOKEN_KEY = "cacheness-upload-token"  # private marker, removed before the request is sent
_MiB = 1 << 20
_GiB = 1 << 30
_MIN_PART = 5 * _MiB
_MAX_COPY_PART = 5 * _GiB
_DELETE_BATCH = 1000
_UNAVAILABLE_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"}
_NOT_FOUND_CODES = {"NoSuchKey", "NotFound", "404"}
_CREDENTIAL_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"}


def _unwrap(exc: BaseException) -> BaseException:
    """Look through boto3/s3transfer wrappers to the error that really happened."""
    for _ in range(5):
        inner = getattr(exc, "last_exception", None)  # s3transfer's RetriesExceededError
        if inner is None and type(exc).__name__ == "S3UploadFailedError":
            inner = exc.__cause__ or exc.__context__
        if not isinstance(inner, BaseException):
            return exc
        exc = inner
    return exc


class _S3Writer(BlobWriter):
    def __init__(self, backend: S3BlobBackend, name: str, ref: str, exclusive: bool) -> None:
        super().__init__(name, ref)
        self._backend = backend
        self._exclusive = exclusive
        self._spool: tempfile.SpooledTemporaryFile[bytes] | None = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed by commit/abort
            max_size=backend.multipart_threshold, dir=backend.spool_dir
        )

    def _write(self, data: memoryview) -> None:
        assert self._spool is not None
        try:
            self._spool.write(data)
        except OSError as exc:
            raise StorageError(
                f"could not spool blob {self.ref!r} to {self._backend.spool_dir or 'the temp dir'}"
                f" before uploading it: {exc}; free space there or set spool_dir"
            ) from exc

    def _commit(self, size: int, content_hash: str) -> BlobInfo:
        assert self._spool is not None
        try:
            return self._backend._upload(self._spool, self.ref, size, content_hash, self._exclusive)
        finally:
            self._close_spool()

    def _abort(self) -> None:
        self._close_spool()

    def _close_spool(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None


class _S3Reader(io.RawIOBase):
    """A seekable reader over one object version: seeks become ranged GETs (If-Match)."""

    def __init__(self, backend: S3BlobBackend, ref: str, response: dict[str, Any]) -> None:
        super().__init__()
        self._backend = backend
        self._ref = ref
        self._body: Any = response["Body"]
        self._etag: str | None = response.get("ETag")
        self._size = int(response.get("ContentLength", 0))
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            target = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence!r}")
        if target < 0:
            raise ValueError(f"negative seek position {target}")
        if target != self._pos:
            self._drop_body()
            self._pos = target
        return self._pos

    def readinto(self, buffer: Any) -> int:
        if self.closed:
            raise ValueError("read from a closed S3 blob reader")
        view = memoryview(buffer).cast("B")
        if self._pos >= self._size or not view.nbytes:
            return 0
        if self._body is None:
            self._body = self._backend._ranged_body(self._ref, self._pos, self._etag)
        try:
            data = self._body.read(min(view.nbytes, self._size - self._pos))
        except Exception as exc:
            self._drop_body()
            mapped = self._backend._failed(exc, "read", self._ref)
            if mapped is exc:
                raise
            raise mapped from exc
        count = len(data)
        if not count:
            raise StorageError(
                f"S3 object for blob {self._ref!r} ended after {self._pos} of {self._size} bytes"
            )
        view[:count] = data
        self._pos += count
        return count

    def _drop_body(self) -> None:
        if self._body is not None:
            with contextlib.suppress(Exception):  # closing a half-read HTTP response
                self._body.close()
            self._body = None

    def close(self) -> None:
        self._drop_body()
        super().close()


class S3BlobBackend(BlobBackend):
    """Blobs stored as objects in one S3 bucket, under an optional key prefix.

    Args:
        bucket: the bucket name.
        prefix: key prefix for every blob (``"team-cache"`` → ``team-cache/ab/abc...``).
        region: the bucket's region (``region_name`` is accepted as an alias).
        endpoint_url: the server for MinIO and other S3-compatible stores.
        aws_access_key_id: credentials; when these four are omitted the standard AWS
            chain applies (environment, config files, instance roles).
        aws_secret_access_key: credentials (see ``aws_access_key_id``).
        aws_session_token: credentials (see ``aws_access_key_id``).
        profile_name: credentials: a profile of the AWS config files.
        access_key: the seeds' spelling of ``aws_access_key_id`` (an alias).
        secret_key: the seeds' spelling of ``aws_secret_access_key`` (an alias).
        use_ssl: False talks plain HTTP to the endpoint (local MinIO); default True.
        sse: server-side encryption of every object written: ``"AES256"`` (S3-managed
            keys) or ``"aws:kms"`` (with ``kms_key_id``, or the bucket's default key).
        kms_key_id: the KMS key of ``sse="aws:kms"``.
        storage_class: the storage class of objects written (``"STANDARD_IA"``,
            ``"INTELLIGENT_TIERING"``...); default: the bucket's.
        content_type: the ``Content-Type`` header of objects written (buckets shared
            with other tools often require it).
        cache_control: the ``Cache-Control`` header of objects written.
        shard_chars: git-style sharding of references (default 2; 0 disables; 1-4).
        multipart_threshold: size from which uploads (and downloads) use parallel
            multipart transfers; also the in-memory spool size (default 8 MiB, ≥ 5 MiB).
        multipart_chunksize: part size of multipart transfers (default 8 MiB, ≥ 5 MiB).
        max_concurrency: parallel parts per transfer (default 8).
        copy_multipart_threshold: objects larger than this are copied part by part
            (default 5 GiB, the CopyObject limit).
        retry_mode: botocore retry mode, ``"standard"`` (default) or ``"adaptive"``.
        max_attempts: attempts per request including the first (default 5).
        connect_timeout: socket connect timeout in seconds.
        read_timeout: socket read timeout in seconds.
        checksum: ``"when_supported"`` (botocore's default: CRC checksums on every upload)
            or ``"when_required"`` for servers that reject those headers.
        addressing_style: ``"auto"``, ``"path"`` (most local servers) or ``"virtual"``.
        conditional_writes: exclusive writes use ``If-None-Match: *`` (``"header"``), a
            HEAD check (``"check"``), or the header with a fallback to the check when
            the server does not implement it (``"auto"``, default).
        create_bucket: create the bucket at first use if missing (tests, local servers).
        spool_dir: where streamed writes larger than ``multipart_threshold`` are spooled.
        breaker_threshold: consecutive connection failures that open the breaker.
        breaker_reset_timeout: seconds calls fail fast before a trial call.
        clock: monotonic clock of the breaker (injectable for tests).
        client: a ready boto3 S3 client; the connection options above are then ignored.

    Raises:
        ConfigError: an option is out of range.
        MissingDependencyError: boto3 is not installed.
    """

    name: ClassVar[str] = "s3"
    scope: Scope = "shared"
    exact_delete_counts: bool = False

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        region: str | None = None,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        profile_name: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        use_ssl: bool = True,
        sse: Literal["AES256", "aws:kms"] | None = None,
        kms_key_id: str | None = None,
        storage_class: str | None = None,
        content_type: str | None = None,
        cache_control: str | None = None,
        shard_chars: int = 2,
        multipart_threshold: int = 8 * _MiB,
        multipart_chunksize: int = 8 * _MiB,
        max_concurrency: int = 8,
        copy_multipart_threshold: int = _MAX_COPY_PART,
        retry_mode: Literal["standard", "adaptive"] = "standard",
        max_attempts: int = 5,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        checksum: Literal["when_supported", "when_required"] = "when_supported",
        addressing_style: Literal["auto", "path", "virtual"] = "auto",
        conditional_writes: Literal["auto", "header", "check"] = "auto",
        create_bucket: bool = False,
        spool_dir: str | os.PathLike[str] | None = None,
        breaker_threshold: int = 5,
        breaker_reset_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        client: Any = None,
    ) -> None:
        super().__init__(shard_chars=shard_chars)
        _check_options(
            bucket,
            region=region,
            region_name=region_name,
            choices={
                "retry_mode": (retry_mode, ("standard", "adaptive")),
                "checksum": (checksum, ("when_supported", "when_required")),
                "addressing_style": (addressing_style, ("auto", "path", "virtual")),
                "conditional_writes": (conditional_writes, ("auto", "header", "check")),
            },
            sizes={
                "multipart_threshold": multipart_threshold,
                "multipart_chunksize": multipart_chunksize,
                "copy_multipart_threshold": copy_multipart_threshold,
            },
            counts={"max_concurrency": max_concurrency, "max_attempts": max_attempts},
        )
        aws_access_key_id = _alias("access_key", access_key, "aws_access_key_id", aws_access_key_id)
        aws_secret_access_key = _alias(
            "secret_key", secret_key, "aws_secret_access_key", aws_secret_access_key
        )
        self.write_args = _write_args(sse, kms_key_id, storage_class, content_type, cache_control)
        self.bucket = bucket
        self.prefix = _normalise_prefix(prefix)
        self.region = region or region_name
        self.multipart_threshold = multipart_threshold
        self.multipart_chunksize = multipart_chunksize
        self.copy_multipart_threshold = copy_multipart_threshold
        self.max_attempts = max_attempts
        self.conditional_writes = conditional_writes
        self.create_bucket = bool(create_bucket)
        self.spool_dir = os.fspath(spool_dir) if spool_dir is not None else None

        self._exceptions, self._connection_errors = _error_types()
        if client is None:
            client = _make_client(
                endpoint_url,
                credentials={
                    "aws_access_key_id": aws_access_key_id,
                    "aws_secret_access_key": aws_secret_access_key,
                    "aws_session_token": aws_session_token,
                    "profile_name": profile_name,
                    "region_name": self.region,
                },
                retries={"mode": retry_mode, "total_max_attempts": max_attempts},
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                max_pool_connections=max(10, 2 * max_concurrency),
                checksum=checksum,
                addressing_style=addressing_style,
                use_ssl=bool(use_ssl),
            )
        self._client = client
        self.endpoint = endpoint_url or str(client.meta.endpoint_url)
        self._transfer_config, self._copy_config = _transfer_configs(
            multipart_threshold, multipart_chunksize, copy_multipart_threshold, max_concurrency
        )
        self.circuit_breaker = CircuitBreaker(
            failure_threshold=breaker_threshold,
            reset_timeout=breaker_reset_timeout,
            clock=clock,
            name=f"S3 endpoint {self.endpoint} (bucket {bucket!r})",
        )
        self._bucket_ready = threading.Event()
        self._bucket_lock = threading.Lock()
        self._hook_lock = threading.Lock()
        self._exclusive_tokens: set[str] = set()
        self._upload_tokens: dict[str, str] = {}
        self._results: dict[str, dict[str, Any]] = {}
        self._requests = S3RequestCounter(bucket)
        self._requests.attach(client)
        events = client.meta.events
        for operation in ("PutObject", "CreateMultipartUpload", "CompleteMultipartUpload"):
            events.register(f"before-parameter-build.s3.{operation}", self._before_params)
            events.register(f"after-call.s3.{operation}", self._after_call)

    # -- keys ----------------------------------------------------------------------------

    def _key(self, ref: str) -> str:
        return self.prefix + self._check_ref(ref)

    def location(self, ref: str) -> str:
        """Return ``s3://bucket/key`` of the blob."""
        return f"s3://{self.bucket}/{self._key(ref)}"

    # -- errors and the circuit breaker ----------------------------------------------------

    @contextlib.contextmanager
    def _call(
        self,
        action: str,
        ref: str | None = None,
        *,
        exclusive: bool = False,
        what: str | None = None,
    ) -> Iterator[None]:
        """Run one request (or managed transfer) under the breaker, translating errors.

        ``what`` names the object of ``action`` in messages (default: the blob ``ref``,
        or the bucket when there is none).
        """
        self.circuit_breaker.before_call()
        try:
            yield
        except Exception as exc:
            mapped = self._failed(exc, action, ref, exclusive=exclusive, what=what)
            if mapped is exc:
                raise
            raise mapped from exc
        except BaseException:
            self.circuit_breaker.record_neutral()
            raise
        self.circuit_breaker.record_success()

    def _failed(
        self,
        error: BaseException,
        action: str,
        ref: str | None,
        *,
        exclusive: bool = False,
        what: str | None = None,
    ) -> BaseException:
        """The error to raise for a failed request, with the breaker told what happened."""
        mapped = self._translate(error, action, ref, exclusive=exclusive, what=what)
        breaker = self.circuit_breaker
        if mapped.reached is True:
            breaker.record_success()
        elif mapped.reached is False:
            breaker.record_failure(mapped.cause)
        else:
            breaker.record_neutral()
        if mapped.bucket_gone:
            return self._bucket_vanished(action, ref)
        return mapped.error

    def _translate(
        self,
        error: BaseException,
        action: str,
        ref: str | None,
        *,
        exclusive: bool = False,
        what: str | None = None,
    ) -> _Mapped:
        """Map a boto error to ours, and say whether the server was reached (no I/O here)."""
        exc = _unwrap(error)
        if what is not None:
            where = what
        else:
            where = f"blob {ref!r}" if ref is not None else f"bucket {self.bucket!r}"
        errors = self._exceptions
        if isinstance(exc, CacheError):
            return _Mapped(exc, exc, reached=True)
        if isinstance(exc, errors.ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            message = exc.response.get("Error", {}).get("Message", "") or str(exc)
            if status == 501 or code == "NotImplemented":
                return _Mapped(
                    StorageError(
                        f"{self.endpoint} does not implement what {action} of {where} needs: "
                        f"{message}"
                    ),
                    exc,
                    reached=True,
                )
            if status >= 500 or code in _UNAVAILABLE_CODES:
                return _Mapped(
                    BackendUnavailableError(
                        f"S3 endpoint {self.endpoint} failed to {action} {where}: "
                        f"{code or status} (HTTP {status}) after {self.max_attempts} attempts; "
                        "retry later"
                    ),
                    exc,
                    reached=False,
                )
            return _Mapped(
                self._client_error(code, status, message, action, ref, where, exclusive),
                exc,
                reached=True,
                bucket_gone=code == "NoSuchBucket",
            )
        if isinstance(exc, errors.NoCredentialsError | errors.PartialCredentialsError):
            return _Mapped(
                ConfigError(
                    f"no usable AWS credentials for {self.endpoint}: {exc}. Pass "
                    "aws_access_key_id/aws_secret_access_key, set AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY, or configure a profile"
                ),
                exc,
                reached=True,
            )
        if isinstance(exc, self._connection_errors):
            return _Mapped(
                BackendUnavailableError(
                    f"S3 endpoint {self.endpoint} is unreachable ({action} {where}): "
                    f"{type(exc).__name__}: {exc}"
                ),
                exc,
                reached=False,
            )
        if isinstance(exc, errors.BotoCoreError):
            return _Mapped(
                StorageError(f"S3 could not {action} {where}: {type(exc).__name__}: {exc}"),
                exc,
                reached=True,
            )
        if isinstance(exc, OSError):
            return _Mapped(
                StorageError(f"local I/O error during S3 {action} of {where}: {exc}"), exc, None
            )
        return _Mapped(error, exc, None)

    def _client_error(
        self,
        code: str,
        status: int,
        message: str,
        action: str,
        ref: str | None,
        where: str,
        exclusive: bool,
    ) -> StorageError:
        """Our error for an S3 error response the server sent (it was reached)."""
        if code == "NoSuchBucket":
            return StorageError(f"S3 bucket {self.bucket!r} is missing at {self.endpoint}")
        if status == 404 or code in _NOT_FOUND_CODES:
            return BlobNotFoundError(
                f"no blob {ref!r} at {self.location(ref) if ref else self.bucket}"
            )
        if exclusive and (
            status in (409, 412) or code in ("PreconditionFailed", "ConditionalRequestConflict")
        ):
            return BlobExistsError(
                f"blob {ref!r} already exists (exclusive write); nothing was changed"
            )
        if status == 412 and ref is not None and action in ("read", "copy"):
            # If-Match / CopySourceIfMatch: the version being read is gone.
            return BlobNotFoundError(
                f"blob {ref!r} at {self.location(ref)} was replaced or deleted on the "
                f"server during {action}"
            )
        if status == 412:
            return StorageError(
                f"blob {ref!r} changed on the server during {action}; retry the operation"
            )
        if code in _CREDENTIAL_CODES:
            return StorageError(
                f"S3 refused to {action} {where} at {self.endpoint}: {code} ({message}); "
                "check the credentials and the bucket policy"
            )
        return StorageError(
            f"S3 could not {action} {where} at {self.endpoint}: {code} (HTTP {status}): {message}"
        )

    def _missing_bucket(self) -> StorageError:
        return StorageError(
            f"S3 bucket {self.bucket!r} does not exist at {self.endpoint}; create it, fix the "
            "bucket name or endpoint_url, or pass create_bucket=True"
        )

    def _bucket_vanished(self, action: str, ref: str | None) -> StorageError:
        """The error for a bucket that is missing now (it existed, or was never checked).

        With ``create_bucket`` (a long-lived cache whose S3 server restarted empty, say)
        the bucket is created again, and the error says what that means: a blob read
        is not found (the bucket is empty), a write is retried by the caller
        (:class:`_BucketRecreatedError`). Without it, the bucket is reported missing.
        """
        self._bucket_ready.clear()
        if not self.create_bucket or action in ("check", "create"):
            return StorageError(
                f"S3 bucket {self.bucket!r} does not exist (any more) at {self.endpoint}; "
                "create it, fix the bucket name or endpoint_url, or pass create_bucket=True"
            )
        try:
            self._ensure_bucket()
        except StorageError as exc:
            return exc
        log.warning(
            "S3 bucket %r had disappeared from %s (a server that restarted empty?); it was "
            "created again (create_bucket=True): the blobs it held are gone",
            self.bucket,
            self.endpoint,
        )
        if ref is not None and action in ("read", "copy", "download", "stat"):
            return BlobNotFoundError(
                f"no blob {ref!r} at {self.location(ref)}: bucket {self.bucket!r} had "
                "disappeared and was created again, empty"
            )
        return _BucketRecreatedError(
            f"S3 bucket {self.bucket!r} had disappeared from {self.endpoint} during {action}; "
            "it was created again, empty (create_bucket=True): retry"
        )

    def _ensure_bucket(self) -> None:
        """Check once that the bucket exists (so a missing bucket is not a missing blob)."""
        if self._bucket_ready.is_set():
            return
        with self._bucket_lock:
            if self._bucket_ready.is_set():
                return
            breaker = self.circuit_breaker
            breaker.before_call()
            try:
                self._client.head_bucket(Bucket=self.bucket)
            except Exception as exc:
                status = _status(exc)
                if status not in (403, 404):
                    mapped = self._failed(exc, "check", None)
                    if mapped is exc:
                        raise
                    raise mapped from exc
                breaker.record_success()
                if status == 403:
                    log.warning(
                        "cannot check S3 bucket %r at %s (access denied to HeadBucket); "
                        "assuming it exists",
                        self.bucket,
                        self.endpoint,
                    )
                elif not self.create_bucket:
                    raise self._missing_bucket() from exc
                else:
                    self._create_bucket()
            else:
                breaker.record_success()
            self._bucket_ready.set()

    def _create_bucket(self) -> None:
        options: dict[str, Any] = {"Bucket": self.bucket}
        if self.region and self.region != "us-east-1":
            options["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            with self._call("create"):
                self._client.create_bucket(**options)
        except StorageError as exc:
            if "BucketAlreadyOwnedByYou" not in str(exc):
                raise
        log.info("created S3 bucket %r at %s", self.bucket, self.endpoint)

    # -- botocore event hooks: our upload's own ETag, If-None-Match on multipart completes --

    def _before_params(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        metadata = params.get("Metadata")
        token = metadata.pop(_TOKEN_KEY, None) if isinstance(metadata, dict) else None
        completing = "UploadId" in params  # CompleteMultipartUpload
        if token is None and completing:
            with self._hook_lock:
                token = self._upload_tokens.pop(params["UploadId"], None)
        if token is None:
            return
        context["cacheness_token"] = token
        with self._hook_lock:
            exclusive = token in self._exclusive_tokens
        if exclusive and (completing or "Body" in params):  # PutObject or the complete call
            params["IfNoneMatch"] = "*"

    def _after_call(
        self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any
    ) -> None:
        token = context.get("cacheness_token")
        if token is None or getattr(http_response, "status_code", 500) >= 300:
            return
        with self._hook_lock:
            if "UploadId" in parsed and "ETag" not in parsed:
                self._upload_tokens[parsed["UploadId"]] = token
            else:
                self._results[token] = parsed

    @contextlib.contextmanager
    def _tracked(self, exclusive: bool) -> Iterator[_Tracked]:
        """Follow one upload or copy through the botocore hooks, by a token of its own.

        The token rides in the request's metadata (the hooks take it out before the
        request is sent); with ``exclusive`` the hooks add ``If-None-Match: *`` to its
        PutObject or CompleteMultipartUpload. Once the block ends, the response the
        hooks kept (``ETag``, ``VersionId``) is in ``result`` and nothing of the token
        is left behind, whether the transfer succeeded or not.
        """
        tracked = _Tracked(secrets.token_hex(12))
        if exclusive:
            with self._hook_lock:
                self._exclusive_tokens.add(tracked.token)
        try:
            yield tracked
        finally:
            with self._hook_lock:
                self._exclusive_tokens.discard(tracked.token)
                tracked.result = self._results.pop(tracked.token, {})
                for upload_id in [k for k, v in self._upload_tokens.items() if v == tracked.token]:
                    del self._upload_tokens[upload_id]

    # -- primitives ------------------------------------------------------------------------

    def open_write(self, name: str, *, exclusive: bool = False) -> BlobWriter:
        """Start writing ``name``; the bytes are spooled and uploaded on commit.

        The bucket is checked first (once per backend), so a wrong bucket or a dead
        endpoint fails before anything is spooled.
        """
        ref = self.ref_for(name)
        self._ensure_bucket()
        return _S3Writer(self, name, ref, exclusive)

    def _upload(
        self,
        source: IO[bytes],
        ref: str,
        size: int,
        content_hash: str,
        exclusive: bool,
        *,
        retried: bool = False,
    ) -> BlobInfo:
        """Upload ``source`` (seekable, ``size`` bytes) as ``ref`` with its hash as metadata."""
        try:
            return self._upload_once(source, ref, size, content_hash, exclusive)
        except _BucketRecreatedError:
            if retried:
                raise
            return self._upload(source, ref, size, content_hash, exclusive, retried=True)

    def _upload_once(
        self, source: IO[bytes], ref: str, size: int, content_hash: str, exclusive: bool
    ) -> BlobInfo:
        self._ensure_bucket()
        use_header = exclusive and self.conditional_writes != "check"
        if exclusive and not use_header and self.exists(ref):
            raise BlobExistsError(f"blob {ref!r} already exists (exclusive write)")
        try:
            with self._tracked(use_header) as tracked:
                metadata = {HASH_METADATA_KEY: content_hash, _TOKEN_KEY: tracked.token}
                source.seek(0)
                with self._call("upload", ref, exclusive=exclusive):
                    if size < self.multipart_threshold:
                        self._client.put_object(
                            Bucket=self.bucket,
                            Key=self._key(ref),
                            Body=source,
                            Metadata=metadata,
                            **self.write_args,
                        )
                    else:
                        self._client.upload_fileobj(
                            source,
                            self.bucket,
                            self._key(ref),
                            ExtraArgs={"Metadata": metadata, **self.write_args},
                            Config=self._transfer_config,
                        )
        except StorageError as exc:
            if not (use_header and self.conditional_writes == "auto" and _not_implemented(exc)):
                raise
            log.info("%s ignores If-None-Match; exclusive writes use a HEAD check", self.endpoint)
            self.conditional_writes = "check"
            return self._upload_once(source, ref, size, content_hash, exclusive)
        return tracked.blob_info(ref, size, content_hash)

    def write_bytes(self, name: str, data: BytesLike, *, exclusive: bool = False) -> BlobInfo:
        """Upload ``data`` directly (no spool)."""
        view = data_view(data)
        ref = self.ref_for(name)
        source = io.BytesIO(data if isinstance(data, bytes) else view)  # bytes: not copied
        return self._upload(source, ref, view.nbytes, hash_bytes(view), exclusive)

    def write_from_file(
        self, name: str, path: str | os.PathLike[str], *, exclusive: bool = False
    ) -> BlobInfo:
        """Upload a local file: one pass to hash it, one (from the page cache) to upload.

        S3 takes object metadata before the bytes, so the hash must be known first;
        hashing runs at several GB/s, far above upload speed (see the docs page).
        """
        path = local_file(path)
        ref = self.ref_for(name)
        with open(path, "rb") as source:
            size = os.fstat(source.fileno()).st_size
            if size < self.multipart_threshold:
                data = source.read()
                return self._upload(io.BytesIO(data), ref, len(data), hash_bytes(data), exclusive)
            content_hash = hash_stream(source, CHUNK_SIZE)
            return self._upload(source, ref, size, content_hash, exclusive)

    def open_read(self, ref: str) -> BinaryIO:
        """Stream the object; the file is seekable (seeks become ranged GETs).

        Raises:
            BlobNotFoundError: no such object.
            BackendUnavailableError: the server cannot be reached.
        """
        key = self._key(ref)
        self._ensure_bucket()
        with self._call("read", ref):
            response = self._client.get_object(Bucket=self.bucket, Key=key)
        return io.BufferedReader(_S3Reader(self, ref, response), buffer_size=_MiB)

    def _ranged_body(self, ref: str, start: int, etag: str | None) -> Any:
        options: dict[str, Any] = {"Range": f"bytes={start}-"}
        if etag:
            options["IfMatch"] = etag
        with self._call("read", ref):
            return self._client.get_object(Bucket=self.bucket, Key=self._key(ref), **options)[
                "Body"
            ]

    def read_to_file(self, ref: str, path: str | os.PathLike[str]) -> None:
        """Download with boto3's managed (parallel, ranged, If-Match) transfer, atomically."""
        path = local_file(path, output=True)
        key = self._key(ref)
        self._ensure_bucket()
        with atomic_output(path) as sink, self._call("download", ref):
            self._client.download_fileobj(self.bucket, key, sink, Config=self._transfer_config)

    def stat(self, ref: str) -> BlobInfo:
        """Describe the object from one HEAD request."""
        key = self._key(ref)
        self._ensure_bucket()
        with self._call("stat", ref):
            head = self._client.head_object(Bucket=self.bucket, Key=key)
        return BlobInfo(
            ref=ref,
            size=int(head["ContentLength"]),
            content_hash=head.get("Metadata", {}).get(HASH_METADATA_KEY, ""),
            etag=_etag(head.get("ETag")),
            version_id=head.get("VersionId"),
            modified_at=head.get("LastModified"),
        )

    def exists(self, ref: str) -> bool:
        """Return True when the object exists (one HEAD request)."""
        try:
            self.stat(ref)
        except BlobNotFoundError:
            return False
        return True

    def delete(self, ref: str) -> bool:
        """Delete the object in one request; True even when it did not exist.

        S3 answers a DeleteObject of an absent key as one of a present key; asking first
        would cost a HEAD request and still race with other writers
        (:attr:`exact_delete_counts` is False).
        """
        key = self._key(ref)
        self._ensure_bucket()
        try:
            with self._call("delete", ref):
                self._client.delete_object(Bucket=self.bucket, Key=key)
        except _BucketRecreatedError:
            pass  # the bucket is new and empty: the object is gone either way
        return True

    def delete_many(self, refs: Iterable[str]) -> int:
        """Delete with DeleteObjects, 1,000 keys per request; return the keys deleted.

        S3 reports absent keys as deleted too, so the count includes them.

        Raises:
            StorageError: some keys could not be deleted (after all batches ran).
        """
        refs = ref_list(refs)
        keys = [self._key(ref) for ref in dict.fromkeys(refs)]
        if not keys:
            return 0
        self._ensure_bucket()
        deleted = 0
        failures: list[str] = []
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            what = f"{len(batch)} object(s) (first: {batch[0]!r}) in bucket {self.bucket!r}"
            try:
                with self._call("delete", what=what):
                    response = self._client.delete_objects(
                        Bucket=self.bucket,
                        Delete={"Objects": [{"Key": key} for key in batch], "Quiet": False},
                    )
            except _BucketRecreatedError:
                return deleted  # the bucket is new and empty: nothing left to delete
            deleted += len(response.get("Deleted", []))
            failures += [
                f"{error.get('Key')}: {error.get('Code')}" for error in response.get("Errors", [])
            ]
        if failures:
            raise StorageError(
                f"deleted {deleted} objects but {len(failures)} failed "
                f"(first: {', '.join(failures[:3])})"
            )
        return deleted

    def iter_refs(self, prefix: str = "") -> Iterator[str]:
        """List the references under the backend's key prefix starting with ``prefix``."""
        prefix = ref_prefix(prefix)
        self._ensure_bucket()
        options: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix + prefix}
        while True:
            try:
                with self._call("list"):
                    page = self._client.list_objects_v2(**options)
            except _BucketRecreatedError:
                return  # the bucket is new and empty
            for item in page.get("Contents", []):
                ref = item["Key"][len(self.prefix) :]
                try:
                    yield validate_name(ref, "blob reference")
                except ValueError:
                    log.debug("skipping S3 key %r: not a valid blob reference", item["Key"])
            if not page.get("IsTruncated"):
                return
            options["ContinuationToken"] = page["NextContinuationToken"]

    def cleanup_temp_files(self, older_than: float = 3600.0, *, dry_run: bool = False) -> int:
        """Abort multipart uploads under the prefix that were never completed.

        A writer killed during a multipart upload leaves one behind: its parts are
        invisible to listings but stored (and billed) until aborted. Uploads started
        less than ``older_than`` seconds ago may be in progress and are left alone;
        ``dry_run`` counts without aborting. Returns how many were (or would be) aborted.
        """
        check_seconds(older_than, "older_than")
        self._ensure_bucket()
        deadline = datetime.now(UTC) - timedelta(seconds=older_than)
        options: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix}
        found = 0
        while True:
            try:
                with self._call("list the multipart uploads of"):
                    page = self._client.list_multipart_uploads(**options)
            except _BucketRecreatedError:
                return found  # the bucket is new and empty
            for upload in page.get("Uploads", []):
                if upload["Initiated"] > deadline:
                    continue
                if dry_run:
                    found += 1
                    continue
                key = upload["Key"]
                with contextlib.suppress(BlobNotFoundError):  # completed or aborted meanwhile
                    with self._call("abort the multipart upload of", key[len(self.prefix) :]):
                        self._client.abort_multipart_upload(
                            Bucket=self.bucket, Key=key, UploadId=upload["UploadId"]
                        )
                    found += 1
                    log.info("aborted abandoned multipart upload of s3://%s/%s", self.bucket, key)
            if not page.get("IsTruncated"):
                return found
            options["KeyMarker"] = page["NextKeyMarker"]
            options["UploadIdMarker"] = page["NextUploadIdMarker"]

    # -- server-side operations --------------------------------------------------------------

    def copy(self, ref: str, new_name: str) -> BlobInfo:
        """Copy on the server: CopyObject, or part by part above ``copy_multipart_threshold``."""
        source = self.stat(ref)
        new_ref = self.ref_for(new_name)
        if source.size <= self.copy_multipart_threshold:
            return self._copy_object(self, ref, source, new_ref)
        copy_source = {"Bucket": self.bucket, "Key": self._key(ref)}
        condition = {"CopySourceIfMatch": f'"{source.etag}"'} if source.etag else {}
        with self._tracked(exclusive=False) as tracked, self._call("copy", ref):
            metadata = {_TOKEN_KEY: tracked.token}
            if source.content_hash:
                metadata[HASH_METADATA_KEY] = source.content_hash
            self._client.copy(
                copy_source,
                self.bucket,
                self._key(new_ref),
                ExtraArgs={
                    "Metadata": metadata,
                    "MetadataDirective": "REPLACE",
                    **self.write_args,
                    **condition,
                },
                Config=self._copy_config,
            )
        return tracked.blob_info(new_ref, source.size, source.content_hash)

    def copy_from_server_side(
        self, source: BlobBackend, ref: str, new_name: str
    ) -> BlobInfo | None:
        """CopyObject from another S3 backend on the same endpoint (any bucket or prefix).

        Objects above ``copy_multipart_threshold`` are left to the caller (None), as are
        backends on other endpoints.
        """
        if not isinstance(source, S3BlobBackend) or source.endpoint != self.endpoint:
            return None
        info = source.stat(ref)
        if info.size > self.copy_multipart_threshold:
            return None
        self._ensure_bucket()
        return self._copy_object(source, ref, info, self.ref_for(new_name))

    def _copy_object(
        self, source: S3BlobBackend, ref: str, info: BlobInfo, new_ref: str
    ) -> BlobInfo:
        """One CopyObject of ``source``'s ``ref`` (described by ``info``) to ``new_ref`` here,
        on condition that the source object is still the one ``info`` describes."""
        condition = {"CopySourceIfMatch": f'"{info.etag}"'} if info.etag else {}
        with self._call("copy", ref):
            response = self._client.copy_object(
                Bucket=self.bucket,
                Key=self._key(new_ref),
                CopySource={"Bucket": source.bucket, "Key": source._key(ref)},
                MetadataDirective="COPY",
                **self._copy_args(),
                **condition,
            )
        return BlobInfo(
            ref=new_ref,
            size=info.size,
            content_hash=info.content_hash,
            etag=_etag(response.get("CopyObjectResult", {}).get("ETag")),
            version_id=response.get("VersionId"),
        )

    def _copy_args(self) -> dict[str, str]:
        """The write settings a CopyObject does not carry over from its source itself."""
        headers = ("ContentType", "CacheControl")  # copied with MetadataDirective=COPY
        return {name: value for name, value in self.write_args.items() if name not in headers}

    def presigned_url(self, ref: str, expires_in: int = 3600) -> str:
        """Return a URL that lets anyone GET the blob for ``expires_in`` seconds.

        Raises:
            ConfigError: ``expires_in`` outside 1 s to 7 days.
        """
        if not is_int(expires_in) or not 1 <= expires_in <= 7 * 24 * 3600:
            raise ConfigError(
                f"expires_in must be an int of seconds, 1 s to 7 days, got {expires_in!r}"
            )
        return str(
            self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._key(ref)},
                ExpiresIn=expires_in,
            )
        )

    # -- cost and health ----------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Return what this backend has cost so far: HTTP requests and bytes.

        One count per HTTP request sent, retries included (S3 bills each):
        ``requests`` (all), ``put_requests``, ``get_requests``, ``head_requests``
        (objects and the bucket), ``list_requests``, ``delete_requests``,
        ``copy_requests``, ``multipart_parts`` (``UploadPart``/``UploadPartCopy``),
        ``multipart_requests`` (create, complete, abort), ``other_requests``;
        ``retries`` (requests that were a retry), ``failed_requests`` (no answer or a
        5xx); ``bytes_out`` (request bodies sent) and ``bytes_in`` (response bodies, as
        announced by the server). :meth:`requests_by_operation` has the API names.

        Example:
            >>> import boto3
            >>> client = boto3.client("s3", region_name="us-east-1",
            ...     aws_access_key_id="x", aws_secret_access_key="x")
            >>> S3BlobBackend("bucket", client=client).stats()["requests"]
            0
        """
        return self._requests.snapshot()

    def requests_by_operation(self) -> dict[str, int]:
        """Return the HTTP requests sent so far by S3 API operation (``PutObject``...)."""
        return self._requests.by_operation()

    def reset_stats(self) -> None:
        """Set the request and byte counts back to zero."""
        self._requests.reset()

    def ping(self) -> None:
        """Check that the bucket answers (one ``HeadBucket``); raise if it does not."""
        with self._call("check"):
            self._client.head_bucket(Bucket=self.bucket)

    def close(self) -> None:
        """Close the client's connection pool."""
        closer = getattr(self._client, "close", None)
        if closer is not None:
            closer()

    def __repr__(self) -> str:
        return (
            f"<S3BlobBackend s3://{self.bucket}/{self.prefix} at {self.endpoint} "
            f"shard_chars={self.shard_chars}>"
        )


class _Mapped(NamedTuple):
    """What :meth:`S3BlobBackend._translate` made of a failure."""

    error: BaseException
    """The error to raise."""
    cause: BaseException
    """The error that really happened (boto's wrappers looked through)."""
    reached: bool | None
    """The server answered (True), could not be reached (False), or neither (None)."""
    bucket_gone: bool = False
    """The server said the bucket does not exist."""


class _Tracked:
    """One upload or copy followed by the botocore hooks (see ``S3BlobBackend._tracked``)."""

    __slots__ = ("result", "token")

    def __init__(self, token: str) -> None:
        self.token = token
        self.result: dict[str, Any] = {}

    def blob_info(self, ref: str, size: int, content_hash: str) -> BlobInfo:
        """The blob written, with the ETag and version id the server gave it."""
        return BlobInfo(
            ref=ref,
            size=size,
            content_hash=content_hash,
            etag=_etag(self.result.get("ETag")),
            version_id=self.result.get("VersionId"),
        )


def _alias(old: str, value: str | None, new: str, current: str | None) -> str | None:
    """Return the option ``new`` given under its seeds' spelling ``old`` (or ``current``)."""
    if value is None:
        return current
    if current is not None and current != value:
        raise ConfigError(f"{old}= is the older spelling of {new}=; pass only {new}")
    return value


_SSE_CHOICES: Final = ("AES256", "aws:kms")


def _write_args(
    sse: object,
    kms_key_id: object,
    storage_class: object,
    content_type: object,
    cache_control: object,
) -> dict[str, str]:
    """Return the PutObject arguments of the write settings (checked: ``ConfigError``)."""
    if sse is not None:
        check_choice("sse", sse, _SSE_CHOICES)
    if kms_key_id is not None and sse != "aws:kms":
        raise ConfigError(f"kms_key_id needs sse='aws:kms' (got sse={sse!r}); pass both")
    settings = (
        ("sse", "ServerSideEncryption", sse),
        ("kms_key_id", "SSEKMSKeyId", kms_key_id),
        ("storage_class", "StorageClass", storage_class),
        ("content_type", "ContentType", content_type),
        ("cache_control", "CacheControl", cache_control),
    )
    args: dict[str, str] = {}
    for option, argument, value in settings:
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{option} must be a non-empty str, got {value!r}")
        args[argument] = value
    return args


def _check_options(
    bucket: object,
    *,
    region: str | None,
    region_name: str | None,
    choices: dict[str, tuple[object, tuple[str, ...]]],
    sizes: dict[str, object],
    counts: dict[str, object],
) -> None:
    """Refuse options out of range before anything is imported or connected."""
    if not isinstance(bucket, str) or not bucket or "/" in bucket:
        raise ConfigError(f"bucket must be a bucket name without '/', got {bucket!r}")
    if region and region_name and region != region_name:
        raise ConfigError(f"region={region!r} and region_name={region_name!r} disagree")
    for option, (value, allowed) in choices.items():
        check_choice(option, value, allowed)
    for option, value in sizes.items():
        check_int(option, value, _MIN_PART, unit="bytes")
    if cast(int, sizes["copy_multipart_threshold"]) > _MAX_COPY_PART:
        raise ConfigError("copy_multipart_threshold cannot exceed 5 GiB (the CopyObject limit)")
    for option, value in counts.items():
        check_int(option, value, 1)


def _error_types() -> tuple[Any, tuple[type[BaseException], ...]]:
    """botocore's exceptions module, and the errors that mean "the server was not reached"."""
    exceptions = import_optional("botocore.exceptions", extra="s3", purpose="the s3 blob backend")
    urllib3_exceptions = import_optional("urllib3.exceptions", extra="s3")
    return exceptions, (
        exceptions.ConnectionError,
        exceptions.HTTPClientError,
        urllib3_exceptions.HTTPError,
        ConnectionError,
        TimeoutError,
    )


def _make_client(
    endpoint_url: str | None,
    *,
    credentials: dict[str, str | None],
    retries: dict[str, Any],
    connect_timeout: float,
    read_timeout: float,
    max_pool_connections: int,
    checksum: str,
    addressing_style: str,
    use_ssl: bool = True,
) -> Any:
    """A boto3 S3 client with our retry, timeout, pool and checksum settings."""
    boto3 = import_optional("boto3", extra="s3", purpose="the s3 blob backend")
    config_module = import_optional("botocore.config", extra="s3")
    session = boto3.session.Session(**credentials)
    config = config_module.Config(
        retries=retries,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=max_pool_connections,
        request_checksum_calculation=checksum,
        response_checksum_validation=checksum,
        s3={"addressing_style": addressing_style},
    )
    return session.client("s3", endpoint_url=endpoint_url, config=config, use_ssl=use_ssl)


def _transfer_configs(
    multipart_threshold: int,
    multipart_chunksize: int,
    copy_multipart_threshold: int,
    max_concurrency: int,
) -> tuple[Any, Any]:
    """boto3's transfer settings for uploads/downloads, and for server-side copies."""
    transfer = import_optional("boto3.s3.transfer", extra="s3", purpose="the s3 blob backend")
    copy_chunk = multipart_chunksize
    if copy_multipart_threshold >= _GiB:
        copy_chunk = max(multipart_chunksize, 64 * _MiB)
    return (
        transfer.TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            max_concurrency=max_concurrency,
            use_threads=True,
        ),
        transfer.TransferConfig(
            multipart_threshold=copy_multipart_threshold,
            multipart_chunksize=copy_chunk,
            max_concurrency=max_concurrency,
            use_threads=True,
        ),
    )


class _BucketRecreatedError(StorageError):
    """The bucket had disappeared and was created again (``create_bucket=True``).

    Raised to the backend's own methods, which retry a write once and treat a listing
    or a batch delete as finding nothing; its message tells the truth if it escapes.
    """


def _etag(value: Any) -> str | None:
    return str(value).strip('"') if value else None


def _status(exc: BaseException) -> int:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return 0
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _not_implemented(exc: BaseException) -> bool:
    cause = exc.__cause__
    response = getattr(cause, "response", None)
    if not isinstance(response, dict):
        return False
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return bool(status == 501 or response.get("Error", {}).get("Code") == "NotImplemented")


def _normalise_prefix(prefix: str) -> str:
    if not isinstance(prefix, str):
        raise ConfigError(f"prefix must be a str, got {type(prefix).__name__}")
    stripped = prefix.strip("/")
    if not stripped:
        return ""
    try:
        validate_name(stripped, "key prefix")
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return stripped + "/"

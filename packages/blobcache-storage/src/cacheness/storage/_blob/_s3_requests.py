"""What an S3 backend costs: HTTP requests by operation, retries, bytes in and out (private).

Counted by botocore event hooks on the backend's client, one count per HTTP request
actually sent (a retried request counts again, as S3 bills it; a multipart upload
counts its create, every part and its complete), so the figures include boto3's
managed transfers. Read them from :meth:`S3BlobBackend.stats`; with an OpenTelemetry
meter provider they are also the metrics ``cacheness.storage.s3.requests``,
``cacheness.storage.s3.bytes`` and ``cacheness.storage.s3.retries``.

Example:
    >>> counter = S3RequestCounter("bucket")
    >>> counter.category("UploadPart"), counter.category("ListObjectsV2")
    ('multipart_parts', 'list_requests')
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from cacheness.storage._telemetry import instrumentation, record_retry

CATEGORIES: dict[str, str] = {
    "PutObject": "put_requests",
    "GetObject": "get_requests",
    "HeadObject": "head_requests",
    "HeadBucket": "head_requests",
    "ListObjectsV2": "list_requests",
    "ListObjects": "list_requests",
    "ListMultipartUploads": "list_requests",
    "ListParts": "list_requests",
    "DeleteObject": "delete_requests",
    "DeleteObjects": "delete_requests",
    "CopyObject": "copy_requests",
    "UploadPart": "multipart_parts",
    "UploadPartCopy": "multipart_parts",
    "CreateMultipartUpload": "multipart_requests",
    "CompleteMultipartUpload": "multipart_requests",
    "AbortMultipartUpload": "multipart_requests",
}
"""S3 API operation -> the request count it adds to (anything else: ``other_requests``)."""

STAT_NAMES = (
    "requests",
    "put_requests",
    "get_requests",
    "head_requests",
    "list_requests",
    "delete_requests",
    "copy_requests",
    "multipart_parts",
    "multipart_requests",
    "other_requests",
    "retries",
    "failed_requests",
    "bytes_out",
    "bytes_in",
)
"""The keys of :meth:`S3RequestCounter.snapshot`, in order."""


class S3RequestCounter:
    """Counts the HTTP requests one botocore client sends (thread-safe).

    Args:
        bucket: the bucket's name, an attribute of the metrics.
    """

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self._lock = threading.Lock()
        self._stats: Counter[str] = Counter()
        self._operations: Counter[str] = Counter()

    @staticmethod
    def category(operation: str) -> str:
        """The request count an S3 API operation adds to."""
        return CATEGORIES.get(operation, "other_requests")

    def attach(self, client: Any) -> None:
        """Register the hooks on ``client``'s events (every S3 operation)."""
        events = client.meta.events
        events.register("before-send.s3", self._before_send)
        events.register("response-received.s3", self._response_received)

    def _before_send(self, request: Any, event_name: str = "", **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        headers = getattr(request, "headers", None) or {}
        sent = _length(headers.get("X-Amz-Decoded-Content-Length"))
        if sent is None:
            sent = _length(headers.get("Content-Length")) or 0
        context = getattr(request, "context", None) or {}
        attempt = int(context.get("retries", {}).get("attempt", 1))
        category = self.category(operation)
        with self._lock:
            self._operations[operation] += 1
            self._stats["requests"] += 1
            self._stats[category] += 1
            self._stats["bytes_out"] += sent
            if attempt > 1:
                self._stats["retries"] += 1
        tel = instrumentation()
        if tel is None:
            return
        attributes = {"s3.operation": operation, "s3.bucket": self.bucket}
        tel.add("cacheness.storage.s3.requests", 1, {**attributes, "s3.request_class": category})
        if sent:
            tel.add("cacheness.storage.s3.bytes", sent, {**attributes, "direction": "out"}, "By")
        if attempt > 1:
            tel.add("cacheness.storage.s3.retries", 1, attributes)
            record_retry(attempt, {"s3.operation": operation})

    def _response_received(
        self,
        response_dict: dict[str, Any] | None = None,
        exception: BaseException | None = None,
        event_name: str = "",
        **_: Any,
    ) -> None:
        received = 0
        failed = exception is not None
        if response_dict is not None:
            headers = response_dict.get("headers") or {}
            received = _length(headers.get("content-length")) or 0
            failed = failed or int(response_dict.get("status_code", 200)) >= 500
        with self._lock:
            self._stats["bytes_in"] += received
            if failed:
                self._stats["failed_requests"] += 1
        tel = instrumentation()
        if tel is None or not received:
            return
        operation = event_name.rsplit(".", 1)[-1]
        attributes = {"s3.operation": operation, "s3.bucket": self.bucket, "direction": "in"}
        tel.add("cacheness.storage.s3.bytes", received, attributes, "By")

    def snapshot(self) -> dict[str, int]:
        """The counts so far (keys: :data:`STAT_NAMES`)."""
        with self._lock:
            return {name: self._stats[name] for name in STAT_NAMES}

    def by_operation(self) -> dict[str, int]:
        """Requests sent so far by S3 API operation name (``PutObject``, ``UploadPart``...)."""
        with self._lock:
            return dict(sorted(self._operations.items()))

    def reset(self) -> None:
        """Set every count back to zero."""
        with self._lock:
            self._stats.clear()
            self._operations.clear()


def _length(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None

"""Blob backends: where the bytes live.

* :class:`~cacheness.storage.blob.base.BlobBackend`: the streaming ABC, with
  :class:`~cacheness.storage.blob.base.BlobWriter` and
  :class:`~cacheness.storage.blob.base.BlobInfo`.
* ``filesystem``, ``memory``, ``s3``: stores; ``tiered`` (a local cache in front of a
  remote) and ``failover`` (primary + fallback): compositions of stores.

Backends are usually created by name through :mod:`cacheness.storage.registry`
(``get_blob_backend("s3", bucket=...)``); boto3 is imported only when an S3 backend is
created.

Example:
    >>> from cacheness.storage.blob import MemoryBlobBackend
    >>> MemoryBlobBackend().write_bytes("k", b"v").content_hash
    'beae59b601a6a437f7042be43fb80714'
"""

from __future__ import annotations

from cacheness.storage.blob.base import BlobBackend, BlobInfo, BlobWriter, Scope
from cacheness.storage.blob.failover import FailoverBlobBackend
from cacheness.storage.blob.filesystem import FilesystemBlobBackend
from cacheness.storage.blob.memory import MemoryBlobBackend
from cacheness.storage.blob.s3 import S3BlobBackend
from cacheness.storage.blob.tiered import TieredBlobBackend

__all__ = [
    "BlobBackend",
    "BlobInfo",
    "BlobWriter",
    "FailoverBlobBackend",
    "FilesystemBlobBackend",
    "MemoryBlobBackend",
    "S3BlobBackend",
    "Scope",
    "TieredBlobBackend",
]

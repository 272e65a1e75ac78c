"""Which metadata backends may index which blob backends.

An index must see every blob it points at, and every process that writes blobs must
write its entries into the same index:

* an index narrower than the blobs (SQLite, JSON or memory over S3) lets two machines keep
  separate indexes over one bucket: each sees the other's blobs as orphans, and a repair on
  one deletes the other's data;
* a shared index over process-local blobs (PostgreSQL over memory) advertises entries that
  other machines cannot read.

=======================  ==========  ======  =====
metadata \\ blob          filesystem  memory  s3
=======================  ==========  ======  =====
sqlite / json            yes         yes     refused
postgresql               yes         no      yes
memory                   yes         yes     refused
=======================  ==========  ======  =====

A shared filesystem (NFS) under a PostgreSQL index is allowed: the filesystem backend
cannot know whether its directory is shared. ``allow_unsafe_pairing=True`` on
``BlobStore`` skips the check for users who know why (e.g. a throwaway local index over a
read-only bucket).

Example:
    >>> from cacheness.storage import pairing_problem
    >>> pairing_problem("sqlite", "host", "filesystem", "host") is None
    True
    >>> print(pairing_problem("sqlite", "host", "s3", "shared"))  # doctest: +ELLIPSIS
    the sqlite metadata backend keeps a host-local index, but s3 blobs are shared...
"""

from __future__ import annotations

from typing import Literal, TypeAlias

Scope: TypeAlias = Literal["process", "host", "shared"]
"""Who can share a backend: one process, the processes of one host, or many hosts."""

_WHO = {"process": "process-local", "host": "host-local", "shared": "shared"}


def pairing_problem(
    metadata_name: str, metadata_scope: Scope, blob_name: str, blob_scope: Scope
) -> str | None:
    """Return why a metadata backend must not index a blob backend, or None if it may.

    Args:
        metadata_name: the metadata backend's name, for the message.
        metadata_scope: its ``scope`` class attribute.
        blob_name: the blob backend's name, for the message.
        blob_scope: its ``scope``.
    """
    if blob_scope == "shared" and metadata_scope != "shared":
        return (
            f"the {metadata_name} metadata backend keeps a {_WHO[metadata_scope]} index, but "
            f"{blob_name} blobs are shared: other machines writing to the same place would "
            "keep their own indexes, and each would treat the other's blobs as orphans. "
            "Use the postgresql metadata backend for a shared store, or pass "
            "allow_unsafe_pairing=True if this index is the only writer"
        )
    if metadata_scope == "shared" and blob_scope == "process":
        return (
            f"the {metadata_name} metadata backend is shared, but {blob_name} blobs live in "
            "one process: other machines would see entries whose bytes they cannot read. "
            "Use filesystem or s3 blobs, or pass allow_unsafe_pairing=True"
        )
    return None

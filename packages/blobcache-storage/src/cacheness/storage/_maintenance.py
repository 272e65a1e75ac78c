"""``BlobStore`` maintenance: integrity checks, orphaned blobs, repair (private).

What interrupted writes and damage leave behind, found and removed with the index as the
authority: an entry whose bytes are missing or do not match it, a blob no entry points
at, the blob backend's temporary-file debris. :class:`~cacheness.storage.BlobStore`'s
``verify_integrity``, ``find_orphaned_blobs`` and ``repair`` are these functions.

Example:
    >>> from cacheness.storage import BlobStore
    >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
    >>> _ = store.put(b"x" * 10, key="k")
    >>> verify(store, store.metadata.query(), deep=True)
    []
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING

from cacheness.storage._blob._sharding import unsafe_ref
from cacheness.storage._blob_store import DELETE_CHUNK
from cacheness.storage._entry import Entry
from cacheness.storage._hashing import hash_bytes, hash_stream
from cacheness.storage._reports import IntegrityIssue, Problem, RepairReport
from cacheness.storage.errors import BlobNotFoundError, StorageError

if TYPE_CHECKING:
    from cacheness.storage._blob.base import BlobBackend
    from cacheness.storage._blob_store import BlobStore

log = logging.getLogger(__name__)


def verify(store: BlobStore, entries: Iterable[Entry], deep: bool) -> list[IntegrityIssue]:
    """Check each entry's bytes against it; return the problems found."""
    issues = []
    for entry in entries:
        issue = check_entry(store.blobs, entry, deep)
        if issue is not None:
            issues.append(issue)
    return issues


def check_entry(blobs: BlobBackend, entry: Entry, deep: bool) -> IntegrityIssue | None:
    """What is wrong with ``entry``'s stored bytes, or None."""

    def issue(problem: Problem, detail: str) -> IntegrityIssue:
        return IntegrityIssue(
            key=entry.key, blob_ref=entry.blob_ref, problem=problem, detail=detail
        )

    if entry.inline is not None:
        if len(entry.inline) != entry.size or hash_bytes(entry.inline) != entry.content_hash:
            return issue("inline_mismatch", "inline bytes do not match size and hash")
        return None
    if unsafe_ref(entry.blob_ref):
        return issue(
            "invalid_ref",
            f"blob reference {entry.blob_ref!r} is one no blob can have: the index was "
            "edited or damaged",
        )
    try:
        info = blobs.stat(entry.blob_ref)
    except BlobNotFoundError:
        return issue("missing_blob", f"blob {entry.blob_ref!r} does not exist")
    except StorageError as exc:
        return issue("unreadable", f"stat of blob {entry.blob_ref!r} failed: {exc}")
    if info.size != entry.size:
        return issue(
            "size_mismatch", f"blob holds {info.size} bytes, the entry records {entry.size}"
        )
    # What the backend reports without downloading (S3: one HEAD) must agree too.
    if entry.etag and info.etag and info.etag != entry.etag:
        return issue(
            "etag_mismatch",
            f"blob's ETag is {info.etag}, the entry records {entry.etag}: it was replaced",
        )
    if info.content_hash and info.content_hash != entry.content_hash:
        return issue(
            "hash_mismatch",
            f"blob's stored hash is {info.content_hash}, the entry records {entry.content_hash}",
        )
    if not deep:
        return None
    try:
        with blobs.open_read(entry.blob_ref) as source:
            actual = hash_stream(source)
    except (StorageError, OSError) as exc:
        return issue("unreadable", f"reading blob {entry.blob_ref!r} failed: {exc}")
    if actual != entry.content_hash:
        return issue(
            "hash_mismatch", f"blob hashes to {actual}, the entry records {entry.content_hash}"
        )
    return None


def find_orphans(store: BlobStore, min_age_seconds: float) -> list[str]:
    """References of blobs no entry points at, older than ``min_age_seconds``."""
    referenced = {entry.blob_ref for entry in store.metadata.query({"blob_ref": {"$ne": ""}})}
    cutoff = store._now() - timedelta(seconds=min_age_seconds)
    orphans = []
    for ref in store.blobs.iter_refs():
        if ref in referenced:
            continue
        if min_age_seconds > 0:
            try:
                modified = store.blobs.stat(ref).modified_at
            except BlobNotFoundError:
                continue  # deleted meanwhile
            if modified is None or modified > cutoff:
                continue
        orphans.append(ref)
    return orphans


def repair(store: BlobStore, dry_run: bool, orphan_min_age_seconds: float) -> RepairReport:
    """Find (and unless ``dry_run``, remove) damaged entries, orphans and write debris."""
    # the store's own methods: a subclass that refines them refines the repair too
    issues = store.verify_integrity()
    orphans = store.find_orphaned_blobs(min_age_seconds=orphan_min_age_seconds)
    damaged = [issue for issue in issues if issue.problem != "unreadable"]
    report = RepairReport(
        dry_run=dry_run,
        issues=issues,
        entries_removed=[issue.key for issue in damaged],
        orphans_removed=orphans,
    )
    if dry_run:
        report.temp_files_removed = _cleanup_temp_files(store.blobs, orphan_min_age_seconds, True)
        return report
    removed: list[Entry] = []
    for start in range(0, len(damaged), DELETE_CHUNK):
        # only the entry as checked: a key rewritten meanwhile points at a new blob
        chunk = damaged[start : start + DELETE_CHUNK]
        same = [{"key": issue.key, "blob_ref": issue.blob_ref} for issue in chunk]
        removed += store.metadata.delete_where({"$or": same})
    # A damaged entry may point at the blob of a healthy one (an edited index): its
    # blob goes only if no entry refers to it any more.
    store._release(removed, unless_referenced=True)
    report.entries_removed = [entry.key for entry in removed]
    if orphans:
        store._delete_blobs(orphans)
    report.temp_files_removed = _cleanup_temp_files(store.blobs, orphan_min_age_seconds, False)
    return report


def collect_garbage(store: BlobStore, dry_run: bool, min_age_seconds: float) -> RepairReport:
    """Remove (or with ``dry_run`` count) orphaned blobs and write debris; no entry is read."""
    orphans = store.find_orphaned_blobs(min_age_seconds=min_age_seconds)
    if orphans and not dry_run:
        store._delete_blobs(orphans)
    temp = _cleanup_temp_files(store.blobs, min_age_seconds, dry_run)
    return RepairReport(dry_run=dry_run, orphans_removed=orphans, temp_files_removed=temp)


def _cleanup_temp_files(blobs: BlobBackend, older_than: float, dry_run: bool) -> int:
    """The blob backend's clean-up of interrupted writes, as part of :func:`repair`.

    A refusal (e.g. a bucket policy without ``s3:ListBucketMultipartUploads``) or an
    outage here is logged and counted as nothing found: the rest of the repair stands.
    """
    try:
        return blobs.cleanup_temp_files(older_than, dry_run=dry_run)
    except StorageError as exc:
        log.warning("repair: could not clean up interrupted writes in %r: %s", blobs, exc)
        return 0

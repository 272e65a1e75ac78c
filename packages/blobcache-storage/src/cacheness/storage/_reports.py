"""Records returned by ``BlobStore`` maintenance: integrity issues and repair reports.

Example:
    >>> from cacheness.storage import IntegrityIssue, RepairReport
    >>> issue = IntegrityIssue(key="model", blob_ref="ab/abc", problem="missing_blob",
    ...                        detail="no blob ab/abc")
    >>> report = RepairReport(dry_run=True, issues=[issue], entries_removed=["model"])
    >>> report.ok
    False
"""

from __future__ import annotations

from typing import Literal, TypeAlias

import msgspec

Problem: TypeAlias = Literal[
    "missing_blob",
    "size_mismatch",
    "etag_mismatch",
    "hash_mismatch",
    "unreadable",
    "inline_mismatch",
    "invalid_ref",
]
"""What is wrong with an entry's stored bytes."""


class IntegrityIssue(msgspec.Struct, frozen=True, kw_only=True):
    """One entry whose stored bytes are missing or do not match the entry.

    Attributes:
        key: the entry's key.
        blob_ref: the blob it points at (``""`` for inline payloads).
        problem: ``missing_blob`` (also a symlink where the blob file should be),
            ``size_mismatch``, ``etag_mismatch`` (an S3 object was replaced),
            ``hash_mismatch``, ``inline_mismatch``, ``invalid_ref`` (a blob reference no
            blob can have, such as ``../../etc/passwd``: an edited index) - all removed
            by ``repair`` - or ``unreadable`` (the backend failed to read it: an outage, a
            permission, a symlinked directory; reported and kept).
        detail: a human-readable explanation.
    """

    key: str
    blob_ref: str
    problem: Problem
    detail: str


class RepairReport(msgspec.Struct, kw_only=True):
    """What ``BlobStore.repair`` found and did (or would do, with ``dry_run``).

    Attributes:
        dry_run: True when nothing was changed.
        issues: entries whose bytes are missing or corrupt.
        entries_removed: keys of those entries, removed (or to be removed): their data
            is lost either way, and keeping them would turn every read into an error.
        orphans_removed: blob references no entry points at, removed (or to be removed).
        temp_files_removed: debris of interrupted writes (temporary files) the blob
            backend removed (or would remove), older than the orphan age.
    """

    dry_run: bool
    issues: list[IntegrityIssue] = msgspec.field(default_factory=list)
    entries_removed: list[str] = msgspec.field(default_factory=list)
    orphans_removed: list[str] = msgspec.field(default_factory=list)
    temp_files_removed: int = 0

    @property
    def ok(self) -> bool:
        """True when there was nothing to repair."""
        return not (
            self.issues or self.entries_removed or self.orphans_removed or self.temp_files_removed
        )


class ResignReport(msgspec.Struct, kw_only=True):
    """What ``BlobStore.resign`` did, in counts of entries.

    Attributes:
        checked: entries looked at.
        resigned: entries signed with an older key (or unsigned and admitted by the
            ``unsigned`` policy), now signed with the current key.
        current: entries already signed with the current key.
        unsigned: unsigned entries left unsigned (the policy refuses them: executable
            formats under ``accept_data_only``, every one under ``reject``).
        invalid: entries whose signature no configured key verifies, left as they are
            (never re-signed: that would vouch for what an attacker wrote).
        deleted: of those and the refused unsigned ones, entries deleted
            (``delete_invalid_signatures=True``).
        keys: the current key's id.

    Example:
        >>> ResignReport(checked=2, resigned=1, current=1, keys="ab12cd34").resigned
        1
    """

    checked: int = 0
    resigned: int = 0
    current: int = 0
    unsigned: int = 0
    invalid: int = 0
    deleted: int = 0
    keys: str = ""

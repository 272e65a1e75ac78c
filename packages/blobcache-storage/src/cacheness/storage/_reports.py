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


TransferProblem: TypeAlias = Literal[
    "present",
    "conflict",
    "damaged",
    "missing",
    "oversized",
    "unsafe_name",
    "unexpected_member",
    "invalid_entry",
    "refused",
    "unreadable",
]
"""Why an entry (or an archive member) was not exported, imported or migrated."""


class TransferIssue(msgspec.Struct, frozen=True, kw_only=True):
    """One entry or archive member an export, import or migration did not carry over.

    Attributes:
        key: the entry's key (``""`` when a member belongs to no entry of the manifest).
        problem: ``present`` (the target holds the same bytes already: a resumed run),
            ``conflict`` (the target holds other bytes under the key; kept), ``damaged``
            (size or hash differ from the manifest: a flipped byte, a swapped member),
            ``missing`` (the manifest names a member the archive lacks, or the source
            lost the blob), ``oversized`` (a member larger than its manifest entry),
            ``unsafe_name`` (a member name that is not one the exporter writes, such as
            ``../../etc/passwd``, or a link), ``unexpected_member`` (a member no entry
            names, or one seen twice), ``invalid_entry`` (a manifest entry that is not a
            valid entry), ``refused`` (a pickled payload without a trusted signature), or
            ``unreadable`` (the source failed to read it).
        detail: a human-readable explanation.
        member: the archive member concerned, if any.
    """

    key: str
    problem: TransferProblem
    detail: str
    member: str = ""


class TransferReport(msgspec.Struct, kw_only=True):
    """What ``BlobStore.export``, ``BlobStore.import_`` or ``migrate`` did.

    Attributes:
        operation: ``"export"``, ``"import"`` or ``"migrate"``.
        entries: entries written (to the archive, or committed in the target).
        bytes: stored bytes of those entries (blob and inline payloads).
        skipped: entries left alone on purpose (already present, a kept conflict).
        damaged: entries and members refused: damaged, forged, unsafe or missing.
            Nothing of these was committed.

    Example:
        >>> report = TransferReport(operation="import", entries=3, bytes=120)
        >>> report.ok, report.entries
        (True, 3)
    """

    operation: Literal["export", "import", "migrate"]
    entries: int = 0
    bytes: int = 0
    skipped: list[TransferIssue] = msgspec.field(default_factory=list)
    damaged: list[TransferIssue] = msgspec.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was refused as damaged, forged, unsafe or missing."""
        return not self.damaged


class TransferProgress(msgspec.Struct, frozen=True, kw_only=True):
    """How far an export, import or migration is; passed to a ``progress`` callback.

    Called after each entry and while a large blob streams (about every 4 MiB).

    Attributes:
        operation: ``"export"``, ``"import"`` or ``"migrate"``.
        done: entries handled so far (written, skipped or refused).
        total: entries to handle (those of the manifest or of the filter).
        bytes_done: stored bytes handled so far.
        bytes_total: stored bytes to handle.
        key: the entry being handled.
    """

    operation: Literal["export", "import", "migrate"]
    done: int
    total: int
    bytes_done: int
    bytes_total: int
    key: str = ""


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

"""Export, import and migration of ``BlobStore`` entries (private).

Every entry that enters a store from outside (an archive, a dict, another store) goes
through one path: :func:`admit` decides whether it may enter at all (a pickled payload
needs trust), :func:`receive` streams its bytes into the target's blob backend through
the store's own write protocol while checking size and hash, and commits the entry only
when they match. A member that fails is reported and skipped; an interrupted run leaves
only complete entries, and a second run skips what the first committed.

Example:
    >>> from cacheness.storage import BlobStore
    >>> source = BlobStore(metadata_backend="memory", blob_backend="memory")
    >>> _ = source.put(b"x" * 10_000, key="big")
    >>> target = BlobStore(metadata_backend="memory", blob_backend="memory")
    >>> migrate(source, target).entries, target.get("big") == b"x" * 10_000
    (1, True)
"""

from __future__ import annotations

import builtins
import importlib.metadata
import io
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Literal, cast

import msgspec

from cacheness.storage._blob._io import CHUNK_SIZE
from cacheness.storage._blob.base import BlobInfo
from cacheness.storage._entry import Entry
from cacheness.storage._filters import Filter, compile_predicate
from cacheness.storage._handlers.base import FormatInfo
from cacheness.storage._hashing import ContentHasher, hash_bytes
from cacheness.storage._payload import SpoolSink
from cacheness.storage._portability.archive import (
    EMBED_LIMIT,
    ArchiveReader,
    ArchiveWriter,
    Compression,
    Manifest,
    ManifestEntry,
    Member,
    decode_entry,
    member_name,
    parse_manifest,
    raw_key,
    safe_member_name,
)
from cacheness.storage._portability.custom import Rows, rows_in, rows_out
from cacheness.storage._reports import (
    TransferIssue,
    TransferProblem,
    TransferProgress,
    TransferReport,
)
from cacheness.storage.errors import (
    BlobNotFoundError,
    ConfigError,
    EntryExistsError,
    IntegrityError,
    StorageError,
)

if TYPE_CHECKING:
    import os

    from cacheness.storage._blob_store import BlobStore, _Stored
    from cacheness.storage._custom import CustomMetadataBase

log = logging.getLogger(__name__)

OnConflict = Literal["skip", "overwrite", "error"]
Selection = Filter | Callable[[Entry], bool] | None
"""What export, import and migrate take as ``filter``: a filter mapping or a predicate."""
Progress = Callable[[TransferProgress], None]
_CONFLICTS = ("skip", "overwrite", "error")
_MAX_INLINE_MEMBER = 64 << 20
"""An archive's inline payload larger than this (64 MiB) is refused unread (oversized)."""
_CHECK_CHUNK = 1000


# ------------------------------------------------------------------------------ bookkeeping


@dataclass
class _Run:
    """A report under construction and the progress callback it feeds."""

    report: TransferReport
    progress: Progress | None
    total: int = 0
    bytes_total: int = 0
    done: int = 0
    bytes_done: int = 0

    def issue(
        self,
        key: str,
        problem: TransferProblem,
        detail: str,
        member: str = "",
        size: int = 0,
        *,
        count: bool = True,
    ) -> None:
        item = TransferIssue(key=key, problem=problem, detail=detail, member=member)
        if problem in ("present", "conflict"):
            self.report.skipped.append(item)
            log.debug("%s: skipped %r: %s", self.report.operation, key, detail)
        else:
            self.report.damaged.append(item)
            log.warning("%s: refused %r: %s", self.report.operation, key or member, detail)
        if count:
            self.step(key, size)

    def written(self, entry: Entry) -> None:
        self.report.entries += 1
        self.report.bytes += entry.size
        self.step(entry.key, entry.size)

    def step(self, key: str, size: int) -> None:
        self.done += 1
        self.bytes_done += size
        self.tell(key)

    def tell(self, key: str, extra: int = 0) -> None:
        if self.progress is not None:
            self.progress(
                TransferProgress(
                    operation=self.report.operation,
                    done=self.done,
                    total=self.total,
                    bytes_done=self.bytes_done + extra,
                    bytes_total=self.bytes_total,
                    key=key,
                )
            )


class _Counting(io.RawIOBase):
    """A reader that reports bytes passing through to the progress callback."""

    def __init__(self, source: IO[bytes], run: _Run, key: str) -> None:
        super().__init__()
        self._source = source
        self._run = run
        self._key = key
        self._seen = 0
        self._told = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._source.read(len(buffer))
        count = len(data)
        buffer[:count] = data
        self._seen += count
        if self._seen - self._told >= CHUNK_SIZE:
            self._told = self._seen
            self._run.tell(self._key, self._seen)
        return count


def _check_options(on_conflict: object, progress: object, filter: object) -> None:
    if on_conflict not in _CONFLICTS:
        raise ConfigError(
            f"on_conflict must be 'skip', 'overwrite' or 'error', got {on_conflict!r}"
        )
    if progress is not None and not callable(progress):
        raise ConfigError(
            f"progress must be a function taking a TransferProgress, got {progress!r}"
        )
    if filter is not None and not isinstance(filter, Mapping) and not callable(filter):
        raise ConfigError(
            "filter must be a filter mapping such as {'key': {'$prefix': 'a/'}} or a function "
            f"taking an Entry and returning a bool, got {filter!r}"
        )


def package_versions() -> dict[str, str]:
    """The installed versions of the two distributions (recorded in manifests)."""
    found = {}
    for name in ("blobcache-storage", "cacheness"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


# ------------------------------------------------------------------------------ admission


def admit(
    store: BlobStore, entry: Entry, *, trust_pickles: bool, vouched: bool = False
) -> str | None:
    """Why ``entry`` may not enter ``store`` from outside, or None when it may.

    The one gate of every imported or migrated entry. With signing on, the entry's
    signature (carried in the archive) is checked with this store's keys: a valid one is
    admitted (and re-signed with the current key on commit), an invalid one refused, an
    unsigned one judged by the store's ``unsigned`` policy (a format that runs code when
    loaded needs ``trust_pickles``). With signing off, a format that runs code is admitted
    only with ``trust_pickles``. ``vouched``: the source store checked it with its keys.
    """
    signer = store.signer
    executable = store._executable(entry)
    if signer is None:
        if executable and not (trust_pickles or vouched):
            return (
                "its format runs code when loaded (a pickle) and this store has no signing "
                "key to check it; import it only from an archive you trust, with "
                "trust_pickles=True"
            )
        return None
    verdict = "valid" if vouched else signer.check(entry)
    if verdict == "valid":
        return None
    if verdict == "invalid":
        return (
            "its signature does not match it or was made with a key this store lacks "
            "(forged or altered); configure the exporter's key to import it"
        )
    if trust_pickles or store.unsigned == "accept":
        return None
    if store.unsigned == "accept_data_only" and not executable:
        return None
    return (
        "it is unsigned and its format runs code when loaded; import it only from an "
        "archive you trust, with trust_pickles=True"
        if store.unsigned == "accept_data_only"
        else "it is unsigned and this store rejects unsigned entries (unsigned='reject')"
    )


def receive(
    store: BlobStore,
    entry: Entry,
    source: IO[bytes] | None,
    *,
    overwrite: bool,
    rows: builtins.list[CustomMetadataBase] | None = None,
) -> Entry:
    """Write ``entry``'s bytes from ``source`` into ``store`` and commit the entry.

    The bytes go through the store's write protocol: a fresh blob (or, content-addressed,
    the blob named by the hash), checked against the entry's size and hash before the
    entry is committed; on any failure nothing is committed and the blob is removed.
    ``source`` is None for inline entries.

    Raises:
        IntegrityError: the bytes do not match the entry (nothing committed).
        EntryExistsError: ``overwrite`` is False and the key exists.
    """
    from cacheness.storage._blob_store import _Stored

    fmt = FormatInfo.from_entry(entry)
    if entry.inline is not None:
        if len(entry.inline) != entry.size or hash_bytes(entry.inline) != entry.content_hash:
            raise IntegrityError("the inline bytes do not match the entry's size and hash")
        stored = _Stored(fmt, entry.size, entry.content_hash, inline=entry.inline)
    elif source is None:
        raise IntegrityError("the entry's bytes are missing")
    elif store.content_addressable:
        spool = SpoolSink()
        try:
            _copy_checked(source, spool, entry)
        except BaseException:
            spool.close()
            raise
        stored = _Stored(fmt, entry.size, entry.content_hash, spool=spool)
    else:
        writer = store.blobs.open_write(store._fresh_name())
        try:
            _copy_checked(source, writer, entry)
            blob = writer.commit()
        except BaseException:
            writer.abort()
            raise
        stored = _Stored(fmt, blob.size, entry.content_hash, blob=blob)
    return _commit(store, entry, stored, overwrite, rows)


def _commit(
    store: BlobStore,
    entry: Entry,
    stored: _Stored,
    overwrite: bool,
    rows: builtins.list[CustomMetadataBase] | None = None,
) -> Entry:
    with store._committing([stored]):
        blob = stored.blob
        placed = entry.replace(
            blob_ref=blob.ref if blob else "",
            etag=blob.etag if blob else None,
            version_id=blob.version_id if blob else None,
            inline=stored.inline,
            signature=None,  # signed again below for its new place, with the current key
        )
        store._sign(placed)
        if rows:  # the entry and its custom rows commit together
            replaced = store.metadata.put_custom(placed, rows, overwrite=overwrite)
        else:
            replaced = store.metadata.put(placed, overwrite=overwrite)
    store._release([replaced] if replaced is not None else [], keep=stored.blob)
    return placed


def _copy_checked(source: IO[bytes], sink: Any, entry: Entry) -> None:
    """Copy exactly ``entry.size`` bytes, refusing more, fewer, or other bytes."""
    hasher = ContentHasher()
    left = entry.size
    while left > 0:
        chunk = source.read(min(CHUNK_SIZE, left))
        if not chunk:
            raise IntegrityError(f"the bytes end after {entry.size - left} of {entry.size}")
        hasher.update(chunk)
        left -= len(chunk)
        if left == 0 and hasher.hexdigest() != entry.content_hash:
            # checked before the last chunk reaches the sink: a bad blob is never complete
            raise IntegrityError(
                f"the bytes do not match the entry's hash {entry.content_hash} "
                f"(got {hasher.hexdigest()})"
            )
        sink.write(chunk)
    if source.read(1):
        raise IntegrityError(f"the bytes are longer than the entry's {entry.size}")
    if entry.size == 0 and hasher.hexdigest() != entry.content_hash:
        raise IntegrityError("the bytes do not match the entry's hash")


# ------------------------------------------------------------------------------ conflicts


def _present(store: BlobStore, entry: Entry, on_conflict: OnConflict, run: _Run, size: int) -> bool:
    """True when ``entry`` is not to be written: same bytes present, or a kept conflict."""
    existing = store.metadata.get(entry.key)
    if existing is None:
        return False
    if existing.content_hash == entry.content_hash and existing.size == entry.size:
        if on_conflict != "overwrite":
            run.issue(entry.key, "present", "the target holds these bytes already", size=size)
            return True
        return False
    if on_conflict == "skip":
        run.issue(
            entry.key, "conflict", "the target holds other bytes under this key; kept", size=size
        )
        return True
    if on_conflict == "error":
        raise EntryExistsError(
            f"an entry with key {entry.key!r} and other bytes exists in the target; pass "
            "on_conflict='skip' to keep it or 'overwrite' to replace it"
        )
    return False


def _refuse_conflicts(store: BlobStore, entries: Iterable[Entry]) -> None:
    """For ``on_conflict="error"``: raise before anything is written if a key conflicts."""
    batch: dict[str, Entry] = {}

    def check() -> None:
        found = store.metadata.get_many(list(batch))
        clashes = [
            key for key, existing in found.items()
            if (existing.content_hash, existing.size) != (batch[key].content_hash, batch[key].size)
        ]  # fmt: skip
        if clashes:
            shown = ", ".join(repr(key) for key in sorted(clashes)[:5])
            more = f" and {len(clashes) - 5} more" if len(clashes) > 5 else ""
            raise EntryExistsError(
                f"{len(clashes)} key(s) exist in the target with other bytes: {shown}{more}; "
                "nothing was imported. Pass on_conflict='skip' or 'overwrite'"
            )
        batch.clear()

    for entry in entries:
        batch[entry.key] = entry
        if len(batch) >= _CHECK_CHUNK:
            check()
    if batch:
        check()


# ------------------------------------------------------------------------------ export


def _manifest(
    store: BlobStore, entries: builtins.list[Entry]
) -> tuple[Manifest, builtins.list[tuple[str, Entry]]]:
    items: builtins.list[ManifestEntry] = []
    blobs: builtins.list[tuple[str, Entry]] = []
    custom = rows_out(store, entries)
    for entry in entries:
        member = None
        if entry.inline is None:  # a blob, or an inline payload left out of the snapshot
            member = member_name(len(blobs))
            blobs.append((member, entry))
        # blob_ref stays: the signature covers it (the importer places the bytes anew)
        portable = entry.replace(etag=None, version_id=None)
        items.append(
            ManifestEntry(
                entry=portable,
                member=member,
                inline=member is not None and _left_inline(entry),
                custom=custom.get(entry.key, {}),
            )
        )
    manifest = Manifest(
        packages=package_versions(),
        source={"metadata": store.metadata.name, "blobs": store.blobs.name},
        entries=items,
    )
    return manifest, blobs


def _snapshot(store: BlobStore, filter: Selection, *, embed: bool = False) -> builtins.list[Entry]:
    """The entries ``filter`` selects (a filter the index runs, or a predicate), by key.

    Inline payloads of :data:`EMBED_LIMIT` bytes or more are left in the index (the
    entry keeps ``blob_ref=""`` and gets ``inline=None``) and read again one by one when
    their turn comes, so a snapshot of many entries holds their fields, not their data;
    ``embed`` keeps every payload (``export_to_dict``, which holds everything anyway).
    """
    keep: Callable[[Entry], bool] | None = None
    if callable(filter):
        entries, keep = store.metadata.query(order_by="key"), filter
    else:
        entries = store.metadata.query(filter, order_by="key")
    return [
        entry.replace(inline=None) if not embed and _embeds_not(entry) else entry
        for entry in entries
        if keep is None or keep(entry)
    ]


def _embeds_not(entry: Entry) -> bool:
    """True for an inline payload too large to travel in the manifest."""
    return entry.inline is not None and len(entry.inline) >= EMBED_LIMIT


def _left_inline(entry: Entry) -> bool:
    """True for an inline entry whose payload :func:`_snapshot` left in the index."""
    return entry.inline is None and not entry.blob_ref


def _with_inline(store: BlobStore, entry: Entry) -> Entry | None:
    """``entry`` with the inline payload :func:`_snapshot` left in the index: the index's
    current entry if it still holds the same payload, else None (changed or deleted)."""
    current = store.metadata.get(entry.key)
    if current is None or current.inline is None:
        return None
    same = (current.content_hash, current.size) == (entry.content_hash, entry.size)
    return current if same and len(current.inline) == entry.size else None


class _Exact(io.RawIOBase):
    """Yield exactly ``size`` bytes of ``source`` (padded with zeros if it ends early),
    hashing them, so a blob that changed under the export keeps the archive readable;
    the importer refuses it by its hash."""

    def __init__(self, source: IO[bytes], size: int) -> None:
        super().__init__()
        self._source: IO[bytes] | None = source
        self._left = size
        self.hasher = ContentHasher()
        self.short = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self._left)
        if want <= 0:
            return 0
        data = self._source.read(want) if self._source is not None else b""
        if not data:
            self.short = True
            self._source = None
            data = bytes(want)
        count = len(data)
        buffer[:count] = data
        self.hasher.update(data)
        self._left -= count
        return count


def export(
    store: BlobStore,
    target: str | os.PathLike[str] | BinaryIO,
    filter: Selection,
    compression: Compression,
    progress: Progress | None,
) -> TransferReport:
    """Write the matching entries of ``store`` and their bytes to one archive."""
    _check_options("skip", progress, filter)
    entries = _snapshot(store, filter)
    manifest, blobs = _manifest(store, entries)
    run = _Run(TransferReport(operation="export"), progress, total=len(entries))
    run.bytes_total = sum(entry.size for entry in entries)
    with ArchiveWriter(target, compression=compression) as archive:
        archive.add_manifest(manifest)
        for entry in entries:
            if entry.inline is not None:
                run.written(entry)
        for member, entry in blobs:
            _export_blob(store, archive, member, entry, run)
    return run.report


def _export_blob(
    store: BlobStore, archive: ArchiveWriter, member: str, entry: Entry, run: _Run
) -> None:
    missing = ""
    source: IO[bytes]
    if _left_inline(entry):
        current = _with_inline(store, entry)
        source = io.BytesIO(current.inline or b"" if current is not None else b"")
        if current is None:
            missing = "it was changed or deleted during the export"
    else:
        try:
            source = store.blobs.open_read(entry.blob_ref)
        except (StorageError, OSError) as exc:  # BlobNotFoundError is a StorageError
            source, missing = io.BytesIO(), f"its blob could not be read: {exc}"
    with source:
        exact = _Exact(cast(IO[bytes], _Counting(source, run, entry.key)), entry.size)
        archive.add_member(member, entry.size, cast(IO[bytes], exact), entry.updated_at)
    if missing:
        run.issue(
            entry.key, "missing", f"{missing}; a zero-filled member stands in", member, entry.size
        )
    elif exact.short or exact.hasher.hexdigest() != entry.content_hash:
        detail = "its blob does not match the entry (changed or damaged); an import refuses it"
        run.issue(entry.key, "damaged", detail, member, entry.size)
    else:
        run.written(entry)


def export_to_dict(store: BlobStore, filter: Selection) -> dict[str, Any]:
    """The archive as a dict: the manifest's fields plus ``blobs`` (member -> bytes)."""
    _check_options("skip", None, filter)
    manifest, blobs = _manifest(store, _snapshot(store, filter, embed=True))
    data: dict[str, Any] = msgspec.to_builtins(manifest, builtin_types=(bytes, datetime))
    data["blobs"] = {member: store.blobs.read_bytes(entry.blob_ref) for member, entry in blobs}
    return data


# ------------------------------------------------------------------------------ import


def import_(
    store: BlobStore,
    source: str | os.PathLike[str] | BinaryIO,
    on_conflict: OnConflict,
    filter: Selection,
    progress: Progress | None,
    trust_pickles: bool,
) -> TransferReport:
    """Import an archive written by :func:`export` (see ``BlobStore.import_``)."""
    _check_options(on_conflict, progress, filter)
    reader = ArchiveReader(source)
    try:
        manifest = reader.manifest()
        return _import(
            store, manifest, reader.members(), on_conflict, filter, progress, trust_pickles
        )
    finally:
        reader.close()


def import_from_dict(
    store: BlobStore,
    data: Mapping[str, Any],
    on_conflict: OnConflict,
    filter: Selection,
    trust_pickles: bool,
) -> TransferReport:
    """Import what :func:`export_to_dict` made."""
    _check_options(on_conflict, None, filter)
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"import_from_dict() takes the dict export_to_dict() made, got {type(data).__name__}"
        )
    head = {name: value for name, value in data.items() if name != "blobs"}
    manifest = parse_manifest(head, "the dict")
    blobs = data.get("blobs") or {}
    if not isinstance(blobs, Mapping):
        raise IntegrityError("the dict's 'blobs' must map member names to bytes")
    members = (
        Member(str(name), len(value), True, io.BytesIO(value))
        if isinstance(value, bytes | bytearray)
        else Member(str(name), 0, False, None)
        for name, value in blobs.items()
    )
    return _import(store, manifest, members, on_conflict, filter, None, trust_pickles)


def _import(
    store: BlobStore,
    manifest: Manifest,
    members: Iterator[Member],
    on_conflict: OnConflict,
    filter: Selection,
    progress: Progress | None,
    trust_pickles: bool,
) -> TransferReport:
    run = _Run(TransferReport(operation="import"), progress)
    wanted = filter if callable(filter) else compile_predicate(filter) if filter else None
    by_member: dict[str, Entry] = {}
    inline_members: set[str] = set()  # members holding an inline payload (format 2)
    inline: builtins.list[Entry] = []
    filtered: set[str] = set()
    customs: dict[str, Rows] = {}
    for item in manifest.entries:
        try:
            decoded = decode_entry(item)
        except ValueError as exc:
            run.issue(raw_key(item), "invalid_entry", f"not a valid entry: {exc}")
            continue
        entry = decoded.entry
        if decoded.custom:
            customs[entry.key] = decoded.custom
        if wanted is not None and not wanted(entry):
            if decoded.member is not None:
                filtered.add(decoded.member)
            continue
        if decoded.member is None:
            if entry.inline is None:
                run.issue(entry.key, "missing", "the manifest names no bytes for it")
                continue
            inline.append(entry)
        elif not safe_member_name(decoded.member) or decoded.member in by_member:
            run.issue(
                entry.key,
                "unsafe_name",
                f"member name {decoded.member!r} is not one an export writes",
                member=decoded.member,
            )
        else:
            by_member[decoded.member] = entry.replace(inline=None)
            if decoded.inline:
                inline_members.add(decoded.member)
    run.total = run.done + len(inline) + len(by_member)
    run.bytes_total = sum(e.size for e in inline) + sum(e.size for e in by_member.values())
    if on_conflict == "error":
        _refuse_conflicts(store, [*inline, *by_member.values()])
    for entry in inline:
        _admit_one(store, entry, None, on_conflict, run, trust_pickles, customs.get(entry.key))
    seen: set[str] = set()
    for member in members:
        claimed = by_member.get(member.name)
        if not member.regular or not safe_member_name(member.name):
            detail = f"member {member.name!r} is not a plain file named as an export names them"
            run.issue(
                claimed.key if claimed else "",
                "unsafe_name",
                detail,
                member.name,
                count=bool(claimed),
            )
            if claimed is not None:
                seen.add(member.name)
            continue
        if member.name in filtered:
            continue
        if claimed is None or member.name in seen:
            detail = f"member {member.name!r} belongs to no entry of the manifest, or is repeated"
            run.issue("", "unexpected_member", detail, member.name, count=False)
            continue
        seen.add(member.name)
        entry = claimed
        if member.size != entry.size:
            problem: TransferProblem = "oversized" if member.size > entry.size else "damaged"
            detail = f"the member is {member.size} bytes, the manifest says {entry.size}"
            run.issue(entry.key, problem, detail, member.name, entry.size)
            continue
        assert member.stream is not None
        custom = customs.get(entry.key)
        if member.name in inline_members:  # read whole: the payload stays inline
            if entry.size > _MAX_INLINE_MEMBER:
                detail = f"an inline payload of {entry.size} bytes is more than an index holds"
                run.issue(entry.key, "oversized", detail, member.name, entry.size)
                continue
            payload = member.stream.read(entry.size)
            if hash_bytes(payload) != entry.content_hash:  # the size was checked above
                detail = "the member's bytes do not match the entry's hash (changed or damaged)"
                run.issue(entry.key, "damaged", detail, member.name, entry.size)
                continue
            entry = entry.replace(inline=payload)
            _admit_one(store, entry, None, on_conflict, run, trust_pickles, custom, member.name)
            continue
        counted = cast(IO[bytes], _Counting(member.stream, run, entry.key))
        _admit_one(store, entry, counted, on_conflict, run, trust_pickles, custom, member.name)
    for name, entry in by_member.items():
        if name not in seen:
            run.issue(entry.key, "missing", f"the archive has no member {name!r}", name, entry.size)
    return run.report


def _admit_one(
    store: BlobStore,
    entry: Entry,
    stream: IO[bytes] | None,
    on_conflict: OnConflict,
    run: _Run,
    trust_pickles: bool,
    custom: Rows | None = None,
    member: str = "",
) -> None:
    refused = admit(store, entry, trust_pickles=trust_pickles)
    if refused is not None:
        run.issue(entry.key, "refused", refused, member, entry.size)
        return
    try:
        rows = rows_in(store, custom or {})
    except ConfigError as exc:
        run.issue(entry.key, "invalid_entry", f"its custom metadata: {exc}", member, entry.size)
        return
    if _present(store, entry, on_conflict, run, entry.size):
        return
    try:
        placed = receive(store, entry, stream, overwrite=on_conflict == "overwrite", rows=rows)
    except IntegrityError as exc:
        run.issue(entry.key, "damaged", str(exc), member, entry.size)
        return
    except EntryExistsError:
        if on_conflict == "error":
            raise
        run.issue(
            entry.key, "conflict", "written by someone else meanwhile; kept", member, entry.size
        )
        return
    run.written(placed)


# ------------------------------------------------------------------------------ migrate


def migrate(
    source_store: BlobStore,
    target_store: BlobStore,
    filter: Selection = None,
    progress: Progress | None = None,
    *,
    on_conflict: OnConflict = "skip",
) -> TransferReport:
    """Copy entries from ``source`` to ``target``, entry by entry, blob by blob.

    Blobs stream from one backend to the other (server-side when both are on the
    same S3 endpoint); each entry is committed in the target once its bytes are there
    and checked. The source is not changed. Entries the target holds with the same
    bytes are skipped, so an interrupted migration resumes where it stopped.

    Args:
        source_store: the store to copy from (left untouched).
        target_store: the store to copy into.
        filter: copy only the entries matching this filter (a mapping, see
            :mod:`cacheness.storage._filters`), or for which this function of an
            :class:`Entry` returns True.
        progress: called with a :class:`TransferProgress` after each entry.
        on_conflict: a key the target holds with other bytes: ``"skip"`` it (reported),
            ``"overwrite"`` it, or ``"error"`` (raise ``EntryExistsError`` before copying).

    Returns:
        A :class:`TransferReport`: entries and bytes copied, skipped and damaged entries.

    Raises:
        ConfigError: invalid arguments, or ``source`` is ``target``.
        EntryExistsError: ``on_conflict="error"`` and a key conflicts.

    Example:
        >>> from cacheness.storage import BlobStore, migrate
        >>> laptop = BlobStore(metadata_backend="memory", blob_backend="memory")
        >>> _ = laptop.put({"lr": 0.1}, key="runs/1")
        >>> team = BlobStore(metadata_backend="memory", blob_backend="memory")
        >>> migrate(laptop, team).entries, migrate(laptop, team).skipped[0].problem
        (1, 'present')
    """
    from cacheness.storage._blob_store import BlobStore

    source, target = source_store, target_store
    if not isinstance(source, BlobStore) or not isinstance(target, BlobStore):
        raise ConfigError("migrate() takes two BlobStore objects: migrate(source, target)")
    if source is target:
        raise ConfigError("migrate() needs two different stores; the source is the target")
    _check_options(on_conflict, progress, filter)
    source._check_open()
    target._check_open()
    run = _Run(TransferReport(operation="migrate"), progress)
    entries = _snapshot(source, filter)
    run.total = len(entries)
    run.bytes_total = sum(entry.size for entry in entries)
    if on_conflict == "error":
        _refuse_conflicts(target, entries)
    customs = rows_out(source, entries)
    for listed in entries:
        entry = _with_inline(source, listed) if _left_inline(listed) else listed
        if entry is None:  # changed or deleted since the snapshot: take it as it is now
            current = source.metadata.get(listed.key)
            if current is None:
                run.step(listed.key, listed.size)  # deleted meanwhile: nothing to copy
                continue
            entry = current
        try:
            rows = rows_in(target, customs.get(entry.key, {}))
        except ConfigError as exc:
            run.issue(entry.key, "invalid_entry", f"its custom metadata: {exc}", size=entry.size)
            continue
        # the source's own entries: its keys vouch for them (or, unsigned, it is yours)
        verdict = source.signer.check(entry) if source.signer is not None else "unsigned"
        refused = admit(target, entry, trust_pickles=True, vouched=verdict == "valid")
        if verdict == "invalid" or refused is not None:
            detail = refused or "its signature does not match it in the source; not copied"
            run.issue(entry.key, "refused", detail, size=entry.size)
            continue
        _migrate_one(source, target, entry, on_conflict, run, rows)
    return run.report


def _migrate_one(
    source: BlobStore,
    target: BlobStore,
    entry: Entry,
    on_conflict: OnConflict,
    run: _Run,
    rows: builtins.list[CustomMetadataBase],
) -> None:
    if _present(target, entry, on_conflict, run, entry.size):
        return
    overwrite = on_conflict == "overwrite"
    try:
        if entry.inline is not None:
            placed = receive(target, entry, None, overwrite=overwrite, rows=rows)
        else:
            placed = _migrate_blob(source, target, entry, overwrite, run, rows)
    except (BlobNotFoundError, IntegrityError) as exc:
        current = source.metadata.get(entry.key)
        if current is not None and (current.blob_ref, current.content_hash) != (
            entry.blob_ref,
            entry.content_hash,
        ):
            _migrate_one(source, target, current, on_conflict, run, rows)  # rewritten meanwhile
            return
        problem: TransferProblem = "missing" if isinstance(exc, BlobNotFoundError) else "damaged"
        if current is None:
            run.step(entry.key, entry.size)  # deleted meanwhile: nothing to copy
            return
        run.issue(entry.key, problem, f"the source's bytes: {exc}", size=entry.size)
        return
    except EntryExistsError:
        if on_conflict == "error":
            raise
        run.issue(entry.key, "conflict", "written by someone else meanwhile; kept", size=entry.size)
        return
    run.written(placed)


def _migrate_blob(
    source: BlobStore,
    target: BlobStore,
    entry: Entry,
    overwrite: bool,
    run: _Run,
    rows: builtins.list[CustomMetadataBase],
) -> Entry:
    if not target.content_addressable:
        copied = target.blobs.copy_from_server_side(
            source.blobs, entry.blob_ref, target._fresh_name()
        )
        if copied is not None:
            return _commit_copied(target, entry, copied, overwrite, rows)
    with source.blobs.open_read(entry.blob_ref) as stream:
        counted = cast(IO[bytes], _Counting(stream, run, entry.key))
        return receive(target, entry, counted, overwrite=overwrite, rows=rows)


def _commit_copied(
    target: BlobStore,
    entry: Entry,
    blob: BlobInfo,
    overwrite: bool,
    rows: builtins.list[CustomMetadataBase],
) -> Entry:
    from cacheness.storage._blob_store import _Stored

    if blob.size != entry.size or blob.content_hash not in ("", entry.content_hash):
        target._delete_blobs([blob.ref])
        raise IntegrityError(
            f"the server-side copy is {blob.size} bytes hashing {blob.content_hash!r}; the "
            f"entry says {entry.size} bytes hashing {entry.content_hash!r}"
        )
    stored = _Stored(FormatInfo.from_entry(entry), blob.size, entry.content_hash, blob=blob)
    return _commit(target, entry, stored, overwrite, rows)

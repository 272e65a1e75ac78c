"""Format versions of the persistent metadata backends, and how older stores upgrade (private).

Each persistent metadata backend records the version of its on-disk layout inside the
store and checks it every time it opens one:

* ``sqlite`` and ``postgresql``: the ``schema_version`` row of the ``<table>_info``
  table, one version per dialect (``SCHEMA_VERSIONS`` in ``_sqlcore.py``: SQLite 1,
  PostgreSQL 2; each dialect's steps are its backend class's ``migrations``);
* ``json``: the ``"version"`` member of the file
  (:data:`cacheness.storage._metadata.json.FILE_VERSION`).

The rule, the same for all of them:

* the version this release writes: the store opens as usual;
* a **newer** version: the store is refused with
  :class:`~cacheness.storage.errors.FormatVersionError` naming both versions and telling
  to upgrade blobcache-storage; nothing in the store is changed;
* an **older** version: the steps registered in the backend's :class:`FormatMigrations`
  run one version at a time (``1 → 2``, ``2 → 3``...) up to the current one. The SQL
  steps run in the write transaction that holds the DDL lock, and the recorded version
  is updated in it (all or nothing); the JSON steps upgrade the decoded document in
  memory and the next change writes it back in the current version.

The registered steps: PostgreSQL ``1 → 2`` adds ``metadata_text``, the exact JSON text
of ``metadata`` (``jsonb`` normalises numbers), and the trigger that keeps it from going
stale.

A change of a layout therefore bumps the backend's version and registers the step from
the previous version, in the same change; the golden stores under
``packages/blobcache-storage/tests/golden`` (written by the first release) must keep
opening and reading back exactly.

Example:
    >>> migrations = FormatMigrations("example index", current=3)
    >>> @migrations.register(from_version=1)
    ... def add_owner(document):
    ...     return {**document, "owner": None}
    >>> @migrations.register(from_version=2)
    ... def rename_owner(document):
    ...     return {"user": document["owner"]}
    >>> [(version, step.__name__) for version, step in migrations.steps(1, "index.json")]
    [(1, 'add_owner'), (2, 'rename_owner')]
    >>> migrations.steps(3, "index.json")
    []
    >>> migrations.steps(4, "index.json")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cacheness.storage.errors.FormatVersionError: index.json was written by a newer ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from cacheness.storage._validate import is_int
from cacheness.storage.errors import FormatVersionError, MetadataError

StepT = TypeVar("StepT", bound=Callable[..., Any])


class FormatMigrations(Generic[StepT]):
    """The current format version of one kind of store and the steps from older ones.

    Args:
        what: what the version is of, for messages (``"metadata table"``).
        current: the version this release writes.

    A step registered ``from_version=n`` upgrades a store from version ``n`` to
    ``n + 1``; its signature is the backend's business (a cursor for SQL, the decoded
    document for JSON).
    """

    def __init__(self, what: str, current: int) -> None:
        if not is_int(current) or current < 1:
            raise ValueError(f"a format version is an int >= 1, got {current!r}")
        self.what = what
        self.current = current
        self._steps: dict[int, StepT] = {}

    def register(self, from_version: int) -> Callable[[StepT], StepT]:
        """Decorator: register the step that upgrades ``from_version`` to the next one.

        Raises:
            ValueError: the version is not below :attr:`current`, or already has a step.
        """
        if not 1 <= from_version < self.current:
            raise ValueError(
                f"a {self.what} migration starts from a version in 1..{self.current - 1}, "
                f"got {from_version!r}"
            )
        if from_version in self._steps:
            raise ValueError(f"{self.what} version {from_version} already has a migration")

        def add(step: StepT) -> StepT:
            self._steps[from_version] = step
            return step

        return add

    def check(self, found: int, where: str, *, hint: str = "") -> None:
        """Raise unless a store of version ``found`` can be opened (now or after migrating).

        Args:
            found: the version recorded in the store.
            where: the store, for the message (a path, a table name).
            hint: more advice appended to the message of a newer version.

        Raises:
            FormatVersionError: ``found`` is newer than :attr:`current`.
            MetadataError: ``found`` is not a version any release wrote (below 1).
        """
        if found > self.current:
            raise FormatVersionError(
                f"{where} was written by a newer blobcache-storage ({self.what} version "
                f"{found}; this release reads version {self.current} and older): upgrade "
                f"blobcache-storage to open it{hint}. Nothing was changed",
                found=found,
                supported=self.current,
            )
        if found < 1:
            raise MetadataError(
                f"{where} records {self.what} version {found}, which no release wrote: "
                "the store was edited or damaged; restore it from a backup"
            )

    def steps(self, found: int, where: str, *, hint: str = "") -> list[tuple[int, StepT]]:
        """Return ``(from_version, step)`` pairs that bring version ``found`` to current.

        Empty when ``found`` is current.

        Raises:
            FormatVersionError: ``found`` is newer than :attr:`current` (see :meth:`check`).
            MetadataError: ``found`` is below 1, or a step on the way is not registered.
        """
        self.check(found, where, hint=hint)
        missing = [v for v in range(found, self.current) if v not in self._steps]
        if missing:
            raise MetadataError(
                f"{where} has {self.what} version {found}, but this release has no "
                f"migration from version {missing[0]} to {missing[0] + 1}; that is a bug "
                "in blobcache-storage: report it. Nothing was changed"
            )
        return [(version, self._steps[version]) for version in range(found, self.current)]

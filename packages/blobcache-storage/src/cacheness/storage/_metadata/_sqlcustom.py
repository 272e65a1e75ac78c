"""Custom metadata tables in the SQL index's database (private).

A custom metadata model (``_custom.py``) is *linked* to an index the first time it is
used there: its table is created in the index's database (and schema), with a foreign key
``cache_key -> <entries>.key ON DELETE CASCADE ON UPDATE CASCADE``, so every way an entry
goes (delete, batch and filtered deletes, eviction, expiry clean-up, clear, repair) takes
its rows along in the same statement, and a rename (``move``) relinks them. An existing
table is checked against the model: other columns, or no link to this index, is a
:class:`~cacheness.storage.errors.CustomSchemaError` naming the difference.

Rows are written on the index's own connection, inside the transaction that writes the
entry: Core ``INSERT`` statements compiled for the dialect, values converted by the
columns' own bind processors. Reads go through SQLAlchemy ORM sessions on the backend's
engine (:meth:`CustomTables.session`), always closed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateIndex, CreateTable

from cacheness.storage._custom import (
    CustomMetadataBase,
    bind_processors,
    model_name,
    model_table,
    resolve_model,
    row_values,
)
from cacheness.storage._metadata._sqlcore import compile_statement
from cacheness.storage._metadata._sqlrows import Statement
from cacheness.storage.errors import ConfigError, CustomSchemaError

if TYPE_CHECKING:
    from cacheness.storage._metadata.sql import Cursor, SqlMetadataBackend


class TableShape(NamedTuple):
    """What the database says about an existing table."""

    columns: dict[str, bool]
    """Column name -> nullable."""
    linked: bool
    """Its ``cache_key`` references this index's entries with ``ON DELETE CASCADE``."""


class ChildTable(NamedTuple):
    """A table whose rows reference this index's entries (found in the catalog)."""

    name: str
    """The table, quoted (and qualified) for SQL."""
    link: str
    """The referencing column, quoted."""
    copied: tuple[str, ...]
    """The other columns a copy carries over, quoted (the primary key left out)."""


class Linked(NamedTuple):
    """A model linked to this index: its table here and its insert statements."""

    table: sa.Table


class CustomTables:
    """The custom metadata tables of one SQL index: linking, writing, copying, reading."""

    def __init__(self, backend: SqlMetadataBackend) -> None:
        self.backend = backend
        self._linked: dict[type[CustomMetadataBase], Linked] = {}
        self._inserts: dict[tuple[Any, ...], tuple[Statement, list[Any]]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ linking

    def link(self, model: type[CustomMetadataBase] | str) -> Linked:
        """Create (or check) ``model``'s table in this index's database, once per process."""
        if not isinstance(model, str):  # the common case: a class linked already
            linked = self._linked.get(model)
            if linked is not None:
                return linked
        resolved = resolve_model(model)
        linked = self._linked.get(resolved)
        if linked is not None:
            return linked
        table = self._table_here(resolved)
        self.backend._run(lambda cursor: self._create(cursor, resolved, table), write=True)
        linked = Linked(table)
        with self._lock:
            self._linked[resolved] = linked
        return linked

    def _table_here(self, model: type[CustomMetadataBase]) -> sa.Table:
        """``model``'s table as it exists in this database: schema and the link added."""
        backend = self.backend
        source = model_table(model)
        schema = source.schema or backend.schema
        if backend.dialect_name == "sqlite" and source.schema is not None:
            raise ConfigError(
                f"custom metadata model {model_name(model)!r} names schema "
                f"{source.schema!r}; SQLite tables live in the index file: remove the schema"
            )
        if schema == backend.table.schema and source.name in (
            backend.table.name,
            backend.info_table.name,
        ):
            raise ConfigError(
                f"custom metadata model {model_name(model)!r} uses table {source.name!r}, "
                f"which is the index's own table in {backend._describe()}; give the model "
                "another __tablename__ (e.g. 'custom_...')"
            )
        table = (
            source.to_metadata(sa.MetaData())
            if schema is None
            else source.to_metadata(sa.MetaData(), schema=schema)
        )
        table.append_constraint(
            sa.ForeignKeyConstraint(
                [table.c.cache_key],
                [backend.table.c.key],
                ondelete="CASCADE",
                onupdate="CASCADE",
                name=f"fk_{source.name}_cache_key"[:63],
            )
        )
        return table

    def _create(self, cursor: Cursor, model: type[CustomMetadataBase], table: sa.Table) -> None:
        backend = self.backend
        shape = backend._table_shape(cursor, table.name, table.schema)
        if shape is None:
            backend._lock_ddl(cursor)
            shape = backend._table_shape(cursor, table.name, table.schema)
        if shape is not None:
            self._check(model, table, shape)
            return
        dialect = backend._dialect
        cursor.raw.execute(str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)))
        for index in sorted(table.indexes, key=lambda ix: str(ix.name)):
            ddl = CreateIndex(index, if_not_exists=True).compile(dialect=dialect)
            cursor.raw.execute(str(ddl))

    def _check(self, model: type[CustomMetadataBase], table: sa.Table, shape: TableShape) -> None:
        where = f"table {table.fullname!r} in {self.backend._describe()}"
        name = model_name(model)
        if not shape.linked:
            raise CustomSchemaError(
                f"custom metadata model {name!r}: {where} exists but its cache_key is not a "
                f"foreign key to the index table {self.backend.table.fullname!r} with ON "
                "DELETE CASCADE: it belongs to something else; give the model another "
                "__tablename__"
            )
        wanted = set(table.c.keys())
        missing = sorted(wanted - set(shape.columns))
        extra = sorted(set(shape.columns) - wanted)
        if not (missing or extra):
            return
        parts = []
        if missing:
            parts.append(f"the model has columns the table lacks: {', '.join(missing)}")
        if extra:
            parts.append(f"the table has columns the model lacks: {', '.join(extra)}")
        addable = [column for column in missing if table.c[column].nullable]
        if missing and len(addable) == len(missing) and not extra:
            hint = (
                "the missing columns are nullable: run migrate_custom_metadata_tables() to add them"
            )
        else:
            hint = (
                "this needs a migration you run yourself (e.g. with Alembic, see the "
                "'Custom metadata tables' docs page), or a model that matches the table"
            )
        raise CustomSchemaError(
            f"custom metadata model {name!r} does not match {where}: {'; '.join(parts)}; {hint}"
        )

    def migrate(self, models: Iterable[type[CustomMetadataBase] | str]) -> dict[str, list[str]]:
        """Create missing tables and add missing nullable columns; return what was added.

        Returns:
            ``{table name: [added columns]}`` for the tables that changed (a created
            table lists all its columns).

        Raises:
            CustomSchemaError: a difference a nullable ``ADD COLUMN`` cannot fix.
        """
        changed: dict[str, list[str]] = {}
        for model in models:
            resolved = resolve_model(model)
            table = self._table_here(resolved)

            def work(cursor: Cursor, m: Any = resolved, t: sa.Table = table) -> list[str]:
                return self._migrate(cursor, m, t)

            added = self.backend._run(work, write=True)
            if added:
                changed[table.fullname] = added
            with self._lock:
                self._linked[resolved] = Linked(table)
        return changed

    def _migrate(
        self, cursor: Cursor, model: type[CustomMetadataBase], table: sa.Table
    ) -> list[str]:
        backend = self.backend
        backend._lock_ddl(cursor)
        shape = backend._table_shape(cursor, table.name, table.schema)
        if shape is None:
            self._create(cursor, model, table)
            return list(table.c.keys())
        missing = [column for column in table.c if column.name not in shape.columns]
        blocking = [column.name for column in missing if not column.nullable]
        if blocking or set(shape.columns) - set(table.c.keys()) or not shape.linked:
            if not blocking:
                self._check(model, table, shape)
            raise CustomSchemaError(
                f"custom metadata model {model_name(model)!r}: column(s) "
                f"{', '.join(blocking)} of table {table.fullname!r} are NOT NULL, which "
                "migrate_custom_metadata_tables() cannot add to a table with rows; migrate "
                "it yourself (e.g. with Alembic) or make the columns nullable"
            )
        dialect = backend._dialect
        preparer = dialect.identifier_preparer
        for column in missing:
            kind = column.type.compile(dialect=dialect)
            cursor.raw.execute(
                f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN "
                f"{preparer.format_column(column)} {kind}"
            )
        for index in sorted(table.indexes, key=lambda ix: str(ix.name)):
            if any(column in missing for column in index.columns):
                cursor.raw.execute(
                    str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect))
                )
        return [column.name for column in missing]

    # ------------------------------------------------------------------ writing

    def prepare(self, rows: Sequence[CustomMetadataBase]) -> list[tuple[Statement, list[Any]]]:
        """Link the rows' models and compile their inserts (before any transaction)."""
        prepared = []
        for row in rows:
            linked = self.link(type(row))
            values = row_values(row)
            statement, processors = self._insert(linked.table, tuple(values))
            params: list[Any] = []
            for processor, value in zip(processors, values.values(), strict=True):
                params.append(value if processor is None else processor(value))
            prepared.append((statement, params))
        return prepared

    def _insert(self, table: sa.Table, names: tuple[str, ...]) -> tuple[Statement, list[Any]]:
        shape = (table.fullname, names)
        found = self._inserts.get(shape)
        if found is not None:
            return found
        dialect = self.backend._dialect
        binds = {"cache_key": sa.bindparam("p_key", type_=sa.Text())}
        for i, name in enumerate(names):
            binds[name] = sa.bindparam(f"p_c{i}", type_=table.c[name].type)
        statement = compile_statement(sa.insert(table).values(binds), dialect)
        found = (statement, bind_processors(table, names, dialect))
        with self._lock:
            self._inserts[shape] = found
        return found

    @staticmethod
    def write(cursor: Cursor, key: str, prepared: Sequence[tuple[Statement, list[Any]]]) -> None:
        """Insert the prepared rows for ``key`` (inside the caller's transaction)."""
        for statement, params in prepared:
            values = {f"c{i}": value for i, value in enumerate(params)}
            values["key"] = key
            cursor.execute(statement, values)

    def copy_rows(self, cursor: Cursor, src: str, dst: str) -> None:
        """Copy the rows of every linked table from ``src`` to ``dst`` (in the transaction)."""
        placeholder = "?" if self.backend._dialect.positional else "%s"
        for child in self.backend._child_tables(cursor):
            columns = ", ".join(child.copied)
            into = f"{columns}, {child.link}" if columns else child.link
            picked = f"{columns}, {placeholder}" if columns else placeholder
            cursor.raw.execute(
                f"INSERT INTO {child.name} ({into}) SELECT {picked} FROM {child.name} "
                f"WHERE {child.link} = {placeholder}",
                (dst, src),
            )

    # ------------------------------------------------------------------ reading

    @contextmanager
    def session(self, model: type[CustomMetadataBase] | str) -> Iterator[Session]:
        """An ORM session on this index's database, ``model`` linked; always closed."""
        self.link(model)
        session = Session(self.backend._custom_engine(), expire_on_commit=False)
        try:
            yield session
        finally:
            session.close()

    def rows(
        self, model: type[CustomMetadataBase] | str, where: Sequence[Any]
    ) -> list[CustomMetadataBase]:
        """The model's rows matching ``where``, detached (usable after the session closed)."""
        resolved = resolve_model(model)
        with self.session(resolved) as session:
            found = list(
                session.scalars(
                    sa.select(resolved).where(*where).order_by(resolved.cache_key, resolved.id)
                )
            )
            session.expunge_all()
        return found

    def keys(self, model: type[CustomMetadataBase] | str, where: Sequence[Any]) -> list[str]:
        """The keys of the entries having a row of ``model`` matching ``where``, sorted."""
        resolved = resolve_model(model)
        with self.session(resolved) as session:
            statement = (
                sa.select(resolved.cache_key).where(*where).distinct().order_by(resolved.cache_key)
            )
            return list(session.scalars(statement))

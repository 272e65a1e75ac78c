"""Custom metadata models: typed, indexed SQL columns stored beside entries (private).

A user declares a SQLAlchemy model on :class:`CustomMetadataBase` (2.0 ``Mapped[...]``
style or classic ``Column`` style) and registers it under a name with
:func:`custom_metadata_model`. The base supplies the bookkeeping columns: ``id`` (the
row's own primary key) and ``cache_key`` (the entry the row describes); the user writes
only their columns. The SQL metadata backends create the table in the index's database
on first use, with a foreign key to the entry that cascades deletions and renames (see
``_metadata/_sqlcustom.py``).

Each model gets a SQLAlchemy registry and ``MetaData`` of its own, so defining a model
again (a re-run notebook cell, a test) never collides with an earlier definition in a
shared ``MetaData``; what must be unique is the registered *name* (and its table).

This module imports SQLAlchemy's ORM: it is loaded only when a name of it is used.

Example:
    >>> from sqlalchemy import String
    >>> from sqlalchemy.orm import Mapped, mapped_column
    >>> @custom_metadata_model("doc_runs")
    ... class Run(CustomMetadataBase):
    ...     __tablename__ = "custom_doc_runs"
    ...     run_id: Mapped[str] = mapped_column(String(50), index=True)
    ...     accuracy: Mapped[float]
    >>> sorted(column.name for column in Run.__table__.columns)
    ['accuracy', 'cache_key', 'id', 'run_id']
    >>> get_custom_model("doc_runs") is Run
    True
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, registry

from cacheness.storage.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect

M = TypeVar("M", bound="type[CustomMetadataBase]")

RESERVED_COLUMNS = ("id", "cache_key")
"""The columns :class:`CustomMetadataBase` supplies; user models do not declare them."""

_REGISTRY: dict[str, type[CustomMetadataBase]] = {}
_REGISTRY_LOCK = threading.Lock()
_CHECKED: weakref.WeakSet[type] = weakref.WeakSet()
"""Model classes :func:`check_model` accepted (a class does not change once mapped)."""
_WRITTEN: weakref.WeakKeyDictionary[type, list[tuple[str, str, Any]]] = weakref.WeakKeyDictionary()
"""Per model: ``(attribute, column, default)`` of the columns a row writes."""


def key_type() -> sa.types.TypeEngine[str]:
    """The type of ``cache_key``: the entries table's key type (``"C"`` collation on PostgreSQL)."""
    return sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


class CustomMetadataBase(DeclarativeBase):
    """Base of custom metadata models: SQLAlchemy declarative, one row per entry (or more).

    Subclasses set ``__tablename__`` and declare their columns; the base adds ``id`` (an
    autoincrement primary key) and ``cache_key`` (the entry's key, indexed; the backend
    links it to the entry with ``ON DELETE CASCADE``). Register the model with
    :func:`custom_metadata_model` and pass instances as ``custom_metadata=`` to
    ``BlobStore.put`` or ``cache.put``; ``cache_key`` is filled in by the store.

    Example:
        >>> from sqlalchemy import Column, Integer
        >>> class Epochs(CustomMetadataBase):  # classic Column style works too
        ...     __tablename__ = "custom_doc_epochs"
        ...     epochs = Column(Integer, nullable=False)
        >>> Epochs(epochs=10).epochs
        10
    """

    __abstract__ = True

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    cache_key: Mapped[str] = mapped_column(key_type(), nullable=False, index=True)

    def __init_subclass__(cls, **kw: Any) -> None:
        own = cls.__dict__
        if "__tablename__" in own or "__table__" in own:
            # A registry and MetaData per model: redefining a model never collides.
            models = registry(metadata=sa.MetaData())
            cls._sa_registry = models
            cls.metadata = models.metadata
        super().__init_subclass__(**kw)

    def __repr__(self) -> str:
        state = sa.inspect(self)
        shown = ", ".join(
            f"{attr.key}={state.dict[attr.key]!r}"
            for attr in state.mapper.column_attrs
            if attr.key in state.dict
        )
        return f"{type(self).__name__}({shown})"


def custom_metadata_model(name: str) -> Callable[[M], M]:
    """Register a custom metadata model under ``name`` (a class decorator).

    Registering the same class again is a no-op, and so is running the same definition
    again (a re-run notebook cell: same module, class name, table and columns; the new
    class replaces the old). Another class under a name (or a table) already taken is
    refused. Stores find the model by class or by this name
    (``query_custom_session("experiments")``).

    Raises:
        ConfigError: ``name`` is not a non-empty string, the class is not a mapped
            subclass of :class:`CustomMetadataBase` (set ``__tablename__``), it declares
            a reserved column (``id``, ``cache_key``), or the name or table is taken by
            another model.

    Example:
        >>> from sqlalchemy.orm import Mapped
        >>> @custom_metadata_model("doc_scores")
        ... class Score(CustomMetadataBase):
        ...     __tablename__ = "custom_doc_scores"
        ...     score: Mapped[float]
        >>> custom_metadata_model("doc_scores")(Score) is Score  # idempotent
        True
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"custom_metadata_model() needs a non-empty name, got {name!r}")

    def register(model: M) -> M:
        check_model(model)
        table = model_table(model)
        with _REGISTRY_LOCK:
            current = _REGISTRY.get(name)
            if current is model:
                return model
            if current is not None and _signature(current) != _signature(model):
                raise ConfigError(
                    f"custom metadata model name {name!r} is already registered by "
                    f"{_qualname(current)}; {_qualname(model)} needs another name (or "
                    "unregister_custom_model() the old one first)"
                )
            for other_name, other in _REGISTRY.items():
                if other_name == name:
                    continue  # the same definition run again (a re-run cell, a reload)
                other_table = model_table(other)
                if (other_table.schema, other_table.name) == (table.schema, table.name):
                    raise ConfigError(
                        f"table {table.fullname!r} of {_qualname(model)} is already used by "
                        f"custom metadata model {other_name!r} ({_qualname(other)}); give "
                        "the model another __tablename__"
                    )
            _REGISTRY[name] = model
        model.__custom_metadata_name__ = name
        return model

    return register


def unregister_custom_model(name: str) -> bool:
    """Forget the model registered under ``name``; return False if there was none.

    Tables and rows stay in the databases; only the name is freed.

    Example:
        >>> unregister_custom_model("no such model")
        False
    """
    with _REGISTRY_LOCK:
        return _REGISTRY.pop(name, None) is not None


def get_custom_model(name: str) -> type[CustomMetadataBase]:
    """Return the model registered under ``name``.

    Raises:
        ConfigError: no model has that name (the message lists the registered ones).
    """
    with _REGISTRY_LOCK:
        model = _REGISTRY.get(name)
        known = sorted(_REGISTRY)
    if model is None:
        raise ConfigError(
            f"no custom metadata model is registered as {name!r} (registered: "
            f"{', '.join(map(repr, known)) or 'none'}); decorate the model class with "
            f"@custom_metadata_model({name!r})"
        )
    return model


def list_custom_models() -> dict[str, type[CustomMetadataBase]]:
    """Return ``{name: model}`` of the registered custom metadata models.

    Example:
        >>> isinstance(list_custom_models(), dict)
        True
    """
    with _REGISTRY_LOCK:
        return dict(_REGISTRY)


def resolve_model(model: type[CustomMetadataBase] | str) -> type[CustomMetadataBase]:
    """Return the model class given as a class or a registered name (checked)."""
    if isinstance(model, str):
        return get_custom_model(model)
    check_model(model)
    return model


def check_model(model: object) -> None:
    """Raise ``ConfigError`` unless ``model`` is a mapped custom metadata model class."""
    if isinstance(model, type) and model in _CHECKED:
        return
    if not (
        isinstance(model, type)
        and issubclass(model, CustomMetadataBase)
        and model is not CustomMetadataBase
        and isinstance(model.__dict__.get("__table__"), sa.Table)
    ):
        raise ConfigError(
            f"custom metadata models are mapped subclasses of CustomMetadataBase with a "
            f"__tablename__, got {model!r}"
        )
    table = model_table(model)
    for column in RESERVED_COLUMNS:
        if column not in table.c:
            raise ConfigError(f"{_qualname(model)} lost the reserved column {column!r}")
    if not table.c.id.primary_key or table.c.cache_key.type.__class__ is not sa.Text:
        raise ConfigError(
            f"{_qualname(model)} redefines a reserved column ({', '.join(RESERVED_COLUMNS)}): "
            "these are supplied by CustomMetadataBase; rename yours"
        )
    _CHECKED.add(model)


def model_table(model: type[CustomMetadataBase]) -> sa.Table:
    """The ``Table`` a model is mapped to."""
    table = model.__dict__["__table__"]
    assert isinstance(table, sa.Table)
    return table


def model_name(model: type[CustomMetadataBase]) -> str:
    """The registered name of ``model`` (its class name when it is not registered)."""
    return str(getattr(model, "__custom_metadata_name__", None) or model.__name__)


def rows_of(
    custom_metadata: CustomMetadataBase | Iterable[CustomMetadataBase] | None,
) -> list[CustomMetadataBase]:
    """The custom metadata rows of a ``custom_metadata=`` argument, checked.

    Raises:
        ConfigError: an item is not an instance of a custom metadata model.
    """
    if custom_metadata is None:
        return []
    items = (
        [custom_metadata]
        if isinstance(custom_metadata, CustomMetadataBase)
        else list(custom_metadata)
    )
    for item in items:
        if not isinstance(item, CustomMetadataBase):
            raise ConfigError(
                "custom_metadata takes instances of custom metadata models (subclasses of "
                f"CustomMetadataBase) or a list of them, got {type(item).__name__}"
            )
        check_model(type(item))
    return items


def row_values(row: CustomMetadataBase) -> dict[str, Any]:
    """The column values of ``row`` to insert, by column name (``id`` and ``cache_key`` left
    out): attributes set on the object, else the column's Python default; a column with
    neither is left to its server default (or NULL)."""
    model = type(row)
    written = _WRITTEN.get(model)
    if written is None:
        written = []
        for attr in sa.inspect(model).column_attrs:
            column = attr.columns[0]
            if isinstance(column, sa.Column) and column.name not in RESERVED_COLUMNS:
                written.append((attr.key, column.name, column.default))
        _WRITTEN[model] = written
    state = row.__dict__
    values: dict[str, Any] = {}
    for key, name, default in written:
        if key in state:
            values[name] = state[key]
        elif isinstance(default, sa.ColumnDefault):
            if default.is_callable:
                values[name] = default.arg(None)
            elif default.is_scalar:
                values[name] = default.arg
    return values


def bind_processors(
    table: sa.Table, names: Iterable[str], dialect: Dialect
) -> list[Callable[[Any], Any] | None]:
    """The DB-API conversion of each named column's values (None: as they are)."""
    return [table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names]


def _signature(model: type[CustomMetadataBase]) -> tuple[Any, ...]:
    """What makes two model classes the same model: where and how they are defined."""
    table = model_table(model)
    columns = tuple(
        (column.name, repr(column.type), column.nullable, column.index, column.unique)
        for column in table.columns
    )
    return (model.__module__, model.__qualname__, table.fullname, columns)


def _qualname(model: type) -> str:
    return f"{model.__module__}.{model.__qualname__}"

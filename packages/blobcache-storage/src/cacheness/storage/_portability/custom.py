"""Custom metadata rows in archives and migrations (private).

An entry's rows of registered custom metadata models (``CustomMetadataBase``) travel with
it: exported as plain values by model name and attribute, rebuilt as rows of the
importing process's model of that name (values converted to the columns' Python types:
an ISO string back to a ``datetime``), and committed with the entry in one transaction.

Example:
    >>> from cacheness.storage import BlobStore
    >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
    >>> rows_out(store, [])  # an index without custom tables has no rows to carry
    {}
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from cacheness.storage.errors import CacheError, ConfigError

if TYPE_CHECKING:
    from cacheness.storage._blob_store import BlobStore
    from cacheness.storage._custom import CustomMetadataBase
    from cacheness.storage._entry import Entry

log = logging.getLogger(__name__)

Rows = dict[str, list[dict[str, Any]]]
"""One entry's custom rows: model name -> the rows' values by attribute."""
_CHUNK = 500


def rows_out(store: BlobStore, entries: Sequence[Entry]) -> dict[str, Rows]:
    """The custom rows of ``entries`` in ``store``, by key (registered models only)."""
    if not store.metadata.supports_custom_metadata or not entries:
        return {}
    from cacheness.storage._custom import list_custom_models

    keys = [entry.key for entry in entries]
    found: dict[str, Rows] = {}
    for name, model in list_custom_models().items():
        try:
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                for row in store.metadata.query_custom(model, model.cache_key.in_(chunk)):
                    found.setdefault(row.cache_key, {}).setdefault(name, []).append(values(row))
        except CacheError as exc:  # a model whose table here has another shape
            log.warning("custom metadata model %r is not carried: %s", name, exc)
    return found


def values(row: CustomMetadataBase) -> dict[str, Any]:
    """A row's column values by attribute name (``id`` and ``cache_key`` left out)."""
    import sqlalchemy as sa

    from cacheness.storage._custom import RESERVED_COLUMNS

    return {
        attr.key: getattr(row, attr.key)
        for attr in sa.inspect(type(row)).column_attrs
        if attr.columns[0].name not in RESERVED_COLUMNS
    }


def rows_in(store: BlobStore, custom: Mapping[str, Any]) -> list[CustomMetadataBase]:
    """Rebuild an entry's rows for ``store``.

    Raises:
        ConfigError: a model is not registered here, the store's index has no custom
            metadata tables, or a value does not fit its column.
    """
    if not custom:
        return []
    if not store.metadata.supports_custom_metadata:
        raise ConfigError(
            f"it has custom metadata rows ({', '.join(sorted(custom))}) and this store's "
            f"{store.metadata.name} index has no custom metadata tables"
        )
    import sqlalchemy as sa

    from cacheness.storage._custom import get_custom_model

    rows = []
    for name, items in custom.items():
        model = get_custom_model(name)
        types = {attr.key: _python_type(attr.columns[0]) for attr in sa.inspect(model).column_attrs}
        for item in items:
            if not isinstance(item, Mapping) or set(item) - set(types):
                raise ConfigError(f"its {name!r} row {item!r} does not fit the model's columns")
            try:
                rows.append(model(**{k: _convert(v, types[k]) for k, v in item.items()}))
            except (msgspec.ValidationError, TypeError) as exc:
                raise ConfigError(f"its {name!r} row does not fit the model: {exc}") from None
    return rows


def _python_type(column: Any) -> type | None:
    try:
        found = column.type.python_type
    except NotImplementedError:
        return None
    return found if isinstance(found, type) else None


def _convert(value: Any, kind: type | None) -> Any:
    if value is None or kind is None or isinstance(value, kind):
        return value
    return msgspec.convert(value, kind, strict=False)

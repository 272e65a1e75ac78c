"""Type-aware serialization: handlers that turn objects into stored bytes and back.

See :mod:`cacheness.storage.handlers.base` for the interface and the registry, and
the serialization page of the docs for the formats. Importing this package imports
none of numpy, pandas, pyarrow or polars: each handler imports its library only when
it stores or loads such an object.

Example:
    >>> from cacheness.storage.handlers import handler_for, list_handlers
    >>> list_handlers()
    ['raw', 'plain', 'numpy', 'pandas', 'arrow', 'polars', 'objects']
    >>> handler_for([1, 2, 3]).name
    'plain'
"""

from cacheness.storage.handlers.arrow import ArrowHandler
from cacheness.storage.handlers.base import (
    BUILTIN_PRIORITIES,
    DATAFRAME_FORMATS,
    DEFAULT_OPTIONS,
    MMAP_MODES,
    FormatInfo,
    Handler,
    HandlerRegistry,
    ObjectDeclinedError,
    SerializationOptions,
    default_registry,
    get_handler,
    handler_for,
    list_handlers,
    register_handler,
    unregister_handler,
)
from cacheness.storage.handlers.numpy import NumpyHandler
from cacheness.storage.handlers.objects import ObjectsHandler
from cacheness.storage.handlers.pandas import PandasHandler
from cacheness.storage.handlers.plain import PlainHandler
from cacheness.storage.handlers.polars import PolarsHandler
from cacheness.storage.handlers.raw import RawHandler

__all__ = [
    "BUILTIN_PRIORITIES",
    "DATAFRAME_FORMATS",
    "DEFAULT_OPTIONS",
    "MMAP_MODES",
    "ArrowHandler",
    "FormatInfo",
    "Handler",
    "HandlerRegistry",
    "NumpyHandler",
    "ObjectDeclinedError",
    "ObjectsHandler",
    "PandasHandler",
    "PlainHandler",
    "PolarsHandler",
    "RawHandler",
    "SerializationOptions",
    "default_registry",
    "get_handler",
    "handler_for",
    "list_handlers",
    "register_handler",
    "unregister_handler",
]

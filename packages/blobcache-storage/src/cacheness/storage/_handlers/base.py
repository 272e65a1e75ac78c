"""The handler interface: :class:`Handler`, :class:`FormatInfo` and :class:`SerializationOptions`.

A :class:`Handler` turns one kind of Python object into stored bytes and back:
``can_handle(obj)`` says whether it takes the object, ``dump(obj, sink, options)``
streams the stored (compressed) bytes into a write-only ``sink`` and returns a
:class:`FormatInfo` that says how to read them, and ``load(source, info, options)``
reads them back. The metadata entry keeps ``handler``, ``format``, ``codec``,
``raw_size`` and ``format_info`` (the ``details``), so loading never guesses.

A handler's ``dump`` may decline an object it cannot store faithfully by raising
:class:`ObjectDeclinedError` before writing a byte; the registry (``registry.py``, which
picks the handler of an object) then moves on to the next handler (this is how a
DataFrame Arrow cannot hold ends up pickled).

Example:
    >>> import io
    >>> from cacheness.storage import get_handler
    >>> raw = get_handler("raw")
    >>> sink = io.BytesIO()
    >>> info = raw.dump(b"stored bytes", sink, SerializationOptions(codec="none"))
    >>> fields = info.entry_fields()  # what the metadata entry records
    >>> fields["handler"], fields["format"], fields["raw_size"], fields["format_info"]
    ('raw', 'bytes', 12, {'kind': 'bytes'})
    >>> raw.load(io.BytesIO(sink.getvalue()), info, SerializationOptions())
    b'stored bytes'
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Final

import msgspec

from cacheness.storage._compression import CodecSettings, check_codec
from cacheness.storage.errors import ConfigError

if TYPE_CHECKING:
    from cacheness.storage._entry import Entry
    from cacheness.storage._metadata.base import PayloadInfo


DATAFRAME_FORMATS: Final[tuple[str, ...]] = ("auto", "arrow", "parquet")
"""Values of :attr:`SerializationOptions.dataframe_format`."""

MMAP_MODES: Final[tuple[str | None, ...]] = (None, "r", "c")
"""Values of :attr:`SerializationOptions.mmap_mode` (read-only or copy-on-write)."""

_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


# --------------------------------------------------------------------------- records


class FormatInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What a handler wrote, and what its ``load`` needs to read it back.

    Attributes:
        handler: name of the handler that wrote the bytes (``"numpy"``...).
        format: the handler's format tag (``"blosc2-chunks"``, ``"arrow-ipc"``...).
        codec: compression of the stored bytes (``"zstd"``, ``"blosc2"``, ``"none"``...).
        raw_size: bytes before compression; decoders refuse to produce more.
        details: small JSON-able facts ``load`` needs (dtype, shape, kind...). They
            are stored in the metadata entry as ``format_info``.

    Example:
        >>> info = FormatInfo(handler="raw", format="bytes", codec="none", raw_size=3)
        >>> info.details
        {}
    """

    handler: str
    format: str
    codec: str
    raw_size: int
    details: dict[str, Any] = msgspec.field(default_factory=dict)

    @classmethod
    def from_entry(cls, entry: Entry | PayloadInfo) -> FormatInfo:
        """Return the format info recorded in a metadata entry (or its payload fields).

        The one mapping between format info and entry fields, with :meth:`entry_fields`.

        Example:
            >>> from cacheness.storage import Entry
            >>> entry = Entry.new("k", handler="raw", format="bytes", raw_size=3)
            >>> FormatInfo.from_entry(entry).handler
            'raw'
        """
        return cls(
            handler=entry.handler,
            format=entry.format,
            codec=entry.codec,
            raw_size=entry.raw_size,
            details=dict(entry.format_info),
        )

    def entry_fields(self) -> dict[str, Any]:
        """Return the entry fields that record this format info (``details`` is
        ``format_info`` there).

        Example:
            >>> FormatInfo(handler="raw", format="bytes", codec="none", raw_size=3).entry_fields()
            {'handler': 'raw', 'format': 'bytes', 'codec': 'none', 'raw_size': 3, 'format_info': {}}
        """
        return {
            "handler": self.handler,
            "format": self.format,
            "codec": self.codec,
            "raw_size": self.raw_size,
            "format_info": dict(self.details),
        }


class SerializationOptions(CodecSettings, frozen=True, kw_only=True):
    """Settings passed to every handler, for one store or one call.

    The compression fields are those of
    :class:`~cacheness.storage._compression.CodecSettings` (options are codec settings).

    Attributes:
        codec: ``"auto"`` (each handler's default, skipped for small or incompressible
            data), ``"zstd"``, ``"gzip"``, ``"blosc2"`` or ``"none"``. Arrow-based
            formats apply ``zstd`` inside the Arrow stream; see the serialization docs.
        level: zstd (-7..22, default 3) or gzip (0..9, default 6) level.
        blosc2_codec: Blosc2 inner codec (``lz4``, ``lz4hc``, ``zstd``, ``zlib``, ``blosclz``).
        blosc2_clevel: Blosc2 level 0..9.
        blosc2_shuffle: ``auto`` (bit shuffle for Arrow tables, byte shuffle for
            arrays and bytes), ``noshuffle``, ``shuffle`` or ``bitshuffle``.
        nthreads: compression threads; None uses every core this process may use.
        chunk_size: streaming chunk in bytes (Blosc2 chunk, array slab).
        auto_min_size: ``auto`` never compresses payloads smaller than this.
        auto_sample_size: bytes ``auto`` compresses to decide.
        auto_min_saving: ``auto`` compresses only if the sample shrinks by this fraction.
        dataframe_format: ``"auto"`` (pandas and pyarrow: Arrow IPC; polars: Parquet),
            ``"arrow"`` or ``"parquet"`` (portable, smaller, slower).
        allow_cloudpickle: fall back to cloudpickle for lambdas, closures and local
            classes that pickle refuses. Off by default: such blobs embed code that
            only loads under the same Python version and source.
        mmap_mode: ``"r"`` or ``"c"`` to memory-map uncompressed numpy arrays stored in
            local files (as ``numpy.load``); writable modes are refused because a
            stored blob must not change under its hash.

    Raises:
        ConfigError: a value is unknown or out of range.

    Example:
        >>> options = SerializationOptions(codec="zstd", level=19)
        >>> options.level_for("zstd")  # options are codec settings
        19
        >>> SerializationOptions.from_mapping({"codec": "lz5"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        cacheness.storage.errors.ConfigError: unknown compression codec 'lz5'; known: auto, ...
    """

    codec: str = "auto"
    dataframe_format: str = "auto"
    allow_cloudpickle: bool = False
    mmap_mode: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_codec(self.codec, allow_auto=True)
        if self.dataframe_format not in DATAFRAME_FORMATS:
            raise ConfigError(
                f"dataframe_format must be one of {', '.join(DATAFRAME_FORMATS)}; "
                f"got {self.dataframe_format!r}"
            )
        if self.mmap_mode not in MMAP_MODES:
            raise ConfigError(
                f"mmap_mode must be None, 'r' (read-only) or 'c' (copy-on-write); got "
                f"{self.mmap_mode!r}. Writable maps ('r+', 'w+') are refused: a stored blob "
                "must not change under its recorded hash"
            )
        if not isinstance(self.allow_cloudpickle, bool):
            raise ConfigError(f"allow_cloudpickle must be a bool, got {self.allow_cloudpickle!r}")

    def replace(self, **changes: Any) -> SerializationOptions:
        """Return a copy with ``changes`` applied (validated).

        Example:
            >>> SerializationOptions().replace(codec="none").codec
            'none'
        """
        return msgspec.structs.replace(self, **changes)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SerializationOptions:
        """Build options from a dict (e.g. a config file section).

        Raises:
            ConfigError: unknown keys, wrong types or invalid values.

        Example:
            >>> SerializationOptions.from_mapping({"codec": "gzip", "level": 9}).level
            9
        """
        unknown = set(values) - set(cls.__struct_fields__)
        if unknown:
            raise ConfigError(
                f"unknown serialization options: {', '.join(sorted(unknown))}; "
                f"known: {', '.join(cls.__struct_fields__)}"
            )
        try:
            return msgspec.convert(dict(values), cls)
        except msgspec.ValidationError as exc:
            if isinstance(exc.__cause__, ConfigError):  # raised by __post_init__
                raise exc.__cause__ from None
            raise ConfigError(f"invalid serialization options: {exc}") from exc


DEFAULT_OPTIONS: Final = SerializationOptions()
"""The options used when none are given."""


# --------------------------------------------------------------------------- handler


class Handler(ABC):
    """Turns one kind of object into stored bytes and back.

    Subclasses set ``name`` (lowercase, ``[a-z0-9_.-]``) and implement the three
    methods. ``can_handle`` must be cheap and must not import heavy packages: check
    :func:`cacheness.storage._optional.is_loaded` before ``isinstance`` against an
    optional library's types.

    Example:
        >>> import io, json
        >>> class JsonHandler(Handler):
        ...     name = "json-list"
        ...     def can_handle(self, obj):
        ...         return type(obj) is list
        ...     def dump(self, obj, sink, options):
        ...         data = json.dumps(obj).encode()
        ...         sink.write(data)
        ...         return self.format_info("json", "none", len(data))
        ...     def load(self, source, info, options, *, local_path=None):
        ...         return json.loads(source.read())
        >>> handler = JsonHandler()
        >>> sink = io.BytesIO()
        >>> info = handler.dump([1, 2], sink, DEFAULT_OPTIONS)
        >>> handler.load(io.BytesIO(sink.getvalue()), info, DEFAULT_OPTIONS)
        [1, 2]
    """

    name: ClassVar[str]
    executes_code: ClassVar[bool] = False
    """True when loading this handler's bytes can run code they name (pickle): a store
    with signing on never loads such bytes without a valid signature. Set it on a
    custom handler that unpickles or evaluates anything."""

    @abstractmethod
    def can_handle(self, obj: Any) -> bool:
        """Return True if this handler stores ``obj`` (cheaply; no heavy imports)."""

    @abstractmethod
    def dump(self, obj: Any, sink: BinaryIO, options: SerializationOptions) -> FormatInfo:
        """Write ``obj``'s stored bytes to ``sink``; return what ``load`` needs.

        ``sink`` is write-only: never seek, tell or close it.

        Raises:
            ObjectDeclinedError: (before writing anything) another handler should take it.
            SerializationError: ``obj`` cannot be stored.
        """

    @abstractmethod
    def load(
        self,
        source: BinaryIO,
        info: FormatInfo,
        options: SerializationOptions,
        *,
        local_path: Path | None = None,
    ) -> Any:
        """Read the object back from ``source`` (the stored bytes).

        ``local_path`` is set when the same bytes sit in a local file (memory-mapping).

        Raises:
            IntegrityError: the bytes do not match what ``info`` records.
            SerializationError: the bytes cannot be decoded.
        """

    def format_info(self, format: str, codec: str, raw_size: int, /, **details: Any) -> FormatInfo:
        """Return a :class:`FormatInfo` naming this handler (a convenience for ``dump``)."""
        return FormatInfo(
            handler=self.name, format=format, codec=codec, raw_size=raw_size, details=details
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={getattr(self, 'name', None)!r})"

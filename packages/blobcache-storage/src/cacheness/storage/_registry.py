"""Registries of metadata and blob backends, by name.

Backends are registered by name, either as a class or as a ``"module:Class"`` path that
is imported at first use (so registering the ``s3`` backend never imports boto3).
Third-party packages may also advertise backends through the entry-point groups
``cacheness.storage.metadata_backends`` and ``cacheness.storage.blob_backends``;
manual registration wins over an entry point of the same name.

Example:
    >>> from cacheness.storage import list_blob_backends, list_metadata_backends
    >>> "sqlite" in list_metadata_backends() and "filesystem" in list_blob_backends()
    True
    >>> from cacheness.storage import get_metadata_backend
    >>> get_metadata_backend("sqlit")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cacheness.storage.errors.ConfigError: unknown metadata backend 'sqlit' (did you mean...
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from cacheness.storage._optional import import_path, install_hint
from cacheness.storage._validate import did_you_mean
from cacheness.storage.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    from cacheness.storage._blob.base import BlobBackend
    from cacheness.storage._metadata.base import MetadataBackend


T = TypeVar("T")


class _Registration(NamedTuple):
    target: type | str
    extra: str | None


class BackendRegistry(Generic[T]):
    """A name → backend class mapping with lazy import and install hints.

    Args:
        kind: what is registered, for messages (``"metadata backend"``).
        base: ``"module:Class"`` of the abstract base every backend must subclass.
        entry_point_group: entry-point group scanned for third-party backends.

    Example:
        >>> registry = BackendRegistry("widget", "collections.abc:Sized", "no.such.group")
        >>> registry.register("list", list)
        >>> registry.create("list", ())
        []
        >>> registry.names()
        ['list']
    """

    def __init__(self, kind: str, base: str, entry_point_group: str) -> None:
        self.kind = kind
        self._base_path = base
        self._group = entry_point_group
        self._entries: dict[str, _Registration] = {}
        self._lock = threading.Lock()

    @property
    def base(self) -> type:
        """The abstract base class every registered backend must subclass."""
        base = import_path(self._base_path)
        if not isinstance(base, type):
            raise TypeError(f"{self._base_path!r} is not a class")
        return base

    def register(
        self,
        name: str,
        backend: type[T] | str,
        *,
        extra: str | None = None,
        replace: bool = True,
    ) -> None:
        """Register ``backend`` (a class or a ``"module:Class"`` path) under ``name``.

        Args:
            name: the name users pass to :meth:`create`.
            backend: the class, or its import path for lazy loading.
            extra: the ``blobcache-storage`` extra that installs its dependencies, used
                in the error raised when they are missing.
            replace: when False, registering an existing name raises ``ConfigError``.

        Raises:
            TypeError: ``backend`` is a class that does not subclass the base class.
            ConfigError: ``name`` is empty, or taken and ``replace`` is False.
        """
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if isinstance(backend, type):
            self._check_subclass(name, backend)
        elif not (isinstance(backend, str) and ":" in backend):
            raise TypeError(
                f"register a {self.kind} as a class or a 'module:Class' string, got {backend!r}"
            )
        with self._lock:
            if not replace and name in self._entries:
                raise ConfigError(f"a {self.kind} named {name!r} is already registered")
            self._entries[name] = _Registration(backend, extra)

    def unregister(self, name: str) -> None:
        """Remove ``name``; unknown names raise ``ConfigError``."""
        with self._lock:
            if name not in self._entries:
                raise self._unknown(name)
            del self._entries[name]

    def names(self) -> list[str]:
        """Return the registered names, sorted, including entry-point backends."""
        with self._lock:
            names = set(self._entries)
        names.update(ep.name for ep in _entry_points(self._group))
        return sorted(names)

    def get_class(self, name: str) -> type[T]:
        """Return the backend class registered as ``name``, importing it if needed.

        Raises:
            ConfigError: no backend has that name (the message lists the known ones).
            MissingDependencyError: the backend's optional dependencies are missing.
            TypeError: a lazily registered target is not a subclass of the base.
        """
        with self._lock:
            registration = self._entries.get(name)
        if registration is None:
            registration = self._from_entry_point(name)
        target = registration.target
        if isinstance(target, str):
            try:
                target = import_path(target)
            except MissingDependencyError:
                raise
            except ImportError as exc:
                extra = registration.extra
                hint = f"; install it with: {install_hint(extra)}" if extra else ""
                raise MissingDependencyError(
                    f"the {name!r} {self.kind} cannot be imported ({exc}){hint}"
                ) from exc
            if not isinstance(target, type):
                raise TypeError(f"{registration.target!r} is not a class")
            self._check_subclass(name, target)
            with self._lock:
                if self._entries.get(name) is registration:
                    self._entries[name] = _Registration(target, registration.extra)
        return target

    def create(self, name: str, *args: Any, **options: Any) -> T:
        """Instantiate the backend registered as ``name`` with ``options``.

        Raises:
            ConfigError: an option the backend does not take (with the closest name),
                or one it needs missing: the message lists the options it takes.
        """
        cls = self.get_class(name)
        _check_arguments(cls, name, self.kind, args, options)
        return cls(*args, **options)

    def _from_entry_point(self, name: str) -> _Registration:
        for ep in _entry_points(self._group, name):
            return _Registration(ep.value, None)
        raise self._unknown(name)

    def _unknown(self, name: str) -> ConfigError:
        known = self.names()
        return ConfigError(
            f"unknown {self.kind} {name!r}{did_you_mean(name, known)}; "
            f"known: {', '.join(known) or 'none'}"
        )

    def _check_subclass(self, name: str, backend: type) -> None:
        base = self.base
        if not issubclass(backend, base):
            raise TypeError(
                f"{self.kind} {name!r}: {backend.__qualname__} must subclass {base.__qualname__}"
            )


def _entry_points(group: str, name: str | None = None) -> Any:
    """The installed entry points of ``group`` (``importlib.metadata`` loads on first use:
    it reads every installed distribution's metadata)."""
    from importlib.metadata import entry_points

    if name is None:
        return entry_points(group=group)
    return entry_points(group=group, name=name)


metadata_backends: BackendRegistry[MetadataBackend] = BackendRegistry(
    "metadata backend",
    "cacheness.storage._metadata.base:MetadataBackend",
    "cacheness.storage.metadata_backends",
)
"""The registry of metadata backends (``memory``, ``json``, ``sqlite``, ``postgresql``)."""

blob_backends: BackendRegistry[BlobBackend] = BackendRegistry(
    "blob backend",
    "cacheness.storage._blob.base:BlobBackend",
    "cacheness.storage.blob_backends",
)
"""The registry of blob backends (``filesystem``, ``memory``, ``s3``, ``tiered``, ``failover``)."""

for _name, _path, _extra in (
    ("memory", "cacheness.storage._metadata.memory:MemoryMetadataBackend", None),
    ("json", "cacheness.storage._metadata.json:JsonMetadataBackend", None),
    ("sqlite", "cacheness.storage._metadata.sqlite:SqliteMetadataBackend", None),
    ("postgresql", "cacheness.storage._metadata.postgresql:PostgresMetadataBackend", "postgresql"),
):
    metadata_backends.register(_name, _path, extra=_extra)

for _name, _path, _extra in (
    ("filesystem", "cacheness.storage._blob.filesystem:FilesystemBlobBackend", None),
    ("memory", "cacheness.storage._blob.memory:MemoryBlobBackend", None),
    ("s3", "cacheness.storage._blob.s3:S3BlobBackend", "s3"),
    ("tiered", "cacheness.storage._blob.tiered:TieredBlobBackend", None),
    ("failover", "cacheness.storage._blob.failover:FailoverBlobBackend", None),
):
    blob_backends.register(_name, _path, extra=_extra)


def register_metadata_backend(
    name: str, backend: type[MetadataBackend] | str, *, replace: bool = True
) -> None:
    """Register a metadata backend class (or ``"module:Class"`` path) under ``name``.

    Raises:
        TypeError: the class does not subclass ``MetadataBackend``.

    Example:
        >>> from cacheness.storage import MemoryMetadataBackend
        >>> class AuditedBackend(MemoryMetadataBackend): ...
        >>> register_metadata_backend("audited", AuditedBackend)
        >>> type(get_metadata_backend("audited")).__name__
        'AuditedBackend'
        >>> unregister_metadata_backend("audited")
    """
    metadata_backends.register(name, backend, replace=replace)


def unregister_metadata_backend(name: str) -> None:
    """Remove the metadata backend registered as ``name``."""
    metadata_backends.unregister(name)


def get_metadata_backend(name: str, **options: Any) -> MetadataBackend:
    """Create the metadata backend registered as ``name`` with ``options``.

    Raises:
        ConfigError: unknown name (the message lists the known ones).
        MissingDependencyError: the backend's optional dependency is missing.

    Example:
        >>> backend = get_metadata_backend("memory")
        >>> backend.count()
        0
    """
    return metadata_backends.create(name, **options)


def get_metadata_backend_class(name: str) -> type[MetadataBackend]:
    """Return the class registered as ``name``, importing it if needed, without creating one.

    What a configuration check needs: the constructor's options and the backend's
    ``scope``, with nothing opened.

    Raises:
        ConfigError: unknown name (the message lists the known ones).
        MissingDependencyError: the backend's optional dependency is missing.

    Example:
        >>> get_metadata_backend_class("json").scope
        'host'
    """
    return metadata_backends.get_class(name)


def list_metadata_backends() -> list[str]:
    """Return the names of the registered metadata backends."""
    return metadata_backends.names()


def register_blob_backend(
    name: str, backend: type[BlobBackend] | str, *, replace: bool = True
) -> None:
    """Register a blob backend class (or ``"module:Class"`` path) under ``name``.

    Raises:
        TypeError: the class does not subclass ``BlobBackend``.

    Example:
        >>> from cacheness.storage import MemoryBlobBackend
        >>> class MyBlobs(MemoryBlobBackend): ...
        >>> register_blob_backend("mine", MyBlobs)
        >>> "mine" in list_blob_backends()
        True
        >>> unregister_blob_backend("mine")
    """
    blob_backends.register(name, backend, replace=replace)


def unregister_blob_backend(name: str) -> None:
    """Remove the blob backend registered as ``name``."""
    blob_backends.unregister(name)


def get_blob_backend(name: str, **options: Any) -> BlobBackend:
    """Create the blob backend registered as ``name`` with ``options``.

    Raises:
        ConfigError: unknown name (the message lists the known ones).
        MissingDependencyError: the backend's optional dependency is missing.

    Example:
        >>> blobs = get_blob_backend("memory")
        >>> blobs.write_bytes("greeting", b"hi").size
        2
    """
    return blob_backends.create(name, **options)


def get_blob_backend_class(name: str) -> type[BlobBackend]:
    """Return the class registered as ``name``, importing it if needed, without creating one.

    Raises:
        ConfigError: unknown name (the message lists the known ones).
        MissingDependencyError: the backend's optional dependency is missing.

    Example:
        >>> get_blob_backend_class("filesystem").scope
        'host'
    """
    return blob_backends.get_class(name)


def list_blob_backends() -> list[str]:
    """Return the names of the registered blob backends."""
    return blob_backends.names()


def _check_arguments(
    cls: type, name: str, kind: str, args: tuple[Any, ...], options: dict[str, Any]
) -> None:
    """Raise ``ConfigError`` when ``cls(*args, **options)`` cannot bind: say what to pass."""
    import inspect

    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):  # pragma: no cover - a class without a signature
        return
    try:
        signature.bind(*args, **options)
    except TypeError as exc:
        takes = [p for p in signature.parameters if p not in ("args", "kwargs")]
        unknown = [option for option in options if option not in signature.parameters]
        hint = "".join(f"; {o!r}{did_you_mean(o, takes)}" for o in unknown)
        raise ConfigError(
            f"the {name!r} {kind}: {exc}{hint}; it takes: {', '.join(takes)}"
        ) from None

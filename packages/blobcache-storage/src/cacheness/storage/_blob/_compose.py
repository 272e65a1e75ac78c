"""Helpers for backends built from other backends: tiered and failover (private)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cacheness.storage._blob.base import BlobBackend
from cacheness.storage._pairing import Scope
from cacheness.storage.errors import (
    BlobExistsError,
    BlobNotFoundError,
    ConfigError,
    InvalidBlobNameError,
    StorageError,
)

BackendSpec = BlobBackend | Mapping[str, Any] | str
"""A backend instance, a registry name, or ``{"backend": name, **options}``."""

_SCOPE_ORDER: dict[Scope, int] = {"process": 0, "host": 1, "shared": 2}


def make_backend(spec: BackendSpec, role: str) -> BlobBackend:
    """Return ``spec`` if it is a backend, else create it through the registry.

    Raises:
        ConfigError: the spec is neither a backend, a name, nor a mapping with ``backend``.
    """
    if isinstance(spec, BlobBackend):
        return spec
    from cacheness.storage._registry import get_blob_backend

    if isinstance(spec, str):
        return get_blob_backend(spec)
    if isinstance(spec, Mapping):
        options = dict(spec)
        name = options.pop("backend", None)
        if not isinstance(name, str):
            raise ConfigError(
                f"the {role} backend mapping needs a 'backend' key naming a registered blob "
                f"backend, e.g. {{'backend': 's3', 'bucket': ...}}; got {dict(spec)!r}"
            )
        return get_blob_backend(name, **options)
    raise ConfigError(
        f"the {role} backend must be a BlobBackend, a backend name or a mapping; "
        f"got {type(spec).__name__}"
    )


def narrowest_scope(*backends: BlobBackend) -> Scope:
    """Return the narrowest ``scope`` among ``backends`` (process < host < shared)."""
    return min((backend.scope for backend in backends), key=_SCOPE_ORDER.__getitem__)


def is_outage(exc: BaseException) -> bool:
    """Return True for errors that mean "this backend failed", not "bad request".

    A missing blob, a taken name or an invalid name are answers, not failures.
    """
    if isinstance(exc, BlobNotFoundError | BlobExistsError | InvalidBlobNameError):
        return False
    return isinstance(exc, StorageError | OSError)

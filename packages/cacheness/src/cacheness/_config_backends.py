"""Backend sections of the config: options, default locations, checks (private).

Turns a ``metadata`` or ``blob`` section into the name and keyword options
``BlobStore`` opens the backend with, and checks them against the backend's
constructor without opening anything (no connection, no directory created).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cacheness.storage import (
    BlobBackend,
    ConfigError,
    MetadataBackend,
    MissingDependencyError,
    Scope,
    did_you_mean,
    get_blob_backend_class,
    get_metadata_backend_class,
    pairing_problem,
)

__all__ = ["Kind", "ResolvedBackend", "backend_problems", "pairing_problems", "resolve_backend"]

Kind = Literal["metadata", "blob"]

# section field -> backend option it fills (None values and an empty prefix are skipped)
_SHORTCUTS: dict[Kind, dict[str, str]] = {
    "metadata": {"connection_url": "url", "table": "table", "schema": "schema", "path": "path"},
    "blob": {
        "root": "root",
        "bucket": "bucket",
        "prefix": "prefix",
        "endpoint_url": "endpoint_url",
        "region": "region",
        "shard_chars": "shard_chars",
    },
}
# option names used in the planning documents -> the backends' own names
_ALIASES: dict[Kind, dict[str, str]] = {
    "metadata": {"connection_url": "url", "table_name": "table"},
    "blob": {},
}
# backend name -> (option, location under cache_dir) filled in when not given
_DEFAULT_LOCATIONS: dict[Kind, dict[str, tuple[str, str]]] = {
    "metadata": {"sqlite": ("path", "index.sqlite"), "json": ("path", "index.json")},
    "blob": {"filesystem": ("root", "blobs"), "tiered": ("cache_dir", "tiered")},
}
# where a required option is usually set, for "missing option" messages
_HINTS = {
    ("metadata", "url"): "set metadata.connection_url (or CACHENESS_METADATA_URL)",
    ("blob", "bucket"): "set blob.bucket (or CACHENESS_S3_BUCKET)",
    ("blob", "remote"): "set blob.options['remote'], e.g. {'backend': 's3', 'bucket': ...}",
}
_SQLITE_URL = "sqlite:///"
_SCOPE_ORDER: dict[Scope, int] = {"process": 0, "host": 1, "shared": 2}


def _base(kind: Kind) -> type:
    return MetadataBackend if kind == "metadata" else BlobBackend


@dataclass
class ResolvedBackend:
    """One backend section resolved: what to open, with which options, and what is wrong."""

    kind: Kind
    backend: Any
    options: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)  # option -> config field it came from
    problems: list[str] = field(default_factory=list)
    nested_in: str | None = None  # for a tiered/failover part: the option that holds it

    @property
    def name(self) -> str | None:
        """The registered name, or None for an instance or a non-name."""
        return self.backend if isinstance(self.backend, str) else None

    def put(self, option: str, value: Any, origin: str) -> None:
        """Set ``option`` from ``origin``, recording a conflict with an earlier value."""
        if option in self.options and self.options[option] != value:
            self.problems.append(
                f"{origin} ({_shown(option, value)}) conflicts with "
                f"{self.origins[option]} ({_shown(option, self.options[option])}); set only one"
            )
            return
        self.options[option] = value
        self.origins[option] = origin


def _shown(option: str, value: Any) -> str:
    if option in ("url", "connection_url") and isinstance(value, str):
        return redact_url(value)
    return repr(value)


def redact_url(url: str) -> str:
    """Return ``url`` with the password of its ``user:password@`` part masked."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def resolve_backend(kind: Kind, section: Any, cache_dir: Path) -> ResolvedBackend:
    """Merge a section's options, shortcut fields and default locations.

    Problems found (conflicting values, settings given for a backend instance, a bad
    backend value) are collected in ``problems``; nothing is imported or opened.
    """
    backend = section.backend
    resolved = ResolvedBackend(kind, backend)
    if not isinstance(backend, str | _base(kind)):
        resolved.problems.append(
            f"{kind}.backend must be a registered {kind} backend name or a "
            f"{_base(kind).__name__} instance, got {type(backend).__name__} {backend!r}"
        )
        return resolved
    if not isinstance(section.options, Mapping):
        return resolved  # reported by the type check
    aliases = _ALIASES[kind]
    name: str
    for name, value in section.options.items():
        target = aliases.get(name, name)
        resolved.put(target, value, f"{kind}.options[{name!r}]")
    for attribute, option in _SHORTCUTS[kind].items():
        value = getattr(section, attribute)
        if value is None or (attribute == "prefix" and value == ""):
            continue
        resolved.put(option, value, f"{kind}.{attribute}")
    if not isinstance(backend, str):
        if resolved.options:
            given = ", ".join(sorted(set(resolved.origins.values())))
            resolved.problems.append(
                f"{given}: settings apply to a backend given by name; {kind}.backend is a "
                f"ready {type(backend).__name__} instance, so configure that object instead"
            )
        resolved.options = {}
        return resolved
    if backend == "sqlite" and "url" in resolved.options:
        _sqlite_url_to_path(resolved)
    location = _DEFAULT_LOCATIONS[kind].get(backend)
    if location is not None and location[0] not in resolved.options:
        resolved.options[location[0]] = cache_dir / location[1]
        resolved.origins[location[0]] = "cache_dir"
    return resolved


def _sqlite_url_to_path(resolved: ResolvedBackend) -> None:
    url = resolved.options.pop("url")
    origin = resolved.origins.pop("url")
    if not isinstance(url, str) or not url.startswith(_SQLITE_URL):
        resolved.problems.append(
            f"{origin}: the sqlite metadata backend takes a file, not {_shown('url', url)}; "
            "set metadata.path (or a sqlite:///path/to/index.sqlite URL)"
        )
        return
    resolved.put("path", url[len(_SQLITE_URL) :], origin)


def backend_class(kind: Kind, name: str) -> tuple[type | None, str | None]:
    """Return the class registered as ``name``, or None and why it cannot be used."""
    try:
        if kind == "metadata":
            return get_metadata_backend_class(name), None
        return get_blob_backend_class(name), None
    except (ConfigError, MissingDependencyError, TypeError) as exc:
        return None, str(exc)


def backend_problems(resolved: ResolvedBackend, where: str | None = None) -> list[str]:
    """Check a resolved backend against its class: known name, options, required options."""
    kind = resolved.kind
    where = where or f"{kind}.backend"
    problems = list(resolved.problems)
    name = resolved.name
    if name is None:
        return problems
    cls, error = backend_class(kind, name)
    if cls is None:
        return [*problems, f"{where}: {error}"]
    problems += _option_problems(resolved, cls, name)
    if name == "postgresql" and isinstance(resolved.options.get("url"), str):
        url = resolved.options["url"]
        if not url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
            problems.append(
                f"{resolved.origins['url']}: the postgresql metadata backend needs a "
                f"postgresql://user@host/database URL, got {_shown('url', url)}"
            )
    if name == "sqlite" and str(resolved.options.get("path")) in ("", ":memory:"):
        problems.append(
            f"{resolved.origins['path']}: the sqlite metadata backend needs a file; "
            "for an index that lives in memory use metadata backend 'memory'"
        )
    if kind == "blob" and _nested_options(cls):
        for option in _nested_options(cls):
            spec = resolved.options.get(option)
            if spec is not None:
                problems += _nested_problems(spec, resolved.origins.get(option, option))
    return problems


def _option_problems(resolved: ResolvedBackend, cls: type, name: str) -> list[str]:
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - a C class without a signature
        return []
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    accepted = [p.name for p in parameters if p.kind in kinds]
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    problems = []
    label = f"the {name} {resolved.kind} backend"
    if not open_ended:
        for option in resolved.options:
            if option not in accepted:
                problems.append(
                    f"{resolved.origins.get(option, resolved.kind)}: {label} has no option "
                    f"{option!r}{did_you_mean(option, accepted)}; it takes: {', '.join(accepted)}"
                )
    for parameter in parameters:
        if (
            parameter.kind in kinds
            and parameter.default is inspect.Parameter.empty
            and parameter.name not in resolved.options
        ):
            where = resolved.nested_in or resolved.kind
            if resolved.nested_in:
                hint = f"add {parameter.name!r} to {resolved.nested_in}"
            else:
                hint = _HINTS.get(
                    (resolved.kind, parameter.name),
                    f"set {resolved.kind}.options[{parameter.name!r}]",
                )
            problems.append(f"{where}: {label} needs {parameter.name!r}; {hint}")
    return problems


def _nested_options(cls: type) -> tuple[str, ...]:
    """The options of a blob backend composed of others (tiered, failover), else ``()``."""
    options = getattr(cls, "nested_options", ())
    return options if isinstance(options, tuple) else ()


def _nested_spec(spec: Any) -> tuple[Any, dict[str, Any]] | None:
    """Split a nested blob backend spec into (backend, options), or None if malformed."""
    if isinstance(spec, BlobBackend | str):
        return spec, {}
    if isinstance(spec, Mapping) and isinstance(spec.get("backend"), str):
        options = {k: v for k, v in spec.items() if k != "backend"}
        return spec["backend"], options
    return None


def _nested_problems(spec: Any, where: str) -> list[str]:
    split = _nested_spec(spec)
    if split is None:
        return [
            f"{where}: expected a blob backend name or a mapping with a 'backend' key, "
            f"e.g. {{'backend': 's3', 'bucket': ...}}; got {spec!r}"
        ]
    backend, options = split
    nested = ResolvedBackend("blob", backend, nested_in=where)
    for option, value in options.items():
        nested.put(option, value, f"{where}[{option!r}]")
    return backend_problems(nested, where)


def blob_scope(backend: Any, options: Mapping[str, Any]) -> Scope | None:
    """Return who can see the blobs (instances, names and tiered/failover specs), or None."""
    if isinstance(backend, BlobBackend):
        return backend.scope
    if not isinstance(backend, str):
        return None
    cls, _ = backend_class("blob", backend)
    if cls is None:
        return None
    if _nested_options(cls):
        scopes = []
        for option in _nested_options(cls):
            split = _nested_spec(options.get(option))
            scope = None if split is None else blob_scope(*split)
            if scope is None:
                return None
            scopes.append(scope)
        return min(scopes, key=_SCOPE_ORDER.__getitem__)
    return _declared_scope(cls)


def metadata_scope(backend: Any) -> Scope | None:
    """Return who can share the index, or None when unknown."""
    if isinstance(backend, MetadataBackend):
        return backend.scope
    if not isinstance(backend, str):
        return None
    cls, _ = backend_class("metadata", backend)
    return _declared_scope(cls)


def _declared_scope(cls: type | None) -> Scope | None:
    """The scope a backend class declares (a class attribute), or None when only its
    instances know (a property: a backend composed of others)."""
    scope = getattr(cls, "scope", None)
    return scope if scope in _SCOPE_ORDER else None


def pairing_problems(metadata: ResolvedBackend, blob: ResolvedBackend) -> list[str]:
    """Return the pairing refusal (ARCHITECTURE §3) for the two backends, if any."""
    m_scope = metadata_scope(metadata.backend)
    b_scope = blob_scope(blob.backend, blob.options)
    if m_scope is None or b_scope is None:
        return []
    m_name = getattr(metadata.backend, "name", metadata.backend)
    b_name = getattr(blob.backend, "name", blob.backend)
    problem = pairing_problem(str(m_name), m_scope, str(b_name), b_scope)
    return [f"metadata/blob pairing: {problem}"] if problem else []

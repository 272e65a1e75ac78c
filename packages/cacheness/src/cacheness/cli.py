"""The ``cacheness`` command line: see inside a cache and look after it.

Installed with the ``cli`` extra (``pip install "cacheness[cli]"``); run ``cacheness
...`` or ``python -m cacheness ...``. It is the storage command line
(``cacheness.storage.cli``, ``blobcache``) with a cache behind it: the cache is opened
as the library opens it (``--cache-dir``, ``--config FILE``, or the ``CACHENESS_*``
environment variables), ``name=value`` filters are key parameters, ``info`` takes a
cache key or key parameters, ``ls`` shows expiry, and ``gc`` also removes expired
entries. The library never imports this module.

Example:
    >>> from cacheness.cli import main
    >>> import tempfile
    >>> main(["--cache-dir", tempfile.mkdtemp(), "--json", "stats"])  # doctest: +ELLIPSIS
    {"hits": 0, ...}
    0
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal

import click

from cacheness.cache import cacheness, migrate
from cacheness.cache_entry import CacheEntry
from cacheness.config import resolve_config, validate_config
from cacheness.storage import Entry, Filter, TransferProgress, TransferReport, combine_filters
from cacheness.storage.cli import (
    Session,
    build_cli,
    human_age,
    human_size,
    parse_pairs,
    parse_value,
    parse_where,
    redacted,
    run,
)
from cacheness.storage.errors import ConfigError

__all__ = ["CacheSession", "cli", "main"]


class CacheSession(Session):
    """A :class:`~cacheness.cacheness` cache opened as the library opens it."""

    prog: ClassVar[str] = "cacheness"
    filter_help: ClassVar[str] = "key parameters"
    options: ClassVar[list[click.Option]] = [
        click.Option(
            ["--cache-dir"],
            type=click.Path(file_okay=False),
            help="Cache directory (default: CACHENESS_DIR or the user cache directory).",
        ),
        click.Option(
            ["--config", "config_file"],
            type=click.Path(dir_okay=False),
            help="Config file (.json, .yaml, .toml); CACHENESS_CONFIG is read too.",
        ),
    ]

    def __init__(self, cache: cacheness) -> None:
        self.cache = cache
        self.store = cache.store

    @classmethod
    def _settings(cls, directory: str | None, config: str | None) -> dict[str, Any]:
        return {"cache_dir": directory} if directory else {}

    @classmethod
    def open(cls, values: Mapping[str, Any]) -> CacheSession:
        return cls.open_target(values.get("cache_dir"), values.get("config_file"))

    @classmethod
    def open_target(cls, directory: str | None, config: str | None) -> CacheSession:
        if config is not None and not os.path.exists(config):
            raise ConfigError(f"no config file at {config!r}")
        settings = cls._settings(directory, config)
        if config is None:
            return cls(cacheness(**settings))
        return cls(cacheness(resolve_config(config, **settings)))

    @classmethod
    def problems(cls, values: Mapping[str, Any]) -> list[str]:
        """Every problem of the configuration the options name (nothing is opened)."""
        config = resolve_config(
            values.get("config_file"), **cls._settings(values.get("cache_dir"), None)
        )
        return validate_config(config)

    def close(self) -> None:
        self.cache.close()

    def selection(
        self, pairs: Sequence[str], where: str | None, prefix: str | None
    ) -> Filter | None:
        by_params = self.cache._params_filter({}, parse_pairs(pairs), None, "ls") if pairs else None
        return combine_filters(
            by_params, parse_where(where), {"key": {"$prefix": prefix}} if prefix else None
        )

    def find(self, spec: str) -> Entry | None:
        if "=" not in spec:
            return self.store.get_metadata(spec)
        params = {}
        for pair in spec.split(","):
            name, _, value = pair.partition("=")
            params[name.strip()] = parse_value(value.strip())
        return self.store.get_metadata(self.cache.key_for(key_params=params))

    def columns(self) -> list[str]:
        return ["key", "params", "size", "expires", "updated", "reads"]

    def row(self, entry: Entry) -> list[str]:
        described = CacheEntry.from_entry(entry)
        params = ", ".join(f"{k}={v!r}" for k, v in (described.params or {}).items())
        return [
            entry.key,
            params,
            human_size(entry.size),
            human_age(described.expires_at) if described.expires_at else "never",
            human_age(entry.updated_at),
            str(entry.access_count),
        ]

    def describe(self, entry: Entry) -> dict[str, Any]:
        return CacheEntry.from_entry(entry, self.store.location(entry)).to_dict()

    def stats(self) -> dict[str, Any]:
        return self.cache.get_stats()

    def expire(self, dry_run: bool) -> int:
        if dry_run:
            return self.cache.count(include_expired=True) - self.cache.count()
        return self.cache.cleanup_expired()

    def import_archive(
        self,
        source: Any,
        on_conflict: Literal["skip", "overwrite", "error"],
        selection: Filter | None,
        progress: Callable[[TransferProgress], None],
        trust_pickles: bool,
    ) -> TransferReport:
        return self.cache.import_from_file(
            source,
            on_conflict=on_conflict,
            filter=selection,
            progress=progress,
            trust_pickles=trust_pickles,
        )

    def migrate_to(
        self,
        target: Session,
        selection: Filter | None,
        progress: Callable[[TransferProgress], None],
        on_conflict: Literal["skip", "overwrite", "error"],
    ) -> TransferReport:
        into = target.cache if isinstance(target, CacheSession) else target.store
        return migrate(
            self.cache, into, filter=selection, progress=progress, on_conflict=on_conflict
        )

    @classmethod
    def show_config(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        config = resolve_config(
            values.get("config_file"), **cls._settings(values.get("cache_dir"), None)
        )
        return dict(redacted(config.to_dict()))


cli = build_cli(
    CacheSession,
    help="cacheness: see inside a cache and look after it (ls, info, stats, verify, "
    "repair, gc, rm, clear, export, import, migrate, config).",
)
"""The ``cacheness`` command group."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cacheness`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    return run(cli, argv, "cacheness")

"""The ``blobcache`` command line: look inside a store and look after it.

Installed with the ``cli`` extra (``pip install "blobcache-storage[cli]"``: click and
rich); ``blobcache ...`` or ``python -m cacheness.storage ...``. The library never
imports this module. ``cacheness``'s own command line is this one with a cache behind
it (:class:`Session` is what a command works on; :func:`build_cli` makes the group).

Commands: ``ls``, ``info``, ``stats``, ``verify``, ``repair``, ``gc``, ``rm``,
``clear``, ``export``, ``import``, ``migrate``, ``config show|validate``. Long
operations draw progress bars on a terminal and print plain lines otherwise; ``--json``
prints machine-readable output. Exit codes: 0 ok, 1 problems found (or an operation
failed), 2 a usage error. Errors are one line unless ``--debug``.

Example:
    >>> from cacheness.storage.cli import main
    >>> import tempfile
    >>> main(["--store", tempfile.mkdtemp(), "--json", "stats"])  # doctest: +ELLIPSIS
    {"entries": 0, "total_size": 0, ...}
    0
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

import click

from cacheness.storage import (
    BlobStore,
    Entry,
    Filter,
    TransferProgress,
    TransferReport,
    combine_filters,
    migrate,
)
from cacheness.storage.errors import (
    CacheError,
    ConfigError,
    FilterError,
    InvalidKeyError,
)

__all__ = [
    "EXIT_OK",
    "EXIT_PROBLEMS",
    "EXIT_USAGE",
    "Output",
    "Session",
    "StoreSession",
    "build_cli",
    "cli",
    "human_age",
    "human_size",
    "main",
    "parse_pairs",
    "parse_value",
    "parse_where",
    "redacted",
    "run",
]

EXIT_OK = 0
"""Everything went well."""
EXIT_PROBLEMS = 1
"""Problems were found (verify, repair, import) or the operation failed."""
EXIT_USAGE = 2
"""The command line or the configuration is wrong."""

_USAGE_ERRORS = (ConfigError, FilterError, InvalidKeyError)
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


# ------------------------------------------------------------------------------ rendering


def human_size(size: float) -> str:
    """A byte count as people read it.

    Example:
        >>> human_size(0), human_size(1234), human_size(1258291), human_size(5 * 2**40)
        ('0 B', '1.2 KiB', '1.2 MiB', '5.0 TiB')
    """
    value = float(size)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def human_age(when: datetime | None, now: datetime | None = None) -> str:
    """How long ago (or in how long) ``when`` is, coarsely.

    Example:
        >>> from datetime import datetime, timedelta, UTC
        >>> now = datetime(2026, 1, 1, tzinfo=UTC)
        >>> human_age(now - timedelta(hours=3), now), human_age(now + timedelta(days=2), now)
        ('3 h ago', 'in 2 d')
        >>> human_age(None, now), human_age(now, now)
        ('never', 'now')
    """
    if when is None:
        return "never"
    seconds = ((now or datetime.now(UTC)) - when).total_seconds()
    ahead = seconds < 0
    seconds = abs(seconds)
    if seconds < 1:
        return "now"
    for limit, unit, size in (
        (60, "s", 1),
        (3600, "min", 60),
        (86400, "h", 3600),
        (86400 * 365, "d", 86400),
        (math.inf, "y", 86400 * 365),
    ):
        if seconds < limit:
            amount = int(seconds // size)
            return f"in {amount} {unit}" if ahead else f"{amount} {unit} ago"
    raise AssertionError("unreachable")  # pragma: no cover


def _plain(value: Any) -> Any:
    """JSON-able form of report values (datetimes as ISO-8601, bytes as a length)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class Output:
    """Where a command's results go: rich tables on a terminal, JSON with ``--json``,
    progress on stderr (bars on a terminal, plain lines otherwise)."""

    def __init__(self, *, as_json: bool, debug: bool) -> None:
        from rich.console import Console

        self.as_json = as_json
        self.debug = debug
        self.console = Console(highlight=False, soft_wrap=False)
        self.errors = Console(stderr=True, highlight=False)

    def json(self, data: Any) -> None:
        """Print ``data`` as JSON on stdout."""
        click.echo(json.dumps(_plain(data), indent=None if not sys.stdout.isatty() else 2))

    def emit(self, data: Any, *lines: str) -> None:
        """``data`` as JSON under ``--json``, else the human ``lines``."""
        if self.as_json:
            self.json(data)
        else:
            for text in lines:
                click.echo(text)

    def line(self, text: str) -> None:
        """Print one line of human output (not under ``--json``)."""
        if not self.as_json:
            click.echo(text)

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[str]], title: str = "") -> None:
        """Print a table sized to the terminal."""
        from rich.table import Table

        table = Table(title=title or None, show_edge=False, header_style="bold")
        for index, column in enumerate(columns):
            table.add_column(
                column,
                no_wrap=index == 0,  # keys whole; the other columns fold to fit the terminal
                overflow="fold",
                justify="right" if column in ("size", "entries", "reads") else "left",
            )
        for row in rows:
            table.add_row(*row)
        self.console.print(table)

    def fields(self, data: Mapping[str, Any], title: str = "") -> None:
        """Print ``name: value`` pairs as a two-column table."""
        self.table(("field", "value"), [(k, _show(v)) for k, v in data.items()], title)

    @contextmanager
    def progress(self, label: str, total: int | None) -> Iterator[Callable[..., None]]:
        """Yield ``update(done, total=None, bytes_done=None)``: a bar on a terminal,
        a line per tenth (and at the end) otherwise."""
        if self.errors.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[extra]}"),
                TimeElapsedColumn(),
                console=self.errors,
                transient=False,
            )
            with bar:
                task = bar.add_task(label, total=total, extra="")

                def draw(
                    done: int, total: int | None = None, bytes_done: int | None = None
                ) -> None:
                    extra = human_size(bytes_done) if bytes_done is not None else ""
                    bar.update(task, completed=done, total=total, extra=extra)

                yield draw
            return
        state = {"tenth": -1, "done": 0, "total": total, "bytes": None}

        def write(done: int, total: int | None = None, bytes_done: int | None = None) -> None:
            state.update(done=done, bytes=bytes_done)
            if total is not None:
                state["total"] = total
            whole = state["total"]
            tenth = int(10 * done / whole) if whole else 0
            if tenth != state["tenth"]:
                state["tenth"] = tenth
                _plain_line(label, done, whole, bytes_done)

        yield write
        if state["tenth"] != 10:
            _plain_line(label, state["done"], state["total"], state["bytes"])  # type: ignore[arg-type]


def _plain_line(label: str, done: int, total: int | None, bytes_done: int | None) -> None:
    of = f"/{total}" if total is not None else ""
    size = f", {human_size(bytes_done)}" if bytes_done is not None else ""
    click.echo(f"{label}: {done}{of}{size}", err=True)


def _show(value: Any) -> str:
    if isinstance(value, datetime):
        return f"{value.isoformat(timespec='seconds')} ({human_age(value)})"
    if isinstance(value, dict | list):
        return json.dumps(_plain(value))
    return "" if value is None else str(value)


# ------------------------------------------------------------------------------ sessions


class Session:
    """What the commands work on: a store, and how its entries are selected and shown.

    :class:`StoreSession` is the storage one; ``cacheness.cli`` subclasses it for a
    cache (key parameters, TTL, expiry). Subclasses declare their opening options in
    :attr:`options` and build themselves in :meth:`open`.
    """

    prog: ClassVar[str] = "blobcache"
    options: ClassVar[list[click.Option]] = []
    filter_help: ClassVar[str] = "metadata fields"

    store: BlobStore

    @classmethod
    def open(cls, values: Mapping[str, Any]) -> Session:
        """Open the session from the values of :attr:`options`."""
        raise NotImplementedError

    @classmethod
    def open_target(cls, directory: str | None, config: str | None) -> Session:
        """Open the target of ``migrate`` from ``--to-dir`` / ``--to-config``."""
        raise NotImplementedError

    def close(self) -> None:
        """Close what :meth:`open` opened."""
        self.store.close()

    # -- selecting and showing -----------------------------------------------------------

    def selection(
        self, pairs: Sequence[str], where: str | None, prefix: str | None
    ) -> Filter | None:
        """The filter of ``key=value`` pairs, ``--where JSON`` and ``--prefix``."""
        equals = {f"metadata.{name}": value for name, value in parse_pairs(pairs).items()}
        return combine_filters(
            equals or None, parse_where(where), {"key": {"$prefix": prefix}} if prefix else None
        )

    def find(self, spec: str) -> Entry | None:
        """The entry a user names on the command line (a key)."""
        return self.store.get_metadata(spec)

    def columns(self) -> list[str]:
        """The columns of ``ls``."""
        return ["key", "size", "handler", "updated", "reads"]

    def row(self, entry: Entry) -> list[str]:
        """One ``ls`` row."""
        return [
            entry.key,
            human_size(entry.size),
            entry.handler,
            human_age(entry.updated_at),
            str(entry.access_count),
        ]

    def describe(self, entry: Entry) -> dict[str, Any]:
        """Everything about one entry, for ``info`` and ``ls --json``."""
        data = entry.to_dict()
        inline = data.pop("inline")
        data["inline"] = inline is not None or not entry.blob_ref  # listed without it
        data["location"] = self.store.location(entry)
        return data

    def stats(self) -> dict[str, Any]:
        """Counts and sizes for ``stats``."""
        return {
            "entries": self.store.count(),
            "total_size": self.store.total_size(),
            "metadata_backend": self.store.metadata_backend_name,
            "blob_backend": self.store.blob_backend_name,
        }

    def expire(self, dry_run: bool) -> int:
        """Remove expired entries (a store has no expiry: 0)."""
        return 0

    def import_archive(
        self,
        source: Any,
        on_conflict: Literal["skip", "overwrite", "error"],
        selection: Filter | None,
        progress: Callable[[TransferProgress], None],
        trust_pickles: bool,
    ) -> TransferReport:
        """Import an archive into this session's store (``import``)."""
        return self.store.import_(
            source, on_conflict, selection, progress, trust_pickles=trust_pickles
        )

    def migrate_to(
        self,
        target: Session,
        selection: Filter | None,
        progress: Callable[[TransferProgress], None],
        on_conflict: Literal["skip", "overwrite", "error"],
    ) -> TransferReport:
        """Copy the selected entries into ``target``'s store (``migrate``)."""
        return migrate(self.store, target.store, selection, progress, on_conflict=on_conflict)

    @classmethod
    def show_config(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        """The effective configuration the options name, secrets redacted (nothing opened)."""
        raise NotImplementedError

    @classmethod
    def problems(cls, values: Mapping[str, Any]) -> list[str]:
        """Every problem of the configuration the options name (empty when valid)."""
        try:
            cls.open(values).close()
        except ConfigError as exc:
            return [str(exc)]
        return []


class StoreSession(Session):
    """A :class:`~cacheness.storage.BlobStore` opened from ``--store DIR`` or ``--config FILE``.

    The config file (JSON or TOML) holds ``BlobStore``'s keyword arguments:
    ``{"path": ..., "metadata_backend": "postgresql", "metadata_options": {"url": ...},
    "blob_backend": "s3", "blob_options": {"bucket": ...}}``. ``BLOBCACHE_STORE`` and
    ``BLOBCACHE_CONFIG`` stand in for the options.
    """

    options: ClassVar[list[click.Option]] = [
        click.Option(
            ["--store", "store_dir"],
            envvar="BLOBCACHE_STORE",
            type=click.Path(file_okay=False),
            help="Store directory (sqlite index + files). Env: BLOBCACHE_STORE.",
        ),
        click.Option(
            ["--config", "config_file"],
            envvar="BLOBCACHE_CONFIG",
            type=click.Path(dir_okay=False),
            help="JSON or TOML file of BlobStore arguments. Env: BLOBCACHE_CONFIG.",
        ),
    ]

    def __init__(self, store: BlobStore, settings: dict[str, Any]) -> None:
        self.store = store
        self.settings = settings

    @classmethod
    def open(cls, values: Mapping[str, Any]) -> StoreSession:
        return cls.open_target(values.get("store_dir"), values.get("config_file"))

    @classmethod
    def open_target(cls, directory: str | None, config: str | None) -> StoreSession:
        settings: dict[str, Any] = read_settings(config) if config else {}
        if directory:
            settings["path"] = directory
        if not settings:
            raise ConfigError("name a store: --store DIR or --config FILE (or set BLOBCACHE_STORE)")
        try:
            store = BlobStore(**settings)
        except TypeError as exc:
            raise ConfigError(
                f"the store configuration is not BlobStore's arguments: {exc}"
            ) from None
        return cls(store, settings)

    @classmethod
    def settings_of(cls, directory: str | None, config: str | None) -> dict[str, Any]:
        """``BlobStore``'s arguments from ``--store`` and ``--config``."""
        settings: dict[str, Any] = read_settings(config) if config else {}
        if directory:
            settings["path"] = directory
        if not settings:
            raise ConfigError("name a store: --store DIR or --config FILE (or set BLOBCACHE_STORE)")
        return settings

    @classmethod
    def show_config(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        settings = cls.settings_of(values.get("store_dir"), values.get("config_file"))
        return dict(redacted({**settings, "path": str(settings.get("path", ""))}))


def read_settings(path: str) -> dict[str, Any]:
    """A JSON or TOML file as a dict."""
    file = Path(path).expanduser()
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path!r}: {exc.strerror or exc}") from None
    try:
        if file.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path!r} is not valid: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path!r} must hold a table/object of settings")
    return data


def redacted(value: Any) -> Any:
    """``value`` with passwords and secrets replaced by ``***``."""
    if isinstance(value, Mapping):
        return {
            k: "***"
            if any(s in str(k).lower() for s in ("password", "secret", "token"))
            else redacted(v)
            for k, v in value.items()
        }
    if isinstance(value, str) and "://" in value and "@" in value:
        scheme, rest = value.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in credentials else value
    return value


def parse_value(text: str) -> Any:
    """A command-line value: JSON when it parses (``10``, ``true``, ``"a"``), else the text.

    Example:
        >>> parse_value("10"), parse_value("resnet"), parse_value("0.5"), parse_value("null")
        (10, 'resnet', 0.5, None)
    """
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_pairs(pairs: Sequence[str]) -> dict[str, Any]:
    """``key=value`` arguments as a dict (values through :func:`parse_value`)."""
    found: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.UsageError(f"filters are name=value, got {pair!r}")
        found[name] = parse_value(value)
    return found


def parse_where(where: str | None) -> Filter | None:
    """``--where`` JSON as a filter."""
    if where is None:
        return None
    try:
        data = json.loads(where)
    except ValueError as exc:
        raise click.UsageError(f"--where takes a JSON object filter: {exc}") from None
    if not isinstance(data, dict):
        raise click.UsageError('--where takes a JSON object such as \'{"size": {"$gt": 1000}}\'')
    return data


# ------------------------------------------------------------------------------ the group


class _State:
    """The group's options, shared with the commands."""

    def __init__(self, session_type: type[Session], values: dict[str, Any], output: Output) -> None:
        self.session_type = session_type
        self.values = values
        self.out = output
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        if self._session is None:
            self._session = self.session_type.open(self.values)
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()


def _entries(count: int) -> str:
    return f"{count} entr{'y' if count == 1 else 'ies'}"


def _verb(dry_run: bool) -> str:
    return "would remove" if dry_run else "removed"


def _cleanup_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """``--dry-run`` and ``--min-age`` of ``repair`` and ``gc``."""
    function = click.option(
        "--min-age",
        type=float,
        default=3600.0,
        show_default=True,
        help="Orphaned blobs and temporary files younger than this (seconds) are left.",
    )(function)
    return click.option("--dry-run", is_flag=True, help="Report only; change nothing.")(function)


_on_conflict_option = click.option(
    "--on-conflict",
    type=click.Choice(["skip", "overwrite", "error"]),
    default="skip",
    show_default=True,
    help="A key present with other bytes: keep it, replace it, or stop before writing.",
)


def _selectors(function: Callable[..., Any]) -> Callable[..., Any]:
    function = click.argument("pairs", nargs=-1)(function)
    function = click.option("--where", help='A filter as JSON, e.g. \'{"size": {"$gt": 1000}}\'.')(
        function
    )
    return click.option("--prefix", help="Keys starting with this.")(function)


def _report_out(out: Output, report: TransferReport, what: str) -> int:
    data = {
        "operation": report.operation,
        "entries": report.entries,
        "bytes": report.bytes,
        "skipped": [issue_dict(i) for i in report.skipped],
        "damaged": [issue_dict(i) for i in report.damaged],
        "ok": report.ok,
    }
    if out.as_json:
        out.json(data)
    else:
        out.line(
            f"{what} {_entries(report.entries)} "
            f"({human_size(report.bytes)}), skipped {len(report.skipped)}, "
            f"refused {len(report.damaged)}"
        )
        for issue in report.damaged:
            out.line(f"  refused {issue.key or issue.member}: {issue.problem}: {issue.detail}")
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def issue_dict(issue: Any) -> dict[str, Any]:
    """A report issue (any msgspec struct) as a dict."""
    return {name: getattr(issue, name) for name in issue.__struct_fields__}


@contextmanager
def _transfer_progress(out: Output, label: str) -> Iterator[Callable[[TransferProgress], None]]:
    with out.progress(label, None) as update:

        def tell(progress: TransferProgress) -> None:
            update(progress.done, progress.total, progress.bytes_done)

        yield tell


def build_cli(session_type: type[Session], *, help: str = "") -> click.Group:
    """Build the command group for ``session_type`` (see the module docstring).

    Example:
        >>> group = build_cli(StoreSession)
        >>> sorted(group.commands)[:4]
        ['clear', 'config', 'export', 'gc']
    """

    @click.group(
        help=help or __doc__.split("\n\n")[0],
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    @click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
    @click.pass_context
    def group(ctx: click.Context, /, as_json: bool, debug: bool, **values: Any) -> None:
        if debug:
            import logging

            logging.basicConfig(level=logging.DEBUG)
        state = _State(session_type, values, Output(as_json=as_json, debug=debug))
        ctx.obj = state
        ctx.call_on_close(state.close)

    group.params.extend(session_type.options)
    pass_state = click.make_pass_decorator(_State)

    @group.command("ls")
    @_selectors
    @click.option(
        "--sort",
        default="key",
        show_default=True,
        help="Field to sort by; '-size' sorts descending.",
    )
    @click.option("--limit", type=click.IntRange(min=1), help="At most this many entries.")
    @pass_state
    def ls(
        state: _State,
        pairs: tuple[str, ...],
        where: str | None,
        prefix: str | None,
        sort: str,
        limit: int | None,
    ) -> int:
        """List entries (filters: name=value pairs)."""
        session = state.session
        descending = sort.startswith("-")
        entries = session.store.list_entries(
            filter=session.selection(pairs, where, prefix),
            order_by=sort.lstrip("-"),
            descending=descending,
            limit=limit,
            inline=False,
        )
        if state.out.as_json:
            state.out.json([session.describe(entry) for entry in entries])
        else:
            state.out.table(session.columns(), [session.row(entry) for entry in entries])
            state.out.line(_entries(len(entries)))
        return EXIT_OK

    @group.command("info")
    @click.argument("spec", metavar="KEY-OR-PARAMS", nargs=-1, required=True)
    @pass_state
    def info(state: _State, spec: tuple[str, ...]) -> int:
        """Show everything about one entry (a key, or name=value key parameters)."""
        entry = state.session.find(" ".join(spec) if len(spec) == 1 else ",".join(spec))
        if entry is None:
            raise click.ClickException(f"no entry matches {' '.join(spec)!r}")
        data = state.session.describe(entry)
        if state.out.as_json:
            state.out.json(data)
        else:
            state.out.fields(data, title=entry.key)
        return EXIT_OK

    @group.command("stats")
    @pass_state
    def stats(state: _State) -> int:
        """Counts, sizes and backends."""
        data = state.session.stats()
        if state.out.as_json:
            state.out.json(data)
        else:
            shown = {
                k: human_size(v) if k.endswith("size") and isinstance(v, int) else v
                for k, v in data.items()
            }
            state.out.fields(shown)
        return EXIT_OK

    @group.command("health")
    @click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=5.0,
        show_default=True,
        help="Seconds to wait for each backend's answer.",
    )
    @pass_state
    def health(state: _State, timeout: float) -> int:
        """Check that the index and the blob backend answer, writing nothing (exit 1 when not)."""
        report = state.session.store.health(timeout=timeout)
        lines = []
        for backend in report.backends:
            if backend.reachable:
                rtt = backend.round_trip_seconds or 0.0
                lines.append(f"{backend.role} ({backend.backend}): ok in {rtt * 1000:.1f} ms")
            else:
                lines.append(f"{backend.role} ({backend.backend}): DOWN: {backend.error}")
        state.out.emit(report.to_dict(), *lines)
        return EXIT_OK if report.healthy else EXIT_PROBLEMS

    @group.command("verify")
    @click.option(
        "--deep", is_flag=True, help="Read and hash every blob (default: existence and size)."
    )
    @pass_state
    def verify(state: _State, deep: bool) -> int:
        """Check that every entry's bytes exist and match it (exit 1 when not)."""
        store = state.session.store
        keys = [entry.key for entry in store.iter_entries(inline=False)]
        issues = []
        with state.out.progress("verify", len(keys)) as update:
            for start in range(0, len(keys), 100):
                issues += store.verify_integrity(keys[start : start + 100], deep=deep)
                update(min(start + 100, len(keys)))
        state.out.emit(
            {"checked": len(keys), "issues": [issue_dict(i) for i in issues]},
            *(f"{issue.key}: {issue.problem}: {issue.detail}" for issue in issues),
            f"checked {len(keys)} entries, {len(issues)} problem(s)",
        )
        return EXIT_PROBLEMS if issues else EXIT_OK

    @group.command("repair")
    @_cleanup_options
    @pass_state
    def repair(state: _State, dry_run: bool, min_age: float) -> int:
        """Remove damaged entries, orphaned blobs and write debris (exit 1 if any found)."""
        with state.out.progress("repair", 1) as update:
            report = state.session.store.repair(dry_run=dry_run, orphan_min_age_seconds=min_age)
            update(1)
        data = {
            "dry_run": report.dry_run,
            "issues": [issue_dict(i) for i in report.issues],
            "entries_removed": report.entries_removed,
            "orphans_removed": report.orphans_removed,
            "temp_files_removed": report.temp_files_removed,
        }
        state.out.emit(
            data,
            f"{_verb(dry_run)} {len(report.entries_removed)} damaged entries, "
            f"{len(report.orphans_removed)} orphaned blobs, "
            f"{report.temp_files_removed} temporary files",
        )
        return EXIT_OK if report.ok else EXIT_PROBLEMS

    @group.command("gc")
    @_cleanup_options
    @pass_state
    def gc(state: _State, dry_run: bool, min_age: float) -> int:
        """Remove expired entries, orphaned blobs, temporary files, abandoned uploads."""
        session = state.session
        with state.out.progress("gc", 2) as update:
            expired = session.expire(dry_run)
            update(1)
            report = session.store.collect_garbage(dry_run=dry_run, min_age_seconds=min_age)
            update(2)
        data = {
            "dry_run": dry_run,
            "expired_removed": expired,
            "orphans_removed": len(report.orphans_removed),
            "temp_files_removed": report.temp_files_removed,
        }
        state.out.emit(
            data,
            f"{_verb(dry_run)} {expired} expired entries, {len(report.orphans_removed)} orphaned "
            f"blobs, {report.temp_files_removed} temporary files and abandoned uploads",
        )
        return EXIT_OK

    @group.command("rm")
    @_selectors
    @click.option("--yes", "-y", is_flag=True, help="Do not ask.")
    @pass_state
    def rm(
        state: _State, pairs: tuple[str, ...], where: str | None, prefix: str | None, yes: bool
    ) -> int:
        """Delete the entries selected by name=value pairs, --prefix or --where."""
        session = state.session
        selected = session.selection(pairs, where, prefix)
        if selected is None:
            raise click.UsageError(
                "rm needs a selection (name=value, --prefix or --where); use clear for all"
            )
        count = session.store.count(filter=selected)
        if count and not yes:
            click.confirm(f"delete {_entries(count)}?", abort=True, err=True)
        removed = session.store.delete_where(selected) if count else 0
        state.out.emit({"removed": removed}, f"removed {_entries(removed)}")
        return EXIT_OK

    @group.command("clear")
    @click.option("--yes", "-y", is_flag=True, help="Required: confirms deleting every entry.")
    @pass_state
    def clear(state: _State, yes: bool) -> int:
        """Delete every entry (needs --yes)."""
        if not yes:
            raise click.UsageError("clear deletes every entry: pass --yes to confirm")
        removed = state.session.store.clear()
        state.out.emit({"removed": removed}, f"removed {_entries(removed)}")
        return EXIT_OK

    @group.command("export")
    @click.argument("archive", type=click.Path(dir_okay=False, allow_dash=True))
    @_selectors
    @click.option(
        "--compression",
        type=click.Choice(["zstd", "gzip", "none"]),
        default="zstd",
        show_default=True,
    )
    @pass_state
    def export(
        state: _State,
        archive: str,
        pairs: tuple[str, ...],
        where: str | None,
        prefix: str | None,
        compression: str,
    ) -> int:
        """Write entries and their bytes to ARCHIVE ('-': stdout)."""
        session = state.session
        target: Any = sys.stdout.buffer if archive == "-" else archive
        codec: Literal["zstd", "gzip"] | None = None if compression == "none" else compression  # type: ignore[assignment]
        with _transfer_progress(state.out, "export") as tell:
            report = session.store.export(
                target, session.selection(pairs, where, prefix), codec, tell
            )
        if archive == "-":
            return EXIT_OK if report.ok else EXIT_PROBLEMS
        return _report_out(state.out, report, "exported")

    @group.command("import")
    @click.argument("archive", type=click.Path(dir_okay=False, allow_dash=True))
    @_selectors
    @_on_conflict_option
    @click.option(
        "--trust-pickles",
        is_flag=True,
        help="Import pickled payloads (loading them runs code): only from archives you trust.",
    )
    @pass_state
    def import_(
        state: _State,
        archive: str,
        pairs: tuple[str, ...],
        where: str | None,
        prefix: str | None,
        on_conflict: Literal["skip", "overwrite", "error"],
        trust_pickles: bool,
    ) -> int:
        """Import ARCHIVE ('-': stdin); damaged or untrusted members are refused (exit 1)."""
        session = state.session
        source: Any = sys.stdin.buffer if archive == "-" else archive
        with _transfer_progress(state.out, "import") as tell:
            report = session.import_archive(
                source, on_conflict, session.selection(pairs, where, prefix), tell, trust_pickles
            )
        return _report_out(state.out, report, "imported")

    @group.command("migrate")
    @_selectors
    @click.option("--to-dir", help="Target directory (a store or cache directory).")
    @click.option("--to-config", help="Target configuration file.")
    @_on_conflict_option
    @pass_state
    def migrate_(
        state: _State,
        pairs: tuple[str, ...],
        where: str | None,
        prefix: str | None,
        to_dir: str | None,
        to_config: str | None,
        on_conflict: Literal["skip", "overwrite", "error"],
    ) -> int:
        """Copy entries to another store (resumable; the source is not changed)."""
        if not to_dir and not to_config:
            raise click.UsageError("migrate needs a target: --to-dir DIR or --to-config FILE")
        session = state.session
        target = session.open_target(to_dir, to_config)
        try:
            with _transfer_progress(state.out, "migrate") as tell:
                report = session.migrate_to(
                    target, session.selection(pairs, where, prefix), tell, on_conflict
                )
        finally:
            target.close()
        return _report_out(state.out, report, "migrated")

    @group.group("config")
    def config() -> None:
        """Show or validate the configuration."""

    @config.command("show")
    @pass_state
    def config_show(state: _State) -> int:
        """Print the effective configuration (secrets redacted)."""
        data = state.session_type.show_config(state.values)
        if state.out.as_json:
            state.out.json(data)
        else:
            state.out.fields(_flatten(data))
        return EXIT_OK

    @config.command("validate")
    @pass_state
    def config_validate(state: _State) -> int:
        """Check the configuration; exit 2 with every problem when it is invalid."""
        problems = state.session_type.problems(state.values)
        state.out.emit(
            {"valid": not problems, "problems": problems},
            *(f"problem: {problem}" for problem in problems),
            "configuration is valid" if not problems else f"{len(problems)} problem(s)",
        )
        return EXIT_USAGE if problems else EXIT_OK

    return group


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in data.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def run(group: click.Group, argv: Sequence[str] | None, prog: str) -> int:
    """Run ``group`` and return the exit code: errors are one line unless ``--debug``."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        code = group.main(args=args, prog_name=prog, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return EXIT_PROBLEMS
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except _USAGE_ERRORS as exc:
        return _fail(exc, debug, EXIT_USAGE)
    except (CacheError, OSError) as exc:
        return _fail(exc, debug, EXIT_PROBLEMS)
    except Exception as exc:  # noqa: BLE001 - reported in one line (traceback with --debug)
        return _fail(exc, debug, EXIT_PROBLEMS)
    return code if isinstance(code, int) else EXIT_OK


def _fail(exc: BaseException, debug: bool, code: int) -> int:
    if debug:
        import traceback

        traceback.print_exception(exc)
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    click.echo(
        f"error: {type(exc).__name__}: {message}" if message else f"error: {type(exc).__name__}",
        err=True,
    )
    return code


cli = build_cli(StoreSession)
"""The ``blobcache`` command group."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``blobcache`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    return run(cli, argv, "blobcache")

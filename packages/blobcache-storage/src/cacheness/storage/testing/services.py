"""Pytest plugin: real PostgreSQL and S3-over-HTTP services for tests.

Load it with ``-p cacheness.storage.testing.services`` (the repository's pytest
configuration does) or ``pytest_plugins = ["cacheness.storage.testing.services"]`` in a
root ``conftest.py``. It provides:

``postgres_url`` (session)
    SQLAlchemy URL (``postgresql+psycopg://...``) of a database created for this test
    session and dropped afterwards, so parallel runs never collide. The server is, in
    order: ``CACHENESS_TEST_POSTGRES_URL``; a server answering on 127.0.0.1:5432; a
    throwaway cluster started with ``initdb``/``pg_ctl`` from ``PATH`` (stopped at the end).
``fresh_postgres_url`` (function)
    Like ``postgres_url`` but with a schema of its own (``search_path``), dropped after
    the test: every test starts with no tables.
``s3_endpoint`` (session)
    An :class:`S3Endpoint`: moto's ``ThreadedMotoServer`` on a free loopback port,
    spoken to over real HTTP.
``s3_bucket`` (function)
    An :class:`S3Bucket`: a fresh, empty bucket on that server, removed afterwards.
``signing_key_env`` (function; ``fresh_postgres_url`` and ``s3_bucket`` use it)
    Sets ``CACHENESS_SIGNING_KEY`` to a key made for the test, as a team sets one key
    on every machine: stores and processes started by the test share it. Returns it.

When a service cannot be had the test is skipped with the reason, unless the
environment variable ``CACHENESS_REQUIRE_SERVICES`` is set to a true value (CI sets
it): then it fails.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

__all__ = [
    "POSTGRES_URL_ENV",
    "REQUIRE_SERVICES_ENV",
    "S3Bucket",
    "S3Endpoint",
    "free_port",
    "fresh_postgres_url",
    "postgres_url",
    "s3_bucket",
    "s3_endpoint",
    "service_unavailable",
    "services_required",
]

log = logging.getLogger(__name__)

REQUIRE_SERVICES_ENV = "CACHENESS_REQUIRE_SERVICES"
"""Set to a true value (``1``) to turn a missing service into a test failure."""

POSTGRES_URL_ENV = "CACHENESS_TEST_POSTGRES_URL"
"""SQLAlchemy URL of a PostgreSQL server to use instead of looking for one."""

_FALSE = {"", "0", "false", "no", "off"}


def services_required() -> bool:
    """Return True when ``CACHENESS_REQUIRE_SERVICES`` asks for strict services."""
    return os.environ.get(REQUIRE_SERVICES_ENV, "").strip().lower() not in _FALSE


def service_unavailable(reason: str) -> NoReturn:
    """Skip the current test because of ``reason``, or fail it when services are required."""
    if services_required():
        pytest.fail(f"{reason} ({REQUIRE_SERVICES_ENV} is set: a missing service fails)")
    pytest.skip(reason)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- PostgreSQL


def _libpq_conninfo(url: str) -> str:
    """Turn a SQLAlchemy URL into a libpq connection string for psycopg."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _with_database(url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=database).render_as_string(hide_password=False)


def _with_search_path(url: str, schema: str) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    query = dict(parsed.query)
    query["options"] = f"-csearch_path={schema}"
    return parsed.set(query=query).render_as_string(hide_password=False)


def _connect_error(url: str) -> str | None:
    """Return None when ``url`` accepts a connection, else the reason it does not."""
    import psycopg

    try:
        with psycopg.connect(_libpq_conninfo(url), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


@dataclass
class _ThrowawayCluster:
    """A PostgreSQL cluster in a temporary directory, for machines without a server."""

    root: Path
    port: int
    pg_ctl: str
    log_file: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_file = self.root / "server.log"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @classmethod
    def start(cls) -> _ThrowawayCluster:
        initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
        if not (initdb and pg_ctl):
            raise RuntimeError("initdb/pg_ctl are not on PATH")
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            raise RuntimeError("initdb refuses to run as root")
        root = Path(tempfile.mkdtemp(prefix="cacheness-pg-"))
        cluster = cls(root=root, port=free_port(), pg_ctl=pg_ctl)
        try:
            subprocess.run(
                [initdb, "-D", str(cluster.data_dir), "-U", "postgres", "-A", "trust",
                 "-E", "UTF8", "--no-sync"],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            server_options = (
                f"-p {cluster.port} -k {root} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            subprocess.run(
                [pg_ctl, "-D", str(cluster.data_dir), "-l", str(cluster.log_file), "-w",
                 "-t", "60", "-o", server_options, "start"],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", "") or ""
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"could not start a throwaway cluster: {exc} {detail}") from exc
        return cluster

    def stop(self) -> None:
        subprocess.run(
            [self.pg_ctl, "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"],
            check=False, capture_output=True,
        )  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


def _local_candidates() -> list[str]:
    users = [os.environ.get("PGUSER", ""), "postgres"]
    with contextlib.suppress(KeyError, OSError):  # no login name: try the others
        users.append(getpass.getuser())
    unique = dict.fromkeys(user for user in users if user)
    return [f"postgresql+psycopg://{user}@127.0.0.1:5432/postgres" for user in unique]


@pytest.fixture(scope="session")
def _postgres_server() -> Iterator[str]:
    """Admin URL of a reachable PostgreSQL server (see the module docstring for the order)."""
    try:
        import psycopg  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError as exc:
        service_unavailable(f"PostgreSQL tests need psycopg and sqlalchemy: {exc}")

    explicit = os.environ.get(POSTGRES_URL_ENV)
    if explicit:
        error = _connect_error(explicit)
        if error:
            service_unavailable(f"{POSTGRES_URL_ENV} is set but unreachable: {error}")
        yield explicit
        return

    reasons = []
    for url in _local_candidates():
        error = _connect_error(url)
        if error is None:
            yield url
            return
        reasons.append(f"{url}: {error}")

    try:
        cluster = _ThrowawayCluster.start()
    except RuntimeError as exc:
        reasons.append(str(exc))
        service_unavailable("no PostgreSQL server available; tried " + "; ".join(reasons))
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_url(_postgres_server: str) -> Iterator[str]:
    """SQLAlchemy URL of a database that exists for this test session only."""
    import psycopg

    name = f"cacheness_test_{os.getpid()}_{secrets.token_hex(4)}"
    admin = _libpq_conninfo(_postgres_server)
    schema: str | None = None
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = _with_database(_postgres_server, name)
    except psycopg.errors.InsufficientPrivilege:
        # No CREATEDB right: isolate the session in a schema of the given database instead.
        schema = name
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        url = _with_search_path(_postgres_server, schema)
    try:
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            if schema is not None:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            else:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def signing_key_env(monkeypatch: pytest.MonkeyPatch) -> str:
    """Set ``CACHENESS_SIGNING_KEY`` to a new hex key for this test; return the key text."""
    key = os.environ.get("CACHENESS_SIGNING_KEY") or secrets.token_hex(32)
    monkeypatch.setenv("CACHENESS_SIGNING_KEY", key)
    return key


@pytest.fixture
def fresh_postgres_url(postgres_url: str, signing_key_env: str) -> Iterator[str]:
    """SQLAlchemy URL whose ``search_path`` is a new, empty schema dropped after the test."""
    import psycopg

    schema = f"t_{secrets.token_hex(6)}"
    conninfo = _libpq_conninfo(postgres_url)
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield _with_search_path(postgres_url, schema)
    finally:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
            conn.execute("SET lock_timeout = '5s'")
            try:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            except psycopg.errors.LockNotAvailable:
                # A connection the test left open holds a lock on the schema: the test is
                # over, so end the other sessions of this database and drop again.
                log.warning("terminating sessions left open by a test to drop %s", schema)
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# --------------------------------------------------------------------------- S3


@dataclass(frozen=True)
class S3Endpoint:
    """An S3 API reachable over HTTP, with the credentials it accepts.

    Example:
        >>> endpoint = S3Endpoint("http://127.0.0.1:9000")
        >>> endpoint.client_options()["endpoint_url"]
        'http://127.0.0.1:9000'
    """

    endpoint_url: str
    region: str = "us-east-1"
    access_key_id: str = "testing"
    secret_access_key: str = "testing"

    def client_options(self) -> dict[str, str]:
        """Keyword arguments for ``boto3.client("s3", ...)`` and the s3 blob backend."""
        return {
            "endpoint_url": self.endpoint_url,
            "region_name": self.region,
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
        }

    def client(self, **config: Any) -> Any:
        """Return a boto3 S3 client for this endpoint (``config`` → ``botocore.Config``)."""
        import boto3
        from botocore.config import Config

        return boto3.client("s3", config=Config(**config), **self.client_options())


@dataclass(frozen=True)
class S3Bucket:
    """A bucket on an :class:`S3Endpoint`."""

    endpoint: S3Endpoint
    name: str

    def client(self) -> Any:
        """Return a boto3 S3 client for the bucket's endpoint."""
        return self.endpoint.client()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[S3Endpoint]:
    """moto's threaded S3 server on a free loopback port, for the whole session."""
    try:
        import boto3  # noqa: F401
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        service_unavailable(f"S3 tests need boto3 and moto[server]: {exc}")

    last_error: Exception | None = None
    for _attempt in range(3):
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        try:
            server.start()
        except OSError as exc:  # the port was taken between free_port() and bind
            last_error = exc
            continue
        try:
            yield S3Endpoint(f"http://127.0.0.1:{port}")
        finally:
            server.stop()
        return
    service_unavailable(f"could not start moto's S3 server: {last_error}")


@pytest.fixture
def s3_bucket(s3_endpoint: S3Endpoint, signing_key_env: str) -> Iterator[S3Bucket]:
    """A fresh, empty bucket; emptied and removed after the test."""
    client = s3_endpoint.client()
    name = f"cacheness-test-{secrets.token_hex(6)}"
    client.create_bucket(Bucket=name)
    try:
        yield S3Bucket(s3_endpoint, name)
    finally:
        # List everything first: deleting while paginating makes the listing skip pages.
        paginator = client.get_paginator("list_object_versions")
        doomed = [
            {"Key": item["Key"], "VersionId": item["VersionId"]}
            for page in paginator.paginate(Bucket=name)
            for kind in ("Versions", "DeleteMarkers")
            for item in page.get(kind, [])
        ]
        for start in range(0, len(doomed), 1000):  # DeleteObjects takes 1,000 at most
            batch = doomed[start : start + 1000]
            client.delete_objects(Bucket=name, Delete={"Objects": batch, "Quiet": True})
        for upload in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
            client.abort_multipart_upload(
                Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        client.delete_bucket(Bucket=name)

"""The PostgreSQL backend on the real server: conformance, state machine, resilience."""

from __future__ import annotations

import secrets

import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import settings

from cacheness.storage import Entry, PostgresMetadataBackend, get_metadata_backend
from cacheness.storage._metadata._sqlrows import SCHEMA_VERSIONS
from cacheness.storage.errors import BackendUnavailableError, ConfigError, MetadataError
from cacheness.storage.testing.metadata import (
    MetadataBackendConformance,
    metadata_state_machine,
)
from cacheness.storage.testing.services import free_port


def conninfo(url):
    return (
        sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    )


class TestPostgresConformance(MetadataBackendConformance):
    large_metadata_keys = 5_000

    @pytest.fixture
    def backend(self, fresh_postgres_url):
        with PostgresMetadataBackend(fresh_postgres_url) as index:
            yield index

    @pytest.fixture
    def ground_truth(self, fresh_postgres_url, row_decoder):
        def read():
            with psycopg.connect(conninfo(fresh_postgres_url)) as conn:
                conn.row_factory = psycopg.rows.dict_row
                rows = conn.execute("SELECT * FROM cacheness_entries").fetchall()
            return {row["key"]: row_decoder(row) for row in rows}

        return read

    @pytest.fixture
    def reopen(self, fresh_postgres_url):
        return lambda: PostgresMetadataBackend(fresh_postgres_url)


def test_state_machine(fresh_postgres_url):
    engine = sa.create_engine(
        sa.engine.make_url(fresh_postgres_url).set(drivername="postgresql+psycopg")
    )
    counter = iter(range(10**6))

    def factory():
        return PostgresMetadataBackend(engine, table=f"sm_{next(counter)}")

    machine = metadata_state_machine(factory)
    machine.TestCase.settings = settings(max_examples=20, stateful_step_count=20)
    try:
        machine.TestCase("runTest").runTest()
    finally:
        engine.dispose()


def test_registry_builds_it(fresh_postgres_url):
    with get_metadata_backend("postgresql", url=fresh_postgres_url, table="via_registry") as b:
        assert isinstance(b, PostgresMetadataBackend)
        b.put(Entry.new("k"))
        assert b.exists("k")


def test_schema_table_names_indexes_and_jsonb(fresh_postgres_url):
    schema = f"s_{secrets.token_hex(4)}"
    with (
        PostgresMetadataBackend(fresh_postgres_url, table="team_a", schema=schema) as a,
        PostgresMetadataBackend(fresh_postgres_url, table="team_b", schema=schema) as b,
    ):
        a.put(Entry.new("k", size=1, metadata={"p": "x"}))
        b.put(Entry.new("k", size=2))
        assert (a.get("k").size, b.get("k").size) == (1, 2)
        with psycopg.connect(conninfo(fresh_postgres_url)) as conn:
            kinds = dict(
                conn.execute(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = %s AND table_name = 'team_a'",
                    (schema,),
                ).fetchall()
            )
            indexes = {
                row[0]
                for row in conn.execute(
                    "SELECT indexname FROM pg_indexes WHERE schemaname = %s", (schema,)
                )
            }
            version = conn.execute(f'SELECT value FROM "{schema}".team_a_info').fetchone()
            stored = conn.execute(f'SELECT metadata FROM "{schema}".team_a').fetchone()
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    assert kinds["metadata"] == "jsonb"
    assert kinds["created_at"] == "bigint"
    assert kinds["inline"] == "bytea"
    assert {
        "ix_team_a_metadata",
        "ix_team_a_created_at",
        "ix_team_a_accessed_at",
        "ix_team_a_handler",
    } <= indexes
    assert version == (str(SCHEMA_VERSIONS["postgresql"]),) == ("2",)
    assert stored == ({"p": "x"},)


EXACT = {"loss": 1e20, "negz": -0.0, "huge": 1e300, "tiny": 5e-324, "n": 2**63 - 1}


def test_metadata_is_read_from_its_exact_text_and_queried_through_jsonb(fresh_postgres_url):
    with PostgresMetadataBackend(fresh_postgres_url) as index:
        index.put(Entry.new("k", metadata=EXACT))
        got = index.get("k").metadata
        assert [(name, type(value), repr(value)) for name, value in got.items()] == [
            (name, type(value), repr(value)) for name, value in EXACT.items()
        ]
        assert [e.key for e in index.query({"metadata.loss": {"$gte": 1e20}})] == ["k"]
        assert [e.key for e in index.query({"metadata.negz": 0})] == ["k"]
        with psycopg.connect(conninfo(fresh_postgres_url)) as conn:
            jsonb, text = conn.execute(
                "SELECT metadata, metadata_text FROM cacheness_entries"
            ).fetchone()
        assert jsonb["loss"] == 10**20  # what jsonb alone would have given back
        exact = '{"loss":1e20,"negz":-0.0,"huge":1e300,"tiny":5e-324,"n":9223372036854775807}'
        assert text == exact


def test_a_layout_1_table_is_migrated_and_its_rows_still_read(fresh_postgres_url):
    with PostgresMetadataBackend(fresh_postgres_url) as index:
        index.put(Entry.new("old", metadata={"a": 1}))
    with psycopg.connect(conninfo(fresh_postgres_url)) as conn:  # back to layout 1
        conn.execute("DROP TRIGGER cacheness_entries_metadata_text ON cacheness_entries")
        conn.execute("ALTER TABLE cacheness_entries DROP COLUMN metadata_text")
        conn.execute("UPDATE cacheness_entries_info SET value = '1'")
    with PostgresMetadataBackend(fresh_postgres_url) as index:
        assert index.get("old").metadata == {"a": 1}  # from the jsonb: no exact text yet
        index.put(Entry.new("new", metadata=EXACT))
        assert repr(index.get("new").metadata["loss"]) == "1e+20"
        with psycopg.connect(conninfo(fresh_postgres_url)) as conn:
            version = conn.execute("SELECT value FROM cacheness_entries_info").fetchone()
    assert version == ("2",)


def test_a_writer_unaware_of_the_exact_text_does_not_leave_it_stale(fresh_postgres_url):
    with PostgresMetadataBackend(fresh_postgres_url) as index:
        index.put(Entry.new("k", metadata={"v": 1.5}))
        with psycopg.connect(conninfo(fresh_postgres_url)) as conn:  # as an older release
            conn.execute("""UPDATE cacheness_entries SET metadata = '{"v": 2}'""")
        assert index.get("k").metadata == {"v": 2}  # not the stale 1.5
        index.update("k", metadata={"v": 2.0})
        assert repr(index.get("k").metadata["v"]) == "2.0"


def test_newer_schema_is_refused(fresh_postgres_url):
    PostgresMetadataBackend(fresh_postgres_url).close()
    with psycopg.connect(conninfo(fresh_postgres_url)) as conn:
        conn.execute("UPDATE cacheness_entries_info SET value = '42'")
    with pytest.raises(MetadataError, match="newer blobcache-storage"):
        PostgresMetadataBackend(fresh_postgres_url)


def test_reconnects_after_the_server_ends_its_sessions(fresh_postgres_url):
    name = f"cacheness-test-{secrets.token_hex(4)}"
    backend = PostgresMetadataBackend(
        fresh_postgres_url, engine_options={"connect_args": {"application_name": name}}
    )
    backend.put(Entry.new("before"))
    with psycopg.connect(conninfo(fresh_postgres_url), autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s",
            (name,),
        ).fetchone()[0]
    assert killed >= 1
    backend.put(Entry.new("after"))
    assert sorted(e.key for e in backend.query()) == ["after", "before"]
    backend.close()


def test_a_statement_failing_on_a_dropped_connection_is_retried(fresh_postgres_url, caplog):
    name = f"cacheness-test-{secrets.token_hex(4)}"
    backend = PostgresMetadataBackend(
        fresh_postgres_url,
        engine_options={"connect_args": {"application_name": name}, "pool_pre_ping": False},
    )
    backend.put(Entry.new("k"))
    with psycopg.connect(conninfo(fresh_postgres_url), autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (name,),
        )
    with caplog.at_level("INFO", logger="cacheness.storage._metadata.sql"):
        assert backend.get("k") is not None  # no pre-ping: the first attempt fails
    assert "retry 1" in caplog.text
    backend.close()


def test_unreachable_server_fails_after_bounded_retries(caplog):
    url = f"postgresql://nobody@127.0.0.1:{free_port()}/nowhere"
    with (
        caplog.at_level("INFO", logger="cacheness.storage._metadata.sql"),
        pytest.raises(BackendUnavailableError, match="unreachable") as excinfo,
    ):
        PostgresMetadataBackend(url, connect_timeout=2, retries=2, retry_backoff=0.01)
    assert isinstance(excinfo.value, ConnectionError)
    assert "Connection refused" in str(excinfo.value)
    attempts = [r for r in caplog.records if "connecting failed" in r.getMessage()]
    assert len(attempts) == 2  # two retries after the first attempt, then the error


@pytest.mark.parametrize(
    "url", ["sqlite:///x.db", "mysql://u@h/db", "postgresql+psycopg2://u@h/db", "not a url"]
)
def test_wrong_urls_are_refused(url):
    with pytest.raises(ConfigError):
        PostgresMetadataBackend(url)


def test_a_shared_engine_is_left_open(fresh_postgres_url):
    engine = sa.create_engine(
        sa.engine.make_url(fresh_postgres_url).set(drivername="postgresql+psycopg")
    )
    with PostgresMetadataBackend(engine) as backend:
        backend.put(Entry.new("k"))
    with engine.connect() as conn:  # still usable, and not left in autocommit
        assert conn.execute(sa.text("SELECT count(*) FROM cacheness_entries")).scalar() == 1
        conn.execute(sa.text("DELETE FROM cacheness_entries"))
        conn.rollback()
        assert conn.execute(sa.text("SELECT count(*) FROM cacheness_entries")).scalar() == 1
    engine.dispose()


def test_metadata_equality_uses_the_gin_index(fresh_postgres_url):
    with PostgresMetadataBackend(fresh_postgres_url) as backend:
        backend.put_many(
            [Entry.new(f"k{i}", metadata={"project": f"p{i % 50}"}) for i in range(3000)]
        )
        with psycopg.connect(conninfo(fresh_postgres_url), autocommit=True) as conn:
            conn.execute("ANALYZE cacheness_entries")
            conn.execute("SET enable_seqscan = off")
            plan = "\n".join(
                row[0]
                for row in conn.execute(
                    "EXPLAIN SELECT key FROM cacheness_entries WHERE metadata @> %s::jsonb",
                    ('{"project": "p7"}',),
                )
            )
        assert "ix_cacheness_entries_metadata" in plan
        assert backend.count({"metadata.project": "p7"}) == 60


def test_a_forked_child_uses_its_own_connections(fresh_postgres_url, in_fork):
    backend = PostgresMetadataBackend(fresh_postgres_url)
    backend.put(Entry.new("parent"))

    def child() -> bool:  # must not reuse the parent's connection
        backend.put(Entry.new("child"))
        return backend.exists("parent")

    assert in_fork(child) == 0
    assert sorted(e.key for e in backend.query()) == ["child", "parent"]  # parent pool intact
    backend.close()


def test_statements_planned_per_call_are_not_prepared(fresh_postgres_url):
    # one pooled connection, so the check below sees the session that ran everything
    with PostgresMetadataBackend(fresh_postgres_url, pool_size=1, max_overflow=0) as backend:
        backend.put_many([Entry.new(f"k{i}") for i in range(20)])
        for _ in range(8):  # beyond psycopg's prepare threshold (5)
            assert len(backend.get_many(["k1", "k2", "k3"])) == 3
            assert backend.get("k1") is not None
        with backend.engine.connect() as conn:
            prepared = [row[0] for row in conn.exec_driver_sql(
                "SELECT statement FROM pg_prepared_statements"
            )]  # fmt: skip
    # a generic plan made while the table was small would scan it once it has grown
    assert not [sql for sql in prepared if " IN (" in sql]
    assert [sql for sql in prepared if "WHERE cacheness_entries.key = $1" in sql]


def test_many_hosts_creating_one_table_at_once(fresh_postgres_url, concurrently):
    concurrently(5, lambda: PostgresMetadataBackend(fresh_postgres_url, table="raced"))
    with PostgresMetadataBackend(fresh_postgres_url, table="raced") as backend:
        assert backend.count() == 5

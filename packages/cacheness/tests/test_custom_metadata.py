"""Custom metadata tables: typed SQL rows stored with entries, on SQLite and PostgreSQL.

Every check reads the rows back *around* the code under test, through an engine of the
test's own on the same database, so a row left behind (or lost) cannot hide.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Column, Float, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from cacheness import (
    ConfigError,
    CustomMetadataBase,
    CustomSchemaError,
    MetadataError,
    cacheness,
    custom_metadata_model,
)
from cacheness.storage import list_custom_models, unregister_custom_model

WORKER = Path(__file__).resolve().parent / "_custom_worker.py"


@custom_metadata_model("t_experiments")
class Experiment(CustomMetadataBase):
    """2.0 style."""

    __tablename__ = "custom_t_experiments"
    experiment_id: Mapped[str] = mapped_column(String(100), index=True)
    model_type: Mapped[str] = mapped_column(String(50), index=True)
    accuracy: Mapped[float] = mapped_column(Float, index=True)
    epochs: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str | None] = mapped_column(String(100))


@custom_metadata_model("t_performance")
class Performance(CustomMetadataBase):
    """Classic Column style."""

    __tablename__ = "custom_t_performance"
    run_id = Column(String(50), nullable=False, index=True)
    seconds = Column(Float, nullable=False)
    memory_mb = Column(Integer, default=512)


@custom_metadata_model("t_tags")
class Tag(CustomMetadataBase):
    """A model with no columns of its own: only the link to the entry."""

    __tablename__ = "custom_t_tags"


def experiment(exp: str, accuracy: float, *, by: str = "alice", epochs: int = 10) -> Experiment:
    return Experiment(
        experiment_id=exp, model_type="xgboost", accuracy=accuracy, epochs=epochs, created_by=by
    )


@dataclass
class Setup:
    """A cache on one SQL backend, and a way to read the database around it."""

    dialect: str
    config: dict[str, Any]
    engine: sa.Engine
    make: Callable[..., cacheness]

    def rows(self, table: str, *columns: str) -> list[tuple[Any, ...]]:
        """``(cache_key, *columns)`` of every row of ``table``, sorted."""
        names = ", ".join(("cache_key", *columns))
        with self.engine.connect() as conn:
            found = conn.execute(sa.text(f"SELECT {names} FROM {table}")).all()
        return sorted(tuple(row) for row in found)

    def keys(self, table: str) -> list[str]:
        return sorted({row[0] for row in self.rows(table)})


@pytest.fixture(params=["sqlite", "postgresql"])
def sql(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    config: dict[str, Any] = {"cache_dir": str(tmp_path / "cache")}
    if request.param == "postgresql":
        url = request.getfixturevalue("fresh_postgres_url")
        config.update(metadata_backend="postgresql", metadata_backend_options={"url": url})
        engine = sa.create_engine(sa.engine.make_url(url).set(drivername="postgresql+psycopg"))
    else:
        config.update(metadata_backend="sqlite")
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'cache' / 'cache_metadata.db'}")
    made: list[cacheness] = []

    def make(**overrides: Any) -> cacheness:
        cache = cacheness(**{**config, **overrides})
        made.append(cache)
        return cache

    yield Setup(request.param, config, engine, make)
    for cache in made:
        cache.close()
    engine.dispose()


@pytest.fixture
def cache(sql: Setup) -> cacheness:
    made = sql.make()
    if sql.dialect == "sqlite":  # the ground truth reads the file the index really uses
        sql.engine = sa.create_engine(f"sqlite:///{made.store.metadata.path}")  # type: ignore[attr-defined]
    return made


def big(seed: int) -> bytes:
    """A value too large to be kept inline: it has a blob of its own."""
    import random

    return random.Random(seed).randbytes(100_000)


# --------------------------------------------------------------------------- writing, reading


def test_put_then_query_rows_sessions_and_entries(sql: Setup, cache: cacheness) -> None:
    cache.put("m1", custom_metadata=experiment("exp_001", 0.95), experiment="exp_001")
    cache.put("m2", custom_metadata=experiment("exp_002", 0.80, by="bob"), experiment="exp_002")
    cache.put("m3", custom_metadata=experiment("exp_003", 0.91, by="bob"), experiment="exp_003")

    good = cache.query_custom(Experiment, Experiment.accuracy >= 0.9)
    assert sorted(row.experiment_id for row in good) == ["exp_001", "exp_003"]
    assert {row.cache_key for row in good} == {
        cache.key_for(experiment="exp_001"),
        cache.key_for(experiment="exp_003"),
    }
    assert good[0].model_type == "xgboost"  # detached rows stay usable

    with cache.query_custom_session(Experiment) as query:
        bobs = query.filter(Experiment.created_by == "bob", Experiment.accuracy >= 0.9).all()
        mean = query.with_entities(func.avg(Experiment.accuracy)).scalar()
    assert [row.experiment_id for row in bobs] == ["exp_003"]
    assert mean == pytest.approx((0.95 + 0.80 + 0.91) / 3)

    with cache.query_custom_session("t_experiments") as query:  # by registered name
        assert query.count() == 3

    [row] = cache.get_custom_metadata(Experiment, experiment="exp_002")
    assert (row.experiment_id, row.accuracy, row.created_by) == ("exp_002", 0.80, "bob")
    key = cache.key_for(experiment="exp_002")
    assert [r.experiment_id for r in cache.get_custom_metadata(Experiment, cache_key=key)] == [
        "exp_002"
    ]
    assert cache.get_custom_metadata(Experiment, experiment="missing") == []

    entries = cache.query_custom_entries(Experiment, Experiment.created_by == "bob")
    assert sorted(cache.get(cache_key=e.cache_key) for e in entries) == ["m2", "m3"]
    assert sorted(e.params["experiment"] for e in entries) == ["exp_002", "exp_003"]
    assert sql.rows("custom_t_experiments", "experiment_id") == sorted(
        [(cache.key_for(experiment=f"exp_00{i}"), f"exp_00{i}") for i in (1, 2, 3)]
    )


def test_classic_columns_defaults_and_types(sql: Setup, cache: cacheness) -> None:
    key = cache.put("x", custom_metadata=Performance(run_id="r1", seconds=1.5), run=1)
    [row] = cache.query_custom(Performance)
    assert (row.cache_key, row.run_id, row.seconds, row.memory_mb) == (key, "r1", 1.5, 512)
    assert isinstance(row.id, int)


def test_two_models_and_several_rows_on_one_entry(sql: Setup, cache: cacheness) -> None:
    rows = [
        experiment("exp_a", 0.7),
        experiment("exp_b", 0.9),
        Performance(run_id="r", seconds=3.0),
        Tag(),
    ]
    key = cache.put("m", custom_metadata=rows, run=1)
    assert [r.experiment_id for r in cache.get_custom_metadata(Experiment, run=1)] == [
        "exp_a",
        "exp_b",
    ]
    assert [r.run_id for r in cache.get_custom_metadata(Performance, run=1)] == ["r"]
    assert sql.rows("custom_t_tags") == [(key,)]
    assert [e.cache_key for e in cache.query_custom_entries(Tag)] == [key]
    assert all(row.cache_key == key for row in rows)  # the objects learn their key
    cache.invalidate(run=1)
    for table in ("custom_t_experiments", "custom_t_performance", "custom_t_tags"):
        assert sql.rows(table) == []


def test_replacing_a_key_replaces_its_rows_and_update_data_keeps_them(
    sql: Setup, cache: cacheness
) -> None:
    key = cache.put("v1", custom_metadata=[experiment("e1", 0.5), experiment("e2", 0.6)], run=1)
    assert cache.update_data("v2", run=1)
    assert cache.get(run=1) == "v2"
    assert sql.rows("custom_t_experiments", "experiment_id") == [(key, "e1"), (key, "e2")]

    cache.put("v3", custom_metadata=experiment("e3", 0.7), run=1)
    assert sql.rows("custom_t_experiments", "experiment_id") == [(key, "e3")]

    cache.put("v4", run=1)  # replaced without rows: the old ones do not describe it
    assert sql.rows("custom_t_experiments") == []


def test_copy_copies_rows_and_move_relinks_them(sql: Setup, cache: cacheness) -> None:
    src = cache.put(big(1), custom_metadata=[experiment("e1", 0.5), Tag()], run="src")
    dst = cache.copy({"run": "src"}, {"run": "copy"})
    assert sql.rows("custom_t_experiments", "experiment_id") == sorted([(src, "e1"), (dst, "e1")])
    assert sql.keys("custom_t_tags") == sorted([src, dst])

    moved = cache.move({"run": "copy"}, {"run": "moved"})
    assert sql.rows("custom_t_experiments", "experiment_id") == sorted([(src, "e1"), (moved, "e1")])
    assert cache.get(run="moved") == big(1)

    # onto an existing entry: the replaced entry's rows go, the moved ones follow
    cache.put("other", custom_metadata=experiment("e9", 0.9), run="other")
    other = cache.key_for(run="other")
    cache.move({"run": "moved"}, {"run": "other"}, overwrite=True)
    assert sql.rows("custom_t_experiments", "experiment_id") == sorted([(src, "e1"), (other, "e1")])
    cache.copy({"run": "src"}, {"run": "other"}, overwrite=True)
    assert sql.rows("custom_t_experiments", "experiment_id") == sorted([(src, "e1"), (other, "e1")])


# --------------------------------------------------------------------------- cascade


def test_cascade_on_every_removal_path(sql: Setup, cache: cacheness) -> None:
    def put(run: str, **extra: Any) -> str:
        return cache.put(
            big(hash(run) % 1000),
            custom_metadata=[experiment(run, 0.5), Performance(run_id=run, seconds=1.0)],
            run=run,
            **extra,
        )

    def left() -> set[str]:
        exp = sql.keys("custom_t_experiments")
        assert exp == sql.keys("custom_t_performance")
        return set(exp)

    keys = {name: put(name) for name in ("inv", "b1", "b2", "w", "m", "p1", "p2", "sb", "keep")}

    assert cache.invalidate(run="inv")
    assert keys["inv"] not in left()
    assert cache.delete_batch([{"run": "b1"}, {"run": "b2"}]) == 2
    assert not {keys["b1"], keys["b2"]} & left()
    assert cache.delete_where({"key": keys["w"]}) == 1
    assert keys["w"] not in left()
    assert cache.delete_matching(run="m") == 1
    assert keys["m"] not in left()
    assert cache.delete_by_prefix(run="p") == 2
    assert not {keys["p1"], keys["p2"]} & left()
    assert cache.store.delete_batch([keys["sb"]]) == 1
    assert left() == {keys["keep"]}

    # TTL clean-up
    expiring = cache.put(b"x", ttl_seconds=0.000001, custom_metadata=Tag(), run="ttl")
    assert sql.keys("custom_t_tags") == [expiring]
    import time

    time.sleep(0.01)
    assert cache.cleanup_expired() >= 1
    assert sql.keys("custom_t_tags") == []

    # repair: an entry whose blob is gone is removed, with its rows
    lost = put("lost")
    entry = cache.store.get_metadata(lost)
    assert entry is not None
    assert entry.blob_ref
    cache.store.blobs.delete(entry.blob_ref)
    report = cache.store.repair(dry_run=False)
    assert lost in report.entries_removed
    assert left() == {keys["keep"]}

    # clear_all
    assert cache.clear_all() >= 1
    assert left() == set()


def test_cascade_on_eviction(sql: Setup) -> None:
    cache = sql.make(max_entries=3)
    if sql.dialect == "sqlite":
        sql.engine = sa.create_engine(f"sqlite:///{cache.store.metadata.path}")  # type: ignore[attr-defined]
    keys = [cache.put(i, custom_metadata=Tag(), n=i) for i in range(10)]
    live = sorted(e.cache_key for e in cache.list_entries())
    assert 0 < len(live) <= 3
    assert cache.get_stats()["evictions"] >= 7
    assert sql.keys("custom_t_tags") == live
    assert set(live) <= set(keys)


# --------------------------------------------------------------------------- atomicity


def test_a_failed_blob_write_writes_nothing(
    sql: Setup, cache: cacheness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("disk on fire")

    monkeypatch.setattr(cache.store.blobs, "open_write", broken)
    with pytest.raises(Exception, match="disk on fire"):
        cache.put(big(3), custom_metadata=experiment("e", 0.5), run=1)
    assert cache.get_metadata(run=1) is None
    assert cache.store.count() == 0
    assert sql.rows("custom_t_experiments") == []


def test_a_failed_index_transaction_writes_neither_entry_nor_rows(
    sql: Setup, cache: cacheness, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache.put("old", custom_metadata=experiment("old", 0.1), run=1)
    old_key = cache.key_for(run=1)

    # a row the database refuses (NOT NULL), after the entry was written in the transaction
    with pytest.raises(MetadataError, match=r"(?i)null"):
        cache.put(big(4), custom_metadata=Performance(run_id=None, seconds=1.0), run=1)
    assert cache.get(run=1) == "old"
    assert sql.rows("custom_t_experiments", "experiment_id") == [(old_key, "old")]
    assert sql.rows("custom_t_performance") == []

    # the transaction fails after every statement ran (as a failing COMMIT would)
    from cacheness.storage._metadata._sqlcustom import CustomTables

    original = CustomTables.write

    def write_then_fail(cursor: Any, key: str, prepared: Any) -> None:
        original(cursor, key, prepared)
        raise RuntimeError("commit failed")

    monkeypatch.setattr(CustomTables, "write", staticmethod(write_then_fail))
    with pytest.raises(RuntimeError, match="commit failed"):
        cache.put(big(5), custom_metadata=experiment("new", 0.9), run=1)
    with pytest.raises(RuntimeError, match="commit failed"):
        cache.put(big(6), custom_metadata=experiment("fresh", 0.9), run=2)
    monkeypatch.undo()
    assert cache.get(run=1) == "old"
    assert cache.get_metadata(run=2) is None
    assert sql.rows("custom_t_experiments", "experiment_id") == [(old_key, "old")]
    assert cache.store.find_orphaned_blobs(min_age_seconds=0) == []


def test_four_processes_writing_one_key_leave_only_the_winners_rows(sql: Setup) -> None:
    config = {**sql.config, "default_ttl_seconds": None}
    first = cacheness(**config)  # creates the index; the workers create the custom table
    if sql.dialect == "sqlite":
        sql.engine = sa.create_engine(f"sqlite:///{first.store.metadata.path}")  # type: ignore[attr-defined]
    first.close()
    puts = 15
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(config), str(n), str(puts)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    for worker in workers:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    for worker in workers:
        assert worker.wait(timeout=300) == 0
        assert worker.stdin is not None
        assert worker.stdout is not None
        worker.stdin.close()
        worker.stdout.close()
    with cacheness(**config) as cache:
        entry = cache.get_metadata(cache_key="contested")
        assert entry is not None
        winner = (entry.metadata["worker"], entry.metadata["put"])
        assert cache.get(cache_key="contested") == f"value {winner[0]}/{winner[1]}"
    rows = sql.rows("custom_race_rows", "worker", "put", "part")
    assert rows == [("contested", *winner, "a"), ("contested", *winner, "b")]


# --------------------------------------------------------------------------- models


def test_backends_without_sql_refuse_custom_models(tmp_path: Path) -> None:
    for backend in ("memory", "json"):
        with cacheness(cache_dir=str(tmp_path / backend), metadata_backend=backend) as cache:
            with pytest.raises(ConfigError, match="'sqlite' or 'postgresql'"):
                cache.put(1, custom_metadata=Tag(), n=1)
            assert cache.store.count() == 0
            with pytest.raises(ConfigError, match="'sqlite' or 'postgresql'"):
                cache.query_custom(Tag)
            session = cache.query_custom_session(Tag)
            with pytest.raises(ConfigError, match="'sqlite' or 'postgresql'"):
                session.__enter__()
            assert cache.update_data(2, n=1) is False  # plain operations still work
            cache.put(3, n=1)
            assert cache.get(n=1) == 3


def test_custom_metadata_is_an_option_not_a_key_parameter(cache: cacheness) -> None:
    with pytest.raises(TypeError, match="custom_metadata"):
        cache.get(custom_metadata=Tag())
    with pytest.raises(ConfigError, match="CustomMetadataBase"):
        cache.put(1, custom_metadata={"accuracy": 0.9}, n=1)  # type: ignore[arg-type]
    assert cache.get_metadata(n=1) is None


def test_registration_rules(tmp_path: Path) -> None:
    assert list_custom_models()["t_experiments"] is Experiment
    assert custom_metadata_model("t_experiments")(Experiment) is Experiment  # idempotent

    class Other(CustomMetadataBase):
        __tablename__ = "custom_t_other"
        value: Mapped[int]

    with pytest.raises(ConfigError, match="already registered"):
        custom_metadata_model("t_experiments")(Other)

    class SameTable(CustomMetadataBase):
        __tablename__ = "custom_t_experiments"
        value: Mapped[int]

    with pytest.raises(ConfigError, match="already used"):
        custom_metadata_model("t_same_table")(SameTable)
    with pytest.raises(ConfigError, match="subclasses of CustomMetadataBase"):
        custom_metadata_model("t_plain")(dict)  # type: ignore[type-var]
    with pytest.raises(ConfigError, match="non-empty name"):
        custom_metadata_model("")
    with (
        cacheness(cache_dir=str(tmp_path)) as cache,
        pytest.raises(ConfigError, match="no custom metadata model is registered"),
    ):
        cache.query_custom("t_nonexistent")
    assert "t_same_table" not in list_custom_models()


def test_a_model_may_not_take_the_index_tables_name(sql: Setup, cache: cacheness) -> None:
    table = cache.store.metadata.table_name  # type: ignore[attr-defined]

    class Clash(CustomMetadataBase):
        __tablename__ = table
        value: Mapped[int]

    custom_metadata_model("t_clash")(Clash)
    try:
        with pytest.raises(ConfigError, match="index's own table"):
            cache.put(1, custom_metadata=Clash(value=1), n=1)
        assert cache.get_metadata(n=1) is None
        cache.put(2, n=2)  # the index is intact
        assert cache.get(n=2) == 2
    finally:
        unregister_custom_model("t_clash")


def test_schema_drift_is_named_and_nullable_columns_migrate(sql: Setup, cache: cacheness) -> None:
    class V1(CustomMetadataBase):
        __tablename__ = "custom_t_drift"
        name: Mapped[str] = mapped_column(String(20))

    key = cache.put(1, custom_metadata=V1(name="a"), n=1)

    class V2(CustomMetadataBase):
        __tablename__ = "custom_t_drift"
        name: Mapped[str] = mapped_column(String(20))
        score: Mapped[float | None] = mapped_column(Float, index=True)

    with pytest.raises(CustomSchemaError, match=r"lacks: score.*migrate_custom_metadata_tables"):
        cache.put(2, custom_metadata=V2(name="b", score=1.0), n=2)
    assert cache.get_metadata(n=2) is None
    assert cache.migrate_custom_metadata_tables(V2) == {"custom_t_drift": ["score"]}
    assert cache.migrate_custom_metadata_tables(V2) == {}
    cache.put(2, custom_metadata=V2(name="b", score=1.0), n=2)
    found = cache.query_custom(V2, V2.score.is_(None))
    assert [(row.cache_key, row.name) for row in found] == [(key, "a")]

    class V3(CustomMetadataBase):
        __tablename__ = "custom_t_drift"
        name: Mapped[str] = mapped_column(String(20))
        score: Mapped[float | None]
        required: Mapped[int]

    with pytest.raises(CustomSchemaError, match="Alembic"):
        cache.put(3, custom_metadata=V3(name="c", required=1), n=3)
    with pytest.raises(CustomSchemaError, match="NOT NULL"):
        cache.migrate_custom_metadata_tables(V3)

    class Fewer(CustomMetadataBase):
        __tablename__ = "custom_t_drift"

    with pytest.raises(CustomSchemaError, match="the model lacks: name, score"):
        cache.query_custom(Fewer)


def test_an_unrelated_table_of_that_name_is_refused(sql: Setup, cache: cacheness) -> None:
    with sql.engine.begin() as conn:
        conn.execute(
            sa.text("CREATE TABLE custom_t_foreign (id INTEGER PRIMARY KEY, cache_key TEXT)")
        )

    class Foreign(CustomMetadataBase):
        __tablename__ = "custom_t_foreign"

    with pytest.raises(CustomSchemaError, match="not a foreign key"):
        cache.put(1, custom_metadata=Foreign(), n=1)
    assert cache.get_metadata(n=1) is None


def test_sessions_never_leak(sql: Setup, cache: cacheness) -> None:
    cache.put(1, custom_metadata=experiment("e", 0.5), n=1)
    engine = cache.store.metadata.engine  # type: ignore[attr-defined]
    for i in range(1000):
        if i % 2:
            assert len(cache.query_custom(Experiment, Experiment.accuracy > 0.1)) == 1
        else:
            with cache.query_custom_session(Experiment) as query:
                assert query.count() == 1

    def fail_inside() -> None:
        with cache.query_custom_session(Experiment) as query:
            query.all()
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        fail_inside()
    assert engine.pool.checkedout() == 0

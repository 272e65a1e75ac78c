"""Races of two team-cache writers, replayed deterministically on the real services.

The random multi-process load (``test_team_cache.py``) found these; here each race is
forced: a metadata backend subclass runs "the other process" (a second ``BlobStore`` on
the same table and bucket) at the exact point between two steps of a write. Ground
truth is read around the stores: the bucket with a plain boto3 client.
"""

from __future__ import annotations

import pytest

from cacheness.storage import BlobStore, PostgresMetadataBackend
from cacheness.storage.errors import BackendUnavailableError
from cacheness.storage.testing.flaky_proxy import FlakyProxy

PREFIX = "team/"


class Interleaved(PostgresMetadataBackend):
    """The postgresql index, with a hook that runs once right after ``get`` or ``put``."""

    after_get = None
    after_put = None

    def get(self, key):
        entry = super().get(key)
        hook, self.after_get = self.after_get, None
        if hook is not None:
            hook()
        return entry

    def put(self, entry, *, overwrite=True):
        replaced = super().put(entry, overwrite=overwrite)
        hook, self.after_put = self.after_put, None
        if hook is not None:
            hook()
        return replaced


@pytest.fixture
def stores(fresh_postgres_url, s3_bucket):
    blob_options = {"bucket": s3_bucket.name, "prefix": PREFIX}
    blob_options.update(s3_bucket.endpoint.client_options())
    index = Interleaved(fresh_postgres_url, pool_size=2)
    mine = BlobStore(
        metadata_backend=index, blob_backend="s3", blob_options=blob_options, inline_threshold=0
    )
    other = BlobStore(
        metadata_backend="postgresql",
        metadata_options={"url": fresh_postgres_url, "pool_size": 2},
        blob_backend="s3",
        blob_options=blob_options,
        inline_threshold=0,
    )
    yield index, mine, other
    mine.close()
    other.close()
    index.close()


def bucket_refs(s3_bucket):
    listing = s3_bucket.client().list_objects_v2(Bucket=s3_bucket.name, Prefix=PREFIX)
    return {item["Key"][len(PREFIX) :] for item in listing.get("Contents", [])}


def test_update_data_racing_a_put_leaks_no_blob(stores, s3_bucket):
    index, mine, other = stores
    mine.put(b"v0" * 1000, key="model")
    index.after_get = lambda: other.put(b"v1" * 1000, key="model")

    assert mine.update_data("model", b"v2" * 1000) is True
    assert index.after_get is None  # the other writer did run in between

    entry = mine.get_metadata("model")
    assert mine.get("model") == b"v2" * 1000  # the last committed write wins
    assert bucket_refs(s3_bucket) == {entry.blob_ref}  # v0's and v1's blobs are gone
    assert mine.find_orphaned_blobs(min_age_seconds=0) == []


def test_update_data_racing_an_update_leaks_no_blob(stores, s3_bucket):
    index, mine, other = stores
    mine.put(b"v0" * 1000, key="model")
    index.after_get = lambda: other.update_data("model", b"v1" * 1000)

    assert mine.update_data("model", b"v2" * 1000) is True
    assert index.after_get is None  # the other writer did run in between

    assert mine.get("model") == b"v2" * 1000
    assert bucket_refs(s3_bucket) == {mine.get_metadata("model").blob_ref}


def test_update_data_racing_a_delete_does_not_resurrect_the_key(stores, s3_bucket):
    index, mine, other = stores
    mine.put(b"v0" * 1000, key="model")
    index.after_get = lambda: other.delete("model")

    assert mine.update_data("model", b"v2" * 1000) is False
    assert index.after_get is None

    assert not mine.exists("model")
    assert not other.exists("model")
    assert bucket_refs(s3_bucket) == set()


def test_lost_commit_acknowledgement_never_leaves_an_entry_without_its_blob(stores, s3_bucket):
    """The index saved the entry but the connection died before saying so."""
    index, mine, _ = stores

    def connection_lost():
        raise BackendUnavailableError(
            "PostgreSQL: the connection failed while committing; the change may or may not "
            "have been saved"
        )

    index.after_put = connection_lost
    with pytest.raises(BackendUnavailableError):
        mine.put(b"payload" * 1000, key="report")
    assert index.after_put is None

    entry = mine.get_metadata("report")  # committed after all
    assert entry is not None
    assert entry.blob_ref in bucket_refs(s3_bucket)
    assert mine.get("report") == b"payload" * 1000
    assert mine.verify_integrity() == []


# --------------------------------------------------------------------------- repair


class RacingRepair(BlobStore):
    """A store whose ``repair`` lets "another process" write right after it looked."""

    between = None

    def find_orphaned_blobs(self, *, min_age_seconds=3600.0):
        orphans = super().find_orphaned_blobs(min_age_seconds=min_age_seconds)
        hook, self.between = self.between, None
        if hook is not None:
            hook()
        return orphans


def test_repair_keeps_an_entry_rewritten_while_it_ran(fresh_postgres_url, s3_bucket):
    blob_options = {"bucket": s3_bucket.name, "prefix": PREFIX}
    blob_options.update(s3_bucket.endpoint.client_options())
    options = {
        "metadata_backend": "postgresql",
        "metadata_options": {"url": fresh_postgres_url, "pool_size": 2},
        "blob_backend": "s3",
        "blob_options": blob_options,
        "inline_threshold": 0,
    }
    with RacingRepair(**options) as repairer, BlobStore(**options) as writer:
        writer.put(b"v1" * 1000, key="model")
        writer.put(b"ok" * 1000, key="other")
        lost = writer.get_metadata("model").blob_ref
        s3_bucket.client().delete_object(Bucket=s3_bucket.name, Key=PREFIX + lost)  # damage
        repairer.between = lambda: writer.put(b"v2" * 1000, key="model")  # fixed meanwhile

        report = repairer.repair(dry_run=False, orphan_min_age_seconds=0)
        assert repairer.between is None

        assert [issue.problem for issue in report.issues] == ["missing_blob"]
        assert report.entries_removed == []  # nothing was removed after all
        assert writer.get("model") == b"v2" * 1000  # the rewrite survived the repair
        assert writer.get("other") == b"ok" * 1000
        assert writer.verify_integrity() == []


def test_repair_during_a_partial_s3_outage_deletes_nothing(fresh_postgres_url, s3_bucket):
    with FlakyProxy(s3_bucket.endpoint.endpoint_url) as proxy:
        blob_options = {"bucket": s3_bucket.name, "prefix": PREFIX, "max_attempts": 2}
        blob_options.update(s3_bucket.endpoint.client_options(), endpoint_url=proxy.url)
        with BlobStore(
            metadata_backend="postgresql",
            metadata_options={"url": fresh_postgres_url, "pool_size": 2},
            blob_backend="s3",
            blob_options=blob_options,
            inline_threshold=0,
        ) as store:
            for name in ("a", "b", "c"):
                store.put(name.encode() * 5000, key=name)
            # reads of objects fail (after the retries), listing the bucket still works
            objects = lambda request: "list-type" not in request.path  # noqa: E731
            proxy.fail_always("error", status=503, methods={"HEAD", "GET"}, when=objects)

            report = store.repair(dry_run=False, orphan_min_age_seconds=0)

            proxy.heal()
            assert {issue.problem for issue in report.issues} == {"unreadable"}
            assert report.entries_removed == []  # not proof of damage: kept
            assert [store.get(name) for name in ("a", "b", "c")] == [
                name.encode() * 5000 for name in ("a", "b", "c")
            ]
            assert len(bucket_refs(s3_bucket)) == 3

"""The S3 backend against moto's server over real HTTP, checked with a plain boto3 client."""

from __future__ import annotations

import io
import os
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cacheness.storage import S3BlobBackend, get_blob_backend, hash_bytes
from cacheness.storage._blob.s3 import HASH_METADATA_KEY
from cacheness.storage.errors import (
    BackendUnavailableError,
    BlobExistsError,
    BlobNotFoundError,
    ConfigError,
    MissingDependencyError,
    StorageError,
)
from cacheness.storage.testing.flaky_proxy import FlakyProxy
from cacheness.storage.testing.services import S3Bucket

MiB = 1 << 20


def head(bucket: S3Bucket, key: str) -> dict[str, Any]:
    return bucket.client().head_object(Bucket=bucket.name, Key=key)


def test_multipart_upload_above_the_threshold(s3_options, s3_bucket, s3_object):
    blobs = S3BlobBackend(**s3_options)  # 5 MiB threshold and parts
    data = os.urandom(12 * MiB)
    with blobs.open_write("big-blob") as writer:
        for offset in range(0, len(data), MiB):
            writer.write(data[offset : offset + MiB])
    info = writer.info
    assert info is not None
    assert info.etag is not None
    assert info.etag.endswith("-3")  # three parts
    stored = head(s3_bucket, "bi/big-blob")
    assert stored["ETag"].strip('"') == info.etag
    assert stored["Metadata"] == {HASH_METADATA_KEY: hash_bytes(data)}
    assert s3_object("bi/big-blob") == data
    assert "cacheness-upload-token" not in str(stored)


def test_single_put_below_the_threshold(s3_options, s3_bucket):
    blobs = S3BlobBackend(**s3_options)
    info = blobs.write_bytes("small", b"tiny")
    stored = head(s3_bucket, "sm/small")
    assert "-" not in stored["ETag"]
    assert info.etag == stored["ETag"].strip('"')
    assert stored["Metadata"][HASH_METADATA_KEY] == hash_bytes(b"tiny")


def test_write_from_file_multipart(s3_options, s3_bucket, s3_object, tmp_path: Path):
    source = tmp_path / "model.bin"
    data = os.urandom(11 * MiB)
    source.write_bytes(data)
    blobs = S3BlobBackend(**s3_options)
    info = blobs.write_from_file("model", source)
    assert (info.size, info.content_hash) == (len(data), hash_bytes(data))
    assert info.etag is not None
    assert info.etag.endswith("-3")
    assert head(s3_bucket, info.ref)["Metadata"][HASH_METADATA_KEY] == hash_bytes(data)
    assert s3_object(info.ref) == data
    with pytest.raises(BlobExistsError):
        blobs.write_from_file("model", source, exclusive=True)


def test_versioned_bucket_records_version_ids(s3_options, s3_bucket):
    s3_bucket.client().put_bucket_versioning(
        Bucket=s3_bucket.name, VersioningConfiguration={"Status": "Enabled"}
    )
    blobs = S3BlobBackend(**s3_options)
    first = blobs.write_bytes("versioned", b"one")
    second = blobs.write_bytes("versioned", b"two")
    assert first.version_id
    assert second.version_id
    assert first.version_id != second.version_id
    assert blobs.stat(second.ref).version_id == second.version_id
    old = s3_bucket.client().get_object(
        Bucket=s3_bucket.name, Key=first.ref, VersionId=first.version_id
    )
    assert old["Body"].read() == b"one"


def test_stat_and_verify_answer_from_one_head(proxied_options, flaky_proxy: FlakyProxy):
    blobs = S3BlobBackend(**proxied_options)
    info = blobs.write_bytes("stat-me", b"abc" * 1000)
    flaky_proxy.reset_stats()
    stat = blobs.stat(info.ref)
    assert (stat.size, stat.content_hash, stat.etag) == (3000, info.content_hash, info.etag)
    assert blobs.verify(info.ref, info.content_hash)
    assert blobs.verify(info.ref, f'"{info.etag}"')
    assert not blobs.verify(info.ref, "0" * 32)
    assert flaky_proxy.stats().by_method == {"HEAD": 4}  # no GET: nothing downloaded


def test_objects_written_by_other_tools(s3_options, s3_bucket):
    s3_bucket.client().put_object(Bucket=s3_bucket.name, Key="fo/foreign", Body=b"from elsewhere")
    blobs = S3BlobBackend(**s3_options)
    assert blobs.stat("fo/foreign").content_hash == ""  # no metadata: unknown
    assert blobs.verify("fo/foreign", hash_bytes(b"from elsewhere"))  # downloads and hashes
    assert blobs.read_bytes("fo/foreign") == b"from elsewhere"


def test_server_side_copy(proxied_options, flaky_proxy: FlakyProxy, s3_bucket):
    blobs = S3BlobBackend(**proxied_options)
    info = blobs.write_bytes("original", os.urandom(100_000))
    flaky_proxy.reset_stats()
    copied = blobs.copy(info.ref, "duplicate")
    assert flaky_proxy.stats().by_method == {"HEAD": 1, "PUT": 1}  # HEAD + CopyObject
    (copy_request,) = [r for r in flaky_proxy.history if r.method == "PUT"]
    assert "x-amz-copy-source" in {name.lower() for name in copy_request.headers}
    assert copied.content_hash == info.content_hash
    assert head(s3_bucket, copied.ref)["Metadata"][HASH_METADATA_KEY] == info.content_hash


def test_multipart_copy_above_the_copy_threshold(s3_options, s3_bucket, s3_object):
    blobs = S3BlobBackend(copy_multipart_threshold=5 * MiB, **s3_options)
    data = os.urandom(11 * MiB)
    info = blobs.write_bytes("large-original", data)
    copied = blobs.copy(info.ref, "large-copy")
    stored = head(s3_bucket, copied.ref)
    assert stored["ETag"].strip('"').endswith("-3")  # copied part by part
    assert copied.etag == stored["ETag"].strip('"')
    assert stored["Metadata"] == {HASH_METADATA_KEY: hash_bytes(data)}
    assert s3_object(copied.ref) == data


def test_delete_many_batches_of_1000(proxied_options, flaky_proxy: FlakyProxy, s3_bucket):
    blobs = S3BlobBackend(**proxied_options)
    real = [blobs.write_bytes(f"real{i:02d}", b"x").ref for i in range(3)]
    refs = real + [f"ab/absent{i:05d}" for i in range(2_400)]
    flaky_proxy.reset_stats()
    assert blobs.delete_many(refs) == len(refs)  # S3 reports absent keys as deleted too
    assert flaky_proxy.stats().by_method == {"POST": 3}
    listed = s3_bucket.client().list_objects_v2(Bucket=s3_bucket.name)
    assert listed.get("KeyCount", 0) == 0


def test_presigned_url(s3_options):
    blobs = S3BlobBackend(**s3_options)
    info = blobs.write_bytes("shared-link", b"for a colleague")
    url = blobs.presigned_url(info.ref, expires_in=60)
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"for a colleague"
    with pytest.raises(ConfigError, match="7 days"):
        blobs.presigned_url(info.ref, expires_in=8 * 24 * 3600)


def test_prefix_and_listing(s3_options, s3_bucket):
    blobs = S3BlobBackend(prefix="/teams/ml/", **s3_options)
    info = blobs.write_bytes("abcdef", b"x")
    s3_bucket.client().put_object(Bucket=s3_bucket.name, Key="outside/abc", Body=b"not ours")
    s3_bucket.client().put_object(Bucket=s3_bucket.name, Key="teams/ml/bad//key", Body=b"?")
    assert head(s3_bucket, "teams/ml/ab/abcdef")["ContentLength"] == 1
    assert list(blobs.iter_refs()) == [info.ref]  # invalid keys are skipped
    assert blobs.location(info.ref) == f"s3://{s3_bucket.name}/teams/ml/ab/abcdef"


def test_listing_pages(s3_options, s3_bucket):
    client = s3_bucket.client()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(
            pool.map(
                lambda i: client.put_object(Bucket=s3_bucket.name, Key=f"pa/page{i:04d}", Body=b""),
                range(1_005),
            )
        )
    blobs = S3BlobBackend(**s3_options)
    refs = set(blobs.iter_refs("pa/"))
    assert len(refs) == 1_005
    # The s3_bucket fixture's cleanup deletes while it pages, which moto stops after
    # 1,000 keys: remove them here.
    blobs.delete_many(refs)


def test_reader_seeks_with_ranged_gets(s3_options):
    blobs = S3BlobBackend(**s3_options)
    data = os.urandom(3 * MiB)
    info = blobs.write_bytes("seekable", data)
    with blobs.open_read(info.ref) as stream:
        assert stream.seekable()
        stream.seek(2 * MiB)
        assert stream.read(10) == data[2 * MiB : 2 * MiB + 10]
        stream.seek(-5, io.SEEK_END)
        assert stream.read() == data[-5:]
        stream.seek(7)
        assert stream.read(3) == data[7:10]
        assert stream.tell() == 10


def test_reader_detects_an_object_replaced_mid_read(s3_options, s3_bucket):
    blobs = S3BlobBackend(**s3_options)
    info = blobs.write_bytes("moving", os.urandom(2 * MiB))
    with blobs.open_read(info.ref) as stream:
        stream.read(10)
        s3_bucket.client().put_object(Bucket=s3_bucket.name, Key=info.ref, Body=b"replaced")
        stream.seek(MiB + 1)  # a ranged GET with If-Match on the first version's ETag
        # the version being read is gone: not found (a reader of an index entry then
        # re-reads the index), never corrupt data
        with pytest.raises(BlobNotFoundError, match="replaced or deleted on the server"):
            stream.read(10)


def test_missing_bucket_is_named(s3_bucket):
    options = s3_bucket.endpoint.client_options()
    blobs = S3BlobBackend("no-such-bucket-here", **options)
    with pytest.raises(StorageError, match="'no-such-bucket-here' does not exist at http") as exc:
        blobs.exists("ab/abc")
    assert options["endpoint_url"] in str(exc.value)
    assert "create_bucket=True" in str(exc.value)


def test_create_bucket(s3_endpoint):
    client = s3_endpoint.client()
    name = "cacheness-created-" + os.urandom(4).hex()
    try:
        blobs = S3BlobBackend(name, create_bucket=True, **s3_endpoint.client_options())
        blobs.write_bytes("abc", b"x")
        assert client.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
        again = S3BlobBackend(name, create_bucket=True, **s3_endpoint.client_options())
        assert again.read_bytes("ab/abc") == b"x"  # an existing bucket is fine
    finally:
        client.delete_object(Bucket=name, Key="ab/abc")
        client.delete_bucket(Bucket=name)


def _empty_and_remove(client, name: str) -> None:
    """What a server restarted without its data looks like: the bucket is gone."""
    for item in client.list_objects_v2(Bucket=name).get("Contents", []):
        client.delete_object(Bucket=name, Key=item["Key"])
    client.delete_bucket(Bucket=name)


def test_a_bucket_that_disappeared_is_created_again_when_allowed(s3_endpoint, caplog):
    """A long-lived backend with create_bucket=True whose server restarted empty."""
    client = s3_endpoint.client()
    name = "cacheness-vanishing-" + os.urandom(4).hex()
    blobs = S3BlobBackend(name, create_bucket=True, **s3_endpoint.client_options())
    try:
        old = blobs.write_bytes("old", b"before the restart")
        _empty_and_remove(client, name)
        # a write goes through: the bucket is created again and the upload retried
        new = blobs.write_bytes("new", b"after the restart")
        assert client.get_object(Bucket=name, Key=new.ref)["Body"].read() == b"after the restart"
        assert "had disappeared" in caplog.text
        # the old blob is simply gone, and every call says so truthfully
        _empty_and_remove(client, name)
        with pytest.raises(BlobNotFoundError, match="created again, empty") as raised:
            blobs.read_bytes(old.ref)
        assert "pass create_bucket=True" not in str(raised.value)
        assert sorted(blobs.iter_refs()) == []
        assert blobs.exists(old.ref) is False
        _empty_and_remove(client, name)
        assert sorted(blobs.iter_refs()) == []  # a listing of the new, empty bucket
        _empty_and_remove(client, name)
        assert blobs.delete_many([old.ref]) == 0
        assert blobs.write_bytes("again", b"x").size == 1
    finally:
        blobs.close()
        _empty_and_remove(client, name)


def test_a_bucket_that_disappeared_without_create_bucket_is_reported(s3_endpoint):
    client = s3_endpoint.client()
    name = "cacheness-vanishing-" + os.urandom(4).hex()
    client.create_bucket(Bucket=name)
    blobs = S3BlobBackend(name, **s3_endpoint.client_options())
    info = blobs.write_bytes("old", b"x")
    _empty_and_remove(client, name)
    for call in (lambda: blobs.read_bytes(info.ref), lambda: blobs.write_bytes("new", b"y")):
        with pytest.raises(StorageError, match="does not exist") as raised:
            call()
        assert "pass create_bucket=True" in str(raised.value)
    blobs.close()


def test_a_failed_batch_delete_names_the_objects_not_the_bucket(
    proxied_options, flaky_proxy: FlakyProxy
):
    blobs = S3BlobBackend(max_attempts=1, **proxied_options)
    refs = [blobs.write_bytes(f"doomed-{n}", b"x").ref for n in range(3)]
    flaky_proxy.fail_always("drop", methods={"POST"})  # DeleteObjects is a POST
    with pytest.raises(BackendUnavailableError) as raised:
        blobs.delete_many(refs)
    message = str(raised.value)
    assert "delete 3 object(s)" in message
    assert repr(refs[0]) in message
    assert "delete bucket" not in message
    flaky_proxy.heal()
    assert blobs.delete_many(refs) == 3


def test_checksum_headers_are_configurable(proxied_options, flaky_proxy: FlakyProxy):
    def checksum_headers() -> set[str]:
        return {
            name.lower()
            for record in flaky_proxy.history
            if record.method == "PUT"
            for name in record.headers
            if name.lower().startswith("x-amz-checksum") or "sdk-checksum" in name.lower()
        }

    S3BlobBackend(**proxied_options).write_bytes("default", b"x" * 1000)
    assert checksum_headers()  # botocore's default: a CRC on every upload
    flaky_proxy.reset_stats()
    strict = S3BlobBackend(checksum="when_required", **proxied_options)
    strict.write_bytes("plain", b"x" * 1000)
    assert checksum_headers() == set()
    assert strict.read_bytes("pl/plain") == b"x" * 1000


def test_conditional_create_falls_back_when_not_implemented(
    proxied_options, flaky_proxy: FlakyProxy, s3_bucket
):
    flaky_proxy.fail_always(
        "error", status=501, when=lambda request: "If-None-Match" in request.headers
    )
    blobs = S3BlobBackend(**proxied_options)
    info = blobs.write_bytes("content-address", b"v1", exclusive=True)
    assert blobs.conditional_writes == "check"  # learned that the server lacks it
    with pytest.raises(BlobExistsError):
        blobs.write_bytes("content-address", b"v2", exclusive=True)
    assert s3_bucket.client().get_object(Bucket=s3_bucket.name, Key=info.ref)["Body"].read() == (
        b"v1"
    )


def test_exclusive_writes_send_if_none_match(proxied_options, flaky_proxy: FlakyProxy):
    blobs = S3BlobBackend(**proxied_options)
    blobs.write_bytes("big-exclusive", os.urandom(6 * MiB), exclusive=True)
    conditional = [r for r in flaky_proxy.history if r.headers.get("If-None-Match") == "*"]
    assert [(r.method, "uploadId=" in r.path) for r in conditional] == [("POST", True)]
    blobs.write_bytes("small-exclusive", b"x", exclusive=True)
    assert flaky_proxy.history[-1].headers.get("If-None-Match") == "*"


def test_options_are_validated():
    with pytest.raises(ConfigError, match="multipart_threshold"):
        S3BlobBackend("b", multipart_threshold=MiB)
    with pytest.raises(ConfigError, match="retry_mode"):
        S3BlobBackend("b", retry_mode="legacy")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="disagree"):
        S3BlobBackend("b", region="eu-west-1", region_name="us-east-1")
    with pytest.raises(ConfigError, match="bucket"):
        S3BlobBackend("a/b")
    with pytest.raises(ConfigError, match="shard_chars"):
        S3BlobBackend("b", shard_chars=9)
    with pytest.raises(ConfigError, match="prefix"):
        S3BlobBackend("b", prefix="a/../b")


def test_missing_boto3_names_the_extra(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "boto3", None)  # as if boto3 were not installed
    with pytest.raises(MissingDependencyError, match=r"blobcache-storage\[s3\]"):
        S3BlobBackend("bucket")


def test_registry_creates_s3_with_the_fixture_options(s3_options):
    blobs = get_blob_backend("s3", **s3_options)
    assert isinstance(blobs, S3BlobBackend)
    assert blobs.read_bytes(blobs.write_bytes("via-registry", b"ok").ref) == b"ok"


def test_missing_blob_is_not_a_failure(s3_options):
    blobs = S3BlobBackend(breaker_threshold=1, **s3_options)
    for _ in range(3):
        with pytest.raises(BlobNotFoundError):
            blobs.read_bytes("no/such")
    assert blobs.circuit_breaker.state == "closed"


def test_cleanup_aborts_abandoned_multipart_uploads_under_the_prefix(s3_options, s3_bucket):
    client = s3_bucket.client()

    def abandon(key: str) -> str:
        """What a writer killed mid-upload leaves: an upload with a part, never completed."""
        upload = client.create_multipart_upload(Bucket=s3_bucket.name, Key=key)["UploadId"]
        client.upload_part(
            Bucket=s3_bucket.name, Key=key, UploadId=upload, PartNumber=1, Body=b"x" * MiB
        )
        return upload

    def pending() -> dict[str, datetime]:
        uploads = client.list_multipart_uploads(Bucket=s3_bucket.name).get("Uploads", [])
        return {upload["UploadId"]: upload["Initiated"] for upload in uploads}

    ours = abandon("team/ab/abandoned")
    other = abandon("elsewhere/ab/abandoned")  # another application's: not under the prefix
    blobs = S3BlobBackend(prefix="team", **s3_options)
    # the server's own start time decides the age (moto reports a fixed one from 2010)
    age = (datetime.now(UTC) - pending()[ours]).total_seconds()
    assert blobs.cleanup_temp_files(older_than=age + 3600) == 0  # young: may be in progress
    assert blobs.cleanup_temp_files(older_than=max(age - 3600, 0), dry_run=True) == 1
    assert blobs.cleanup_temp_files(0, dry_run=True) == 1
    assert pending().keys() == {ours, other}
    assert blobs.cleanup_temp_files(0) == 1
    assert pending().keys() == {other}
    assert blobs.cleanup_temp_files(0) == 0


def test_delete_is_one_request_and_says_true_even_for_an_absent_object(s3_options, s3_bucket):
    blobs = S3BlobBackend(**s3_options)
    info = blobs.write_bytes("short-lived", b"x")
    sent: list[str] = []
    blobs._client.meta.events.register("before-call.s3", lambda model, **_: sent.append(model.name))
    assert blobs.delete(info.ref) is True
    assert sent == ["DeleteObject"]  # no HEAD first: one round trip, no race
    assert blobs.delete(info.ref) is True  # S3 cannot tell, and says so: exact_delete_counts
    assert blobs.exact_delete_counts is False
    listing = s3_bucket.client().list_objects_v2(Bucket=s3_bucket.name)
    assert listing.get("Contents", []) == []

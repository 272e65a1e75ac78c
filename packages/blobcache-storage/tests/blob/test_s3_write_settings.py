"""S3 write settings (encryption, storage class, headers) and the seeds' option spellings,
against moto over HTTP: each object is checked with a HEAD from a plain boto3 client."""

from __future__ import annotations

import os
from typing import Any

import pytest

from cacheness.storage import BlobStore, S3BlobBackend
from cacheness.storage.errors import ConfigError
from cacheness.storage.testing.services import S3Bucket

MiB = 1 << 20


def head(bucket: S3Bucket, key: str) -> dict[str, Any]:
    return bucket.client().head_object(Bucket=bucket.name, Key=key)


@pytest.mark.parametrize("size", [4, 6 * MiB], ids=["put_object", "multipart"])
def test_write_settings_reach_every_object(s3_options, s3_bucket, size):
    blobs = S3BlobBackend(
        **s3_options,
        sse="AES256",
        storage_class="STANDARD_IA",
        content_type="application/octet-stream",
        cache_control="no-store",
    )
    blobs.write_bytes("obj", os.urandom(size))
    stored = head(s3_bucket, "ob/obj")
    assert stored["ServerSideEncryption"] == "AES256"
    assert stored["StorageClass"] == "STANDARD_IA"
    assert stored["ContentType"] == "application/octet-stream"
    assert stored["CacheControl"] == "no-store"


def test_kms_encryption_and_server_side_copies_keep_the_settings(s3_options, s3_bucket):
    blobs = S3BlobBackend(
        **s3_options, sse="aws:kms", kms_key_id="alias/cache", content_type="text/plain"
    )
    source = blobs.write_bytes("src", b"payload")
    copy = blobs.copy(source.ref, "dst")
    for ref in (source.ref, copy.ref):
        stored = head(s3_bucket, blobs.location(ref).split("/", 3)[3])
        assert stored["ServerSideEncryption"] == "aws:kms"
        assert stored["SSEKMSKeyId"].endswith("alias/cache")
        assert stored["ContentType"] == "text/plain"


def test_write_settings_are_checked(s3_options):
    with pytest.raises(ConfigError, match="AES256"):
        S3BlobBackend(**s3_options, sse="aes")
    with pytest.raises(ConfigError, match="kms_key_id needs sse='aws:kms'"):
        S3BlobBackend(**s3_options, kms_key_id="k")
    with pytest.raises(ConfigError, match="storage_class must be a non-empty str"):
        S3BlobBackend(**s3_options, storage_class="")


def test_seeds_spellings_of_the_credentials(s3_bucket, s3_options):
    endpoint = s3_bucket.endpoint
    blobs = S3BlobBackend(
        bucket=s3_bucket.name,
        endpoint_url=endpoint.endpoint_url,
        region=endpoint.region,
        access_key=endpoint.access_key_id,
        secret_key=endpoint.secret_access_key,
        use_ssl=False,
    )
    info = blobs.write_bytes("k", b"v")
    assert blobs.read_bytes(info.ref) == b"v"
    with pytest.raises(ConfigError, match="older spelling of aws_access_key_id"):
        S3BlobBackend(**s3_options, access_key="other")


def test_blob_store_takes_the_s3_settings_as_options(s3_options, s3_bucket):
    with BlobStore(
        metadata_backend="memory",
        blob_backend="s3",
        blob_options={**s3_options, "sse": "AES256", "cache_control": "max-age=60"},
        allow_unsafe_pairing=True,
        inline_threshold=0,
    ) as store:
        store.put(b"x" * 100, key="k")
        entry = store.get_metadata("k")
        assert entry is not None
        stored = head(s3_bucket, store.location(entry).split("/", 3)[3])
        assert stored["ServerSideEncryption"] == "AES256"
        assert stored["CacheControl"] == "max-age=60"

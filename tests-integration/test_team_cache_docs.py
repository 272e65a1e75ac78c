"""The "Team cache" docs page is right: its examples run against the real services.

The page is written for a PostgreSQL server at ``db.internal`` and MinIO at
``minio.internal:9000``; here those names are replaced by the test's PostgreSQL schema
and moto's S3 server over HTTP, and every example runs (Python blocks in order, the
environment variables, the TOML file). The IAM table is checked against the S3 calls
the backend's source really makes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cacheness import cacheness
from cacheness.config import load_config, resolve_config, validate_config

REPO = Path(__file__).resolve().parents[1]
S3_SOURCE = REPO / "packages/blobcache-storage/src/cacheness/storage/_blob/s3.py"

# boto3 client method -> the S3 operations it sends (as named in the page's table)
S3_OPERATIONS = {
    "head_bucket": ["HeadBucket"],
    "create_bucket": ["CreateBucket"],
    "put_object": ["PutObject"],
    "upload_fileobj": [
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
        "AbortMultipartUpload",
    ],
    "get_object": ["GetObject"],
    "download_fileobj": ["GetObject", "HeadObject"],
    "head_object": ["HeadObject"],
    "delete_object": ["DeleteObject"],
    "delete_objects": ["DeleteObjects"],
    "list_objects_v2": ["ListObjectsV2"],
    "copy_object": ["CopyObject"],
    "list_multipart_uploads": ["ListMultipartUploads"],
    "abort_multipart_upload": ["AbortMultipartUpload"],
    "copy": ["CopyObject", "UploadPartCopy"],
    "generate_presigned_url": ["presigned URL"],
}


@pytest.fixture
def page(docs_page):
    return docs_page("team-cache.md")


def test_the_python_examples_run_in_order(page, services, s3_bucket, capsys):
    assert len(page.blocks()) >= 7
    page.run(module="team_cache_docs", rewrite=services)
    out = capsys.readouterr().out
    assert "inline in the index" in out
    listing = s3_bucket.client().list_objects_v2(Bucket=s3_bucket.name)
    prefixes = {item["Key"].split("/")[0] for item in listing.get("Contents", [])}
    assert prefixes == {"cache"}  # the 100 kB report; the other values were small: inline


def test_the_environment_variables_open_the_team_cache(page, services, monkeypatch):
    (exports,) = [block for block in page.blocks("bash") if "CACHENESS_METADATA_BACKEND" in block]
    variables = dict(
        line.removeprefix("export ").split("=", 1)
        for line in services(exports).splitlines()
        if line.startswith("export ")
    )
    assert all(name.startswith("CACHENESS_") for name in variables)
    config = resolve_config(environ=variables)
    assert validate_config(config) == []
    assert (config.metadata.backend, config.blob.backend) == ("postgresql", "s3")
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with cacheness() as cache:  # nothing but the environment
        cache.put(b"x" * 10_000, job="nightly")
        assert cache.get(job="nightly") == b"x" * 10_000
        assert cache.store.metadata.table.name == "team_cache"
        assert cache.store.blobs.prefix == "cache/v1/"


def test_the_toml_file_opens_the_team_cache(page, services, tmp_path, monkeypatch):
    (toml,) = page.blocks("toml")
    path = tmp_path / "team.toml"
    path.write_text(services(toml))
    config = load_config(path)
    assert validate_config(config) == []
    assert config.metadata.options == {"pool_size": 5, "max_overflow": 10}
    assert config.blob.options == {"addressing_style": "path", "max_attempts": 5}
    monkeypatch.setenv("CACHENESS_CONFIG", str(path))
    with cacheness() as cache:
        cache.put(b"y" * 10_000, job="weekly")
        assert cache.get(job="weekly") == b"y" * 10_000
        assert cache.config.default_ttl_seconds == 604800


def test_the_iam_table_covers_every_s3_call_the_backend_makes(page):
    calls = set(re.findall(r"self\._client\.([a-z_0-9]+)\(", S3_SOURCE.read_text()))
    unknown = calls - set(S3_OPERATIONS)
    assert not unknown, f"s3.py makes S3 calls the docs do not cover: {unknown}"
    table = page.text.split("## IAM permissions", 1)[1].split("```json", 1)[0]
    for call in calls:
        for operation in S3_OPERATIONS[call]:
            assert operation in table, f"{operation} ({call}) is missing from the IAM table"


def test_the_iam_policy_grants_what_the_table_asks_for(page):
    (policy,) = [json.loads(block) for block in page.blocks("json")]
    granted = {action for statement in policy["Statement"] for action in statement["Action"]}
    table = page.text.split("## IAM permissions", 1)[1].split("```json", 1)[0]
    needed = set(re.findall(r"`(s3:[A-Za-z]+)`", table)) - {"s3:CreateBucket"}
    assert needed == granted

"""The cacheness package finds the storage package and stays light to import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cacheness

HEAVY = ("numpy", "pandas", "pyarrow", "polars", "blosc2", "boto3", "botocore", "psycopg")


def test_init_starts_with_extend_path():
    source = Path(cacheness.__file__).read_text(encoding="utf-8")
    assert source.splitlines()[0] == (
        '__path__ = __import__("pkgutil").extend_path(__path__, __name__)'
    )


def test_storage_is_found_through_extend_path():
    import cacheness.storage

    assert any(p.endswith("cacheness") for p in cacheness.__path__)
    assert cacheness.version_info() == {
        "cacheness": cacheness.__version__,
        "blobcache-storage": cacheness.storage.__version__,
    }


def test_module_docstring_survives_the_first_line():
    assert cacheness.__doc__ is not None
    assert cacheness.__doc__.startswith("cacheness: a persistent cache")


# Loaded when first needed: never by `import cacheness`, and not by a script that opens
# the default cache and hits a decorated function either (what it needs is SQLite,
# local files, the plain handler).
DEFERRED = ("sqlalchemy", "asyncio", "importlib.metadata", "zstandard", "cloudpickle")
NOT_FOR_THE_DEFAULT = (
    "sqlalchemy.dialects.postgresql",
    "cacheness.storage._blob.s3",
    "cacheness.storage._blob.tiered",
    "cacheness.storage._blob.failover",
    "cacheness.storage._metadata.postgresql",
    "cacheness.storage._metadata.json",
    "cacheness.storage._handlers.numpy",
    "cacheness.storage._handlers.pandas",
    "cacheness.storage._handlers.objects",
    "cacheness._sql_cache",
)
HIT = """
import sys
from cacheness import cached, cacheness
cache = cacheness(cache_dir=sys.argv[1])
@cached(cache_instance=cache)
def double(x: int) -> int:
    return 2 * x
assert double(x=21) == 42
cache.close()
"""


def modules_after(script: str, *args: str) -> set[str]:
    probe = f"{script}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe, *args], check=True, capture_output=True, text=True
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_import_cacheness_loads_only_the_errors():
    loaded = modules_after("import cacheness")
    assert "cacheness.storage.errors" in loaded
    assert sorted(m for m in loaded if m.startswith("cacheness")) == [
        "cacheness",
        "cacheness._version",
        "cacheness.storage",
        "cacheness.storage._version",
        "cacheness.storage.errors",
    ]
    assert sorted(loaded & {*HEAVY, *DEFERRED, "msgspec", "logging"}) == []


def test_opening_the_default_cache_and_a_hit_load_only_what_they_use(tmp_path):
    modules_after(HIT, str(tmp_path))  # the first run creates the index (SQLAlchemy DDL)
    loaded = modules_after(HIT, str(tmp_path))
    assert "cacheness.storage._metadata.sqlite" in loaded
    assert sorted(loaded & {*HEAVY, *DEFERRED, *NOT_FOR_THE_DEFAULT}) == []


def test_every_public_name_resolves_and_dir_lists_them():
    assert set(cacheness.__all__) <= set(dir(cacheness))
    missing = [name for name in cacheness.__all__ if getattr(cacheness, name, None) is None]
    assert missing == []

"""Write the golden cache directory (``cache_store/``) with the cacheness checked out.

``test_golden_cache.py`` copies it to a temporary directory, opens it with the current
code and asks for every value again with the key parameters of ``cache_values.py``: the
entries must be hits under the same keys, with the same ``_cacheness`` facts. The
directory was written once, by the code of the day, and is **not** rewritten when the
code changes: a format change adds a migration (or, for the cache's facts, a new
``FORMAT_VERSION`` whose old entries are misses, which the test then states). Run this
script only to add a store in a new directory, never to "fix" a failing golden test.

Usage (from the repository root)::

    python -m hatch run python packages/cacheness/tests/golden/make_golden_cache.py [--out DIR]

The clock starts at ``cache_values.CLOCK_START`` and ticks one millisecond per call, and
blob names come from a seeded generator instead of ``uuid4``: with the same library
versions (recorded in ``manifest.json``) two runs write the same bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import importlib.util
import json
import platform
import random
import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any
from unittest import mock

HERE = Path(__file__).resolve().parent
NAME = "cache_store"


def _load_values() -> Any:
    spec = importlib.util.spec_from_file_location("cache_values", HERE / "cache_values.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cache_values"] = module
    spec.loader.exec_module(module)
    return module


class Clock:
    """A UTC clock that starts at ``start`` and moves one millisecond per call."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        now = self.now
        self.now += dt.timedelta(milliseconds=1)
        return now


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("cacheness", "blobcache-storage", "numpy", "pandas", "pyarrow", "blosc2"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


def write(root: Path, values: Any) -> dict[str, Any]:
    """Fill a new cache at ``root``; return the manifest."""
    import msgspec

    from cacheness import cached, cacheness
    from cacheness.storage import BlobStore

    rng = random.Random(20260102)

    def fresh_name() -> str:
        return uuid.UUID(int=rng.getrandbits(128), version=4).hex

    calls: dict[str, str] = {}
    decorated: list[str] = []
    with (
        mock.patch.object(BlobStore, "_fresh_name", staticmethod(fresh_name)),
        cacheness(cache_dir=root, clock=Clock(values.CLOCK_START), **values.CONFIG) as cache,
    ):
        for call in values.CALLS:
            calls[call.name] = cache.put(call.value(), key_params=call.params(), **call.options)

        @cached(
            cache_instance=cache,
            key_prefix=values.DECORATED_PREFIX,
            version=values.DECORATED_VERSION,
        )
        def train(dataset: str, epochs: int = 3) -> dict[str, Any]:
            return values.train_result(dataset, epochs)

        for args, kwargs in values.DECORATED_CALLS:
            train(*args, **kwargs)
            decorated.append(train.cache_key(*args, **kwargs))
        # a read (recorded as an access) and a TTL restarted with a new TTL
        model = next(call for call in values.CALLS if call.name == "model")
        assert cache.get(key_params=model.params()) is not None
        assert cache.touch(ttl_seconds=2 * 86_400, job="weekly")
    entries = {}
    with BlobStore(root) as store:  # after close: reads not yet recorded are flushed
        for entry in store.list_entries():
            fields = msgspec.to_builtins(entry)
            del fields["key"]
            fields["inline"] = fields["inline"] is not None
            entries[entry.key] = fields
    return {
        "written_by": _versions(),
        "config": values.CONFIG,
        "calls": calls,
        "decorated": decorated,
        "entries": entries,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE, help="where cache_store/ goes")
    args = parser.parse_args(argv)
    target: Path = args.out / NAME
    if target.exists():
        raise SystemExit(f"{target} exists: golden stores are never rewritten in place")
    values = _load_values()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / NAME
        manifest = write(root, values)
        for path in sorted(root.rglob("*"), reverse=True):  # lock files are not the format
            if path.name.endswith((".lock", "-wal", "-shm")) and path.is_file():
                path.unlink()
            elif path.name.endswith(".locks") and path.is_dir():
                shutil.rmtree(path)
        text = json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False)
        (root / "manifest.json").write_text(text + "\n", encoding="utf-8")
        shutil.copytree(root, target)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"{target}: {size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

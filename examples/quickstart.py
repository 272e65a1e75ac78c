"""Quick start: what cacheness does, in one run on the embedded default (SQLite + files).

Run it with ``python -m hatch run demo`` (see the README). Everything goes into a
temporary directory that is removed at the end.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import cacheness
from cacheness import cached, hours
from cacheness.storage import BlobStore


def timed(label: str, function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    print(f"  {label:<34} {1000 * (time.perf_counter() - start):9.2f} ms")
    return result


def main() -> None:
    print(f"cacheness {cacheness.__version__} on blobcache-storage "
          f"{cacheness.version_info()['blobcache-storage']}\n")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        cache = cacheness.cacheness(
            cache_dir=str(Path(tmp) / "cache"), default_ttl_seconds=hours(24)
        )

        # 1. A decorator: an expensive numpy + pandas computation, computed once.
        @cached(cache_instance=cache)
        def simulate(n_paths: int, n_steps: int, seed: int = 0) -> pd.DataFrame:
            rng = np.random.default_rng(seed)
            paths = np.cumsum(rng.standard_normal((n_paths, n_steps)), axis=1)
            quantiles = np.quantile(paths, [0.05, 0.5, 0.95], axis=0)
            return pd.DataFrame(quantiles.T, columns=["p05", "median", "p95"])

        print("@cached simulation (2,000 paths x 5,000 steps):")
        first = timed("first call (computed, stored)", simulate, 2_000, 5_000)
        again = timed("second call (loaded from cache)", simulate, 2_000, 5_000)
        timed("same call, keyword arguments", simulate, n_paths=2_000, n_steps=5_000, seed=0)
        assert first.equals(again)
        print(f"  {simulate.cache_info()}\n")

        # 2. put / get with key parameters, metadata, TTL management.
        print("put / get by key parameters:")
        embeddings = np.random.default_rng(1).standard_normal((10_000, 64)).astype(np.float32)
        key = cache.put(embeddings, model="minilm", corpus="docs-v2",
                        metadata={"owner": "search-team"}, ttl_seconds=hours(6))  # fmt: skip
        loaded = cache.get(model="minilm", corpus="docs-v2")
        same = np.array_equal(loaded, embeddings)
        print(f"  key {key}: {loaded.shape} {loaded.dtype}, equal={same}")
        print(f"  other parameters are a miss: {cache.get(model='minilm', corpus='docs-v3')}")
        info = cache.get_metadata(model="minilm", corpus="docs-v2")
        print(f"  stored {info.size:,} bytes ({info.handler}/{info.format}, codec {info.codec}) "
              f"of {info.raw_size:,}; expires {info.expires_at:%Y-%m-%d %H:%M} UTC")  # fmt: skip
        cache.touch(model="minilm", corpus="docs-v2", ttl_seconds=hours(48))
        expires = cache.get_metadata(model="minilm", corpus="docs-v2").expires_at
        print(f"  after touch(48 h): expires {expires:%Y-%m-%d %H:%M} UTC")
        cache.update_data(embeddings[:100], model="minilm", corpus="docs-v2")
        print(f"  after update_data: {cache.get(model='minilm', corpus='docs-v2').shape}, same key")
        team = cache.list_entries(filter={"metadata.owner": "search-team"})
        print(f"  entries of the search team: {[entry.params for entry in team]}\n")

        # 3. The storage layer on its own: a versioned model artifact.
        print("BlobStore artifact (storage only, no TTL or eviction):")
        with BlobStore(Path(tmp) / "artifacts") as store:
            weights = {"layer1": np.ones((256, 256)), "bias": np.zeros(256)}
            store.put(weights, key="models/ranker/v3", metadata={"accuracy": 0.93, "stage": "prod"})
            good = store.list_entries(metadata_filter={"accuracy": {"$gte": 0.9}})
            print(f"  models with accuracy >= 0.9: {[entry.key for entry in good]}")
            print(f"  integrity issues: {store.verify_integrity()}\n")

        # 4. What the cache saw.
        stats = cache.get_stats()
        print("get_stats():")
        for name in ("hits", "misses", "puts", "entries", "total_size"):
            print(f"  {name:<12} {stats[name]:,}")
        print(f"  {'hit_rate':<12} {stats['hit_rate']:.0%}")
        cache.close()


if __name__ == "__main__":
    main()

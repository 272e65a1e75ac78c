"""The seeds' public examples (Cacheness 0.4), written as their users wrote them.

Model versioning, pipeline artifacts, checkpoints, decorators and config files: each
works unchanged, or fails with a message naming what to write now (docs/migrating.md).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

import cacheness as package
from cacheness import CacheConfig, cached, cacheness, load_config
from cacheness.storage import BlobStore
from cacheness.storage.errors import ConfigError


def test_model_versioning(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model_store = BlobStore(cache_dir="./models", content_addressable=True)
    weights = np.arange(1000, dtype=np.float32)
    for version, accuracy in [(1, 0.85), (2, 0.95), (3, 0.93)]:
        model_store.put(
            weights * version,
            key=f"fraud_detector_v{version}",
            metadata={
                "accuracy": accuracy,
                "training_date": datetime.now().isoformat(),
                "hyperparameters": {"depth": version},
            },
        )
    best_models = model_store.list(metadata_filter={"accuracy": {"$gte": 0.9}})
    assert best_models == ["fraud_detector_v2", "fraud_detector_v3"]  # keys, as in 0.4
    assert np.array_equal(model_store.get(best_models[0]), weights * 2)
    model_store.close()
    # the seeds' "postgresql" index needs its URL: the error says which option to set
    with pytest.raises(ConfigError, match="url"):
        BlobStore(cache_dir="./models", backend="postgresql")


def test_pipeline_artifacts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pipeline_store = BlobStore(cache_dir="./pipeline_artifacts")
    run_id = "2026-01-27"
    raw_data = {"rows": [1, 2, 3]}
    pipeline_store.put(raw_data, key=f"raw_data_{run_id}")
    processed_data = {"rows": [2, 4, 6]}
    pipeline_store.put(
        processed_data,
        key=f"processed_data_{run_id}",
        metadata={"depends_on": f"raw_data_{run_id}"},
    )
    assert pipeline_store.get(f"processed_data_{run_id}") == processed_data
    assert pipeline_store.list(prefix="raw_data_") == [f"raw_data_{run_id}"]
    assert (tmp_path / "pipeline_artifacts" / "index.sqlite").exists()
    pipeline_store.close()


def test_checkpoints(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    checkpoint_store = BlobStore(cache_dir="./checkpoints")
    state = {"w": np.zeros(10)}
    for epoch in range(30):
        state["w"] = state["w"] + 1
        if epoch % 10 == 0:
            checkpoint_store.put(
                dict(state),
                key=f"checkpoint_epoch_{epoch}",
                metadata={"epoch": epoch, "loss": 1.0 / (epoch + 1)},
            )
    assert checkpoint_store.list() == [
        "checkpoint_epoch_0",
        "checkpoint_epoch_10",
        "checkpoint_epoch_20",
    ]
    newest = checkpoint_store.list_entries(order_by="metadata.epoch", descending=True, limit=1)
    assert newest[0].metadata["epoch"] == 20
    checkpoint_store.close()


def test_storage_layer_quick_start(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = BlobStore(backend="sqlite", compression="lz4", cache_dir=".")
    blob_id = store.put(b"data" * 1000, metadata={"type": "model", "version": "1.0"})
    assert store.get(blob_id) == b"data" * 1000
    store.close()
    cache = cacheness(str(tmp_path / "cache"))
    cache.put({"auc": 0.9}, model="xgboost", version="1.0")
    assert cache.get(model="xgboost", version="1.0") == {"auc": 0.9}
    cache.close()


def test_decorators(tmp_path):
    cache = cacheness(cache_dir=str(tmp_path))
    calls: list[int] = []

    @cached(cache_instance=cache, ttl_seconds=3600, ignore_errors=True)
    def train(epochs: int) -> dict[str, float]:
        calls.append(epochs)
        return {"loss": 1 / epochs}

    assert train(10) == train(10) == {"loss": 0.1}
    assert calls == [10]
    with pytest.raises(AttributeError, match=r"cached\.for_api"):
        package.for_api  # noqa: B018
    with pytest.raises(TypeError, match="ttl_seconds"):
        cached(cache_instance=cache, ttl=60)
    # the seeds' option names of the cache methods name their replacement
    with pytest.raises(TypeError, match="key_prefix"):
        cache.put(1, prefix="p", x=1)
    with pytest.raises(AttributeError, match=r"invalidate\(cache_key=key\)"):
        cache.invalidate_by_cache_key("k")
    cache.close()


def test_config_files(tmp_path, monkeypatch):
    path = Path(tmp_path / "cacheness.json")
    document = {"cache_dir": (tmp_path / "c").as_posix(), "default_ttl_seconds": 60}
    path.write_text(json.dumps({**document, "cleanup_on_init": True}))
    config = load_config(path)
    assert config.cleanup_on_init is True
    with cacheness(config) as cache:
        assert cache.config.default_ttl_seconds == 60
    monkeypatch.setenv("CACHENESS_MAX_SIZE_MB", "100")
    monkeypatch.setenv("CACHENESS_BACKEND", "json")
    with cacheness(cache_dir=str(tmp_path / "env")) as cache:
        assert cache.config.max_cache_size_mb == 100
        assert cache.store.metadata_backend_name == "json"
    with pytest.raises(TypeError, match="did you mean 'default_ttl_seconds'"):
        CacheConfig(ttl=60)  # type: ignore[call-arg]

"""Model versioning with BlobStore: versions with metadata, queries, promotion, dedup.

Every trained model is stored under ``models/<name>/v<N>`` with its metrics as
metadata; the registry is queried like a table (``accuracy >= 0.9``), the best
version is promoted by copying it to ``models/<name>/production``, and a
content-addressed store keeps one copy of identical weights however many versions
point at them.

Run: ``python examples/model_versioning.py`` (works in a temporary directory).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from cacheness.storage import BlobStore


def train(seed: int, epochs: int) -> tuple[dict[str, np.ndarray], float]:
    """A stand-in for training: weights and a validation accuracy that grows with epochs."""
    rng = np.random.default_rng(seed)
    weights = {
        "dense_1": rng.normal(size=(256, 128)).astype(np.float32),
        "dense_2": rng.normal(size=(128, 10)).astype(np.float32),
    }
    accuracy = round(0.80 + 0.04 * epochs + rng.uniform(-0.02, 0.02), 3)
    return weights, min(accuracy, 0.99)


def register_versions(store: BlobStore) -> None:
    for version, epochs in enumerate([1, 2, 3, 4], start=1):
        weights, accuracy = train(seed=version, epochs=epochs)
        key = store.put(
            weights,
            key=f"models/classifier/v{version}",
            metadata={
                "model": "classifier",
                "version": version,
                "epochs": epochs,
                "accuracy": accuracy,
                "stage": "candidate",
            },
        )
        entry = store.get_metadata(key)
        print(
            f"stored {key:24} accuracy={accuracy:.3f}  {entry.size / 1024:6.1f} KiB "
            f"({entry.handler}, {entry.codec})"
        )


def query_and_promote(store: BlobStore) -> None:
    good = store.list_entries(
        prefix="models/classifier/v", metadata_filter={"accuracy": {"$gte": 0.9}}
    )
    print(f"\nversions with accuracy >= 0.9: {[entry.key for entry in good]}")

    best = store.list_entries(
        prefix="models/classifier/v", order_by="metadata.accuracy", descending=True, limit=1
    )[0]
    store.copy(best.key, "models/classifier/production", overwrite=True)
    store.update_metadata(best.key, {"stage": "production"})
    print(f"promoted {best.key} (accuracy {best.metadata['accuracy']}) to production")

    production = store.get("models/classifier/production")
    assert np.array_equal(production["dense_1"], store.get(best.key)["dense_1"])
    print(f"production weights: {sorted(production)} loaded, shapes match the source")

    stale = store.delete_where({"metadata.accuracy": {"$lt": 0.85}})
    print(f"deleted {stale} version(s) below 0.85; {store.count('models/')} entries remain")


def deduplicate(root: Path) -> None:
    """Identical weights saved under several versions are stored once."""
    with BlobStore(root, content_addressable=True) as store:
        weights, _ = train(seed=7, epochs=3)
        for version in (1, 2, 3):  # retrained without changes: the same bytes each time
            store.put(weights, key=f"models/frozen/v{version}", metadata={"version": version})
        blobs = len(list(store.blobs.iter_refs()))
        print(
            f"\ncontent-addressed: {store.count()} versions, {blobs} blob on disk "
            f"({store.get_metadata('models/frozen/v1').size / 1024:.1f} KiB once)"
        )
        store.delete("models/frozen/v1")
        assert np.array_equal(store.get("models/frozen/v3")["dense_2"], weights["dense_2"])
        print("deleted v1: v2 and v3 still load (the blob goes with its last entry)")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        with BlobStore(Path(tmp) / "registry") as store:
            register_versions(store)
            query_and_promote(store)
        deduplicate(Path(tmp) / "dedup")


if __name__ == "__main__":
    main()

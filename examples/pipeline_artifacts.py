"""Pipeline artifacts with BlobStore: every step's output stored with its lineage.

A small pipeline (load -> clean -> features -> train) stores each step's output under
``runs/<run>/<step>``. The metadata records the step, its parameters and the keys of
its inputs, so any artifact can be traced back to where it came from, a re-run skips
steps whose output already exists for the same parameters, and a whole run is removed
with one call.

Run: ``python examples/pipeline_artifacts.py`` (works in a temporary directory).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from cacheness.storage import BlobStore


def load(_: list[Any], params: dict[str, Any]) -> pd.DataFrame:
    rng = np.random.default_rng(params["seed"])
    n = params["rows"]
    return pd.DataFrame(
        {
            "age": rng.integers(18, 90, n),
            "income": rng.normal(50_000, 15_000, n).round(2),
            "city": pd.Categorical(rng.choice(["Lyon", "Oslo", "Lima"], n)),
            "signup": pd.date_range("2024-01-01", periods=n, freq="min"),
            "churned": rng.random(n) < 0.2,
        }
    )


def clean(inputs: list[Any], params: dict[str, Any]) -> pd.DataFrame:
    (raw,) = inputs
    return raw[raw["income"] > params["min_income"]].reset_index(drop=True)


def features(inputs: list[Any], params: dict[str, Any]) -> pd.DataFrame:
    (cleaned,) = inputs
    out = pd.get_dummies(cleaned[["age", "income", "city"]], columns=["city"], dtype=float)
    out["income"] = out["income"] / params["income_scale"]
    return out


def train(inputs: list[Any], params: dict[str, Any]) -> dict[str, Any]:
    feats, cleaned = inputs
    x = feats.to_numpy()
    y = cleaned["churned"].to_numpy(dtype=float)
    weights, *_ = np.linalg.lstsq(x, y, rcond=None)
    return {"weights": weights.tolist(), "columns": list(feats.columns), "l2": params["l2"]}


STEPS: list[tuple[str, Callable[..., Any], list[str], dict[str, Any]]] = [
    ("load", load, [], {"seed": 0, "rows": 20_000}),
    ("clean", clean, ["load"], {"min_income": 10_000}),
    ("features", features, ["clean"], {"income_scale": 100_000}),
    ("train", train, ["features", "clean"], {"l2": 0.0}),
]


def run_pipeline(store: BlobStore, run: str) -> None:
    """Run the steps whose parameters or inputs changed since their output was stored."""
    for step, function, inputs, params in STEPS:
        key = f"runs/{run}/{step}"
        input_keys = [f"runs/{run}/{name}" for name in inputs]
        # The exact versions of the inputs: the content hashes of their stored bytes.
        versions = {k: store.get_metadata(k).content_hash for k in input_keys}
        entry = store.get_metadata(key)
        if (
            entry is not None
            and entry.metadata["params"] == params
            and entry.metadata["inputs"] == versions
        ):
            print(f"  {step:9} up to date")
            continue
        output = function(list(store.get_batch(input_keys).values()), params)
        entry = store.put_entry(
            output,
            key=key,
            metadata={"run": run, "step": step, "params": params, "inputs": versions},
        )
        print(f"  {step:9} stored {key:22} {entry.handler:7} {entry.size / 1024:8.1f} KiB")


def lineage(store: BlobStore, key: str, depth: int = 0) -> None:
    """Print where an artifact came from, down to the raw data."""
    entry = store.get_metadata(key)
    print(f"  {'  ' * depth}{key}  {entry.metadata['params']}  ({entry.content_hash[:8]})")
    for parent, version in entry.metadata["inputs"].items():
        assert store.get_metadata(parent).content_hash == version  # still that version
        lineage(store, parent, depth + 1)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, BlobStore(tmp) as store:
        print("run 2026-01 (first time):")
        run_pipeline(store, "2026-01")
        print("run 2026-01 again (nothing to do):")
        run_pipeline(store, "2026-01")

        STEPS[2][3]["income_scale"] = 1_000  # change one step's parameters
        print("run 2026-01 after changing the features step:")
        run_pipeline(store, "2026-01")  # features is recomputed, so train is too
        print("\nlineage of the trained model:")
        lineage(store, "runs/2026-01/train")

        frames = store.list_entries(metadata_filter={"step": {"$in": ["load", "clean"]}})
        print(f"\ndata frames stored: {[entry.key for entry in frames]}")
        model = store.get("runs/2026-01/train")
        print(f"model columns: {model['columns']}")

        print("\nrun 2026-02 (a new run):")
        run_pipeline(store, "2026-02")
        print(f"runs stored: {sorted({e.metadata['run'] for e in store.list_entries('runs/')})}")
        removed = store.delete_by_prefix("runs/2026-01/")
        print(f"deleted run 2026-01: {removed} artifacts; {store.count()} left")


if __name__ == "__main__":
    main()

"""Training checkpoints with BlobStore: save every N epochs, resume from the latest.

A training loop saves its state (weights as a numpy array, optimizer state, epoch)
every ``EVERY`` epochs under ``ckpt/<run>/epoch-NNNN`` with the epoch and loss as
metadata, keeps only the last ``KEEP`` checkpoints, and after a crash resumes from the
newest one found by a metadata query. A checkpoint is either completely there or not
there at all: the write protocol never leaves an entry pointing at half a file.

Run: ``python examples/checkpoints.py`` (works in a temporary directory).
"""

from __future__ import annotations

import tempfile
from typing import Any

import numpy as np

from cacheness.storage import BlobStore

EVERY = 2  # epochs between checkpoints
KEEP = 2  # checkpoints kept per run
RUN = "resnet-small"


class CrashError(Exception):
    """A stand-in for the machine going away in the middle of training."""


def fresh_state() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {"epoch": 0, "weights": rng.normal(size=(512, 256)), "momentum": 0.0, "lr": 0.1}


def train_one_epoch(state: dict[str, Any]) -> float:
    state["epoch"] += 1
    state["weights"] *= 0.97  # "learning"
    state["momentum"] = 0.9 * state["momentum"] + 0.1
    state["lr"] *= 0.95
    return float(np.abs(state["weights"]).mean())


def save_checkpoint(store: BlobStore, state: dict[str, Any], loss: float) -> None:
    epoch = state["epoch"]
    store.put(state, key=f"ckpt/{RUN}/epoch-{epoch:04d}", metadata={"epoch": epoch, "loss": loss})
    # Keep the newest KEEP checkpoints of this run; delete the older ones in one statement.
    doomed = store.delete_where(
        {
            "key": {"$prefix": f"ckpt/{RUN}/"},
            "metadata.epoch": {"$lte": epoch - KEEP * EVERY},
        }
    )
    print(f"  epoch {epoch:2}: loss {loss:.4f}, checkpoint saved, {doomed} old one(s) removed")


def latest_checkpoint(store: BlobStore) -> dict[str, Any] | None:
    newest = store.list_entries(f"ckpt/{RUN}/", order_by="metadata.epoch", descending=True, limit=1)
    return store.get(newest[0].key) if newest else None


def train(store: BlobStore, epochs: int, crash_at: int | None = None) -> dict[str, Any]:
    state = latest_checkpoint(store)
    if state is None:
        state = fresh_state()
        print("  no checkpoint: starting from scratch")
    else:
        print(f"  resuming from the checkpoint of epoch {state['epoch']}")
    while state["epoch"] < epochs:
        loss = train_one_epoch(state)
        if state["epoch"] == crash_at:
            raise CrashError(f"crashed during epoch {crash_at}")
        if state["epoch"] % EVERY == 0:
            save_checkpoint(store, state, loss)
    return state


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, BlobStore(tmp) as store:
        print("first attempt:")
        try:
            train(store, epochs=10, crash_at=7)
        except CrashError as exc:
            print(f"  {exc}")
        kept = [entry.key for entry in store.list_entries(f"ckpt/{RUN}/")]
        print(f"checkpoints on disk: {kept}")

        print("second attempt:")
        state = train(store, epochs=10)
        print(f"finished at epoch {state['epoch']}, lr {state['lr']:.4f}")

        uninterrupted = fresh_state()
        for _ in range(10):
            train_one_epoch(uninterrupted)
        assert np.allclose(state["weights"], uninterrupted["weights"])
        print("the resumed run ends with the same weights as an uninterrupted one")

        kept = store.list_entries(f"ckpt/{RUN}/")
        losses = {entry.metadata["epoch"]: round(entry.metadata["loss"], 4) for entry in kept}
        print(f"kept checkpoints (epoch: loss): {losses}")
        print(f"stored bytes of run {RUN}: {store.total_size(f'ckpt/{RUN}/') / 1024:.0f} KiB")


if __name__ == "__main__":
    main()

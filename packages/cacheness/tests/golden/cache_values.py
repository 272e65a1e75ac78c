"""What the golden cache directory holds, and how to ask for it again.

``make_golden_cache.py`` performs :data:`CALLS` on a fresh ``cacheness`` cache (with
:data:`CONFIG` and a clock starting at :data:`CLOCK_START`); ``test_golden_cache.py``
opens a copy of the committed directory and asks for every value again with the same
key parameters, so the cache's key derivation and its ``_cacheness`` facts (format
version, parameters, prefix, TTL, expiry) are pinned together with the storage format.

Nothing here depends on the clock or the process: values are built from fixed numbers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Callable
from typing import Any

CLOCK_START = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)
"""The generator's clock: it starts here and ticks one millisecond per call."""

READ_AT = CLOCK_START + dt.timedelta(hours=1)
"""When the test reads: one hour later, so the 60-second entry has expired."""

CONFIG: dict[str, Any] = {}
"""The cache's configuration besides ``cache_dir``: the defaults (sqlite + filesystem, no
default TTL)."""

DECORATED_PREFIX = "golden.train"
DECORATED_VERSION = "2"


def _frame() -> Any:
    import pandas as pd

    return pd.DataFrame(
        {
            "epoch": pd.array(range(10), dtype="int64"),
            "loss": pd.array([1 / (i + 1) for i in range(10)], dtype="float64"),
            "phase": pd.Categorical(["warmup"] * 3 + ["train"] * 7),
        }
    )


def _array() -> Any:
    """700 pseudo-random float64 (5,600 bytes, incompressible: stored in a blob file)."""
    import numpy as np

    rng = random.Random(20260102)
    return np.array([rng.random() for _ in range(700)], dtype="<f8").reshape(35, 20)


def _key_array() -> Any:
    import numpy as np

    return np.array([3, 1, 4, 1, 5, 9, 2, 6], dtype="<i8")


def train_result(dataset: str, epochs: int) -> dict[str, Any]:
    """What the decorated function returned when the store was written."""
    return {"dataset": dataset, "epochs": epochs, "accuracy": 0.5 + epochs / 100}


@dataclasses.dataclass(frozen=True)
class Call:
    """One ``cache.put``: the value, its key parameters and the other arguments."""

    name: str
    value: Callable[[], Any]
    params: Callable[[], dict[str, Any]]
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    live: bool = True
    """False when the entry has expired at :data:`READ_AT`."""


CALLS: tuple[Call, ...] = (
    Call(
        "model",
        lambda: {"auc": 0.91, "weights": [0.1, 0.2], "trained": dt.date(2026, 1, 2)},
        lambda: {
            "model": "resnet",
            "epochs": 10,
            "lr": 0.001,
            "layers": (64, 32),
            "options": {"dropout": 0.5, "batch_norm": True},
            "tags": ["a", "b"],
            "seed": None,
            "started": dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC),
        },
        {"metadata": {"owner": "ana", "stage": "dev"}},
    ),
    Call("report", lambda: "quarterly report ✓ " * 50, lambda: {"quarter": 4, "year": 2025}),
    Call(
        "array",
        _array,
        lambda: {"source": _key_array(), "scale": 7},  # an array counts by content
    ),
    Call("frame", _frame, lambda: {"experiment": "loss-curve"}, {"ttl_seconds": 86_400.0}),
    Call(
        "prefixed",
        lambda: b"\x00\x01 raw bytes" * 20,
        lambda: {"name": "summary"},
        {"key_prefix": "reports"},
    ),
    Call("short-lived", lambda: [1, 2, 3], lambda: {"job": "tmp"}, {"ttl_seconds": 60}, False),
    Call("forever", lambda: {"kept": True}, lambda: {"job": "keep"}),
    Call("week", lambda: 42, lambda: {"job": "weekly"}, {"ttl_seconds": 7 * 86_400}),
    Call(
        "explicit-key",
        lambda: {"manual": 1},
        lambda: {"source": "import"},
        {"cache_key": "imports/2026-01-02"},
    ),
)
"""Every ``cache.put`` of the generator, in order."""

DECORATED_CALLS: tuple[tuple[tuple[Any, ...], dict[str, Any]], ...] = (
    (("iris",), {"epochs": 5}),
    (("mnist", 2), {}),
)
"""Calls of the decorated ``train(dataset, epochs=3)``: positional and keyword."""

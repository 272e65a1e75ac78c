"""Handlers never import numpy, pandas, pyarrow or polars for objects not of their types."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("numpy", "pandas", "pyarrow", "polars", "blosc2", "cloudpickle")


def modules_after(script: str) -> set[str]:
    probe = f"import sys, json\n{script}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_storing_plain_objects_imports_no_heavy_library():
    loaded = modules_after(
        """
import io, datetime, fractions
import cacheness.storage
from cacheness.storage.handlers import default_registry, list_handlers
registry = default_registry()
values = [
    {"lr": 0.01, "layers": (64, 32), "at": datetime.datetime.now()},
    b"bytes", "text", [1, 2], fractions.Fraction(1, 3),
]
for value in values:
    sink = io.BytesIO()
    info = registry.dump(value, sink)
    assert registry.load(io.BytesIO(sink.getvalue()), info) == value
assert len(list_handlers()) == 7
"""
    )
    assert "cacheness.storage.handlers.numpy" in loaded  # the handler module itself is light
    assert sorted(loaded & set(HEAVY)) == []


def test_storing_an_array_imports_numpy_but_not_the_dataframe_libraries():
    loaded = modules_after(
        """
import io
import numpy as np
from cacheness.storage.handlers import default_registry
sink = io.BytesIO()
info = default_registry().dump(np.arange(100_000), sink)
assert info.handler == "numpy"
"""
    )
    assert "numpy" in loaded
    assert "blosc2" in loaded
    assert sorted(loaded & {"pandas", "pyarrow", "polars"}) == []

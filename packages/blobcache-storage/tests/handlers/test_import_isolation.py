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
from cacheness.storage import default_registry, list_handlers
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
    assert "cacheness.storage._handlers.numpy" in loaded  # the handler module itself is light
    assert sorted(loaded & set(HEAVY)) == []


def test_handler_modules_load_when_first_asked():
    loaded = modules_after(
        """
import io
from cacheness.storage import default_registry
registry = default_registry()
assert registry.list()[-1] == "objects"  # names and order known without importing
sink = io.BytesIO()
info = registry.dump({"a": 1}, sink)  # raw declines, plain takes it
assert registry.load(io.BytesIO(sink.getvalue()), info) == {"a": 1}
"""
    )
    handlers = sorted(m for m in loaded if m.startswith("cacheness.storage._handlers."))
    assert handlers == [
        "cacheness.storage._handlers._common",
        "cacheness.storage._handlers.base",
        "cacheness.storage._handlers.plain",
        "cacheness.storage._handlers.raw",
        "cacheness.storage._handlers.registry",
    ]


def test_storing_an_array_imports_numpy_but_not_the_dataframe_libraries():
    loaded = modules_after(
        """
import io
import numpy as np
from cacheness.storage import default_registry
sink = io.BytesIO()
info = default_registry().dump(np.arange(100_000), sink)
assert info.handler == "numpy"
"""
    )
    assert "numpy" in loaded
    assert "blosc2" in loaded
    assert sorted(loaded & {"pandas", "pyarrow", "polars"}) == []


def test_a_fresh_process_loads_every_kind_without_importing_first(tmp_path):
    """Loading must import what it needs: the reader may never have touched pandas."""
    import io

    import numpy as np
    import pandas as pd
    import polars as pl
    import pyarrow as pa

    from cacheness.storage import default_registry

    values = {
        "numpy": np.arange(50_000).reshape(500, 100),
        "pandas": pd.DataFrame({"a": range(1000), "b": pd.Categorical(["x", "y"] * 500)}),
        "series": pd.Series([1.5, 2.5], name="s"),
        "arrow": pa.table({"a": range(1000)}),
        "polars": pl.DataFrame({"a": range(1000)}),
    }
    for name, value in values.items():
        sink = io.BytesIO()
        info = default_registry().dump(value, sink)
        (tmp_path / f"{name}.blob").write_bytes(sink.getvalue())
        (tmp_path / f"{name}.json").write_text(json.dumps(msgspec_to_dict(info)))
    script = f"""
import io, json, pathlib
from cacheness.storage import default_registry
from cacheness.storage import FormatInfo
folder = pathlib.Path({str(tmp_path)!r})
shapes = {{}}
for name in {sorted(values)!r}:
    info = FormatInfo(**json.loads((folder / f"{{name}}.json").read_text()))
    value = default_registry().load(io.BytesIO((folder / f"{{name}}.blob").read_bytes()), info)
    shapes[name] = [type(value).__name__, len(value)]
print(json.dumps(shapes))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == {
        "numpy": ["ndarray", 500],
        "pandas": ["DataFrame", 1000],
        "series": ["Series", 2],
        "arrow": ["Table", 1000],
        "polars": ["DataFrame", 1000],
    }


def msgspec_to_dict(info):
    import msgspec

    return msgspec.to_builtins(info)

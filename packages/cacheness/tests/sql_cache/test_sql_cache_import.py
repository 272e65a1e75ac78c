"""SqlCache is exported by cacheness lazily: ``import cacheness`` stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import cacheness

LAZY = {
    "FetcherError",
    "InvalidFetchedDataError",
    "InvalidQueryError",
    "SqlCache",
    "SqlCacheAdapter",
    "SqlCacheError",
    "SqlCacheResult",
    "SqlCacheStatus",
}


def loaded_after(code: str) -> set[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    return {name.split(".")[0] for name in json.loads(out)}


def test_import_cacheness_loads_neither_sqlalchemy_nor_pandas():
    loaded = loaded_after("import cacheness")
    assert "cacheness" in loaded
    assert not loaded & {"sqlalchemy", "pandas", "numpy", "duckdb", "duckdb_engine"}


def test_the_first_use_of_sql_cache_loads_sqlalchemy_but_not_pandas_yet():
    loaded = loaded_after("from cacheness import SqlCache, SqlCacheAdapter")
    assert "sqlalchemy" in loaded
    assert "pandas" not in loaded


def test_the_lazy_names_are_public_and_resolve():
    assert set(cacheness.__all__) >= LAZY
    assert set(dir(cacheness)) >= LAZY
    from cacheness import _sql_cache

    for name in LAZY:
        assert getattr(cacheness, name) is getattr(_sql_cache, name)
    assert issubclass(cacheness.SqlCacheError, cacheness.CacheError)


def test_an_unknown_attribute_is_still_an_attribute_error():
    with pytest.raises(AttributeError, match="NoSuchThing"):
        cacheness.NoSuchThing  # noqa: B018

"""The default cache: get_cache, set_default_cache, reset_cache, CACHENESS_DIR, exit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from cacheness.cache import cacheness
from cacheness.decorators import cached, get_cache, reset_cache, set_default_cache
from cacheness.storage.errors import StorageError


@pytest.fixture(autouse=True)
def default_dir(tmp_path, monkeypatch):
    """Each test starts without a default cache and with CACHENESS_DIR in its tmp dir."""
    directory = tmp_path / "default-cache"
    monkeypatch.setenv("CACHENESS_DIR", str(directory))
    previous = set_default_cache(None)
    yield directory
    reset_cache()
    set_default_cache(previous)


def test_get_cache_is_created_lazily_in_cacheness_dir(default_dir):
    assert not default_dir.exists()
    cache = get_cache()
    assert get_cache() is cache
    assert Path(cache.config.cache_dir) == default_dir

    @cached
    def square(x):
        return x * x

    assert square(3) == 9
    assert square(3) == 9
    assert square.cache_info().hits == 1
    (entry,) = cache.list_entries()
    assert entry.params == {"x": 3}
    assert entry.prefix == f"{__name__}.{square.__qualname__}"
    assert (default_dir / "index.sqlite").is_file()  # the embedded default, on disk


def test_bare_forms_use_the_default_cache(default_dir):
    def cube(x):
        return x**3

    cube_cached = cached(cube)

    @cached.for_api
    def lookup(name):
        return [name]

    assert cube_cached(2) == 8
    assert lookup("a") == ["a"]
    params = sorted(str(entry.params) for entry in get_cache().list_entries())
    assert params == ["{'name': 'a'}", "{'x': 2}"]
    assert get_cache().get_metadata(cache_key=lookup.cache_key("a")).ttl_seconds == 900


def test_set_default_cache_is_seen_by_functions_decorated_before(tmp_path):
    calls = []

    @cached
    def f(x):
        calls.append(x)
        return x

    f(1)
    with cacheness(cache_dir=str(tmp_path / "team")) as team:
        previous = set_default_cache(team)
        assert previous is not None
        assert previous is not team
        f(1)  # a miss: the new default holds nothing yet
        assert team.exists(cache_key=f.cache_key(1))
        assert set_default_cache(previous) is team
    f(1)
    assert calls == [1, 1]
    with pytest.raises(TypeError, match="cacheness instance"):
        set_default_cache("cache")


def test_reset_cache_closes_the_old_one_and_rereads_the_environment(tmp_path, monkeypatch):
    old = get_cache()
    old.put("kept on disk", note=1)
    reset_cache()
    with pytest.raises(StorageError, match="closed"):
        old.get(note=1)
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("CACHENESS_DIR", str(elsewhere))
    new = get_cache()
    assert new is not old
    assert Path(new.config.cache_dir) == elsewhere
    assert new.get(note=1) is None
    reset_cache()
    reset_cache()  # nothing to close: fine


def test_concurrent_first_use_creates_one_cache():
    barrier = threading.Barrier(8)
    seen = []

    def first_use():
        barrier.wait()
        seen.append(get_cache())

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8
    assert len({id(cache) for cache in seen}) == 1


EXIT_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from cacheness.decorators import cached

    @cached
    def f(x):
        return x + 1

    for _ in range(4):  # a miss, then three hits whose access counts wait in memory
        f(1)
    if sys.argv[1] == "skip-exit-handlers":
        os._exit(0)
    """
)


@pytest.mark.parametrize("exit_mode", ["normal", "skip-exit-handlers"])
def test_caches_made_by_get_cache_are_closed_at_exit(tmp_path, exit_mode):
    directory = tmp_path / "exit-cache"
    script = tmp_path / "script.py"
    script.write_text(EXIT_SCRIPT)
    env = {**os.environ, "CACHENESS_DIR": str(directory)}
    done = subprocess.run(
        [sys.executable, str(script), exit_mode], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    with cacheness(cache_dir=str(directory)) as cache:
        (entry,) = cache.list_entries()
    # closing records the hits still pending; without the exit handler they are lost
    assert entry.access_count == (3 if exit_mode == "normal" else 0)


def test_the_examples_of_the_decorators_page_run(default_dir, capsys, docs_page):
    page = docs_page("decorators.md")
    assert len(page.blocks()) >= 8
    page.run()
    printed = capsys.readouterr().out
    assert "CacheInfo(hits=2, misses=1, maxsize=None, currsize=1, errors=0)" in printed
    assert "__main__.clean@version=3@code=" in printed
    assert printed.splitlines()[-1] == "1"  # one computation for 50 concurrent requests

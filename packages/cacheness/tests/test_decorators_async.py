"""@cached on async functions: results, stampede protection, and a loop that never blocks."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading

import pytest

from cacheness.cache import MISS, cacheness
from cacheness.decorators import CacheInfo, cached
from cacheness.storage.errors import BackendUnavailableError

TASKS = 20


@pytest.fixture
def cache(tmp_path):
    with cacheness(cache_dir=str(tmp_path / "cache")) as made:
        yield made


def test_async_results_are_cached_and_the_wrapper_stays_a_coroutine_function(cache):
    calls = []

    @cached(cache_instance=cache)
    async def fetch(url, timeout=10):
        """Fetch a page."""
        calls.append(url)
        await asyncio.sleep(0)
        return None if url == "empty" else {"url": url}

    async def main():
        return [
            await fetch("a"),
            await fetch(url="a", timeout=10),
            await fetch("empty"),
            await fetch("empty"),
        ]

    assert asyncio.run(main()) == [{"url": "a"}, {"url": "a"}, None, None]
    assert calls == ["a", "empty"]
    assert inspect.iscoroutinefunction(fetch)
    assert fetch.__doc__ == "Fetch a page."
    assert cache.get(cache_key=fetch.cache_key("empty"), default=MISS) is None
    assert fetch.cache_info() == CacheInfo(hits=2, misses=2, maxsize=None, currsize=2, errors=0)


def test_async_exceptions_are_not_cached(cache):
    calls = []

    @cached(cache_instance=cache, lock=True)
    async def flaky(x):
        calls.append(x)
        if len(calls) == 1:
            raise TimeoutError("remote timed out")
        return x

    async def main():
        with pytest.raises(TimeoutError):
            await flaky(1)
        return await flaky(1), await flaky(1)

    assert asyncio.run(main()) == (1, 1)
    assert calls == [1, 1]


def test_async_methods_and_recursion_under_a_lock(cache):
    class Client:
        def __init__(self, region):
            self.region = region
            self.calls = []

        def __cache_key__(self):
            return self.region

        @cached(cache_instance=cache, lock=True)
        async def count_down(self, n):
            self.calls.append(n)
            return 0 if n == 0 else 1 + await self.count_down(n - 1)

    client = Client("eu")

    async def main():
        return await client.count_down(10), await Client("eu").count_down(10)

    assert asyncio.run(main()) == (10, 10)
    assert sorted(client.calls) == list(range(11))


def _concurrent(cache, lock, tasks=TASKS):
    computed = []

    @cached(cache_instance=cache, lock=lock)
    async def expensive(x):
        computed.append(x)
        # Every task looks the key up (a miss) before it computes or queues on the
        # lock: wait, without blocking the loop, until all of them have.
        for _ in range(2000):
            if cache.get_stats()["misses"] >= tasks:
                break
            await asyncio.sleep(0.005)
        return [x] * 3

    async def main():
        return await asyncio.gather(*(expensive(5) for _ in range(tasks)))

    assert asyncio.run(main()) == [[5, 5, 5]] * tasks
    return len(computed), expensive.cache_info()


def test_concurrent_coroutines_with_one_key_compute_once(cache):
    computations, info = _concurrent(cache, lock=True)
    assert computations == 1
    assert (info.hits, info.misses) == (TASKS - 1, 1)


def test_without_a_lock_concurrent_coroutines_all_compute(cache):
    computations, info = _concurrent(cache, lock=False)
    assert computations == TASKS
    assert info.misses == TASKS


def test_event_loops_in_several_threads_compute_once(cache):
    computed = []
    loops = 4

    @cached(cache_instance=cache, lock=True)
    async def expensive(x):
        computed.append(x)
        for _ in range(2000):
            if cache.get_stats()["misses"] >= loops * 3:
                break
            await asyncio.sleep(0.005)
        return x * 2

    results = []

    async def three_tasks():
        return await asyncio.gather(expensive(4), expensive(4), expensive(4))

    threads = [
        threading.Thread(target=lambda: results.extend(asyncio.run(three_tasks())))
        for _ in range(loops)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [8] * (loops * 3)
    assert computed == [4]


def _hold_in_thread(cache, key):
    """Hold ``cache.compute_lock(key)`` in another thread until the returned event is set."""
    taken, release = threading.Event(), threading.Event()

    def hold():
        with cache.compute_lock(key) as held:
            assert held
            taken.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert taken.wait(10)
    return release, thread


def _guarded(cache, **options):
    """An async function with a lock, and the list of arguments it computed."""
    computed = []

    @cached(cache_instance=cache, lock=True, **options)
    async def guarded(x):
        computed.append(x)
        return x + 1

    return guarded, computed


def test_waiting_for_the_lock_never_blocks_the_event_loop(cache):
    guarded, computed = _guarded(cache)
    release, holder = _hold_in_thread(cache, guarded.cache_key(1))

    async def main():
        task = asyncio.create_task(guarded(1))
        ticks = 0
        while ticks < 50:  # the loop keeps running while the task waits for the lock
            await asyncio.sleep(0.001)
            ticks += 1
        assert not task.done()
        assert computed == []
        release.set()
        return await task, ticks

    assert asyncio.run(main()) == (2, 50)
    holder.join()
    assert computed == [1]


def test_async_lock_timeout_computes_anyway_and_logs(cache, caplog):
    guarded, computed = _guarded(cache, lock_timeout=0.05)
    release, holder = _hold_in_thread(cache, guarded.cache_key(1))
    try:
        with caplog.at_level(logging.WARNING, logger="cacheness.decorators"):
            assert asyncio.run(guarded(1)) == 2
    finally:
        release.set()
        holder.join()
    assert computed == [1]
    assert "waited lock_timeout=0.05s" in caplog.text


def test_a_task_cancelled_while_waiting_lets_the_lock_go(cache, caplog):
    guarded, computed = _guarded(cache, lock_timeout=10)
    release, holder = _hold_in_thread(cache, guarded.cache_key(1))

    async def main():
        waiting = asyncio.create_task(guarded(1))
        for _ in range(20):
            await asyncio.sleep(0.001)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()
        await asyncio.to_thread(holder.join)
        # The cancelled task's lock thread takes the lock and lets it go at once: a new
        # call gets it (well within lock_timeout, which would log a warning).
        return await guarded(1)

    with caplog.at_level(logging.WARNING, logger="cacheness.decorators"):
        assert asyncio.run(main()) == 2
    assert computed == [1]
    assert "waited lock_timeout" not in caplog.text


def test_a_failing_cache_never_breaks_an_async_call(cache, monkeypatch, caplog):
    def unreachable(*args, **kwargs):
        raise BackendUnavailableError("index server down")

    monkeypatch.setattr(cache, "get", unreachable)
    monkeypatch.setattr(cache, "put", unreachable)
    monkeypatch.setattr(cache, "compute_lock", unreachable)

    @cached(cache_instance=cache, lock=True)
    async def double(x):
        return 2 * x

    with caplog.at_level(logging.WARNING, logger="cacheness.decorators"):
        assert asyncio.run(double(3)) == 6
    assert double.cache_info().errors == 4  # read, lock, read again, store
    assert "index server down" in caplog.text


def test_async_condition_is_applied_to_the_awaited_result(cache):
    @cached(cache_instance=cache, condition=lambda rows: bool(rows))
    async def rows(n):
        return list(range(n))

    async def main():
        await rows(0)
        await rows(2)

    asyncio.run(main())
    assert [entry.params for entry in cache.list_entries()] == [{"n": 2}]

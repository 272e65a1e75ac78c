"""Locks behind ``@cached(lock=True)`` (private; the public API is ``cacheness.decorators``).

A decorated function with stampede protection computes a missing value once, however many
callers ask for it at the same time. Two layers do it:

* in this process, callers of one key queue on a lock of their own kind: a
  :class:`threading.Lock` for threads, an :class:`asyncio.Lock` per event loop for tasks
  (waiting never blocks the loop). :class:`LockTable` hands them out per key and forgets
  them when nobody uses them.
* the one caller that gets through takes the cache's ``compute_lock``, shared with other
  processes (sqlite: one host; postgresql: every host). Async callers hold it in a
  thread of their own (:class:`ThreadHeldLock`), so the event loop never waits on it.

:func:`guard_recursion` turns a call that waits for a key its own caller holds (a
function calling itself with the same arguments) into an error instead of a deadlock.

Example:
    >>> import threading
    >>> table = LockTable(threading.Lock)
    >>> with table.borrow("k") as lock:
    ...     lock.acquire(timeout=1)
    ...     lock.release()
    True
    >>> len(table)
    0
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import AbstractContextManager
from typing import Generic, TypeVar

__all__ = ["LockTable", "ThreadHeldLock", "guard_recursion"]

log = logging.getLogger(__name__)

L = TypeVar("L")

_HELD: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "cacheness_held_keys", default=frozenset()
)


class LockTable(Generic[L]):
    """Locks by name, made on first use and forgotten when the last user is done.

    Args:
        factory: makes a new lock (``threading.Lock``, ``asyncio.Lock``).
    """

    def __init__(self, factory: Callable[[], L]) -> None:
        self._factory = factory
        self._guard = threading.Lock()
        self._locks: dict[Hashable, tuple[L, int]] = {}

    @contextlib.contextmanager
    def borrow(self, name: Hashable) -> Iterator[L]:
        """Yield the lock of ``name`` (acquiring it is up to the caller)."""
        with self._guard:
            lock, users = self._locks.get(name) or (self._factory(), 0)
            self._locks[name] = (lock, users + 1)
        try:
            yield lock
        finally:
            with self._guard:
                lock, users = self._locks[name]
                if users == 1:
                    del self._locks[name]
                else:
                    self._locks[name] = (lock, users - 1)

    def __len__(self) -> int:
        with self._guard:
            return len(self._locks)


@contextlib.contextmanager
def guard_recursion(key: str, describe: Callable[[], str]) -> Iterator[None]:
    """Mark ``key`` as being computed by this thread or task for the block.

    Raises:
        RecursionError: this thread or task is computing ``key`` already: waiting for
            itself would never end. ``describe()`` names the call in the message.
    """
    held = _HELD.get()
    if key in held:
        raise RecursionError(
            f"{describe()} called itself with the same arguments while computing them "
            f"(cache key {key}); with lock=True it would wait for itself forever. "
            "Call it with other arguments, or compute the inner value without the cache."
        )
    token = _HELD.set(held | {key})
    try:
        yield
    finally:
        _HELD.reset(token)


class ThreadHeldLock:
    """Hold a blocking lock for an async caller, in a thread of its own.

    The thread enters the lock's context manager, reports to the event loop whether it
    holds the lock, and exits the context manager once :meth:`release` is called, so
    the lock is entered and exited in one thread (some backends need that) and the
    event loop never blocks. A task cancelled while waiting lets the lock go as soon
    as the thread gets it.

    Args:
        make_lock: called in the thread; returns the context manager of the lock,
            which yields True when held and False when its timeout ran out.
        name: names the thread (shown in debuggers and thread dumps).
    """

    def __init__(self, make_lock: Callable[[], AbstractContextManager[bool]], name: str) -> None:
        self._make_lock = make_lock
        self._name = name
        self._release = threading.Event()

    async def acquire(self) -> bool:
        """Wait (without blocking the loop) until the lock is held or timed out.

        Returns:
            What the lock yielded: True when held, False when its timeout ran out.

        Raises:
            Exception: whatever taking the lock raised (e.g. ``BackendUnavailableError``).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()

        def deliver(held: bool | None, error: Exception | None) -> None:
            if future.done():  # the waiting task was cancelled
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(bool(held))

        def hold() -> None:
            try:
                lock = self._make_lock()
                held = lock.__enter__()
            except Exception as exc:  # noqa: BLE001 - handed to the awaiting task, which raises it
                with contextlib.suppress(RuntimeError):  # the loop is gone: nobody to tell
                    loop.call_soon_threadsafe(deliver, None, exc)
                return
            try:
                loop.call_soon_threadsafe(deliver, held, None)
            except RuntimeError:
                log.debug("event loop closed while %s waited; releasing", self._name)
                self._release.set()
            try:
                self._release.wait()
            finally:
                lock.__exit__(None, None, None)

        threading.Thread(target=hold, name=self._name, daemon=True).start()
        try:
            return await future
        except asyncio.CancelledError:
            self._release.set()
            raise

    def release(self) -> None:
        """Let the holding thread exit the lock (returns at once)."""
        self._release.set()

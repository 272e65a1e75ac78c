"""Locks behind ``@cached(lock=True)`` (private; the public API is ``cacheness.decorators``).

A decorated function with stampede protection computes a missing value once, however many
callers ask for it at the same time. Two layers do it:

* in this process, callers of one key queue on a lock of their own kind: a
  :class:`threading.Lock` for threads, an :class:`asyncio.Lock` per event loop for tasks
  (waiting never blocks the loop). Storage's :class:`~cacheness.storage.LockTable` hands
  them out per key and forgets them when nobody uses them.
* the one caller that gets through takes the cache's ``compute_lock``, shared with other
  processes (sqlite: one host; postgresql: every host). Async callers hold it in a
  thread of their own (:class:`ThreadHeldLock`), so the event loop never waits on it.

:func:`guard_recursion` turns a call that waits for a key its own caller holds (a
function calling itself with the same arguments) into an error instead of a deadlock.

Example:
    >>> with guard_recursion("k", lambda: "f(x=1)"):
    ...     with guard_recursion("k", lambda: "f(x=1)"):
    ...         pass
    Traceback (most recent call last):
    ...
    RecursionError: f(x=1) called itself with the same arguments while computing them ...
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

__all__ = ["ThreadHeldLock", "guard_recursion"]

log = logging.getLogger(__name__)


_HELD: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "cacheness_held_keys", default=frozenset()
)


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
        import asyncio  # loaded already: this runs in an event loop

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

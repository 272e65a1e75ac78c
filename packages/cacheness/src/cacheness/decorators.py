"""Cache what functions return: ``@cached``, ``cached.for_api`` and ``@cache_if``.

A decorated function looks its result up under a key derived from its arguments (bound
to its signature, so ``f(1)``, ``f(x=1)`` and a default of ``1`` are one key) and only
runs on a miss. It works on sync and ``async`` functions and on methods, and gets
``cache_clear()``, ``cache_info()``, ``invalidate(*args, **kw)`` and
``cache_key(*args, **kw)``:

* exceptions are never cached; ``None`` is a result like any other and is cached;
* ``lock=True`` computes a missing value once however many threads, tasks or processes
  ask for it at the same time (stampede protection);
* a failing cache (storage unreachable, a value that cannot be stored) never breaks a
  call: it is logged, counted in ``cache_info().errors`` and the function runs
  (``strict=True`` caches raise instead).

Without ``cache_instance=`` the functions share the default cache of :func:`get_cache`.

Example:
    >>> import tempfile
    >>> from cacheness.cache import cacheness
    >>> cache = cacheness(cache_dir=tempfile.mkdtemp())
    >>> calls = []
    >>> @cached(cache_instance=cache)
    ... def square(x, power=2):
    ...     calls.append(x)
    ...     return x**power
    >>> square(4), square(x=4), square(4, power=2), calls
    (16, 16, 16, [4])
    >>> square.cache_info()
    CacheInfo(hits=2, misses=1, maxsize=None, currsize=1, errors=0)
    >>> cache.close()
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    NamedTuple,
    ParamSpec,
    Protocol,
    TypeVar,
    cast,
    overload,
)

from cacheness._call_locks import ThreadHeldLock, guard_recursion
from cacheness._global import get_cache, reset_cache, set_default_cache
from cacheness.cache import _ACTIVITY_NAME, MISS, MISTAKEN_OPTIONS, activity_log, cacheness
from cacheness.cache_entry import RESERVED_METADATA_KEY
from cacheness.keys import UnsupportedKeyValueError
from cacheness.storage import LockTable, did_you_mean
from cacheness.storage.errors import CacheError
from cacheness.ttl import minutes, validate_ttl

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "CacheInfo",
    "CachedFunction",
    "cache_if",
    "cached",
    "get_cache",
    "reset_cache",
    "set_default_cache",
]

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

_PREFIX_FIELD = f"metadata.{RESERVED_METADATA_KEY}.prefix"
_FAILURES = (CacheError, OSError)  # a cache that fails; a bug in the caller raises
_METHOD_SELF = ("self", "cls")
_PARAMETER_ROOT = re.compile(r"[.\[]")
_API_TTL = minutes(15)
_API_LOCK_TIMEOUT = 60.0
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
_REMEMBER_STR: Final = 256  # the longest string argument whose call's key is remembered
_REMEMBER_MAX: Final = 4096  # remembered keys per function (all forgotten when full)
_WORKAROUND = {
    "read": "computing the result without the cache",
    "store": "the result is returned uncached",
    "lock": "computing without stampede protection",
}


class CacheInfo(NamedTuple):
    """Statistics of one cached function, like ``functools.lru_cache``'s.

    Attributes:
        hits: calls answered from the cache (in this process, since the last clear).
        misses: calls that ran the function.
        maxsize: the cache's ``max_entries`` limit (None: no count limit).
        currsize: live entries of this function in the cache (every process's).
        errors: cache failures that were logged and worked around by computing.
    """

    hits: int
    misses: int
    maxsize: int | None
    currsize: int
    errors: int


class CachedFunction(Protocol[P, R_co]):
    """What ``@cached`` returns: the function, plus cache management helpers.

    On a method, the helpers take the instance first, as the plain function does:
    ``Model.predict.invalidate(model, x)``.
    """

    @property
    def __wrapped__(self) -> Callable[P, R_co]:
        """The decorated function itself."""
        ...

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        """Return the cached result, computing and storing it on a miss."""
        ...

    def cache_clear(self) -> int:
        """Delete every entry of the function (all versions); return how many."""
        ...

    def cache_info(self) -> CacheInfo:
        """Return hits, misses, maxsize, currsize and errors."""
        ...

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Delete the entry of these arguments; return False if there was none."""
        ...

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """Return the key these arguments are cached under (nothing is computed)."""
        ...

    def cache_parameters(self) -> dict[str, Any]:
        """Return the decorator's settings (``key_prefix`` with its salts, ``ttl_seconds``...)."""
        ...


@dataclass(frozen=True, slots=True)
class _Options:
    cache_instance: cacheness | None
    ttl_seconds: float | None
    key_prefix: str | None
    ignore: frozenset[str]
    key_func: Callable[..., Mapping[str, Any] | str] | None
    version: str | None
    code_hash: bool
    condition: Callable[[Any], bool] | None
    lock: bool
    lock_timeout: float | None


def _options(
    cache_instance: cacheness | None,
    ttl_seconds: float | timedelta | None,
    key_prefix: str | None,
    ignore: Iterable[str],
    key_func: Callable[..., Mapping[str, Any] | str] | None,
    version: str | int | None,
    code_hash: bool,
    condition: Callable[[Any], bool] | None,
    lock: bool,
    lock_timeout: float | None,
) -> _Options:
    """Check the decorator's arguments once, when it is applied."""
    if cache_instance is not None and not isinstance(cache_instance, cacheness):
        raise TypeError(
            f"cache_instance must be a cacheness instance, not {type(cache_instance).__name__}"
        )
    if key_prefix is not None and (not isinstance(key_prefix, str) or not key_prefix):
        raise ValueError(f"key_prefix must be a non-empty str, not {key_prefix!r}")
    if isinstance(ignore, str):
        raise TypeError(f"ignore takes a list of argument names: ignore=[{ignore!r}]")
    names = frozenset(ignore)
    if not all(isinstance(name, str) for name in names):
        raise TypeError(f"ignore takes argument names (str), got {sorted(map(repr, names))}")
    if key_func is not None and not callable(key_func):
        raise TypeError(f"key_func must be callable, not {type(key_func).__name__}")
    if key_func is not None and names:
        raise ValueError("ignore= has no effect with key_func= (key_func picks the key alone)")
    if version is not None and (isinstance(version, bool) or not isinstance(version, str | int)):
        raise TypeError(f"version must be a str or int, not {type(version).__name__}")
    if condition is not None and not callable(condition):
        raise TypeError(f"condition must be callable, not {type(condition).__name__}")
    if lock_timeout is not None:
        if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, int | float):
            raise TypeError(f"lock_timeout must be seconds or None, not {lock_timeout!r}")
        if not lock_timeout >= 0:
            raise ValueError(f"lock_timeout must be >= 0 seconds, not {lock_timeout!r}")
    return _Options(
        cache_instance=cache_instance,
        ttl_seconds=validate_ttl(ttl_seconds),
        key_prefix=key_prefix,
        ignore=names,
        key_func=key_func,
        version=None if version is None else str(version),
        code_hash=bool(code_hash),
        condition=condition,
        lock=bool(lock),
        lock_timeout=None if lock_timeout is None else float(lock_timeout),
    )


@overload
def cached(func: Callable[P, R], /) -> CachedFunction[P, R]: ...


@overload
def cached(
    func: None = None,
    /,
    *,
    cache_instance: cacheness | None = None,
    ttl_seconds: float | timedelta | None = None,
    key_prefix: str | None = None,
    ignore: Iterable[str] = (),
    key_func: Callable[..., Mapping[str, Any] | str] | None = None,
    version: str | int | None = None,
    code_hash: bool = False,
    condition: Callable[[Any], bool] | None = None,
    lock: bool = False,
    lock_timeout: float | None = None,
) -> Callable[[Callable[P, R]], CachedFunction[P, R]]: ...


def cached(
    func: Callable[P, R] | None = None,
    /,
    *,
    cache_instance: cacheness | None = None,
    ttl_seconds: float | timedelta | None = None,
    key_prefix: str | None = None,
    ignore: Iterable[str] = (),
    key_func: Callable[..., Mapping[str, Any] | str] | None = None,
    version: str | int | None = None,
    code_hash: bool = False,
    condition: Callable[[Any], bool] | None = None,
    lock: bool = False,
    lock_timeout: float | None = None,
    **unknown: Any,
) -> CachedFunction[P, R] | Callable[[Callable[P, R]], CachedFunction[P, R]]:
    """Cache a function's results under keys derived from its arguments.

    Usable bare (``@cached``) or with arguments (``@cached(ttl_seconds=3600)``), on
    ``def`` and ``async def`` functions and methods. Preset: ``cached.for_api(...)``.

    Args:
        func: the function (when used bare).
        cache_instance: the cache to use; None uses the default cache
            (:func:`get_cache`), looked up at each call.
        ttl_seconds: seconds a result lives; None uses the cache's ``default_ttl_seconds``.
        key_prefix: the namespace of the function's entries; default
            ``"module.qualname"``. Pass one for lambdas, or to keep entries when
            moving or renaming the function.
        ignore: argument names left out of the key (``["verbose"]``, ``["self"]``);
            names inside ``**kwargs`` count too.
        key_func: builds the key instead of the arguments: called with the call's
            arguments, it returns a mapping of key parameters or a str (taken as the
            single parameter ``key``). Either way the prefix (with ``version`` and the
            code hash) is mixed in, so two functions never share entries.
        version: a salt mixed into the prefix: change it to drop every earlier result.
        code_hash: also mix in a fingerprint of the function's normalised source
            (comments, docstrings and formatting do not count), so editing the code
            makes its old entries misses.
        condition: called with a result; a false answer leaves it uncached.
        lock: compute a missing value once when several threads, tasks or processes
            ask for it at the same time (as far as the cache's index reaches:
            one process for a memory index, one host for sqlite, every host for
            postgresql). The others wait, then read it.
        lock_timeout: seconds a caller waits for another's computation before
            computing it too (logged); None waits as long as it takes.

    Returns:
        The wrapped function (see :class:`CachedFunction`), or a decorator.

    Raises:
        TypeError: a generator function, a non-callable, or a wrongly typed option.
        ValueError: an ``ignore`` name the function does not take, a lambda without
            ``key_prefix``, or an out-of-range option.

    At call time, arguments the key cannot be derived from raise
    ``UnsupportedKeyValueError`` (a ``TypeError``) naming the argument and the ways out;
    the function's own exceptions propagate and nothing is stored.

    An unknown option raises ``TypeError`` with the closest known name (``ttl=`` →
    ``ttl_seconds``). Cacheness 0.4's ``ignore_errors=True`` is accepted (it is what
    happens anyway); ``ignore_errors=False`` says to use a ``strict`` cache.

    Example:
        >>> import tempfile
        >>> from cacheness.cache import cacheness
        >>> cache = cacheness(cache_dir=tempfile.mkdtemp())
        >>> @cached(cache_instance=cache, ttl_seconds=3600, ignore=["verbose"])
        ... def load(name, verbose=False):
        ...     return {"name": name, "rows": 3}
        >>> load("iris") == load("iris", verbose=True)
        True
        >>> load.cache_info().hits, load.invalidate("iris"), load.cache_clear()
        (1, True, 0)
        >>> cache.close()
    """
    if unknown:
        _refuse_unknown("cached", unknown)
    options = _options(
        cache_instance,
        ttl_seconds,
        key_prefix,
        ignore,
        key_func,
        version,
        code_hash,
        condition,
        lock,
        lock_timeout,
    )

    def decorate(function: Callable[P, R]) -> CachedFunction[P, R]:
        return _wrap(function, options)

    return decorate if func is None else decorate(func)


_CACHED_OPTIONS: Final = (
    "cache_instance",
    "ttl_seconds",
    "key_prefix",
    "ignore",
    "key_func",
    "version",
    "code_hash",
    "condition",
    "lock",
    "lock_timeout",
)


def _refuse_unknown(decorator: str, unknown: Mapping[str, Any]) -> None:
    """Raise ``TypeError`` for unknown decorator options, with the closest known one."""
    for name, value in unknown.items():
        if name == "ignore_errors":
            if value is True:
                continue  # Cacheness 0.4: failures of the cache never break a call, as here
            raise TypeError(
                f"{decorator}(ignore_errors={value!r}): Cacheness 0.4's option is gone; cache "
                "failures are logged and the function runs. For them to raise, use a strict "
                "cache: cached(cache_instance=cacheness(strict=True))"
            )
        meant = MISTAKEN_OPTIONS.get(name)  # other caches' spellings: ttl=, expire=
        hint = f" (did you mean {meant!r}?)" if meant in _CACHED_OPTIONS else ""
        raise TypeError(
            f"{decorator}() got an unknown option {name!r}"
            f"{hint or did_you_mean(name, _CACHED_OPTIONS)}; it takes: "
            f"{', '.join(_CACHED_OPTIONS)}"
        )


def _for_api(
    func: Callable[P, R] | None = None,
    /,
    *,
    ttl_seconds: float | timedelta | None = _API_TTL,
    lock: bool = True,
    lock_timeout: float | None = _API_LOCK_TIMEOUT,
    cache_empty: bool = False,
    condition: Callable[[Any], bool] | None = None,
    **options: Any,
) -> CachedFunction[P, R] | Callable[[Callable[P, R]], CachedFunction[P, R]]:
    """``cached`` preset for functions that call remote APIs (``cached.for_api``).

    Remote answers go stale and calling an API twice for one answer costs quota, so
    the defaults differ from ``@cached``: results live 15 minutes, concurrent callers
    of one key make one request (``lock=True``, waiting up to 60 s), and ``None`` or
    empty results (``""``, ``[]``, ``{}``, an empty DataFrame: anything whose ``len``
    is 0) are not cached, because an API that answers nothing is often briefly
    failing. Exceptions are never cached.

    Args:
        func: the function (when used bare: ``@cached.for_api``).
        ttl_seconds, lock, lock_timeout: as for :func:`cached`, with the defaults above.
        cache_empty: also cache ``None`` and empty results.
        condition: an extra test a result must pass to be cached.
        **options: any other :func:`cached` argument (``cache_instance``, ``ignore``...).

    Example:
        >>> import tempfile
        >>> from cacheness.cache import cacheness
        >>> cache = cacheness(cache_dir=tempfile.mkdtemp())
        >>> requests = []
        >>> @cached.for_api(cache_instance=cache)
        ... def search(query):
        ...     requests.append(query)
        ...     return [] if query == "nothing" else [query.upper()]
        >>> search("cat"), search("cat"), search("nothing"), search("nothing")
        (['CAT'], ['CAT'], [], [])
        >>> requests
        ['cat', 'nothing', 'nothing']
        >>> cache.close()
    """
    if condition is not None and not callable(condition):
        raise TypeError(f"condition must be callable, not {type(condition).__name__}")

    def keep(result: Any) -> bool:
        if not cache_empty and _is_empty(result):
            return False
        return condition is None or bool(condition(result))

    decorator = cached(
        ttl_seconds=ttl_seconds, lock=lock, lock_timeout=lock_timeout, condition=keep, **options
    )
    return decorator if func is None else decorator(func)


cached.for_api = _for_api  # type: ignore[attr-defined]  # mypy types no attributes set on a function


def cache_if(
    predicate: Callable[[Any], bool], /, **options: Any
) -> Callable[[Callable[P, R]], CachedFunction[P, R]]:
    """Cache a function's results only when ``predicate(result)`` is true.

    The same as ``@cached(condition=predicate, **options)``, usable alone above a
    function.

    Args:
        predicate: called with each computed result.
        **options: any other :func:`cached` argument.

    Raises:
        TypeError: ``predicate`` is not callable.

    Example:
        >>> import tempfile
        >>> from cacheness.cache import cacheness
        >>> cache = cacheness(cache_dir=tempfile.mkdtemp())
        >>> @cache_if(lambda status: status == "done", cache_instance=cache)
        ... def job_status(job_id):
        ...     return "running" if job_id == 1 else "done"
        >>> job_status(1), job_status(2)
        ('running', 'done')
        >>> job_status.cache_info().currsize  # only the finished job is cached
        1
        >>> cache.close()
    """
    if not callable(predicate):
        raise TypeError(
            f"cache_if takes a predicate called with the result, not {type(predicate).__name__}"
        )
    return cached(condition=predicate, **options)


def _is_empty(result: Any) -> bool:
    if result is None:
        return True
    if not hasattr(type(result), "__len__"):
        return False
    try:
        return len(result) == 0
    except TypeError:  # e.g. a 0-d numpy array: not a container
        return False


# -- wrapping -------------------------------------------------------------------------------


def _wrap(func: Callable[P, R], options: _Options) -> CachedFunction[P, R]:
    if isinstance(func, staticmethod | classmethod):
        # @cached above @staticmethod/@classmethod: cache the function, keep the descriptor.
        inner = _wrap(func.__func__, options)
        return cast(CachedFunction[P, R], type(func)(inner))  # the descriptor, as given
    if not callable(func):
        raise TypeError(f"@cached decorates a function, not {type(func).__name__}")
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        raise TypeError(
            f"cannot cache the generator function {_name_of(func)}: its result is consumed "
            "once; cache a function that returns a list instead"
        )
    memo = _Memo(func, options)
    wrapper: Any
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            return await memo.call_async(args, kwargs)

    else:

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return memo.call(args, kwargs)

    wrapper.cache_clear = memo.clear
    wrapper.cache_info = memo.info
    wrapper.invalidate = memo.invalidate
    wrapper.cache_key = memo.cache_key
    wrapper.cache_parameters = memo.parameters
    return cast(CachedFunction[P, R], wrapper)  # the wrapper has every helper now


def _name_of(func: Callable[..., Any]) -> str:
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None) or repr(func)
    return f"{module}.{qualname}" if module else qualname


def _default_prefix(func: Callable[..., Any]) -> str:
    qualname = getattr(func, "__qualname__", None)
    if not qualname or "<lambda>" in qualname:
        raise ValueError(
            f"cannot name the cache entries of {func!r}: lambdas (and callables without a "
            "qualified name) share one name per module; pass key_prefix='...'"
        )
    return _name_of(func)


def _binder(
    signature: inspect.Signature,
) -> Callable[[tuple[Any, ...], dict[str, Any]], dict[str, Any]]:
    """Return ``bind(args, kwargs) -> {name: value}`` with defaults applied.

    Functions whose parameters are all positional-or-keyword get a fast path; any
    call it does not handle (errors included) goes through ``Signature.bind``.
    """

    def bind_slow(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    parameters = list(signature.parameters.values())
    if not all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in parameters):
        return bind_slow
    names = tuple(p.name for p in parameters)
    known = frozenset(names)
    defaults = tuple((p.name, p.default) for p in parameters if p.default is not p.empty)
    count = len(names)

    def bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if len(args) > count:
            return bind_slow(args, kwargs)
        bound = dict(zip(names, args, strict=False))
        if kwargs:
            if not known.issuperset(kwargs) or not bound.keys().isdisjoint(kwargs):
                return bind_slow(args, kwargs)
            bound.update(kwargs)
        if len(bound) < count:
            for name, default in defaults:
                bound.setdefault(name, default)
            if len(bound) < count:
                return bind_slow(args, kwargs)
        return bound

    return bind


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


class _Memo:
    """The caching machinery behind one decorated function."""

    def __init__(self, func: Callable[..., Any], options: _Options) -> None:
        self.func = func
        self.options = options
        self.name = _name_of(func)
        try:
            signature = inspect.signature(func)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"cannot read the signature of {self.name}: {exc}") from exc
        self._bind = _binder(signature)
        parameters = signature.parameters
        self._first = next(iter(parameters), None)
        self._varkw = next(
            (p.name for p in parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD), None
        )
        unknown = options.ignore - parameters.keys()
        if unknown and self._varkw is None:
            raise ValueError(
                f"ignore names {sorted(unknown)} are not parameters of {self.name}; "
                f"its parameters are {list(parameters)}"
            )
        base = options.key_prefix if options.key_prefix is not None else _default_prefix(func)
        salts = [base]
        if options.version is not None:
            salts.append(f"version={options.version}")
        if options.code_hash:
            from cacheness._code_hash import fingerprint  # ast: only for code_hash=True

            salts.append(f"code={fingerprint(func)}")
        self.base_prefix = base
        self.prefix = "@".join(salts)
        self._counts_lock = threading.Lock()
        self._hits = self._misses = self._errors = 0
        self._keys: dict[tuple[Any, ...], str] = {}  # see _remembered()
        self._thread_locks: LockTable[threading.Lock] = LockTable(threading.Lock)
        self._task_locks: LockTable[asyncio.Lock] = LockTable(_new_task_lock)

    # -- keys ---------------------------------------------------------------------------

    def cache(self) -> cacheness:
        cache = self.options.cache_instance
        return get_cache() if cache is None else cache

    def key(
        self, cache: cacheness, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        params = self._params(args, kwargs)
        try:
            return cache.key_for(key_prefix=self.prefix, key_params=params), params
        except UnsupportedKeyValueError as exc:
            better = self._explain(exc)
            if better is exc:
                raise
            raise better from exc

    def _remembered(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...] | None:
        """What ``_keys`` files this call's key under, or None when it is not kept there.

        Calls whose arguments are all short strings and 64-bit ints (exactly those types:
        ``True == 1`` but a bool is not taken) get the key they got before without binding
        or hashing; without ``key_func``, which may answer differently each time.
        """
        if self.options.key_func is not None:
            return None
        for value in (*args, *kwargs.values()) if kwargs else args:
            kind = type(value)
            if not (
                (kind is str and len(value) <= _REMEMBER_STR)
                or (kind is int and _INT_MIN <= value <= _INT_MAX)
            ):
                return None
        return (args, *kwargs.items()) if kwargs else (args,)

    def _params(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        key_func = self.options.key_func
        if key_func is not None:
            made = key_func(*args, **kwargs)
            if isinstance(made, str):
                return {"key": made}
            if isinstance(made, Mapping):
                return dict(made)
            raise TypeError(
                f"key_func of {self.name} returned {type(made).__name__}; "
                "return a mapping of key parameters or a str"
            )
        params = self._bind(args, kwargs)
        ignore = self.options.ignore
        if ignore:
            for name in params.keys() & ignore:
                del params[name]
            varkw = self._varkw
            extra = params.get(varkw) if varkw is not None else None
            if varkw is not None and extra and not extra.keys().isdisjoint(ignore):
                params[varkw] = {k: v for k, v in extra.items() if k not in ignore}
        return params

    def _explain(self, exc: UnsupportedKeyValueError) -> UnsupportedKeyValueError:
        """Say how to cache a method when its instance is what has no key."""
        root = _PARAMETER_ROOT.split(exc.parameter, maxsplit=1)[0]
        if root != self._first or root not in _METHOD_SELF:
            return exc
        return UnsupportedKeyValueError(
            f"cannot derive a cache key for {self.name}: its first argument {root!r} "
            f"({exc.value_type}) has no key. Define __cache_key__(self) on the class, "
            "returning what identifies the instance (a name, an id, its settings), or pass "
            f"ignore=[{root!r}] if the result does not depend on the instance. ({exc})",
            parameter=exc.parameter,
            value_type=exc.value_type,
        )

    # -- calls --------------------------------------------------------------------------

    def call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        cache = self.cache()
        remembered = self._remembered(args, kwargs)
        key = None if remembered is None else self._keys.get(remembered)
        params = None
        if key is None:
            key, params = self.key(cache, args, kwargs)
            if remembered is not None:
                self._remember(remembered, key)
        value = self._get(cache, key)
        if value is not MISS:
            self._count(hits=1)
            return value
        if params is None:  # the key was remembered: the parameters are for the put
            params = self._params(args, kwargs)
        if not self.options.lock:
            self._count(misses=1)
            return self._compute(cache, key, params, args, kwargs)
        with self._locked(cache, key):
            value = self._get(cache, key)  # computed by another caller meanwhile?
            if value is not MISS:
                self._count(hits=1)
                return value
            self._count(misses=1)
            return self._compute(cache, key, params, args, kwargs)

    def _remember(self, remembered: tuple[Any, ...], key: str) -> None:
        keys = self._keys
        if len(keys) >= _REMEMBER_MAX:
            keys.clear()
        keys[remembered] = key

    async def call_async(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        import asyncio  # loaded already: this runs in an event loop

        cache = self.cache()
        key, params = self.key(cache, args, kwargs)
        value = await asyncio.to_thread(self._get, cache, key)
        if value is not MISS:
            self._count(hits=1)
            return value
        if not self.options.lock:
            self._count(misses=1)
            return await self._compute_async(cache, key, params, args, kwargs)
        async with self._locked_async(cache, key):
            value = await asyncio.to_thread(self._get, cache, key)
            if value is not MISS:
                self._count(hits=1)
                return value
            self._count(misses=1)
            return await self._compute_async(cache, key, params, args, kwargs)

    def _compute(
        self,
        cache: cacheness,
        key: str,
        params: dict[str, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        result = self.func(*args, **kwargs)
        if inspect.isawaitable(result):
            log.warning(
                "%s returned an awaitable (%s), which is not cached; "
                "decorate an 'async def' function to cache what it returns",
                self.name,
                type(result).__name__,
            )
            return result
        if self._keep(result):
            self._put(cache, key, params, result)
        return result

    async def _compute_async(
        self,
        cache: cacheness,
        key: str,
        params: dict[str, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        import asyncio  # loaded already: this runs in an event loop

        result = await self.func(*args, **kwargs)
        if self._keep(result):
            await asyncio.to_thread(self._put, cache, key, params, result)
        return result

    def _keep(self, result: Any) -> bool:
        condition = self.options.condition
        return condition is None or bool(condition(result))

    # -- the cache, failures worked around -------------------------------------------------

    def _get(self, cache: cacheness, key: str) -> Any:
        if cache.verbose or activity_log.isEnabledFor(logging.INFO):
            with self._named():
                return self._get_quietly(cache, key)
        return self._get_quietly(cache, key)

    def _get_quietly(self, cache: cacheness, key: str) -> Any:
        try:
            return cache.get(cache_key=key, default=MISS)
        except _FAILURES as exc:
            self._failed(cache, "read", key, exc)
            return MISS

    @contextlib.contextmanager
    def _named(self) -> Iterator[None]:
        """Activity lines of the cache name this function instead of get/put."""
        token = _ACTIVITY_NAME.set(self.name)
        try:
            yield
        finally:
            _ACTIVITY_NAME.reset(token)

    def _put(self, cache: cacheness, key: str, params: dict[str, Any], value: Any) -> None:
        if cache.verbose or activity_log.isEnabledFor(logging.INFO):
            with self._named():
                self._put_quietly(cache, key, params, value)
        else:
            self._put_quietly(cache, key, params, value)

    def _put_quietly(self, cache: cacheness, key: str, params: dict[str, Any], value: Any) -> None:
        try:
            cache.put(
                value,
                cache_key=key,
                key_prefix=self.prefix,
                key_params=params,
                ttl_seconds=self.options.ttl_seconds,
            )
        except _FAILURES as exc:
            self._failed(cache, "store", key, exc)

    def _failed(self, cache: cacheness, action: str, key: str, exc: BaseException) -> None:
        """Count a cache failure; re-raise it for a strict cache, else log it."""
        self._count(errors=1)
        if cache.config.strict:
            raise exc
        store = cache.store
        log.log(
            # a value computed and not stored is work lost; a failed read only costs a call
            logging.ERROR if action == "store" else logging.WARNING,
            "%s: could not %s cache entry %s in %s + %s (%s: %s); %s",
            self.name,
            action,
            key,
            store.metadata_backend_name,
            store.blob_backend_name,
            type(exc).__name__,
            exc,
            _WORKAROUND[action],
        )

    def _waited_too_long(self, key: str) -> None:
        log.warning(
            "%s: waited lock_timeout=%ss for another caller computing cache entry %s; "
            "computing it here too",
            self.name,
            self.options.lock_timeout,
            key,
        )

    def _describe(self) -> str:
        return f"{self.name}()"

    # -- locks --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, cache: cacheness, key: str) -> Iterator[None]:
        """Hold the key: first among this process's threads, then the cache's lock."""
        timeout = self.options.lock_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        with guard_recursion(key, self._describe), self._thread_locks.borrow(key) as local:
            got = local.acquire(timeout=-1 if timeout is None else timeout)
            try:
                if not got:
                    self._waited_too_long(key)
                    yield
                    return
                with contextlib.ExitStack() as stack:
                    try:
                        held = stack.enter_context(cache.compute_lock(key, timeout=_left(deadline)))
                    except _FAILURES as exc:
                        self._failed(cache, "lock", key, exc)
                        held = True  # no lock to wait for: compute
                    if not held:
                        self._waited_too_long(key)
                    yield
            finally:
                if got:
                    local.release()

    @contextlib.asynccontextmanager
    async def _locked_async(self, cache: cacheness, key: str) -> AsyncIterator[None]:
        """Hold the key: first among this event loop's tasks, then the cache's lock.

        The cache's lock is taken in a thread of its own: the loop never waits on it.
        """
        import asyncio  # loaded already: this runs in an event loop

        timeout = self.options.lock_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        with guard_recursion(key, self._describe), self._task_locks.borrow((loop, key)) as local:
            got = await _acquire(local, timeout)
            try:
                if not got:
                    self._waited_too_long(key)
                    yield
                    return
                shared = ThreadHeldLock(
                    lambda: cache.compute_lock(key, timeout=_left(deadline)),
                    name=f"cacheness lock for {self.name}",
                )
                try:
                    held = await shared.acquire()
                except _FAILURES as exc:
                    self._failed(cache, "lock", key, exc)
                    held = True
                try:
                    if not held:
                        self._waited_too_long(key)
                    yield
                finally:
                    shared.release()
            finally:
                if got:
                    local.release()

    # -- the helpers on the wrapper -------------------------------------------------------

    def _count(self, *, hits: int = 0, misses: int = 0, errors: int = 0) -> None:
        with self._counts_lock:
            self._hits += hits
            self._misses += misses
            self._errors += errors

    def clear(self) -> int:
        """Delete every entry of the function (every version and code hash); return how many.

        Also sets the hit, miss and error counts back to zero.
        """
        removed = self.cache().delete_where(
            {
                "$or": [
                    {_PREFIX_FIELD: self.base_prefix},
                    {_PREFIX_FIELD: {"$prefix": f"{self.base_prefix}@"}},
                ]
            }
        )
        with self._counts_lock:
            self._hits = self._misses = self._errors = 0
        return removed

    def info(self) -> CacheInfo:
        """Return the function's hits, misses, errors and live entries (current version)."""
        cache = self.cache()
        currsize = cache.count(filter={_PREFIX_FIELD: self.prefix})
        with self._counts_lock:
            hits, misses, errors = self._hits, self._misses, self._errors
        return CacheInfo(hits, misses, cache.config.max_entries, currsize, errors)

    def invalidate(self, *args: Any, **kwargs: Any) -> bool:
        """Delete the entry of these arguments; return False if there was none."""
        cache = self.cache()
        return cache.invalidate(cache_key=self.key(cache, args, kwargs)[0])

    def cache_key(self, *args: Any, **kwargs: Any) -> str:
        """Return the key these arguments are cached under."""
        cache = self.cache()
        return self.key(cache, args, kwargs)[0]

    def parameters(self) -> dict[str, Any]:
        """Return the decorator's settings."""
        options = self.options
        return {
            "key_prefix": self.prefix,
            "ttl_seconds": options.ttl_seconds,
            "ignore": sorted(options.ignore),
            "key_func": options.key_func,
            "version": options.version,
            "code_hash": options.code_hash,
            "condition": options.condition,
            "lock": options.lock,
            "lock_timeout": options.lock_timeout,
            "cache_instance": options.cache_instance,
        }


def _new_task_lock() -> asyncio.Lock:
    """A lock for the tasks of an event loop (asyncio is imported when the first is made)."""
    import asyncio

    return asyncio.Lock()


async def _acquire(lock: asyncio.Lock, timeout: float | None) -> bool:
    import asyncio  # loaded already: this runs in an event loop

    if timeout is None:
        return await lock.acquire()
    try:
        async with asyncio.timeout(timeout):
            return await lock.acquire()
    except TimeoutError:
        return False

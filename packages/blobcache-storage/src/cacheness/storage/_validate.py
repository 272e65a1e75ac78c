"""Argument checks shared by every module of both packages (private; three names public).

One place for the questions every constructor and method asks of its arguments: is it
an integer (``True`` is not, although ``bool`` subclasses ``int``), a number, one of
some choices, a number of seconds, a permission mode. The ``*_problem`` functions
return the message (or None) so that a caller collecting every problem of a
configuration can list them; the ``check_*`` functions raise
:class:`~cacheness.storage.errors.ConfigError` with that message. ``number_problem``,
``choice_problem``, ``did_you_mean`` and ``suggest_keywords`` are public in
``cacheness.storage`` (the cache layer uses them).

Example:
    >>> is_int(3), is_int(True), is_number(2.5), is_number("2")
    (True, False, True, False)
    >>> check_int("level", 30, 0, 22)
    Traceback (most recent call last):
    ...
    cacheness.storage.errors.ConfigError: level must be an integer in [0, 22], got 30
"""

from __future__ import annotations

import functools
import math
import types
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeGuard, TypeVar, overload

from cacheness.storage.errors import ConfigError

T = TypeVar("T", bound=type)

MAX_SECONDS = 1e11
"""About 3,000 years: longer durations do not fit a ``timedelta``."""


def is_int(value: object) -> TypeGuard[int]:
    """True for an ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[int | float]:
    """True for an ``int`` or ``float`` that is not a ``bool`` (NaN and infinities too)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def did_you_mean(name: object, known: Iterable[str], cutoff: float = 0.6) -> str:
    """Return `` (did you mean 'x'?)`` for the closest of ``known``, or ``""``.

    Example:
        >>> did_you_mean("lruu", ["lru", "lfu"])
        " (did you mean 'lru'?)"
        >>> did_you_mean("zzz", ["lru", "lfu"])
        ''
    """
    import difflib

    close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=cutoff)
    return f" (did you mean {close[0]!r}?)" if close else ""


def number_problem(
    name: str, value: object, *, integer: bool = False, zero: bool = False
) -> str | None:
    """Return why ``value`` is not a finite number > 0 (>= 0 with ``zero``), or None.

    Only the value is judged: None, booleans and values of other types pass (their
    type is a type check's business), as do floats when ``integer`` asks for an int.

    Example:
        >>> number_problem("max_entries", 0, integer=True)
        'max_entries must be a finite number > 0, got 0'
        >>> number_problem("interval", 0.0, zero=True) is None, number_problem("x", "a") is None
        (True, True)
    """
    if not is_number(value) or (integer and not isinstance(value, int)):
        return None
    number = float(value)
    if math.isfinite(number) and (number >= 0 if zero else number > 0):
        return None
    need = ">= 0" if zero else "> 0"
    return f"{name} must be a finite number {need}, got {value!r}"


def choice_problem(name: str, value: object, choices: Sequence[str]) -> str | None:
    """Return why the string ``value`` is none of ``choices`` (with a suggestion), or None.

    Values that are not strings pass (a type check's business).

    Example:
        >>> choice_problem("eviction_policy", "lfuu", ("lru", "lfu", "fifo"))
        "eviction_policy must be one of lru, lfu, fifo; got 'lfuu' (did you mean 'lfu'?)"
    """
    if not isinstance(value, str) or value in choices:
        return None
    return (
        f"{name} must be one of {', '.join(choices)}; got {value!r}{did_you_mean(value, choices)}"
    )


def check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    """Raise ``ConfigError`` unless ``value`` is one of ``choices``."""
    if value in choices:
        return
    problem = choice_problem(name, value, choices)
    raise ConfigError(problem or f"{name} must be one of {', '.join(choices)}; got {value!r}")


def check_int(
    name: str, value: object, low: int, high: int | None = None, *, unit: str = ""
) -> int:
    """Return ``value`` if it is an int in ``[low, high]`` (no upper bound: None).

    Raises:
        ConfigError: not an int (a bool is none), or out of range.
    """
    if is_int(value) and low <= value and (high is None or value <= high):
        return value
    if high is None:
        unit = f" {unit}" if unit else ""
        raise ConfigError(f"{name} must be an int of at least {low}{unit}, got {value!r}")
    raise ConfigError(f"{name} must be an integer in [{low}, {high}], got {value!r}")


def check_seconds(value: object, name: str) -> float:
    """Return ``value`` as a float if it is a number of seconds >= 0 (not NaN, not absurd).

    Raises:
        ConfigError: anything else.
    """
    if not is_number(value) or not 0 <= value < MAX_SECONDS:
        raise ConfigError(f"{name} must be a number of seconds >= 0, got {value!r}")
    return float(value)


def check_mode(value: object, what: str) -> int:
    """Return ``value`` if it is a permission mode (``0`` to ``0o7777``).

    Raises:
        ConfigError: anything else.
    """
    if not is_int(value) or not 0 <= value <= 0o7777:
        raise ConfigError(f"{what} must be a permission mode such as 0o700, got {value!r}")
    return value


@overload
def suggest_keywords(cls: T, /) -> T: ...


@overload
def suggest_keywords(*, skip: Iterable[str] = ()) -> Callable[[T], T]: ...


def suggest_keywords(cls: T | None = None, /, *, skip: Iterable[str] = ()) -> T | Callable[[T], T]:
    """Class decorator: a misspelt keyword argument of a public method names the closest.

    Methods that take ``**kwargs`` are left alone (any name is theirs); the others raise
    ``TypeError`` with `` (did you mean 'x'?)`` and the names they take, instead of
    Python's bare "unexpected keyword argument". The check wraps each method (about
    0.4 µs a call): ``@suggest_keywords(skip=[...])`` leaves hot-path methods as they are.

    Example:
        >>> @suggest_keywords
        ... class Shop:
        ...     def order(self, item: str, *, quantity: int = 1) -> str:
        ...         return f"{quantity} x {item}"
        >>> Shop().order("tea", quantiy=2)
        Traceback (most recent call last):
        ...
        TypeError: Shop.order() got an unexpected keyword argument 'quantiy' (did you mean 'quantity'?); it takes: item, quantity
    """  # noqa: E501 - the doctest line
    left_alone = frozenset(skip)

    def decorate(cls: T) -> T:
        _wrap_methods(cls, left_alone)
        return cls

    return decorate if cls is None else decorate(cls)


def _wrap_methods(cls: type, skip: frozenset[str]) -> None:
    for name, member in list(vars(cls).items()):
        if name.startswith("_") or name in skip or not isinstance(member, types.FunctionType):
            continue
        inner = member
        while hasattr(inner, "__wrapped__"):  # a method already wrapped (telemetry...)
            inner = inner.__wrapped__
        code = inner.__code__  # read directly: importing inspect costs start-up time
        if code.co_flags & _VAR_KEYWORDS:
            continue
        count = code.co_argcount + code.co_kwonlyargcount
        names = [n for n in code.co_varnames[:count] if n != "self"]
        setattr(cls, name, _suggesting(member, names))


_VAR_KEYWORDS = 0x08  # inspect.CO_VARKEYWORDS: the function takes **kwargs


def _suggesting(func: Callable[..., Any], names: list[str]) -> Callable[..., Any]:
    @functools.wraps(func)
    def method(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except TypeError as exc:
            unknown = next((key for key in kwargs if key not in names), None)
            # only Python's own error for this call: "<qualname>() got an unexpected ..."
            own = f"{func.__qualname__}() got an unexpected keyword argument {unknown!r}"
            if unknown is None or not str(exc).startswith(own):
                raise
            raise TypeError(
                f"{func.__qualname__}() got an unexpected keyword argument {unknown!r}"
                f"{did_you_mean(unknown, names)}; it takes: {', '.join(names)}"
            ) from None

    return method

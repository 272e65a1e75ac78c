"""@cached, cached.for_api and @cache_if on sync functions and methods."""

from __future__ import annotations

import datetime as dt
import functools
import importlib.util
import inspect
import logging
import pickle
import sys
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cacheness.cache import MISS, cacheness
from cacheness.decorators import CacheInfo, cache_if, cached, reset_cache, set_default_cache
from cacheness.keys import UnsupportedKeyValueError, derive_key
from cacheness.storage.errors import BackendUnavailableError, SerializationError, StorageError


@pytest.fixture(autouse=True)
def no_default_cache_at_home(tmp_path, monkeypatch):
    """A stray use of the default cache lands in the test's tmp dir, not in ~/.cache."""
    monkeypatch.setenv("CACHENESS_DIR", str(tmp_path / "default-cache"))
    previous = set_default_cache(None)
    yield
    reset_cache()
    set_default_cache(previous)


@pytest.fixture
def cache(tmp_path):
    with cacheness(cache_dir=str(tmp_path / "cache")) as made:
        yield made


class Calls:
    """Counts the calls of a function under test, thread-safely."""

    def __init__(self) -> None:
        self.args: list = []
        self._lock = threading.Lock()

    def __call__(self, *args) -> None:
        with self._lock:
            self.args.append(args if len(args) != 1 else args[0])

    def __len__(self) -> int:
        return len(self.args)


# -- arguments and keys ---------------------------------------------------------------------


def test_positional_keyword_and_default_arguments_share_one_key(cache):
    calls = Calls()

    @cached(cache_instance=cache)
    def scale(x, factor=2):
        calls(x)
        return x * factor

    assert [scale(3), scale(x=3), scale(3, 2), scale(factor=2, x=3), scale(3, factor=2)] == [6] * 5
    assert calls.args == [3]
    assert scale(3, factor=3) == 9
    assert scale(3.0) == 6.0  # 3 and 3.0 are different keys
    assert calls.args == [3, 3, 3.0]
    assert scale.cache_key(3) == scale.cache_key(x=3, factor=2)
    assert scale.cache_key(3) != scale.cache_key(3, 3)


def test_the_key_is_derive_key_of_the_bound_arguments_under_the_prefix(cache):
    @cached(cache_instance=cache, key_prefix="tests.area")
    def area(width, height=1):
        return width * height

    area(4)
    expected = derive_key({"width": 4, "height": 1}, prefix="tests.area")
    assert area.cache_key(4) == expected
    (entry,) = cache.list_entries()
    assert entry.cache_key == expected
    assert entry.prefix == "tests.area"
    assert entry.params == {"height": 1, "width": 4}
    assert cache.get(cache_key=expected) == 4


def test_remembered_keys_of_repeated_calls_are_the_bound_ones(cache):
    """A call's key is remembered for short str/int arguments only: True, 1.0 and a long
    string are other keys, and a miss after a remembered key stores the bound parameters."""
    calls = Calls()

    @cached(cache_instance=cache, key_prefix="tests.remember")
    def scale(x, factor=2):
        calls(x)
        return x * factor

    long = "y" * 1000
    for _ in range(2):
        assert [scale(1), scale(True), scale(1.0), scale("a", factor=3), scale(long)] == [
            2,
            2,
            2.0,
            "aaa",
            long * 2,
        ]
    assert calls.args == [1, True, 1.0, "a", long]
    for args, kwargs, params in [
        ((1,), {}, {"x": 1, "factor": 2}),
        ((True,), {}, {"x": True, "factor": 2}),
        (("a",), {"factor": 3}, {"x": "a", "factor": 3}),
    ]:
        assert scale.cache_key(*args, **kwargs) == derive_key(params, prefix="tests.remember")
    cache.clear_all()  # the remembered key stays; the entry is gone: computed and stored again
    assert scale(1) == 2
    assert calls.args == [1, True, 1.0, "a", long, 1]
    (entry,) = cache.list_entries()
    assert entry.params == {"factor": 2, "x": 1}


def test_default_prefix_is_module_and_qualified_name(cache):
    @cached(cache_instance=cache)
    def f(x):
        return x

    f(1)
    assert cache.list_entries()[0].prefix == f"{__name__}.{f.__qualname__}"
    assert f.cache_parameters()["key_prefix"] == f"{__name__}.{f.__qualname__}"


def test_var_positional_var_keyword_and_keyword_only_arguments(cache):
    calls = Calls()

    @cached(cache_instance=cache)
    def combine(a, /, b, *rest, scale=1, **options):
        calls(a)
        return [a, b, list(rest), scale, sorted(options.items())]

    first = combine(1, 2, 3, 4, scale=2, mode="x", level=5)
    assert combine(1, 2, 3, 4, level=5, mode="x", scale=2) == first  # kwargs order
    assert combine(1, b=2) == combine(1, 2, scale=1)
    assert len(calls) == 2
    assert combine(1, 2, 3) != combine(1, 2, 4)
    assert combine(1, 2, mode="x") != combine(1, 2, mode="y")
    assert len(calls) == 6
    key = combine.cache_key(1, 2, 3, 4, scale=2, mode="x", level=5)
    assert cache.get_metadata(cache_key=key).params == {
        "a": 1,
        "b": 2,
        "rest": [3, 4],
        "scale": 2,
        "options": {"level": 5, "mode": "x"},
    }


def test_wrong_calls_raise_like_the_function_and_compute_nothing(cache):
    calls = Calls()

    @cached(cache_instance=cache)
    def f(x, y=0):
        calls(x)
        return x

    with pytest.raises(TypeError, match="missing a required argument: 'x'"):
        f()
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        f(1, z=2)
    with pytest.raises(TypeError, match="multiple values for argument 'x'"):
        f(1, x=2)
    with pytest.raises(TypeError, match="too many positional arguments"):
        f(1, 2, 3)
    assert len(calls) == 0
    assert cache.list_entries() == []


def test_a_function_without_arguments_has_one_entry(cache):
    calls = Calls()

    @cached(cache_instance=cache)
    def settings():
        calls("once")
        return {"debug": False}

    assert settings() == settings() == {"debug": False}
    assert len(calls) == 1
    assert settings.cache_key() == derive_key({}, prefix=f"{__name__}.{settings.__qualname__}")


def test_arguments_without_a_key_raise_a_type_error_that_says_what_to_do(cache):
    @cached(cache_instance=cache)
    def run(callback):
        return callback()

    with pytest.raises(UnsupportedKeyValueError, match="key_func") as info:
        run(object())
    assert isinstance(info.value, TypeError)
    assert info.value.parameter == "callback"


# -- results --------------------------------------------------------------------------------


def test_none_is_cached_and_told_apart_from_a_miss(cache):
    calls = Calls()

    @cached(cache_instance=cache)
    def lookup(name):
        calls(name)

    assert lookup("absent") is None
    assert lookup("absent") is None
    assert len(calls) == 1
    assert cache.get(cache_key=lookup.cache_key("absent"), default=MISS) is None
    assert lookup.cache_info() == CacheInfo(hits=1, misses=1, maxsize=None, currsize=1, errors=0)


def test_exceptions_are_not_cached(cache):
    calls = Calls()

    @cached(cache_instance=cache)
    def flaky(x):
        calls(x)
        if len(calls) == 1:
            raise ConnectionError("try again")
        return x + 1

    with pytest.raises(ConnectionError, match="try again"):
        flaky(1)
    assert not cache.exists(cache_key=flaky.cache_key(1))
    assert flaky(1) == 2
    assert flaky(1) == 2
    assert len(calls) == 2


@pytest.mark.parametrize("lock", [False, True])
def test_recursion_computes_each_argument_once(cache, lock):
    calls = Calls()

    @cached(cache_instance=cache, lock=lock)
    def fib(n):
        calls(n)
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    assert fib(25) == 75025
    assert sorted(calls.args) == list(range(26))
    assert fib.cache_info().currsize == 26


def test_calling_itself_with_the_same_arguments_under_a_lock_is_an_error_not_a_deadlock(cache):
    @cached(cache_instance=cache, lock=True)
    def loop(x):
        return loop(x)

    with pytest.raises(RecursionError, match="called itself with the same arguments"):
        loop(1)
    assert cache.list_entries() == []


def test_condition_and_cache_if_keep_only_accepted_results(cache):
    calls = Calls()

    @cached(cache_instance=cache, condition=lambda result: result["status"] == "done")
    def job(job_id):
        calls(job_id)
        return {"status": "done" if job_id % 2 else "running"}

    @cache_if(lambda result: result > 0, cache_instance=cache)
    def positive(x):
        calls(x)
        return x

    for _ in range(2):
        job(1), job(2), positive(5), positive(-5)
    assert calls.args == [1, 2, 5, -5, 2, -5]
    assert job.cache_info().currsize == positive.cache_info().currsize == 1
    with pytest.raises(TypeError, match="predicate"):
        cache_if(42)


# -- options --------------------------------------------------------------------------------


def test_ignored_arguments_do_not_count_even_inside_kwargs(cache):
    calls = Calls()

    @cached(cache_instance=cache, ignore=["verbose", "log_to"])
    def train(epochs, verbose=False, **extra):
        calls(epochs)
        return epochs * 10

    assert train(3) == train(3, verbose=True) == train(3, log_to="stderr") == 30
    assert train(3, lr=0.1) == 30
    assert calls.args == [3, 3]
    entries = {tuple(sorted(e.params)) for e in cache.list_entries()}
    assert entries == {("epochs", "extra")}


def test_ignore_names_are_checked(cache):
    def f(x, y):
        return x

    with pytest.raises(ValueError, match=r"\['z'\] are not parameters of .*\['x', 'y'\]"):
        cached(cache_instance=cache, ignore=["z"])(f)
    with pytest.raises(TypeError, match=r"ignore=\['x'\]"):
        cached(cache_instance=cache, ignore="x")


def test_key_func_returns_key_parameters_or_a_string(cache):
    calls = Calls()

    @cached(cache_instance=cache, key_func=lambda user, session: {"user": user.lower()})
    def profile(user, session):
        calls(user)
        return {"user": user}

    @cached(cache_instance=cache, key_func=lambda path, **_: f"file:{path}")
    def read(path, retries=3):
        calls(path)
        return path.upper()

    @cached(cache_instance=cache, key_func=lambda path, **_: f"file:{path}")
    def size(path, retries=3):
        return len(path)

    assert profile("Ana", session=1) == profile("ANA", session=2) == {"user": "Ana"}
    assert read("a.txt") == read("a.txt", retries=5) == "A.TXT"
    assert size("a.txt") == 5  # the same key string, another function: no sharing
    assert calls.args == ["Ana", "a.txt"]
    assert cache.get_metadata(cache_key=profile.cache_key("ANA", None)).params == {"user": "ana"}
    assert cache.get_metadata(cache_key=read.cache_key("a.txt")).params == {"key": "file:a.txt"}

    @cached(cache_instance=cache, key_func=lambda x: 42)
    def bad(x):
        return x

    with pytest.raises(TypeError, match="return a mapping of key parameters or a str"):
        bad(1)
    with pytest.raises(ValueError, match="no effect with key_func"):
        cached(key_func=lambda x: {"x": x}, ignore=["x"])


def test_version_salts_the_prefix_and_cache_clear_removes_every_version(cache):
    calls = Calls()

    def make(version):
        @cached(cache_instance=cache, key_prefix="tests.model", version=version)
        def model(x):
            calls(version)
            return f"{x}@{version}"

        return model

    v1, v2 = make(1), make("2")
    assert v1(0) == v1(0) == "0@1"
    assert v2(0) == "0@2"  # a new version: a miss
    assert make(1)(0) == "0@1"  # back to version 1: still there
    assert calls.args == [1, "2"]
    assert {e.prefix for e in cache.list_entries()} == {
        "tests.model@version=1",
        "tests.model@version=2",
    }

    @cached(cache_instance=cache, key_prefix="tests.model_b")
    def other(x):
        return x

    other(0)
    assert v2.cache_clear() == 2  # every version of tests.model, not tests.model_b
    assert [e.prefix for e in cache.list_entries()] == ["tests.model_b"]
    assert v2.cache_info() == CacheInfo(0, 0, None, 0, 0)


SOURCE_V1 = """
def area(r):
    '''Area of a disc.'''
    return 3.14159 * r * r
"""
SOURCE_V1_REFORMATTED = """
def area(r):  # same code, new layout and comments
    # no docstring either
    return 3.14159*r*r
"""
SOURCE_V2 = """
def area(r):
    return 3.1416 * r * r
"""


def _exec_version(source, cache, code_hash=True):
    namespace: dict = {}
    exec(source, namespace)  # no source file: the bytecode is fingerprinted
    decorate = cached(cache_instance=cache, key_prefix="geometry.area", code_hash=code_hash)
    return decorate(namespace["area"])


def _import_version(source, directory, cache, code_hash=True):
    directory.mkdir()
    path = directory / "geometry_module.py"
    path.write_text(source)
    name = f"geometry_{directory.name}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    decorate = cached(cache_instance=cache, key_prefix="geometry.area", code_hash=code_hash)
    return decorate(module.area)


@pytest.mark.parametrize("load", ["exec", "module file"])
def test_code_hash_invalidates_on_a_code_change_but_not_on_a_reformat(cache, tmp_path, load):
    def version(source, tag, code_hash=True):
        if load == "exec":
            return _exec_version(source, cache, code_hash)
        return _import_version(source, tmp_path / f"{tag}{int(code_hash)}", cache, code_hash)

    v1 = version(SOURCE_V1, "v1")
    assert v1(2) == pytest.approx(12.56636)
    same = version(SOURCE_V1_REFORMATTED, "v1r")
    assert same.cache_key(2) == v1.cache_key(2)
    assert same(2) == pytest.approx(12.56636)
    assert same.cache_info().hits == 1
    v2 = version(SOURCE_V2, "v2")
    assert v2.cache_key(2) != v1.cache_key(2)
    assert v2(2) == pytest.approx(12.5664)  # the edited code ran: a miss
    assert v2.cache_info() == CacheInfo(0, 1, None, 1, 0)
    # without code_hash an edit goes unnoticed: the old result comes back
    plain_v1, plain_v2 = version(SOURCE_V1, "p1", False), version(SOURCE_V2, "p2", False)
    assert plain_v1.cache_key(2) == plain_v2.cache_key(2)
    # cache_clear reaches every code hash of the function
    assert v2.cache_clear() == 2


def test_ttl_seconds_is_recorded_and_expired_results_are_recomputed(tmp_path):
    calls = Calls()
    now = [dt.datetime(2026, 1, 1, tzinfo=dt.UTC)]
    with cacheness(cache_dir=str(tmp_path / "c"), clock=lambda: now[0]) as cache:

        @cached(cache_instance=cache, ttl_seconds=10)
        def now_playing(station):
            calls(station)
            return f"{station}:{len(calls)}"

        assert now_playing("fip") == now_playing("fip") == "fip:1"
        assert cache.get_metadata(cache_key=now_playing.cache_key("fip")).ttl_seconds == 10
        now[0] += dt.timedelta(seconds=11)
        assert now_playing.cache_info().currsize == 0  # expired entries are not counted
        assert now_playing("fip") == "fip:2"


def test_for_api_preset(cache):
    calls = Calls()

    @cached.for_api(cache_instance=cache)
    def search(query):
        calls(query)
        return {"": None, "none": [], "cat": ["cat"]}[query]

    assert search.cache_parameters()["ttl_seconds"] == 15 * 60
    assert search.cache_parameters()["lock"] is True
    assert search.cache_parameters()["lock_timeout"] == 60
    for _ in range(2):
        assert (search("cat"), search("none"), search("")) == (["cat"], [], None)
    assert calls.args == ["cat", "none", "", "none", ""]
    assert cache.get_metadata(cache_key=search.cache_key("cat")).ttl_seconds == 900

    @cached.for_api(cache_instance=cache, cache_empty=True, ttl_seconds=60)
    def keep_all(query):
        calls(query)
        return []

    keep_all("q"), keep_all("q")
    assert calls.args.count("q") == 1
    assert cache.get_metadata(cache_key=keep_all.cache_key("q")).ttl_seconds == 60

    @cached.for_api(cache_instance=cache, condition=lambda rows: len(rows) < 3)
    def listing(n):
        calls(n)
        return list(range(n))

    listing(2), listing(2), listing(5), listing(5)
    assert calls.args[-3:] == [2, 5, 5]


def test_options_are_checked_when_decorating(cache):
    with pytest.raises(ValueError, match="key_prefix"):
        cached(lambda x: x)
    assert cached(key_prefix="tests.double", cache_instance=cache)(lambda x: 2 * x)(4) == 8

    def gen(x):
        yield x

    with pytest.raises(TypeError, match="generator function"):
        cached(gen)
    with pytest.raises(TypeError, match="cache_instance"):
        cached(cache_instance="not a cache")
    with pytest.raises(ValueError, match="ttl_seconds"):
        cached(ttl_seconds=-1)
    with pytest.raises(ValueError, match="lock_timeout"):
        cached(lock_timeout=-1)
    with pytest.raises(TypeError, match="version"):
        cached(version=1.5)
    with pytest.raises(TypeError, match="condition"):
        cached(condition="yes")
    with pytest.raises(TypeError, match="not int"):
        cached(42)


# -- the wrapper ----------------------------------------------------------------------------


@cached(key_prefix="tests.module_level")
def module_level(x: int, y: int = 2) -> int:
    """Multiply two numbers."""
    return x * y


def test_wrapper_keeps_the_function_metadata_and_pickles_by_reference():
    assert module_level.__name__ == "module_level"
    assert module_level.__doc__ == "Multiply two numbers."
    assert module_level.__module__ == __name__
    assert module_level.__wrapped__(3) == 6
    assert inspect.signature(module_level) == inspect.signature(module_level.__wrapped__)
    assert list(inspect.signature(module_level).parameters) == ["x", "y"]
    assert pickle.loads(pickle.dumps(module_level)) is module_level
    assert not inspect.iscoroutinefunction(module_level)


def test_cache_info_invalidate_cache_key_and_cache_clear(tmp_path):
    with cacheness(cache_dir=str(tmp_path / "c"), max_entries=100) as cache:
        calls = Calls()

        @cached(cache_instance=cache)
        def square(x):
            calls(x)
            return x * x

        for x in (1, 2, 3, 1, 2):
            square(x)
        assert square.cache_info() == CacheInfo(hits=2, misses=3, maxsize=100, currsize=3, errors=0)
        assert square.invalidate(2) is True
        assert square.invalidate(2) is False
        assert not cache.exists(cache_key=square.cache_key(2))
        square(2)
        assert calls.args == [1, 2, 3, 2]
        cache.put("unrelated", name="other")
        assert square.cache_clear() == 3
        assert square.cache_info() == CacheInfo(0, 0, 100, 0, 0)
        assert cache.get(name="other") == "unrelated"


# -- methods --------------------------------------------------------------------------------


class Model:
    def __init__(self, name):
        self.name = name
        self.calls = Calls()

    def __cache_key__(self):
        return self.name


def test_methods_key_on_the_instance_through_cache_key(cache):
    class Predictor(Model):
        @cached(cache_instance=cache)
        def predict(self, x):
            self.calls(x)
            return f"{self.name}:{x}"

    a, a_again, b = Predictor("a"), Predictor("a"), Predictor("b")
    assert a.predict(1) == a_again.predict(1) == "a:1"
    assert b.predict(1) == "b:1"
    assert (len(a.calls), len(a_again.calls), len(b.calls)) == (1, 0, 1)
    # the helpers take the instance first, like the plain function
    assert Predictor.predict.cache_key(a, 1) == a.predict.cache_key(a_again, 1)
    assert Predictor.predict.invalidate(a, 1) is True
    assert a.predict(1) == "a:1"
    assert len(a.calls) == 2


def test_a_method_of_an_instance_without_a_key_says_how_to_fix_it(cache):
    class Plain:
        @cached(cache_instance=cache)
        def compute(self, x):
            return x

    with pytest.raises(UnsupportedKeyValueError) as info:
        Plain().compute(1)
    message = str(info.value)
    assert "__cache_key__" in message
    assert "ignore=['self']" in message
    assert "Plain" in message

    class Shared:
        def __init__(self):
            self.calls = Calls()

        @cached(cache_instance=cache, ignore=["self"])
        def compute(self, x):
            self.calls(x)
            return x * 2

    one, two = Shared(), Shared()
    assert one.compute(2) == two.compute(2) == 4
    assert (len(one.calls), len(two.calls)) == (1, 0)


def test_staticmethod_and_classmethod_in_either_order(cache):
    calls = Calls()

    class Units:
        factor = 10

        @staticmethod
        @cached(cache_instance=cache)
        def outer_static(x):
            calls(("static", x))
            return x + 1

        @cached(cache_instance=cache)
        @staticmethod
        def inner_static(x):
            calls(("static2", x))
            return x + 2

        @classmethod
        @cached(cache_instance=cache)
        def outer_class(cls, x):
            calls(("class", x))
            return x * cls.factor

        @cached(cache_instance=cache)
        @classmethod
        def inner_class(cls, x):
            calls(("class2", x))
            return x * cls.factor + 1

    class Bigger(Units):
        factor = 100

    for _ in range(2):
        assert Units.outer_static(1) == Units().outer_static(1) == 2
        assert Units.inner_static(1) == 3
        assert Units.outer_class(2) == 20
        assert Units.inner_class(2) == 21
        assert Bigger.outer_class(2) == 200  # cls is part of the key
    assert calls.args == [("static", 1), ("static2", 1), ("class", 2), ("class2", 2), ("class", 2)]
    assert Units.outer_static.cache_info().hits == 3
    assert Units.outer_class.cache_key(Units, 2) != Units.outer_class.cache_key(Bigger, 2)


# -- failures of the cache never break a call -------------------------------------------------


def test_a_failing_cache_is_logged_counted_and_worked_around(cache, monkeypatch, caplog):
    calls = Calls()

    @cached(cache_instance=cache)
    def double(x):
        calls(x)
        return 2 * x

    def unreachable(*args, **kwargs):
        raise BackendUnavailableError("index server down")

    monkeypatch.setattr(cache, "get", unreachable)
    monkeypatch.setattr(cache, "put", unreachable)
    with caplog.at_level(logging.WARNING, logger="cacheness.decorators"):
        assert double(4) == 8
        assert double(4) == 8
    assert len(calls) == 2
    assert double.cache_info().errors == 4  # two reads, two writes
    assert "could not read cache entry" in caplog.text
    assert "index server down" in caplog.text
    assert "the result is returned uncached" in caplog.text


def test_a_result_that_cannot_be_stored_is_returned_and_logged(cache, caplog):
    @cached(cache_instance=cache)
    def make_lock(name):
        return threading.Lock()

    with caplog.at_level(logging.WARNING, logger="cacheness.decorators"):
        made = make_lock("a")
    assert isinstance(made, type(threading.Lock()))
    assert make_lock.cache_info().errors == 1
    assert "SerializationError" in caplog.text
    assert cache.list_entries() == []


def test_a_strict_cache_raises_its_failures(tmp_path):
    with cacheness(cache_dir=str(tmp_path / "c"), strict=True) as cache:

        @cached(cache_instance=cache)
        def make_lock(name):
            return threading.Lock()

        with pytest.raises(SerializationError):
            make_lock("a")
        assert make_lock.cache_info().errors == 1


def test_a_closed_cache_degrades_to_plain_calls(tmp_path, caplog):
    cache = cacheness(cache_dir=str(tmp_path / "c"))

    @cached(cache_instance=cache, lock=True)
    def f(x):
        return x + 1

    cache.close()
    with caplog.at_level(logging.WARNING, logger="cacheness.decorators"):
        assert f(1) == 2
    assert "this cache is closed" in caplog.text
    assert f.cache_info.__name__ == "info"
    with pytest.raises(StorageError, match="closed"):  # management calls do raise
        f.cache_info()


def test_failing_to_take_the_lock_computes_anyway(cache, monkeypatch, caplog):
    def no_lock(key, timeout=None):
        raise BackendUnavailableError("lock server down")

    monkeypatch.setattr(cache, "compute_lock", no_lock)

    @cached(cache_instance=cache, lock=True)
    def f(x):
        return x * 3

    with caplog.at_level(logging.WARNING, logger="cacheness.decorators"):
        assert f(2) == 6
    assert f(2) == 6
    assert f.cache_info() == CacheInfo(hits=1, misses=1, maxsize=None, currsize=1, errors=1)
    assert "without stampede protection" in caplog.text


# -- stampede protection in threads ---------------------------------------------------------

THREADS = 16


def _stampede(cache, lock):
    """16 threads call one key at once; the computation waits until all have missed."""
    computed = Calls()
    barrier = threading.Barrier(THREADS)
    all_missed = threading.Event()

    def wait_until_everyone_missed():
        # Every thread looks the key up (a miss) before it computes or queues on the
        # lock; the cache's miss counter shows when all of them have.
        for _ in range(2000):
            if cache.get_stats()["misses"] >= THREADS:
                return
            all_missed.wait(0.005)

    @cached(cache_instance=cache, lock=lock)
    def expensive(x):
        computed(x)
        wait_until_everyone_missed()
        return {"x": x, "value": x * 1000}

    results = []

    def worker():
        barrier.wait()
        results.append(expensive(7))

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [{"x": 7, "value": 7000}] * THREADS
    return len(computed), expensive.cache_info()


@pytest.mark.parametrize("backend", ["memory", "sqlite", "postgresql"])
def test_thread_stampede_computes_once(tmp_path, request, backend):
    options: dict = {"cache_dir": str(tmp_path / "c")}
    if backend == "memory":
        options.update(metadata_backend="memory", blob_backend="memory")
    elif backend == "postgresql":
        url = request.getfixturevalue("fresh_postgres_url")
        options.update(metadata_backend="postgresql", metadata_backend_options={"url": url})
    with cacheness(**options) as cache:
        computations, info = _stampede(cache, lock=True)
    assert computations == 1
    assert (info.hits, info.misses, info.currsize) == (THREADS - 1, 1, 1)


def test_without_a_lock_the_same_stampede_computes_every_time(tmp_path):
    with cacheness(cache_dir=str(tmp_path / "c")) as cache:
        computations, info = _stampede(cache, lock=False)
    assert computations == THREADS
    assert info.misses == THREADS


def test_lock_timeout_computes_anyway_and_logs(cache, caplog):
    calls = Calls()

    @cached(cache_instance=cache, lock=True, lock_timeout=0.05)
    def slow(x):
        calls(x)
        return x

    with cache.compute_lock(slow.cache_key(1)) as held:  # another caller holds the key
        assert held
        with caplog.at_level(logging.WARNING, logger="cacheness.decorators"):
            assert slow(1) == 1
    assert calls.args == [1]
    assert "waited lock_timeout=0.05s" in caplog.text
    assert slow(1) == 1
    assert calls.args == [1]


def test_a_waiter_reads_the_value_the_holder_computed(cache):
    calls = Calls()
    release = threading.Event()
    started = threading.Event()

    @cached(cache_instance=cache, lock=True)
    def report(day):
        calls(day)
        if day == 3:
            started.set()
            assert release.wait(10)
        return f"report {day}"

    first = threading.Thread(target=report, args=(3,))
    first.start()
    started.wait(10)
    results = []
    second = threading.Thread(target=lambda: results.append(report(3)))
    second.start()
    other_key = report(4)  # a different key is never blocked by the held one
    release.set()
    first.join()
    second.join()
    assert other_key == "report 4"
    assert results == ["report 3"]
    assert calls.args == [3, 4]


def test_wraps_is_applied_for_partial_objects_with_key_prefix(cache):
    def power(base, exponent):
        return base**exponent

    cube = cached(cache_instance=cache, key_prefix="tests.cube")(
        functools.partial(power, exponent=3)
    )
    assert cube(2) == cube(2) == 8
    assert cube.cache_info().hits == 1


def test_a_sync_function_returning_an_awaitable_is_not_cached(cache, caplog):
    async def later():
        return 1

    @cached(cache_instance=cache)
    def starts(x):
        return later()

    with caplog.at_level(logging.WARNING, logger="cacheness.decorators"):
        pending = starts(1)
    pending.close()
    assert "returned an awaitable" in caplog.text
    assert cache.list_entries() == []


def test_code_hash_reads_the_indented_source_of_methods(cache):
    def decorate():
        return cached(cache_instance=cache, key_prefix="shape.area", code_hash=True)

    class Square:
        @decorate()
        def area(self, r):
            """Indented source: dedented before parsing."""
            return r * r

    class Reformatted:
        @decorate()
        def area(self, r):  # a comment, no docstring
            return r * r

    class Changed:
        @decorate()
        def area(self, r):
            return r * r + 0

    prefix = Square.area.cache_parameters()["key_prefix"]
    assert prefix.startswith("shape.area@code=")
    assert Reformatted.area.cache_parameters()["key_prefix"] == prefix
    assert Changed.area.cache_parameters()["key_prefix"] != prefix


# -- binding, against inspect.Signature.bind --------------------------------------------------

values = st.one_of(st.integers(), st.text(max_size=5), st.none(), st.floats(allow_nan=False))


@given(
    a=values,
    rest=st.lists(values, max_size=3),
    positional=st.integers(min_value=1, max_value=4),
)
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_way_to_pass_arguments_gives_the_key_of_the_bound_call(cache, a, rest, positional):
    def f(a, b=1, c="x", d=None):
        return a

    cached_f = cached(cache_instance=cache, key_prefix="tests.bind")(f)
    names = ["a", "b", "c", "d"]
    given_values = [a, *rest][:4]
    signature = inspect.signature(f)
    bound = signature.bind(*given_values)
    bound.apply_defaults()
    expected = derive_key(dict(bound.arguments), prefix="tests.bind")
    split = min(positional, len(given_values))
    args = given_values[:split]
    kwargs = dict(zip(names[split:], given_values[split:], strict=False))
    assert cached_f.cache_key(*args, **kwargs) == expected
    assert cached_f.cache_key(*given_values) == expected
    assert cached_f.cache_key(**dict(zip(names, given_values, strict=False))) == expected

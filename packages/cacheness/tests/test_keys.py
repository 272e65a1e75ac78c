"""derive_key and describe_params on built-in, standard-library and record values."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import enum
import itertools
import json
import pickle
import subprocess
import sys
import typing
import uuid
from decimal import Decimal
from fractions import Fraction
from pathlib import PurePosixPath, PureWindowsPath
from zoneinfo import ZoneInfo

import msgspec
import pytest

from cacheness import keys
from cacheness.keys import (
    KEY_SCHEMA_VERSION,
    UnsupportedKeyValueError,
    derive_key,
    describe_params,
)
from cacheness.storage.errors import CacheError


def key(value, **options):
    return derive_key({"v": value}, **options)


def all_distinct(*values) -> bool:
    found = [key(v) for v in values]
    return len(set(found)) == len(found)


# -- the shape of a key ---------------------------------------------------------------------


def test_key_is_32_lowercase_hex_characters():
    for params in ({}, {"a": 1}, {"x": [1, 2, {"y": None}]}):
        k = derive_key(params)
        assert len(k) == 32
        assert set(k) <= set("0123456789abcdef")


def test_same_params_give_the_same_key_and_kwarg_order_does_not_matter():
    assert derive_key({"a": 1, "b": "x", "c": 2.5}) == derive_key({"c": 2.5, "b": "x", "a": 1})


def test_names_matter_and_values_do_not_slide_between_names():
    assert derive_key({"a": 1}) != derive_key({"b": 1})
    assert derive_key({"a": "b", "c": "d"}) != derive_key({"a": "bc", "": "d"})
    assert derive_key({"a": 1}) != derive_key({"a": 1, "b": None})


def test_any_mapping_is_accepted():
    mapping = collections.OrderedDict([("b", 2), ("a", 1)])
    assert derive_key(mapping) == derive_key({"a": 1, "b": 2})
    assert derive_key(MappingProxy({"a": 1})) == derive_key({"a": 1})


class MappingProxy(collections.abc.Mapping):
    def __init__(self, data):
        self._data = data

    def __getitem__(self, name):
        return self._data[name]

    def __iter__(self):
        return iter(self._data)

    def __len__(self):
        return len(self._data)


# -- what must differ -----------------------------------------------------------------------


def test_the_issue_examples_all_differ():
    assert all_distinct(1, 1.0, "1", True, (1,), [1])


def test_types_are_part_of_the_key():
    assert all_distinct(
        0, 0.0, False, None, "", b"", bytearray(), [], (), {}, set(), frozenset(), range(0)
    )
    assert all_distinct(b"1", bytearray(b"1"), memoryview(b"1"), "1")
    assert all_distinct(complex(1, 0), 1.0, (1.0, 0.0))
    assert all_distinct(Decimal("1"), 1, Fraction(1), "1")


def test_nesting_is_part_of_the_key():
    assert all_distinct([1, [2, 3]], [[1, 2], 3], [1, 2, 3], [(1, 2), 3], [[1], [2, 3]])
    assert all_distinct({"a": [1]}, {"a": (1,)}, [("a", 1)], {"a": 1})


def test_big_ints_and_int_range_edges():
    values = [2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 2**200, -(2**200)]
    assert all_distinct(*values)
    assert key(2**200) == key(2**200)


def test_floats_negative_zero_differs_and_every_nan_is_the_same():
    inf = float("inf")
    negative_nan = inf - inf  # the sign bit of this NaN is set on x86
    assert key(0.0) != key(-0.0)
    assert key(float("nan")) == key(negative_nan) == key(-float("nan"))
    assert all_distinct(float("nan"), inf, -inf, 0.0)
    assert key([negative_nan]) == key([float("nan")])
    assert key(complex(negative_nan, 1)) == key(complex(float("nan"), 1))


def test_decimal_keeps_its_precision():
    assert key(Decimal("1.0")) != key(Decimal("1.00"))
    assert all_distinct(Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("-0"))


def test_fraction_range_uuid():
    assert key(Fraction(2, 4)) == key(Fraction(1, 2))
    assert all_distinct(Fraction(1, 2), Fraction(1, 3), 0.5)
    assert all_distinct(range(3), range(1, 3), range(0, 3, 2), [0, 1, 2])
    u = uuid.UUID(int=5)
    assert key(u) == key(uuid.UUID(str(u)))
    assert all_distinct(u, str(u), u.bytes)


# -- what must not differ -------------------------------------------------------------------


def test_dict_and_set_order_do_not_matter():
    assert key({"a": 1, "b": 2}) == key({"b": 2, "a": 1})
    assert key({1: "a", "x": 2, (3,): None}) == key({(3,): None, "x": 2, 1: "a"})
    assert key({"c", "a", "b"}) == key({"b", "c", "a"})
    assert key(frozenset([3, "x", 1.5])) == key(frozenset([1.5, 3, "x"]))


def test_dicts_with_mixed_keys_differ_by_content():
    assert all_distinct({1: "a", "1": "a"}, {1: "a"}, {"1": "a"}, {1.0: "a"}, {True: "a"})


def test_set_and_frozenset_differ_but_both_ignore_order():
    assert key({1, 2}) != key(frozenset({1, 2}))
    assert key({1, 2}) != key([1, 2])


# -- dates and times ------------------------------------------------------------------------


def test_aware_datetimes_are_normalised_to_utc():
    utc = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)
    paris = dt.datetime(2024, 3, 1, 13, 0, tzinfo=ZoneInfo("Europe/Paris"))
    offset = dt.datetime(2024, 3, 1, 7, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert key(utc) == key(paris) == key(offset)
    assert key(utc) != key(utc + dt.timedelta(microseconds=1))


def test_naive_datetimes_are_wall_clock_values_distinct_from_aware_ones():
    naive = dt.datetime(2024, 3, 1, 12, 0)
    assert key(naive) == key(dt.datetime(2024, 3, 1, 12, 0))
    assert key(naive) != key(naive.replace(tzinfo=dt.UTC))
    assert key(naive) != key(naive + dt.timedelta(microseconds=1))


def test_date_time_timedelta():
    assert all_distinct(
        dt.date(2024, 3, 1), dt.datetime(2024, 3, 1), dt.date(2024, 3, 2), "2024-03-01"
    )
    assert all_distinct(dt.time(8, 0), dt.time(8, 0, tzinfo=dt.UTC), dt.time(8, 0, 0, 1))
    assert key(dt.timedelta(days=1)) == key(dt.timedelta(hours=24))
    assert all_distinct(dt.timedelta(days=1), dt.timedelta(days=-1), 86400, dt.timedelta(0))


# -- enums, classes, records ----------------------------------------------------------------


class Color(enum.Enum):
    RED = 1
    CRIMSON = 1  # noqa: PIE796 - an alias on purpose: the same member
    BLUE = 2


class Size(enum.IntEnum):
    SMALL = 1


class Perm(enum.Flag):
    R = 1
    W = 2
    X = 4


def test_enums_by_class_and_member():
    assert key(Color.RED) == key(Color.CRIMSON)
    assert all_distinct(Color.RED, Color.BLUE, Size.SMALL, 1, "RED")
    assert key(Perm.R | Perm.W) == key(Perm.W | Perm.R)
    assert all_distinct(Perm.R, Perm.R | Perm.W, Perm(0), 1)


def test_classes_by_qualified_name():
    assert all_distinct(int, float, Color, Decimal, "builtins.int")


@dataclasses.dataclass
class Config:
    lr: float
    layers: list[int]
    label: str = dataclasses.field(default="", compare=False)


@dataclasses.dataclass
class OtherConfig:
    lr: float
    layers: list[int]


class Window(msgspec.Struct):
    start: int
    stop: int = 10


class Point(typing.NamedTuple):
    x: int
    y: int


PointByFactory = collections.namedtuple("PointByFactory", ["x", "y"])


def test_dataclasses_by_fields_that_take_part_in_equality():
    assert key(Config(0.1, [1, 2])) == key(Config(0.1, [1, 2], label="ignored"))
    assert key(Config(0.1, [1, 2])) != key(Config(0.1, [2, 1]))
    assert key(Config(0.1, [1, 2])) != key(OtherConfig(0.1, [1, 2]))


def test_every_record_kind_by_fields_and_type():
    assert all_distinct(Point(1, 2), PointByFactory(1, 2), Window(1, 2), (1, 2), {"x": 1, "y": 2})
    assert key(Window(1)) == key(Window(1, 10))
    assert key(Window(1)) != key(Window(1, 11))
    assert key(msgspec.UNSET) != key(None)


def test_attrs_classes_by_fields_that_take_part_in_equality():
    attrs = pytest.importorskip("attrs")

    @attrs.define
    class AttrsPoint:
        x: int
        y: int
        cache: dict = attrs.field(factory=dict, eq=False)

    assert key(AttrsPoint(1, 2, cache={"big": 1})) == key(AttrsPoint(1, 2))
    assert all_distinct(AttrsPoint(1, 2), AttrsPoint(1, 3), Point(1, 2), (1, 2))


def test_pydantic_models_by_fields():
    pydantic = pytest.importorskip("pydantic")

    class PydanticPoint(pydantic.BaseModel):
        x: int
        y: int

    assert key(PydanticPoint(x=1, y=2)) == key(PydanticPoint(x=1, y=2))
    assert all_distinct(PydanticPoint(x=1, y=2), PydanticPoint(x=1, y=3), Point(1, 2))


class Model:
    def __init__(self, name, weights):
        self.name = name
        self.weights = weights

    def __cache_key__(self):
        return {"name": self.name, "weights": self.weights}


class OtherModel(Model):
    pass


def test_cache_key_protocol():
    assert key(Model("a", (1, 2))) == key(Model("a", (1, 2)))
    assert key(Model("a", (1, 2))) != key(Model("a", (1, 3)))
    assert key(Model("a", (1, 2))) != key(OtherModel("a", (1, 2)))
    assert key(Model("a", (1, 2))) != key({"name": "a", "weights": (1, 2)})
    assert key(Model("outer", Model("inner", 1))) != key(Model("outer", Model("inner", 2)))


def test_cache_key_wins_over_other_rules():
    @dataclasses.dataclass
    class Keyed:
        payload: object

        def __cache_key__(self):
            return "fixed"

    assert key(Keyed(object())) == key(Keyed(object()))


class Name(str):
    __slots__ = ()


class Count(int):
    __slots__ = ()


def test_subclasses_of_builtins_are_tagged_with_their_class():
    assert key(Name("a")) == key(Name("a"))
    assert all_distinct(Name("a"), "a", Count(1), 1)
    assert key(collections.OrderedDict(a=1)) != key({"a": 1})
    assert key(collections.OrderedDict(a=1, b=2)) == key(collections.OrderedDict(b=2, a=1))
    assert key(collections.Counter("aab")) != key({"a": 2, "b": 1})


def test_subclass_value_is_read_through_the_base_type():
    class Shouty(str):
        def __str__(self):
            return "SHOUT"

        def encode(self, *args):
            return b"SHOUT"

    assert key(Shouty("a")) != key(Shouty("b"))


# -- errors ---------------------------------------------------------------------------------


class Opaque:
    pass


def test_unsupported_value_raises_typeerror_naming_the_three_ways_out():
    with pytest.raises(UnsupportedKeyValueError) as caught:
        derive_key({"cfg": {"layers": [1, Opaque()]}})
    error = caught.value
    assert isinstance(error, TypeError)
    assert isinstance(error, CacheError)
    assert error.parameter == "cfg['layers'][1]"
    assert error.value_type == f"{Opaque.__module__}.Opaque"
    message = str(error)
    assert "parameter 'cfg' (at cfg['layers'][1])" in message
    assert "key_func" in message
    assert f"__cache_key__(self) on {Opaque.__module__}.Opaque" in message
    assert "hash_unknown='pickle'" in message
    assert "not guaranteed stable" in message


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ((1, Opaque()), "v[1]"),
        ({Opaque()}, "v{...}"),
        (Config(0.1, [Opaque()]), "v.layers[0]"),
        (Model("m", Opaque()), "v.__cache_key__()['weights']"),
        ({(1, 2): Opaque()}, "v[(1, 2)]"),
    ],
)
def test_error_location_is_reported(value, where):
    with pytest.raises(UnsupportedKeyValueError) as caught:
        key(value)
    assert caught.value.parameter == where


def test_functions_and_builtin_objects_are_unsupported_by_default():
    for value in (len, lambda: 1, object(), iter([]), Opaque):
        if isinstance(value, type):
            continue  # classes are supported by name
        with pytest.raises(TypeError, match="on a wrapper class"):
            key(value)


def test_subclass_with_instance_state_is_refused():
    class Tagged(dict):
        pass

    tagged = Tagged(a=1)
    tagged.source = "x"
    with pytest.raises(UnsupportedKeyValueError, match=r"instance attributes \(source\)"):
        key(tagged)
    assert key(Tagged(a=1)) == key(Tagged(a=1))


def test_structured_array_with_object_fields_is_refused():
    np = pytest.importorskip("numpy")
    with pytest.raises(UnsupportedKeyValueError, match="object fields"):
        key(np.zeros(2, dtype=[("a", "i4"), ("b", "O")]))


def test_reference_cycles_are_value_errors():
    loop: list = [1]
    loop.append(loop)
    with pytest.raises(ValueError, match="reference cycle") as caught:
        key(loop)
    assert "at v[1]" in str(caught.value)

    class SelfKey:
        def __cache_key__(self):
            return [self]

    with pytest.raises(ValueError, match="reference cycle"):
        key(SelfKey())


def test_shared_references_are_not_cycles():
    shared = [1, 2]
    assert key([shared, shared]) == key([[1, 2], [1, 2]])


def test_bad_names_and_options():
    with pytest.raises(TypeError, match="parameter names must be str"):
        derive_key({1: "a"})
    with pytest.raises(TypeError, match="parameter names must be str"):
        derive_key({1: "a", "b": 2})
    with pytest.raises(ValueError, match="hash_unknown"):
        derive_key({}, hash_unknown="repr")
    with pytest.raises(ValueError, match="path_mode"):
        derive_key({}, path_mode="mtime")
    with pytest.raises(TypeError, match="prefix"):
        derive_key({}, prefix=3)


def test_str_subclass_names_are_plain_names():
    assert derive_key({Name("a"): 1}) == derive_key({"a": 1})


# -- hash_unknown="pickle" ------------------------------------------------------------------


class Picklable:
    def __init__(self, value):
        self.value = value


def test_pickle_opt_in_hashes_pickle_bytes():
    a = key(Picklable([1, 2]), hash_unknown="pickle")
    assert a == key(Picklable([1, 2]), hash_unknown="pickle")
    assert a != key(Picklable([1, 3]), hash_unknown="pickle")
    # only unknown values are pickled: known ones keep their canonical keys
    assert key([1, "x"], hash_unknown="pickle") == key([1, "x"])


def test_pickle_opt_in_reports_unpicklable_values():
    with pytest.raises(UnsupportedKeyValueError, match="cannot be pickled") as caught:
        key([lambda: 1], hash_unknown="pickle")
    assert "hash_unknown='pickle' (" not in str(caught.value)  # already opted in
    assert isinstance(caught.value.__cause__, (pickle.PicklingError, AttributeError))


# -- prefix and schema version --------------------------------------------------------------


def test_prefix_namespaces_keys():
    params = {"x": 1}
    assert derive_key(params, prefix="a.f") != derive_key(params, prefix="a.g")
    assert derive_key(params, prefix="a.f") != derive_key(params)
    assert derive_key(params, prefix="") == derive_key(params, prefix=None)
    assert derive_key(params, prefix=Name("p")) == derive_key(params, prefix="p")
    assert derive_key({}, prefix="x") != derive_key({"x": None})


def test_schema_version_is_part_of_every_key(monkeypatch):
    before = derive_key({"x": 1})
    monkeypatch.setattr(keys, "KEY_SCHEMA_VERSION", KEY_SCHEMA_VERSION + 1)
    assert derive_key({"x": 1}) != before


# -- strings --------------------------------------------------------------------------------


def test_unicode_and_lone_surrogates():
    assert all_distinct("é", "e\u0301", "\udc80", "\udc81", b"\xed\xb2\x80")
    assert key({"\udc80": 1}) == key({"\udc80": 1})
    assert key({"\udc80", "a"}) == key({"a", "\udc80"})
    assert key({1: "\udc80"}) != key({1: "\udc81"})


def test_pure_paths_by_flavour_and_text():
    assert key(PurePosixPath("a/b")) == key(PurePosixPath("a//b"))
    assert all_distinct(PurePosixPath("a/b"), PureWindowsPath("a/b"), "a/b")


# -- imports stay light ---------------------------------------------------------------------


def test_plain_keys_never_import_numpy_or_pandas():
    probe = (
        "import sys, json, datetime, decimal\n"
        "from cacheness.keys import derive_key, describe_params\n"
        "derive_key({'a': [1, {'b': {2.5, 'x'}}], 'd': datetime.datetime(2024, 1, 1),"
        " 'e': decimal.Decimal('1')})\n"
        "describe_params({'a': 1})\n"
        "print(json.dumps(sorted(m for m in sys.modules"
        " if m.split('.')[0] in ('numpy', 'pandas', 'pyarrow', 'polars'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    assert json.loads(out) == []


# -- describe_params ------------------------------------------------------------------------


def test_describe_params_plain_values_round_trip():
    params = {"b": 2, "a": "x", "c": [1.5, None], "d": {"k": True}}
    described = describe_params(params)
    assert described == {"a": "x", "b": 2, "c": [1.5, None], "d": {"k": True}}
    assert list(described) == ["a", "b", "c", "d"]
    assert json.loads(json.dumps(described)) == described


def test_describe_params_rich_values_get_their_json_form():
    described = describe_params(
        {
            "t": (1, 2),
            "s": {"b", "a"},
            "when": dt.datetime(2024, 1, 2, 3, 4, tzinfo=dt.UTC),
            "color": Color.BLUE,
            "cfg": Config(0.1, [1]),
            "win": Window(2),
            "dec": Decimal("1.50"),
            "raw": b"\x00\x01",
            "nan": float("nan"),
            "path": PurePosixPath("data/in.csv"),
        }
    )
    assert described == {
        "cfg": {"lr": 0.1, "layers": [1], "label": ""},
        "color": 2,
        "dec": "1.50",
        "nan": None,
        "path": "data/in.csv",
        "raw": "AAE=",
        "s": ["a", "b"],
        "t": [1, 2],
        "when": "2024-01-02T03:04:00Z",
        "win": {"start": 2, "stop": 10},
    }


def test_describe_params_leaves_out_what_has_no_json_form():
    assert describe_params({"a": 1, "f": Opaque(), "m": Model("x", 1)}) == {"a": 1}
    assert describe_params({"f": Opaque()}) is None
    assert describe_params({}) is None
    assert describe_params({"a": [1, Opaque()], "b": "\udc80"}) is None


def test_describe_params_leaves_out_oversized_values():
    params = {"small": 1, "big": list(range(1000))}
    assert describe_params(params) == {"small": 1}
    assert describe_params(params, max_value_bytes=10_000) == params


def test_describe_params_of_a_query_matches_the_stored_form():
    stored = describe_params({"window": (1, 5), "tags": {"x", "y"}})
    query = describe_params({"window": (1, 5), "tags": {"y", "x"}})
    assert stored == query


def test_describe_params_numpy_scalars_become_numbers():
    np = pytest.importorskip("numpy")
    assert describe_params({"lr": np.float32(0.5), "n": np.int64(3), "ok": np.bool_(True)}) == {
        "lr": 0.5,
        "n": 3,
        "ok": True,
    }
    assert describe_params({"arr": np.zeros(3)}) is None


def test_describe_params_rejects_non_str_names():
    with pytest.raises(TypeError, match="parameter names must be str"):
        describe_params({1: 2})


# -- the documentation page -----------------------------------------------------------------


def test_docs_examples_run(docs_page):
    page = docs_page("keys.md")
    assert len(page.blocks()) >= 3
    page.run(module="docs_keys")


def test_docs_state_the_real_parallel_thresholds(docs_page):
    from cacheness import _keys_paths

    text = docs_page("keys.md").text
    assert f"at least {_keys_paths.PARALLEL_MIN_FILES} files" in text
    assert f"{_keys_paths.PARALLEL_MIN_BYTES >> 20} MiB" in text


def test_sets_of_frozensets_are_described_in_one_order():
    # frozensets compare by the subset relation, a partial order: sorting by it would
    # follow the order the set was built in (hypothesis found this)
    elements = [frozenset(), frozenset({"p"}), frozenset({frozenset()})]
    described = set()
    for order in itertools.permutations(elements):
        built: set = set()
        for element in order:
            built.add(element)
        described.add(repr(describe_params({"groups": built})))
    assert described == {"{'groups': [['p'], [[]], []]}"}


# -- remembered keys ----------------------------------------------------------------------


def test_remembered_keys_are_the_derived_ones():
    """Keys of short str/int parameters are remembered: never one of an equal value of
    another type (True == 1, 1.0 == 1), of a long string, or of another prefix."""
    values = [1, True, 1.0, "1", 2**64, -(2**63), "x" * 300, 0, False, 0.0, -0.0]
    fresh = {}
    for prefix in (None, "p"):
        for v in values:
            keys._REMEMBERED.clear()
            fresh[prefix, repr(v)] = derive_key({"a": v}, prefix=prefix)
    keys._REMEMBERED.clear()
    for _ in range(2):  # the second round is served from memory where it may be
        for prefix in (None, "p"):
            for v in values:
                assert derive_key({"a": v}, prefix=prefix) == fresh[prefix, repr(v)]
                remembered = keys.remembered_key({"a": v}, prefix)
                assert remembered in (None, fresh[prefix, repr(v)])
    assert keys.remembered_key({"a": True}) is None
    assert keys.remembered_key({"a": 1}) == fresh[None, "1"]
    assert len(set(fresh.values())) == len(fresh)

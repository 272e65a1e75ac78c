"""Properties of derive_key over random nested values (hypothesis).

A small reference model states what "the same key" means: two values get the same key
exactly when their typed models are equal. Types are part of the model (``1``, ``1.0``,
``True``, ``(1,)`` and ``[1]`` differ), ``float.hex`` tells ``-0.0`` from ``0.0`` and every
NaN is ``"nan"``, and dicts and sets are compared as unordered collections.
"""

from __future__ import annotations

import math
import random
import struct
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cacheness.keys import derive_key, describe_params

# -- the reference model --------------------------------------------------------------------


def model(v: Any) -> Any:
    t = type(v)
    if t is float:
        return ("float", "nan" if math.isnan(v) else v.hex())
    if t is complex:
        return ("complex", model(v.real), model(v.imag))
    if t is Decimal:
        return ("decimal", v.as_tuple())
    if t in (list, tuple):
        return (t.__name__, tuple(model(x) for x in v))
    if t is dict:
        return ("dict", frozenset((model(k), model(x)) for k, x in v.items()))
    if t in (set, frozenset):
        return (t.__name__, frozenset(model(x) for x in v))
    return (t.__name__, v)


# -- strategies -----------------------------------------------------------------------------

texts = st.text(alphabet=st.characters(exclude_categories=()), max_size=6)
hashable_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    texts,
    st.binary(max_size=6),
)
scalars = st.one_of(
    hashable_scalars,
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, -math.nan, 0.0, -0.0, 1, 1.0, True, "1", b"1"]),
    st.complex_numbers(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False, places=None) | st.sampled_from([Decimal("1.0"), Decimal("1")]),
)
hashables = st.recursive(
    hashable_scalars,
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=4,
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(hashables, inner, max_size=4),
        st.sets(hashables, max_size=4),
        st.frozensets(hashables, max_size=4),
    ),
    max_leaves=12,
)
names = st.text(min_size=1, max_size=8)
params_strategy = st.dictionaries(names, values, max_size=5)


def any_nan(rnd: random.Random) -> float:
    """A NaN with a random sign and payload (CPUs and libraries produce different ones)."""
    bits = 0x7FF0_0000_0000_0000 | rnd.randrange(1, 1 << 52) | (rnd.randrange(2) << 63)
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def reordered(v: Any, rnd: random.Random) -> Any:
    """A deep copy of ``v`` whose dicts and sets were built in a random order.

    NaNs (outside dict keys and sets, where hashing depends on identity) are replaced by
    NaNs with other bit patterns.
    """
    t = type(v)
    if t is float and math.isnan(v):
        return any_nan(rnd)
    if t is complex:
        return complex(reordered(v.real, rnd), reordered(v.imag, rnd))
    if t in (list, tuple):
        return t(reordered(x, rnd) for x in v)
    if t is dict:
        items = [(k, reordered(x, rnd)) for k, x in v.items()]
        rnd.shuffle(items)
        return dict(items)
    if t in (set, frozenset):
        elements = list(v)
        rnd.shuffle(elements)
        return t(elements)
    return v


# -- properties -----------------------------------------------------------------------------


@settings(max_examples=300)
@given(a=values, b=values)
def test_same_key_exactly_when_the_typed_models_are_equal(a, b):
    same_model = model(a) == model(b)
    assert (derive_key({"v": a}) == derive_key({"v": b})) is same_model


@settings(max_examples=150)
@given(params=params_strategy, seed=st.integers(0, 2**32 - 1))
def test_argument_dict_and_set_order_never_matter(params, seed):
    rnd = random.Random(seed)
    items = [(name, reordered(v, rnd)) for name, v in params.items()]
    rnd.shuffle(items)
    assert derive_key(dict(items)) == derive_key(params)


@settings(max_examples=150)
@given(params=params_strategy, prefix=st.none() | st.text(max_size=10))
def test_key_is_32_lowercase_hex_and_deterministic(params, prefix):
    k = derive_key(params, prefix=prefix)
    assert len(k) == 32
    assert set(k) <= set("0123456789abcdef")
    assert derive_key(params, prefix=prefix) == k


@settings(max_examples=100)
@given(params=params_strategy, name=names, value=values)
def test_adding_a_parameter_changes_the_key(params, name, value):
    if name in params:
        return
    assert derive_key({**params, name: value}) != derive_key(params)


@settings(max_examples=100)
@given(params=params_strategy, seed=st.integers(0, 2**32 - 1))
def test_describe_params_is_order_insensitive_and_json_plain(params, seed):
    rnd = random.Random(seed)
    shuffled = {name: reordered(v, rnd) for name, v in reversed(list(params.items()))}
    described = describe_params(params)
    assert describe_params(shuffled) == described
    if described is not None:
        assert set(described) <= set(params)
        assert list(described) == sorted(described)

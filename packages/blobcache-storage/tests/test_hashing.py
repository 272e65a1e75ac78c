from __future__ import annotations

import io

import xxhash
from hypothesis import given
from hypothesis import strategies as st

from cacheness.storage import ContentHasher, hash_bytes, hash_stream
from cacheness.storage._hashing import HASH_HEX_LENGTH


def test_known_vectors_pin_the_algorithm():
    # XXH3-128 of b"" and b"abc": a change of algorithm breaks every stored hash.
    assert hash_bytes(b"") == "99aa06d3014798d86001c324468d497f"
    assert hash_bytes(b"abc") == "06b05ab6733a618578af5f94892f3950"
    assert len(hash_bytes(b"x" * 10_000)) == HASH_HEX_LENGTH


@given(st.lists(st.binary(max_size=300), max_size=20))
def test_incremental_equals_one_shot(chunks):
    hasher = ContentHasher()
    for chunk in chunks:
        hasher.update(memoryview(chunk))
    whole = b"".join(chunks)
    assert hasher.hexdigest() == hash_bytes(whole) == xxhash.xxh3_128_hexdigest(whole)
    assert hash_stream(io.BytesIO(whole), chunk_size=7) == hash_bytes(whole)

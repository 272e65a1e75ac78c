"""Compression codecs: round trips, auto decisions, and decoders that stop at the recorded size."""

from __future__ import annotations

import gzip
import io
import os
import random
import tracemalloc
import zlib

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from cacheness.storage import (
    CODECS,
    CodecSettings,
    compress,
    decompress,
    open_compressor,
    open_decompressor,
)
from cacheness.storage._compression import check_codec, default_threads, resolve_codec, sample_of
from cacheness.storage.errors import CompressionError, ConfigError, IntegrityError

SMALL_CHUNKS = CodecSettings(chunk_size=64)


def stream_compress(parts, codec, settings=SMALL_CHUNKS, typesize=1):
    sink = io.BytesIO()
    with open_compressor(sink, codec, settings, typesize=typesize) as writer:
        for part in parts:
            writer.write(part)
    assert writer.raw_size == sum(len(p) for p in parts)
    assert writer.stored_size == len(sink.getvalue())
    return sink.getvalue()


@given(
    parts=st.lists(st.one_of(st.binary(max_size=300), st.just(b"ab" * 200)), max_size=6),
    codec=st.sampled_from(CODECS),
    typesize=st.sampled_from([1, 2, 8, 255]),
    read_size=st.integers(1, 500),
)
@settings(max_examples=150)
def test_stream_round_trip_in_any_read_pattern(parts, codec, typesize, read_size):
    data = b"".join(parts)
    stored = stream_compress(parts, codec, typesize=typesize)
    reader = open_decompressor(io.BytesIO(stored), codec, raw_size=len(data))
    out = bytearray()
    while chunk := reader.read(read_size):
        out += chunk
    assert bytes(out) == data
    reader.finish()
    assert decompress(stored, codec, raw_size=len(data)) == data
    assert decompress(compress(data, codec, SMALL_CHUNKS), codec, raw_size=len(data)) == data


def test_stored_formats_are_standard():
    data = b"payload " * 1000
    assert (
        zstandard.ZstdDecompressor().stream_reader(io.BytesIO(compress(data, "zstd"))).read()
        == data
    )
    assert gzip.decompress(compress(data, "gzip")) == data
    assert compress(data, "none") == data


def test_levels_apply():
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefgh") for _ in range(5)) for _ in range(300)]
    data = " ".join(rng.choice(words) for _ in range(100_000)).encode()
    fast = compress(data, "zstd", CodecSettings(level=1))
    strong = compress(data, "zstd", CodecSettings(level=19))
    assert len(strong) < 0.9 * len(fast)
    assert zlib.decompress(compress(data, "gzip", CodecSettings(level=1)), 31) == data


def blosc2_chunk_sizes(stored):
    import blosc2

    sizes, pos = [], 0
    while pos < len(stored):
        length = int.from_bytes(stored[pos : pos + 4], "little")
        sizes.append(blosc2.get_cbuffer_sizes(stored[pos + 4 : pos + 4 + length])[0])
        pos += 4 + length
    return sizes


def test_blosc2_chunks_respect_the_chunk_size():
    data = bytes(range(256)) * 10
    stored = stream_compress([data[:100], data[100:]], "blosc2", CodecSettings(chunk_size=1000))
    # the small write is a chunk of its own; the large one is cut where it lies
    assert blosc2_chunk_sizes(stored) == [100, 1000, 1000, 460]
    assert decompress(stored, "blosc2", raw_size=len(data)) == data


def test_blosc2_gathers_small_writes_and_compresses_large_ones_in_place():
    settings = CodecSettings(chunk_size=1 << 20)
    big = bytes(range(256)) * 2048  # 512 KiB: compressed where it lies
    parts = [b"s" * 10, b"m" * 20, big, b"t" * 30, big[:1000], big, b"e" * 5]
    stored = stream_compress(parts, "blosc2", settings, typesize=8)
    assert blosc2_chunk_sizes(stored) == [30, len(big), 1030, len(big), 5]
    assert decompress(stored, "blosc2", raw_size=sum(map(len, parts))) == b"".join(parts)
    # small writes fill whole chunks before a new one starts
    small = [bytes([i]) * 300 for i in range(10)]
    stored = stream_compress(small, "blosc2", CodecSettings(chunk_size=1000))
    assert blosc2_chunk_sizes(stored) == [1000, 1000, 1000]
    assert decompress(stored, "blosc2", raw_size=3000) == b"".join(small)


# --------------------------------------------------------------------------- auto


def test_auto_skips_small_payloads():
    assert resolve_codec("auto", b"a" * 511, 511) == "none"
    assert resolve_codec("auto", b"a" * 512, 512) == "zstd"
    assert resolve_codec("auto", b"a" * 100, 100, settings=CodecSettings(auto_min_size=0)) == "zstd"


def test_auto_skips_incompressible_data_from_a_sample():
    noise = os.urandom(1 << 20)
    assert resolve_codec("auto", sample_of([noise], 65536), len(noise)) == "none"
    text = b"the same words again " * 50_000
    assert resolve_codec("auto", sample_of([text], 65536), len(text)) == "zstd"
    assert resolve_codec("auto", text[:65536], len(text), default="blosc2") == "blosc2"


def test_auto_threshold_is_configurable():
    half = os.urandom(5000) + b"\x00" * 5000  # compresses to about half
    assert (
        resolve_codec("auto", half, len(half), settings=CodecSettings(auto_min_saving=0.3))
        == "zstd"
    )
    assert (
        resolve_codec("auto", half, len(half), settings=CodecSettings(auto_min_saving=0.7))
        == "none"
    )


def test_explicit_codecs_are_not_second_guessed():
    assert resolve_codec("zstd", os.urandom(1000), 1000) == "zstd"
    assert resolve_codec("none", b"a" * 10_000, 10_000) == "none"


def test_sample_takes_start_middle_and_end_across_parts():
    parts = [b"A" * 100, b"B" * 100, b"C" * 100]
    sample = sample_of(parts, 30)
    assert sample == b"A" * 10 + b"B" * 10 + b"C" * 10
    assert sample_of([b"x", memoryview(b"yz")], 10) == b"xyz"


# --------------------------------------------------------------------------- bounded decoding


def zstd_bomb(frames=16, frame_size=64 << 20):
    """1 GiB of zeros in a few kilobytes (concatenated frames)."""
    frame = zstandard.ZstdCompressor(level=1).compress(b"\x00" * frame_size)
    return frame * frames


def test_zstd_bomb_stops_at_the_recorded_size_in_bounded_memory():
    bomb = zstd_bomb()
    assert len(bomb) < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(IntegrityError, match="more than the recorded 1000 bytes"):
            decompress(bomb, "zstd", raw_size=1000)
        reader = open_decompressor(io.BytesIO(bomb), "zstd", raw_size=4096)
        with pytest.raises(IntegrityError, match="decompression bomb"):
            reader.read()  # read-to-end must not follow the bomb either
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20  # a naive decoder would hold 1 GiB


def test_gzip_bomb_stops_at_the_recorded_size():
    bomb = gzip.compress(b"\x00" * (32 << 20), compresslevel=9)
    tracemalloc.start()
    try:
        with pytest.raises(IntegrityError, match="more than the recorded"):
            decompress(bomb, "gzip", raw_size=10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_forged_blosc2_header_is_refused_before_decompressing():
    data = bytes(1000)
    stored = bytearray(compress(data, "blosc2"))
    stored[4 + 4 : 4 + 8] = (1 << 30).to_bytes(4, "little")  # chunk header nbytes: 1 GiB
    with pytest.raises(IntegrityError, match="claims 1073741824 bytes"):
        decompress(bytes(stored), "blosc2", raw_size=1000)


def test_forged_blosc2_length_prefix_is_refused_before_reading():
    stored = (2**31).to_bytes(4, "little")[:4] + b"x" * 10
    with pytest.raises(IntegrityError, match="more than the 1064 the recorded raw size allows"):
        decompress(stored, "blosc2", raw_size=1000)


@pytest.mark.parametrize("codec", CODECS)
def test_truncated_streams_fail(codec):
    data = os.urandom(3000) + b"z" * 3000
    stored = compress(data, codec, SMALL_CHUNKS)
    for cut in (1, len(stored) // 2, len(stored) - 1):
        with pytest.raises(IntegrityError):
            decompress(stored[:cut], codec, raw_size=len(data))


@pytest.mark.parametrize("codec", CODECS)
def test_trailing_bytes_fail(codec):
    data = b"hello world " * 100
    stored = compress(data, codec)
    with pytest.raises(IntegrityError):
        decompress(stored + b"\x00\x01", codec, raw_size=len(data))


@pytest.mark.parametrize("codec", CODECS)
def test_shorter_recorded_size_fails(codec):
    data = b"hello world " * 100
    stored = compress(data, codec)
    with pytest.raises(IntegrityError):
        decompress(stored, codec, raw_size=len(data) - 1)


@pytest.mark.parametrize("codec", ["zstd", "gzip", "blosc2"])
def test_garbage_is_an_integrity_error(codec):
    with pytest.raises(IntegrityError):
        decompress(b"this is not compressed data at all", codec, raw_size=100)


def test_invalid_recorded_size():
    with pytest.raises(IntegrityError, match="invalid recorded raw size"):
        open_decompressor(io.BytesIO(b""), "none", raw_size=-1)


def test_read_exact_refuses_lengths_beyond_the_recorded_size():
    reader = open_decompressor(io.BytesIO(b"abcdef"), "none", raw_size=6)
    assert reader.read_exact(2) == b"ab"
    with pytest.raises(IntegrityError, match="claims 10 bytes but only 4 remain"):
        reader.read_exact(10)


# --------------------------------------------------------------------------- writers


def test_a_failed_with_block_does_not_finish_the_stream():
    sink = io.BytesIO()
    writer = open_compressor(sink, "gzip")

    def produce():
        with writer:
            writer.write(b"abc")
            raise RuntimeError("producer failed")

    with pytest.raises(RuntimeError):
        produce()
    assert writer.closed
    with pytest.raises(IntegrityError):
        decompress(sink.getvalue(), "gzip", raw_size=3)  # no trailer: not a valid stream


def test_writing_after_close_is_an_error():
    writer = open_compressor(io.BytesIO(), "zstd")
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"x")


def test_the_sink_only_needs_write():
    class WriteOnly:
        def __init__(self):
            self.data = bytearray()

        def write(self, b):
            self.data += b
            return len(b)

    for codec in CODECS:
        sink = WriteOnly()
        with open_compressor(sink, codec, size_hint=10 << 20) as writer:
            writer.write(b"x" * (5 << 20))
        assert decompress(bytes(sink.data), codec, raw_size=5 << 20) == b"x" * (5 << 20)


def test_empty_zstd_stream_stores_nothing():
    assert stream_compress([], "zstd") == b""
    assert decompress(b"", "zstd", raw_size=0) == b""


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"blosc2_codec": "snappy"}, "blosc2_codec must be one of lz4"),
        ({"blosc2_clevel": 10}, "blosc2_clevel must be an integer in \\[0, 9\\]"),
        ({"level": 23}, "level must be an integer in \\[-7, 22\\]"),
        ({"nthreads": 0}, "nthreads"),
        ({"chunk_size": 2**31}, "chunk_size"),
        ({"auto_min_saving": 1.0}, "auto_min_saving"),
        ({"auto_sample_size": True}, "auto_sample_size"),
    ],
)
def test_settings_are_validated(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        CodecSettings(**kwargs)


def test_unknown_codecs():
    with pytest.raises(ConfigError, match="known: none, zstd, gzip, blosc2"):
        check_codec("lzma")
    with pytest.raises(ConfigError):
        open_compressor(io.BytesIO(), "auto")  # resolve auto first
    with pytest.raises(CompressionError, match="upgrade blobcache-storage"):
        open_decompressor(io.BytesIO(), "brotli", raw_size=0)


def test_threads_default_to_all_usable_cores():
    assert CodecSettings().threads == default_threads() >= 1
    assert CodecSettings(nthreads=3).threads == 3


# --------------------------------------------------------------------------- zstd contexts


def test_finished_zstd_contexts_are_reused():
    from cacheness.storage import _compression as compression

    stream_compress([b"warm up " * 100], "zstd")
    (context,) = compression._zstd_pool(3)[-1:]
    sink = io.BytesIO()
    with open_compressor(sink, "zstd") as writer:
        writer.write(b"second" * 100)
        assert writer._cctx is context  # taken from the pool, not built anew
        assert context not in compression._zstd_pool(3)  # lent to one frame only
    assert compression._zstd_pool(3)[-1] is context  # given back when the frame ended
    reader = open_decompressor(io.BytesIO(sink.getvalue()), "zstd", raw_size=600)
    lent = reader._dctx
    assert reader.read_all() == b"second" * 100
    assert compression._zstd_pool(None)[-1] is lent


@given(
    script=st.lists(
        st.tuples(st.integers(0, 2), st.sampled_from(["write", "close", "abandon"])),
        max_size=30,
    ),
    level=st.sampled_from([1, 3]),
)
@settings(max_examples=100)
def test_interleaved_and_abandoned_zstd_streams_never_share_a_context(script, level):
    """Three writers and their readers on one thread, in any order, some abandoned
    mid-frame: every finished stream decodes to exactly what was written to it."""
    options = CodecSettings(level=level)
    open_writers: dict[int, tuple] = {}
    finished: list[tuple[bytes, bytes]] = []
    for slot, action in script:
        if slot not in open_writers:
            sink = io.BytesIO()
            open_writers[slot] = (open_compressor(sink, "zstd", options), sink, bytearray())
        writer, sink, written = open_writers[slot]
        if action == "write":
            part = os.urandom(50) + bytes([slot]) * 500
            writer.write(part)
            written += part
        elif action == "close":
            writer.close()
            finished.append((sink.getvalue(), bytes(written)))
            del open_writers[slot]
        else:  # a failed producer: the frame is never completed
            with pytest.raises(RuntimeError), writer:
                raise RuntimeError("producer failed")
            del open_writers[slot]
    readers = [
        (open_decompressor(io.BytesIO(stored), "zstd", raw_size=len(data)), data)
        for stored, data in finished
    ]
    for reader, data in readers[::2]:  # half are dropped after a partial read
        reader.read(min(len(data), 10))
    for reader, data in readers[1::2]:
        assert reader.read_all() == data
    for stored, data in finished:
        assert decompress(stored, "zstd", raw_size=len(data)) == data


def test_a_finished_reader_does_not_touch_a_context_lent_to_another_stream():
    stored = stream_compress([b"first" * 100], "zstd")
    reader = open_decompressor(io.BytesIO(stored), "zstd", raw_size=500)
    assert reader.read_all() == b"first" * 100
    other = stream_compress([b"other" * 100], "zstd")
    second = open_decompressor(io.BytesIO(other), "zstd", raw_size=500)
    assert second.read(5) == b"other"
    reader.finish()  # again: must not read through the context `second` now holds
    assert reader.read(10) == b""
    assert second.read_all() == b"other" * 99


def test_memory_reader_reads_views_and_copies():
    from cacheness.storage._streams import MemoryReader

    reader = MemoryReader(bytearray(b"0123456789"))
    assert reader.read(3) == b"012"
    view = reader.read_view(4)
    assert isinstance(view, memoryview)
    assert bytes(view) == b"3456"
    target = bytearray(10)
    assert reader.readinto(target) == 3
    assert target[:3] == b"789"
    assert reader.read(5) == b""
    assert reader.read_view(5).nbytes == 0
    assert reader.seek(-2, io.SEEK_END) == 8
    assert reader.read() == b"89"
    assert reader.seek(1) == 1
    assert reader.seek(2, io.SEEK_CUR) == 3
    assert reader.tell() == 3
    # blosc2 chunks are decompressed straight from the views
    data = bytes(range(256)) * 100
    stored = compress(data, "blosc2", SMALL_CHUNKS)
    decoded = open_decompressor(MemoryReader(stored), "blosc2", raw_size=len(data)).read_all()
    assert decoded == data


def test_zstd_in_memory_is_exact_and_bounded_by_the_recorded_size():
    """decompress() of zstd decodes in one call; a frame claiming another size, trailing
    bytes, a truncated frame and a stream longer than recorded are all refused, and the
    claimed size of a bomb is never allocated."""
    import zstandard

    data = b"abcd" * 5000
    with_size = zstandard.ZstdCompressor(write_content_size=True).compress(data)
    streamed = compress(data, "zstd")
    for frame in (with_size, streamed):
        assert decompress(frame, "zstd", raw_size=len(data)) == data
        with pytest.raises(IntegrityError):
            decompress(frame, "zstd", raw_size=len(data) - 1)
        with pytest.raises(IntegrityError):
            decompress(frame + b"xx", "zstd", raw_size=len(data))
        with pytest.raises(IntegrityError):
            decompress(frame[:-4], "zstd", raw_size=len(data))
    bomb = zstandard.ZstdCompressor(write_content_size=True).compress(bytes(1 << 30))
    with pytest.raises(IntegrityError, match="declares"):
        decompress(bomb, "zstd", raw_size=4096)
    assert decompress(compress(b"", "zstd"), "zstd", raw_size=0) == b""

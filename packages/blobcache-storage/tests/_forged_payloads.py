"""Child process for test_bad_input: decode damaged and forged payloads, report what happened.

Usage: python _forged_payloads.py WORKDIR [S3_OPTIONS_JSON]

Stores one value of each kind (a numpy array through Blosc2, zstd bytes, an Arrow IPC
table, a polars Parquet frame, a pickled object) in a ``BlobStore`` whose blobs are files
under WORKDIR, and again in one whose blobs are objects in the bucket the JSON names
(``bucket`` plus boto3 client options), then, for every forgery of the stored bytes,
overwrites the blob from outside the store (a plain file write, a plain boto3
``put_object``) and reads the key back twice:

* ``kept``: the index still records the original hash: the read must fail its checks;
* ``rehashed``: the index is updated to the forged bytes' size and hash, as if whoever
  forged them also rewrote the index, so the decoders themselves face the forged header.

It prints ``{"filesystem": outcomes, "s3": outcomes}`` as one line of JSON, the outcomes
being ``{"<kind>/<forgery>/<kept|rehashed>": outcome}`` where the
outcome is ``"equal"`` or ``"different"`` (a value came back) or the exception's class
name; an untyped exception is reported as ``"untyped:<name>"``. The parent asserts on
the outcomes and on this process's exit code: a crash in a C extension kills only this
process.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Forgery = Callable[[bytes], bytes]


def _put_u32(data: bytes, offset: int, value: int) -> bytes:
    out = bytearray(data)
    out[offset : offset + 4] = (value & 0xFFFFFFFF).to_bytes(4, "little")
    return bytes(out)


def _set_byte(data: bytes, offset: int, value: int) -> bytes:
    out = bytearray(data)
    out[offset] = value & 0xFF
    return bytes(out)


def _flip(offset: int) -> Forgery:
    def forge(data: bytes) -> bytes:
        out = bytearray(data)
        out[offset % len(out)] ^= 0xFF
        return bytes(out)

    return forge


def _blosc2_forgeries() -> dict[str, Forgery]:
    # The stream is [u32 length][Blosc2 chunk]...; a chunk header is version, versionlz,
    # flags, typesize, then u32 nbytes, blocksize, cbytes, then the extended header
    # (filters...), then the u32 start offset of every block.
    h = 4  # the chunk header starts after the length prefix

    def nbytes_delta(delta: int) -> Forgery:
        def forge(data: bytes) -> bytes:
            nbytes = int.from_bytes(data[h + 4 : h + 8], "little")
            return _put_u32(data, h + 4, nbytes + delta)

        return forge

    def cbytes_delta(delta: int) -> Forgery:
        def forge(data: bytes) -> bytes:
            cbytes = int.from_bytes(data[h + 12 : h + 16], "little")
            return _put_u32(data, h + 12, cbytes + delta)

        return forge

    return {
        "length-prefix-huge": lambda d: _put_u32(d, 0, 0x7FFFFFF0),
        "length-prefix-zero": lambda d: _put_u32(d, 0, 0),
        "nbytes-larger": nbytes_delta(+8),
        "nbytes-smaller": nbytes_delta(-1000),
        "cbytes-larger": cbytes_delta(+1000),
        "cbytes-smaller": cbytes_delta(-1000),
        "blocksize-zero": lambda d: _put_u32(d, h + 8, 0),
        "blocksize-one": lambda d: _put_u32(d, h + 8, 1),
        "blocksize-huge": lambda d: _put_u32(d, h + 8, 0x7FFFFFF0),
        "typesize-zero": lambda d: _set_byte(d, h + 3, 0),
        "typesize-255": lambda d: _set_byte(d, h + 3, 255),
        "flags-memcpyed": lambda d: _set_byte(d, h + 2, d[h + 2] | 0x10),
        "flags-all": lambda d: _set_byte(d, h + 2, 0xFF),
        "version-unknown": lambda d: _set_byte(d, h, 0xEE),
        "filters-unknown": lambda d: bytes(d[: h + 16]) + b"\xee" * 6 + bytes(d[h + 22 :]),
        "block-start-beyond": lambda d: _put_u32(d, h + 32, 0x7FFFFFF0),
        "block-start-zero": lambda d: _put_u32(d, h + 32, 0),
        "body-flipped": _flip(-200),
    }


def _zstd_header_size(data: bytes) -> int:
    descriptor = data[4]
    single_segment = (descriptor >> 5) & 1
    fcs_flag = descriptor >> 6
    did_size = (0, 1, 2, 4)[descriptor & 3]
    fcs_size = (single_segment, 2, 4, 8)[fcs_flag]
    return 4 + 1 + (0 if single_segment else 1) + did_size + fcs_size


def _zstd_forgeries() -> dict[str, Forgery]:
    def window_huge(data: bytes) -> bytes:
        if (data[4] >> 5) & 1:  # single segment: no window descriptor; claim a huge content
            return _set_byte(data, 4, data[4] | 0xC0)
        return _set_byte(data, 5, 0xF8)

    def block_size_huge(data: bytes) -> bytes:
        at = _zstd_header_size(data)
        header = int.from_bytes(data[at : at + 3], "little")
        forged = (header & 0b111) | (0x1FFFFF << 3)
        return data[:at] + forged.to_bytes(3, "little") + data[at + 3 :]

    def block_type_reserved(data: bytes) -> bytes:
        at = _zstd_header_size(data)
        return _set_byte(data, at, data[at] | 0b110)

    def second_frame(data: bytes) -> bytes:
        import zstandard

        return data + zstandard.ZstdCompressor().compress(b"bomb" * 50_000)

    return {
        "magic-broken": _flip(0),
        "window-huge": window_huge,
        "block-size-huge": block_size_huge,
        "block-type-reserved": block_type_reserved,
        "second-frame-appended": second_frame,
        "body-flipped": _flip(-40),
    }


def _arrow_ipc_forgeries() -> dict[str, Forgery]:
    # An IPC stream message: 0xFFFFFFFF continuation, i32 metadata length, flatbuffer.
    return {
        "metadata-length-huge": lambda d: _put_u32(d, 4, 0x7FFFFFF0),
        "metadata-length-negative": lambda d: _put_u32(d, 4, -16),
        "metadata-length-zero": lambda d: _put_u32(d, 4, 0),
        "flatbuffer-flipped": _flip(40),
        "flatbuffer-root-offset": lambda d: _put_u32(d, 8, 0x7FFFFFF0),
        "body-flipped": _flip(-300),
    }


def _parquet_forgeries() -> dict[str, Forgery]:
    # A Parquet file ends with its footer, the i32 footer length and b"PAR1".
    return {
        "footer-length-huge": lambda d: _put_u32(d, len(d) - 8, 0x7FFFFFF0),
        "footer-length-zero": lambda d: _put_u32(d, len(d) - 8, 0),
        "footer-length-negative": lambda d: _put_u32(d, len(d) - 8, -100),
        "magic-broken": lambda d: d[:-4] + b"PARX",
        "footer-flipped": _flip(-20),
        "body-flipped": _flip(200),
    }


class _Point:
    """A small user object: pickled by the objects handler."""

    def __init__(self, x: int, label: str) -> None:
        self.x, self.label = x, label

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Point) and (other.x, other.label) == (self.x, self.label)

    __hash__ = None  # type: ignore[assignment]


def _kinds() -> dict[str, tuple[Any, Callable[[Any, Any], bool], dict[str, Forgery]]]:
    import numpy as np
    import polars as pl
    import pyarrow as pa

    array = np.arange(200_000, dtype=np.int64) % 1000
    table = pa.table({"s": [f"row-{i}" * (i % 7) for i in range(4000)], "i": list(range(4000))})
    frame = pl.DataFrame({"a": list(range(5000)), "b": [f"v{i % 13}" for i in range(5000)]})
    text = b"".join(b"line %d of a compressible payload\n" % i for i in range(8000))
    point = [_Point(i, "p" * (i % 50)) for i in range(2000)]
    return {
        "numpy-blosc2": (array, lambda a, b: bool(np.array_equal(a, b)), _blosc2_forgeries()),
        "bytes-zstd": (text, lambda a, b: a == b, _zstd_forgeries()),
        "objects-zstd": (point, lambda a, b: a == b, _zstd_forgeries()),
        "arrow-ipc": (table, lambda a, b: a.equals(b), _arrow_ipc_forgeries()),
        "polars-parquet": (frame, lambda a, b: a.equals(b), _parquet_forgeries()),
    }


def _outcome(read: Callable[[], Any], expected: Any, same: Callable[[Any, Any], bool]) -> str:
    from cacheness.storage.errors import CacheError

    try:
        value = read()
    except CacheError as exc:
        return type(exc).__name__
    except Exception as exc:  # reported to the parent, which fails the test on it
        return f"untyped:{type(exc).__name__}: {exc}"
    try:
        return "equal" if same(value, expected) else "different"
    except Exception as exc:  # comparing a damaged value blew up: as bad as a wrong one
        return f"different ({type(exc).__name__})"


def _run(store: Any, overwrite: Callable[[str, bytes], None]) -> dict[str, str]:
    """Forge every kind's stored bytes every way; return the outcome of each read."""
    from cacheness.storage import hash_bytes

    results: dict[str, str] = {}
    for kind, (value, same, forgeries) in _kinds().items():
        entry = store.put_entry(value, key=kind)
        original = store.blobs.read_bytes(entry.blob_ref)
        for name, forge in forgeries.items():
            forged = forge(original)
            overwrite(entry.blob_ref, forged)
            case = f"{kind}/{name}"
            results[f"{case}/kept"] = _outcome(lambda k=kind: store.get(k), value, same)
            store.metadata.update(kind, size=len(forged), content_hash=hash_bytes(forged))
            results[f"{case}/rehashed"] = _outcome(lambda k=kind: store.get(k), value, same)
            overwrite(entry.blob_ref, original)
            store.metadata.update(kind, size=entry.size, content_hash=entry.content_hash)
        if not same(store.get(kind), value):  # the restored original loads again
            results[f"{kind}/restored"] = "different"
    return results


def main(argv: list[str]) -> None:
    from cacheness.storage import BlobStore

    workdir = Path(argv[0])
    report: dict[str, dict[str, str]] = {}
    # signing off: these forgeries rewrite the hash too, and the point is that the
    # decoders themselves stay typed and alive (with signing on they never see the bytes)
    with BlobStore(workdir / "filesystem", inline_threshold=0, signing=False) as store:
        root = workdir / "filesystem" / "blobs"
        report["filesystem"] = _run(store, lambda ref, data: (root / ref).write_bytes(data))
    if len(argv) > 1:
        import boto3

        s3 = json.loads(argv[1])
        bucket = s3.pop("bucket")
        client = boto3.client("s3", **s3)
        with BlobStore(
            workdir / "s3",
            inline_threshold=0,
            blob_backend="s3",
            blob_options={"bucket": bucket, **s3},
            allow_unsafe_pairing=True,
            signing=False,
        ) as store:
            report["s3"] = _run(
                store, lambda ref, data: client.put_object(Bucket=bucket, Key=ref, Body=data)
            )
    sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])

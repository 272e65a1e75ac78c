"""Blob backend throughput, side by side with the plain-file baseline of this machine.

Run with ``python -m hatch run bench:python benchmarks/blob_backends.py`` (options:
``--size-mib`` for the filesystem blob, ``--s3-sizes`` in MiB, ``--skip-s3``,
``--repeat``, ``--dir`` for the scratch directory, ``--json`` to save the figures).

Measured:

* **filesystem**: streaming write (``open_write`` in 4 MiB chunks: hash, fsync, rename)
  and streaming read (``open_read``) of one large blob against a plain sequential
  ``write`` + ``fsync`` and ``read`` of a file of the same size in the same directory.
  Reads are cold for both: the file's pages are dropped with ``posix_fadvise`` first.
* **memory peak** of ``write_from_file`` with a file of that size, in a fresh process:
  the ``tracemalloc`` peak and the growth of the resident set (``ru_maxrss``).
* **s3** against a local moto server started in its own process: MB/s of streamed
  writes (spooled, then uploaded), ``write_from_file`` (hash pass + upload), streamed
  reads and ``read_to_file`` (boto3's parallel ranged download), single-part (the
  threshold above the object size) and multipart (8 MiB parts, 8 in parallel).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from cacheness.storage import BlobBackend, FilesystemBlobBackend, S3BlobBackend, hash_stream

MiB = 1 << 20
CHUNK = 4 * MiB


def drop_cache(path: Path) -> None:
    """Evict the file's pages from the page cache, so the next read hits the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed(action: Callable[[], object]) -> float:
    os.sync()  # start clean: no write-back of earlier steps lands in this measurement
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def plain_write(path: Path, size: int, chunk: bytes) -> None:
    with open(path, "wb", buffering=0) as handle:
        remaining = size
        while remaining:
            remaining -= handle.write(chunk[: min(len(chunk), remaining)])
        os.fsync(handle.fileno())


def plain_read(path: Path) -> None:
    buffer = memoryview(bytearray(CHUNK))
    with open(path, "rb", buffering=0) as handle:
        while handle.readinto(buffer):
            pass


def blob_write(blobs: FilesystemBlobBackend, name: str, size: int, chunk: bytes) -> str:
    with blobs.open_write(name) as writer:
        remaining = size
        while remaining:
            remaining -= writer.write(chunk[: min(len(chunk), remaining)])
    assert writer.info is not None
    return writer.info.ref


def blob_read(blobs: FilesystemBlobBackend, ref: str) -> None:
    buffer = memoryview(bytearray(CHUNK))
    with blobs.open_read(ref) as stream:
        while stream.readinto(buffer):
            pass


def filesystem_round(
    blobs: FilesystemBlobBackend,
    plain: Path,
    name: str,
    size: int,
    chunk: bytes,
    blob_first: bool,
) -> dict[str, float]:
    """One round: plain and blob write, then cold plain and blob read; seconds each.

    ``blob_first`` alternates the order between rounds, so neither side always pays
    for the write-back of what the other just wrote.
    """
    refs: list[str] = []
    steps: list[tuple[str, Callable[[], object]]] = [
        ("plain_write", lambda: plain_write(plain, size, chunk)),
        ("blob_write", lambda: refs.append(blob_write(blobs, name, size, chunk))),
    ]
    seconds = {key: timed(step) for key, step in (steps[::-1] if blob_first else steps)}
    (ref,) = refs
    drop_cache(plain)
    drop_cache(blobs.local_path(ref))
    reads: list[tuple[str, Callable[[], object]]] = [
        ("plain_read", lambda: plain_read(plain)),
        ("blob_read", lambda: blob_read(blobs, ref)),
    ]
    seconds.update({key: timed(step) for key, step in (reads[::-1] if blob_first else reads)})
    plain.unlink()
    blobs.delete(ref)
    return seconds


def bench_filesystem(scratch: Path, size: int, repeat: int) -> dict[str, float]:
    """Median MiB/s of each side, and the median of the per-round blob/plain ratios.

    Each round measures both sides back to back, so a per-round ratio compares them
    under the same machine load; its median is robust to load that drifts between rounds.
    """
    chunk = os.urandom(CHUNK)
    blobs = FilesystemBlobBackend(scratch / "blobs")
    rounds = [
        filesystem_round(blobs, scratch / "plain.bin", f"bench{i:04d}", size, chunk, i % 2 == 1)
        for i in range(repeat)
    ]
    figures = {
        key: size / MiB / statistics.median(round_[key] for round_ in rounds) for key in rounds[0]
    }
    for i, round_ in enumerate(rounds):
        for key, seconds in round_.items():
            figures[f"round{i}_{key}"] = size / MiB / seconds
    for op in ("write", "read"):
        ratios = [r[f"plain_{op}"] / r[f"blob_{op}"] for r in rounds]  # seconds: inverse
        figures[f"{op}_ratio"] = statistics.median(ratios)
        figures[f"{op}_ratio_min"] = min(ratios)
        figures[f"{op}_ratio_max"] = max(ratios)
    return figures


def memory_child(path: str) -> None:
    """In a fresh process: peak memory of write_from_file (printed as JSON)."""
    import tracemalloc

    blobs = FilesystemBlobBackend(Path(path).parent / "memory-blobs")
    with open("/proc/self/statm") as statm:
        baseline_rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    tracemalloc.start()
    blobs.write_from_file("from-file", path)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"traced_peak": traced_peak, "rss_growth": max_rss - baseline_rss}))


def bench_memory(scratch: Path, size: int) -> dict[str, float]:
    source = scratch / "source.bin"
    plain_write(source, size, os.urandom(CHUNK))
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(source)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    source.unlink()
    shutil.rmtree(scratch / "memory-blobs", ignore_errors=True)
    figures = json.loads(out.strip().splitlines()[-1])
    return {key: value / MiB for key, value in figures.items()}


# -- S3 against moto ------------------------------------------------------------------------


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def s3_round(blobs: S3BlobBackend, source: Path, scratch: Path, name: str) -> dict[str, float]:
    """One round of every S3 operation on the file ``source``; seconds each."""
    seconds: dict[str, float] = {}
    with open(source, "rb") as handle:
        seconds["stream_write"] = timed(lambda: _stream_from(blobs, name, handle))
    ref = blobs.ref_for(name)
    seconds["write_from_file"] = timed(lambda: blobs.write_from_file(name + "-f", source))
    seconds["stream_read"] = timed(lambda: _drain(blobs, ref))
    target = scratch / "download.bin"
    seconds["read_to_file"] = timed(lambda: blobs.read_to_file(ref, target))
    target.unlink()
    blobs.delete_many([ref, blobs.ref_for(name + "-f")])
    return seconds


def bench_s3(scratch: Path, sizes_mib: list[int], repeat: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with moto_server() as endpoint:
        options = {
            "endpoint_url": endpoint,
            "region": "us-east-1",
            "aws_access_key_id": "bench",
            "aws_secret_access_key": "bench",
            "spool_dir": scratch,
        }
        for size_mib in sizes_mib:
            size = size_mib * MiB
            source = scratch / f"s3-source-{size_mib}.bin"
            plain_write(source, size, os.urandom(CHUNK))
            modes = {"single-part": max(size + 1, 5 * MiB)}
            if size >= 8 * MiB:
                modes["multipart"] = 8 * MiB
            for mode, threshold in modes.items():
                blobs = S3BlobBackend(
                    "bench",
                    create_bucket=True,
                    multipart_threshold=threshold,
                    multipart_chunksize=8 * MiB,
                    max_concurrency=8,
                    **options,
                )
                blobs.delete(blobs.write_bytes("warm-up", b"x").ref)  # connect, check bucket
                rounds = [
                    s3_round(blobs, source, scratch, f"obj{size_mib}-{mode}-{i}")
                    for i in range(repeat)
                ]
                hash_seconds = timed(lambda path=source: _hash_file(path))
                row: dict[str, object] = {"size_mib": size_mib, "mode": mode}
                for key in rounds[0]:
                    row[key] = size / MiB / statistics.median(r[key] for r in rounds)
                row["hash_pass"] = size / MiB / hash_seconds
                rows.append(row)
                blobs.close()
            source.unlink()
    return rows


def _stream_from(blobs: BlobBackend, name: str, handle: BinaryIO) -> None:
    with blobs.open_write(name) as writer:
        while piece := handle.read(CHUNK):
            writer.write(piece)


def _drain(blobs: BlobBackend, ref: str) -> None:
    buffer = memoryview(bytearray(CHUNK))
    with blobs.open_read(ref) as stream:
        while stream.readinto(buffer):  # type: ignore[attr-defined]
            pass


def _hash_file(path: Path) -> None:
    with open(path, "rb") as handle:
        hash_stream(handle, CHUNK)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="filesystem blob size")
    parser.add_argument("--s3-sizes", default="1,64,512", help="S3 object sizes in MiB")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per figure (median)")
    parser.add_argument("--fs-repeat", type=int, default=5, help="filesystem rounds (median)")
    parser.add_argument("--skip-s3", action="store_true")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="scratch directory")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return

    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load average {load:.2f} at start")
    results: dict[str, object] = {"load_average": load}
    scratch = Path(tempfile.mkdtemp(prefix="cacheness-bench-", dir=args.dir))
    try:
        size = args.size_mib * MiB
        fs = bench_filesystem(scratch, size, args.fs_repeat)
        results["filesystem"] = fs
        print(f"\nfilesystem, {args.size_mib} MiB blob, median of {args.fs_repeat} (MiB/s)")
        print(
            "| operation | plain file | blob backend | blob / plain (median of rounds) "
            "| range |\n|---|---:|---:|---:|---|"
        )
        for op in ("write", "read"):
            print(
                f"| {op} | {fs[f'plain_{op}']:,.0f} | {fs[f'blob_{op}']:,.0f} | "
                f"{fs[f'{op}_ratio']:.0%} | {fs[f'{op}_ratio_min']:.0%} to "
                f"{fs[f'{op}_ratio_max']:.0%} |"
            )

        memory = bench_memory(scratch, size)
        results["memory_mib"] = memory
        print(
            f"\nwrite_from_file of {args.size_mib} MiB: tracemalloc peak "
            f"{memory['traced_peak']:.1f} MiB, resident set growth {memory['rss_growth']:.1f} MiB"
        )

        if not args.skip_s3:
            sizes = [int(part) for part in args.s3_sizes.split(",") if part]
            rows = bench_s3(scratch, sizes, args.repeat)
            results["s3"] = rows
            print(f"\ns3 on a local moto server (MiB/s, median of {args.repeat})")
            print(
                "| size | mode | streamed write | write_from_file | hash pass | "
                "streamed read | read_to_file |\n|---:|---|---:|---:|---:|---:|---:|"
            )
            for row in rows:
                print(
                    f"| {row['size_mib']} MiB | {row['mode']} | {row['stream_write']:,.0f} | "
                    f"{row['write_from_file']:,.0f} | {row['hash_pass']:,.0f} | "
                    f"{row['stream_read']:,.0f} | {row['read_to_file']:,.0f} |"
                )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

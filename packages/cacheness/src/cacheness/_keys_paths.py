"""Canonical form of ``pathlib.Path`` key values (private; see ``cacheness.keys``).

``path_mode="content"``: a file by the XXH3-128 of its bytes (its name and location do not
count); a directory by every file below it (symlinks followed), as sorted pairs of
``relative/posix/path`` and content hash, hashed on a thread pool when the tree is large.
``path_mode="stat"``: the absolute path with size and modification time (nanoseconds),
and for directories every file's relative path, size and mtime; nothing is read.
"""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cacheness._keys_canon import (
    M_DIR,
    M_DIR_STAT,
    M_FILE,
    M_FILE_STAT,
    KeyProblem,
    PathMode,
)
from cacheness.storage import hash_stream

__all__ = ["PARALLEL_MIN_BYTES", "PARALLEL_MIN_FILES", "canonical", "file_digest"]

PARALLEL_MIN_FILES = 64
"""A directory with at least this many files is hashed on a thread pool..."""

PARALLEL_MIN_BYTES = 16 << 20
"""...and so is one with at least two files and this many bytes in total."""

_MAX_WORKERS = 8


def file_digest(path: str) -> str:
    """Return the XXH3-128 hex digest of the file's bytes (the storage content hash)."""
    with open(path, "rb") as f:
        return hash_stream(f)


def canonical(path: Path, mode: PathMode) -> list[Any]:
    """Return the canonical tree of ``path`` under ``mode``."""
    name = os.fspath(path)
    try:
        st = os.stat(name)
    except FileNotFoundError:
        raise KeyProblem(
            FileNotFoundError,
            f"path {name!r} does not exist; Path values are hashed by "
            + ("content" if mode == "content" else "size and modification time")
            + ": create it first, pass the path as a str, or leave the argument out of "
            "the key (ignore=...)",
        ) from None
    if stat.S_ISREG(st.st_mode):
        if mode == "stat":
            return [M_FILE_STAT, os.path.abspath(name), st.st_size, st.st_mtime_ns]
        return [M_FILE, file_digest(name)]
    if stat.S_ISDIR(st.st_mode):
        files = _walk(name)
        if mode == "stat":
            out: list[Any] = [M_DIR_STAT, os.path.abspath(name)]
            for rel, _full, file_st in files:
                out += (rel, file_st.st_size, file_st.st_mtime_ns)
            return out
        digests = _digests([full for _rel, full, _st in files], [s.st_size for *_, s in files])
        out = [M_DIR]
        for (rel, _full, _st), digest in zip(files, digests, strict=True):
            out += (rel, digest)
        return out
    raise _not_regular(name)


def _not_regular(name: str) -> KeyProblem:
    return KeyProblem(
        ValueError,
        f"path {name!r} is neither a regular file nor a directory (a socket, FIFO or "
        "device cannot be hashed by content); pass it as a str or leave it out of the key",
    )


def _walk(root: str) -> list[tuple[str, str, os.stat_result]]:
    """Every regular file below ``root`` as (relative posix path, path, stat), sorted.

    Symlinks are followed; a symlink back to one of its own ancestors is an error rather
    than an endless walk, and so is a dangling link (its target cannot be hashed).
    """
    files: list[tuple[str, str, os.stat_result]] = []
    root_st = os.stat(root)
    stack: list[tuple[str, str, frozenset[tuple[int, int]]]] = [
        (root, "", frozenset({(root_st.st_dev, root_st.st_ino)}))
    ]
    while stack:
        directory, rel, ancestors = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                entry_rel = f"{rel}{entry.name}"
                try:
                    st = entry.stat()  # follows symlinks
                except FileNotFoundError:
                    raise KeyProblem(
                        FileNotFoundError,
                        f"{entry.path!r} in directory {root!r} is a dangling symlink; "
                        "remove it or pass the directory as a str",
                    ) from None
                if stat.S_ISDIR(st.st_mode):
                    ident = (st.st_dev, st.st_ino)
                    if ident in ancestors:
                        raise KeyProblem(
                            ValueError,
                            f"{entry.path!r} in directory {root!r} links back to one of its "
                            "own parent directories; a cyclic tree has no finite content",
                        )
                    stack.append((entry.path, f"{entry_rel}/", ancestors | {ident}))
                elif stat.S_ISREG(st.st_mode):
                    files.append((entry_rel, entry.path, st))
                else:
                    raise _not_regular(entry.path)
    files.sort(key=lambda item: item[0])
    return files


def _digests(paths: list[str], sizes: list[int]) -> list[str]:
    """Content digests of ``paths`` in order, on a thread pool for large trees."""
    large = len(paths) >= PARALLEL_MIN_FILES or (
        len(paths) >= 2 and sum(sizes) >= PARALLEL_MIN_BYTES
    )
    if not large:
        return [file_digest(p) for p in paths]
    workers = min(_MAX_WORKERS, len(paths), (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cacheness-keys") as pool:
        return list(pool.map(file_digest, paths))

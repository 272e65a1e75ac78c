"""Child process of the memory layer's two-process test (run as a script, never imported).

``python _memory_writer.py DIR ROUNDS``: for version 1..ROUNDS puts the version under
three keys of the cache at DIR (an int: shared by the reader's memory layer; a dict:
kept inline and decoded per hit; 20 KB of bytes: in a blob), then records the version
in ``DIR/committed`` (after ``put`` returned). Finally records ``-2``, deletes the
three keys and records ``0``.
"""

from __future__ import annotations

import os
import sys


def record(directory: str, version: int) -> None:
    temporary = os.path.join(directory, "committed.tmp")
    with open(temporary, "w", encoding="ascii") as file:
        file.write(str(version))
    os.replace(temporary, os.path.join(directory, "committed"))


def main() -> None:
    from cacheness import cacheness

    directory, rounds = sys.argv[1], int(sys.argv[2])
    with cacheness(cache_dir=directory) as cache:
        for version in range(1, rounds + 1):
            cache.put(version, item="int")
            cache.put({"version": version, "tags": ["a"]}, item="dict")
            cache.put(version.to_bytes(8, "big") + bytes(20_000), item="blob")
            record(directory, version)
        record(directory, -2)
        for item in ("int", "dict", "blob"):
            cache.invalidate(item=item)
        record(directory, 0)


if __name__ == "__main__":
    main()

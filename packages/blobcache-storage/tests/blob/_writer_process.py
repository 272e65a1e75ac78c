"""Child process for the crash tests: writes blobs until it is killed.

Usage: python _writer_process.py ROOT MODE NAME [BYTE]

* ``stream``: opens a writer for NAME, writes 64 KiB chunks, prints ``writing`` once the
  first MiB is on disk, then keeps writing slowly (never commits) until SIGKILL.
* ``overwrite``: writes NAME 40 times with BYTE-filled 256 KiB payloads.
"""

from __future__ import annotations

import sys
import time


def main(argv: list[str]) -> None:
    from cacheness.storage import FilesystemBlobBackend

    root, mode, name = argv[:3]
    blobs = FilesystemBlobBackend(root)
    if mode == "stream":
        writer = blobs.open_write(name)
        for _ in range(16):
            writer.write(b"P" * 65_536)
        writer.flush()
        sys.stdout.write("writing\n")
        sys.stdout.flush()
        while True:
            writer.write(b"P" * 65_536)
            time.sleep(0.01)
    elif mode == "overwrite":
        payload = bytes([int(argv[3])]) * 262_144
        for _ in range(40):
            blobs.write_bytes(name, payload)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])

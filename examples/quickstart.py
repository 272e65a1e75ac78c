"""Quick start: the two packages, installed side by side.

Run it with ``python -m hatch run demo`` (see the README).
"""

from __future__ import annotations

import cacheness
import cacheness.storage


def main() -> None:
    print(f"cacheness {cacheness.__version__}")
    print(f"blobcache-storage {cacheness.storage.__version__} (import cacheness.storage)")


if __name__ == "__main__":
    main()

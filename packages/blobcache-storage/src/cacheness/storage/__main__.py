"""``python -m cacheness.storage``: the ``blobcache`` command line (needs the ``cli`` extra)."""

from cacheness.storage.cli import main

raise SystemExit(main())

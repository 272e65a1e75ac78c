"""``python -m cacheness``: the ``cacheness`` command line (needs the ``cli`` extra)."""

from cacheness.cli import main

raise SystemExit(main())

"""Repository-wide pytest set-up shared by every test directory.

Hypothesis runs without per-example deadlines: speed is measured in ``benchmarks/``,
never asserted in tests, and a loaded 2-core CI machine must not turn slowness into
failures. ``HYPOTHESIS_PROFILE=thorough`` runs more examples locally.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    parent=settings.get_profile("default"),
    max_examples=1000,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

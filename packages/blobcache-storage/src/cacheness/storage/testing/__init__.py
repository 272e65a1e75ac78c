"""Test support shipped with the storage package, reusable by plugin authors.

* :mod:`cacheness.storage.testing.services`: a pytest plugin with real PostgreSQL and
  S3-over-HTTP fixtures (``-p cacheness.storage.testing.services``).

Nothing here is imported by ``import cacheness.storage``; importing it needs pytest.
"""

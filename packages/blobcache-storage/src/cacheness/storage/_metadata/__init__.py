"""Metadata backends: the queryable index (private; the public names are in ``cacheness.storage``).

``base`` (the ``MetadataBackend`` ABC: six primitives, batch methods with defaults),
``memory``, ``json``, and ``sql`` (SQLite, the default, and PostgreSQL on one schema).
Backends are created by name through the registry (``get_metadata_backend("sqlite",
path=...)``); the SQL module, and SQLAlchemy with it, is imported on first use.
"""

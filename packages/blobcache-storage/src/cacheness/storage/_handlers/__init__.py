"""Type-aware serialization handlers (private; the public names are in ``cacheness.storage``).

``base`` holds the ``Handler`` interface, ``FormatInfo`` and ``SerializationOptions``;
one module per handler (``raw``, ``plain``, ``numpy``, ``pandas``, ``arrow``, ``polars``,
``objects``). Importing this package imports none of numpy, pandas, pyarrow or polars:
each handler imports its library only when it stores or loads such an object.
"""

"""Portability of stores: archives (export, import) and migration between backends (private).

``archive`` is the file format, ``transfer`` moves entries in and out of a ``BlobStore``.
"""

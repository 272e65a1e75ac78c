"""Version of the cacheness distribution (read by hatch at build time), and
:func:`version_info`."""

__version__ = "0.1.0"


def version_info() -> dict[str, str]:
    """Return the versions of cacheness and of the storage package it runs on.

    Example:
        >>> sorted(version_info())
        ['blobcache-storage', 'cacheness']
    """
    from cacheness.storage import __version__ as storage_version

    return {"cacheness": __version__, "blobcache-storage": storage_version}

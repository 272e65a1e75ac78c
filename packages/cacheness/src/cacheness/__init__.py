__path__ = __import__("pkgutil").extend_path(__path__, __name__)
# The line above must stay first: it lets `cacheness.storage` (installed by the
# blobcache-storage distribution) be found on another sys.path entry.

__doc__ = """cacheness: a persistent cache for Python data and ML work.

Results of expensive functions are stored under keys derived from their keyword
arguments, in SQLite + local files by default, or PostgreSQL + S3 for a team.
Storage itself comes from the separately installable ``blobcache-storage``
distribution (``cacheness.storage``).

Example:
    >>> import cacheness
    >>> cacheness.__version__ == cacheness.version_info()["cacheness"]
    True
"""

from cacheness._version import __version__

__all__ = ["__version__", "version_info"]


def version_info() -> dict[str, str]:
    """Return the versions of cacheness and of the storage package it runs on.

    Example:
        >>> sorted(version_info())
        ['blobcache-storage', 'cacheness']
    """
    from cacheness.storage import __version__ as storage_version

    return {"cacheness": __version__, "blobcache-storage": storage_version}

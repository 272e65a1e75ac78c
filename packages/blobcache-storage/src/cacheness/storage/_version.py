"""Version of the blobcache-storage distribution (read by hatch at build time)."""

__version__ = "0.2.0"

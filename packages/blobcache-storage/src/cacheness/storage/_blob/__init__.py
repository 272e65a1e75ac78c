"""Blob backends: where the bytes live (private; the public names are in ``cacheness.storage``).

``base`` (the streaming ABC ``BlobBackend``, ``BlobWriter``, ``BlobInfo``), the stores
``filesystem``, ``memory`` and ``s3``, and the compositions ``tiered`` (a local cache in
front of a remote) and ``failover`` (primary + fallback). Backends are created by name
through the registry (``get_blob_backend("s3", bucket=...)``); boto3 is imported only when
an S3 backend is created.
"""

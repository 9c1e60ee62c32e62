"""Pick the blob store from ``LTI_EXCHANGE_STORAGE_URL``."""

from __future__ import annotations

from urllib.parse import unquote, urlparse

from lti_exchange.config import Settings, SettingsError
from lti_exchange.storage.base import (
    BlobCorrupted,
    BlobInfo,
    BlobNotFound,
    BlobStorage,
    BlobWriter,
    StorageUnavailable,
    StoredBlob,
    is_blob_key,
    new_blob_key,
)
from lti_exchange.storage.filesystem import FilesystemStorage

__all__ = [
    "BlobCorrupted",
    "BlobInfo",
    "BlobNotFound",
    "BlobStorage",
    "BlobWriter",
    "FilesystemStorage",
    "StorageUnavailable",
    "StoredBlob",
    "is_blob_key",
    "make_storage",
    "new_blob_key",
]


def make_storage(settings: Settings) -> BlobStorage:
    url = settings.resolved_storage_url
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return FilesystemStorage(unquote(parsed.path), settings.storage_min_free_bytes)
    if parsed.scheme == "s3":
        from lti_exchange.storage.s3 import S3Storage  # boto3 is imported only when used

        if not parsed.netloc:
            raise SettingsError(f"The storage URL {url!r} names no bucket; use s3://bucket/prefix.")
        return S3Storage(
            parsed.netloc,
            unquote(parsed.path),
            part_size=settings.s3_part_size,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
        )
    raise SettingsError(f"Unsupported storage URL {url!r}; use file:///path or s3://bucket/prefix.")

"""Pick the blob store from ``LTI_EXCHANGE_STORAGE_URL``."""

from __future__ import annotations

from urllib.parse import unquote, urlparse

from lti_exchange.config import Settings, SettingsError
from lti_exchange.storage.base import BlobStorage, BlobWriter, StoredBlob, new_blob_key
from lti_exchange.storage.filesystem import FilesystemStorage

__all__ = [
    "BlobStorage",
    "BlobWriter",
    "FilesystemStorage",
    "StoredBlob",
    "make_storage",
    "new_blob_key",
]


def make_storage(settings: Settings) -> BlobStorage:
    url = settings.resolved_storage_url
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return FilesystemStorage(unquote(parsed.path), settings.storage_min_free_bytes)
    if parsed.scheme == "s3":
        raise SettingsError(
            "S3 storage (s3://) is not available in this version yet; use a file:// storage URL."
        )
    raise SettingsError(f"Unsupported storage URL {url!r}; use file:///path.")

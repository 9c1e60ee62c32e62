"""The storage backends under test: the local directory and S3 (moto's server on loopback)."""

from __future__ import annotations

import pytest

from lti_exchange.storage import FilesystemStorage
from lti_exchange.storage.s3 import S3Storage
from tests.conftest import S3_ENV

S3_PART = 5 * 1024**2  # S3's smallest part: multipart uploads start early


@pytest.fixture(params=["filesystem", "s3"])
def storage(request, tmp_path, monkeypatch):
    """A fresh, empty store of each kind (S3: a new bucket)."""
    if request.param == "filesystem":
        return FilesystemStorage(tmp_path / "storage")
    s3_server = request.getfixturevalue("s3_server")
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    return S3Storage(
        s3_server.new_bucket(), "exchange", part_size=S3_PART, endpoint_url=s3_server.endpoint_url
    )


def pending_uploads(storage) -> int:
    """Uploads begun and neither committed nor discarded (temp files / multipart uploads)."""
    if isinstance(storage, FilesystemStorage):
        return storage.count_partial()
    return storage.pending_uploads()


@pytest.fixture
def s3(s3_server, monkeypatch) -> S3Storage:
    """A fresh S3 store (a new bucket) for what only the S3 backend does."""
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    return S3Storage(
        s3_server.new_bucket(), "exchange", part_size=S3_PART, endpoint_url=s3_server.endpoint_url
    )

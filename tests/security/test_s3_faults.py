"""S3 storage gone wrong: a wrong endpoint, a missing bucket, wrong credentials, an outage.

Each answers ``/readyz`` 503 naming the storage and the cause, refuses uploads with a clear 503
``storage_unavailable`` (never a 500) and stores nothing; after an outage mid-upload the
service recovers without a restart once S3 is back. A healthy S3 server runs the whole
release → submit → collect → feedback → download cycle.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import select
import socket
import tarfile
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests

from lti_exchange.jobs.uploads import sweep_partial_uploads
from tests.conftest import free_port, start_server, stop_server
from tests.support import NOTEBOOK, TAR, MiB, assert_error, make_tar

PART = 5 * MiB


class Course:
    """A course on ``server``: a teacher and a student (alice)."""

    def __init__(self, server, code: str) -> None:
        self.server, self.code = server, code
        self.teacher = server.issue_token("teacher", code, "Instructor")
        self.student = server.issue_token("alice", code, "Learner")

    def release(self, body: bytes, name: str = "ps1") -> requests.Response:
        path = f"courses/{self.code}/assignments/{name}/releases"
        return self.server.api("POST", path, self.teacher, data=body, headers=TAR)

    def submit(self, body: bytes) -> requests.Response:
        path = f"courses/{self.code}/assignments/ps1/submissions"
        return self.server.api("POST", path, self.student, data=body, headers=TAR)

    def rows(self) -> tuple[int, int]:
        """Releases (of ps1) and submissions the API shows."""
        assignments = self.server.api("GET", f"courses/{self.code}/assignments", self.teacher)
        submissions = self.server.api("GET", f"courses/{self.code}/submissions", self.teacher)
        assert assignments.status_code == submissions.status_code == 200
        releases = sum(1 for a in assignments.json()["assignments"] if a.get("released"))
        return releases, len(submissions.json()["submissions"])


def objects(s3_server, bucket: str) -> list[str]:
    answer = s3_server.client().list_objects_v2(Bucket=bucket)
    return [o["Key"] for o in answer.get("Contents", [])]


def pending(s3_server, bucket: str) -> int:
    return len(s3_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []))


@pytest.fixture(scope="module")
def s3_live(s3_server, database_url, tmp_path_factory):
    bucket = s3_server.new_bucket()
    env = {**s3_server.env(bucket), "LTI_EXCHANGE_S3_PART_SIZE": str(PART)}
    server = start_server(database_url, tmp_path_factory.mktemp("s3-server"), extra_env=env)
    server.bucket = bucket
    yield server
    stop_server(server)


def test_the_cycle_runs_on_s3(s3_live, s3_server, course):
    server = s3_live
    c = Course(server, course)
    ready = requests.get(server.url + "/readyz", timeout=30)
    assert ready.status_code == 200 and ready.json()["storage"] == "ok"
    release = make_tar({"p1.ipynb": NOTEBOOK, "data.bin": os.urandom(12 * MiB)})  # multipart
    assert c.release(release).status_code == 201
    submitted = c.submit(make_tar({"p1.ipynb": NOTEBOOK}))
    assert submitted.status_code == 201, submitted.text
    fetched = server.api("GET", f"courses/{course}/assignments/ps1/archive", c.student)
    assert fetched.status_code == 200 and fetched.content == release
    assert fetched.headers["X-Content-SHA256"] == hashlib.sha256(release).hexdigest()
    collected = server.api(
        "POST", f"courses/{course}/assignments/ps1/collection", c.teacher, json={}
    )
    assert collected.status_code == 200, collected.text
    with tarfile.open(fileobj=io.BytesIO(collected.content)) as tar:
        names = tar.getnames()
    assert any(name.startswith("submissions/") for name in names)
    stamp = submitted.json()["timestamp"]
    feedback = make_tar({"alice/timestamp.txt": stamp.encode(), "alice/p1.html": b"<p>ok</p>"})
    answer = server.api(
        "POST", f"courses/{course}/assignments/ps1/feedback", c.teacher, data=feedback, headers=TAR
    )
    assert answer.status_code == 201, answer.text
    got = server.api("GET", f"courses/{course}/assignments/ps1/feedback", c.student)
    assert got.status_code == 200
    assert b"<p>ok</p>" in got.content
    assert len([k for k in objects(s3_server, server.bucket) if "/_health/" not in k]) >= 3
    assert pending(s3_server, server.bucket) == 0


def broken_setups(s3_server):
    good = s3_server.env(s3_server.new_bucket())
    return {
        "wrong endpoint": (
            {**good, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"},
            "endpoint_unreachable",
            "cannot be reached",
        ),
        "missing bucket": (
            {**good, "LTI_EXCHANGE_STORAGE_URL": "s3://no-such-bucket-x/p"},
            "bucket_missing",
            "bucket does not exist",
        ),
        "wrong credentials": (
            {**good, "AWS_ACCESS_KEY_ID": "wrong"},
            "credentials_rejected",
            "refused our credentials",
        ),
    }


@pytest.mark.parametrize("setup", ["wrong endpoint", "missing bucket", "wrong credentials"])
def test_a_broken_s3_setup_is_named_and_stores_nothing(
    setup, s3_server, database_url, tmp_path, course
):
    from moto.core.authorization import enable_iam_authentication

    env, cause, words = broken_setups(s3_server)[setup]
    bucket = env["LTI_EXCHANGE_STORAGE_URL"].split("/")[2]
    before = objects(s3_server, bucket) if setup != "missing bucket" else []
    server = start_server(database_url, tmp_path, extra_env=env)
    try:
        c = Course(server, course)
        with enable_iam_authentication() if setup == "wrong credentials" else _nothing():
            ready = requests.get(server.url + "/readyz", timeout=60)
            body = assert_error(ready, 503, "not_ready", "storage", words)
            assert body["details"]["storage"] == f"error: {cause}"
            answer = c.release(make_tar({"p1.ipynb": NOTEBOOK}))
            assert_error(answer, 503, "storage_unavailable", "nothing was stored", "try again")
        assert c.rows() == (0, 0)
        if setup != "missing bucket":
            assert objects(s3_server, bucket) == before
            assert pending(s3_server, bucket) == 0
        assert "Traceback" not in server.log_path.read_text()
    finally:
        stop_server(server)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def upload_head(server, code: str, token: str, length: int) -> bytes:
    parts = urlsplit(server.url)
    lines = [
        f"POST /api/v1/courses/{code}/assignments/ps1/submissions HTTP/1.1",
        f"Host: {parts.hostname}:{parts.port}",
        f"Authorization: Bearer {token}",
        "Content-Type: application/x-tar",
        f"Content-Length: {length}",
        "Connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def parts_uploaded(s3_server, bucket: str) -> int:
    client = s3_server.client()
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return sum(
        len(client.list_parts(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"]).get("Parts", []))
        for u in uploads
    )


def test_an_outage_mid_upload_leaves_nothing_and_the_service_recovers(
    s3_live, s3_server, course, monkeypatch
):
    server = s3_live
    c = Course(server, course)
    assert c.release(make_tar({"p1.ipynb": NOTEBOOK})).status_code == 201
    rows = c.rows()
    stored = objects(s3_server, server.bucket)
    body = make_tar({"p1.ipynb": NOTEBOOK, "data.bin": os.urandom(40 * MiB)})
    address = (urlsplit(server.url).hostname, urlsplit(server.url).port)
    with socket.create_connection(address) as s:
        s.sendall(upload_head(server, course, c.student, len(body)) + body[: 7 * MiB])
        wait_for(lambda: parts_uploaded(s3_server, server.bucket) >= 1, "the first part")
        s3_server.stop()
        try:
            sender = threading.Thread(target=_send_quietly, args=(s, body[7 * MiB :]))
            sender.start()
            response = _read_response(s)
            ready = requests.get(server.url + "/readyz", timeout=60)
            assert_error(ready, 503, "not_ready", "storage", "cannot be reached")
        finally:
            s3_server.start()
        sender.join(timeout=60)
    status_line, _, text = response.partition(b"\r\n")
    assert b" 503 " in status_line, response[:500]
    assert b"storage_unavailable" in text and b"Nothing was stored" in text
    assert c.rows() == rows
    assert objects(s3_server, server.bucket) == stored
    # The abort sent during the outage failed too: the worker's partial-upload sweep aborts the
    # multipart upload once it is older than the grace period.
    assert pending(s3_server, server.bucket) == 1
    for name, value in s3_server.env(server.bucket).items():
        monkeypatch.setenv(name, value)
    assert sweep_partial_uploads(server.state()) == 0  # within LTI_EXCHANGE_PARTIAL_UPLOAD_GRACE
    assert sweep_partial_uploads(server.state(), older_than=0) == 1
    assert pending(s3_server, server.bucket) == 0
    # S3 is back: no restart needed.
    assert requests.get(server.url + "/readyz", timeout=60).status_code == 200
    answer = c.submit(make_tar({"p1.ipynb": NOTEBOOK, "data.bin": os.urandom(12 * MiB)}))
    assert answer.status_code == 201, answer.text
    assert c.rows() == (rows[0], rows[1] + 1)


def _send_quietly(s: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the server answered and closed: expected
        s.sendall(data)


def _read_response(s: socket.socket) -> bytes:
    received = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([s], [], [], 1.0)
        if not ready:
            continue
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    return received

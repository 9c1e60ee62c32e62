"""Faults an attacker (or bad luck) causes: a full disk, an unready service, killed uploads.

- A full blob storage answers 507 ``insufficient_storage`` on every upload and stores nothing;
  ``/readyz`` says the storage is full and so does ``/healthz`` (in its body: liveness stays
  200, restarting would not free space); freeing space makes uploads work again.
  The storage of ``small_disk_server`` is an 8 MiB tmpfs mounted for the test (run as root).
- A disk error (ENOSPC, EDQUOT) raised by the file system while writing becomes 507 too.
- A worker killed mid-upload leaves a ``.part``; the grade worker's sweep removes it once older
  than ``LTI_EXCHANGE_PARTIAL_UPLOAD_GRACE`` and leaves uploads in progress alone.
- ``/readyz`` is 200 on a healthy server and 503 when the schema is behind.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import requests

from lti_exchange.errors import InsufficientStorage
from lti_exchange.storage import FilesystemStorage
from lti_exchange.worker import GradeWorker
from tests.conftest import BIN, ROOT, LiveServer, start_server, stop_server
from tests.security.conftest import worker_pids
from tests.support import NOTEBOOK, TAR, MiB, assert_error, make_tar

# /readyz asks each database; the tests marked one_backend do not.
pytestmark = pytest.mark.all_backends

RESERVE = 1 * MiB
GRACE = 3600  # the default LTI_EXCHANGE_PARTIAL_UPLOAD_GRACE


# --------------------------------------------------------------------------- helpers


def mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)


def unmount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], check=True)


def free_bytes(path: Path) -> int:
    usage = os.statvfs(path)
    return usage.f_bavail * usage.f_frsize


def fill(server: LiveServer, leave: int) -> Path:
    """Take all the storage's free space but ``leave`` bytes; return the filler (delete it)."""
    filler = server.storage_dir / "filler"
    with open(filler, "wb") as fh:
        os.posix_fallocate(fh.fileno(), 0, free_bytes(server.storage_dir) - leave)
    return filler


def wait_for(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def get(server: LiveServer, path: str) -> requests.Response:
    return requests.get(server.url + path, timeout=30)


class Course:
    """One course on a server: a teacher, a student with a submission, the list API's view."""

    def __init__(self, server: LiveServer, code: str) -> None:
        self.server, self.code = server, code
        self.teacher = server.issue_token("teacher", code, "Instructor")
        self.student = server.issue_token("alice", code, "Learner")
        assert self.release("ps1", make_tar({"p1.ipynb": NOTEBOOK})).status_code == 201
        answer = self.submit(make_tar({"p1.ipynb": NOTEBOOK}))
        assert answer.status_code == 201, answer.text
        self.timestamp = answer.json()["timestamp"]

    def release(self, name: str, body: bytes) -> requests.Response:
        path = f"courses/{self.code}/assignments/{name}/releases"
        return self.server.api("POST", path, self.teacher, data=body, headers=TAR)

    def submit(self, body: bytes) -> requests.Response:
        path = f"courses/{self.code}/assignments/ps1/submissions"
        return self.server.api("POST", path, self.student, data=body, headers=TAR)

    def feedback(self) -> requests.Response:
        body = make_tar(
            {"alice/timestamp.txt": self.timestamp.encode(), "alice/p1.html": b"<p>good</p>" * 50}
        )
        path = f"courses/{self.code}/assignments/ps1/feedback"
        return self.server.api("POST", path, self.teacher, data=body, headers=TAR)

    def listing(self) -> tuple:
        """What the list API shows: assignments (with releases), submissions (with feedback)."""
        assignments = self.server.api("GET", f"courses/{self.code}/assignments", self.teacher)
        submissions = self.server.api("GET", f"courses/{self.code}/submissions", self.teacher)
        assert assignments.status_code == submissions.status_code == 200
        return assignments.json(), submissions.json()

    def stored(self) -> tuple[int, int]:
        return self.server.blob_count(), self.server.partial_count()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def small_disk_server(database_url, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("small-disk")
    storage = data_dir / "storage"
    mount_tmpfs(storage, "8m")
    try:
        server = start_server(
            database_url,
            data_dir,
            extra_env={
                "LTI_EXCHANGE_STORAGE_URL": storage.as_uri(),
                "LTI_EXCHANGE_STORAGE_MIN_FREE_BYTES": str(RESERVE),
            },
        )
        try:
            yield server
        finally:
            stop_server(server)
    finally:
        unmount(storage)


@pytest.fixture
def small(small_disk_server, course) -> Course:
    return Course(small_disk_server, course)


# --------------------------------------------------------------------------- a full disk


@pytest.mark.one_backend
def test_full_storage_refuses_uploads_with_507_and_stores_nothing(small_disk_server, small):
    server = small_disk_server
    before, stored = small.listing(), small.stored()
    filler = fill(server, leave=RESERVE // 2)
    try:
        assert free_bytes(server.storage_dir) < RESERVE
        words = ("nothing was stored", "storage is full", "try again later", "operator")
        for answer in (
            small.release("ps1", make_tar({"p1.ipynb": NOTEBOOK})),
            small.release("ps2", make_tar({"p1.ipynb": NOTEBOOK})),
            small.submit(make_tar({"p1.ipynb": NOTEBOOK})),
            small.feedback(),
        ):
            assert_error(answer, 507, "insufficient_storage", *words)
        assert small.stored() == stored
        assert small.listing() == before

        ready = assert_error(get(server, "/readyz"), 503, "not_ready", "storage is full")
        assert ready["details"] == {"database": "ok", "schema": "ok", "storage": "full"}
        # Liveness stays 200 (a restart frees no space), and says the storage is full.
        health = get(server, "/healthz")
        assert health.status_code == 200, health.text
        assert health.json()["status"] == "ok" and health.json()["storage"] == "full", health.text
    finally:
        filler.unlink()

    assert get(server, "/readyz").status_code == 200
    assert get(server, "/readyz").json()["storage"] == "ok"
    health = get(server, "/healthz")
    assert health.status_code == 200 and health.json()["storage"] == "ok", health.text
    assert small.release("ps2", make_tar({"p1.ipynb": NOTEBOOK})).status_code == 201
    assert small.submit(make_tar({"p1.ipynb": NOTEBOOK})).status_code == 201
    assert small.feedback().status_code == 201
    assert small.stored() == (stored[0] + 3, 0)


@pytest.mark.one_backend
def test_upload_that_would_eat_the_reserve_is_stopped_midway(small_disk_server, small):
    """Free space above the reserve (ready), but not enough for this upload: 507, no leftovers."""
    server = small_disk_server
    before, stored = small.listing(), small.stored()
    filler = fill(server, leave=RESERVE + 2 * MiB)
    try:
        assert get(server, "/readyz").status_code == 200
        big = make_tar({"p1.ipynb": NOTEBOOK, "data.bin": os.urandom(3 * MiB)})
        assert_error(small.release("ps1", big), 507, "insufficient_storage", "nothing was stored")
        assert small.stored() == stored
        assert small.listing() == before
        # What fits above the reserve is still accepted.
        assert small.release("ps1", make_tar({"p1.ipynb": NOTEBOOK})).status_code == 201
        assert get(server, "/readyz").status_code == 200
    finally:
        filler.unlink()


@pytest.fixture
def tiny_tmpfs(tmp_path):
    mount = tmp_path / "tiny"
    mount_tmpfs(mount, "1m")
    yield mount
    unmount(mount)


@pytest.mark.one_backend
def test_enospc_from_the_file_system_becomes_507_and_leaves_nothing(tiny_tmpfs, monkeypatch):
    """No reserve and a free-space check that says yes: the disk itself fails the write."""
    storage = FilesystemStorage(tiny_tmpfs, min_free_bytes=0)
    monkeypatch.setattr(storage, "free_bytes", lambda: 1 << 40)
    writer = storage.writer("submissions")
    with pytest.raises(InsufficientStorage) as raised:
        for _ in range(4):
            writer.write(b"x" * (512 * 1024))
        writer.commit()
    assert raised.value.status == 507
    assert raised.value.__cause__.errno == errno.ENOSPC
    writer.discard()  # what the services do next: must not raise on the closed, full file
    assert list((tiny_tmpfs / "tmp").iterdir()) == []
    assert storage.count_blobs() == 0
    # The space is back: a blob that fits is stored.
    writer = storage.writer("submissions")
    writer.write(b"y" * 1024)
    assert storage.open(writer.commit().key).read() == b"y" * 1024


@pytest.mark.one_backend
def test_quota_exceeded_at_commit_becomes_507_and_leaves_nothing(tmp_path, monkeypatch):
    """EDQUOT from fsync (the last moment a quota can bite) is a full storage too."""
    storage = FilesystemStorage(tmp_path / "storage")
    writer = storage.writer("releases")
    writer.write(b"z" * 4096)

    def over_quota(fd: int) -> None:
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(os, "fsync", over_quota)
    with pytest.raises(InsufficientStorage):
        writer.commit()
    monkeypatch.undo()
    writer.discard()
    assert storage.count_partial() == 0
    assert storage.count_blobs() == 0


@pytest.mark.one_backend
def test_reserve_is_checked_before_writing(tmp_path):
    storage = FilesystemStorage(tmp_path / "storage", min_free_bytes=1 << 60)
    writer = storage.writer("releases")
    with pytest.raises(InsufficientStorage):
        writer.write(b"a")
    assert storage.count_partial() == 0
    with pytest.raises(InsufficientStorage):
        storage.check()


# --------------------------------------------------------------------------- killed uploads


def upload_head(server: LiveServer, small: Course, length: int) -> bytes:
    parts = urlsplit(server.url)
    lines = [
        f"POST /api/v1/courses/{small.code}/assignments/ps1/submissions HTTP/1.1",
        f"Host: {parts.hostname}:{parts.port}",
        f"Authorization: Bearer {small.student}",
        "Content-Type: application/x-tar",
        f"Content-Length: {length}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def holder_of(path: Path, pids: list[int]) -> int:
    """The process that has ``path`` open."""
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in fd_dir.iterdir():
            try:
                if os.readlink(fd) == str(path):
                    return pid
            except FileNotFoundError:
                continue
    raise AssertionError(f"no worker holds {path}")


@pytest.mark.one_backend
def test_partial_upload_of_a_killed_worker_is_swept(small_disk_server, small, caplog):
    server = small_disk_server
    tmp = server.storage_dir / "tmp"
    body = make_tar({"p1.ipynb": NOTEBOOK, "data.bin": os.urandom(2 * MiB)})
    with socket.create_connection((urlsplit(server.url).hostname, urlsplit(server.url).port)) as s:
        s.sendall(upload_head(server, small, len(body)) + body[: len(body) // 2])
        wait_for(lambda: any(p.stat().st_size for p in tmp.glob("*.part")), "the upload")
        (left,) = tmp.glob("*.part")
        os.kill(holder_of(left, worker_pids(server)), signal.SIGKILL)
        s.settimeout(30)
        try:
            answer = s.recv(1024)
        except ConnectionResetError:  # the kernel resets it when unread bytes were left
            answer = b""
        assert answer == b"", "the killed worker's connection just closes"
    assert left.exists() and left.stat().st_size > 0, "kill -9 leaves the partial file"

    fresh = tmp / "0123456789abcdef0123456789abcdef.part"  # an upload in progress
    fresh.write_bytes(b"in progress")
    old = time.time() - GRACE - 60
    os.utime(left, (old, old))

    caplog.set_level(logging.INFO, logger="lti_exchange.jobs.uploads")
    jobs = GradeWorker(server.state()).jobs
    assert jobs.run_due()["sweep-partial-uploads"] == 1
    assert not left.exists()
    assert fresh.exists()
    assert "removed 1 partial upload(s)" in caplog.text
    assert "sweep-partial-uploads" not in jobs.run_due(), "the next sweep waits for the interval"

    swept = subprocess.run(
        [str(BIN / "lti-exchange"), "storage", "sweep", "--json"],
        env=server.env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    assert json.loads(swept.stdout) == {"removed": 0}
    assert fresh.exists()
    fresh.unlink()
    # The server (gunicorn replaced the worker) still takes uploads.
    wait_for(lambda: get(server, "/readyz").status_code == 200, "the server to be ready")
    assert small.submit(make_tar({"p1.ipynb": NOTEBOOK})).status_code == 201


# --------------------------------------------------------------------------- readiness


def test_readyz_on_a_healthy_server(live_server):
    answer = get(live_server, "/readyz")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ok"
    assert {body[name] for name in ("database", "schema", "storage")} == {"ok"}


@pytest.mark.one_backend
def test_readyz_when_the_schema_is_behind(tmp_path):
    from alembic import command
    from alembic.script import ScriptDirectory

    from lti_exchange import create_app
    from lti_exchange.config import load_settings
    from lti_exchange.migrate import MIGRATIONS_DIR, alembic_config, head_revision

    app = create_app(load_settings({"LTI_EXCHANGE_DATA_DIR": str(tmp_path)}))
    engine = app.extensions["lti_exchange"].engine
    try:
        client = app.test_client()
        assert client.get("/readyz").status_code == 200
        head = head_revision()
        older = ScriptDirectory(str(MIGRATIONS_DIR)).get_revision(head).down_revision
        command.stamp(alembic_config(engine), older)
        got = client.get("/readyz")
        answer = SimpleNamespace(  # what assert_error reads, from Flask's test response
            status_code=got.status_code, headers=got.headers, json=lambda: got.json, text=got.text
        )
        error = assert_error(answer, 503, "not_ready", "lti-exchange db upgrade")
        assert error["details"]["schema"] == f"at {older}, needs {head}"
        assert error["details"]["database"] == error["details"]["storage"] == "ok"
        assert client.get("/healthz").status_code == 200, "healthz does not check the schema"
    finally:
        engine.dispose()

"""A download whose connection breaks off half-way (a proxy restart, a network fault, a storage
that refused the last bytes) ends ``nbgrader fetch_assignment`` and ``nbgrader collect`` with a
message that says what happened and what to do, not a traceback (collect's streamed answer
raised ``IncompleteRead`` before), and leaves nothing half-unpacked."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.end_to_end.helpers import Role, instructor_course, no_traceback
from tests.support import (
    NOTEBOOK,
    TAR,
    LoopbackRelay,
    make_tar,
    pipe_bytes,
    release_as_teacher,
)

CUT_AFTER = 64 * 1024  # bytes of the answer that get through


class CuttingRelay(LoopbackRelay):
    """Cuts each connection off once it has passed ``CUT_AFTER`` bytes of answers (small
    answers on the same kept-alive connection, such as a listing, get through; a download
    does not)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.cut = 0
        super().__init__(upstream)

    def relay(self, client: socket.socket) -> None:
        server = socket.create_connection(self.upstream)
        threading.Thread(target=pipe_bytes, args=(client, server), daemon=True).start()
        passed = 0
        with contextlib.suppress(OSError):
            while passed < CUT_AFTER and (data := server.recv(CUT_AFTER - passed)):
                client.sendall(data)
                passed += len(data)
        with self.lock:
            self.cut += passed >= CUT_AFTER
        self.end(client)
        self.end(server)


@pytest.fixture
def relay(live_server) -> Iterator[CuttingRelay]:
    relay = CuttingRelay.before(live_server)
    yield relay
    relay.close()


def test_a_release_download_cut_off_half_way_says_so(live_server, relay, tmp_path: Path):
    course = f"cut{uuid.uuid4().hex[:6]}"
    files = {"ps1.ipynb": NOTEBOOK, "data.bin": os.urandom(1024 * 1024)}
    release_as_teacher(live_server, course, "ps1", files)
    ann = Role("ann", tmp_path, relay.url)
    ann.login(relay.url, live_server.issue_token("ann", course))

    done = ann.nbgrader("fetch_assignment", "ps1", "--course", course, expect=1)

    assert relay.cut >= 1
    no_traceback(done)
    [said] = done.lines("The download broke off after")
    got, announced = map(int, re.search(r"after (\d+) of (\d+) bytes", said).groups())
    assert 0 < got < CUT_AFTER < 1024 * 1024 < announced  # the answer's head came first
    assert "Fetch again; if it keeps happening, tell your instructor." in said
    assert list(ann.work.iterdir()) == []  # nothing half-fetched is left, no staging folder


def test_a_collection_cut_off_half_way_says_so(live_server, relay, tmp_path: Path):
    course = f"cutc{uuid.uuid4().hex[:6]}"
    release_as_teacher(live_server, course, "ps1", {"ps1.ipynb": NOTEBOOK})
    for student in ("ann", "ben"):
        body = make_tar({"ps1.ipynb": NOTEBOOK, "data.bin": os.urandom(512 * 1024)})
        path = f"courses/{course}/assignments/ps1/submissions"
        token = live_server.issue_token(student, course)
        assert live_server.api("POST", path, token, data=body, headers=TAR).status_code == 201
    teacher, root = instructor_course(live_server, tmp_path, course, relay.url)

    done = teacher.nbgrader("collect", "ps1", cwd=root, expect=1)

    assert relay.cut >= 1
    no_traceback(done)
    [said] = done.lines("Collecting failed: the download broke off after")
    assert "Run the command again" in said
    submitted = root / "submitted"
    assert not submitted.exists() or not [p for p in submitted.iterdir() if p.name != "ann"]

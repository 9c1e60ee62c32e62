"""A download whose connection breaks off half-way (a proxy restart, a network fault, a storage
that refused the last bytes): ``nbgrader fetch_assignment``, ``fetch_feedback`` and ``collect``
ask again after ``c.Exchange.download_retry_delays`` (collect only for what it does not hold
yet, telling the exchange what it already received), and when every try breaks off they end
with a message that says what happened and what to do, not a traceback, and leave nothing
half-unpacked."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
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

CUT_AFTER = 64 * 1024  # bytes of a connection's answers that get through before a cut
QUICK = "c.Exchange.download_retry_delays = [0.01, 0.01]\n"  # three tries, hardly a wait


class CuttingRelay(LoopbackRelay):
    """Cuts a connection off once it has passed ``cut_after`` bytes of answers (small answers
    on the same kept-alive connection, such as a listing, get through; a download does not),
    the first ``cuts`` times (every time when None); ``passed`` holds each connection's
    answer bytes, in the order the connections ended (``settle`` waits for them all)."""

    def __init__(
        self, upstream: tuple[str, int], cut_after: int = CUT_AFTER, cuts: int | None = None
    ) -> None:
        self.cut_after, self.cuts_left = cut_after, cuts
        self.cut = self.open = 0
        self.passed: list[int] = []
        super().__init__(upstream)

    def relay(self, client: socket.socket) -> None:
        with self.lock:
            self.open += 1
        server = socket.create_connection(self.upstream)
        threading.Thread(target=pipe_bytes, args=(client, server), daemon=True).start()
        passed, cutting = 0, True
        with contextlib.suppress(OSError):
            while data := server.recv(65536):
                if cutting and passed + len(data) >= self.cut_after:
                    cutting = self._take_a_cut()
                    if cutting:
                        client.sendall(data[: self.cut_after - passed])
                        passed = self.cut_after
                        break
                client.sendall(data)
                passed += len(data)
        with self.lock:
            self.passed.append(passed)
            self.open -= 1
        self.end(client)
        self.end(server)

    def settle(self) -> None:
        """Wait until every connection relayed so far has ended and been counted."""
        for _ in range(200):
            with self.lock:
                if self.open == 0:
                    return
            time.sleep(0.02)
        raise AssertionError(f"{self.open} relayed connection(s) did not end")

    def _take_a_cut(self) -> bool:
        with self.lock:
            if self.cuts_left == 0:
                return False
            if self.cuts_left is not None:
                self.cuts_left -= 1
            self.cut += 1
            return True


@pytest.fixture
def relays(live_server) -> Iterator[list[CuttingRelay]]:
    made: list[CuttingRelay] = []
    yield made
    for relay in made:
        relay.close()


def quick_retries(role: Role) -> None:
    with open(role.home / ".jupyter" / "nbgrader_config.py", "a") as config:
        config.write(QUICK)


def submit_as(live_server, course: str, student: str, size: int) -> int:
    body = make_tar({"ps1.ipynb": NOTEBOOK, "data.bin": os.urandom(size)})
    path = f"courses/{course}/assignments/ps1/submissions"
    token = live_server.issue_token(student, course)
    answer = live_server.api("POST", path, token, data=body, headers=TAR)
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def student_with_release(live_server, relays, tmp_path: Path, **cutting) -> tuple[Role, str, bytes]:
    """``ann``, connected through a cutting relay to a course with a 1 MiB release ``ps1``."""
    relays.append(relay := CuttingRelay.before(live_server, **cutting))
    course = f"cut{uuid.uuid4().hex[:6]}"
    data = os.urandom(1024 * 1024)
    release_as_teacher(live_server, course, "ps1", {"ps1.ipynb": NOTEBOOK, "data.bin": data})
    ann = Role("ann", tmp_path, relay.url)
    ann.login(relay.url, live_server.issue_token("ann", course))
    return ann, course, data


def test_a_release_download_cut_off_once_is_fetched_again(live_server, relays, tmp_path: Path):
    ann, course, data = student_with_release(live_server, relays, tmp_path, cuts=1)

    done = ann.nbgrader("fetch_assignment", "ps1", "--course", course)  # the default waits

    assert relays[0].cut == 1
    no_traceback(done)
    [said] = done.lines("Fetching the assignment: the download broke off after")
    got, announced = map(int, re.search(r"after (\d+) of (\d+) bytes", said).groups())
    assert 0 < got < CUT_AFTER < 1024 * 1024 < announced  # the answer's head came first
    assert said.endswith("Trying again in 1 s (attempt 2 of 4).")
    assert (ann.work / "ps1" / "data.bin").read_bytes() == data
    assert sorted(p.name for p in ann.work.iterdir()) == ["ps1"]  # no staging folder left


def test_a_release_download_cut_off_every_time_says_so(live_server, relays, tmp_path: Path):
    ann, course, _data = student_with_release(live_server, relays, tmp_path)
    quick_retries(ann)

    done = ann.nbgrader("fetch_assignment", "ps1", "--course", course, expect=1)

    assert relays[0].cut == 3
    no_traceback(done)
    assert len(done.lines("Trying again in 0.01 s")) == 2
    [said] = done.lines("Fetching the assignment failed: the download broke off after")
    assert re.search(r"after \d+ of \d+ bytes \(the connection was cut\)", said)
    assert "Run the command again; if it keeps happening, tell your instructor" in said
    assert list(ann.work.iterdir()) == []  # nothing half-fetched is left, no staging folder


def test_a_collection_cut_off_asks_again_for_the_rest_only(live_server, relays, tmp_path: Path):
    """The cut comes after ann's submission (the first) arrived whole: the second try asks for
    ben's alone, and both are recorded as collected."""
    course = f"cutc{uuid.uuid4().hex[:6]}"
    release_as_teacher(live_server, course, "ps1", {"ps1.ipynb": NOTEBOOK})
    ids = {
        student: submit_as(live_server, course, student, 512 * 1024) for student in ("ann", "ben")
    }
    relays.append(relay := CuttingRelay.before(live_server, cut_after=800 * 1024, cuts=1))
    teacher, root = instructor_course(live_server, tmp_path, course, relay.url)
    quick_retries(teacher)

    done = teacher.nbgrader("collect", "ps1", cwd=root)

    assert relay.cut == 1
    no_traceback(done)
    assert done.lines("Collecting: the download broke off after")
    assert done.lines("Collected 2 submission(s)")
    for student in ("ann", "ben"):
        assert (root / "submitted" / student / "ps1" / "data.bin").stat().st_size == 512 * 1024
    relay.settle()
    # one connection was cut at 800 KiB; the second try brought ben's 512 KiB, not both again
    assert [n for n in relay.passed if n >= 700 * 1024] == [800 * 1024]
    token = live_server.issue_token("teacher", course, "Instructor")
    listed = live_server.api("GET", f"courses/{course}/submissions", token).json()["submissions"]
    assert {s["id"] for s in listed if s["collected_at"]} == set(ids.values())


def test_a_collection_cut_off_every_time_says_so(live_server, relays, tmp_path: Path):
    course = f"cutc{uuid.uuid4().hex[:6]}"
    release_as_teacher(live_server, course, "ps1", {"ps1.ipynb": NOTEBOOK})
    for student in ("ann", "ben"):
        submit_as(live_server, course, student, 512 * 1024)
    relays.append(relay := CuttingRelay.before(live_server))
    teacher, root = instructor_course(live_server, tmp_path, course, relay.url)
    quick_retries(teacher)

    done = teacher.nbgrader("collect", "ps1", cwd=root, expect=1)

    assert relay.cut == 3
    no_traceback(done)
    [said] = done.lines("Collecting failed: the download broke off after")
    assert "Run the command again" in said
    submitted = root / "submitted"
    assert not submitted.exists() or not list(submitted.iterdir())
    # (whether the service marked them collected depends on whether its last bytes fitted in
    # the sockets' buffers before the relay cut: "sent" is all a server can know)


@pytest.mark.parametrize("cuts", [1, None])
def test_feedback_cut_off_is_fetched_again_or_leaves_no_part(
    live_server, relays, tmp_path: Path, cuts: int | None
):
    course = f"cutf{uuid.uuid4().hex[:6]}"
    release_as_teacher(live_server, course, "ps1", {"ps1.ipynb": NOTEBOOK})
    ann_id = submit_as(live_server, course, "ann", 1000)
    token = live_server.issue_token("ann", course)
    stamp = next(
        s["timestamp"]
        for s in live_server.api("GET", f"courses/{course}/submissions", token).json()[
            "submissions"
        ]
        if s["id"] == ann_id
    )
    pages = {"ps1.html": os.urandom(300 * 1024), "ps2.html": os.urandom(300 * 1024)}
    feedback = make_tar(
        {"ann/timestamp.txt": stamp.encode(), **{f"ann/{k}": v for k, v in pages.items()}}
    )
    teacher = live_server.issue_token("teacher", course, "Instructor")
    path = f"courses/{course}/assignments/ps1/feedback"
    answer = live_server.api("POST", path, teacher, data=feedback, headers=TAR)
    assert answer.status_code == 201, answer.text
    relays.append(relay := CuttingRelay.before(live_server, cut_after=400 * 1024, cuts=cuts))
    ann = Role("ann", tmp_path, relay.url)
    ann.login(relay.url, token)
    quick_retries(ann)
    folder = ann.work / "ps1" / "feedback" / stamp
    folder.mkdir(parents=True)
    (folder / "ps2.html").write_bytes(b"<p>fetched before</p>")  # an earlier fetch's copy

    done = ann.nbgrader("fetch_feedback", "ps1", "--course", course, expect=0 if cuts else 1)

    no_traceback(done)
    if cuts:
        assert relay.cut == 1
        assert done.lines("Fetching feedback: the download broke off after")
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == pages
    else:
        assert relay.cut == 3
        assert done.lines("Fetching feedback failed: the download broke off after")
        # ps1.html arrived whole and checked; the half of ps2.html that came replaced nothing
        # (the earlier copy stays) and left no part file
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == {
            "ps1.html": pages["ps1.html"],
            "ps2.html": b"<p>fetched before</p>",
        }

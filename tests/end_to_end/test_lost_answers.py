"""``nbgrader submit`` when the answer to a stored submission is lost on the way back (a proxy
timeout, a dropped connection, a failover at the moment of the commit): the plugin sends the
upload again with the same ``Idempotency-Key``, the service answers with the submission it
already stored, and the student ends with one submission whose time is the first attempt's.

Between nbgrader and the real service sits a TCP relay that, once, lets a submission reach the
service and then closes the student's connection instead of passing the answer on."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.end_to_end.helpers import Role, no_traceback, submitted_lines
from tests.support import NOTEBOOK, LoopbackRelay, pipe_bytes, release_as_teacher


class AnswerLosingRelay(LoopbackRelay):
    """The first connection that starts with a submission (``POST …/submissions``) gets its
    request through and loses its answer; the others are relayed as they are."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.lost = 0
        super().__init__(upstream)

    def relay(self, client: socket.socket) -> None:
        server = socket.create_connection(self.upstream)
        first = client.recv(65536)
        with self.lock:
            lose = self.lost == 0 and first.startswith(b"POST ") and b"/submissions " in first
            self.lost += lose
        server.sendall(first)
        threading.Thread(target=pipe_bytes, args=(client, server), daemon=True).start()
        if lose:
            server.recv(1)  # the service answered: the submission is stored
            self.end(client)  # ... and the student never hears it
            self.end(server)
            return
        pipe_bytes(server, client)


@pytest.fixture
def relay(live_server) -> Iterator[AnswerLosingRelay]:
    relay = AnswerLosingRelay.before(live_server)
    yield relay
    relay.close()


def test_a_submission_whose_answer_was_lost_is_stored_once(live_server, relay, tmp_path: Path):
    course = f"lost{uuid.uuid4().hex[:6]}"
    release_as_teacher(live_server, course, "ps1", {"problem1.ipynb": NOTEBOOK})
    dana = Role("dana", tmp_path, relay.url)
    dana.login(relay.url, live_server.issue_token("dana", course))
    dana.nbgrader("fetch_assignment", "ps1", "--course", course)
    (dana.work / "ps1" / "answers.txt").write_text("42\n")

    done = dana.nbgrader("submit", "ps1", "--course", course)

    assert relay.lost == 1
    no_traceback(done)
    assert done.lines("no answer came from the exchange")
    assert done.lines("Sending it again in 1 s (attempt 2 of 6)")
    teacher = live_server.issue_token("teacher", course, "Instructor")
    stored = live_server.api("GET", f"courses/{course}/submissions", teacher).json()
    assert [s["student_id"] for s in stored["submissions"]] == ["dana"]
    timestamp = stored["submissions"][0]["timestamp"]
    assert done.lines(f"Submitted as: {course} ps1 {timestamp}")
    cached = dana.nbgrader("list", "--cached", "--course", course)
    assert len(submitted_lines(cached, course, "dana", "ps1")) == 1
    assert f"dana ps1 {timestamp} " in submitted_lines(cached, course, "dana", "ps1")[0]

"""The whole nbgrader cycle through the real service and the real ``nbgrader`` command line.

Instructor, three students (alice and carol on the CLI, bob through the Jupyter server's
assignment_list handlers as the Lab UI does) each have their own HOME; nothing is shared but the
service. A second course runs at the same time. Files on disk and ``nbgrader list`` output are
checked at every step.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from nbgrader.utils import parse_utc

from tests.conftest import free_port
from tests.end_to_end.helpers import BIN, JupyterServer, Role, no_traceback, submitted_lines


def latest(group_listing: dict, student: str, assignment: str = "ps1") -> dict:
    groups = [
        g
        for g in group_listing["value"]
        if g.get("student_id") == student
        and g["assignment_id"] == assignment
        and g["status"] == "submitted"
    ]
    assert len(groups) == 1, group_listing
    return max(groups[0]["submissions"], key=lambda s: parse_utc(s["timestamp"]))


def test_full_cycle(live_server, tmp_path):
    course = f"course{uuid.uuid4().hex[:6]}"
    course2 = f"other{uuid.uuid4().hex[:6]}"
    url = live_server.url
    teacher = Role("teacher", tmp_path, url)
    alice = Role("alice", tmp_path, url)
    bob = Role("bob", tmp_path, url)
    carol = Role("carol", tmp_path, url)
    teacher.login(url, live_server.issue_token("teacher", course, "Instructor"))
    for student, lms in ((alice, "lms-1"), (bob, "lms-2"), (carol, "lms-3")):
        token = live_server.issue_token(
            student.name,
            course,
            "Learner",
            name=f"{student.name.title()} Example",
            email=f"{student.name}@example.org",
            lms_user_id=lms,
        )
        student.login(url, token)

    # --- instructor: create, generate and release ------------------------------------------
    root = teacher.quickstart(course)
    teacher.nbgrader(
        "db", "assignment", "add", "ps1", "--duedate=2099-01-01 00:00:00 UTC", cwd=root
    )
    teacher.nbgrader("generate_assignment", "ps1", cwd=root)
    released = teacher.nbgrader("release_assignment", "ps1", cwd=root)
    assert "version 1" in released.output
    again = teacher.nbgrader("release_assignment", "ps1", cwd=root)  # a new version, no error
    assert "version 2" in again.output
    assert teacher.nbgrader("list", cwd=root).lines(f"{course} ps1")

    # --- alice (CLI): list, fetch, fetch again fails, submit twice ---------------------------
    assert alice.nbgrader("list", "--course", course).lines(f"{course} ps1")
    alice.nbgrader("fetch_assignment", "ps1", "--course", course)
    assert (alice.work / "ps1" / "problem1.ipynb").is_file()
    assert (alice.work / "ps1" / "jupyter.png").is_file()
    twice = alice.nbgrader("fetch_assignment", "ps1", "--course", course, expect=1)
    assert "already have a copy" in twice.output
    no_traceback(twice)
    assert alice.nbgrader("list", "--course", course).lines(f"{course} ps1 (already downloaded)")
    (alice.work / "ps1" / "problem2.ipynb").unlink()
    (alice.work / "ps1" / "problem1.ipynb").write_text("{}")  # her own work: must be kept
    replaced = alice.nbgrader("fetch_assignment", "ps1", "--course", course, "--replace")
    assert replaced.lines("Replacing missing file")
    assert (alice.work / "ps1" / "problem2.ipynb").is_file()
    assert (alice.work / "ps1" / "problem1.ipynb").read_text() == "{}"
    alice.nbgrader("fetch_assignment", "ps1", "--course", "nonexistent", expect=1)
    (alice.work / "ps1" / "problem1.ipynb").unlink()
    alice.nbgrader("fetch_assignment", "ps1", "--course", course, "--replace")
    fetched = [i for i in alice.ui_listing(course)["value"] if i["status"] == "fetched"]
    assert [nb["path"] for nb in fetched[0]["notebooks"]] == [
        "ps1/problem1.ipynb",
        "ps1/problem2.ipynb",
    ]
    alice.nbgrader("submit", "ps1", "--course", course)
    alice.nbgrader("submit", "ps1", "--course", course)
    cached = alice.nbgrader("list", "--cached", "--course", course)
    assert len(submitted_lines(cached, course, "alice", "ps1")) == 2
    assert all(
        "(no feedback available)" in line
        for line in submitted_lines(cached, course, "alice", "ps1")
    )

    # --- carol (CLI): one submission --------------------------------------------------------
    carol.nbgrader("fetch_assignment", "ps1", "--course", course)
    carol.nbgrader("submit", "ps1", "--course", course)

    # --- bob through the Jupyter server's assignment_list handlers ---------------------------
    server = JupyterServer(bob, free_port())
    try:
        courses = server.get("/courses").json()
        assert courses["success"] and course in courses["value"]
        listing = server.get("/assignments", course_id=course).json()
        assert [(i["assignment_id"], i["status"]) for i in listing["value"]] == [
            ("ps1", "released")
        ]
        server.post("/assignments/fetch", {"course_id": course, "assignment_id": "ps1"})
        assert (bob.work / "ps1" / "problem1.ipynb").is_file()
        answer = server.post("/assignments/submit", {"course_id": course, "assignment_id": "ps1"})
        groups = [g for g in answer.json()["value"] if g.get("student_id") == "bob"]
        assert answer.json()["success"] and len(groups) == 1
        assert len(groups[0]["submissions"]) == 1

        # --- instructor: inbound list, collect, collect --update ------------------------------
        inbound = teacher.nbgrader("list", "--inbound", cwd=root)
        assert len(submitted_lines(inbound, course, "alice", "ps1")) == 2
        assert len(submitted_lines(inbound, course, "bob", "ps1")) == 1
        assert len(submitted_lines(inbound, course, "carol", "ps1")) == 1
        collected = teacher.nbgrader("collect", "ps1", cwd=root)
        assert collected.lines("Collecting submission: alice ps1")
        for student in ("alice", "bob", "carol"):
            assert (root / "submitted" / student / "ps1" / "timestamp.txt").is_file()
        assert (root / "submitted" / "alice" / "ps1" / "problem1.ipynb").is_file()
        assert (
            len((root / "submitted" / "alice" / "ps1" / "submission_secret.txt").read_text()) == 128
        )
        alice_latest = latest(alice.ui_listing(course), "alice")
        stamp = (root / "submitted" / "alice" / "ps1" / "timestamp.txt").read_text()
        assert parse_utc(stamp) == parse_utc(alice_latest["timestamp"])
        assert teacher.nbgrader("collect", "ps1", cwd=root).lines(
            "Submission already exists, use --update to update: alice ps1"
        )
        assert teacher.nbgrader("collect", "--update", "ps1", cwd=root).lines(
            "No newer submission to collect: alice ps1"
        )
        alice.nbgrader("submit", "ps1", "--course", course)
        assert teacher.nbgrader("collect", "ps1", cwd=root).lines("already exists")
        assert teacher.nbgrader("collect", "--update", "ps1", cwd=root).lines(
            "Updating submission: alice ps1"
        )
        alice_latest = latest(alice.ui_listing(course), "alice")
        stamp = (root / "submitted" / "alice" / "ps1" / "timestamp.txt").read_text()
        assert stamp == alice_latest["timestamp"]

        # --- grade and release feedback ------------------------------------------------------
        teacher.nbgrader("autograde", "ps1", cwd=root)
        assert (root / "autograded" / "alice" / "ps1" / "problem1.ipynb").is_file()
        teacher.nbgrader("generate_feedback", "ps1", cwd=root)
        assert (root / "feedback" / "bob" / "ps1" / "problem1.html").is_file()
        teacher.nbgrader("release_feedback", "ps1", cwd=root)

        cached = alice.nbgrader("list", "--cached", "--course", course)
        lines = submitted_lines(cached, course, "alice", "ps1")
        assert len(lines) == 3
        assert sum("(feedback ready to be fetched)" in line for line in lines) == 1
        assert alice_latest["timestamp"] in next(
            line for line in lines if "(feedback ready to be fetched)" in line
        )
        entry = latest(alice.ui_listing(course), "alice")
        assert entry["has_exchange_feedback"] and not entry["has_local_feedback"]
        alice.nbgrader("fetch_feedback", "ps1", "--course", course)
        feedback_dir = alice.work / "ps1" / "feedback" / alice_latest["timestamp"]
        assert (feedback_dir / "problem1.html").is_file()
        entry = latest(alice.ui_listing(course), "alice")
        assert entry["has_local_feedback"] and not entry["feedback_updated"]
        assert entry["local_feedback_path"] == f"ps1/feedback/{alice_latest['timestamp']}"
        cached = alice.nbgrader("list", "--cached", "--course", course)
        assert any(
            "(feedback already fetched)" in line
            for line in submitted_lines(cached, course, "alice", "ps1")
        )

        listing = server.get("/assignments", course_id=course).json()
        assert latest(listing, "bob")["has_exchange_feedback"]
        answer = server.post(
            "/assignments/fetch_feedback", {"course_id": course, "assignment_id": "ps1"}
        ).json()
        assert list((bob.work / "ps1" / "feedback").glob("*/problem1.html"))
        bob_groups = [g for g in answer["value"] if g.get("student_id") == "bob"]
        assert all(s["has_local_feedback"] for s in bob_groups[0]["submissions"])
    finally:
        server.stop()

    # --- re-grade one student: feedback_updated, fetched again ------------------------------
    html = root / "feedback" / "alice" / "ps1" / "problem1.html"
    html.write_text(html.read_text() + "\n<!-- regraded: see the comment on problem 1 -->\n")
    teacher.nbgrader("release_feedback", "--student", "alice", "ps1", cwd=root)
    entry = latest(alice.ui_listing(course), "alice")
    assert entry["feedback_updated"]
    notebooks = {nb["notebook_id"]: nb["feedback_updated"] for nb in entry["notebooks"]}
    assert notebooks == {"problem1": True, "problem2": False}
    cached = alice.nbgrader("list", "--cached", "--course", course)
    assert any(
        "(feedback ready to be fetched)" in line
        for line in submitted_lines(cached, course, "alice", "ps1")
    )
    alice.nbgrader("fetch_feedback", "ps1", "--course", course)
    assert "regraded" in (feedback_dir / "problem1.html").read_text()
    assert not latest(alice.ui_listing(course), "alice")["feedback_updated"]

    # --- a second course at the same time: alice holds tokens for both ----------------------
    teacher2 = Role("teacher2", tmp_path, url)
    teacher2.login(url, live_server.issue_token("teacher2", course2, "Instructor"))
    alice.login(url, live_server.issue_token("alice", course2, "Learner"))
    root2 = teacher2.quickstart(course2)
    (root2 / "source" / "ps1").rename(root2 / "source" / "hw1")
    teacher2.nbgrader("generate_assignment", "hw1", cwd=root2)
    teacher2.nbgrader("release_assignment", "hw1", cwd=root2)
    both = alice.nbgrader("list")
    assert both.lines(f"{course} ps1") and both.lines(f"{course2} hw1")
    alice.nbgrader("fetch_assignment", "hw1", "--course", course2)
    alice.nbgrader("submit", "hw1", "--course", course2)
    refused = bob.nbgrader("fetch_assignment", "hw1", "--course", course2, expect=1)
    assert "no access token for course" in refused.output
    no_traceback(refused)
    teacher2.nbgrader("collect", "hw1", cwd=root2)
    assert [p.name for p in (root2 / "submitted").iterdir()] == ["alice"]
    assert not teacher.nbgrader("list", "--inbound", cwd=root).lines("hw1")

    # --- clean-up through list: removing bob's submissions, unreleasing ps1 -----------------
    teacher.nbgrader("list", "--inbound", "--remove", "--student", "bob", cwd=root)
    inbound = teacher.nbgrader("list", "--inbound", cwd=root)
    assert not submitted_lines(inbound, course, "bob", "ps1")
    assert len(submitted_lines(inbound, course, "alice", "ps1")) == 3
    teacher.nbgrader("list", "--remove", "ps1", cwd=root)
    assert not teacher.nbgrader("list", cwd=root).lines(f"{course} ps1")
    assert not alice.nbgrader("list", "--course", course).lines(f"{course} ps1")
    refused = alice.nbgrader("submit", "ps1", "--course", course, expect=1)
    assert "not released" in refused.output
    no_traceback(refused)
    # Unreleasing keeps every submission and its feedback.
    inbound = teacher.nbgrader("list", "--inbound", cwd=root)
    assert len(submitted_lines(inbound, course, "alice", "ps1")) == 3
    assert len(submitted_lines(inbound, course, "carol", "ps1")) == 1
    cached = alice.nbgrader("list", "--cached", "--course", course)
    assert any(
        "(feedback already fetched)" in line
        for line in submitted_lines(cached, course, "alice", "ps1")
    )


def test_learner_cannot_release(live_server, tmp_path):
    """Also the smoke test of the real executables: ``lti-exchange login`` and the refused
    ``nbgrader release_assignment`` run as processes of their own."""
    course = f"course{uuid.uuid4().hex[:6]}"
    mallory = Role("mallory", tmp_path, live_server.url)
    token = live_server.issue_token("mallory", course, "Learner")
    mallory.run(str(BIN / "lti-exchange"), "login", "--url", live_server.url, "--token", token)
    root = mallory.quickstart(course)
    mallory.nbgrader("generate_assignment", "ps1", cwd=root)
    refused = mallory.run(str(BIN / "nbgrader"), "release_assignment", "ps1", cwd=root, expect=1)
    assert "needs the role Instructor or TeachingAssistant" in refused.output
    no_traceback(refused)
    assert not Path(root / "released").exists()

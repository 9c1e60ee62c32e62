"""A collection marks collected what it delivered: a submission whose archive is gone from
storage keeps its ``collected_at`` (and gets no ``collected`` event), the others are marked
with the time the manifest announced."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

from lti_exchange.models import Event, Submission
from tests.support import NOTEBOOK, TAR, make_tar, release_as_teacher

pytestmark = pytest.mark.all_backends  # UPDATE … IN and a multi-row insert, on each database


def test_only_delivered_submissions_are_marked_collected(live_server, course):
    release_as_teacher(live_server, course, "ps1", {"ps1.ipynb": NOTEBOOK})
    ids = []
    for student in ("ann", "ben", "cat"):
        answer = live_server.api(
            "POST",
            f"courses/{course}/assignments/ps1/submissions",
            live_server.issue_token(student, course),
            data=make_tar({"ps1.ipynb": NOTEBOOK, "x.bin": os.urandom(3000)}),
            headers=TAR,
        )
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
    with live_server.state().session_factory() as session:
        gone = session.get_one(Submission, ids[1]).blob_key
    (live_server.storage_dir / "blobs" / gone).unlink()
    teacher = live_server.issue_token("teacher", course, "Instructor")

    answer = live_server.api(
        "POST", f"courses/{course}/assignments/ps1/collection", teacher, json={}
    )

    assert answer.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(answer.content)) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))
        unsent = json.load(archive.extractfile("missing.json"))
    assert [u["name"] for u in unsent] == [f"submissions/{ids[1]}.tar"]
    listed = live_server.api("GET", f"courses/{course}/submissions", teacher).json()
    collected = {s["id"]: s["collected_at"] for s in listed["submissions"]}
    announced = {m["id"]: m["collected_at"] for m in manifest}
    assert collected == {ids[0]: announced[ids[0]], ids[1]: None, ids[2]: announced[ids[2]]}
    with live_server.state().session_factory() as session:
        events = (
            session.query(Event.subject_id)
            .filter(Event.kind == "collected", Event.subject_id.in_(ids))
            .all()
        )
    assert sorted(e.subject_id for e in events) == [ids[0], ids[2]]

"""``nbgrader release_assignment`` (the plugin, real nbgrader in process) sends the assignment's
total points from the nbgrader gradebook; the exchange stores them with the release."""

from __future__ import annotations

import uuid

from nbgrader.api import Gradebook

from nbgrader_plugin.release_assignment import assignment_points
from tests.end_to_end.helpers import Role


def test_release_sends_the_gradebooks_points(live_server, tmp_path):
    course = f"pts{uuid.uuid4().hex[:6]}"
    teacher = Role("teacher", tmp_path, live_server.url)
    staff = live_server.issue_token("teacher", course, "Instructor")
    teacher.login(live_server.url, staff)
    root = teacher.quickstart(course)
    db_url = f"sqlite:///{root / 'gradebook.db'}"
    assert assignment_points(db_url, course, "ps1") is None  # no gradebook yet: none created
    assert not (root / "gradebook.db").exists()

    teacher.nbgrader("generate_assignment", "ps1", cwd=root)
    teacher.nbgrader("release_assignment", "ps1", cwd=root)
    with Gradebook(db_url, course) as gb:
        points = gb.find_assignment("ps1").max_score
    assert points > 0
    listing = live_server.api("GET", f"courses/{course}/assignments", staff).json()
    [assignment] = listing["assignments"]
    assert assignment["release"]["max_score"] == points
    assert assignment_points(db_url, course, "not-generated") is None

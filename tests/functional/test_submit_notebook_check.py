"""``nbgrader submit`` compares the submitted notebooks with the release's, as nbgrader's own
exchange does: a warning naming the missing and extra notebooks (the service's 201 answer names
the release's notebooks, so no listing goes first), ``--strict`` refuses before sending anything,
and an assignment that is not released is refused with the service's words."""

from __future__ import annotations

from tests.end_to_end.helpers import Role
from tests.functional.lti.helpers import notebook
from tests.support import make_tar


def submissions(live_server, course: str, teacher: str) -> int:
    answer = live_server.api("GET", f"courses/{course}/submissions", teacher)
    assert answer.status_code == 200, answer.text
    return len(answer.json()["submissions"])


def test_missing_and_extra_notebooks_warn_strict_refuses_unreleased_is_named(
    live_server, course, tmp_path
):
    teacher = live_server.issue_token("nbcheck-teacher", course, "Instructor")
    answer = live_server.api(
        "POST",
        f"courses/{course}/assignments/ps1/releases",
        teacher,
        data=make_tar({"p1.ipynb": notebook(), "p2.ipynb": notebook()}),
        headers={"Content-Type": "application/x-tar"},
    )
    assert answer.status_code == 201, answer.text
    sam = Role("sam", tmp_path, live_server.url)
    sam.login(live_server.url, live_server.issue_token("sam", course))
    folder = sam.work / "ps1"
    folder.mkdir()
    (folder / "p1.ipynb").write_bytes(notebook())
    (folder / "extra.ipynb").write_bytes(notebook())

    warned = sam.nbgrader("submit", "ps1", "--course", course)
    assert "Possible missing notebooks and/or extra notebooks" in warned.output, warned.output
    assert "p2.ipynb: MISSING" in warned.output and "extra.ipynb: EXTRA" in warned.output
    assert submissions(live_server, course, teacher) == 1

    refused = sam.nbgrader("submit", "ps1", "--course", course, "--strict", expect=1)
    assert "There are missing notebooks" in refused.output, refused.output
    assert submissions(live_server, course, teacher) == 1  # nothing was sent

    (folder / "p2.ipynb").write_bytes(notebook())
    complete = sam.nbgrader("submit", "ps1", "--course", course, "--strict")
    assert "MISSING" not in complete.output, complete.output
    assert submissions(live_server, course, teacher) == 2

    (sam.work / "ps9").mkdir()
    unknown = sam.nbgrader("submit", "ps9", "--course", course, expect=1)
    assert "Assignment ps9 is not released in course" in unknown.output, unknown.output
    assert "No assignment 'ps9'" in unknown.output  # the service's words, with the request id
    assert "Traceback" not in unknown.output
    assert submissions(live_server, course, teacher) == 2

"""End to end: LTI launches → the nbgrader cycle → autograde → ``nbgrader export`` with the
LtiGradeExporter → the LMS holds exactly the gradebook's scores, one line item per assignment
(the tool's own, or the column the LMS created from a deep link: coupled grading)."""

from __future__ import annotations

import csv
import uuid

import requests

from tests.end_to_end.helpers import Role
from tests.functional.lti.conftest import lti_exchange
from tests.functional.lti.helpers import launched
from tests.functional.lti.test_deep_linking import deep_link_launch, respond
from tests.functional.lti.test_grades import drain
from tests.lms.platform import (
    CLAIM_AGS,
    CLAIM_CUSTOM,
    INSTRUCTOR,
    LmsContext,
    LmsUser,
    SimulatedPlatform,
)


def test_gradebook_scores_reach_the_lms(live_server, platform, tmp_path):
    context = LmsContext.make()
    teacher_launch = launched(
        platform.launch(requests.Session(), roles=[INSTRUCTOR], context=context), "Instructor"
    )
    course = teacher_launch["course_id"]
    teacher = Role("teacher", tmp_path, live_server.url)
    teacher.login_pair(live_server.url, teacher_launch)
    students = []
    for first in ("Ann", "Ben", "Cal"):
        user = LmsUser.make(first, "Example")
        body = launched(platform.launch(requests.Session(), user=user, context=context))
        role = Role(body["username"], tmp_path, live_server.url)
        role.login_pair(live_server.url, body)
        students.append((user, body, role))

    root = teacher.quickstart(course)
    teacher.nbgrader("generate_assignment", "ps1", cwd=root)
    teacher.nbgrader("release_assignment", "ps1", cwd=root)
    for _user, _body, role in students:
        role.nbgrader("fetch_assignment", "ps1", "--course", course)
        role.nbgrader("submit", "ps1", "--course", course)
    roster_only = LmsUser.make("Rosa", "Roster")
    platform.set_roster(context, [roster_only])
    lti_exchange(live_server, "roster", "sync", "--course", course, "--org", str(platform.org_id))
    teacher.nbgrader("collect", "ps1", cwd=root)
    teacher.nbgrader("autograde", "ps1", cwd=root)
    exported = teacher.nbgrader(
        "export",
        "--exporter=nbgrader_plugin.LtiGradeExporter",
        "--LtiGradeExporter.include_ungraded=True",
        "--LtiGradeExporter.import_roster=True",
        cwd=root,
    )
    assert "queued for the LMS" in exported.output, exported.output
    assert "student(s) of the LMS roster into the gradebook" in exported.output
    listed = teacher.nbgrader("db", "student", "list", cwd=root).output
    assert "Roster" in listed and roster_only.sub in listed, listed
    teacher.nbgrader("export", "--to", "grades.csv", cwd=root)
    with open(root / "grades.csv") as fh:
        gradebook = {row["student_id"]: row for row in csv.DictReader(fh)}
    assert drain(live_server)["sent"] == 3

    items = platform.lineitems(context)
    assert [item["resourceId"] for item in items] == ["ps1"]
    scores = {user: body for (_item, user), body in platform.scores(context).items()}
    assert len(scores) == 3
    for user, body, _role in students:
        row = gradebook[body["username"]]
        assert scores[user.sub]["scoreGiven"] == float(row["score"])
        assert scores[user.sub]["scoreMaximum"] == float(row["max_score"])

    again = teacher.nbgrader(
        "export",
        "--exporter=nbgrader_plugin.LtiGradeExporter",
        "--LtiGradeExporter.include_ungraded=True",
        cwd=root,
    )
    assert "0 queued for the LMS, 3 unchanged" in again.output
    assert "sent 3" in again.output


def test_a_deep_linked_assignment_fills_the_column_the_lms_created(live_server, platform, tmp_path):
    """Deep-link ps1 with a maximum score → the LMS creates the column → students launch that
    link → the nbgrader cycle → export: the scores are in that column, the only one for ps1."""
    context = LmsContext.make()
    teacher_user = LmsUser.make("Dee", "Linker")
    teacher_launch = launched(
        platform.launch(requests.Session(), user=teacher_user, roles=[INSTRUCTOR], context=context),
        "Instructor",
    )
    course = teacher_launch["course_id"]
    teacher = Role("teacher", tmp_path, live_server.url)
    teacher.login_pair(live_server.url, teacher_launch)
    root = teacher.quickstart(course)
    teacher.nbgrader("generate_assignment", "ps1", cwd=root)
    teacher.nbgrader("release_assignment", "ps1", cwd=root)

    settings = SimulatedPlatform.deep_linking_settings(
        platform.deep_link_return_url, data=f"dl-{uuid.uuid4().hex}"
    )
    offer = deep_link_launch(
        platform, requests.Session(), teacher_user, context, deep_linking=settings
    ).json()
    assert "ps1" in offer["assignments"], offer
    chosen = respond(live_server, offer["deep_link_token"], "ps1", 13).json()
    posted = requests.post(chosen["return_url"], data={"JWT": chosen["jwt"]}, timeout=30)
    assert posted.status_code == 200, posted.text
    link = {k: platform.deep_linked_links[-1][k] for k in ("id", "title")}
    [column] = platform.lineitems(context)
    assert column["resourceLinkId"] == link["id"]
    assert (column["resourceId"], column["tag"], column["scoreMaximum"]) == ("ps1", "nbgrader", 13)

    students = []
    for first in ("Ann", "Ben"):
        user = LmsUser.make(first, "Example")
        answer = platform.launch(requests.Session(), user=user, context=context, resource_link=link)
        body = launched(answer, "Learner")
        assert answer.lti.claims[CLAIM_AGS]["lineitem"] == column["id"]
        assert answer.lti.claims[CLAIM_CUSTOM]["nbgrader_assignment_id"] == "ps1"
        role = Role(body["username"], tmp_path, live_server.url)
        role.login_pair(live_server.url, body)
        role.nbgrader("fetch_assignment", "ps1", "--course", course)
        role.nbgrader("submit", "ps1", "--course", course)
        students.append((user, body))
    teacher.nbgrader("collect", "ps1", cwd=root)
    teacher.nbgrader("autograde", "ps1", cwd=root)
    exported = teacher.nbgrader(
        "export",
        "--exporter=nbgrader_plugin.LtiGradeExporter",
        "--LtiGradeExporter.include_ungraded=True",
        cwd=root,
    )
    assert "2 queued for the LMS" in exported.output, exported.output
    teacher.nbgrader("export", "--to", "grades.csv", cwd=root)
    with open(root / "grades.csv") as fh:
        gradebook = {row["student_id"]: row for row in csv.DictReader(fh)}
    assert drain(live_server)["sent"] == 2

    assert platform.lineitems(context) == [column]  # exactly one column for ps1
    scores = platform.scores(context)
    assert {item for item, _user in scores} == {column["id"]}
    for user, body in students:
        row = gradebook[body["username"]]
        assert scores[(column["id"], user.sub)]["scoreGiven"] == float(row["score"])
    tool_posts = [
        r
        for r in platform.service_requests
        if r.kind == "lineitems.post" and r.context_id == context.id
    ]
    assert tool_posts == []

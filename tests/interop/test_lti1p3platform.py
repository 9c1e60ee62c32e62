"""The tool against ``lti1p3platform`` (PyPI), an LTI 1.3 platform implementation we did not
write: launches, deep linking, AGS (coupled and not) and NRPS paging, through the live service,
``lti-exchange platform add``/``roster sync`` and the real grade worker.

The platform's keys, login URL, launch messages and their signatures, access tokens, the check of
our client assertions and of our deep-linking responses, and the AGS/NRPS request handling are the
library's code (``tests/interop/library_platform.py`` says which parts are glue).
"""

from __future__ import annotations

import jwt
import pytest
import requests

from tests.functional.lti.conftest import lti_exchange
from tests.functional.lti.helpers import bearer, describe, launched, release
from tests.functional.lti.test_grades import drain, push
from tests.interop.library_platform import (
    INSTRUCTOR,
    LEARNER,
    Course,
    LibraryPlatform,
    Person,
)
from tests.lms.platform import parse_form

pytestmark = pytest.mark.one_backend

SCORE_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
LINEITEM_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
AGS_CLAIM = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"


def enter(lms: LibraryPlatform, person: Person, course: Course, role: str, **kwargs) -> dict:
    """A JSON launch in a fresh browser; the tool's token answer."""
    roles = [INSTRUCTOR if role == "Instructor" else LEARNER]
    with requests.Session() as browser:
        return launched(lms.launch(browser, person, course, roles=roles, **kwargs), role)


def offered(lms: LibraryPlatform) -> set[str]:
    """Every service scope the platform's launches offered (AGS claim scopes, NRPS)."""
    scopes = {NRPS_SCOPE}
    for claims in lms.recorded.launch_claims:
        scopes.update(claims.get(AGS_CLAIM, {}).get("scope", []))
    return scopes


def grade_status(live_server, teacher: dict) -> dict:
    answer = requests.get(
        f"{live_server.url}/api/v1/courses/{teacher['course_id']}/grades",
        headers=bearer(teacher["access_token"]),
        timeout=30,
    )
    assert answer.status_code == 200, describe(answer)
    return answer.json()


def test_resource_link_launches_give_working_tokens(live_server, lms):
    course = Course.make()
    teacher_person, student_person = Person.make("Ida", "Teach"), Person.make("Lev", "Learn")
    teacher = enter(lms, teacher_person, course, "Instructor")
    student = enter(lms, student_person, course, "Learner")
    assert teacher["course_id"] == student["course_id"]
    assert teacher["org_id"] == student["org_id"] == lms.org_id

    release(live_server, teacher["course_id"], teacher["access_token"], "ps1")
    listed = live_server.api(
        "GET", f"courses/{student['course_id']}/assignments", student["access_token"]
    )
    assert listed.status_code == 200, describe(listed)
    assert "ps1" in listed.text, listed.text
    me = live_server.api("GET", "me", student["access_token"])
    assert me.status_code == 200, describe(me)
    assert me.json()["lms_user_id"] == student_person.sub, me.json()
    # a learner's token is not an instructor's
    members = live_server.api(
        "GET", f"courses/{student['course_id']}/members", student["access_token"]
    )
    assert members.status_code == 403, describe(members)

    # in a browser (no Accept: application/json) the same launch lands on our page
    with requests.Session() as browser:
        page = lms.launch(browser, student_person, course, accept_json=False)
    assert page.status_code == 200, describe(page)
    assert page.headers["Content-Type"].startswith("text/html"), describe(page)
    assert student["username"] in page.text, page.text[:2000]


def deep_link(lms, person: Person, course: Course, assignment: str, max_score: int) -> dict:
    """Deep linking in a browser: the library's DeepLinkingRequest → our chooser → our signed
    response auto-posted to the platform, which accepts it only after the library verified it
    against our ``/lti/jwks``. Returns our auto-post form (``action`` and the ``JWT`` field)."""
    with requests.Session() as browser:
        chooser_page = lms.launch(
            browser, person, course, roles=[INSTRUCTOR], deep_linking=True, accept_json=False
        )
        assert chooser_page.status_code == 200, describe(chooser_page)
        assert assignment in chooser_page.text, chooser_page.text
        chooser = parse_form(chooser_page.text)
        fields = {**chooser["fields"], "assignment_id": assignment, "max_score": str(max_score)}
        chosen = browser.post(chooser["action"], data=fields, timeout=30)
        assert chosen.status_code == 200, describe(chosen)
        back = parse_form(chosen.text)
        assert back["action"] == lms.url + "/deep_link_return", back
        accepted = browser.post(back["action"], data=back["fields"], timeout=30)
    assert accepted.status_code == 200, accepted.text
    return back


def test_deep_linking_response_is_verified_by_the_library(live_server, lms):
    course = Course.make()
    person = Person.make("Dee", "Linker")
    teacher = enter(lms, person, course, "Instructor")
    release(live_server, teacher["course_id"], teacher["access_token"], "ps1")
    release(live_server, teacher["course_id"], teacher["access_token"], "ps2")
    before = len(lms.recorded.deep_link_items)

    back = deep_link(lms, person, course, "ps2", 10)
    items = lms.recorded.deep_link_items[-1]
    assert len(lms.recorded.deep_link_items) == before + 1
    assert len(items) == 1, items
    assert items[0]["type"] == "ltiResourceLink"
    assert items[0]["custom"]["nbgrader_assignment_id"] == "ps2"
    assert items[0]["lineItem"]["scoreMaximum"] == 10
    claims = jwt.decode(back["fields"]["JWT"], options={"verify_signature": False})
    assert claims["aud"] in (lms.issuer, [lms.issuer]), claims
    assert claims["iss"] == lms.client_id, claims
    assert claims["https://purl.imsglobal.org/spec/lti-dl/claim/data"] == {"opaque": "interop-42"}

    # the library's check is real: one changed signature character and it refuses
    head, body, signature = back["fields"]["JWT"].split(".")
    other = "A" if signature[10] != "A" else "B"
    forged = f"{head}.{body}.{signature[:10]}{other}{signature[11:]}"
    refused = requests.post(back["action"], data={"JWT": forged}, timeout=30)
    assert refused.status_code == 400, refused.text
    assert len(lms.recorded.deep_link_items) == before + 1


def test_uncoupled_grades_go_to_a_line_item_the_worker_finds_or_creates(live_server, lms):
    course = Course.make()
    teacher = enter(lms, Person.make("Una", "Coupled"), course, "Instructor")
    people = [Person.make(f"Stu{n}", "Dent") for n in range(2)]
    students = [enter(lms, p, course, "Learner") for p in people]
    answer = push(
        live_server,
        teacher,
        [
            {"assignment_id": "ps1", "student_id": s["username"], "score": score, "max_score": 10}
            for s, score in zip(students, (7, 9.5), strict=True)
        ],
    )
    assert answer["counts"]["queued"] == 2, answer
    assert drain(live_server)["sent"] == 2

    (item,) = lms.lineitems(course)
    assert item["resourceId"] == "ps1" and item["scoreMaximum"] == 10, item
    assert len(lms.recorded.lineitem_posts) >= 1
    scores = lms.scores(course.id)
    assert {user: s["scoreGiven"] for (_i, user), s in scores.items()} == {
        people[0].sub: 7,
        people[1].sub: 9.5,
    }
    assert all(item_id == item["id"] for item_id, _user in scores)
    # the library's token endpoint accepted our client assertion and granted the score scope;
    # we asked only for scopes the launches offered
    assert any(SCORE_SCOPE in r["granted"].split() for r in lms.recorded.token_requests)
    assert set().union(*(r["requested"].split() for r in lms.recorded.token_requests)) <= offered(
        lms
    )
    assert grade_status(live_server, teacher)["counts"]["sent"] == 2


def test_coupled_grades_go_to_the_launch_lineitem_and_make_no_new_column(live_server, lms):
    """The LMS made the column when the link was added; launches of that link carry its
    ``lineitem``: the score goes there, and the context still has exactly one column."""
    course = Course.make()
    link = {"resource_link_id": f"rl-{course.id}", "title": "Problem set 1"}
    column = lms.add_lineitem(
        course.id,
        {"label": "Problem set 1", "scoreMaximum": 10, "resourceLinkId": link["resource_link_id"]},
    )
    launch = {
        "resource_link": link,
        "lineitem_url": column["id"],
        "custom": {"nbgrader_assignment_id": "ps1"},
    }
    teacher = enter(lms, Person.make("Coe", "Pled"), course, "Instructor", **launch)
    person = Person.make("Stu", "Coupled")
    student = enter(lms, person, course, "Learner", **launch)
    posts_before = len(lms.recorded.lineitem_posts)

    answer = push(
        live_server,
        teacher,
        [{"assignment_id": "ps1", "student_id": student["username"], "score": 8, "max_score": 10}],
    )
    assert answer["counts"]["queued"] == 1, answer
    assert drain(live_server)["sent"] == 1

    assert lms.lineitems(course) == [column], "the exchange made a second column"
    assert len(lms.recorded.lineitem_posts) == posts_before
    assert {key: s["scoreGiven"] for key, s in lms.scores(course.id).items()} == {
        (column["id"], person.sub): 8
    }


def test_a_launch_offering_only_its_lineitem_gets_the_score_there(live_server, lms):
    """The library's AGS claim without ``lineitems``: the link's ``lineitem`` and the score
    scope, no line-item scope. The score goes to that line item; nothing is created."""
    course = Course.make()
    link = {"resource_link_id": f"rl-{course.id}", "title": "Problem set 3"}
    column = lms.add_lineitem(
        course.id,
        {"label": "Problem set 3", "scoreMaximum": 20, "resourceLinkId": link["resource_link_id"]},
    )
    launch = {
        "resource_link": link,
        "lineitem_url": column["id"],
        "offer_lineitems": False,
        "custom": {"nbgrader_assignment_id": "ps3"},
    }
    teacher = enter(lms, Person.make("Ona", "Lee"), course, "Instructor", **launch)
    offered_here = lms.recorded.launch_claims[-1][AGS_CLAIM]
    assert "lineitems" not in offered_here and LINEITEM_SCOPE not in offered_here["scope"]
    person = Person.make("Stu", "Single")
    student = enter(lms, person, course, "Learner", **launch)
    tokens_before = len(lms.recorded.token_requests)

    answer = push(
        live_server,
        teacher,
        [{"assignment_id": "ps3", "student_id": student["username"], "score": 15, "max_score": 20}],
    )
    assert answer["counts"]["queued"] == 1, answer
    assert drain(live_server)["sent"] == 1

    assert lms.lineitems(course) == [column]
    assert {key: s["scoreGiven"] for key, s in lms.scores(course.id).items()} == {
        (column["id"], person.sub): 15
    }
    asked = [r["requested"].split() for r in lms.recorded.token_requests[tokens_before:]]
    assert all(LINEITEM_SCOPE not in scopes for scopes in asked), asked


def test_a_deep_linked_assignment_is_graded_in_the_column_the_lms_made(live_server, lms):
    """Deep linking with a maximum score → the LMS adds the link and makes its column from our
    ``lineItem`` → a learner launches that link → the grade lands in that column, the only one."""
    course = Course.make()
    person = Person.make("Dee", "Coupler")
    teacher = enter(lms, person, course, "Instructor")
    release(live_server, teacher["course_id"], teacher["access_token"], "ps4")
    deep_link(lms, person, course, "ps4", 12)
    (item,) = lms.recorded.deep_link_items[-1]

    # what an LMS does with the item: a new resource link, its column from ``lineItem``
    link = {"resource_link_id": f"rl-dl-{course.id}", "title": item.get("title") or "ps4"}
    column = lms.add_lineitem(
        course.id, {**item["lineItem"], "resourceLinkId": link["resource_link_id"]}
    )
    person_s = Person.make("Stu", "Linked")
    student = enter(
        lms,
        person_s,
        course,
        "Learner",
        resource_link=link,
        custom=item.get("custom"),
        lineitem_url=column["id"],
    )
    answer = push(
        live_server,
        teacher,
        [{"assignment_id": "ps4", "student_id": student["username"], "score": 11, "max_score": 12}],
    )
    assert answer["counts"]["queued"] == 1, answer
    assert drain(live_server)["sent"] == 1

    assert lms.lineitems(course) == [column], "the exchange made a second column for ps4"
    assert {key: s["scoreGiven"] for key, s in lms.scores(course.id).items()} == {
        (column["id"], person_s.sub): 11
    }


def test_roster_sync_follows_the_library_membership_pages(live_server, lms):
    course = Course.make()
    teacher_person = Person.make("Ros", "Ter")
    learners = [Person.make(f"Mem{n}", "Ber") for n in range(4)]
    leaver = Person.make("Left", "Early")
    lms.set_roster(
        course,
        [(teacher_person, [INSTRUCTOR], "Active")]
        + [(p, [LEARNER], "Active") for p in learners]
        + [(leaver, [LEARNER], "Inactive")],
    )
    teacher = enter(lms, teacher_person, course, "Instructor", nrps_page_size=2)
    lms.recorded.membership_requests.clear()

    lti_exchange(
        live_server,
        "roster",
        "sync",
        "--course",
        teacher["course_id"],
        "--org",
        str(lms.org_id),
        "--json",
    )
    pages = [r["page"] for r in lms.recorded.membership_requests]
    assert pages == [1, 2, 3], lms.recorded.membership_requests
    answer = live_server.api(
        "GET", f"courses/{teacher['course_id']}/members", teacher["access_token"]
    )
    assert answer.status_code == 200, describe(answer)
    by_sub = {m["lms_user_id"]: m for m in answer.json()["members"]}
    assert set(by_sub) == {teacher_person.sub, leaver.sub} | {p.sub for p in learners}, by_sub
    assert all(by_sub[p.sub]["role"] == "Learner" and by_sub[p.sub]["active"] for p in learners)
    assert by_sub[leaver.sub]["active"] is False
    assert by_sub[teacher_person.sub]["role"] == "Instructor"

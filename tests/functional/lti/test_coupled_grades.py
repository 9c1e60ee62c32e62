"""Coupled grading, resource links and scopes as offered, against the simulated LMS.

A grade goes to the gradebook column of the LMS link(s) bound to its assignment (the launch's
``lineitem``); only without one does the worker find or create a column, tied to the link. The
tool asks only for scopes the launch offered, and says what to enable when the score scope is
missing. Links are bound by the custom parameter or once by an instructor on the landing page.
"""

from __future__ import annotations

import pytest
import requests
from sqlalchemy import delete

from lti_exchange.models import LineItem
from tests.functional.lti.helpers import assert_html_error, describe, launched
from tests.functional.lti.test_grades import drain, push, status
from tests.lms.platform import CLAIM_AGS, INSTRUCTOR, LEARNER, LmsContext, LmsUser, parse_form
from tests.lms.services import (
    SCOPE_LINEITEM,
    SCOPE_LINEITEM_READONLY,
    SCOPE_RESULT_READONLY,
    SCOPE_SCORE,
)

PS1 = {"nbgrader_assignment_id": "ps1"}


def course(platform, link: dict | None, students: int = 2):
    """An instructor and learners launched (JSON) into a new context, through ``link``."""
    context = LmsContext.make()
    if link is not None:
        link = platform.add_link(context, **link)
    teacher_user = LmsUser.make("Tea", "Cher")
    teacher = launched(
        platform.launch(
            requests.Session(),
            user=teacher_user,
            roles=[INSTRUCTOR],
            context=context,
            resource_link=link,
        ),
        "Instructor",
    )
    people = []
    for index in range(students):
        user = LmsUser.make(f"Learner{index}", "Example")
        answer = platform.launch(requests.Session(), user=user, context=context, resource_link=link)
        people.append((user, launched(answer, "Learner"), answer.lti.claims))
    return context, link, teacher_user, teacher, people


def relaunch(platform, user, context, link, *, mutate=None, roles=(LEARNER,)) -> dict:
    """``user`` launches ``link`` again (a fresh browser session); the launch's JSON answer."""
    return launched(
        platform.launch(
            requests.Session(),
            user=user,
            roles=list(roles),
            context=context,
            resource_link=link,
            mutate=mutate,
        )
    )


def grades_for(people, assignment: str = "ps1", score: float = 7) -> list[dict]:
    return [
        {
            "assignment_id": assignment,
            "student_id": body["username"],
            "score": score + i,
            "max_score": 10,
        }
        for i, (_user, body, _claims) in enumerate(people)
    ]


def requested_scopes(platform) -> set[str]:
    return {scope for r in platform.token_request_log for scope in r.body["scope"].split()}


def tool_lineitem_posts(platform, context) -> list:
    return [
        r
        for r in platform.service_requests
        if r.kind == "lineitems.post" and r.context_id == context.id
    ]


@pytest.mark.all_backends  # the resource_link table: JSON scopes, case-sensitive link ids
def test_a_link_with_its_own_column_gets_the_grades_and_no_column_is_created(live_server, platform):
    context, link, _t, teacher, people = course(
        platform, {"title": "Problem set 1", "custom": PS1, "score_maximum": 20}
    )
    [column] = platform.lineitems(context)
    assert column["resourceLinkId"] == link["id"] and "resourceId" not in column
    assert all(claims[CLAIM_AGS]["lineitem"] == column["id"] for _u, _b, claims in people)

    assert push(live_server, teacher, grades_for(people))["counts"]["queued"] == 2
    assert drain(live_server)["sent"] == 2
    scores = platform.scores(context)
    assert {item for item, _user in scores} == {column["id"]}
    assert {user for _item, user in scores} == {u.sub for u, _b, _c in people}
    assert platform.lineitems(context) == [column]  # exactly one column for ps1
    assert tool_lineitem_posts(platform, context) == []


def test_two_columns_for_one_assignment_each_get_the_score(live_server, platform):
    """Two graded links an instructor bound to ps1: each column shows the grade (none made)."""
    context, first, _t, teacher, people = course(
        platform, {"title": "PS1 (lab)", "custom": PS1, "score_maximum": 10}
    )
    second = platform.add_link(context, title="PS1 (lecture)", custom=PS1, score_maximum=10)
    launched(
        platform.launch(
            requests.Session(), user=people[0][0], context=context, resource_link=second
        )
    )
    # A third link whose launch names the first link's column: still that one column.
    third = platform.add_link(context, title="PS1 (again)", custom=PS1)

    def same_column(claims: dict) -> dict:
        claims[CLAIM_AGS]["lineitem"] = platform.lineitems(context)[0]["id"]
        return claims

    relaunch(platform, people[1][0], context, third, mutate=same_column)
    push(live_server, teacher, grades_for(people[:1]))
    assert drain(live_server)["sent"] == 1
    columns = {item["resourceLinkId"]: item["id"] for item in platform.lineitems(context)}
    assert len(columns) == 2
    scores = platform.scores(context)
    assert set(scores) == {
        (columns[first["id"]], people[0][0].sub),
        (columns[second["id"]], people[0][0].sub),
    }
    posts = [p for p in platform.score_posts if p.context_id == context.id]
    assert sorted(p.lineitem_id for p in posts) == sorted(columns.values())  # once each
    assert tool_lineitem_posts(platform, context) == []


def test_a_platform_offering_only_a_lineitem_and_the_score_scope(live_server, make_platform):
    lms = make_platform()
    lms.offer_ags([SCOPE_SCORE], lineitems=False)
    context, _link, _t, teacher, people = course(
        lms, {"title": "Problem set 1", "custom": PS1, "score_maximum": 10}
    )
    assert "lineitems" not in people[0][2][CLAIM_AGS]
    assert push(live_server, teacher, grades_for(people))["counts"] == {
        "queued": 2,
        "unchanged": 0,
        "not_sendable": 0,
    }
    assert drain(live_server)["sent"] == 2
    [column] = lms.lineitems(context)
    assert {item for item, _user in lms.scores(context)} == {column["id"]}
    assert requested_scopes(lms) == {SCOPE_SCORE}  # nothing the launch did not offer
    refused = [r for r in lms.service_requests if r.status in (400, 401, 403)]
    assert refused == [], [(r.kind, r.message) for r in refused]


def test_without_the_score_scope_grades_are_not_sendable_with_what_to_enable(
    live_server, make_platform
):
    lms = make_platform()
    lms.offer_ags([SCOPE_LINEITEM, SCOPE_RESULT_READONLY])
    _context, _link, _t, teacher, people = course(
        lms, {"title": "Problem set 1", "custom": PS1, "score_maximum": 10}
    )
    answer = push(live_server, teacher, grades_for(people))
    assert answer["counts"] == {"queued": 0, "unchanged": 0, "not_sendable": 2}
    for grade in answer["grades"]:
        assert grade["status"] == "not_sendable"
        assert "did not grant the score service" in grade["reason"]
        assert "Grade sync" in grade["reason"] and "launch the tool again" in grade["reason"]
    assert drain(live_server)["sent"] == 0
    assert lms.token_requests == 0


def test_an_uncoupled_column_carries_the_link_and_is_found_again(live_server, make_platform):
    lms = make_platform()
    lms.offer_ags([SCOPE_LINEITEM, SCOPE_SCORE])
    context, link, _t, teacher, people = course(lms, {"title": "Problem set 1", "custom": PS1})
    assert lms.lineitems(context) == [] and "lineitem" not in people[0][2][CLAIM_AGS]
    push(live_server, teacher, grades_for(people))
    assert drain(live_server)["sent"] == 2
    [column] = lms.lineitems(context)
    assert column["resourceLinkId"] == link["id"]
    assert (column["resourceId"], column["tag"], column["label"]) == ("ps1", "nbgrader", "ps1")
    assert len(tool_lineitem_posts(lms, context)) == 1

    # The tool forgets the column (a restored database, a copied course): it finds it again.
    with live_server.state().session_factory() as session:
        session.execute(delete(LineItem).where(LineItem.url == column["id"]))
        session.commit()
    push(live_server, teacher, grades_for(people, score=3))
    assert drain(live_server)["sent"] == 2
    assert lms.lineitems(context) == [column]
    assert len(tool_lineitem_posts(lms, context)) == 1
    assert {body["scoreGiven"] for body in lms.scores(context).values()} == {3, 4}
    assert requested_scopes(lms) == {SCOPE_LINEITEM, SCOPE_SCORE}

    # Launches of this link now name the column: from then on it is coupled, still one column.
    again = lms.launch(requests.Session(), user=people[0][0], context=context, resource_link=link)
    assert again.lti.claims[CLAIM_AGS]["lineitem"] == column["id"]


def test_with_read_only_line_items_the_tool_finds_but_never_creates(live_server, make_platform):
    lms = make_platform()
    lms.offer_ags([SCOPE_LINEITEM_READONLY, SCOPE_SCORE])
    context, _link, _t, teacher, people = course(lms, None, students=1)
    answer = push(live_server, teacher, grades_for(people))
    assert answer["counts"]["queued"] == 1
    drain(live_server)
    [grade] = status(live_server, teacher)["grades"]
    assert grade["status"] == "not_sendable" and "not create gradebook columns" in grade["reason"]
    assert tool_lineitem_posts(lms, context) == []

    # A column the LMS holds for ps1 (resourceId + tag) is found with the read-only scope.
    lms.add_link(
        context,
        title="Imported",
        lineitem={"label": "PS1", "scoreMaximum": 10, "resourceId": "ps1", "tag": "nbgrader"},
    )
    push(live_server, teacher, grades_for(people))
    assert drain(live_server)["sent"] == 1
    [column] = lms.lineitems(context)
    assert {item for item, _user in lms.scores(context)} == {column["id"]}
    assert requested_scopes(lms) == {SCOPE_LINEITEM_READONLY, SCOPE_SCORE}


def test_a_column_for_a_link_the_lms_no_longer_has_is_made_for_the_course(
    live_server, make_platform
):
    lms = make_platform()
    context, link, _t, teacher, people = course(lms, {"title": "Gone", "custom": PS1}, students=1)
    with lms._lock:  # the instructor deleted the link in the LMS
        lms._resource_links[context.id].discard(link["id"])
    push(live_server, teacher, grades_for(people))
    assert drain(live_server)["sent"] == 1
    posts = tool_lineitem_posts(lms, context)
    assert [p.status for p in posts] == [404, 201]  # refused with the link, made without
    [column] = lms.lineitems(context)
    assert "resourceLinkId" not in column and column["resourceId"] == "ps1"


# -- binding a link on the landing page --------------------------------------------------------
def landing(platform, user, context, link, roles):
    answer = platform.launch(
        requests.Session(),
        user=user,
        context=context,
        resource_link=link,
        roles=roles,
        accept_json=False,
    )
    assert answer.status_code == 200, describe(answer)
    return answer.text


def test_an_instructor_binds_a_link_once_and_a_learner_cannot(live_server, platform):
    context = LmsContext.make()
    link = platform.add_link(context, title="Week 3 notebook", score_maximum=5)
    teacher, student = LmsUser.make("Ines", "Structor"), LmsUser.make("Lea", "Rner")
    page = landing(platform, teacher, context, link, [INSTRUCTOR])
    assert "not chosen yet" in page and "Week 3 notebook" in page
    form = parse_form(page)
    assert form["action"] == f"{live_server.url}/lti/resource-link" and form["method"] == "post"
    token = form["fields"]["bind_token"]

    student_page = landing(platform, student, context, link, [LEARNER])
    assert "not chosen" in student_page and "bind_token" not in student_page
    # No token, a made-up one: refused.
    for fields in ({"assignment_id": "ps1"}, {"assignment_id": "ps1", "bind_token": "x" * 43}):
        answer = requests.post(
            form["action"], data=fields, headers={"Accept": "text/html"}, timeout=30
        )
        assert_html_error(answer, (400, 401), ("bind_token", "expired"))
    # A typo does not spend the token.
    bad = requests.post(
        form["action"], data={"bind_token": token, "assignment_id_other": "../x"}, timeout=30
    )
    assert_html_error(bad, (400,))

    done = requests.post(
        form["action"],
        data={"bind_token": token, "assignment_id_other": "ps3"},
        headers={"Accept": "text/html"},
        timeout=30,
    )
    assert done.status_code == 200, describe(done)
    assert "ps3" in done.text and "frame-ancestors" in done.headers["Content-Security-Policy"]
    reused = requests.post(
        form["action"], data={"bind_token": token, "assignment_id": "ps1"}, timeout=30
    )
    assert_html_error(reused, (401,), ("expired", "already used"))

    student_page = landing(platform, student, context, link, [LEARNER])
    assert "<code>ps3</code>" in student_page and "bind_token" not in student_page

    # The grades of ps3 go to the link's column.
    body = launched(
        platform.launch(requests.Session(), user=teacher, context=context, roles=[INSTRUCTOR])
    )
    learner = launched(
        platform.launch(requests.Session(), user=student, context=context, resource_link=link)
    )
    push(
        live_server,
        body,
        [{"assignment_id": "ps3", "student_id": learner["username"], "score": 4, "max_score": 5}],
    )
    assert drain(live_server)["sent"] == 1
    [column] = platform.lineitems(context)
    assert platform.scores(context)[(column["id"], student.sub)]["scoreGiven"] == 4


def test_a_token_of_someone_no_longer_instructor_binds_nothing(live_server, platform):
    context = LmsContext.make()
    link = platform.add_link(context, title="Lab")
    person = LmsUser.make("Was", "Teacher")
    token = parse_form(landing(platform, person, context, link, [INSTRUCTOR]))["fields"][
        "bind_token"
    ]
    landing(platform, person, context, link, [LEARNER])  # the LMS role changed meanwhile
    answer = requests.post(
        f"{live_server.url}/lti/resource-link",
        data={"bind_token": token, "assignment_id_other": "ps1"},
        headers={"Accept": "text/html"},
        timeout=30,
    )
    assert_html_error(answer, (403,), ("instructors",))
    page = landing(platform, person, context, link, [INSTRUCTOR])
    assert "not chosen yet" in page


def test_a_link_named_by_the_lms_shows_its_assignment_and_offers_no_form(live_server, platform):
    context = LmsContext.make()
    link = platform.add_link(context, title="Problem set 1", custom=PS1)
    page = landing(platform, LmsUser.make("Ian", "Str"), context, link, [INSTRUCTOR])
    assert "<code>ps1</code>" in page and "bind_token" not in page


def without_ags(claims: dict) -> dict:
    del claims[CLAIM_AGS]
    return claims


def test_a_launch_without_the_grades_claim_keeps_the_links_column(live_server, platform):
    """A launch of a graded link that carries no AGS claim (a platform that sends it to some
    roles only) says nothing about the column: the grade still goes to the LMS's column."""
    context, link, _t, teacher, people = course(
        platform, {"title": "Problem set 1", "custom": PS1, "score_maximum": 20}
    )
    [column] = platform.lineitems(context)
    relaunch(platform, people[0][0], context, link, mutate=without_ags)
    push(live_server, teacher, grades_for(people))
    assert drain(live_server)["sent"] == 2
    assert platform.lineitems(context) == [column]
    assert {item for item, _user in platform.scores(context)} == {column["id"]}
    assert tool_lineitem_posts(platform, context) == []


def test_the_links_own_column_is_found_when_launches_do_not_name_it(live_server, platform):
    """The LMS made the link's column (no resourceId) but its launches give no ``lineitem``:
    the worker finds that column by the link instead of making a second one."""

    def no_lineitem(claims: dict) -> dict:
        claims[CLAIM_AGS].pop("lineitem", None)
        return claims

    context = LmsContext.make()
    link = platform.add_link(context, title="Problem set 1", custom=PS1, score_maximum=10)
    [column] = platform.lineitems(context)
    assert "resourceId" not in column
    teacher = relaunch(
        platform, LmsUser.make("Tea", "Cher"), context, link, mutate=no_lineitem, roles=[INSTRUCTOR]
    )
    user = LmsUser.make("Lone", "Learner")
    body = relaunch(platform, user, context, link, mutate=no_lineitem)
    push(live_server, teacher, grades_for([(user, body, None)]))
    assert drain(live_server)["sent"] == 1
    assert platform.lineitems(context) == [column]
    assert platform.scores(context)[(column["id"], user.sub)]["scoreGiven"] == 7
    assert tool_lineitem_posts(platform, context) == []


def test_grades_wait_for_an_unbound_graded_link_then_go_to_its_column(live_server, platform):
    """While a graded LMS link is bound to no assignment, the tool makes no column of its own
    (it may be the assignment's column); once an instructor binds it, the waiting grades go
    there by themselves: one column."""
    context = LmsContext.make()
    link = platform.add_link(context, title="Week 4 notebook", score_maximum=10)
    [column] = platform.lineitems(context)
    teacher_user = LmsUser.make("Ines", "Structor")
    teacher = launched(
        platform.launch(requests.Session(), user=teacher_user, roles=[INSTRUCTOR], context=context),
        "Instructor",
    )
    user = LmsUser.make("Lea", "Rner")
    body = launched(
        platform.launch(requests.Session(), user=user, context=context, resource_link=link)
    )
    pushed = push(live_server, teacher, grades_for([(user, body, None)], assignment="ps4"))
    assert pushed["counts"] == {"queued": 0, "unchanged": 0, "not_sendable": 1}
    [grade] = pushed["grades"]
    assert "Week 4 notebook" in grade["reason"] and "choose its assignment" in grade["reason"]
    drain(live_server)
    assert platform.lineitems(context) == [column] and tool_lineitem_posts(platform, context) == []

    form = parse_form(landing(platform, teacher_user, context, link, [INSTRUCTOR]))
    bound = requests.post(
        form["action"],
        data={"bind_token": form["fields"]["bind_token"], "assignment_id_other": "ps4"},
        headers={"Accept": "text/html"},
        timeout=30,
    )
    assert bound.status_code == 200, describe(bound)
    assert status(live_server, teacher)["counts"]["pending"] == 1
    assert drain(live_server)["sent"] == 1
    assert platform.lineitems(context) == [column]
    assert platform.scores(context)[(column["id"], user.sub)]["scoreGiven"] == 7
    assert tool_lineitem_posts(platform, context) == []

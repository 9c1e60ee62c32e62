"""Due dates from the LMS line item's ``endDateTime``, read by the real worker after a launch.

Precedence: an instructor's date (dashboard) > the ``due_at`` custom parameter > the line
item's ``endDateTime``. The launch never waits for the LMS: it only asks the worker, which GETs
the line item (``application/vnd.ims.lis.v2.lineitem+json``) from the simulated LMS.
"""

from __future__ import annotations

import requests
from sqlalchemy import select

from lti_exchange.jobs.lineitem_due_dates import requested_links
from lti_exchange.models import ResourceLink
from lti_exchange.worker import GradeWorker
from tests.functional.lti.helpers import describe, launched
from tests.lms.platform import (
    ACCEPT_JSON,
    CLAIM_AGS,
    INSTRUCTOR,
    LEARNER,
    LmsContext,
    LmsUser,
    parse_form,
)
from tests.lms.services import (
    MEDIA_LINEITEM,
    SCOPE_LINEITEM,
    SCOPE_LINEITEM_READONLY,
    SCOPE_SCORE,
)

HW1 = {"nbgrader_assignment_id": "hw1"}


def launch(platform, context, link, user, role=INSTRUCTOR, custom=None) -> dict:
    answer = platform.launch(
        requests.Session(),
        user=user,
        roles=[role],
        context=context,
        resource_link=link,
        custom=custom,
    )
    assert answer.status_code == 200, describe(answer)
    return {**launched(answer), "claims": answer.lti.claims}


def due_dates(live_server, teacher: dict, assignment: str = "hw1") -> dict:
    answer = live_server.api(
        "GET",
        f"courses/{teacher['course_id']}/assignments/{assignment}/due-dates",
        teacher["access_token"],
    )
    assert answer.status_code == 200, describe(answer)
    return answer.json()


def read_due_dates(live_server, link: dict) -> int:
    """One pass of the worker's line-item job (the real job, run now; it also takes requests
    other tests left); how many of this link's requests were pending before it (0 or 1)."""
    asked = link_row_id(live_server, link) in requested_links(live_server.state())
    GradeWorker(live_server.state()).jobs.run_now("lineitem-due-dates")
    assert link_row_id(live_server, link) not in requested_links(live_server.state())
    return int(asked)


def link_row_id(live_server, link: dict) -> int:
    with live_server.state().session_factory() as session:
        return session.execute(
            select(ResourceLink.id).where(ResourceLink.lti_resource_link_id == link["id"])
        ).scalar_one()


def lineitem_gets(platform, context) -> list:
    return [
        r
        for r in platform.service_requests
        if r.kind == "lineitem.get" and r.context_id == context.id
    ]


def test_the_line_items_end_date_is_the_due_date_and_follows_the_lms(live_server, make_platform):
    lms = make_platform()
    lms.offer_ags([SCOPE_LINEITEM_READONLY, SCOPE_SCORE])
    context = LmsContext.make()
    link = lms.add_link(
        context,
        title="Homework 1",
        custom=HW1,
        lineitem={"label": "Homework 1", "scoreMaximum": 10, "endDateTime": "2031-05-01T12:00:00Z"},
    )
    [column] = lms.lineitems(context)
    teacher_user = LmsUser.make("Tea", "Cher")
    teacher = launch(lms, context, link, teacher_user)
    assert teacher["claims"][CLAIM_AGS]["lineitem"] == column["id"]
    # The launch only asked: nothing was read from the LMS during it.
    assert due_dates(live_server, teacher)["due_at"] is None
    assert lineitem_gets(lms, context) == []
    assert link_row_id(live_server, link) in requested_links(live_server.state())

    assert read_due_dates(live_server, link) == 1
    listing = due_dates(live_server, teacher)
    assert listing["due_at"] == "2031-05-01 12:00:00.000000 UTC", listing
    assert listing["source"] == "lineitem"
    [get] = lineitem_gets(lms, context)
    assert get.status == 200 and get.lineitem_id == column["id"]
    assert get.scopes == (SCOPE_LINEITEM_READONLY,)  # only a scope the launch offered
    assert MEDIA_LINEITEM in get.headers.get("Accept", "")
    assert read_due_dates(live_server, link) == 0, "a request is read once"
    assert len(lineitem_gets(lms, context)) == 1

    # The instructor moves the deadline in the LMS: the next launch picks it up.
    lms.edit_lineitem(context, column["id"], endDateTime="2031-06-01T00:00:00+02:00")
    launch(lms, context, link, teacher_user)
    assert read_due_dates(live_server, link) == 1
    assert due_dates(live_server, teacher)["due_at"] == "2031-05-31 22:00:00.000000 UTC"

    # Learners' launches ask at most every few minutes per link (here: within the interval).
    student = launch(lms, context, link, LmsUser.make("Stu", "Dent"), role=LEARNER)
    assert student["role"] == "Learner"
    assert link_row_id(live_server, link) not in requested_links(live_server.state())

    # A date set on the dashboard outranks the line item's ...
    path = f"courses/{teacher['course_id']}/assignments/hw1/due-date"
    token = teacher["access_token"]
    put = live_server.api("PUT", path, token, json={"due_at": "2040-01-01T00:00:00Z"})
    assert put.status_code == 200, describe(put)
    lms.edit_lineitem(context, column["id"], endDateTime="2031-07-01T00:00:00Z")
    launch(lms, context, link, teacher_user)
    assert read_due_dates(live_server, link) == 1
    listing = due_dates(live_server, teacher)
    assert (listing["due_at"], listing["source"]) == (
        "2040-01-01 00:00:00.000000 UTC",
        "instructor",
    )

    # ... and once cleared there, the LMS's date applies again; removed in the LMS, it goes.
    assert live_server.api("PUT", path, token, json={"due_at": None}).status_code == 200
    launch(lms, context, link, teacher_user)
    assert read_due_dates(live_server, link) == 1
    listing = due_dates(live_server, teacher)
    assert (listing["due_at"], listing["source"]) == ("2031-07-01 00:00:00.000000 UTC", "lineitem")
    lms.edit_lineitem(context, column["id"], endDateTime=None)
    launch(lms, context, link, teacher_user)
    assert read_due_dates(live_server, link) == 1
    listing = due_dates(live_server, teacher)
    assert (listing["due_at"], listing["source"]) == (None, None)


def test_the_custom_parameter_outranks_the_line_item(live_server, make_platform):
    lms = make_platform()
    lms.offer_ags([SCOPE_LINEITEM, SCOPE_SCORE])
    context = LmsContext.make()
    link = lms.add_link(
        context,
        custom=HW1,
        lineitem={"label": "Homework 1", "scoreMaximum": 10, "endDateTime": "2032-01-01T00:00:00Z"},
    )
    user = LmsUser.make("Tea", "Cher")
    teacher = launch(lms, context, link, user)
    assert read_due_dates(live_server, link) == 1
    assert due_dates(live_server, teacher)["source"] == "lineitem"
    [get] = lineitem_gets(lms, context)
    assert get.scopes == (SCOPE_LINEITEM,)  # the read-only scope was not offered

    # A launch that states due_at replaces the line item's date and asks for no read.
    launch(lms, context, link, user, custom={**HW1, "due_at": "2031-03-01T09:00:00Z"})
    listing = due_dates(live_server, teacher)
    assert (listing["due_at"], listing["source"]) == ("2031-03-01 09:00:00.000000 UTC", "lms")
    assert link_row_id(live_server, link) not in requested_links(live_server.state())
    # A later read of the line item (a launch without due_at) does not overwrite it either.
    lms.edit_lineitem(context, lms.lineitems(context)[0]["id"], endDateTime="2033-01-01T00:00:00Z")
    launch(lms, context, link, user)  # no due_at this time: asks
    assert read_due_dates(live_server, link) == 1
    assert due_dates(live_server, teacher)["due_at"] == "2031-03-01 09:00:00.000000 UTC"


def test_no_line_item_scope_or_an_unbound_link_reads_nothing(live_server, make_platform):
    lms = make_platform()
    lms.offer_ags([SCOPE_SCORE])  # a column per link, but no line-item service
    context = LmsContext.make()
    link = lms.add_link(
        context,
        custom=HW1,
        lineitem={"label": "Homework 1", "scoreMaximum": 10, "endDateTime": "2032-01-01T00:00:00Z"},
    )
    teacher = launch(lms, context, link, LmsUser.make("Tea", "Cher"))
    assert read_due_dates(live_server, link) == 0
    assert lineitem_gets(lms, context) == [] and lms.token_requests == 0
    assert due_dates(live_server, teacher)["due_at"] is None

    unbound = lms.add_link(context, title="Unbound", score_maximum=5)
    launch(lms, context, unbound, LmsUser.make("Other", "Teacher"))
    with live_server.state().session_factory() as session:
        assert session.get(ResourceLink, link_row_id(live_server, unbound)).assignment_name is None
    assert link_row_id(live_server, unbound) not in requested_links(live_server.state())


def test_binding_a_link_on_the_landing_page_reads_its_columns_due_date(live_server, make_platform):
    lms = make_platform()
    lms.offer_ags([SCOPE_LINEITEM_READONLY, SCOPE_SCORE])
    context = LmsContext.make()
    link = lms.add_link(
        context,
        title="Lab 2",
        lineitem={"label": "Lab 2", "scoreMaximum": 4, "endDateTime": "2031-09-01T08:00:00Z"},
    )
    user = LmsUser.make("Ines", "Structor")
    page = lms.launch(
        requests.Session(),
        user=user,
        roles=[INSTRUCTOR],
        context=context,
        resource_link=link,
        accept_json=False,
    )
    assert page.status_code == 200, describe(page)
    assert link_row_id(live_server, link) not in requested_links(live_server.state())  # unbound
    form = parse_form(page.text)
    done = requests.post(
        form["action"],
        data={"bind_token": form["fields"]["bind_token"], "assignment_id_other": "lab2"},
        headers={"Accept": ACCEPT_JSON},
        timeout=30,
    )
    assert done.status_code == 200, describe(done)
    assert read_due_dates(live_server, link) == 1
    teacher = launch(lms, context, link, user)
    listing = due_dates(live_server, teacher, "lab2")
    assert (listing["due_at"], listing["source"]) == ("2031-09-01 08:00:00.000000 UTC", "lineitem")

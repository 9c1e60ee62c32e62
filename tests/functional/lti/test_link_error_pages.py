"""The binding form's error pages that no other test reaches: the LMS took over the link's
assignment meanwhile (409 ``link_bound_by_lms``, for the instructor to change in the LMS), and
the link is gone (404 ``link_not_found``, launch again). HTML for the browser, JSON otherwise."""

from __future__ import annotations

import requests
from sqlalchemy import delete

from lti_exchange.models import ResourceLink
from tests.functional.lti.helpers import assert_html_error, assert_json_error, describe
from tests.lms.platform import ACCEPT_JSON, INSTRUCTOR, LmsContext, LmsUser, parse_form


def bind_form(platform, context, link, user) -> dict:
    answer = platform.launch(
        requests.Session(),
        user=user,
        context=context,
        resource_link=link,
        roles=[INSTRUCTOR],
        accept_json=False,
    )
    assert answer.status_code == 200, describe(answer)
    return parse_form(answer.text)


def lms_names_the_assignment(platform, context, link, user, assignment_id: str) -> None:
    """Meanwhile the LMS names the link's assignment (the link got the custom parameter)."""
    taken = platform.launch(
        requests.Session(),
        user=user,
        context=context,
        resource_link=link,
        roles=[INSTRUCTOR],
        custom={"nbgrader_assignment_id": assignment_id},
    )
    assert taken.status_code == 200, describe(taken)


def forget_link(live_server, link) -> None:
    """The exchange loses its record of ``link`` (as if it had been cleaned up)."""
    with live_server.state().session_factory() as session:
        session.execute(delete(ResourceLink).where(ResourceLink.lti_resource_link_id == link["id"]))
        session.commit()


def test_a_link_the_lms_took_over_cannot_be_bound_here(live_server, platform):
    context, user = LmsContext.make(), LmsUser.make("Ines", "Structor")
    link = platform.add_link(context, title="Week 4")
    html_form, json_form = (bind_form(platform, context, link, user) for _ in range(2))
    lms_names_the_assignment(platform, context, link, user, "ps4")
    page = assert_html_error(
        requests.post(
            html_form["action"],
            data={"bind_token": html_form["fields"]["bind_token"], "assignment_id_other": "ps1"},
            headers={"Accept": "text/html"},
            timeout=30,
        ),
        (409,),
        ("The LMS decides this link",),
    )
    # Only an instructor binds links: the page speaks to them, not about them.
    assert 'data-audience="you"' in page and "You can fix this" in page
    assert "nbgrader_assignment_id" in page
    error = assert_json_error(
        requests.post(
            json_form["action"],
            json={"bind_token": json_form["fields"]["bind_token"], "assignment_id_other": "ps1"},
            headers={"Accept": ACCEPT_JSON},
            timeout=30,
        ),
        (409,),
        ("ps4",),
    )
    assert error["code"] == "link_bound_by_lms"


def test_a_link_that_is_gone_says_to_launch_again(live_server, platform):
    context, user = LmsContext.make(), LmsUser.make("Ines", "Structor")
    link = platform.add_link(context, title="Week 5")
    form = bind_form(platform, context, link, user)
    forget_link(live_server, link)
    page = assert_html_error(
        requests.post(
            form["action"],
            data={"bind_token": form["fields"]["bind_token"], "assignment_id_other": "ps1"},
            headers={"Accept": "text/html"},
            timeout=30,
        ),
        (404,),
        ("This LMS link is no longer known",),
    )
    assert 'data-audience="you"' in page

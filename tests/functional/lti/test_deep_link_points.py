"""A release's points (nbgrader's total, sent as ``?max_score=``) are stored with it, shown in
the assignment JSON and pre-fill the deep-linking chooser's maximum score (still editable)."""

from __future__ import annotations

import pytest
import requests

from tests.functional.lti.helpers import bearer, describe, launched, notebook
from tests.functional.lti.test_deep_linking import deep_link_launch, respond
from tests.lms.platform import CLAIM_DL_CONTENT_ITEMS, INSTRUCTOR, LmsContext, LmsUser, parse_form
from tests.support import assert_error, make_tar

ARCHIVE = make_tar({"problem1.ipynb": notebook()})


def release(live_server, teacher: dict, assignment: str, points: str | None):
    query = f"?max_score={points}" if points is not None else ""
    return requests.post(
        f"{live_server.url}/api/v1/courses/{teacher['course_id']}/assignments/{assignment}"
        f"/releases{query}",
        data=ARCHIVE,
        headers={**bearer(teacher["access_token"]), "Content-Type": "application/x-tar"},
        timeout=60,
    )


def instructor(platform, browser):
    user, context = LmsUser.make("Poin", "Ts"), LmsContext.make()
    teacher = launched(platform.launch(browser, user=user, context=context, roles=[INSTRUCTOR]))
    return user, context, teacher


@pytest.mark.all_backends  # a new column on every database
def test_a_releases_points_are_stored_and_listed(live_server, platform, browser):
    _user, _context, teacher = instructor(platform, browser)
    first = release(live_server, teacher, "ps1", "12.5")
    assert first.status_code == 201, describe(first)
    assert first.json()["max_score"] == 12.5
    unknown = release(live_server, teacher, "ps2", None)
    assert unknown.status_code == 201 and unknown.json()["max_score"] is None
    listing = live_server.api(
        "GET", f"courses/{teacher['course_id']}/assignments", teacher["access_token"]
    ).json()
    points = {a["assignment_id"]: a["release"]["max_score"] for a in listing["assignments"]}
    assert points == {"ps1": 12.5, "ps2": None}

    for bad in ("abc", "0", "-3", "1e7", "nan", "inf"):
        refused = release(live_server, teacher, "ps1", bad)
        assert_error(refused, 400, "invalid_max_score", "max_score")
    again = live_server.api(
        "GET", f"courses/{teacher['course_id']}/assignments", teacher["access_token"]
    ).json()
    assert [a["release"]["version"] for a in again["assignments"]] == [1, 1], "nothing released"

    # A new release states its own points (the assignment changed).
    second = release(live_server, teacher, "ps1", "20")
    assert second.json()["version"] == 2 and second.json()["max_score"] == 20


def test_the_chooser_pre_fills_the_points_of_the_chosen_assignment(live_server, platform, browser):
    user, context, teacher = instructor(platform, browser)
    for name, points in (("ps1", "10"), ("ps2", "7.5"), ("ps3", None)):
        assert release(live_server, teacher, name, points).status_code == 201

    offer = deep_link_launch(platform, browser, user, context).json()
    assert offer["max_scores"] == {"ps1": 10, "ps2": 7.5}

    page = deep_link_launch(platform, browser, user, context, accept_json=False)
    assert page.status_code == 200, describe(page)
    form = parse_form(page.text)
    assert form["fields"]["max_score"] == "10", form  # the first (checked) choice's points
    assert form["fields"]["max_score_for"] == "ps1"
    assert 'data-max-score="7.5"' in page.text and 'data-max-score=""' in page.text
    assert "7.5 points" in page.text

    def chosen(token: str, assignment: str, score: str, prefilled_for: str) -> dict:
        answer = requests.post(
            f"{live_server.url}/lti/deep-link",
            data={
                "deep_link_token": token,
                "assignment_id": assignment,
                "max_score": score,
                "max_score_for": prefilled_for,
            },
            timeout=30,
        )
        assert answer.status_code == 200, describe(answer)
        back = parse_form(answer.text)
        claims = platform.verify_deep_link_response(back["fields"]["JWT"])
        return claims[CLAIM_DL_CONTENT_ITEMS][0]

    # Without JavaScript the field keeps ps1's pre-fill when ps2 is chosen: ps2's points count.
    item = chosen(form["fields"]["deep_link_token"], "ps2", "10", "ps1")
    assert item["custom"]["nbgrader_assignment_id"] == "ps2"
    assert item["lineItem"]["scoreMaximum"] == 7.5

    # A score the person typed (the script clears max_score_for) is kept, as is ps1's own.
    for assignment, score, prefilled_for, expected in (
        ("ps2", "9", "", 9),
        ("ps2", "9", "ps1", 9),
        ("ps1", "10", "ps1", 10),
        ("ps3", "10", "ps1", 10),  # points unknown: what the page showed and sent
    ):
        token = parse_form(
            deep_link_launch(platform, browser, user, context, accept_json=False).text
        )["fields"]["deep_link_token"]
        item = chosen(token, assignment, score, prefilled_for)
        assert item["lineItem"]["scoreMaximum"] == expected, (assignment, score, prefilled_for)

    # JSON clients send what they mean; the score is still validated as before.
    offer = deep_link_launch(platform, browser, user, context).json()
    assert respond(live_server, offer["deep_link_token"], "ps1", 4).status_code == 200
    offer = deep_link_launch(platform, browser, user, context).json()
    bad = respond(live_server, offer["deep_link_token"], "ps1", "-1")
    assert_error(bad, 400, "invalid_max_score")


def test_the_chooser_without_known_points_leaves_the_score_empty(live_server, platform, browser):
    user, context, teacher = instructor(platform, browser)
    assert release(live_server, teacher, "ps1", None).status_code == 201
    form = parse_form(deep_link_launch(platform, browser, user, context, accept_json=False).text)
    assert form["fields"]["max_score"] == "" and form["fields"]["max_score_for"] == ""

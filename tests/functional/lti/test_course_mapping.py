"""Courses follow the LMS: readable derived course ids, re-mapping by launch (while nothing is
released) and by ``lti-exchange course map``."""

from __future__ import annotations

import hashlib
import json
import uuid

from tests.functional.lti.conftest import lti_exchange
from tests.functional.lti.helpers import (
    assert_html_error,
    assert_json_error,
    describe,
    launched,
    release,
)
from tests.lms.platform import INSTRUCTOR, LEARNER, TEACHING_ASSISTANT, LmsContext, LmsUser


def tag() -> str:
    return uuid.uuid4().hex[:6]


def suffix(context: LmsContext, digits: int = 4) -> str:
    return hashlib.sha256(context.id.encode()).hexdigest()[:digits]


def assignments(live_server, course_id: str, token: str) -> list[str]:
    answer = live_server.api("GET", f"courses/{course_id}/assignments", token)
    assert answer.status_code == 200, describe(answer)
    return [a["assignment_id"] for a in answer.json()["assignments"]]


def course_map(live_server, platform, context: LmsContext, course_id: str, expect: int = 0):
    return lti_exchange(
        live_server,
        "course",
        "map",
        "--org",
        str(platform.org_id),
        "--context",
        context.id,
        "--course-id",
        course_id,
        "--json",
        expect=expect,
    )


def test_derived_ids_are_the_label_as_a_readable_slug(platform, browser):
    edx = LmsContext.make(label=f"course-v1:InteropX+NB303+2026_T1-{tag()}")
    body = launched(platform.launch(browser, roles=[INSTRUCTOR], context=edx))
    assert body["course_id"] == edx.label.replace(":", "-").replace("+", "-"), body

    t = tag()
    spaced = LmsContext.make(label=f"Stats 101 / Fall {t} (Section A)")
    body = launched(platform.launch(browser, roles=[INSTRUCTOR], context=spaced))
    assert body["course_id"] == f"Stats-101-Fall-{t}-Section-A", body


def test_a_colliding_label_gets_a_short_suffix(platform, browser):
    label = f"PHYS-{tag()}"
    first, second = LmsContext.make(label=label), LmsContext.make(label=label)
    one = launched(platform.launch(browser, roles=[INSTRUCTOR], context=first))
    two = launched(platform.launch(browser, roles=[INSTRUCTOR], context=second))
    assert one["course_id"] == label
    assert two["course_id"] == f"{label}-{suffix(second)}"
    again = launched(platform.launch(browser, roles=[LEARNER], context=second))
    assert again["course_id"] == two["course_id"]


def test_a_launch_naming_another_course_id_remaps_while_nothing_is_released(
    live_server, platform, browser
):
    context = LmsContext.make(label=f"course-v1:InteropX+NB303-{tag()}")
    teacher = LmsUser.make()
    derived = launched(platform.launch(browser, user=teacher, roles=[INSTRUCTOR], context=context))
    student = launched(platform.launch(browser, roles=[LEARNER], context=context))
    assert student["course_id"] == derived["course_id"]

    wanted = f"nb303-{tag()}"
    custom = {"nbgrader_course_id": wanted}
    remapped = launched(
        platform.launch(browser, user=teacher, roles=[INSTRUCTOR], context=context, custom=custom)
    )
    assert remapped["course_id"] == wanted, remapped
    # the same course, renamed: the earlier student is still a member; launches without the
    # parameter (deep links made before) reach it too
    members = live_server.api("GET", f"courses/{wanted}/members", remapped["access_token"])
    assert members.status_code == 200, describe(members)
    assert student["username"] in {m["username"] for m in members.json()["members"]}
    plain = launched(platform.launch(browser, roles=[LEARNER], context=context))
    assert plain["course_id"] == wanted
    gone = live_server.api(
        "GET", f"courses/{derived['course_id']}/assignments", remapped["access_token"]
    )
    assert gone.status_code in (403, 404), describe(gone)


def test_a_course_with_assignments_is_not_renamed_by_a_launch(live_server, platform, browser):
    context = LmsContext.make()
    teacher = LmsUser.make()
    first = launched(platform.launch(browser, user=teacher, roles=[INSTRUCTOR], context=context))
    course = first["course_id"]
    release(live_server, course, first["access_token"])
    wanted = f"nb303-{tag()}"
    custom = {"nbgrader_course_id": wanted}

    refused = platform.launch(
        browser, user=teacher, roles=[INSTRUCTOR], context=context, custom=custom, accept_json=False
    )
    command = (
        f"lti-exchange course map --org {platform.org_id} --context {context.id} "
        f"--course-id {wanted}"
    )
    page = assert_html_error(refused, (400,), (command,))
    assert "already has assignments" in page and "Nothing was changed" in page
    assert_json_error(
        platform.launch(browser, roles=[TEACHING_ASSISTANT], context=context, custom=custom),
        (400,),
        ("course map",),
    )
    learner = platform.launch(
        browser, roles=[LEARNER], context=context, custom=custom, accept_json=False
    )
    page = assert_html_error(learner, (400,), ("tell your instructor",))
    assert "course map" not in page

    # nothing changed: the course keeps its id and its assignment
    again = launched(platform.launch(browser, user=teacher, roles=[INSTRUCTOR], context=context))
    assert again["course_id"] == course
    assert assignments(live_server, course, again["access_token"]) == ["ps1"]


def test_course_map_renames_keeping_the_data(live_server, platform, browser):
    context = LmsContext.make()
    teacher = LmsUser.make()
    first = launched(platform.launch(browser, user=teacher, roles=[INSTRUCTOR], context=context))
    old = first["course_id"]
    release(live_server, old, first["access_token"])
    wanted = f"nb303-{tag()}"

    done = json.loads(course_map(live_server, platform, context, wanted).stdout)
    assert done == {
        "action": "renamed",
        "org_id": platform.org_id,
        "context_id": context.id,
        "course_id": wanted,
        "previous_course_id": old,
        "assignments": 1,
        "submissions": 0,
    }, done
    # the old token names the old id: it no longer reaches the course
    stale = live_server.api("GET", f"courses/{old}/assignments", first["access_token"])
    assert stale.status_code in (403, 404), describe(stale)

    custom = {"nbgrader_course_id": wanted}
    now = launched(
        platform.launch(browser, user=teacher, roles=[INSTRUCTOR], context=context, custom=custom)
    )
    assert now["course_id"] == wanted
    assert assignments(live_server, wanted, now["access_token"]) == ["ps1"]
    # links made before the rename still carry the old id: they open the renamed course
    legacy = launched(
        platform.launch(
            browser, roles=[LEARNER], context=context, custom={"nbgrader_course_id": old}
        )
    )
    assert legacy["course_id"] == wanted
    # mapping again to the same id changes nothing
    same = json.loads(course_map(live_server, platform, context, wanted).stdout)
    assert same["action"] == "unchanged", same


def test_course_map_refuses_an_id_another_context_has(live_server, platform, browser):
    mine, theirs = LmsContext.make(), LmsContext.make()
    mine_course = launched(platform.launch(browser, roles=[INSTRUCTOR], context=mine))
    taken = launched(platform.launch(browser, roles=[INSTRUCTOR], context=theirs))["course_id"]
    done = course_map(live_server, platform, mine, taken, expect=1)
    assert "already used" in done.output and "nothing was changed" in done.output, done.output
    again = launched(platform.launch(browser, roles=[LEARNER], context=mine))
    assert again["course_id"] == mine_course["course_id"]
    # a launch asking for it is refused for staff with the reason (no rename, no merge)
    refused = platform.launch(
        browser, roles=[INSTRUCTOR], context=mine, custom={"nbgrader_course_id": taken}
    )
    assert_json_error(refused, (400,), ("another course",))
    # bad input: an invalid id, an unknown organisation
    assert "Invalid course id" in course_map(live_server, platform, mine, "../x", expect=1).output
    unknown = lti_exchange(
        live_server,
        "course", "map", "--org", "no-such-org", "--context", mine.id, "--course-id", "x1",
        expect=1,
    )  # fmt: skip
    assert "No organisation" in unknown.output


def test_course_map_before_the_first_launch(live_server, platform, browser):
    context = LmsContext.make()
    wanted = f"ml-{tag()}"
    done = json.loads(course_map(live_server, platform, context, wanted).stdout)
    assert done["action"] == "created", done
    body = launched(platform.launch(browser, roles=[INSTRUCTOR], context=context))
    assert body["course_id"] == wanted


def test_a_wanted_id_taken_at_the_first_launch_stays_suffixed(platform, browser):
    wanted = f"shared-{tag()}"
    custom = {"nbgrader_course_id": wanted}
    first, second = LmsContext.make(), LmsContext.make()
    one = launched(platform.launch(browser, roles=[INSTRUCTOR], context=first, custom=custom))
    two = launched(platform.launch(browser, roles=[INSTRUCTOR], context=second, custom=custom))
    assert one["course_id"] == wanted
    assert two["course_id"] == f"{wanted}-{suffix(second)}"
    again = launched(platform.launch(browser, roles=[LEARNER], context=second, custom=custom))
    assert again["course_id"] == two["course_id"]

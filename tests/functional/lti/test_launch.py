"""Valid launches through the real OIDC flow: the answers (JSON and HTML), the 1EdTech valid
launch variants, role mapping, and what the launch provisions (user, course, enrolment)."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest

from lti_exchange.lti.message_launch import JWKS_REFETCHES_PER_MINUTE
from tests.functional.lti.conftest import lti_exchange, platform_add_args, register_platform
from tests.functional.lti.helpers import describe, is_identifier, launched, me
from tests.lms.platform import (
    CLAIM_CONTEXT,
    CLAIM_CUSTOM,
    CLAIM_LIS,
    INSTITUTION_FACULTY,
    INSTITUTION_MENTOR,
    INSTITUTION_STUDENT,
    INSTRUCTOR,
    LEARNER,
    SYSTEM_ADMIN,
    SYSTEM_USER,
    TEACHING_ASSISTANT,
    TEST_USER,
    UNKNOWN_ROLE,
    LmsContext,
    LmsUser,
)


def tag() -> str:
    return uuid.uuid4().hex[:8]


# --- the answers ---------------------------------------------------------------------------
def test_instructor_launch_answers_tokens_for_the_provisioned_user(live_server, platform, browser):
    user = LmsUser.make("Ada", "Lovelace")
    context = LmsContext.make()
    answer = platform.launch(browser, user=user, roles=[INSTRUCTOR], context=context)
    body = launched(answer, "Instructor")
    assert body["org_id"] == platform.org_id
    assert body["username"] == user.email.split("@")[0], body  # no preferred_username
    assert body["course_id"] == context.label, body

    who = me(live_server, body["access_token"])
    assert who.status_code == 200, describe(who)
    profile = who.json()
    assert profile["username"] == body["username"]
    assert profile["course_id"] == body["course_id"]
    assert profile["org_id"] == platform.org_id
    assert profile["role"] == "Instructor"
    assert profile["name"] == user.name
    assert profile["email"] == user.email
    assert profile["lms_user_id"] == user.sub
    assert profile["course_title"] == context.title

    # our access token, as the contract describes it
    header = jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "RS256" and header.get("kid"), header
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["iss"] == live_server.url
    assert claims["aud"] == "lti-exchange"
    for key in ("sub", "exp", "iat", "jti"):
        assert claims.get(key), claims
    assert claims["org_id"] == platform.org_id
    assert claims["username"] == body["username"]
    assert claims["course_id"] == body["course_id"]
    assert claims["role"] == "Instructor"
    assert claims["lms_user_id"] == user.sub
    assert claims["email"] == user.email
    assert abs((claims["exp"] - claims["iat"]) - body["expires_in"]) <= 2, (claims, body)


def test_learner_launch(live_server, platform, browser):
    answer = platform.launch(browser, roles=[LEARNER])
    body = launched(answer, "Learner")
    assert me(live_server, body["access_token"]).json()["role"] == "Learner"


def test_launch_without_accept_json_shows_the_landing_page(platform, browser):
    user = LmsUser.make("Pat", "Browser", preferred_username=f"pat{tag()}")
    context = LmsContext.make()
    answer = platform.launch(
        browser, user=user, roles=[LEARNER], context=context, accept_json=False
    )
    assert answer.status_code == 200, describe(answer)
    assert answer.headers["Content-Type"].startswith("text/html"), describe(answer)
    page = answer.text
    assert user.preferred_username in page
    assert context.label in page
    assert '<dd id="role">student</dd>' in page  # the role in plain words, not "Learner"
    assert "Traceback" not in page


def test_the_landing_page_links_the_users_own_notebook_server(live_server, make_platform, browser):
    lms = make_platform()
    template = "https://hub.example.edu/user/{username}"  # stored with its final "/"
    registered = register_platform(live_server, lms, notebook_url_template=template)
    assert registered["notebook_url_template"] == template + "/", registered
    user = LmsUser.make("Pat", "Hub", preferred_username=f"pat{tag()}")
    answer = lms.launch(
        browser, user=user, roles=[LEARNER], context=LmsContext.make(), accept_json=False
    )
    assert answer.status_code == 200, describe(answer)
    server = f"https://hub.example.edu/user/{user.preferred_username}/"
    assert f'href="{server}lab"' in answer.text
    assert f'"handoff_url": "{server}lti-exchange/handoff"' in answer.text


def test_a_notebook_url_template_with_other_braces_is_refused(live_server, make_platform):
    lms = make_platform()
    args = platform_add_args(
        lms, lms.client_id, list(lms.clients[lms.client_id]), "typo", "https://hub/u/{user}/"
    )
    refused = lti_exchange(live_server, *args, expect=1)
    assert "{username} and {course_id}" in refused.output, refused.output


def test_the_tool_redirects_with_every_oidc_parameter(platform, browser):
    answer = platform.launch(browser, roles=[LEARNER], lti_message_hint="opaque+hint/ü=1&x")
    launched(answer)
    record = answer.lti
    auth = record.auth_params
    assert auth["scope"] == "openid"
    assert auth["response_type"] == "id_token"
    assert auth["response_mode"] == "form_post"
    assert auth["prompt"] == "none"
    assert auth["client_id"] == platform.client_id
    assert auth["redirect_uri"] == f"{platform.tool_url}/lti/launch"
    assert auth["login_hint"] == record.login_params["login_hint"]
    assert auth["lti_message_hint"] == "opaque+hint/ü=1&x"
    assert len(auth["state"]) >= 16 and len(auth["nonce"]) >= 16, auth
    again = platform.launch(browser, roles=[LEARNER])
    launched(again)
    assert again.lti.auth_params["state"] != auth["state"]
    assert again.lti.auth_params["nonce"] != auth["nonce"]


def test_login_without_lti_message_hint_sends_none(platform, browser):
    answer = platform.launch(browser, roles=[LEARNER], lti_message_hint=None)
    launched(answer)
    assert "lti_message_hint" not in answer.lti.auth_params


def test_login_by_post(platform, browser):
    launched(platform.launch(browser, roles=[LEARNER], login_method="POST"), "Learner")


def test_login_without_client_id_and_deployment_hints(platform, browser):
    """``client_id`` and ``lti_deployment_id`` are optional login parameters (Core §4.1)."""
    answer = platform.launch(
        browser, roles=[LEARNER], login={"client_id": None, "lti_deployment_id": None}
    )
    launched(answer, "Learner")


def test_second_deployment_is_accepted(platform, browser):
    answer = platform.launch(browser, roles=[INSTRUCTOR], deployment_id="2")
    launched(answer, "Instructor")


def test_aud_as_a_list_with_only_our_client_id_and_no_azp(platform, browser):
    def aud_list(claims):
        claims["aud"] = [platform.client_id]
        del claims["azp"]
        return claims

    launched(platform.launch(browser, roles=[LEARNER], mutate=aud_list), "Learner")


def test_aud_as_a_list_with_azp(platform, browser):
    def aud_list(claims):
        claims["aud"] = [platform.client_id]
        claims["azp"] = platform.client_id
        return claims

    launched(platform.launch(browser, roles=[LEARNER], mutate=aud_list), "Learner")


def test_unknown_claims_are_ignored(platform, browser):
    def extra(claims):
        claims["https://example.edu/claim/favourite_colour"] = {"value": "blue"}
        claims["https://purl.imsglobal.org/spec/lti/claim/role_scope_mentor"] = ["someone"]
        return claims

    launched(platform.launch(browser, roles=[INSTRUCTOR], mutate=extra), "Instructor")


def test_two_browsers_launch_the_same_user_independently(platform, browser):
    import requests

    user = LmsUser.make()
    context = LmsContext.make()
    with requests.Session() as other:
        first = launched(platform.launch(browser, user=user, context=context))
        second = launched(platform.launch(other, user=user, context=context))
    assert first["username"] == second["username"]
    assert first["refresh_token"] != second["refresh_token"]


def test_key_rotation_at_the_platform(live_server, make_platform, browser):
    """The platform starts signing with a new kid after the tool cached its old JWKS."""
    lms = make_platform(name="Rotating Brightspace", product_family_code="desire2learn")
    context = LmsContext.make()
    old_kid = lms.signing_kid
    first = lms.launch(browser, roles=[INSTRUCTOR], context=context)
    launched(first, "Instructor")
    assert first.lti.header["kid"] == old_kid
    fetched_before = lms.jwks_requests
    assert fetched_before >= 1
    launched(lms.launch(browser, roles=[LEARNER], context=context), "Learner")
    assert lms.jwks_requests == fetched_before, "the tool does not cache the platform's JWKS"
    new_kid = lms.rotate_key()
    rotated = lms.launch(browser, roles=[LEARNER], context=context)
    assert rotated.lti.header["kid"] == new_kid
    launched(rotated, "Learner")
    # the unknown kid made the tool fetch the key set again, once (not on every launch)
    assert 1 <= lms.jwks_requests - fetched_before <= 2, lms.jwks_requests - fetched_before
    refetched = lms.jwks_requests
    launched(lms.launch(browser, roles=[LEARNER], context=context), "Learner")
    assert lms.jwks_requests == refetched


@pytest.mark.all_backends  # the re-fetch budget is the key-value store's insert-if-absent
def test_unknown_kids_do_not_make_the_tool_fetch_the_jwks_each_time(make_platform, browser):
    """Re-downloading on a kid miss is rate-limited: random kids cannot turn the tool into a
    request amplifier against the LMS."""
    lms = make_platform(name="Probed Moodle")
    launched(lms.launch(browser, roles=[LEARNER]))
    before = lms.jwks_requests
    first_minute = int(time.time() // 60)
    for _ in range(25):
        answer = lms.launch(browser, roles=[LEARNER], header="wrong_kid")
        assert 400 <= answer.status_code < 500, answer.text
    minutes = int(time.time() // 60) - first_minute + 1  # the budget is per clock minute
    fetched = lms.jwks_requests - before
    assert fetched <= JWKS_REFETCHES_PER_MINUTE * minutes and fetched < 25, (fetched, minutes)


# --- 1EdTech certification: valid teacher and student launches ----------------------------
def _only_email(user: LmsUser) -> LmsUser:
    user.name = user.given_name = user.family_name = None
    return user


def _only_names(user: LmsUser) -> LmsUser:
    user.email = None
    return user


def _no_pii(user: LmsUser) -> LmsUser:
    user.name = user.given_name = user.family_name = user.email = None
    user.person_sourcedid = None
    return user


VALID_VARIANTS = [
    # (id, roles, user change, expected role)
    ("instructor", [INSTRUCTOR], None, "Instructor"),
    (
        "instructor-multiple-roles",
        [INSTRUCTOR, INSTITUTION_FACULTY, SYSTEM_USER],
        None,
        "Instructor",
    ),
    ("instructor-short-role", ["Instructor"], None, "Instructor"),
    ("instructor-with-unknown-role", [INSTRUCTOR, UNKNOWN_ROLE], None, "Instructor"),
    ("instructor-only-unknown-role", [UNKNOWN_ROLE], None, "Learner"),
    ("instructor-no-role", [""], None, "Learner"),
    ("instructor-only-email", [INSTRUCTOR], _only_email, "Instructor"),
    ("instructor-only-names", [INSTRUCTOR], _only_names, "Instructor"),
    ("instructor-no-pii", [INSTRUCTOR], _no_pii, "Instructor"),
    ("learner", [LEARNER], None, "Learner"),
    (
        "learner-multiple-roles",
        [LEARNER, INSTITUTION_STUDENT, INSTITUTION_MENTOR],
        None,
        "Learner",
    ),
    ("learner-short-role", ["Learner"], None, "Learner"),
    ("learner-unknown-role", [LEARNER, UNKNOWN_ROLE], None, "Learner"),
    ("learner-no-role", [""], None, "Learner"),
    ("learner-only-email", [LEARNER], _only_email, "Learner"),
    ("learner-only-names", [LEARNER], _only_names, "Learner"),
    ("learner-no-pii", [LEARNER], _no_pii, "Learner"),
]


@pytest.mark.parametrize(
    "roles,change,expected", [v[1:] for v in VALID_VARIANTS], ids=[v[0] for v in VALID_VARIANTS]
)
def test_certification_valid_launch(live_server, platform, browser, roles, change, expected):
    user = LmsUser.make("Val", "Id")
    if change is not None:
        user = change(user)
    body = launched(platform.launch(browser, user=user, roles=roles), expected)
    profile = me(live_server, body["access_token"]).json()
    assert profile["role"] == expected
    assert profile["lms_user_id"] == user.sub
    if user.email is None:
        assert not profile["email"], profile
    else:
        assert profile["email"] == user.email
    if user.name is None:
        assert not profile["name"], profile
    else:
        assert profile["name"] == user.name


@pytest.mark.parametrize("roles", [[INSTRUCTOR], [LEARNER]], ids=["instructor", "learner"])
def test_certification_valid_launch_with_email_and_no_context(platform, browser, roles):
    """ "Launch ... With Email No Context": a valid LTI launch. The exchange needs a course, so
    it may answer 200, or a 400 telling the user to launch from a course; never a refusal of
    the launch itself (401/403) and never a 500."""
    user = _only_email(LmsUser.make())
    answer = platform.launch(
        browser,
        user=user,
        roles=roles,
        context=None,
        custom={"nbgrader_course_id": f"nocontext-{tag()}"},
    )
    if answer.status_code == 200:
        body = launched(answer)
        assert body["course_id"] == answer.lti.claims[CLAIM_CUSTOM]["nbgrader_course_id"]
    else:
        assert answer.status_code == 400, describe(answer)
        message = answer.json()["error"]["message"].lower()
        assert "course" in message or "context" in message, message


# --- roles -----------------------------------------------------------------------------------
# The whole table is tests/unit/test_rules.py; these show the API applies that rule.
ROLE_CASES = [
    ("canvas-ta", [TEACHING_ASSISTANT, INSTRUCTOR], "TeachingAssistant"),
    ("membership-instructor", [INSTRUCTOR], "Instructor"),
    ("system-administrator", [SYSTEM_ADMIN], "Instructor"),
    ("unknown-role", [UNKNOWN_ROLE], "Learner"),
    ("test-user-learner", [TEST_USER, LEARNER], "Learner"),
]


@pytest.mark.parametrize(
    "roles,expected", [c[1:] for c in ROLE_CASES], ids=[c[0] for c in ROLE_CASES]
)
def test_roles_are_mapped(live_server, platform, browser, roles, expected):
    body = launched(platform.launch(browser, roles=roles), expected)
    members = live_server.api("GET", f"courses/{body['course_id']}/members", body["access_token"])
    if expected == "Learner":
        assert members.status_code == 403, describe(members)
    else:
        assert members.status_code == 200, describe(members)
        mine = [m for m in members.json()["members"] if m["username"] == body["username"]]
        assert [m["role"] for m in mine] == [expected], members.json()


# --- provisioning --------------------------------------------------------------------------
def test_username_from_preferred_username(platform, browser):
    wanted = f"jane.doe{tag()}"
    user = LmsUser.make("Jane", "Doe", preferred_username=wanted)
    assert launched(platform.launch(browser, user=user))["username"] == wanted


def test_username_from_the_email_local_part(platform, browser):
    user = LmsUser.make("Mo", "Khan", email=f"mkhan{tag()}@students.example.edu")
    body = launched(platform.launch(browser, user=user))
    assert body["username"] == user.email.split("@")[0]


def test_username_from_lis_person_sourcedid(platform, browser):
    user = LmsUser.make(email=None, person_sourcedid=f"SIS-{tag()}")
    assert launched(platform.launch(browser, user=user))["username"] == user.person_sourcedid


def test_username_from_sub_is_stable(platform, browser):
    user = _no_pii(LmsUser.make(sub=f"{uuid.uuid4()}|canvas:{tag()}"))
    first = launched(platform.launch(browser, user=user))
    again = launched(platform.launch(browser, user=user))
    assert first["username"] == again["username"]
    other = _no_pii(LmsUser.make())
    assert launched(platform.launch(browser, user=other))["username"] != first["username"]


# Every sanitising case is in tests/unit/test_rules.py; these show the launch applies it.
@pytest.mark.parametrize(
    "preferred", ["José Müller/../etc", "x" * 300], ids=["unicode-and-slashes", "long"]
)
def test_usernames_are_sanitised(platform, browser, preferred):
    user = LmsUser.make(preferred_username=preferred)
    first = launched(platform.launch(browser, user=user))
    assert is_identifier(first["username"]), first["username"]
    assert len(first["username"]) <= 100
    again = launched(platform.launch(browser, user=user))
    assert again["username"] == first["username"]


def test_same_user_launching_again_keeps_the_username(platform, browser):
    user = LmsUser.make()
    context = LmsContext.make()
    first = launched(platform.launch(browser, user=user, context=context, roles=[LEARNER]))
    user.email = f"changed.{tag()}@example.edu"  # profile changes in the LMS keep the student id
    user.preferred_username = f"renamed{tag()}"
    second = launched(platform.launch(browser, user=user, context=context, roles=[LEARNER]))
    assert second["username"] == first["username"]
    assert second["course_id"] == first["course_id"]


@pytest.mark.all_backends  # unique-username retry: savepoint + IntegrityError differ by database
def test_colliding_preferred_usernames_get_different_usernames(platform, browser):
    shared = f"sam{tag()}"
    first_user = LmsUser.make("Sam", "One", preferred_username=shared)
    second_user = LmsUser.make("Sam", "Two", preferred_username=shared)
    context = LmsContext.make()
    first = launched(platform.launch(browser, user=first_user, context=context))
    second = launched(platform.launch(browser, user=second_user, context=context))
    assert first["username"] == shared
    assert second["username"] != shared
    assert is_identifier(second["username"])
    again = launched(platform.launch(browser, user=second_user, context=context))
    assert again["username"] == second["username"]


def test_course_id_from_the_custom_claim(platform, browser):
    wanted = f"ds-101-{tag()}"
    body = launched(
        platform.launch(browser, roles=[INSTRUCTOR], custom={"nbgrader_course_id": wanted})
    )
    assert body["course_id"] == wanted


def test_course_id_from_the_context_label(platform, browser):
    context = LmsContext.make(label=f"MATH-{tag()}")
    body = launched(platform.launch(browser, roles=[INSTRUCTOR], context=context))
    assert body["course_id"] == context.label


def test_course_id_from_an_unsafe_label_is_sanitised_and_stable(platform, browser):
    context = LmsContext.make(label=f"Stats 101 / Fall {tag()} (Section A)")
    first = launched(platform.launch(browser, roles=[INSTRUCTOR], context=context))
    assert is_identifier(first["course_id"]), first
    again = launched(platform.launch(browser, roles=[LEARNER], context=context))
    assert again["course_id"] == first["course_id"]


def test_instructor_and_students_share_the_course(live_server, platform, browser):
    context = LmsContext.make()
    teacher = launched(platform.launch(browser, roles=[INSTRUCTOR], context=context))
    students = [
        launched(platform.launch(browser, roles=[LEARNER], context=context)) for _ in range(3)
    ]
    assert {s["course_id"] for s in students} == {teacher["course_id"]}
    members = live_server.api(
        "GET", f"courses/{teacher['course_id']}/members", teacher["access_token"]
    )
    assert members.status_code == 200, describe(members)
    roles = {m["username"]: m["role"] for m in members.json()["members"]}
    assert roles[teacher["username"]] == "Instructor"
    for student in students:
        assert roles[student["username"]] == "Learner"


def test_relaunch_with_a_changed_role_updates_the_enrolment(live_server, platform, browser):
    user = LmsUser.make()
    context = LmsContext.make()
    as_teacher = launched(platform.launch(browser, user=user, context=context, roles=[INSTRUCTOR]))
    course = as_teacher["course_id"]
    members = live_server.api("GET", f"courses/{course}/members", as_teacher["access_token"])
    assert members.status_code == 200, describe(members)

    demoted = launched(
        platform.launch(browser, user=user, context=context, roles=[LEARNER]), "Learner"
    )
    assert demoted["username"] == as_teacher["username"]
    assert me(live_server, demoted["access_token"]).json()["role"] == "Learner"
    refused = live_server.api("GET", f"courses/{course}/members", demoted["access_token"])
    assert refused.status_code == 403, describe(refused)
    # the old instructor token does not keep staff rights either (the enrolment is checked)
    stale = live_server.api("GET", f"courses/{course}/members", as_teacher["access_token"])
    assert stale.status_code == 403, describe(stale)

    promoted = launched(
        platform.launch(browser, user=user, context=context, roles=[INSTRUCTOR]), "Instructor"
    )
    members = live_server.api("GET", f"courses/{course}/members", promoted["access_token"])
    assert members.status_code == 200, describe(members)


def test_same_label_in_two_organisations_stays_apart(live_server, platform, make_platform):
    """Two LMSs (two organisations) with a course of the same label: separate courses."""
    import requests

    from tests.functional.lti.helpers import release

    other = make_platform(name="Other Canvas", product_family_code="canvas")
    assert other.org_id != platform.org_id
    label = f"BIO-{tag()}"
    with requests.Session() as one, requests.Session() as two:
        teacher = launched(
            platform.launch(one, roles=[INSTRUCTOR], context=LmsContext.make(label=label))
        )
        student = launched(other.launch(two, roles=[LEARNER], context=LmsContext.make(label=label)))
    assert teacher["org_id"] == platform.org_id
    assert student["org_id"] == other.org_id
    assert teacher["course_id"] == student["course_id"] == label
    release(live_server, teacher["course_id"], teacher["access_token"])
    listing = live_server.api("GET", f"courses/{label}/assignments", student["access_token"])
    assert listing.status_code == 200, describe(listing)
    assert listing.json()["assignments"] == [], listing.json()


def test_two_registrations_on_one_issuer(live_server, make_platform, browser):
    """Canvas cloud: one issuer, a client id per customer; each is its own organisation."""
    from tests.functional.lti.conftest import register_platform

    lms = make_platform()  # its own issuer: the shared platform keeps a single client
    client_id = lms.add_client(deployment_ids=("7:abc",))
    org_id = register_platform(live_server, lms, client_id=client_id)["org_id"]
    assert org_id != lms.org_id
    body = launched(lms.launch(browser, roles=[LEARNER], client_id=client_id))
    assert body["org_id"] == org_id
    assert body["course_id"]
    # the first registration still launches into its own organisation
    assert launched(lms.launch(browser, roles=[LEARNER]))["org_id"] == lms.org_id


def test_launch_claims_reach_the_tool(platform, browser):
    """The simulated platform sends a realistic claim set (guards the platform itself)."""
    answer = platform.launch(browser, roles=[INSTRUCTOR])
    launched(answer)
    claims = answer.lti.claims
    assert claims[CLAIM_CONTEXT]["label"]
    assert claims[CLAIM_LIS]["person_sourcedid"]
    assert "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint" in claims
    assert "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice" in claims


@pytest.mark.all_backends  # concurrency: the races live in the database
def test_simultaneous_first_launches_into_a_new_course(live_server, platform):
    """A class opening the assignment at the same moment, before the course exists: every
    launch succeeds (on both workers) and they all land in one course."""
    import threading

    import requests

    context = LmsContext.make()
    people = [LmsUser.make(f"S{i}", "Rush") for i in range(8)]
    barrier = threading.Barrier(len(people))
    answers: dict[int, requests.Response] = {}

    def synchronised(id_token):
        barrier.wait(timeout=60)  # every browser posts its form at once
        return id_token

    def go(index: int) -> None:
        with requests.Session() as own_browser:
            answers[index] = platform.launch(
                own_browser,
                user=people[index],
                context=context,
                roles=[LEARNER],
                form={"id_token": synchronised},
            )

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(people))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    bodies = [launched(answers[i], "Learner") for i in range(len(people))]
    assert {b["course_id"] for b in bodies} == {context.label}, bodies
    assert len({b["username"] for b in bodies}) == len(people)


@pytest.mark.all_backends  # concurrency: the races live in the database
def test_simultaneous_first_launches_of_one_user(live_server, platform, browser):
    """A new user opening the assignment in several tabs at once gets one account."""
    import threading

    import requests

    context = LmsContext.make()
    launched(platform.launch(browser, context=context, roles=[INSTRUCTOR]))  # the course exists
    user = LmsUser.make("Tab", "Opener")
    barrier = threading.Barrier(4)
    answers: dict[int, requests.Response] = {}

    def synchronised(id_token):
        barrier.wait(timeout=60)
        return id_token

    def go(index: int) -> None:
        with requests.Session() as tab:
            answers[index] = platform.launch(
                tab, user=user, context=context, roles=[LEARNER], form={"id_token": synchronised}
            )

    threads = [threading.Thread(target=go, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    bodies = [launched(answers[i], "Learner") for i in range(4)]
    assert {b["username"] for b in bodies} == {user.email.split("@")[0]}, bodies

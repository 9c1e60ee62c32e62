"""The service's pure rules, tested directly: role mapping, username candidates, identifiers,
grade parsing and timestamp formatting.

The HTTP-level tests keep a representative few of these cases each (``tests/functional``), to
show the rule is the one the API applies; the full tables live here, where they cost nothing.
(Archive member checks are tested the same way in ``tests/unit/test_archives.py``.)
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from lti_exchange.errors import InvalidIdentifier, InvalidRequest
from lti_exchange.identifiers import is_valid_identifier, validate_identifier
from lti_exchange.lti.roles import map_roles
from lti_exchange.services.grades import MAX_SCORE, parse_grades
from lti_exchange.services.provisioning import username_candidates
from lti_exchange.timestamps import format_timestamp, parse_timestamp
from tests.lms.platform import (
    CLAIM_CUSTOM,
    CLAIM_LIS,
    CONTENT_DEVELOPER,
    CONTEXT_ADMIN,
    INSTITUTION_ADMIN,
    INSTITUTION_FACULTY,
    INSTRUCTOR,
    LEARNER,
    MENTOR,
    SYSTEM_ADMIN,
    TEACHING_ASSISTANT,
    TEST_USER,
    UNKNOWN_ROLE,
)

DEFAULT_RULE = "preferred_username,email_local_part,lis_person_sourcedid,sub"

# --- role mapping ------------------------------------------------------------------------------
# (case, roles claim, the course role the exchange gives)
ROLE_CASES = [
    ("canvas-ta", [TEACHING_ASSISTANT, INSTRUCTOR], "TeachingAssistant"),
    ("canvas-ta-reversed", [INSTRUCTOR, TEACHING_ASSISTANT], "TeachingAssistant"),
    (
        "canvas-ta-lowercase-path",
        [
            "http://purl.imsglobal.org/vocab/lis/v2/membership/instructor#TeachingAssistant",
            INSTRUCTOR,
        ],
        "TeachingAssistant",
    ),
    ("ta-subrole-alone", [TEACHING_ASSISTANT], "TeachingAssistant"),
    ("membership-instructor", [INSTRUCTOR], "Instructor"),
    ("membership-learner", [LEARNER], "Learner"),
    ("short-learner", ["Learner"], "Learner"),
    ("short-instructor", ["Instructor"], "Instructor"),
    ("learner-and-instructor", [LEARNER, INSTRUCTOR], "Instructor"),
    ("instructor-and-learner", [INSTRUCTOR, LEARNER], "Instructor"),
    ("content-developer", [CONTENT_DEVELOPER], "Instructor"),
    ("unknown-role", [UNKNOWN_ROLE], "Learner"),
    ("empty-list", [], "Learner"),
    ("empty-string", [""], "Learner"),
    ("not-a-list", "Instructor", "Learner"),
    ("mentor-only", [MENTOR], "Learner"),
    ("system-administrator", [SYSTEM_ADMIN], "Instructor"),
    ("institution-administrator", [INSTITUTION_ADMIN], "Instructor"),
    ("context-administrator", [CONTEXT_ADMIN], "Instructor"),
    ("institution-faculty-only", [INSTITUTION_FACULTY], "Learner"),
    (
        "learner-subrole-named-instructor",
        ["http://purl.imsglobal.org/vocab/lis/v2/membership/Learner#Instructor"],
        "Learner",
    ),
    ("substring-is-not-a-role", ["http://example.com/Instructor"], "Learner"),
    ("test-user-learner", [TEST_USER, LEARNER], "Learner"),
]


@pytest.mark.parametrize(
    "roles,expected", [c[1:] for c in ROLE_CASES], ids=[c[0] for c in ROLE_CASES]
)
def test_roles_are_mapped(roles, expected):
    assert map_roles(roles).course_role == expected


def test_administrators_are_told_apart_but_teach_as_instructors():
    mapped = map_roles([SYSTEM_ADMIN, LEARNER])
    assert (mapped.role, mapped.course_role) == ("Administrator", "Instructor")


def test_the_test_user_flag():
    assert map_roles([TEST_USER, LEARNER]).test_user
    assert not map_roles([LEARNER]).test_user


# --- username candidates -----------------------------------------------------------------------
def sub_fallback(sub: str) -> str:
    return "user-" + hashlib.sha256(sub.encode()).hexdigest()[:16]


def test_candidates_follow_the_rule_and_end_with_the_sub_fallback():
    claims = {
        "sub": "s-1",
        "preferred_username": "jane.doe",
        "email": "mkhan@students.example.edu",
        CLAIM_LIS: {"person_sourcedid": "SIS-42"},
    }
    assert username_candidates(claims, DEFAULT_RULE) == [
        "jane.doe",
        "mkhan",
        "SIS-42",
        "s-1",
        sub_fallback("s-1"),
    ]
    assert username_candidates(claims, "email_local_part") == ["mkhan", sub_fallback("s-1")]


def test_missing_claims_are_skipped():
    claims = {"sub": "s-2", "email": "no-at-sign"}
    assert username_candidates(claims, DEFAULT_RULE) == ["s-2", sub_fallback("s-2")]


def test_a_sub_that_is_no_identifier_becomes_a_stable_hash():
    sub = "1f0e|canvas:abc"
    first = username_candidates({"sub": sub}, "sub")
    assert first == [sub_fallback(sub), sub_fallback(sub)]
    assert username_candidates({"sub": sub}, "sub") == first
    assert username_candidates({"sub": sub + "x"}, "sub") != first


def test_a_custom_claim_can_name_the_username():
    claims = {"sub": "s-3", CLAIM_CUSTOM: {"student_number": "20261234"}}
    assert username_candidates(claims, "student_number")[0] == "20261234"


@pytest.mark.parametrize(
    "preferred",
    [
        "José Müller/../etc",
        "-leading-dash",
        ".hidden",
        "name with spaces",
        "x" * 300,
        "trailing-newline\n",
        "semi;colon$(rm -rf)",
        "ü",
    ],
    ids=[
        "unicode-and-slashes",
        "leading-dash",
        "leading-dot",
        "spaces",
        "long",
        "newline",
        "shell",
        "nothing-left",
    ],
)
def test_usernames_are_sanitised_and_stable(preferred):
    first = username_candidates({"sub": "s", "preferred_username": preferred}, DEFAULT_RULE)[0]
    assert is_valid_identifier(first), first
    again = username_candidates({"sub": "t", "preferred_username": preferred}, DEFAULT_RULE)[0]
    assert again == first


def test_sanitised_usernames_of_different_people_differ():
    a = username_candidates({"sub": "a", "preferred_username": "jo smith"}, DEFAULT_RULE)[0]
    b = username_candidates({"sub": "b", "preferred_username": "jo/smith"}, DEFAULT_RULE)[0]
    assert a != b


# --- identifiers -------------------------------------------------------------------------------
BAD_IDS = {
    "dotdot-slash": "../x",
    "slash": "a/b",
    "dotdot": "..",
    "dot": ".hidden",
    "leading-dash": "-x",
    "101-chars": "a" * 101,
    "newline": "a\nb",
    "trailing-newline": "ps1\n",
    "nul": "a\x00b",
    "space": "a b",
    "tab": "a\tb",
    "unicode": "été",
    "backslash": "a\\b",
    "empty": "",
    "not-a-string": 7,
    "none": None,
}


@pytest.mark.parametrize("bad", BAD_IDS.values(), ids=BAD_IDS.keys())
def test_invalid_identifiers_are_refused_with_the_rule(bad):
    assert not is_valid_identifier(bad)
    with pytest.raises(InvalidIdentifier) as refused:
        validate_identifier(bad, "assignment")
    assert "Invalid assignment id" in refused.value.message
    assert "letters, digits" in refused.value.message


@pytest.mark.parametrize("good", ["ps1", "a" * 100, "_x", "jane.doe@example.org", "A-1_b.c"])
def test_valid_identifiers_are_kept(good):
    assert validate_identifier(good, "course") == good


# --- grade parsing -----------------------------------------------------------------------------
def grade(**changes) -> dict:
    return {"assignment_id": "ps1", "student_id": "alice", "score": 7, "max_score": 10, **changes}


def test_a_grade_is_parsed():
    (parsed,) = parse_grades({"grades": [grade(submitted_at="2026-11-25 20:51:10.248006 UTC")]})
    assert (parsed.assignment_id, parsed.student_id) == ("ps1", "alice")
    assert (parsed.score, parsed.max_score) == (7.0, 10.0)
    assert parsed.submitted_at == datetime(2026, 11, 25, 20, 51, 10, 248006, tzinfo=UTC)


@pytest.mark.parametrize(
    "score, max_score",
    [
        (-1, 10),
        (1, 0),
        (1, -5),
        (True, 10),
        ("7", 10),
        (None, 10),
        (float("nan"), 10),
        (float("inf"), 10),
        (10**400, 10),
        (MAX_SCORE * 2, MAX_SCORE * 4),
    ],
    ids=[
        "negative",
        "zero-max",
        "negative-max",
        "bool",
        "string",
        "missing",
        "nan",
        "inf",
        "huge-int",
        "over-max",
    ],
)
def test_bad_scores_are_refused(score, max_score):
    with pytest.raises(InvalidRequest) as refused:
        parse_grades({"grades": [grade(score=score, max_score=max_score)]})
    assert "grades[0]" in refused.value.message


@pytest.mark.parametrize(
    "body",
    [{}, {"grades": {}}, {"grades": [1]}, {"grades": [grade(submitted_at=5)]}],
    ids=["no-grades", "not-a-list", "not-an-object", "timestamp-not-a-string"],
)
def test_bad_bodies_are_refused(body):
    with pytest.raises(InvalidRequest):
        parse_grades(body)


def test_a_bad_identifier_in_a_grade_is_refused():
    with pytest.raises(InvalidIdentifier):
        parse_grades({"grades": [grade(student_id="../bob")]})


# --- timestamps --------------------------------------------------------------------------------
def test_timestamps_are_formatted_as_nbgrader_writes_them():
    moment = datetime(2026, 11, 25, 21, 51, 10, 248006, tzinfo=timezone(timedelta(hours=1)))
    assert format_timestamp(moment) == "2026-11-25 20:51:10.248006 UTC"


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-25 20:51:10.248006 UTC",
        "2026-11-25T20:51:10.248006Z",
        "2026-11-25T21:51:10.248006+01:00",
        "2026-11-25 20:51:10.248006",
    ],
    ids=["nbgrader", "iso-z", "iso-offset", "naive-is-utc"],
)
def test_timestamps_round_trip(text):
    parsed = parse_timestamp(text)
    assert parsed.tzinfo is not None
    assert format_timestamp(parsed) == "2026-11-25 20:51:10.248006 UTC"


@pytest.mark.parametrize(
    "text, words",
    [
        ("yesterday", "Invalid timestamp"),
        ("1969-12-31T23:59:59Z", "out of range"),
        ("9999-12-31T23:59:59-01:00", "out of range"),
        ("0001-01-01T00:00:00+01:00", "out of range"),
    ],
    ids=["not-a-time", "before-1970", "after-9999-in-utc", "overflow"],
)
def test_bad_timestamps_are_refused(text, words):
    with pytest.raises(InvalidRequest) as refused:
        parse_timestamp(text)
    assert words in refused.value.message

"""Pure rules of course-id derivation and of Dynamic Registration's URL checks."""

from __future__ import annotations

import pytest

from lti_exchange.lti.dynamic_registration import RegistrationRefused, checked_url, issuer_matches
from lti_exchange.services.course_mapping import candidates, requested_code, slug


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("course-v1:InteropX+NB303+2026_T1", "course-v1-InteropX-NB303-2026_T1"),
        ("  Stats 101 / Fall (A) ", "Stats-101-Fall-A"),
        ("NB303", "NB303"),
        ("-.@x", "x"),
        ("ü ß", "course"),
        ("a" * 300, "a" * 91),
    ],
)
def test_slug_is_readable(label, expected):
    assert slug(label) == expected


def test_candidates_add_a_short_then_a_longer_suffix():
    base, four, eight = candidates("nb303", "ctx-1")
    assert base == "nb303"
    assert four.startswith("nb303-") and len(four) == len("nb303-") + 4
    assert eight.startswith(four) and len(eight) == len("nb303-") + 8


@pytest.mark.parametrize(
    ("custom", "expected"),
    [
        ({"nbgrader_course_id": "nb303"}, "nb303"),
        ({"nbgrader_course_id": "NB 303"}, "NB-303"),
        ({"nbgrader_course_id": "$Context.id"}, None),
        ({"nbgrader_course_id": "  "}, None),
        ({"nbgrader_course_id": "///"}, None),
        ({"other": "x"}, None),
        (["nb303"], None),
    ],
)
def test_requested_code(custom, expected):
    assert requested_code(custom, "nbgrader_course_id") == expected


@pytest.mark.parametrize(
    ("issuer", "url", "ok"),
    [
        ("https://lms.example.edu", "https://lms.example.edu/mod/lti/openid-configuration.php", 1),
        ("https://lms.example.edu/", "https://lms.example.edu/.well-known/openid-configuration", 1),
        ("https://lms.example.edu/moodle", "https://lms.example.edu/moodle/lti/config", 1),
        ("https://lms.example.edu/moodle", "https://lms.example.edu/moodlex/lti/config", 0),
        ("https://lms.example.edu", "https://lms.example.edu.evil.com/config", 0),
        ("https://lms.example.edu", "http://lms.example.edu/config", 0),
        ("https://lms.example.edu", "https://lms.example.edu:8443/config", 0),
        ("https://other.example.edu", "https://lms.example.edu/config", 0),
        ("https://lms.example.edu?x=1", "https://lms.example.edu/config", 0),
    ],
)
def test_issuer_must_prefix_the_configuration_url(issuer, url, ok):
    assert issuer_matches(issuer, url) is bool(ok)


@pytest.mark.parametrize(
    "url",
    [
        "http://lms.example.edu/config",
        "http://10.0.0.1/config",
        "ftp://lms.example.edu/config",
        "https://user:pw@lms.example.edu/config",
        "https://lms.example.edu/config#frag",
        "https:///config",
        "https://lms.example.edu:99999/config",
        "https://lms.example.edu/" + "x" * 1000,
        None,
    ],
)
def test_unsafe_urls_are_refused(url):
    with pytest.raises(RegistrationRefused):
        checked_url(url, "openid_configuration URL")


@pytest.mark.parametrize(
    "url", ["https://lms.example.edu/config", "http://127.0.0.1:8080/c", "http://[::1]/c"]
)
def test_https_or_loopback_urls_pass(url):
    assert checked_url(url, "openid_configuration URL") == url

"""The registration's notebook URL template: checked when the LMS is registered, filled in
without failing at launch."""

from __future__ import annotations

import pytest

from lti_exchange.lti.notebook_url import check_template, notebook_url


@pytest.mark.parametrize(
    ("template", "stored"),
    [
        (
            "https://hub.example.edu/hub/user-redirect/",
            "https://hub.example.edu/hub/user-redirect/",
        ),
        ("https://hub.example.edu/user/{username}", "https://hub.example.edu/user/{username}/"),
        (
            " http://127.0.0.1:8000/{course_id}/{username}/ ",
            "http://127.0.0.1:8000/{course_id}/{username}/",
        ),
    ],
)
def test_good_templates_are_kept_ending_with_a_slash(template, stored):
    assert check_template(template) == stored


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("https://hub.example.edu/user/{user}/", "braces"),  # a typo failed every launch
        ("https://hub.example.edu/user/{username.__class__}/", "braces"),
        ("https://hub.example.edu/user/{}/", "braces"),
        ("https://hub.example.edu/user/{username/", "braces"),
        ("hub.example.edu/user/{username}/", "http(s) URL"),
        ("javascript:alert(1)//", "http(s) URL"),
        ("https:///user/", "http(s) URL"),
        ("https://hub.example.edu/user/?next=lab", "query or fragment"),
        ("https://hub.example.edu/user/#lab", "query or fragment"),
        ("https://[::1/user/", "not a URL"),
    ],
)
def test_bad_templates_are_refused_saying_what_to_change(template, words):
    with pytest.raises(ValueError, match="notebook URL template") as refused:
        check_template(template)
    assert words in str(refused.value)


def test_a_template_longer_than_its_column_is_refused():
    longest = "https://hub.example.edu/" + "u" * (1000 - 25) + "/"  # as stored, with its "/"
    assert check_template(longest) == longest
    with pytest.raises(ValueError, match="at most 1000"):
        check_template(longest[:-1] + "u")  # 1000 characters, 1001 once its "/" is added


def test_the_values_are_filled_in():
    template = "https://hub.example.edu/{course_id}/user/{username}/"
    assert notebook_url(template, "ana@uni.edu", "cs101") == (
        "https://hub.example.edu/cs101/user/ana@uni.edu/"
    )


def test_no_template_is_no_url():
    assert notebook_url(None, "ana", "cs101") == ""
    assert notebook_url("", "ana", "cs101") == ""


def test_a_template_stored_before_the_check_never_fails_a_launch():
    assert notebook_url("https://hub/{user}/{username}", "ana", "c") == "https://hub/{user}/ana/"

"""The hot paths' assignment columns (``AssignmentColumns``) give the same row whether they
rode along with the authorising query or were asked for on their own afterwards: for a
released assignment, one without any release (none to fetch, but one to refuse a submission
to), and a name that is no assignment."""

from __future__ import annotations

from lti_exchange.api.common import ANY_ROLE
from lti_exchange.services.assignments import _RELEASE_TO_FETCH
from lti_exchange.services.authorisation import authorise_course
from lti_exchange.services.submissions import _SUBMIT_TARGET
from tests.support import NOTEBOOK, add_unreleased_assignment, release_as_teacher


def test_a_row_with_the_authorisation_is_the_row_asked_for_alone(live_server, course):
    release_as_teacher(live_server, course, "ps1", {"ps1.ipynb": NOTEBOOK})
    add_unreleased_assignment(live_server, course, "draft")
    state = live_server.state()
    claims = state.tokens.verify(live_server.issue_token("teacher", course, "Instructor"))
    expected = {  # (columns, name) -> whether a row is found
        (_RELEASE_TO_FETCH, "ps1"): True,
        (_RELEASE_TO_FETCH, "draft"): False,  # nothing was ever released
        (_RELEASE_TO_FETCH, "nope"): False,
        (_SUBMIT_TARGET, "ps1"): True,
        (_SUBMIT_TARGET, "draft"): True,  # there: the service refuses it as not released
        (_SUBMIT_TARGET, "nope"): False,
    }
    for (columns, name), found in expected.items():
        with state.session_factory() as session:
            joined = authorise_course(session, claims, course, ANY_ROLE, columns.lookup(name))
            with_authorisation = columns.row(session, joined, name)
            alone = authorise_course(session, claims, course, ANY_ROLE)
            asked_alone = columns.row(session, alone, name)
        assert joined.found_by(columns.lookup(name)) is not None  # it did ride along
        assert alone.found_by(columns.lookup(name)) is None
        assert (with_authorisation is not None, asked_alone is not None) == (found, found), name
        if found:
            assert asked_alone._asdict() == {
                key: value
                for key, value in with_authorisation._asdict().items()
                if key in asked_alone._fields
            }

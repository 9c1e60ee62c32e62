"""Due dates from the LMS's line items, read by the worker (never during a launch).

A launch of an LMS link that is bound to an assignment, carries the link's line item (the AGS
claim's ``lineitem``) and states no ``due_at`` custom parameter asks for a read
(``request_lineitem_due_date``): a request ``lineitem-due:<link id>`` in the shared key-value
store. A learner's launch asks at most once per ``REFRESH_SECONDS`` per link (300 students
launching do not make 300 LMS calls); an instructor's launch, or binding the link, always asks.
The worker's ``run_lineitem_due_requests`` takes each request (an atomic pop: one worker per
request), GETs the line item with an AGS token of a scope the launch offered, and records its
``endDateTime`` with the precedence of ``services.due_dates`` (instructor > custom parameter >
line item). A failed read is logged; the next launch asks again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select

from lti_exchange.app_objects import AppObjects
from lti_exchange.jobs.requests import pending_ids
from lti_exchange.lti.platform_client import (
    SCOPE_LINEITEM,
    SCOPE_LINEITEM_READONLY,
    PlatformClient,
    PlatformError,
)
from lti_exchange.lti.store import DatabaseStore
from lti_exchange.models import Course, LtiRegistration, ResourceLink
from lti_exchange.services.due_dates import lineitem_due_date, record_lineitem_due_date

log = logging.getLogger(__name__)

REQUEST_PREFIX = "lineitem-due:"
ASKED_PREFIX = "lineitem-due-asked:"
REQUEST_TTL = 24 * 3600
REFRESH_SECONDS = 300  # a learner's launch asks again after this long (per link)
POLL_INTERVAL = 5.0


def request_lineitem_due_date(store: DatabaseStore, link_id: int, *, always: bool) -> bool:
    """Ask the worker to read the due date of the line item of link ``link_id`` (a row id);
    unless ``always``, at most once per ``REFRESH_SECONDS``. True when this call asked."""
    asked = f"{ASKED_PREFIX}{link_id}"
    if always:
        store.set(asked, 1, REFRESH_SECONDS)
    elif not store.add(asked, 1, REFRESH_SECONDS):
        return False
    store.set(f"{REQUEST_PREFIX}{link_id}", {"link": link_id}, REQUEST_TTL)
    return True


def requested_links(state: AppObjects, limit: int = 50) -> list[int]:
    """Link row ids with a pending read request, oldest first."""
    return pending_ids(state, REQUEST_PREFIX, limit)


def run_lineitem_due_requests(state: AppObjects, limit: int = 50) -> int:
    """Read the line items whose due date was asked for; how many reads this worker made."""
    store = DatabaseStore(state.session_factory)
    clients: dict[int, PlatformClient] = {}
    done = 0
    for link_id in requested_links(state, limit):
        if store.pop(f"{REQUEST_PREFIX}{link_id}") is None:
            continue  # another worker took it
        done += read_lineitem_due_date(state, link_id, store, clients)
    return done


@dataclass(frozen=True)
class _Read:
    course_id: int
    course_code: str
    assignment: str
    url: str
    scope: str
    registration: LtiRegistration


def _what_to_read(state: AppObjects, link_id: int) -> _Read | None:
    """What the read needs, from the database (no transaction stays open during the call)."""
    with state.session_factory() as session:
        link = session.get(ResourceLink, link_id)
        course = session.get(Course, link.course_id) if link is not None else None
        if link is None or course is None or not link.lineitem_url or not link.assignment_name:
            return None  # deleted, or unbound / without a column meanwhile
        offered = set(link.ags_scopes or course.ags_scopes or [])
        scope = next((s for s in (SCOPE_LINEITEM_READONLY, SCOPE_LINEITEM) if s in offered), None)
        registration = session.execute(
            select(LtiRegistration).where(LtiRegistration.org_id == course.org_id)
        ).scalar_one_or_none()
        if scope is None or registration is None:
            log.info(
                "line item due date of course %s link id %d not read: the LMS offered no "
                "line-item scope (…/lti-ags/scope/lineitem[.readonly]) or no longer has a "
                "registration",
                course.code,
                link_id,
            )
            return None
        session.expunge(registration)
        return _Read(
            course.id, course.code, link.assignment_name, link.lineitem_url, scope, registration
        )


def read_lineitem_due_date(
    state: AppObjects,
    link_id: int,
    store: DatabaseStore,
    clients: dict[int, PlatformClient] | None = None,
) -> int:
    """Read one link's line item and record its ``endDateTime``; 1 when the LMS answered."""
    read = _what_to_read(state, link_id)
    if read is None:
        return 0
    clients = {} if clients is None else clients
    client = clients.get(read.registration.id) or clients.setdefault(
        read.registration.id, PlatformClient(read.registration, state.tool_keys, store)
    )
    try:
        item = client.get_lineitem(read.url, scope=read.scope)
    except PlatformError as exc:
        log.warning(
            "line item due date of course %s assignment %s not read (LMS status %s): %s; the "
            "next launch of the link asks again",
            read.course_code,
            read.assignment,
            exc.status if exc.status is not None else "none",
            exc,
        )
        return 0
    due = lineitem_due_date(item)
    with state.session_factory() as session:
        outcome = record_lineitem_due_date(session, read.course_id, read.assignment, due)
    log.info(
        "line item due date of course %s assignment %s: %s (%s)",
        read.course_code,
        read.assignment,
        due.isoformat() if due else "none",
        outcome,
    )
    return 1

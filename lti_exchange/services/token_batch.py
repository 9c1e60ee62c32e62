"""``lti-exchange token issue --from-csv``: many tokens in one process and one transaction.

The CSV has a header row. Columns (names are case-insensitive; other columns are ignored):

| column | meaning |
|---|---|
| ``username`` (or ``student_id``) | the nbgrader student id (required) |
| ``course`` (or ``course_id``) | the nbgrader course id (required) |
| ``role`` | ``Instructor``, ``TeachingAssistant`` or ``Learner`` (any case; required) |
| ``org`` | organisation id or name (default: ``--org``) |
| ``ttl`` | lifetime in seconds (default: ``--ttl``, else the service's) |
| ``name``, ``email``, ``lms_user_id``, ``course_title`` | as the options of ``token issue`` |

Every row is checked before anything is written. Any bad row (named by its line number) means
nothing is issued: the enrolments of the good rows are rolled back too, so the file can be
fixed and given again as a whole.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lti_exchange.errors import ApiError
from lti_exchange.identifiers import IDENTIFIER_RULE, is_valid_identifier
from lti_exchange.models import COURSE_ROLES, Course, Enrolment, Organisation, User
from lti_exchange.services.provisioning import find_or_create_org
from lti_exchange.tokens.refresh import token_pair

if TYPE_CHECKING:
    from lti_exchange.app_objects import AppObjects

MAX_ROWS = 100_000
MAX_TEXT = 255  # the name, email, lms_user_id and course title columns
ALIASES = {"student_id": "username", "course_id": "course"}
PROFILE = ("name", "email", "lms_user_id", "course_title")
KNOWN = {"username", "course", "role", "org", "ttl", *PROFILE}
ROLES = {role.lower(): role for role in COURSE_ROLES}


@dataclass(frozen=True)
class TokenRow:
    line: int
    org: str
    username: str
    course: str
    role: str
    ttl: int | None
    profile: dict[str, str]


@dataclass
class Parsed:
    rows: list[TokenRow] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # "line N: what is wrong"
    ignored_columns: list[str] = field(default_factory=list)


def parse_rows(lines: Iterable[str], default_org: str | None, default_ttl: int | None) -> Parsed:
    """Read and check every row (no database): the rows, and each bad row's problem."""
    parsed = Parsed()
    reader = csv.DictReader(lines)
    header = [(name or "").strip().lower() for name in reader.fieldnames or []]
    columns = [ALIASES.get(name, name) for name in header]
    missing = [c for c in ("username", "course", "role") if c not in columns]
    if missing:
        parsed.errors.append(
            f"line 1: the header row has no {', '.join(missing)} column (it needs username, "
            "course and role; optional: org, ttl, name, email, lms_user_id, course_title)"
        )
        return parsed
    parsed.ignored_columns = [h for h, c in zip(header, columns, strict=True) if c not in KNOWN]
    seen: dict[tuple[str, str, str], int] = {}
    for raw in reader:
        line = reader.line_num
        if len(parsed.rows) + len(parsed.errors) >= MAX_ROWS:
            parsed.errors.append(f"line {line}: more than {MAX_ROWS} rows; split the file")
            break
        values = {
            column: (raw.get(name) or "").strip()
            for name, column in zip(reader.fieldnames or [], columns, strict=True)
            if column in KNOWN
        }
        if None in raw:  # more fields than the header names
            parsed.errors.append(f"line {line}: more fields than the header row has columns")
            continue
        problem, row = _row(line, values, default_org, default_ttl)
        if problem:
            parsed.errors.append(f"line {line}: {problem}")
            continue
        assert row is not None
        key = (row.org, row.username, row.course)
        if key in seen:
            parsed.errors.append(
                f"line {line}: {row.username} in {row.course} is already on line {seen[key]} "
                "(one token per user and course; a user has one role per course)"
            )
            continue
        seen[key] = line
        parsed.rows.append(row)
    if not parsed.rows and not parsed.errors:
        parsed.errors.append("the file has a header row but no rows")
    return parsed


def _row(
    line: int, values: dict[str, str], default_org: str | None, default_ttl: int | None
) -> tuple[str | None, TokenRow | None]:
    problems = []
    username, course = values.get("username", ""), values.get("course", "")
    for kind, value in (("username", username), ("course", course)):
        if not value:
            problems.append(f"no {kind}")
        elif not is_valid_identifier(value):
            problems.append(f"{kind} {value[:60]!r} is not valid ({IDENTIFIER_RULE})")
    role = ROLES.get(values.get("role", "").lower())
    if role is None:
        problems.append(
            f"role {values.get('role', '')[:40]!r} is not one of {', '.join(COURSE_ROLES)}"
        )
    org = values.get("org") or default_org or ""
    if not org:
        problems.append("no org (add an org column, or give --org)")
    ttl = default_ttl
    if values.get("ttl"):
        try:
            ttl = int(values["ttl"])
        except ValueError:
            ttl = 0
        if ttl <= 0:
            problems.append(f"ttl {values['ttl'][:20]!r} is not a positive number of seconds")
    profile = {k: values[k] for k in PROFILE if values.get(k)}
    problems += [
        f"{k} is longer than {MAX_TEXT} characters" for k, v in profile.items() if len(v) > MAX_TEXT
    ]
    if problems:
        return "; ".join(problems), None
    return None, TokenRow(line, org, username, course, role or "", ttl, profile)


@dataclass
class Issued:
    tokens: list[dict[str, Any]] = field(default_factory=list)  # token_pair's JSON + "line"
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def issue_rows(state: AppObjects, session: Session, rows: list[TokenRow]) -> Issued:
    """Enrol every row and mint its token in one transaction: all of them are committed, or
    (when a row fails) none, and ``errors`` names the rows that failed.

    What ``provision`` does row by row (user, course, enrolment upserted; the enrolment made
    active with the row's role), done with a few queries for the whole file.
    """
    issued = Issued()
    orgs: dict[str, Organisation] = {}
    for name in dict.fromkeys(row.org for row in rows):
        try:
            with session.begin_nested():
                orgs[name] = find_or_create_org(session, name)
        except ApiError as exc:
            issued.errors += [f"line {r.line}: {exc.message}" for r in rows if r.org == name]
    if issued.errors:
        session.rollback()
        return issued
    enrolments = _enrol(session, rows, orgs)
    for row, (enrolment, before) in zip(rows, enrolments, strict=True):
        if before is not None and before != row.role:
            issued.warnings.append(
                f"line {row.line}: {row.username} was {before} in {row.course} and is now "
                f"{row.role} (a user has one role per course, and their earlier tokens now act "
                f"as {row.role})"
            )
        pair = token_pair(state, session, enrolment, with_refresh=False, ttl=row.ttl)
        issued.tokens.append({"line": row.line, **pair})
    session.commit()
    return issued


def _enrol(
    session: Session, rows: list[TokenRow], orgs: dict[str, Organisation]
) -> list[tuple[Enrolment, str | None]]:
    """Each row's enrolment (created or updated, flushed) and its role before (None: new)."""
    users: dict[tuple[int, str], User] = {}
    courses: dict[tuple[int, str], Course] = {}
    for org in {o.id: o for o in orgs.values()}.values():
        mine = [r for r in rows if orgs[r.org].id == org.id]
        for chunk in _chunks(sorted({r.username for r in mine})):
            found_users = select(User).where(User.org_id == org.id, User.username.in_(chunk))
            users.update(((org.id, u.username), u) for u in session.scalars(found_users))
        for chunk in _chunks(sorted({r.course for r in mine})):
            found_courses = select(Course).where(Course.org_id == org.id, Course.code.in_(chunk))
            courses.update(((org.id, c.code), c) for c in session.scalars(found_courses))
    for row in rows:
        org_id = orgs[row.org].id
        user = users.get((org_id, row.username))
        if user is None:
            user = users[(org_id, row.username)] = User(org_id=org_id, username=row.username)
            session.add(user)
        for attr in ("lms_user_id", "name", "email"):
            if attr in row.profile:
                setattr(user, attr, row.profile[attr])
        course = courses.get((org_id, row.course))
        if course is None:
            course = courses[(org_id, row.course)] = Course(org_id=org_id, code=row.course)
            session.add(course)
        if "course_title" in row.profile:
            course.title = row.profile["course_title"]
    session.flush()
    pairs = {
        (users[(orgs[r.org].id, r.username)].id, courses[(orgs[r.org].id, r.course)].id)
        for r in rows
    }
    existing: dict[tuple[int, int], Enrolment] = {}
    for chunk in _chunks(sorted({u for u, _c in pairs})):
        found_enrolments = select(Enrolment).where(
            Enrolment.user_id.in_(chunk), Enrolment.course_id.in_(sorted({c for _u, c in pairs}))
        )
        for row_enrolment in session.scalars(found_enrolments).unique():
            existing[(row_enrolment.user_id, row_enrolment.course_id)] = row_enrolment
    result: list[tuple[Enrolment, str | None]] = []
    for row in rows:
        user = users[(orgs[row.org].id, row.username)]
        course = courses[(orgs[row.org].id, row.course)]
        found = existing.get((user.id, course.id))
        before = found.role if found is not None else None
        enrolment = found or Enrolment(user=user, course=course, role=row.role)
        if found is None:
            session.add(enrolment)
        enrolment.role = row.role
        enrolment.active = True
        result.append((enrolment, before))
    session.flush()
    return result


def _chunks(values: list[Any], size: int = 500) -> Iterable[list[Any]]:
    """``values`` in pieces small enough for one ``IN (...)`` on every backend."""
    for start in range(0, len(values), size):
        yield values[start : start + size]

"""Submit, list, remove and collect submissions."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Protocol

from sqlalchemy import and_, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value

from lti_exchange import direct_sql
from lti_exchange.archives.stream import stream_tar
from lti_exchange.archives.upload import store_archive
from lti_exchange.db import make_durable
from lti_exchange.direct_sql import DirectStatement
from lti_exchange.errors import ApiError, Conflict, Forbidden, InvalidRequest, NotFound
from lti_exchange.identifiers import validate_identifier
from lti_exchange.models import Assignment, Feedback, Release, Submission, User
from lti_exchange.observability import count_submission
from lti_exchange.services.assignments import AssignmentService, require_visible
from lti_exchange.services.authorisation import (
    AssignmentColumns,
    Caller,
    Lookup,
)
from lti_exchange.services.context import ServiceContext
from lti_exchange.storage import StoredBlob
from lti_exchange.timestamps import format_timestamp

MAX_COLLECT_IDS = 10_000
_MARK_BATCH = 1000  # ids per UPDATE … IN (…) when marking submissions collected
MAX_ID = 2**31 - 1  # ids are INTEGER columns: no PostgreSQL or MariaDB row has a larger one
SubmissionRows = list[tuple[Submission, User]]  # (the class below has a method named ``list``)

# What the submit path needs of the assignment, built once.
_SUBMIT_TARGET = AssignmentColumns(
    Assignment.id.label("assignment_id"),
    Assignment.released,
    Release.notebooks.label("release_notebooks"),
    present="assignment_id",
)


def submit_target(name: str) -> Lookup | None:
    """What ``SubmissionService.submit`` needs of ``name``, for ``caller_for`` to fetch."""
    return _SUBMIT_TARGET.lookup(name)


# Core, not the ORM, compiled once per dialect and run on the DBAPI cursor (``direct_sql``).
_INSERT_SUBMISSION = DirectStatement(
    insert(Submission.__table__),  # type: ignore[arg-type]
    primary_key=Submission.__table__.c.id,
)


@dataclass(frozen=True)
class SubmitReceipt:
    """A stored submission, the name it was submitted to, and what that release holds;
    ``replayed`` when the upload repeated one already stored (same ``Idempotency-Key``)."""

    submission: Submission
    assignment_name: str
    release_notebooks: list[str]
    replayed: bool = False


class SubmissionService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.session = ctx.session
        self.assignments = AssignmentService(ctx)

    def submit(
        self,
        caller: Caller,
        name: str,
        body: BinaryIO,
        idempotency_key: str | None = None,
    ) -> SubmitReceipt:
        """Store a submission; its timestamp is the server's clock when the upload completed.

        The hot path of a deadline: the authorising query also found the assignment and its
        release (``submit_target``; asked here otherwise), the rows are written with Core
        inserts (no unit of work), one commit. An ``idempotency_key`` the
        caller already stored a submission with (a retry after a lost answer) stores nothing
        more: the first submission is the receipt (``replayed``).
        """
        validate_identifier(name, "assignment")
        target = _SUBMIT_TARGET.row(self.session, caller, name)
        require_visible(caller, name, target.released if target is not None else None)
        assert target is not None
        if not target.released:
            raise Conflict(
                f"Assignment '{name}' is not released; it cannot be submitted. "
                "Ask your instructor to release it again.",
                code="not_released",
            )
        blob, manifest = store_archive(body, self.ctx.storage, "submissions", self.ctx.limits)
        values = {
            "assignment_id": target.assignment_id,
            "user_id": caller.user_id,
            "timestamp": self.ctx.clock(),
            "blob_key": blob.key,
            "sha256": blob.sha256,
            "size": blob.size,
            "notebooks": manifest.notebooks,
            "idempotency_key": idempotency_key,
        }
        replayed = False
        try:
            submission_id: int = direct_sql.insert(self.session, _INSERT_SUBMISSION, values)
            self.ctx.record_now(
                caller,
                "submitted",
                assignment_id=target.assignment_id,
                subject_id=submission_id,
                at=values["timestamp"],
            )
            self.session.commit()
            stored = Submission(id=submission_id, removed_at=None, collected_at=None, **values)
        except IntegrityError as exc:
            if idempotency_key is None:
                self.ctx.discard_after_failure([blob.key], exc)
                raise
            self.session.rollback()
            first = self._first_attempt(caller, target.assignment_id, blob, idempotency_key)
            if first is None:  # the clash was not over the key
                self.ctx.delete_blobs_quietly([blob.key])
                raise
            stored, replayed = first, True
        except BaseException as exc:
            self.ctx.discard_after_failure([blob.key], exc)
            raise
        make_durable(self.session)  # answered 201: the row must survive a power cut
        if not replayed:
            count_submission()
        return SubmitReceipt(
            submission=stored,
            assignment_name=name,
            release_notebooks=list(target.release_notebooks or []),
            replayed=replayed,
        )

    def _first_attempt(
        self, caller: Caller, assignment_id: int, blob: StoredBlob, key: str
    ) -> Submission | None:
        """The submission ``caller`` stored with ``key``, which this upload (``blob``) repeats.

        The repeat's blob is deleted, or kept for the row when the first attempt's blob is gone
        (removed after a commit whose answer was lost). A key that came with other files or for
        another assignment is a 422: nothing is stored.
        """
        first = self.session.execute(
            select(Submission).where(
                Submission.user_id == caller.user_id, Submission.idempotency_key == key
            )
        ).scalar_one_or_none()
        if first is None:
            return None
        if first.assignment_id != assignment_id or first.sha256 != blob.sha256:
            self.ctx.delete_blobs_quietly([blob.key])
            raise ApiError(
                "This upload repeats an earlier one (the same Idempotency-Key) but carries "
                "different files or is for another assignment, so nothing was stored. Submit "
                "again: nbgrader submit sends a new key each time it is run.",
                status=422,
                code="idempotency_key_reused",
            )
        if self.ctx.storage.exists(first.blob_key):
            self.ctx.delete_blobs_quietly([blob.key])
        else:
            first.blob_key = blob.key  # the same bytes (same SHA-256): this copy stands in
            self.session.commit()
        return first

    def list(
        self,
        caller: Caller,
        *,
        assignment: str | None = None,
        student: str | None = None,
        include_removed: bool = False,
    ) -> list[tuple[Submission, Assignment, User]]:
        """Submissions visible to the caller (staff: all; learners: their own), with feedback.

        Two queries whatever the size of the course.
        """
        if not caller.is_staff:
            if student is not None and student != caller.username:
                raise Forbidden("Students can only list their own submissions.")
            student = caller.username
        conditions = [Assignment.course_id == caller.course_id]
        if assignment is not None:
            conditions.append(Assignment.name == validate_identifier(assignment, "assignment"))
        if student is not None:
            conditions.append(User.username == validate_identifier(student, "student"))
        if not include_removed:
            conditions.append(Submission.removed_at.is_(None))
        rows = self.session.execute(
            select(Submission, Assignment, User)
            .join(Assignment, Assignment.id == Submission.assignment_id)
            .join(User, User.id == Submission.user_id)
            .where(*conditions)
            .order_by(Assignment.name, User.username, Submission.timestamp)
        ).all()
        # One query for all their feedback (selectinload would batch it 500 at a time).
        feedback: dict[int, list[Feedback]] = {s.id: [] for s, _a, _u in rows}
        for fb in self.session.execute(
            select(Feedback)
            .join(Submission, Submission.id == Feedback.submission_id)
            .join(Assignment, Assignment.id == Submission.assignment_id)
            .join(User, User.id == Submission.user_id)
            .where(*conditions)
            .order_by(Feedback.notebook_id)
        ).scalars():
            feedback[fb.submission_id].append(fb)
        for submission, _assignment, _user in rows:
            set_committed_value(submission, "feedback", feedback[submission.id])
        return [tuple(row) for row in rows]  # type: ignore[misc]

    def get(self, caller: Caller, submission_id: int) -> tuple[Submission, Assignment, User]:
        if not 0 < submission_id <= MAX_ID:  # a larger number is no row, and overflows SQLite
            raise NotFound(
                f"No submission {str(submission_id)[:30]} in course '{caller.course_code}'.",
                code="submission_not_found",
            )
        row = self.session.execute(
            select(Submission, Assignment, User)
            .join(Assignment, Assignment.id == Submission.assignment_id)
            .join(User, User.id == Submission.user_id)
            .where(Submission.id == submission_id, Assignment.course_id == caller.course_id)
            .options(selectinload(Submission.feedback))
        ).first()
        if row is None or (not caller.is_staff and row[2].id != caller.user_id):
            raise NotFound(
                f"No submission {submission_id} in course '{caller.course_code}'.",
                code="submission_not_found",
            )
        return row[0], row[1], row[2]

    def remove(self, caller: Caller, submission_id: int) -> Submission:
        """Hide a submission from lists and collection (kept for the record)."""
        submission, assignment, _user = self.get(caller, submission_id)
        if submission.removed_at is None:
            submission.removed_at = self.ctx.clock()
            self.ctx.record(
                caller, "submission_removed", assignment_id=assignment.id, subject_id=submission.id
            )
            self.session.commit()
        return submission

    def select_for_collection(
        self,
        caller: Caller,
        name: str,
        *,
        submission_ids: Iterable[int] | None = None,
        students: Iterable[str] | None = None,
        since: datetime | None = None,
    ) -> SubmissionRows:
        """Explicit submissions, or the newest submission per student (optionally newer than
        ``since`` and limited to ``students``)."""
        assignment = self.assignments.find(caller, name)
        query = (
            select(Submission, User)
            .join(User, User.id == Submission.user_id)
            .where(Submission.assignment_id == assignment.id, Submission.removed_at.is_(None))
            .order_by(User.username, Submission.timestamp.desc())
        )
        if submission_ids is not None:
            ids = sorted(set(submission_ids))
            if len(ids) > MAX_COLLECT_IDS:
                raise InvalidRequest(f"Collect at most {MAX_COLLECT_IDS} submissions at once.")
            rows = self.session.execute(query.where(Submission.id.in_(ids))).all() if ids else []
            missing = set(ids) - {s.id for s, _ in rows}
            if missing:
                raise NotFound(
                    f"Submissions {sorted(missing)[:10]} are not submissions of '{name}'.",
                    code="submission_not_found",
                    details={"missing": sorted(missing)},
                )
            return [(s, u) for s, u in rows]
        if students is not None:
            names = [validate_identifier(s, "student") for s in students]
            query = query.where(User.username.in_(names))
        if since is not None:
            query = query.where(Submission.timestamp > since)
        newest: dict[int, tuple[Submission, User]] = {}
        for submission, user in self.session.execute(query).all():
            newest.setdefault(user.id, (submission, user))
        return list(newest.values())

    def collect(
        self, caller: Caller, name: str, chosen: SubmissionRows, received: Sequence[int] = ()
    ) -> Iterator[bytes]:
        """A tar stream: ``manifest.json`` then one member ``submissions/<id>.tar`` per
        submission holding its stored archive unchanged. When the whole stream has gone out,
        the submissions it delivered are marked collected (``collected_at``, a ``collected``
        event each), and with them those of ``received`` (ids the client already holds from an
        earlier collection that broke off) that are submissions of this assignment not marked
        yet; one whose archive is missing or damaged in storage, or a stream the client broke
        off, marks nothing."""
        assignment = self.assignments.find(caller, name)
        now = self.ctx.clock()
        stamp = format_timestamp(now)
        manifest = []
        for submission, user in chosen:
            entry = submission_json(submission, assignment.name, user, with_feedback=False)
            entry["collected_at"] = stamp  # as it will read once delivered
            manifest.append(entry)
        members = [(f"submissions/{s.id}.tar", s.size, s.blob_key) for s, _user in chosen]
        by_member = {f"submissions/{s.id}.tar": s.id for s, _user in chosen}
        assignment_id = assignment.id
        asked = set(by_member.values())  # the received ones this answer sends follow it
        held = self._not_yet_collected(assignment_id, [i for i in received if i not in asked])
        self.session.commit()  # no transaction stays open while the files stream

        def delivered(unsent: set[str]) -> None:
            ids = [sid for member, sid in by_member.items() if member not in unsent]
            self._mark_collected(caller, assignment_id, [*ids, *held], now)

        return stream_tar(manifest, members, self.ctx.storage, on_sent=delivered)

    def _not_yet_collected(self, assignment_id: int, ids: Sequence[int]) -> Sequence[int]:
        """Those of ``ids`` that are submissions of the assignment, not removed and not marked
        collected yet (an earlier answer that went out whole did; one query per 1000)."""
        where = and_(
            Submission.assignment_id == assignment_id,
            Submission.removed_at.is_(None),
            Submission.collected_at.is_(None),
        )
        return [
            found
            for batch in _batches(sorted(set(ids)))
            for found in self.session.scalars(
                select(Submission.id).where(where, Submission.id.in_(batch))
            )
        ]

    def _mark_collected(
        self, caller: Caller, assignment_id: int, ids: Sequence[int], now: datetime
    ) -> None:
        """Mark ``ids`` collected at ``now``, a few statements for any number."""

        def mark() -> None:
            for batch in _batches(ids):
                self.session.execute(
                    update(Submission).where(Submission.id.in_(batch)).values(collected_at=now)
                )
            self.ctx.record_many(
                caller, "collected", assignment_id=assignment_id, subject_ids=ids, at=now
            )

        self.ctx.record_after_download(f"a collection of {len(ids)} submissions", mark)

    def open_archive(self, caller: Caller, submission_id: int) -> tuple[Submission, BinaryIO]:
        submission, _assignment, _user = self.get(caller, submission_id)
        return submission, self.ctx.storage.open(submission.blob_key)


def _batches(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    """``ids`` in slices of ``_MARK_BATCH``, one ``IN (…)`` each."""
    for start in range(0, len(ids), _MARK_BATCH):
        yield ids[start : start + _MARK_BATCH]


class Submitter(Protocol):
    """What a submission's JSON tells of its student (a ``User`` row or the ``Caller``)."""

    @property
    def username(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def email(self) -> str | None: ...
    @property
    def lms_user_id(self) -> str | None: ...


def submission_json(
    submission: Submission, assignment_name: str, user: Submitter, *, with_feedback: bool = True
) -> dict:
    body = {
        "id": submission.id,
        "assignment_id": assignment_name,
        "student_id": user.username,
        "timestamp": format_timestamp(submission.timestamp),
        "sha256": submission.sha256,
        "size": submission.size,
        "notebooks": submission.notebooks,
        "collected_at": format_timestamp(submission.collected_at)
        if submission.collected_at
        else None,
        "removed": submission.removed_at is not None,
        "student": {"name": user.name, "email": user.email, "lms_user_id": user.lms_user_id},
    }
    if with_feedback:
        body["feedback"] = [
            {
                "notebook_id": fb.notebook_id,
                "sha256": fb.sha256,
                "size": fb.size,
                "released_at": format_timestamp(fb.updated_at),
            }
            for fb in submission.feedback
        ]
    return body

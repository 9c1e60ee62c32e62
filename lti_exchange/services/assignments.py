"""Release, unrelease, list and fetch assignments."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from lti_exchange.archives.upload import ArchiveManifest, store_archive
from lti_exchange.db import make_durable
from lti_exchange.errors import Conflict, InvalidArchive
from lti_exchange.identifiers import validate_identifier
from lti_exchange.models import Assignment, Event, Release, Submission
from lti_exchange.observability import count_release
from lti_exchange.services.authorisation import (
    AssignmentColumns,
    Caller,
    Lookup,
    not_found,
)
from lti_exchange.services.context import ServiceContext
from lti_exchange.services.retry import run_with_retry
from lti_exchange.storage import StoredBlob

# The assignment's released file, by course id and name (the fetch path), built once.
_RELEASE_TO_FETCH = AssignmentColumns(
    Assignment.id.label("assignment_id"),
    Assignment.released,
    Release.id.label("release_id"),
    Release.version,
    Release.blob_key,
    Release.size,
    Release.sha256,
    present="release_id",
)


def release_to_fetch(name: str) -> Lookup | None:
    """What ``open_current_release`` needs of ``name``, for ``caller_for`` to fetch."""
    return _RELEASE_TO_FETCH.lookup(name)


def require_visible(caller: Caller, name: str, released: bool | None) -> None:
    """Learners see released assignments only: a missing (``released`` None) or hidden one is
    the same 404 to them, so they cannot tell which."""
    if released is None or not (caller.is_staff or released):
        raise not_found("assignment", name, caller.course_code)


@dataclass(frozen=True)
class ReleaseFile:
    """What a download needs of a release."""

    id: int
    version: int
    blob_key: str
    size: int
    sha256: str


@dataclass
class AssignmentView:
    assignment: Assignment
    release: Release | None
    fetched_at: datetime | None
    submission_count: int


class AssignmentService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.session = ctx.session

    def find(self, caller: Caller, name: str, *, include_unreleased: bool = False) -> Assignment:
        """The assignment ``name``; learners only see released ones unless told otherwise."""
        validate_identifier(name, "assignment")
        assignment = self.session.execute(
            select(Assignment).where(
                Assignment.course_id == caller.course_id, Assignment.name == name
            )
        ).scalar_one_or_none()
        if assignment is None:
            raise not_found("assignment", name, caller.course_code)
        if not include_unreleased:
            require_visible(caller, name, assignment.released)
        return assignment

    def release(
        self, caller: Caller, name: str, body: BinaryIO, *, max_score: float | None = None
    ) -> Release:
        """Store a new version of ``name`` and make it the released one (again = next version);
        ``max_score``: the assignment's total points in nbgrader, when the plugin sent them."""
        validate_identifier(name, "assignment")
        blob, manifest = store_archive(body, self.ctx.storage, "releases", self.ctx.limits)
        if not any(not m.is_dir for m in manifest.members):
            self.ctx.delete_blobs_quietly([blob.key])
            raise InvalidArchive("The release archive holds no files.")
        release = self.ctx.commit_or_delete_blobs(
            [blob.key],
            lambda: run_with_retry(
                self.session,
                lambda: self._record_release(caller, name, blob, manifest, max_score),
                what=f"release assignment '{name}'",
            ),
        )
        make_durable(self.session)  # answered 201: the row must survive a power cut
        count_release()
        return release

    def _record_release(
        self,
        caller: Caller,
        name: str,
        blob: StoredBlob,
        manifest: ArchiveManifest,
        max_score: float | None = None,
    ) -> Release:
        """One transaction: lock the assignment, add the next version, make it current."""
        assignment = self._get_or_create_locked(caller, name)
        latest = self.session.execute(
            select(Release.version)
            .where(Release.assignment_id == assignment.id)
            .order_by(Release.version.desc())
            .limit(1)
            .with_for_update()
        ).scalar_one_or_none()
        release = Release(
            assignment_id=assignment.id,
            version=(latest or 0) + 1,
            blob_key=blob.key,
            sha256=blob.sha256,
            size=blob.size,
            notebooks=manifest.notebooks,
            max_score=max_score,
            released_by_id=caller.user_id,
            created_at=self.ctx.clock(),
        )
        self.session.add(release)
        self.session.flush()
        assignment.current_release_id = release.id
        assignment.released = True
        self.ctx.record(
            caller,
            "released",
            assignment_id=assignment.id,
            subject_id=release.id,
            details={"version": release.version},
        )
        self.session.commit()
        return release

    def _get_or_create_locked(self, caller: Caller, name: str) -> Assignment:
        query = (
            select(Assignment)
            .where(Assignment.course_id == caller.course_id, Assignment.name == name)
            .with_for_update()
        )
        assignment = self.session.execute(query).scalar_one_or_none()
        if assignment is not None:
            return assignment
        try:
            with self.session.begin_nested():
                assignment = Assignment(course_id=caller.course_id, name=name)
                self.session.add(assignment)
        except IntegrityError:
            assignment = self.session.execute(query).scalar_one()
        return assignment

    def unrelease(self, caller: Caller, name: str) -> Assignment:
        """Hide the assignment from students; releases, submissions and feedback are all kept."""
        assignment = self.find(caller, name)
        if not assignment.released:
            raise Conflict(
                f"Assignment '{name}' is not released in course '{caller.course_code}'.",
                code="not_released",
            )
        assignment.released = False
        self.ctx.record(caller, "unreleased", assignment_id=assignment.id)
        self.session.commit()
        return assignment

    def list_for(self, caller: Caller) -> list[AssignmentView]:
        """Assignments the caller may see, each with its current release and history: when the
        caller last fetched it, and how many submissions it has (the course's for staff, the
        caller's own for learners). Three queries whatever the size of the course.
        """
        query = (
            select(Assignment, Release)
            .outerjoin(Release, Release.id == Assignment.current_release_id)
            .where(Assignment.course_id == caller.course_id)
            .order_by(Assignment.name)
        )
        if not caller.is_staff:
            query = query.where(Assignment.released.is_(True))
        rows = self.session.execute(query).all()
        fetched = dict(
            self.session.execute(
                select(Event.assignment_id, func.max(Event.created_at))
                .where(
                    Event.course_id == caller.course_id,
                    Event.user_id == caller.user_id,
                    Event.kind == "fetched",
                )
                .group_by(Event.assignment_id)
            ).all()
        )
        submitted = dict(
            self.session.execute(
                select(Submission.assignment_id, func.count(Submission.id))
                .join(Assignment, Assignment.id == Submission.assignment_id)
                .where(
                    Assignment.course_id == caller.course_id,
                    Submission.removed_at.is_(None),
                    *(() if caller.is_staff else (Submission.user_id == caller.user_id,)),
                )
                .group_by(Submission.assignment_id)
            ).all()
        )
        return [AssignmentView(a, r, fetched.get(a.id), submitted.get(a.id, 0)) for a, r in rows]

    def open_current_release(
        self, caller: Caller, name: str, *, record: bool = True
    ) -> tuple[ReleaseFile, BinaryIO]:
        """The released archive to download; records that the caller fetched it (``record``:
        False for a HEAD request, which downloads nothing). One Core insert, and no query when
        the caller was authorised with ``release_to_fetch(name)``."""
        validate_identifier(name, "assignment")
        row = _RELEASE_TO_FETCH.row(self.session, caller, name)  # None: never released
        require_visible(caller, name, row.released if row is not None else None)
        assert row is not None
        release = ReleaseFile(
            id=row.release_id,
            version=row.version,
            blob_key=row.blob_key,
            size=row.size,
            sha256=row.sha256,
        )
        handle = self.ctx.storage.open(release.blob_key)
        if record:
            try:
                self.ctx.record_now(
                    caller,
                    "fetched",
                    assignment_id=row.assignment_id,
                    subject_id=release.id,
                    at=self.ctx.clock(),
                    details={"version": release.version},
                )
                self.session.commit()
            except BaseException:  # the database failed: nothing is sent, the file is closed
                handle.close()
                raise
        return release, handle

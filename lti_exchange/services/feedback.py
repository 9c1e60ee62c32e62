"""Release feedback (linked to the submission it grades) and let students fetch their own."""

from __future__ import annotations

import posixpath
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from lti_exchange.archives.stream import stream_tar
from lti_exchange.archives.upload import scan_archive
from lti_exchange.db import make_durable
from lti_exchange.errors import Forbidden, InvalidArchive, NotFound
from lti_exchange.identifiers import is_valid_identifier, validate_identifier
from lti_exchange.models import Feedback, Submission, User
from lti_exchange.services.assignments import AssignmentService
from lti_exchange.services.authorisation import Caller
from lti_exchange.services.context import ServiceContext
from lti_exchange.storage import StoredBlob
from lti_exchange.timestamps import format_timestamp, parse_timestamp

MAX_TIMESTAMP_FILE = 200


@dataclass
class _StudentFeedback:
    timestamp: str | None = None
    notebooks: dict[str, StoredBlob] = field(default_factory=dict)


class FeedbackService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.session = ctx.session
        self.assignments = AssignmentService(ctx)

    def release(self, caller: Caller, name: str, body: BinaryIO) -> list[dict]:
        """Store feedback from a tar of ``<student>/timestamp.txt`` + ``<student>/<nb>.html``.

        Each student folder is matched to the submission with that exact server timestamp. All or
        nothing: if any folder matches no submission, nothing is stored.
        """
        assignment = self.assignments.find(caller, name)
        by_student: dict[str, _StudentFeedback] = defaultdict(_StudentFeedback)
        stored: list[str] = []

        def on_file(member: str, handle: BinaryIO, size: int) -> None:
            student, _, filename = member.partition("/")
            if not is_valid_identifier(student) or "/" in filename:
                raise InvalidArchive(
                    f"Unexpected member {member!r}: expected <student>/<notebook>.html or "
                    "<student>/timestamp.txt."
                )
            entry = by_student[student]
            if filename == "timestamp.txt":
                entry.timestamp = handle.read(MAX_TIMESTAMP_FILE).decode("utf-8", "replace")
                return
            stem, ext = posixpath.splitext(filename)
            if ext != ".html" or not is_valid_identifier(stem):
                raise InvalidArchive(f"Unexpected member {member!r}: only .html feedback is kept.")
            writer = self.ctx.storage.writer("feedback")
            try:
                while chunk := handle.read(1024 * 1024):
                    writer.write(chunk)
                blob = writer.commit()
            except BaseException:
                writer.discard()
                raise
            stored.append(blob.key)
            entry.notebooks[stem] = blob

        def store_and_link() -> list[dict]:
            scan_archive(body, self.ctx.limits, on_file=on_file)
            linked = self._link(caller, assignment.id, by_student)
            self.session.commit()
            return linked

        released = self.ctx.commit_or_delete_blobs(stored, store_and_link)
        make_durable(self.session)  # answered 201: the rows must survive a power cut
        self.ctx.delete_blobs_quietly([key for r in released for key in r.pop("_replaced")])
        return released

    def _link(
        self, caller: Caller, assignment_id: int, by_student: dict[str, _StudentFeedback]
    ) -> list[dict]:
        missing_ts = sorted(s for s, e in by_student.items() if e.timestamp is None)
        if missing_ts:
            raise InvalidArchive(
                f"No timestamp.txt for {', '.join(missing_ts[:10])}: run `nbgrader "
                "generate_feedback` on collected submissions.",
                details={"students": missing_ts},
            )
        wanted = {s: parse_timestamp(e.timestamp or "") for s, e in by_student.items()}
        rows = self.session.execute(
            select(Submission, User)
            .join(User, User.id == Submission.user_id)
            .where(
                Submission.assignment_id == assignment_id,
                Submission.removed_at.is_(None),
                User.org_id == caller.org_id,
                User.username.in_(list(wanted)),
            )
            .options(selectinload(Submission.feedback))
        ).all()
        found = {user.username: sub for sub, user in rows if sub.timestamp == wanted[user.username]}
        unmatched = sorted(set(wanted) - set(found))
        if unmatched:
            raise NotFound(
                "No submission matches the feedback of "
                + ", ".join(f"{s} ({format_timestamp(wanted[s])})" for s in unmatched[:10])
                + ". Collect the submission again before generating its feedback.",
                code="submission_not_found",
                details={"students": unmatched},
            )
        now = self.ctx.clock()
        released = []
        for student, entry in sorted(by_student.items()):
            submission = found[student]
            existing = {fb.notebook_id: fb for fb in submission.feedback}
            replaced = []
            for notebook_id, blob in entry.notebooks.items():
                fb = existing.get(notebook_id)
                if fb is None:
                    fb = Feedback(
                        submission_id=submission.id, notebook_id=notebook_id, created_at=now
                    )
                    self.session.add(fb)
                elif fb.blob_key != blob.key:
                    replaced.append(fb.blob_key)
                fb.blob_key, fb.sha256, fb.size = blob.key, blob.sha256, blob.size
                fb.released_by_id = caller.user_id
                fb.updated_at = now
            self.ctx.record(
                caller,
                "feedback_released",
                assignment_id=assignment_id,
                subject_id=submission.id,
                details={"notebooks": sorted(entry.notebooks)},
                at=now,
            )
            released.append(
                {
                    "student_id": student,
                    "submission_id": submission.id,
                    "timestamp": format_timestamp(submission.timestamp),
                    "notebooks": sorted(entry.notebooks),
                    "_replaced": replaced,
                }
            )
        return released

    def fetch(
        self, caller: Caller, name: str, student: str | None = None, *, record: bool = True
    ) -> Iterator[bytes]:
        """A tar of ``<timestamp>/<notebook>.html`` for every submission of one student.

        Feedback stays available after the assignment is unreleased. With ``record``, a
        ``feedback_fetched`` event (the files delivered) once the whole stream has gone out.
        """
        assignment = self.assignments.find(caller, name, include_unreleased=True)
        if student is None:
            student = caller.username
        validate_identifier(student, "student")
        if not caller.is_staff and student != caller.username:
            raise Forbidden("Students can only fetch their own feedback.")
        rows = self.session.execute(
            select(Feedback, Submission)
            .join(Submission, Submission.id == Feedback.submission_id)
            .join(User, User.id == Submission.user_id)
            .where(
                Submission.assignment_id == assignment.id,
                User.username == student,
                User.org_id == caller.org_id,
                Submission.removed_at.is_(None),
            )
            .order_by(Submission.timestamp, Feedback.notebook_id)
        ).all()
        members = [
            (f"{format_timestamp(sub.timestamp)}/{fb.notebook_id}.html", fb.size, fb.blob_key)
            for fb, sub in rows
        ]
        manifest = [
            {
                "submission_id": sub.id,
                "timestamp": format_timestamp(sub.timestamp),
                "notebook_id": fb.notebook_id,
                "sha256": fb.sha256,
            }
            for fb, sub in rows
        ]
        assignment_id = assignment.id
        self.session.commit()  # no transaction stays open while the files stream
        if not record:  # HEAD downloads nothing
            return stream_tar(manifest, members, self.ctx.storage)

        def delivered(unsent: set[str]) -> None:
            files = len(members) - len(unsent)
            self.ctx.record_after_download(
                "a feedback download",
                lambda: self.ctx.record(
                    caller,
                    "feedback_fetched",
                    assignment_id=assignment_id,
                    details={"student_id": student, "files": files},
                ),
            )

        return stream_tar(manifest, members, self.ctx.storage, on_sent=delivered)

"""``nbgrader submit``: upload the student's folder; the service stamps the time."""

from __future__ import annotations

import os
import secrets
import shutil
import uuid
from pathlib import Path

from nbgrader.exchange.abc import ExchangeSubmit as ABCExchangeSubmit

from nbgrader_plugin.client import UNREACHABLE, ExchangeClient, ExchangeClientError, path
from nbgrader_plugin.exchange import Exchange

# The service's refusals of a submission to an assignment that is not (or no longer) released.
NOT_SUBMITTABLE = ("assignment_not_found", "not_released")


def not_released(assignment_id: str, course_id: str) -> str:
    return (
        f"Assignment {assignment_id} is not released in course {course_id}; it cannot be "
        "submitted. Ask your instructor."
    )


class ExchangeSubmit(Exchange, ABCExchangeSubmit):
    action = "Submitting the assignment"
    student_side = True

    def init_src(self) -> None:
        course_id = self.require_course()
        local = self.local_assignment_path(course_id, self.coursedir.assignment_id)
        if local.exists() and not local.is_dir():  # (a link to a file: the link is named)
            self.fail(
                f"{os.path.abspath(local)} is a file, not the assignment's folder. Rename or "
                "move that file, fetch the assignment with `nbgrader fetch_assignment "
                f"{self.coursedir.assignment_id}`, then submit from its folder."
            )
        self.src_path = local.resolve()
        self.coursedir.assignment_id = self.src_path.name
        if not self.src_path.is_dir():
            self.fail(
                f"Assignment not found at: {self.src_path}. Fetch it first with "
                f"`nbgrader fetch_assignment {self.coursedir.assignment_id}`."
            )

    def init_dest(self) -> None:
        course_id = self.coursedir.course_id
        entry = self.token_entries().get(course_id)
        if entry is None:
            self.client(course_id)  # fails with the "no token" message
            return
        self.student_id = entry.username or ""
        configured = self.coursedir.student_id
        if configured not in ("", "*") and configured != self.student_id:
            self.fail(
                f"CourseDirectory.student_id is '{configured}' but your exchange identity is "
                f"'{self.student_id}'. Remove the student_id setting and try again."
            )

    def check_filename_diff(self, released: list[str]) -> None:
        submitted = sorted(p.stem for p in self.src_path.glob("*.ipynb"))
        missing = [nb for nb in released if nb not in submitted]
        extra = [nb for nb in submitted if nb not in released]
        if not missing and not extra:
            return
        expected = "\n\t".join(
            f"{nb}.ipynb: {'MISSING' if nb in missing else 'FOUND'}" for nb in released
        )
        got = "\n\t".join(f"{nb}.ipynb: {'EXTRA' if nb in extra else 'OK'}" for nb in submitted)
        message = f"Expected:\n\t{expected}\nSubmitted:\n\t{got}"
        if missing and self.strict:
            self.fail(
                f"Assignment {self.coursedir.assignment_id} not submitted. There are missing "
                f"notebooks for the submission:\n{message}"
            )
        self.log.warning(
            "Possible missing notebooks and/or extra notebooks submitted for assignment %s:\n%s",
            self.coursedir.assignment_id,
            message,
        )

    def copy_files(self) -> None:
        course_id, assignment_id = self.coursedir.course_id, self.coursedir.assignment_id
        self.check_size(self.src_path)
        self.log.info("Source: %s", self.src_path)
        with self.failures():
            client = self.client(course_id)
            if self.strict:  # missing notebooks refuse the submission: check before sending
                self.check_filename_diff(self._released_notebooks(client))
            secret = secrets.token_hex(64)
            handle, size = self.pack_folder(
                self.src_path,
                "submit again",
                ignore=self.ignore(),
                extra={"submission_secret.txt": secret.encode()},
            )
            with handle, self.progress(size, f"submit {assignment_id}") as progress:
                try:
                    answer = client.upload(
                        "POST",
                        path("courses", course_id, "assignments", assignment_id, "submissions"),
                        handle,
                        size,
                        progress,
                        # one key for every attempt: the service stores the submission once
                        idempotency_key=uuid.uuid4().hex,
                        on_retry=self._say_retrying,
                        members=handle.member_count,
                        unpacked=handle.unpacked_size,
                    )
                except ExchangeClientError as exc:
                    if exc.code in NOT_SUBMITTABLE:
                        self.fail(f"{not_released(assignment_id, course_id)} ({exc})")
                    raise
            if not self.strict:  # only a warning: the service's answer names the notebooks
                released = answer.get("release_notebooks")
                if released is None:  # a service older than release_notebooks
                    released = self._released_notebooks(client)
                self.check_filename_diff(released)
        timestamp = answer["timestamp"]
        self._cache_copy(course_id, answer["student_id"], assignment_id, timestamp, secret)
        self.log.info("Submitted as: %s %s %s", course_id, assignment_id, timestamp)

    def _say_retrying(
        self, error: ExchangeClientError, delay: float, attempt: int, attempts: int
    ) -> None:
        what = (
            "no answer came from the exchange"
            if error.code == UNREACHABLE
            else f"the exchange answered HTTP {error.status}"
        )
        self.log.warning(
            "Submitting %s: %s (%s). Sending it again in %g s (attempt %d of %d); the exchange "
            "keeps one submission whichever attempt reaches it.",
            self.coursedir.assignment_id,
            what,
            error,
            delay,
            attempt,
            attempts,
        )

    def _released_notebooks(self, client: ExchangeClient) -> list[str]:
        """The notebooks of the assignment's current release (fails when it is not released)."""
        course_id, assignment_id = self.coursedir.course_id, self.coursedir.assignment_id
        listing = client.get_json(path("courses", course_id, "assignments"))
        released = next(
            (a for a in listing["assignments"] if a["assignment_id"] == assignment_id), None
        )
        if released is None or not released["released"] or released["release"] is None:
            self.fail(not_released(assignment_id, course_id))
        return released["release"]["notebooks"]

    def _cache_copy(
        self, course_id: str, student_id: str, assignment_id: str, timestamp: str, secret: str
    ) -> None:
        """Keep the student's own copy, as nbgrader's default exchange does."""
        target = self.cache_path(course_id, student_id, assignment_id, timestamp)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(self.src_path, target, ignore=self.ignore())
            Path(target, "timestamp.txt").write_text(timestamp)
            Path(target, "submission_secret.txt").write_text(secret)
        except OSError as exc:
            shutil.rmtree(target, ignore_errors=True)  # no half copy for `nbgrader list --cached`
            self.log.warning(
                "Submitted: the exchange has your submission. Only the local copy nbgrader keeps "
                "of it (in %s) could not be written: %s. No need to submit again.",
                target,
                _copy_failure(exc),
            )


def _copy_failure(exc: OSError) -> str:
    """A short reason: ``copytree`` gathers one error per file into a ``shutil.Error``."""
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list):
        failures = exc.args[0]
        first = failures[0][2] if failures and len(failures[0]) == 3 else "unknown"
        return f"{len(failures)} file(s) could not be copied, the first: {first}"
    return exc.strerror or str(exc)

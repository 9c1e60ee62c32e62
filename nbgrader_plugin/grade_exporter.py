"""``nbgrader export --exporter=nbgrader_plugin.LtiGradeExporter``: push the gradebook's final
scores to the exchange, which sends them to the LMS gradebook (and, optionally, import the LMS
roster into the gradebook first)."""

from __future__ import annotations

import os

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins.export import ExportPlugin
from traitlets import Bool, Unicode

from nbgrader_plugin.client import ExchangeClient, ExchangeClientError, path
from nbgrader_plugin.gradebook import record_student
from nbgrader_plugin.tokens import URL_ENV, TokenStore


class LtiGradeExporter(ExportPlugin):
    """Send each student's final score (``max(0, score - late penalty)``) and the maximum."""

    service_url = Unicode(
        "", help=f"The exchange URL (default: c.Exchange.service_url, ${URL_ENV}, token store)."
    ).tag(config=True)
    import_roster = Bool(
        False,
        help="Before pushing, add the LMS roster's students to the gradebook (id, names, "
        "email, lms_user_id).",
    ).tag(config=True)
    include_ungraded = Bool(
        False,
        help="Also push scores that still need manual grading (default: wait for them).",
    ).tag(config=True)

    def _client(self, course_id: str) -> ExchangeClient:
        if not course_id:
            raise SystemExit("No course id: run it in the course directory, or pass --course.")
        store = TokenStore()
        try:
            entry = store.load().get(course_id)
        except ValueError as exc:
            raise SystemExit(str(exc)) from exc
        if entry is None:
            raise SystemExit(
                f"You have no access token for course '{course_id}': launch the course from "
                "your LMS (or run `lti-exchange login`), then try again."
            )
        exchange_url = self.config.get("Exchange", {}).get("service_url", "")
        configured = (self.service_url or exchange_url or os.environ.get(URL_ENV, "")).rstrip("/")
        # As for the exchange classes: the token goes to the service it was stored for.
        url = (entry.service_url or "").rstrip("/") or configured
        if configured and url != configured:
            self.log.warning(
                "The configured exchange URL is %s, but your token for course %s was stored "
                "for %s; using %s.",
                configured,
                course_id,
                url,
                url,
            )
        if not url:
            raise SystemExit("No exchange URL: set c.Exchange.service_url in nbgrader_config.py.")
        return ExchangeClient(url, entry, store=store)

    def _push(
        self, client: ExchangeClient, gradebook: Gradebook, course_id: str
    ) -> tuple[dict, dict, list[dict], int]:
        """Import the roster if asked, send the grades, read the gradebook status back."""
        try:
            if self.import_roster:
                self._import_roster(client, gradebook, course_id)
            grades, skipped = self._collect(gradebook)
            answer = client.call(
                "POST", path("courses", course_id, "grades"), json_body={"grades": grades}
            )
            status = client.get_json(path("courses", course_id, "grades"))
        except ExchangeClientError as exc:
            raise SystemExit(f"Pushing grades failed: {exc}") from exc
        return answer, status, grades, skipped

    def export(self, gradebook: Gradebook) -> None:
        course_id = gradebook.course_id
        client = self._client(course_id)
        with client:
            answer, status, grades, skipped = self._push(client, gradebook, course_id)
        counts = answer["counts"]
        self.log.info(
            "Pushed %d grade(s) of course %s: %d queued for the LMS, %d unchanged, %d not "
            "sendable; skipped %d still needing manual grading",
            len(grades),
            course_id,
            counts["queued"],
            counts["unchanged"],
            counts["not_sendable"],
            skipped,
        )
        totals = status["counts"]
        self.log.info(
            "LMS gradebook status: %s",
            ", ".join(f"{name} {totals[name]}" for name in sorted(totals)),
        )
        for grade in answer["grades"]:
            if grade["status"] == "not_sendable":
                self.log.warning(
                    "Not sendable: %s %s (%s)",
                    grade["assignment_id"],
                    grade["student_id"],
                    grade["reason"],
                )
        for grade in status["failed"]:
            self.log.error(
                "Failed: %s %s: %s", grade["assignment_id"], grade["student_id"], grade["reason"]
            )

    def _collect(self, gradebook: Gradebook) -> tuple[list[dict], int]:
        grades, skipped = [], 0
        assignments = [
            a for a in gradebook.assignments if not self.assignment or a.name in self.assignment
        ]
        students = [s for s in gradebook.students if not self.student or s.id in self.student]
        for assignment in assignments:
            for student in students:
                try:
                    submission = gradebook.find_submission(assignment.name, student.id)
                except MissingEntry:
                    continue  # never submitted: nothing to send
                if submission.needs_manual_grade and not self.include_ungraded:
                    skipped += 1
                    continue
                score = max(0.0, submission.score - submission.late_submission_penalty)
                grades.append(
                    {
                        "assignment_id": assignment.name,
                        "student_id": student.id,
                        "score": score,
                        "max_score": submission.max_score,
                        "submitted_at": submission.timestamp.isoformat() + "+00:00"
                        if submission.timestamp
                        else None,
                    }
                )
        return grades, skipped

    def _import_roster(self, client: ExchangeClient, gradebook: Gradebook, course_id: str) -> None:
        members = client.get_json(path("courses", course_id, "members"))["members"]
        added = 0
        for member in members:
            if member["role"] != "Learner" or not member["active"]:
                continue
            record_student(gradebook, member["username"], member)
            added += 1
        self.log.info("Imported %d student(s) of the LMS roster into the gradebook", added)

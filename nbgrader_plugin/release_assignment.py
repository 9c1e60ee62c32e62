"""``nbgrader release_assignment``: upload ``release/<assignment>`` as a new released version."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from nbgrader.exchange.abc import ExchangeReleaseAssignment as ABCExchangeReleaseAssignment

from nbgrader_plugin.client import path
from nbgrader_plugin.exchange import Exchange


def assignment_points(db_url: str, course_id: str, assignment_id: str) -> float | None:
    """The assignment's total points in the nbgrader gradebook (``max_score``), or None when
    unknown (no gradebook, not generated, no graded cells). Never creates a gradebook file."""
    from nbgrader.api import Gradebook, MissingEntry
    from sqlalchemy.exc import SQLAlchemyError

    if db_url.startswith("sqlite:///") and not Path(db_url[len("sqlite:///") :]).is_file():
        return None
    try:
        with Gradebook(db_url, course_id) as gradebook:
            points = float(gradebook.find_assignment(assignment_id).max_score or 0)
    except (MissingEntry, SQLAlchemyError, OSError, ValueError, TypeError):
        return None
    return points if 0 < points <= 1_000_000 else None  # the exchange's limit


class ExchangeReleaseAssignment(Exchange, ABCExchangeReleaseAssignment):
    action = "Releasing the assignment"

    def init_src(self) -> None:
        assignment_id = self.coursedir.assignment_id
        self.src_path = Path(
            self.coursedir.format_path(self.coursedir.release_directory, ".", assignment_id)
        )
        source = Path(
            self.coursedir.format_path(self.coursedir.source_directory, ".", assignment_id)
        )
        if not self.src_path.is_dir():
            if source.is_dir():
                self.fail(
                    f"Assignment found in {source} but not {self.src_path}; run "
                    f"`nbgrader generate_assignment {assignment_id}` first."
                )
            self.fail(f"Assignment not found: {self.src_path}")

    def init_dest(self) -> None:
        if not self.coursedir.course_id:
            self.fail("No course id specified. Re-run with --course flag.")

    def copy_files(self) -> None:
        course_id = self.coursedir.course_id
        assignment_id = self.coursedir.assignment_id
        self.check_size(self.src_path, refuse_dropped_files=True)
        self.log.info("Source: %s", self.src_path)
        points = assignment_points(self.coursedir.db_url, course_id, assignment_id)
        query = "?" + urlencode({"max_score": repr(points)}) if points is not None else ""
        handle, size = self.pack_folder(self.src_path, "release again", ignore=self.ignore())
        with handle, self.failures():
            client = self.client(course_id)
            with self.progress(size, f"release {assignment_id}") as progress:
                answer = client.upload(
                    "POST",
                    path("courses", course_id, "assignments", assignment_id, "releases")
                    + query,  # the assignment's points, for the LMS's gradebook column
                    handle,
                    size,
                    progress,
                    members=handle.member_count,
                    unpacked=handle.unpacked_size,
                )
        self.log.info(
            "Released as: %s %s (version %s, notebooks: %s)",
            course_id,
            assignment_id,
            answer["version"],
            ", ".join(answer["notebooks"]) or "none",
        )

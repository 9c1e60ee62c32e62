"""``nbgrader release_assignment``: upload ``release/<assignment>`` as a new released version."""

from __future__ import annotations

from pathlib import Path

from nbgrader.exchange.abc import ExchangeReleaseAssignment as ABCExchangeReleaseAssignment

from nbgrader_plugin.archive import pack_directory
from nbgrader_plugin.client import path
from nbgrader_plugin.exchange import Exchange


class ExchangeReleaseAssignment(Exchange, ABCExchangeReleaseAssignment):
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
        handle, size = pack_directory(self.src_path, ignore=self.ignore())
        with handle, self.failures("Releasing the assignment"):
            client = self.client(course_id)
            with self.progress(size, f"release {assignment_id}") as progress:
                answer = client.upload(
                    "POST",
                    path("courses", course_id, "assignments", assignment_id, "releases"),
                    handle,
                    size,
                    progress,
                )
        self.log.info(
            "Released as: %s %s (version %s, notebooks: %s)",
            course_id,
            assignment_id,
            answer["version"],
            ", ".join(answer["notebooks"]) or "none",
        )

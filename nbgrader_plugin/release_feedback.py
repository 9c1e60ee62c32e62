"""``nbgrader release_feedback``: upload ``feedback/<student>/<assignment>/*.html`` in one request.

Each student's folder carries the ``timestamp.txt`` that collect wrote; the service links the
feedback to the submission with that exact server timestamp.
"""

from __future__ import annotations

import glob
import io
import tarfile
import tempfile
from pathlib import Path

from nbgrader.exchange.abc import ExchangeReleaseFeedback as ABCExchangeReleaseFeedback

from nbgrader_plugin.client import path
from nbgrader_plugin.exchange import Exchange


class ExchangeReleaseFeedback(Exchange, ABCExchangeReleaseFeedback):
    action = "Releasing feedback"

    def init_src(self) -> None:
        student = self.coursedir.student_id or "*"
        pattern = self.coursedir.format_path(
            self.coursedir.feedback_directory, student, self.coursedir.assignment_id
        )
        excluded = set(getattr(self.coursedir, "student_id_exclude", "").split(",")) - {""}
        self.folders: dict[str, Path] = {}
        for folder in sorted(glob.glob(pattern)):
            student_id = Path(folder).parent.name
            if student_id not in excluded and Path(folder).is_dir():
                self.folders[student_id] = Path(folder)

    def init_dest(self) -> None:
        self.require_course()

    def copy_files(self) -> None:
        course_id, assignment_id = self.coursedir.course_id, self.coursedir.assignment_id
        if not self.folders:
            self.log.warning(
                "No feedback for '%s' found in %s; run `nbgrader generate_feedback %s` first.",
                assignment_id,
                self.coursedir.feedback_directory,
                assignment_id,
            )
            return
        with tempfile.TemporaryFile() as handle:
            count, members, unpacked = self._pack(handle)
            size = handle.tell()
            handle.seek(0)
            with self.failures():
                client = self.client(course_id)
                answer = client.upload(
                    "POST",
                    path("courses", course_id, "assignments", assignment_id, "feedback"),
                    handle,
                    size,
                    members=members,
                    unpacked=unpacked,
                    feedback=True,
                )
        for item in answer["released"]:
            self.log.info(
                "Released feedback for %s on %s (%s): %s",
                item["student_id"],
                assignment_id,
                item["timestamp"],
                ", ".join(item["notebooks"]),
            )
        self.log.info(
            "Released %d feedback file(s) for %d student(s)", count, len(answer["released"])
        )

    def _pack(self, handle) -> tuple[int, int, int]:
        """Each student's feedback folder into ``handle`` as a tar: the feedback files written,
        the archive's members and the sum of their sizes."""
        count = members = unpacked = 0
        with tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for student_id, folder in self.folders.items():
                timestamp = folder / "timestamp.txt"
                if not timestamp.is_file():
                    self.fail(
                        f"{timestamp} is missing: collect the submission with `nbgrader collect` "
                        "and generate feedback again."
                    )
                html_files = sorted(folder.glob("*.html"))
                if not html_files:
                    continue
                data = timestamp.read_bytes().strip()
                info = tarfile.TarInfo(f"{student_id}/timestamp.txt")
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
                members, unpacked = members + 1, unpacked + info.size
                for html in html_files:
                    added = archive.gettarinfo(str(html), arcname=f"{student_id}/{html.name}")
                    if added is None or not added.isreg():  # the exchange takes files only
                        self.fail(
                            f"{html} is not a file (a folder, a link or a special file), so it "
                            "cannot be sent as feedback. Move it out of that folder, or run "
                            "`nbgrader generate_feedback` again, then release feedback again."
                        )
                    with open(html, "rb") as source:
                        archive.addfile(added, source)
                    count, members, unpacked = count + 1, members + 1, unpacked + added.size
        return count, members, unpacked

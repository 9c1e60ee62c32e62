"""``nbgrader fetch_feedback``: download into ``[course/]assignment/feedback/<timestamp>/``."""

from __future__ import annotations

import shutil
import tarfile

from nbgrader.exchange.abc import ExchangeFetchFeedback as ABCExchangeFetchFeedback

from nbgrader_plugin.archive import CHUNK, UnsafeArchive, iter_safe_members
from nbgrader_plugin.client import path
from nbgrader_plugin.exchange import Exchange


class ExchangeFetchFeedback(Exchange, ABCExchangeFetchFeedback):
    def init_src(self) -> None:
        self.require_course()

    def init_dest(self) -> None:
        course_id, assignment_id = self.coursedir.course_id, self.coursedir.assignment_id
        self.dest_path = (
            self.local_assignment_path(course_id, assignment_id) / "feedback"
        ).resolve()

    def copy_files(self) -> None:
        course_id, assignment_id = self.coursedir.course_id, self.coursedir.assignment_id
        fetched = []
        with self.failures("Fetching feedback"):
            client = self.client(course_id)
            response = client.download(
                path("courses", course_id, "assignments", assignment_id, "feedback")
            )
            with response, tarfile.open(fileobj=response.raw, mode="r|", bufsize=CHUNK) as archive:
                try:
                    for name, info in iter_safe_members(archive):
                        if name.name == "manifest.json" or info.isdir() or len(name.parts) != 2:
                            continue
                        target = self.dest_path.joinpath(*name.parts)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        source = archive.extractfile(info)
                        assert source is not None
                        with open(target, "wb") as out:
                            shutil.copyfileobj(source, out)
                        fetched.append(name)
                except UnsafeArchive as exc:
                    self.fail(f"The feedback was refused: {exc}. Tell your instructor.")
        if not fetched:
            self.log.warning(
                "No feedback is available yet for %s in course %s.", assignment_id, course_id
            )
            return
        for name in fetched:
            self.log.info("Fetched feedback: %s", self.dest_path.joinpath(*name.parts))
        self.log.info("Fetched feedback for %d notebook(s) of %s", len(fetched), assignment_id)

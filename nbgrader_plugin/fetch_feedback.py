"""``nbgrader fetch_feedback``: download into ``[course/]assignment/feedback/<timestamp>/``."""

from __future__ import annotations

import tarfile
from pathlib import PurePosixPath

from nbgrader.exchange.abc import ExchangeFetchFeedback as ABCExchangeFetchFeedback

from nbgrader_plugin.archive import (
    UNSENT_MEMBER,
    TarStream,
    UnsafeArchive,
    iter_safe_members,
    json_list_member,
)
from nbgrader_plugin.client import ResponseBody, path
from nbgrader_plugin.exchange import Exchange

MAX_UNSENT_BYTES = 1024 * 1024


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
        fetched: list[PurePosixPath] = []
        unsent: dict[PurePosixPath, dict] = {}
        with self.failures("Fetching feedback"):
            client = self.client(course_id)
            response = client.download(
                path("courses", course_id, "assignments", assignment_id, "feedback")
            )
            with response:
                archive = TarStream(ResponseBody(response))  # our own reader, never tarfile's
                try:
                    for name, info in iter_safe_members(archive):
                        if str(name) == UNSENT_MEMBER and info.isfile():
                            unsent = self._unsent(json_list_member(archive, info, MAX_UNSENT_BYTES))
                            continue
                        if name.name == "manifest.json" or info.isdir() or len(name.parts) != 2:
                            continue
                        target = self.dest_path.joinpath(*name.parts)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        with open(target, "wb") as out:
                            for piece in archive.data(info.size):
                                out.write(piece)
                        fetched.append(name)
                except (UnsafeArchive, tarfile.TarError, EOFError) as exc:
                    self.fail(f"The feedback was refused: {exc}. Tell your instructor.")
        for name, entry in unsent.items():
            self._report_unsent(name, entry)
            if name in fetched:  # damaged: zeros stand in for part of it
                self.dest_path.joinpath(*name.parts).unlink(missing_ok=True)
                fetched.remove(name)
        if not fetched:
            if unsent:
                return
            self.log.warning(
                "No feedback is available yet for %s in course %s.", assignment_id, course_id
            )
            return
        for name in fetched:
            self.log.info("Fetched feedback: %s", self.dest_path.joinpath(*name.parts))
        self.log.info("Fetched feedback for %d notebook(s) of %s", len(fetched), assignment_id)

    @staticmethod
    def _unsent(entries: list[dict]) -> dict[PurePosixPath, dict]:
        """The entries of ``missing.json``, by member name."""
        return {
            PurePosixPath(entry["name"]): entry
            for entry in entries
            if isinstance(entry.get("name"), str)
        }

    def _report_unsent(self, name: PurePosixPath, entry: dict) -> None:
        self.log.error(
            "Could not fetch the feedback %s (submission of %s): %s Tell your instructor, "
            "who can release the feedback again.",
            name.name,
            name.parent,
            entry.get("message", "the exchange could not send it."),
        )

"""``nbgrader fetch_feedback``: download into ``[course/]assignment/feedback/<timestamp>/``."""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path, PurePosixPath

from nbgrader.exchange.abc import ExchangeFetchFeedback as ABCExchangeFetchFeedback

from nbgrader_plugin.archive import (
    UNSENT_MEMBER,
    TarStream,
    UnsafeArchive,
    iter_safe_members,
    json_list_member,
)
from nbgrader_plugin.client import ExchangeClient, ResponseBody, path
from nbgrader_plugin.exchange import Exchange

MAX_LISTING_BYTES = 16 * 1024 * 1024  # manifest.json, missing.json
DAMAGED = (
    "what arrived does not match what was released (its copy on the exchange is damaged), so it "
    "was not kept."
)


class ExchangeFetchFeedback(Exchange, ABCExchangeFetchFeedback):
    action = "Fetching feedback"
    student_side = True

    def init_src(self) -> None:
        self.require_course()

    def init_dest(self) -> None:
        course_id, assignment_id = self.coursedir.course_id, self.coursedir.assignment_id
        self.dest_path = (
            self.local_assignment_path(course_id, assignment_id) / "feedback"
        ).resolve()

    def copy_files(self) -> None:
        course_id, assignment_id = self.coursedir.course_id, self.coursedir.assignment_id
        with self.failures():
            client = self.client(course_id)
            url = path("courses", course_id, "assignments", assignment_id, "feedback")
            fetched, unsent = self.again_if_cut(client, lambda: self._download(client, url))
        for name, entry in unsent.items():
            self._report_unsent(name, entry)
            if name in fetched:  # named damaged by the exchange though the manifest agreed
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

    def _download(
        self, client: ExchangeClient, url: str
    ) -> tuple[list[PurePosixPath], dict[PurePosixPath, dict]]:
        """One try: the files written (each checked against the manifest's SHA-256 as it is
        written), and those the exchange could not send or that arrived damaged."""
        fetched: list[PurePosixPath] = []
        unsent: dict[PurePosixPath, dict] = {}
        expected: dict[PurePosixPath, str] = {}  # the manifest's SHA-256 of each file
        with client.download(url) as response:
            archive = TarStream(ResponseBody(response))  # our own reader, never tarfile's
            try:
                for name, info in iter_safe_members(archive):
                    if str(name) in ("manifest.json", UNSENT_MEMBER) and info.isfile():
                        listed = json_list_member(archive, info, MAX_LISTING_BYTES)
                        if str(name) == UNSENT_MEMBER:
                            unsent.update(self._unsent(listed))
                        else:
                            expected = self._expected(listed)
                        continue
                    if name.name == "manifest.json" or info.isdir() or len(name.parts) != 2:
                        continue
                    target = self.dest_path.joinpath(*name.parts)
                    if self._write(archive, info, target, expected.get(name)):
                        fetched.append(name)
                    else:  # not what was released: an earlier copy, if any, stays
                        unsent[name] = {"message": DAMAGED}
            except (UnsafeArchive, tarfile.TarError, EOFError) as exc:
                self.fail(f"The feedback was refused: {exc}. Tell your instructor.")
        return fetched, unsent

    @staticmethod
    def _write(archive: TarStream, info: tarfile.TarInfo, target: Path, sha256: str | None) -> bool:
        """Write one member's bytes to ``target`` through a temporary name; whether it was
        kept. Bytes whose SHA-256 is not ``sha256`` (when the manifest gave one), or a write
        that does not finish (the download breaks off, the disk is full), leave ``target`` as
        it was and no part file."""
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(f".{target.name}.part")
        digest = hashlib.sha256()
        try:
            with open(part, "wb") as out:
                for piece in archive.data(info.size):
                    digest.update(piece)
                    out.write(piece)
            if sha256 is not None and digest.hexdigest() != sha256:
                part.unlink()
                return False
            os.replace(part, target)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return True

    @staticmethod
    def _expected(entries: list[dict]) -> dict[PurePosixPath, str]:
        """The manifest's SHA-256 of each file, by member name."""
        return {
            PurePosixPath(f"{entry['timestamp']}/{entry['notebook_id']}.html"): entry["sha256"]
            for entry in entries
            if all(isinstance(entry.get(k), str) for k in ("timestamp", "notebook_id", "sha256"))
        }

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

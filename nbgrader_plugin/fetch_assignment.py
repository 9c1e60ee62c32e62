"""``nbgrader fetch_assignment``: download the released files into ``[course/]assignment``."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path, PurePosixPath

from nbgrader.exchange.abc import ExchangeFetchAssignment as ABCExchangeFetchAssignment

from nbgrader_plugin.archive import HashingReader, UnsafeArchive, extract_stream
from nbgrader_plugin.client import ExchangeClient, ResponseBody, path
from nbgrader_plugin.exchange import Exchange


class ExchangeFetchAssignment(Exchange, ABCExchangeFetchAssignment):
    action = "Fetching the assignment"
    student_side = True

    def init_src(self) -> None:
        self.require_course()

    def init_dest(self) -> None:
        course_id, assignment_id = self.coursedir.course_id, self.coursedir.assignment_id
        relative = self.local_assignment_path(course_id, assignment_id)
        self.dest_path = relative.resolve()
        if self.dest_path.exists() and not self.dest_path.is_dir():
            self.fail(
                f"{relative} is a file, not a folder, so the assignment cannot be fetched into "
                "it. Rename or move that file, then fetch again."
            )
        if self.dest_path.is_dir() and not self.replace_missing_files:
            self.fail(
                "You already have a copy of the assignment in this directory: "
                f"{relative}. Use --replace to restore missing files only."
            )

    def copy_files(self) -> None:
        course_id, assignment_id = self.coursedir.course_id, self.coursedir.assignment_id
        self.dest_path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=self.dest_path.parent))
        try:
            with self.failures():
                self._download(course_id, assignment_id, staging)
            if self.dest_path.is_dir():
                self._copy_missing(staging, self.dest_path)
            else:
                staging.rename(self.dest_path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.log.info("Destination: %s", self.dest_path)
        self.log.info("Fetched as: %s %s", course_id, assignment_id)

    def _download(self, course_id: str, assignment_id: str, staging: Path) -> None:
        """The release into ``staging``, asked again (from the start) while it breaks off."""
        client = self.client(course_id)
        url = path("courses", course_id, "assignments", assignment_id, "archive")

        def attempt() -> None:
            shutil.rmtree(staging)  # what an earlier, broken-off try left
            staging.mkdir()
            self._download_once(client, url, assignment_id, staging)

        self.again_if_cut(client, attempt)

    def _download_once(
        self, client: ExchangeClient, url: str, assignment_id: str, staging: Path
    ) -> None:
        ignored = self.coursedir.ignore
        with client.download(url) as response:
            body = ResponseBody(response)  # a body that stops half-way raises DownloadCut
            with self.progress(body.expected, f"fetch {assignment_id}") as progress:
                reader = HashingReader(body, progress)
                try:
                    extract_stream(reader, staging, skip=lambda name: _ignored(name, ignored))
                except UnsafeArchive as exc:
                    reader.drain()  # the rest: a download cut off is asked again, not refused
                    self.fail(f"The released files were refused: {exc}. Tell your instructor.")
                reader.drain()
        expected = response.headers.get("X-Content-SHA256")
        if expected and reader.sha256.hexdigest() != expected:
            self.fail(
                "The released files arrived different from what was released (checksum "
                "mismatch). Fetch again; if it happens again, the exchange's copy is damaged: "
                "tell your instructor, who can release the assignment again."
            )

    def _copy_missing(self, source: Path, dest: Path) -> None:
        for item in sorted(source.rglob("*")):
            target = dest / item.relative_to(source)
            if target.exists():
                continue
            if item.is_dir():
                self.log.warning("Creating missing directory '%s'", target)
                target.mkdir(parents=True)
            else:
                self.log.warning("Replacing missing file '%s'", target)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(item, target)


def _ignored(name: PurePosixPath, patterns: list[str]) -> bool:
    return any(part_matches(part, patterns) for part in name.parts)


def part_matches(part: str, patterns: list[str]) -> bool:
    from fnmatch import fnmatch

    return any(fnmatch(part, pattern) for pattern in patterns)

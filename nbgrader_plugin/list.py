"""``nbgrader list`` and the Assignments UI: released, cached (own) and inbound (all) listings.

The shapes are exactly those of nbgrader's default exchange (the Lab UI and formgrader read
them). Submissions come from the service, the authoritative record, in one request per course.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import logging
import os
import shutil
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from nbgrader.exchange.abc import ExchangeList as ABCExchangeList

from nbgrader_plugin.client import ExchangeClient, path
from nbgrader_plugin.exchange import Exchange


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as fh:
        for chunk in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ExchangeList(ABCExchangeList, Exchange):
    action = "Listing"

    def start(self) -> object:
        try:
            return super().start()  # nbgrader's lists and removes after the base class's start
        except OSError as exc:  # nbgrader lists after the base class's start has returned
            self.fail_locally(exc)
        finally:
            self.close_clients()

    def init_src(self) -> None:
        pass

    def init_dest(self) -> None:
        pass

    def copy_files(self) -> None:
        pass

    # -- released mode ------------------------------------------------------------------------
    def _released(self) -> list[dict]:
        items = []
        wanted = self.coursedir.assignment_id
        for course_id in self.course_ids():
            with self.failures("Listing assignments"):
                client = self.client(course_id)
                listing = client.get_json(path("courses", course_id, "assignments"))
            for assignment in listing["assignments"]:
                name = assignment["assignment_id"]
                if not assignment["released"] or (wanted and wanted != name):
                    continue
                items.append(self._released_item(client, course_id, assignment))
        return items

    def _released_item(self, client: ExchangeClient, course_id: str, assignment: dict) -> dict:
        name = assignment["assignment_id"]
        local = self.local_assignment_path(course_id, name)
        info = {"course_id": course_id, "assignment_id": name}
        if local.is_dir():  # a file of that name is in the way, not a fetched copy
            info["status"] = "fetched"
            info["path"] = os.path.abspath(local)
            info["notebooks"] = [
                {"notebook_id": nb.stem, "path": os.path.abspath(nb)}
                for nb in sorted(local.glob("*.ipynb"))
            ]
        else:
            remote = (
                client.service_url + "/api/v1/" + path("courses", course_id, "assignments", name)
            )
            info["status"] = "released"
            info["path"] = remote
            info["notebooks"] = [
                {"notebook_id": nb, "path": f"{remote}/{nb}.ipynb"}
                for nb in assignment["release"]["notebooks"]
            ]
        if self.remove:
            info["status"] = "removed"
        return info

    # -- submitted modes ----------------------------------------------------------------------
    def _submitted(self) -> list[dict]:
        groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
        student_filter = (
            self.coursedir.student_id if self.coursedir.student_id not in ("", "*") else None
        )
        for course_id in self.course_ids():
            with self.failures("Listing submissions"):
                client = self.client(course_id)
                me = client.entry.username
                student = me if self.cached else student_filter
                listing = client.get_json(
                    path("courses", course_id, "submissions"),
                    assignment_id=self.coursedir.assignment_id or None,
                    student_id=student,
                )
            rows = _CourseRows(self, client, course_id)
            for submission in listing["submissions"]:
                info = rows.info(submission)
                groups[(course_id, info["student_id"], info["assignment_id"])].append(info)
        result = []
        for key in sorted(groups):
            submissions = groups[key]
            if len(submissions) > 1:
                submissions.sort(key=_by_timestamp)
            result.append(
                {
                    "course_id": key[0],
                    "student_id": key[1],
                    "assignment_id": key[2],
                    "status": submissions[0]["status"],
                    "submissions": submissions,
                }
            )
        return result

    # -- output -------------------------------------------------------------------------------
    @staticmethod
    def format_inbound_assignment(info: dict) -> str:
        msg = "{course_id} {student_id} {assignment_id} {timestamp}".format(**info)
        if info["status"] == "submitted":
            if info["has_local_feedback"] and not info["feedback_updated"]:
                msg += " (feedback already fetched)"
            elif info["has_exchange_feedback"]:
                msg += " (feedback ready to be fetched)"
            else:
                msg += " (no feedback available)"
        return msg

    @staticmethod
    def format_outbound_assignment(info: dict) -> str:
        msg = "{course_id} {assignment_id}".format(**info)
        if info["status"] == "fetched":
            msg += " (already downloaded)"
        return msg

    def _parse(self) -> list[dict]:
        return self._submitted() if (self.inbound or self.cached) else self._released()

    def _log(self, assignments: list[dict], removing: bool) -> None:
        prefix = "Removing" if removing else ""
        with _buffered_output(self.log):
            if self.inbound or self.cached:
                self.log.info(f"{prefix} submitted assignments:".strip().capitalize())
                for group in assignments:
                    for info in group["submissions"]:
                        self.log.info(self.format_inbound_assignment(info))
            else:
                self.log.info(f"{prefix} released assignments:".strip().capitalize())
                for info in assignments:
                    self.log.info(self.format_outbound_assignment(info))

    def list_files(self) -> list[dict]:
        with _gc_paused():
            assignments = self._parse()
            self._log(assignments, removing=False)
        return assignments

    def remove_files(self) -> list[dict]:
        """Unrelease (released mode), remove submissions (inbound) or local copies (cached)."""
        with _gc_paused():
            assignments = self._parse()
            self._log(assignments, removing=True)
        for item in assignments:
            with self.failures("Removing"):
                client = self.client(item["course_id"])
                if self.cached:
                    for info in item["submissions"]:
                        shutil.rmtree(info["path"], ignore_errors=True)
                elif self.inbound:
                    for info in item["submissions"]:
                        client.call(
                            "DELETE",
                            path(
                                "courses",
                                item["course_id"],
                                "submissions",
                                str(info["submission_id"]),
                            ),
                        )
                else:
                    client.call(
                        "DELETE",
                        path(
                            "courses",
                            item["course_id"],
                            "assignments",
                            item["assignment_id"],
                            "release",
                        ),
                    )
        return assignments


def _by_timestamp(info: dict) -> str:
    return info["timestamp"]


def _subfolders(folder: str) -> set[str]:
    """Names of the folders (or links to folders) in ``folder``; none when it is missing."""
    try:
        with os.scandir(folder) as entries:
            return {entry.name for entry in entries if entry.is_dir()}
    except OSError:
        return set()


class _CourseRows:
    """Builds the listing entries of one course's submissions, the same as nbgrader's default
    exchange. What is the same for every row (URL prefix, the local cache and feedback
    folders) is worked out once, so that a row costs no system call unless the folder of its
    feedback or cached copy exists (thousands of rows list in milliseconds)."""

    def __init__(self, lister: ExchangeList, client: ExchangeClient, course_id: str) -> None:
        self.lister = lister
        self.course_id = course_id
        self.status = "removed" if lister.remove else "submitted"
        self.remote = client.service_url + "/api/v1/" + path("courses", course_id, "submissions")
        self.cache = str(Path(lister.cache, course_id))
        self.cached_copies = set() if lister.cached else _subfolders(self.cache)
        self._assignments: dict[str, tuple[str, set[str]]] = {}

    def _assignment(self, assignment_id: str) -> tuple[str, set[str]]:
        """The local assignment folder, and the timestamps with a feedback folder in it."""
        known = self._assignments.get(assignment_id)
        if known is None:
            lister = self.lister
            if lister.path_includes_course:
                folder = os.path.join(lister.assignment_dir, self.course_id, assignment_id)
            else:
                folder = os.path.join(lister.assignment_dir, assignment_id)
            known = (folder, _subfolders(os.path.join(folder, "feedback")))
            self._assignments[assignment_id] = known
        return known

    def info(self, submission: dict) -> dict:
        student_id, assignment_id = submission["student_id"], submission["assignment_id"]
        timestamp = submission["timestamp"]
        name = f"{student_id}+{assignment_id}+{timestamp}"
        if self.lister.cached or name in self.cached_copies:
            location = f"{self.cache}/{name}"
        else:
            location = f"{self.remote}/{submission['id']}"
        assignment_dir, feedback_folders = self._assignment(assignment_id)
        local_feedback = timestamp in feedback_folders
        feedback = {fb["notebook_id"]: fb for fb in submission.get("feedback", ())}
        notebooks = []
        for notebook_id in submission["notebooks"]:
            if local_feedback:
                local = os.path.join(assignment_dir, "feedback", timestamp, f"{notebook_id}.html")
                has_local = os.path.isfile(local)
            else:
                has_local = False
            exchange = feedback.get(notebook_id)
            notebooks.append(
                {
                    "notebook_id": notebook_id,
                    "path": f"{location}/{notebook_id}.ipynb",  # ids hold no "/"
                    "has_local_feedback": has_local,
                    "has_exchange_feedback": exchange is not None,
                    "local_feedback_path": local if has_local else None,
                    "feedback_updated": bool(
                        has_local and exchange and _sha256(Path(local)) != exchange["sha256"]
                    ),
                }
            )
        has_local = bool(notebooks) and all(nb["has_local_feedback"] for nb in notebooks)
        info = {
            "course_id": self.course_id,
            "student_id": student_id,
            "assignment_id": assignment_id,
            "timestamp": timestamp,
            "status": self.status,
            "path": location,
            "submission_id": submission["id"],
            "notebooks": notebooks,
            "has_local_feedback": has_local,
            "has_exchange_feedback": bool(notebooks)
            and all(nb["has_exchange_feedback"] for nb in notebooks),
            "feedback_updated": any(nb["feedback_updated"] for nb in notebooks),
            "local_feedback_path": None,
        }
        if has_local:
            full = os.path.abspath(assignment_dir)
            base = full if os.path.exists(full) else assignment_dir
            info["local_feedback_path"] = os.path.join(base, "feedback", timestamp)
        return info


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No garbage collection while a listing is built: it makes thousands of small objects and
    no cycles, and each full collection would walk all of nbgrader's (about 0.15 s a time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextlib.contextmanager
def _buffered_output(log: logging.Logger | logging.LoggerAdapter) -> Iterator[None]:
    """Collect what ``log``'s plain stream handlers write (nbgrader's: stderr) and write it in
    one go at the end: the same text, without a write and flush per line."""
    logger = log.logger if isinstance(log, logging.LoggerAdapter) else log
    handlers: list[logging.StreamHandler] = []
    current: logging.Logger | None = logger
    while current is not None:
        handlers += [h for h in current.handlers if type(h) is logging.StreamHandler]
        current = current.parent if current.propagate else None
    swapped = []
    for handler in dict.fromkeys(handlers):
        with handler.lock or contextlib.nullcontext():
            swapped.append((handler, handler.stream))
            handler.stream = io.StringIO()
    try:
        yield
    finally:
        for handler, stream in swapped:
            with handler.lock or contextlib.nullcontext():
                text = handler.stream.getvalue()
                handler.stream = stream
            if text:
                try:
                    stream.write(text)
                    stream.flush()
                except (OSError, ValueError):  # as a handler does: a closed stderr stops nothing
                    pass

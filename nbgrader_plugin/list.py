"""``nbgrader list`` and the Assignments UI: released, cached (own) and inbound (all) listings.

The shapes are exactly those of nbgrader's default exchange (the Lab UI and formgrader read
them). Submissions come from the service, the authoritative record, in one request per course.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections import defaultdict
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
        if local.exists():
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
            for submission in listing["submissions"]:
                info = self._submission_info(client, course_id, submission)
                groups[(course_id, info["student_id"], info["assignment_id"])].append(info)
        result = []
        for key in sorted(groups):
            submissions = sorted(groups[key], key=lambda s: s["timestamp"])
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

    def _submission_info(self, client: ExchangeClient, course_id: str, submission: dict) -> dict:
        student_id, assignment_id = submission["student_id"], submission["assignment_id"]
        timestamp = submission["timestamp"]
        cached = self.cache_path(course_id, student_id, assignment_id, timestamp)
        if self.cached or cached.is_dir():
            location = str(cached)
        else:
            location = (
                client.service_url
                + "/api/v1/"
                + path("courses", course_id, "submissions", str(submission["id"]))
            )
        if self.path_includes_course:
            assignment_dir = os.path.join(self.assignment_dir, course_id, assignment_id)
        else:
            assignment_dir = os.path.join(self.assignment_dir, assignment_id)
        feedback = {fb["notebook_id"]: fb for fb in submission.get("feedback", [])}
        notebooks = []
        for notebook_id in submission["notebooks"]:
            local = os.path.join(assignment_dir, "feedback", timestamp, f"{notebook_id}.html")
            has_local = os.path.isfile(local)
            exchange = feedback.get(notebook_id)
            notebooks.append(
                {
                    "notebook_id": notebook_id,
                    "path": os.path.join(location, f"{notebook_id}.ipynb"),
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
            "course_id": course_id,
            "student_id": student_id,
            "assignment_id": assignment_id,
            "timestamp": timestamp,
            "status": "removed" if self.remove else "submitted",
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
        assignments = self._parse()
        self._log(assignments, removing=False)
        return assignments

    def remove_files(self) -> list[dict]:
        """Unrelease (released mode), remove submissions (inbound) or local copies (cached)."""
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
                        client.request(
                            "DELETE",
                            path(
                                "courses",
                                item["course_id"],
                                "submissions",
                                str(info["submission_id"]),
                            ),
                        )
                else:
                    client.request(
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

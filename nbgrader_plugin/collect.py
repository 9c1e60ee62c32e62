"""``nbgrader collect``: download the newest submission per student in one streamed request."""

from __future__ import annotations

import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.exchange.abc import ExchangeCollect as ABCExchangeCollect

from nbgrader_plugin.archive import (
    UNSENT_MEMBER,
    HashingReader,
    MemberReader,
    TarStream,
    UnsafeArchive,
    extract_stream,
    iter_safe_members,
    json_list_member,
)
from nbgrader_plugin.client import ResponseBody, path
from nbgrader_plugin.due_dates import fetch_due_dates, write_due_date, write_extensions
from nbgrader_plugin.exchange import Exchange
from nbgrader_plugin.gradebook import record_students
from nbgrader_plugin.timestamps import utc_time

MAX_MANIFEST_BYTES = 64 * 1024 * 1024
DAMAGED = (
    "what arrived does not match what the student submitted (its copy on the exchange is damaged)."
)


@dataclass
class _Outcome:
    """What a collect has settled so far, over every try of its download."""

    collected: list[dict] = field(default_factory=list)  # the records placed
    skipped: list[str] = field(default_factory=list)  # students: cannot be unpacked safely
    lost: list[str] = field(default_factory=list)  # students: missing or damaged on the exchange
    settled: set[int] = field(default_factory=set)  # submission ids not to ask for again
    received: set[int] = field(default_factory=set)  # ... of them, those that arrived whole


class ExchangeCollect(Exchange, ABCExchangeCollect):
    action = "Collecting"

    def init_src(self) -> None:
        course_id = self.require_course()
        assignment_id = self.coursedir.assignment_id
        student = self.coursedir.student_id if self.coursedir.student_id not in ("", "*") else None
        with self.failures():
            self.api = self.client(course_id)
            listing = self.api.get_json(
                path("courses", course_id, "submissions"),
                assignment_id=assignment_id,
                student_id=student,
            )
            # the exchange's due date and extensions, into the gradebook (due_dates.py)
            self.due_dates = fetch_due_dates(self.api, course_id, assignment_id)
        with Gradebook(self.coursedir.db_url, self.coursedir.course_id) as gb:
            write_due_date(gb, assignment_id, self.due_dates)
            assignment_due = self._duedate(gb)
        by_student: dict[str, list[dict]] = defaultdict(list)
        for submission in listing["submissions"]:
            by_student[submission["student_id"]].append(submission)
        self.src_records = []
        for student_id, records in by_student.items():
            times = [utc_time(r["timestamp"]) for r in records]
            newest_first = sorted(range(len(records)), key=times.__getitem__, reverse=True)
            chosen = records[newest_first[0]]
            duedate = self.due_dates.for_student(student_id, assignment_due)
            if duedate is not None and self.before_duedate:
                on_time = [records[i] for i in newest_first if times[i] <= duedate]
                chosen = on_time[0] if on_time else chosen
            self.src_records.append(chosen)
        self.src_records.sort(key=lambda r: r["student_id"])

    def _duedate(self, gb: Gradebook):
        try:
            return gb.find_assignment(self.coursedir.assignment_id).duedate
        except MissingEntry:
            return None

    def _dest(self, student_id: str) -> Path:
        return Path(
            self.coursedir.format_path(
                self.coursedir.submitted_directory, student_id, self.coursedir.assignment_id
            )
        )

    def _wanted(self, record: dict) -> str | None:
        """'collect', 'update' or None (with the log line nbgrader's default exchange prints)."""
        student_id, assignment_id = record["student_id"], self.coursedir.assignment_id
        dest = self._dest(student_id)
        if not dest.is_dir():
            return "collect"
        existing = self.coursedir.get_existing_timestamp(str(dest))
        new = utc_time(record["timestamp"])
        if self.update and (existing is None or new > existing):
            return "update"
        if self.before_duedate and existing != new:
            return "update"
        if self.update:
            self.log.info("No newer submission to collect: %s %s", student_id, assignment_id)
        else:
            self.log.info(
                "Submission already exists, use --update to update: %s %s",
                student_id,
                assignment_id,
            )
        return None

    def copy_files(self) -> None:
        course_id, assignment_id = self.coursedir.course_id, self.coursedir.assignment_id
        if not self.src_records:
            self.log.warning(
                "No submissions of '%s' for course '%s' to collect", assignment_id, course_id
            )
            return
        self.log.info(
            "Processing %d submissions of '%s' for course '%s'",
            len(self.src_records),
            assignment_id,
            course_id,
        )
        actions = {r["id"]: (r, a) for r in self.src_records if (a := self._wanted(r))}
        if not actions:
            self._update_gradebook([])  # extensions granted since the last collect
            return
        outcome = _Outcome()
        with self.failures():  # a full disk's OSError: ``Exchange.start`` says it
            try:
                self.again_if_cut(self.api, lambda: self._collect_rest(actions, outcome))
            except Exception:
                self._record_placed(outcome.collected, len(actions))
                raise
        collected, skipped, lost = outcome.collected, outcome.skipped, outcome.lost
        self._update_gradebook(collected)
        self.log.info(
            "Collected %d submission(s) of '%s' for course '%s'",
            len(collected),
            assignment_id,
            course_id,
        )
        if skipped:
            self.log.warning(
                "Skipped %d submission(s) of '%s' that cannot be unpacked safely: %s. The "
                "other submissions were collected. Ask these students to rename the files named "
                "above and submit again, then run `nbgrader collect` again.",
                len(skipped),
                assignment_id,
                ", ".join(skipped),
            )
        if lost:
            self.log.warning(
                "Could not collect %d submission(s) of '%s': the exchange's copy is missing or "
                "damaged (students: %s). The other submissions were collected. Ask the "
                "exchange's operator to restore them from a backup, or ask these students to "
                "submit again, then run `nbgrader collect` again.",
                len(lost),
                assignment_id,
                ", ".join(sorted(lost)),
            )

    def _record_placed(self, placed: list[dict], asked: int) -> None:
        """After a failure: record in the gradebook the submissions placed before it (a
        gradebook that cannot be written then, on a full disk, is logged, not raised)."""
        if not placed:
            return
        self.log.info(
            "Collected %d of %d submission(s) of '%s' before this failure",
            len(placed),
            asked,
            self.coursedir.assignment_id,
        )
        try:
            self._update_gradebook(placed)
        except Exception as exc:  # noqa: BLE001 - the failure being reported matters more
            self.log.warning(
                "Could not record these students in the gradebook (%s); `nbgrader collect` "
                "records them when it runs again.",
                exc,
            )

    def _collect_rest(self, actions: dict, outcome: _Outcome) -> None:
        """One try: ask for the submissions an earlier, broken-off try did not settle (telling
        the exchange which it already received, so they are recorded as collected too), and
        unpack them into ``outcome``."""
        course_id, assignment_id = self.coursedir.course_id, self.coursedir.assignment_id
        rest = {i: action for i, action in actions.items() if i not in outcome.settled}
        if not rest and not outcome.received:
            return  # an earlier try settled everything (the exchange had none of them)
        body: dict = {"submission_ids": sorted(rest)}
        if outcome.received:
            body["received_ids"] = sorted(outcome.received)
        response = self.api.download(  # asked again if no answer comes: nothing is marked yet
            path("courses", course_id, "assignments", assignment_id, "collection"),
            method="POST",
            json_body=body,
        )
        total = sum(record["size"] for record, _ in rest.values())
        with response, self.progress(total, f"collect {assignment_id}") as progress:
            try:
                self._unpack(ResponseBody(response), rest, progress, outcome)
                left_out = len(set(rest) - outcome.settled)
                if left_out:  # it ended cleanly without them (a proxy that cut it short)
                    raise UnsafeArchive(f"it ended without {left_out} of the submissions")
            except UnsafeArchive as exc:
                self.fail(f"The download of the submissions cannot be read ({exc}); collect again.")

    def _unpack(self, stream, actions: dict, progress, outcome: _Outcome) -> None:
        """Unpack each submission into a fresh staging folder, then move it in place.

        The download is a tar of ``manifest.json``, one stored archive per submission and, when
        the exchange could not send some of them, ``missing.json`` (each entry's member name,
        ``code`` and ``message``); each archive is unpacked as it streams past (no copy of it
        is kept). A submission that cannot be unpacked safely, arrives damaged (its SHA-256
        differs from the manifest's) or was not sent is skipped and reported; the others are
        collected. Each submission is added to ``outcome`` once it is settled, so a download
        that breaks off keeps what came before.
        """
        staging_root = Path(self.coursedir.root, self.coursedir.submitted_directory)
        staging_root.mkdir(parents=True, exist_ok=True)
        manifest: dict[int, dict] = {}
        collected, skipped, lost = outcome.collected, outcome.skipped, outcome.lost
        outer = TarStream(stream)
        for name, info in iter_safe_members(outer, max_members=2 * len(actions) + 3):
            if not info.isfile():
                continue
            if str(name) in ("manifest.json", UNSENT_MEMBER):
                listed = json_list_member(outer, info, MAX_MANIFEST_BYTES)
                if str(name) == "manifest.json":
                    manifest = {m["id"]: m for m in listed if type(m.get("id")) is int}
                    continue
                for entry in listed:
                    unsent_id = self._id_of(str(entry.get("name", "")), actions)
                    record = actions[unsent_id][0] if unsent_id is not None else None
                    if record is not None and record["student_id"] not in lost:
                        self._report_lost(record, str(entry.get("message", "")))
                        lost.append(record["student_id"])
                    if unsent_id is not None:
                        outcome.settled.add(unsent_id)
                continue
            submission_id = self._id_of(str(name), actions)
            if submission_id is None:
                raise UnsafeArchive(f"it holds {name}, which is no submission asked for")
            record, action = actions[submission_id]
            reader = HashingReader(MemberReader(outer.data(info.size)), progress)
            staging = Path(tempfile.mkdtemp(prefix=".collect-", dir=staging_root))
            try:
                unsafe: UnsafeArchive | None = None
                try:
                    extract_stream(reader, staging)
                except UnsafeArchive as exc:
                    unsafe = exc
                reader.drain()  # a damaged archive may fail to unpack: still read all of it
                expected = manifest.get(submission_id, record).get("sha256", record["sha256"])
                if reader.sha256.hexdigest() != expected:
                    self._report_lost(record, DAMAGED)
                    lost.append(record["student_id"])
                elif unsafe is not None:
                    self.log.error(
                        "Skipped the submission of %s (%s, submitted %s): it cannot be unpacked "
                        "safely: %s. Ask %s to fix the file names and submit again.",
                        record["student_id"],
                        self.coursedir.assignment_id,
                        record["timestamp"],
                        unsafe,
                        record["student_id"],
                    )
                    skipped.append(record["student_id"])
                else:
                    self._place(record, action, staging)
                    collected.append(record)
                outcome.settled.add(submission_id)
                outcome.received.add(submission_id)
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    @staticmethod
    def _id_of(member: str, actions: dict) -> int | None:
        """The id of ``submissions/<id>.tar`` if it is among ``actions``, else None."""
        stem = PurePosixPath(member).stem
        if not stem.isdigit() or int(stem) not in actions:
            return None
        return int(stem)

    def _report_lost(self, record: dict, reason: str) -> None:
        self.log.error(
            "Could not collect the submission of %s (%s, submitted %s): %s",
            record["student_id"],
            self.coursedir.assignment_id,
            record["timestamp"],
            reason,
        )

    def _place(self, record: dict, action: str, staging: Path) -> None:
        student_id, assignment_id = record["student_id"], self.coursedir.assignment_id
        dest = self._dest(student_id)
        Path(staging, "timestamp.txt").write_text(record["timestamp"])
        if action == "update":
            self.log.info("Updating submission: %s %s", student_id, assignment_id)
            shutil.rmtree(dest)
        else:
            self.log.info("Collecting submission: %s %s", student_id, assignment_id)
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(dest)

    def _update_gradebook(self, records: list[dict]) -> None:
        """Record each student's name, email and LMS id in the gradebook (for grade sync), and
        each listed student's extension from the exchange (so autograde's lateness agrees)."""
        with Gradebook(self.coursedir.db_url, self.coursedir.course_id) as gb:
            record_students(gb, {r["student_id"]: r.get("student") or {} for r in records})
            students = [r["student_id"] for r in self.src_records]
            write_extensions(gb, self.coursedir.assignment_id, students, self.due_dates)

"""A small periodic-job runner: each job runs when due, at most once per its interval."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class PeriodicJob:
    """``run`` every ``interval`` seconds; it returns how much it did (logged by the job itself)."""

    name: str
    interval: float
    run: Callable[[], int]
    next_at: float = 0.0  # monotonic clock; 0: due at the first pass


class JobRunner:
    """Runs the due jobs of a list, one after another, in the caller's thread.

    A job that raises is logged (one line with its traceback) and tried again at its next
    interval: one failing job never stops the others or the worker.
    """

    def __init__(
        self, jobs: list[PeriodicJob], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.jobs = {job.name: job for job in jobs}
        self._clock = clock

    def run_due(self) -> dict[str, int]:
        """Run every job that is due; what each returned (a failed job is left out)."""
        done: dict[str, int] = {}
        for job in self.jobs.values():
            now = self._clock()
            if now < job.next_at:
                continue
            job.next_at = now + job.interval
            try:
                done[job.name] = job.run()
            except Exception:  # noqa: BLE001 - the next interval retries; keep the worker alive
                log.exception("worker job %s failed; retrying in %g s", job.name, job.interval)
        return done

    def run_now(self, name: str) -> int:
        """Run one job now whatever its schedule (a command or a test); errors propagate."""
        job = self.jobs[name]
        job.next_at = self._clock() + job.interval
        return job.run()

"""The machine under the numbers: CPU time the hypervisor gave to other guests (steal).

On a small VM it moves a burst's wall time by tens of percent, for the floor and the service
alike; the bench prints it beside each burst so that two runs can be compared."""

from __future__ import annotations

import os


def steal_seconds() -> float:
    """CPU time taken by the hypervisor for other guests so far, all CPUs (``/proc/stat``)."""
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()
    except OSError:
        return 0.0
    if len(fields) < 9 or fields[0] != "cpu":
        return 0.0
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")

"""The machine under the numbers: CPU time the hypervisor gave to other guests (steal), what
a new page-cache page costs, and what creating a file costs.

Steal moves a burst's wall time by tens of percent on a small VM, for the floor and the service
alike; the bench prints it beside each burst so that two runs can be compared.

New page-cache pages: a VM that hands freed memory back to its host (free page reporting, as
in microVM sandboxes) makes every page it reuses after that fault in the host. On the bench
machine (2026-12-04) memory freed within the last ~2 s took writes at 4.5 GB/s, memory freed
3 s or more before at 0.36-0.64 GB/s, and which one a step gets depends on what ran just before
it: the default exchange's copies, its fetch, a release received by the service and every
file a client unpacks all write new pages. ``page_cache_rates`` measures both states so that a
run's page-cache-bound numbers (the 512 MiB transfer, collect) can be read with them.

Creating a file: ext4 without a journal (the bench machine's root file system, 2026-12-05) skips
inodes freed in the last minutes when it picks one for a new file, reading each one's inode
table block to see when it was freed. Where tests and earlier runs have just deleted thousands of
files, one ``open(O_CREAT)`` took 137-545 µs of system CPU (19-25 µs in quieter folders, 7 µs on
tmpfs); the service creates a file per submission, the default exchange several. A journalled
file system (ext4 with its journal, XFS) does not do this. ``file_create_cpu`` measures it in
the bench's own folder, so that a run's server CPU can be read with it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from common import MiB


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


def _write_rate(path: Path, mib: int, block: bytes) -> float:
    """MB/s of writing ``mib`` MiB to a new file (no fsync: the page cache is what is timed)."""
    start = time.perf_counter()
    with open(path, "wb") as out:
        for _ in range(mib):
            out.write(block)
    seconds = time.perf_counter() - start
    path.unlink()
    return mib * MiB / seconds / 1e6


def file_create_cpu(folder: Path, files: int = 200) -> float:
    """CPU microseconds one new empty file costs in ``folder`` (created and closed; the files
    stay until the folder goes, so the probe frees no inodes for the runs after it)."""
    probe = folder / "file-create-probe"
    probe.mkdir()
    start = time.process_time()
    for number in range(files):
        os.close(os.open(probe / str(number), os.O_CREAT | os.O_WRONLY, 0o600))
    return (time.process_time() - start) / files * 1e6


def page_cache_rates(folder: Path, mib: int = 256, settle: float = 3.0) -> tuple[float, float]:
    """Write rates (MB/s) into new page-cache pages: memory freed ``settle`` seconds before
    (returned to the host where the VM does that), then memory freed just before."""
    block = os.urandom(MiB)
    time.sleep(settle)
    cold = _write_rate(folder / "page-cache-cold.bin", mib, block)
    _write_rate(folder / "page-cache-free.bin", 2 * mib, block)  # freed: the next write reuses it
    warm = _write_rate(folder / "page-cache-warm.bin", mib, block)
    return cold, warm

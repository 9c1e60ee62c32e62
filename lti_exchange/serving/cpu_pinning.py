"""One CPU per gunicorn worker process: ``LTI_EXCHANGE_PIN_WORKERS`` (``off``, ``auto``, ``on``).

A worker's threads share one GIL. When they run on two CPUs at once, every time one of them
blocks (a socket read, a write, an fsync, an SQL statement) the GIL is handed to a thread on the
other CPU: a futex wake-up, an inter-processor interrupt and cold caches, dozens of times per
upload. Kept on one CPU, the same hand-offs stay on that CPU.

Measured on 2 CPUs (``docs/operations.md``, "CPU pinning"): with 16 light clients uploading and
downloading 1 MiB each, 2 workers x 10 threads cost 3.5-3.8 ms of server CPU per request
unpinned and 3.2-3.4 ms pinned, and the load finished 10 % sooner. The deadline burst driven by
nbgrader's classes on the same two CPUs changed within the noise (4.1-4.6 ms either way), and so
did the 512 MiB release and fetch once the page cache was written in 256 KiB pieces (before
that, pinned fetches looked 35 % slower: the machine's page cache, not the pinning). Hence it
is opt-in, for servers whose CPUs are their own, the way nginx's ``worker_cpu_affinity`` is.

Pinning is right only where the process owns its CPUs. ``auto`` pins when there is one worker
per CPU the process may run on, more than one CPU, and no CPU quota smaller than those CPUs (a
Kubernetes CPU limit or ``docker --cpus`` shares CPUs by time: the affinity mask then lists CPUs
that belong to others, and a pinned worker could not move away from a busy one). ``on`` pins
whatever the counts (workers round-robin over the CPUs); ``off`` (the default) never pins.

The master chooses each new worker's CPU (``pre_fork``: the CPU the fewest live workers hold, so
a restarted worker takes the CPU its predecessor left); the worker applies it (``post_fork``).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

PIN_ENV = "LTI_EXCHANGE_PIN_WORKERS"
MODES = ("off", "auto", "on")
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def pin_mode(environ: Mapping[str, str] | None = None) -> str:
    """The configured mode (default ``off``); any other value than those stops the start."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    mode = env.get(PIN_ENV, "").strip().lower() or "off"
    if mode not in MODES:
        raise RuntimeError(f"{PIN_ENV} must be off, auto or on, got {env.get(PIN_ENV)!r}")
    return mode


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity mask), in order."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return []


def _quota_v2(text: str) -> float | None:
    quota, _, period = text.strip().partition(" ")
    if quota == "max" or not period:
        return None
    return int(quota) / int(period)


def _quota_v1(text: str, folder: Path) -> float | None:
    quota = int(text.strip())
    if quota < 0:
        return None
    return quota / int((folder / "cpu.cfs_period_us").read_text().strip())


def _ancestors(root: Path, relative: str) -> list[Path]:
    """``root/relative`` and each folder above it up to ``root`` (a quota anywhere applies)."""
    folders = [root]
    current = root
    for part in [p for p in relative.split("/") if p]:
        current = current / part
        folders.append(current)
    return folders


def cpu_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The smallest CFS CPU quota (in CPUs) over this process's cgroup and its parents; None when
    there is none (or no cgroup file system to read)."""
    try:
        memberships = proc_cgroup.read_text().splitlines()
    except OSError:
        memberships = []
    found: list[float] = []
    for line in memberships:
        _id, controllers, relative = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":  # cgroup v2: one unified hierarchy
            candidates = [(folder / "cpu.max", "v2") for folder in _ancestors(root, relative)]
        elif "cpu" in controllers.split(","):
            mounts = {root / controllers, root / "cpu", root / "cpu,cpuacct"}
            candidates = [
                (folder / "cpu.cfs_quota_us", "v1")
                for mount in mounts
                for folder in _ancestors(mount, relative)
            ]
        else:
            continue
        for file, version in candidates:
            try:
                text = file.read_text()
                quota = _quota_v2(text) if version == "v2" else _quota_v1(text, file.parent)
            except (OSError, ValueError, ZeroDivisionError):
                continue
            if quota is not None:
                found.append(quota)
    return min(found) if found else None


def should_pin(mode: str, workers: int, cpus: list[int], quota: float | None) -> tuple[bool, str]:
    """Whether to pin ``workers`` processes to ``cpus``, and why (for the start-up log)."""
    if mode == "off":
        return False, f"{PIN_ENV}=off"
    if len(cpus) < 2:
        return False, "one CPU: nothing to choose"
    if mode == "on":
        return True, f"{PIN_ENV}=on"
    if quota is not None and quota < len(cpus):
        return False, (
            f"a CPU quota of {quota:g} CPUs shares the {len(cpus)} CPUs in the affinity mask "
            "with other processes"
        )
    if workers != len(cpus):
        noun = "worker" if workers == 1 else "workers"
        return False, f"{workers} {noun} for {len(cpus)} CPUs (auto pins one worker per CPU)"
    return True, f"one worker per CPU ({len(cpus)})"


def choose_cpu(cpus: list[int], taken: Iterable[int]) -> int:
    """The CPU the fewest live workers hold (the lowest of those on a tie)."""
    held = Counter(taken)
    return min(cpus, key=lambda cpu: (held[cpu], cpu))


def pinning_hooks(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """gunicorn's ``pre_fork`` (master: choose the CPU) and ``post_fork`` (worker: take it)."""
    mode = pin_mode(environ)
    cpus = usable_cpus()
    quota = cpu_quota() if mode == "auto" else None  # only auto asks (off and on never do)

    def pre_fork(server: Any, worker: Any) -> None:
        pin, why = should_pin(mode, server.num_workers, cpus, quota)
        worker.pinned_cpu = None
        if pin:
            taken = (getattr(w, "pinned_cpu", None) for w in server.WORKERS.values())
            worker.pinned_cpu = choose_cpu(cpus, (cpu for cpu in taken if cpu is not None))
        if getattr(server, "_pinning_reported", None) != (pin, why):
            server._pinning_reported = (pin, why)
            server.log.info("Worker CPU pinning %s: %s", "on" if pin else "off", why)

    def post_fork(server: Any, worker: Any) -> None:
        cpu = getattr(worker, "pinned_cpu", None)
        if cpu is None:
            return
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError as exc:  # a sandbox that refuses: run unpinned rather than not at all
            server.log.warning("Worker %s could not be pinned to CPU %s: %s", worker.pid, cpu, exc)

    return {"pre_fork": pre_fork, "post_fork": post_fork}

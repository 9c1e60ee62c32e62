"""Worker CPU pinning (``lti_exchange/serving/cpu_pinning.py``): the mode, the CPU quota read
from cgroups v1 and v2, the decision, the choice of CPU, and the gunicorn hooks."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from lti_exchange.serving.cpu_pinning import (
    PIN_ENV,
    choose_cpu,
    cpu_quota,
    pin_mode,
    pinning_hooks,
    should_pin,
)

# --- the setting -------------------------------------------------------------------------------


def test_the_default_is_off_and_values_are_read_loosely():
    assert pin_mode({}) == "off"
    assert pin_mode({PIN_ENV: ""}) == "off"
    assert pin_mode({PIN_ENV: " AUTO "}) == "auto"
    assert pin_mode({PIN_ENV: "on"}) == "on"


def test_an_unknown_value_stops_the_start_naming_the_setting():
    with pytest.raises(RuntimeError, match=f"{PIN_ENV} must be off, auto or on, got 'yes'"):
        pin_mode({PIN_ENV: "yes"})


# --- the CPU quota ------------------------------------------------------------------------------


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def cgroups(tmp_path: Path, membership: str) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    root.mkdir()
    proc = tmp_path / "proc-cgroup"
    proc.write_text(membership)
    return root, proc


def test_v2_without_a_limit_has_no_quota(tmp_path):
    root, proc = cgroups(tmp_path, "0::/\n")
    write(root / "cpu.max", "max 100000\n")
    assert cpu_quota(root, proc) is None


def test_v2_quota_in_cpus(tmp_path):
    root, proc = cgroups(tmp_path, "0::/\n")
    write(root / "cpu.max", "250000 100000\n")
    assert cpu_quota(root, proc) == 2.5


def test_v2_the_smallest_quota_on_the_way_up_applies(tmp_path):
    # A Kubernetes pod: the limit sits on the pod's cgroup, the container's own says "max".
    root, proc = cgroups(tmp_path, "0::/kubepods/pod1/container\n")
    write(root / "cpu.max", "max 100000\n")
    write(root / "kubepods" / "cpu.max", "800000 100000\n")
    write(root / "kubepods" / "pod1" / "cpu.max", "150000 100000\n")
    write(root / "kubepods" / "pod1" / "container" / "cpu.max", "max 100000\n")
    assert cpu_quota(root, proc) == 1.5


def test_v1_quota_from_the_cpu_controller(tmp_path):
    root, proc = cgroups(tmp_path, "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n")
    folder = root / "cpu,cpuacct" / "docker" / "abc"
    write(folder / "cpu.cfs_quota_us", "100000\n")
    write(folder / "cpu.cfs_period_us", "100000\n")
    assert cpu_quota(root, proc) == 1.0


def test_v1_without_a_limit_has_no_quota(tmp_path):
    root, proc = cgroups(tmp_path, "4:cpu,cpuacct:/\n")
    write(root / "cpu" / "cpu.cfs_quota_us", "-1\n")
    write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert cpu_quota(root, proc) is None


def test_nothing_readable_means_no_quota(tmp_path):
    assert cpu_quota(tmp_path / "none", tmp_path / "missing") is None
    root, proc = cgroups(tmp_path, "0::/\n")
    write(root / "cpu.max", "garbage\n")
    assert cpu_quota(root, proc) is None


# --- the decision and the choice ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "workers", "cpus", "quota", "pin", "why"),
    [
        ("off", 2, [0, 1], None, False, "=off"),
        ("auto", 2, [0, 1], None, True, "one worker per CPU (2)"),
        ("auto", 2, [0, 1], 2.0, True, "one worker per CPU"),
        ("auto", 2, list(range(64)), 2.0, False, "a CPU quota of 2 CPUs shares the 64 CPUs"),
        ("auto", 5, [0, 1], None, False, "5 workers for 2 CPUs"),
        ("auto", 1, [0, 1], None, False, "1 worker for 2 CPUs"),
        ("on", 5, [0, 1], 0.5, True, "=on"),
        ("on", 2, [3], None, False, "one CPU"),
        ("auto", 1, [], None, False, "one CPU"),
    ],
)
def test_when_workers_are_pinned(mode, workers, cpus, quota, pin, why):
    decided, reason = should_pin(mode, workers, cpus, quota)
    assert decided is pin
    assert why in reason


def test_each_new_worker_takes_the_least_used_cpu():
    assert choose_cpu([2, 5], []) == 2
    assert choose_cpu([2, 5], [2]) == 5
    assert choose_cpu([2, 5], [2, 5]) == 2
    assert choose_cpu([2, 5], [2, 5, 2]) == 5


# --- the hooks, as gunicorn calls them ---------------------------------------------------------


class Arbiter:
    """What the hooks use of gunicorn's arbiter: live workers, their number, the log."""

    def __init__(self, workers: int) -> None:
        self.num_workers = workers
        self.WORKERS: dict[int, SimpleNamespace] = {}
        self.log = logging.getLogger("test.arbiter")
        self._next_pid = 100

    def spawn(self, pre_fork) -> SimpleNamespace:
        worker = SimpleNamespace(pid=None)
        pre_fork(self, worker)
        self._next_pid += 1
        worker.pid = self._next_pid
        self.WORKERS[worker.pid] = worker
        return worker


def test_the_master_spreads_workers_and_a_replacement_takes_the_freed_cpu(monkeypatch, caplog):
    monkeypatch.setattr("lti_exchange.serving.cpu_pinning.usable_cpus", lambda: [0, 1])
    monkeypatch.setattr("lti_exchange.serving.cpu_pinning.cpu_quota", lambda: None)
    hooks = pinning_hooks({PIN_ENV: "auto"})
    arbiter = Arbiter(workers=2)
    with caplog.at_level(logging.INFO, logger="test.arbiter"):
        first, second = arbiter.spawn(hooks["pre_fork"]), arbiter.spawn(hooks["pre_fork"])
        assert {first.pinned_cpu, second.pinned_cpu} == {0, 1}
        del arbiter.WORKERS[first.pid]  # it died
        replacement = arbiter.spawn(hooks["pre_fork"])
    assert replacement.pinned_cpu == first.pinned_cpu
    said = [r.getMessage() for r in caplog.records]
    assert said == ["Worker CPU pinning on: one worker per CPU (2)"]  # once, not per worker


def test_more_workers_than_cpus_stay_unpinned_under_auto(monkeypatch):
    monkeypatch.setattr("lti_exchange.serving.cpu_pinning.usable_cpus", lambda: [0, 1])
    monkeypatch.setattr("lti_exchange.serving.cpu_pinning.cpu_quota", lambda: None)
    hooks = pinning_hooks({PIN_ENV: "auto"})
    arbiter = Arbiter(workers=3)
    assert [arbiter.spawn(hooks["pre_fork"]).pinned_cpu for _ in range(3)] == [None] * 3


def test_the_worker_runs_on_its_cpu_only():
    cpus = sorted(os.sched_getaffinity(0))
    before = set(cpus)
    worker = SimpleNamespace(pid=os.getpid(), pinned_cpu=cpus[-1])
    try:
        pinning_hooks({PIN_ENV: "on"})["post_fork"](Arbiter(1), worker)
        assert os.sched_getaffinity(0) == {cpus[-1]}
    finally:
        os.sched_setaffinity(0, before)


def test_a_worker_that_may_not_be_pinned_runs_unpinned_with_a_warning(monkeypatch, caplog):
    def refuse(_pid, _cpus):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setaffinity", refuse)
    worker = SimpleNamespace(pid=4242, pinned_cpu=1)
    with caplog.at_level(logging.WARNING, logger="test.arbiter"):
        pinning_hooks({PIN_ENV: "on"})["post_fork"](Arbiter(1), worker)
    assert "Worker 4242 could not be pinned to CPU 1" in caplog.text


def test_an_unpinned_worker_keeps_every_cpu():
    before = os.sched_getaffinity(0)
    pinning_hooks({PIN_ENV: "off"})["post_fork"](Arbiter(1), SimpleNamespace(pinned_cpu=None))
    assert os.sched_getaffinity(0) == before

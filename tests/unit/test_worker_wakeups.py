"""One idle worker woken per new connection (``head_buffering.wake_one_waiter``): every gunicorn
worker watches the same listening socket; with plain ``epoll`` each new connection wakes all idle
workers, and all but one find nothing to accept."""

from __future__ import annotations

import select
import selectors
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lti_exchange.serving.head_buffering import wake_one_waiter

EPOLLEXCLUSIVE = select.EPOLLEXCLUSIVE  # Linux: where the service runs
WAITERS = 4


@contextmanager
def listening() -> Iterator[socket.socket]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.setblocking(False)
        yield listener


def epoll_flags(poller: selectors.BaseSelector, fd: int) -> int:
    """The event mask the kernel holds for ``fd`` in ``poller``'s epoll (``/proc`` fdinfo)."""
    info = Path(f"/proc/self/fdinfo/{poller.fileno()}").read_text()
    for line in info.splitlines():
        fields = line.split()
        if fields[:1] == ["tfd:"] and int(fields[1]) == fd:
            return int(fields[3], 16)
    raise AssertionError(f"fd {fd} is not in the epoll: {info}")


def woken_by_one_connection(
    register: Callable[[selectors.BaseSelector, socket.socket], None],
) -> int:
    """How many of ``WAITERS`` pollers, each waiting in its own thread on one listener, one new
    connection wakes."""
    with listening() as listener:
        pollers = [selectors.DefaultSelector() for _ in range(WAITERS)]
        woken: list[bool] = []
        lock = threading.Lock()
        waiting = threading.Barrier(WAITERS + 1)

        def wait(poller: selectors.BaseSelector) -> None:
            waiting.wait()
            events = poller.select(timeout=1.0)
            with lock:
                woken.append(bool(events))

        try:
            for poller in pollers:
                register(poller, listener)
            threads = [threading.Thread(target=wait, args=(p,)) for p in pollers]
            for thread in threads:
                thread.start()
            waiting.wait()
            threading.Event().wait(0.2)  # every thread now blocked in epoll_wait
            with socket.create_connection(listener.getsockname()):
                for thread in threads:
                    thread.join()
        finally:
            for poller in pollers:
                poller.close()
        return sum(woken)


def plain(poller: selectors.BaseSelector, listener: socket.socket) -> None:
    poller.register(listener, selectors.EVENT_READ, "accept")


def exclusive(poller: selectors.BaseSelector, listener: socket.socket) -> None:
    plain(poller, listener)
    assert wake_one_waiter(poller, listener)


def test_plain_epoll_wakes_every_waiting_worker():
    assert woken_by_one_connection(plain) == WAITERS


def test_the_workers_listener_wakes_one_waiting_worker():
    assert woken_by_one_connection(exclusive) == 1


def test_the_listener_stays_registered_for_reading_with_its_data():
    with listening() as listener, selectors.DefaultSelector() as poller:
        exclusive(poller, listener)
        assert epoll_flags(poller, listener.fileno()) & (EPOLLEXCLUSIVE | select.EPOLLIN) == (
            EPOLLEXCLUSIVE | select.EPOLLIN
        )
        with socket.create_connection(listener.getsockname()):
            events = poller.select(timeout=5)
            assert [(key.fileobj, key.data, mask) for key, mask in events] == [
                (listener, "accept", selectors.EVENT_READ)
            ]
        poller.unregister(listener)  # as gunicorn does when it stops accepting
        assert poller.get_map() is not None and listener not in poller.get_map()


def test_a_poller_that_is_not_epoll_is_left_alone():
    with listening() as listener, selectors.PollSelector() as poller:
        plain(poller, listener)
        assert wake_one_waiter(poller, listener) is False
        with socket.create_connection(listener.getsockname()):
            assert poller.select(timeout=5)

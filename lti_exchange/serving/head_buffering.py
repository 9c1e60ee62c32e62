"""A gthread worker that reads each request head in its event loop, not in a worker thread.

Stock gthread hands a connection to a thread as soon as its first byte arrives; the thread then
blocks in the header parser for as long as the client takes. A few clients that trickle header
bytes (slowloris) therefore pin every thread, and ``/healthz`` stops answering; gunicorn has no
setting that bounds header time. This worker buffers the head without blocking until the blank
line that ends it (bounded by the ``limit_request_*`` settings), within ``HEAD_TIMEOUT``
seconds, and only then gives the connection to a thread with the head already read. Tricklers
cost a socket and a small buffer (bounded by ``worker_connections``), never a thread.

Request BODIES still stream through the thread (uploads must), and answers are sent from it.
A client that stops sending its body, or stops reading its answer, for ``IDLE_TIMEOUT`` seconds
(``LTI_EXCHANGE_IDLE_TIMEOUT``, 60 by default, like nginx's ``client_body_timeout`` and
``send_timeout``) loses its request and frees the thread: gthread waits on such a socket
forever, so as many stalled uploads as there are threads stopped the service, ``/healthz``
included. The reverse proxy in front (``config/nginx.conf``) bounds slow bodies too. Their
``wsgi.input`` gets a ``readinto`` that reads from the socket straight into the caller's buffer
(``serving.fast_input``).

An answer whose app said ``Connection: close`` (a body that could not be read to its end)
closes the connection: gunicorn would drop that header and keep the connection alive.

A connection the server closes after its answer (the client asked ``Connection: close``, or
spoke HTTP/1.0) is closed the way RFC 9112 section 9.6 asks: our side is shut first, then what
the client still sends is read and dropped until it closes too, so unread bytes cannot make the
kernel reset the connection and cut the answer short. gthread does that wait in the event loop,
blocking it for up to 2 seconds per connection: three clients that never close froze a worker
(``/healthz`` included) for 4 seconds. Here the wait is one more event in the loop
(``LINGER_SECONDS`` at most, ``LINGER_DRAIN`` bytes at most), as nginx's lingering close does.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import selectors
import socket
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from gunicorn.workers.gthread import _DEFER, TConn, ThreadWorker

from lti_exchange.serving.fast_input import with_fast_input


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise RuntimeError(f"{name} must be a positive number of seconds, got {raw!r}")
    return value


HEAD_TIMEOUT = _seconds("LTI_EXCHANGE_HEADER_TIMEOUT", 10.0)
IDLE_TIMEOUT = _seconds("LTI_EXCHANGE_IDLE_TIMEOUT", 60.0)
RECV_SIZE = 64 * 1024
LINGER_SECONDS = 2.0  # a closed connection waits this long for the client's own close at most
LINGER_DRAIN = 64 * 1024  # and drops at most this much of what the client still sends
_DONE, _WAIT, _GONE = object(), object(), object()  # what reading a head's bytes gave
HEARTBEAT_INTERVAL = 1.0  # seconds between heartbeats at most (the loop wakes every second)
UNLIMITED_HEAD = 1024 * 1024
_TIMEOUT_BODY = b"The request headers took too long to arrive; send the request again.\n"
TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: text/plain\r\n"
    + f"Content-Length: {len(_TIMEOUT_BODY)}\r\n\r\n".encode()
    + _TIMEOUT_BODY
)


def wake_one_waiter(poller: selectors.BaseSelector, sock: Any) -> bool:
    """Re-register ``sock``, already registered for reading in ``poller``, so that an event on it
    wakes one of the processes waiting on it, not all (``EPOLLEXCLUSIVE``, Linux 4.5+).

    The selector keeps its own record of the registration, so its events still dispatch; a
    connection that arrives between the two calls is seen when the socket is added again (the
    kernel checks readiness then). False where the poller is not an ``epoll`` or the kernel
    refuses the flag: the socket is then watched as before.
    """
    epoll_class = getattr(select, "epoll", None)
    epoll: Any = getattr(poller, "_selector", None)
    exclusive = getattr(select, "EPOLLEXCLUSIVE", 0)
    if epoll_class is None or not exclusive or not isinstance(epoll, epoll_class):
        return False
    fd = sock.fileno()
    try:
        epoll.unregister(fd)
    except OSError:
        return False
    try:
        epoll.register(fd, select.EPOLLIN | exclusive)
    except OSError:  # the flag refused: every waiter woken, as before
        epoll.register(fd, select.EPOLLIN)
        return False
    return True


def raised_on(exc: BaseException, sock: Any) -> bool:
    """Whether ``exc`` came out of a call on ``sock`` (its innermost Python frame holds it)."""
    trace = exc.__traceback__
    if trace is None:
        return False
    while trace.tb_next is not None:
        trace = trace.tb_next
    return any(value is sock for value in trace.tb_frame.f_locals.values())


def _expired(waiting: dict[TConn, float], now: float) -> list[TConn]:
    """The connections of ``waiting`` whose deadline has passed (the table is in deadline order:
    every entry got the same timeout when it was added)."""
    expired = []
    for conn, deadline in waiting.items():
        if deadline > now:
            break
        expired.append(conn)
    return expired


def closing_when_asked(app: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a WSGI app so that an answer with ``Connection: close`` closes the connection.

    gunicorn drops an application's hop-by-hop headers and keeps the connection alive; the app
    asks for a close when a request body could not be read to its end (``web.errors``), since
    what is left of it on the connection is unknown. gunicorn's response then says
    ``Connection: close`` itself, and the worker closes after the answer.
    """

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            for name, value in headers:
                if name.lower() == "connection" and value.lower() == "close":
                    response = getattr(start_response, "__self__", None)
                    force_close = getattr(response, "force_close", None)
                    if force_close is not None:
                        force_close()
            return start_response(status, headers, exc_info)

        return app(environ, start)

    return wrapped


def head_complete(head: bytes | bytearray) -> bool:
    return b"\r\n\r\n" in head or b"\n\n" in head


class HeadBufferingWorker(ThreadWorker):
    """``gthread`` with request heads read by the event loop (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heading: dict[TConn, float] = {}  # connection -> deadline, oldest first
        self.lingering: dict[TConn, float] = {}  # closed by us, waiting for the client's close
        cfg = self.cfg
        if cfg.limit_request_line and cfg.limit_request_fields and cfg.limit_request_field_size:
            # Past this many bytes without a blank line, a limit is exceeded for sure: the
            # parser then answers 4xx from the bytes it already has.
            self.head_limit = (
                cfg.limit_request_line
                + 2
                + cfg.limit_request_fields * (cfg.limit_request_field_size + 2)
                + 2
            )
        else:
            self.head_limit = UNLIMITED_HEAD

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.wsgi: Any = closing_when_asked(with_fast_input(self.wsgi))

    # -- the heartbeat: at most once a second, not once per event-loop turn --------------------
    _notified = float("-inf")

    def notify(self) -> None:
        """Tell the arbiter this worker is alive (``os.utime`` on its heartbeat file).

        gthread calls this on every turn of its event loop, about four times per request (a
        system call each; an inode dirtied too where the file is on disk, when there is no
        ``/dev/shm``). The arbiter only needs it well within its timeout.
        """
        now = time.monotonic()
        if now - self._notified >= min(HEARTBEAT_INTERVAL, self.timeout / 4):
            self._notified = now
            super().notify()

    # -- one idle worker woken per new connection, not all of them ---------------------------
    def set_accept_enabled(self, enabled: bool) -> None:
        """Start or stop accepting; the listeners are watched with ``EPOLLEXCLUSIVE``.

        Every worker watches the same listening sockets. Plain ``epoll`` wakes every idle worker
        for each new connection; one accepts it and the others find nothing (a wasted turn of
        their event loops each: with five workers, four per connection). Linux then wakes one.
        """
        starting = enabled and not self._accepting
        super().set_accept_enabled(enabled)
        if starting:
            for listener in self.sockets:
                wake_one_waiter(self.poller, listener)

    # -- new connections, kept-alive ones, and bytes read ahead all wait for a full head ----
    def accept(self, listener) -> None:
        try:
            client, address = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, client, address, listener.getsockname())  # non-blocking
        if self.cfg.is_ssl:  # encrypted bytes: keep gunicorn's own path
            self.enqueue_req(conn)
            return
        self._await_head(conn, b"")

    def on_client_socket_readable(self, conn: TConn, client) -> None:
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._await_head(conn, b"")

    def finish_request(self, conn: TConn, fs) -> None:
        try:
            result = fs.result() if not fs.cancelled() else False
        except Exception:  # noqa: BLE001 - gunicorn's own finish_request closes it
            result = False
        parser = conn.parser
        if result and result is not _DEFER and self.alive and parser and not conn.is_http2:
            ahead = parser.unreader.take_buffered()
            if ahead:  # the client pipelined (part of) its next request
                conn.sock.setblocking(False)
                self._await_head(conn, ahead)
                return
        if result is False:  # answered, not kept alive: close without blocking the loop
            self._linger(conn)
            return
        super().finish_request(conn, fs)

    # -- closing: shut our side, then wait for the client's close as an event ----------------
    def _linger(self, conn: TConn) -> None:
        sock = conn.sock
        try:
            sock.setblocking(False)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # already gone
            self._close(conn)
            return
        conn.lingered = 0
        if self._drain(conn) is _WAIT:
            self.lingering[conn] = time.monotonic() + LINGER_SECONDS
            self.poller.register(sock, selectors.EVENT_READ, partial(self._on_linger_bytes, conn))
        else:
            self._close(conn)

    def _drain(self, conn: TConn) -> object:
        """Read and drop what the client sent: ``_WAIT`` (it may send more) or ``_DONE``
        (it closed, failed, or sent more than ``LINGER_DRAIN``)."""
        while conn.lingered < LINGER_DRAIN:
            try:
                data = conn.sock.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return _WAIT
            except OSError:
                return _DONE
            if not data:
                return _DONE
            conn.lingered += len(data)
        return _DONE

    def _on_linger_bytes(self, conn: TConn, _client) -> None:
        if self._drain(conn) is _DONE:
            self._close(conn, self.lingering)

    def _await_head(self, conn: TConn, initial: bytes) -> None:
        conn.head = bytearray(initial)
        # Most clients send their head with the connection's first bytes: it is usually here
        # already, and reading it now saves a turn of the event loop (and a GIL hand-over).
        state = _DONE if head_complete(conn.head) else self._receive_head(conn)
        if state is _DONE:
            self._dispatch(conn)
        elif state is _GONE:
            self._close(conn)
        else:
            self.heading[conn] = time.monotonic() + HEAD_TIMEOUT
            self.poller.register(
                conn.sock, selectors.EVENT_READ, partial(self._on_head_bytes, conn)
            )

    def _on_head_bytes(self, conn: TConn, _client) -> None:
        state = self._receive_head(conn)
        if state is _GONE:
            self._close(conn, self.heading)
        elif state is _DONE:
            self.poller.unregister(conn.sock)
            del self.heading[conn]
            self._dispatch(conn)

    def _receive_head(self, conn: TConn) -> object:
        """Read what the socket holds into the head: ``_DONE`` (complete, or past the limits:
        the parser answers 4xx), ``_WAIT`` (more to come) or ``_GONE`` (the client left)."""
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return _WAIT
        except OSError:
            data = b""
        if not data:
            return _GONE
        conn.head += data
        if head_complete(conn.head) or len(conn.head) > self.head_limit:
            return _DONE
        return _WAIT

    def _dispatch(self, conn: TConn) -> None:
        conn.data_ready = True  # no second wait in handle()
        self.enqueue_req(conn)

    def handle(self, conn: TConn):
        head = getattr(conn, "head", None)
        if head is not None:
            conn.head = None
            try:
                conn.sock.setblocking(True)
                conn.init()
            except OSError:
                return False
            conn.parser.unreader.unread(bytes(head))
        return super().handle(conn)

    def handle_request(self, req: Any, conn: TConn) -> Any:
        """Serve one request with an idle limit on the body's reads and the answer's writes.

        A body that stalls is the app's to answer (408 ``upload_stalled``); an answer the client
        stops reading ends here, with one line in the log instead of gthread's traceback.
        """
        conn.sock.settimeout(IDLE_TIMEOUT)
        try:
            return super().handle_request(req, conn)
        except TimeoutError as exc:
            if not raised_on(exc, conn.sock):  # another connection's (the S3 store's): as before
                raise
            client = conn.client[0] if isinstance(conn.client, tuple) else conn.client
            self.log.warning(
                "Closed the connection from %s: it took nothing of its answer for %g s "
                "(LTI_EXCHANGE_IDLE_TIMEOUT)",
                client,
                IDLE_TIMEOUT,
            )
            return False

    # -- heads that take too long are answered 408 and closed ---------------------------------
    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        for conn in _expired(self.heading, now):
            self._forget(conn, self.heading)
            with contextlib.suppress(OSError):
                conn.sock.send(TIMEOUT_RESPONSE)
            conn.close()
        for conn in _expired(self.lingering, now):
            self._close(conn, self.lingering)

    def _close(self, conn: TConn, waiting: dict[TConn, float] | None = None) -> None:
        """Close ``conn`` and forget it (``_forget``)."""
        self._forget(conn, waiting)
        conn.close()

    def _forget(self, conn: TConn, waiting: dict[TConn, float] | None = None) -> None:
        """Stop counting ``conn``, and stop watching it where it waited in ``waiting`` (for its
        head, or for its client's close)."""
        if waiting is not None and waiting.pop(conn, None) is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(conn.sock)
        self.nr_conns -= 1

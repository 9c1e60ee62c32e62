"""``wsgi.input`` with ``readinto``: request bodies read straight from the socket into a buffer.

gunicorn's body reader returns a fresh ``bytes`` object per read, assembled through two
``BytesIO`` buffers (four copies of every byte, and a fresh 1 MiB allocation per read, whose page
faults cost more than the copies). :class:`FastInput` wraps gunicorn's ``Body`` and adds
``readinto``: for a body of known length it hands over the bytes gunicorn already holds, then
calls ``recv_into`` on the socket for at most what is left of the body, so nothing past the body
is ever read. Everything else (``read``, ``readline``, chunked bodies) is gunicorn's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from gunicorn.http.body import Body, LengthReader
from gunicorn.http.unreader import SocketUnreader


class FastInput:
    """gunicorn's request ``Body`` plus a copy-free ``readinto`` for bodies of known length."""

    def __init__(self, body: Body) -> None:
        self._body = body

    def readinto(self, buffer: Any) -> int:
        body = self._body
        reader = body.reader
        if not (
            isinstance(reader, LengthReader)
            and isinstance(reader.unreader, SocketUnreader)
            and body.buf.tell() == 0
        ):
            data = body.read(len(buffer))
            buffer[: len(data)] = data
            return len(data)
        want = min(len(buffer), reader.length)
        if want <= 0:
            return 0
        unreader = reader.unreader
        try:
            held = unreader.take_buffered()
            if held:
                got = min(want, len(held))
                buffer[:got] = held[:got]
                if got < len(held):
                    unreader.unread(held[got:])  # the next request, pipelined
            else:
                with memoryview(buffer) as view:
                    got = unreader.sock.recv_into(view[:want])
        except Exception:
            body.failed = True  # where the next request starts is unknown now
            raise
        reader.length -= got
        return got

    def read(self, size: int | None = None) -> bytes:
        return self._body.read(size)

    def readline(self, size: int | None = None) -> bytes:
        return self._body.readline(size)

    def readlines(self, size: int | None = None) -> list[bytes]:
        return self._body.readlines(size)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._body, name)


def with_fast_input(app: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a WSGI app so that its ``wsgi.input`` (a gunicorn ``Body``) has ``readinto``."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        body = environ.get("wsgi.input")
        if isinstance(body, Body):
            environ["wsgi.input"] = FastInput(body)
        return app(environ, start_response)

    return wrapped

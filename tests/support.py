"""Helpers shared by every test module: the error shape, small tar archives, test notebooks."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import socket
import tarfile
import threading
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Self

MiB = 1024 * 1024
# Read-only: a helper that adds a header to one of these would send it with every later request.
TAR: Mapping[str, str] = MappingProxyType({"Content-Type": "application/x-tar"})
GZIP: Mapping[str, str] = MappingProxyType({"Content-Type": "application/gzip"})
NOTEBOOK = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


def assert_error(answer, status: int, code: str | None = None, *words: str) -> dict:
    """Check the JSON error shape: ``status``, ``code``, a message naming ``words``."""
    assert answer.status_code == status, answer.text[:2000]
    assert answer.headers["Content-Type"].startswith("application/json"), answer.headers
    body = answer.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert {"status", "code", "message"} <= set(error), error
    assert set(error) <= {"status", "code", "message", "details"}, error
    assert error["status"] == status
    assert isinstance(error["code"], str) and error["code"], error
    if code is not None:
        assert error["code"] == code, error
    message = error["message"]
    assert isinstance(message, str) and len(message) >= 20, error
    for word in words:
        assert word.lower() in message.lower(), (word, message)
    return error


def make_tar(files: dict[str, bytes], *, format: int = tarfile.PAX_FORMAT) -> bytes:
    """An uncompressed tar of ``files`` (name → contents), in order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=format) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def make_tgz(files: dict[str, bytes]) -> bytes:
    """``make_tar`` gzip-compressed."""
    return gzip.compress(make_tar(files), mtime=0)


def log_lines(server, needle: str, wait: float = 30, at_least: int = 1) -> list[str]:
    """The live server's log lines containing ``needle``: waits up to ``wait`` s until there
    are ``at_least`` of them (a request's access line is written after its response)."""
    deadline = time.monotonic() + wait
    while True:
        lines = [
            line
            for line in server.log_path.read_text(errors="replace").splitlines()
            if needle in line
        ]
        if len(lines) >= at_least or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def recorded_writes(monkeypatch, module) -> list[int]:
    """Sizes of the ``os.write`` calls ``module`` makes from now on (the calls still happen)."""
    sizes: list[int] = []
    real_write = os.write

    def write(fd: int, data) -> int:
        sizes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(module.os, "write", write)
    return sizes


def pipe_bytes(source: socket.socket, target: socket.socket) -> None:
    """Copy ``source`` to ``target`` until either ends, then shut both down (a relay's half)."""
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class LoopbackRelay:
    """Relays loopback TCP connections to ``upstream`` (``url`` is where to connect), each in
    a thread of its own through ``relay(client)``, which subclasses define to misbehave."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @classmethod
    def before(cls, server, **options: Any) -> Self:
        """A relay in front of a live test server (``options`` go to the subclass)."""
        host, port = server.url.removeprefix("http://").split(":")
        return cls((host, int(port)), **options)

    def close(self) -> None:
        self.listener.close()

    def relay(self, client: socket.socket) -> None:
        raise NotImplementedError

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.relay, args=(client,), daemon=True).start()

    @staticmethod
    def end(sock: socket.socket) -> None:
        """Shut a connection down (waking a thread blocked on it), then close it."""
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def add_unreleased_assignment(server, course: str, name: str) -> None:
    """An assignment ``name`` in ``course`` that was never released (no API makes one: nbgrader
    only ever releases), written as the service's own models."""
    from lti_exchange.api.common import ANY_ROLE
    from lti_exchange.models import Assignment
    from lti_exchange.services.authorisation import authorise_course

    state = server.state()
    claims = state.tokens.verify(server.issue_token("teacher", course, "Instructor"))
    with state.session_factory() as session:
        caller = authorise_course(session, claims, course, ANY_ROLE)
        session.add(Assignment(course_id=caller.course_id, name=name, released=False))
        session.commit()


def release_as_teacher(server, course: str, name: str, files: dict[str, bytes]) -> None:
    """Release ``files`` as assignment ``name`` of ``course``, as its instructor ``teacher``."""
    teacher = server.issue_token("teacher", course, "Instructor")
    answer = server.api(
        "POST",
        f"courses/{course}/assignments/{name}/releases",
        teacher,
        data=make_tar(files),
        headers=TAR,
    )
    assert answer.status_code == 201, answer.text

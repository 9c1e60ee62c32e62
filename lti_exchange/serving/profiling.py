"""Opt-in server-side profiling for benchmarks: ``LTI_EXCHANGE_PROFILE_DIR``.

When the variable names a directory, ``config/gunicorn.conf.py`` installs the hooks below: each
worker wraps its WSGI app in :class:`ProfilingMiddleware`, which runs every request (the app call
and the iteration of its response body) under a ``cProfile.Profile`` of the thread serving it (one
per thread, since cProfile sees only the thread that enabled it). When the worker exits, the
threads' profiles are merged and written to ``<dir>/worker-<pid>.pstats``; read them with
``pstats.Stats``. Times are wall-clock (waits for locks, the disk and the network included);
``LTI_EXCHANGE_PROFILE_CLOCK=cpu`` counts the thread's CPU time instead. Never set these in
production: profiling slows every request down.
"""

from __future__ import annotations

import atexit
import cProfile
import os
import pstats
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

PROFILE_DIR_ENV = "LTI_EXCHANGE_PROFILE_DIR"
PROFILE_CLOCK_ENV = "LTI_EXCHANGE_PROFILE_CLOCK"

WsgiApp = Callable[[dict, Callable], Iterable[bytes]]


class ProfilingMiddleware:
    """Profile every request per thread; :meth:`dump` writes the merged profile."""

    def __init__(self, app: WsgiApp, directory: Path, cpu_clock: bool = False) -> None:
        self.app = app
        self.directory = directory
        self.cpu_clock = cpu_clock
        self._local = threading.local()
        self._profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()
        self._dumped = False

    def _profile(self) -> cProfile.Profile:
        profile = getattr(self._local, "profile", None)
        if profile is None:
            profile = cProfile.Profile(time.thread_time) if self.cpu_clock else cProfile.Profile()
            self._local.profile = profile
            with self._lock:
                self._profiles.append(profile)
        return profile

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        profile = self._profile()
        profile.enable()
        try:
            result = self.app(environ, start_response)
        finally:
            profile.disable()
        file_wrapper = environ.get("wsgi.file_wrapper")
        if file_wrapper is not None and isinstance(result, file_wrapper):
            return result  # sent with sendfile by the server: keep that path
        return _ProfiledBody(result, profile)

    def dump(self) -> Path | None:
        """Write the merged profile of all threads (once); its path, or None without data."""
        with self._lock:
            if self._dumped:
                return None
            self._dumped = True
            profiles = list(self._profiles)
        stats: pstats.Stats | None = None
        for profile in profiles:
            profile.disable()
            profile.create_stats()
            if not profile.stats:
                continue
            if stats is None:
                stats = pstats.Stats(profile)
            else:
                stats.add(profile)
        if stats is None:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.directory / f"worker-{os.getpid()}.pstats"
        stats.dump_stats(str(target))
        return target


class _ProfiledBody:
    """A response body whose iteration runs under the request thread's profile."""

    def __init__(self, body: Iterable[bytes], profile: cProfile.Profile) -> None:
        self.body = body
        self.profile = profile

    def __iter__(self) -> Iterator[bytes]:
        iterator = iter(self.body)
        while True:
            self.profile.enable()
            try:
                chunk = next(iterator)
            except StopIteration:
                return
            finally:
                self.profile.disable()
            yield chunk

    def close(self) -> None:
        close = getattr(self.body, "close", None)
        if close is not None:
            self.profile.enable()
            try:
                close()
            finally:
                self.profile.disable()


def profiling_hooks(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """gunicorn hooks (``post_worker_init``, ``worker_exit``) when ``LTI_EXCHANGE_PROFILE_DIR``
    is set; an empty dict otherwise."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    raw = env.get(PROFILE_DIR_ENV, "").strip()
    if not raw:
        return {}
    directory = Path(raw)
    clock = env.get(PROFILE_CLOCK_ENV, "").strip().lower() or "wall"
    if clock not in ("wall", "cpu"):
        raise RuntimeError(f"{PROFILE_CLOCK_ENV} must be 'wall' or 'cpu', got {clock!r}")

    def post_worker_init(worker: Any) -> None:
        middleware = ProfilingMiddleware(worker.wsgi, directory, cpu_clock=clock == "cpu")
        worker.wsgi = middleware
        atexit.register(middleware.dump)

    def worker_exit(server: Any, worker: Any) -> None:
        middleware = getattr(worker, "wsgi", None)
        if isinstance(middleware, ProfilingMiddleware):
            middleware.dump()

    return {"post_worker_init": post_worker_init, "worker_exit": worker_exit}

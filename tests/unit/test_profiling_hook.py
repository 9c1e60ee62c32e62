"""The opt-in request profiler (``LTI_EXCHANGE_PROFILE_DIR``) used by ``bench/transfers.py``."""

from __future__ import annotations

import pstats
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lti_exchange.serving.profiling import ProfilingMiddleware, profiling_hooks


def _slow_body_chunk() -> bytes:
    return b"body"


def _app(environ: dict, start_response) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return (_slow_body_chunk() for _ in range(2))


def test_requests_in_several_threads_are_merged_into_one_dump(tmp_path: Path) -> None:
    middleware = ProfilingMiddleware(_app, tmp_path / "profiles")
    bodies: list[bytes] = []

    def request() -> None:
        body = middleware({}, lambda status, headers: None)
        bodies.append(b"".join(body))

    threads = [threading.Thread(target=request) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    target = middleware.dump()
    assert bodies == [b"bodybody"] * 3
    assert target is not None and target.name.startswith("worker-")
    stats = pstats.Stats(str(target)).stats  # type: ignore[attr-defined]
    calls = {key[2]: value[1] for key, value in stats.items()}
    assert calls["_app"] == 3  # the app call, from every thread
    assert calls["_slow_body_chunk"] == 6  # and the body's iteration
    assert middleware.dump() is None  # once only


def test_hooks_only_when_the_directory_is_set(tmp_path: Path) -> None:
    assert profiling_hooks({}) == {}
    hooks = profiling_hooks({"LTI_EXCHANGE_PROFILE_DIR": str(tmp_path)})
    assert set(hooks) == {"post_worker_init", "worker_exit"}
    with pytest.raises(RuntimeError, match="'wall' or 'cpu'"):
        profiling_hooks(
            {"LTI_EXCHANGE_PROFILE_DIR": str(tmp_path), "LTI_EXCHANGE_PROFILE_CLOCK": "x"}
        )

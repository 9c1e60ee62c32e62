"""Production gunicorn configuration for lti-exchange.

Usage (from the repository root, or ``/app`` in the container image)::

    lti-exchange db upgrade
    gunicorn -c config/gunicorn.conf.py 'lti_exchange:create_app()'

Run ``lti-exchange db upgrade`` once before starting the workers when using an external database
(PostgreSQL / MySQL); the embedded SQLite default migrates itself.

Tunables (environment):

``LTI_EXCHANGE_BIND``
    Address to listen on (default ``0.0.0.0:8000``).
``LTI_EXCHANGE_WORKERS``
    Number of worker processes (default: one per CPU; more processes than CPUs cost CPU per
    request, see ``bench/README.md``).
``LTI_EXCHANGE_THREADS``
    Threads per worker (``gthread`` worker class; default ``10``: requests a worker serves at
    once, uploads included).
``LTI_EXCHANGE_PIN_WORKERS``
    ``off`` (default), ``auto`` or ``on``: keep each worker process on a CPU of its own, so its
    threads hand the GIL to each other on one CPU (less CPU per request when the clients are on
    other machines). ``auto`` pins only when there is one worker per CPU and no CPU quota
    (Kubernetes CPU limit, ``docker --cpus``) shares those CPUs with others; ``on`` always.
    See ``lti_exchange/serving/cpu_pinning.py`` for what was measured.
``LTI_EXCHANGE_FORWARDED_ALLOW_IPS``
    Comma-separated addresses of reverse proxies whose ``X-Forwarded-*`` headers are trusted
    (default ``127.0.0.1``; use the proxy's address, or ``*`` only behind a trusted network).
``LTI_EXCHANGE_LOG_LEVEL``
    Also sets gunicorn's own log level (default ``info``).
``LTI_EXCHANGE_LOG_FORMAT``
    ``text`` (default: gunicorn's access log below) or ``json`` (every line a JSON object; the
    per-request line comes from the app, logger ``lti_exchange.request``).
``PROMETHEUS_MULTIPROC_DIR``
    Where the workers keep their metric files (emptied at start; default: a fresh temporary
    directory). ``GET /metrics`` adds all workers up.

``LTI_EXCHANGE_HEADER_TIMEOUT``
    Seconds a client may take to send its request line and headers (default ``10``); slower
    clients get 408. Heads are read by each worker's event loop, so slow clients hold no thread.
``LTI_EXCHANGE_IDLE_TIMEOUT``
    Seconds a client may leave its request body, or the answer it is being sent, without
    progress (default ``60``, like nginx's ``client_body_timeout`` / ``send_timeout``). A stalled
    upload is answered 408 ``upload_stalled`` and nothing is stored; either way the thread is
    freed. Without it, as many stalled clients as threads would stop the service.
``LTI_EXCHANGE_PROFILE_DIR``
    Benchmarks only: profile every request (cProfile, per thread) and write each worker's
    merged profile to ``<dir>/worker-<pid>.pstats`` when it exits (``bench/README.md``);
    ``LTI_EXCHANGE_PROFILE_CLOCK=cpu`` profiles CPU time instead of wall time.
``LTI_EXCHANGE_GRACEFUL_TIMEOUT``
    Seconds running requests get to finish after SIGTERM before workers are killed (default
    ``30``). Under Kubernetes keep it below ``terminationGracePeriodSeconds`` minus the preStop
    sleep (``deploy/kubernetes``: 90 of 120 s, after a 10 s sleep).

The front-door settings (worker class, header limits, access logger) come from
``lti_exchange.serving.gunicorn_app.FRONT_DOOR``, shared with ``lti-exchange serve``. Heads are
bounded by ``limit_request_line`` / ``limit_request_fields`` / ``limit_request_field_size`` (4xx
beyond).

The access log never records query strings or request headers (so no tokens or
``Authorization`` values end up in logs): only client address, method, the raw (still
percent-encoded) path, status, response size and duration in milliseconds.

Without ``LTI_EXCHANGE_BASE_URL``, URLs sent to an LMS are built from ``LTI_EXCHANGE_BIND``
(never from the ``Host`` header); a wildcard bind such as ``0.0.0.0:8000`` gives no usable URL,
so the LTI endpoints then refuse with ``base_url_unset`` and a warning is printed at start-up.
"""

import os
import sys

from lti_exchange.config import DEFAULT_THREADS
from lti_exchange.logging_setup import check_log_format, configure_logging
from lti_exchange.public_url import url_from_bind
from lti_exchange.serving.cpu_pinning import pinning_hooks
from lti_exchange.serving.gunicorn_app import FRONT_DOOR, JSON_LOG_OPTIONS
from lti_exchange.serving.metrics_dir import (
    mark_worker_dead,
    prepare_multiprocess_dir,
    remove_multiprocess_dir,
)
from lti_exchange.serving.profiling import profiling_hooks

# --- Metrics: prometheus-client multiprocess mode (before any worker imports it) ---------------
# Every worker counts into files here; GET /metrics adds them up. An operator's
# PROMETHEUS_MULTIPROC_DIR is emptied at start; otherwise a fresh temporary directory is used.
prepare_multiprocess_dir()


def child_exit(server, worker):
    mark_worker_dead(worker.pid)


def on_exit(server):
    remove_multiprocess_dir()


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise RuntimeError(f"{name} must be an integer, got {raw!r}") from exc
    if value <= 0:
        raise RuntimeError(f"{name} must be positive, got {value}")
    return value


def _cpu_count() -> int:
    try:
        # Honours CPU affinity / cgroup cpusets (containers), unlike os.cpu_count().
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not available on every platform
        return os.cpu_count() or 1


# --- Server socket -------------------------------------------------------------------------------
bind = os.environ.get("LTI_EXCHANGE_BIND", "").strip() or "0.0.0.0:8000"

if not os.environ.get("LTI_EXCHANGE_BASE_URL", "").strip():
    _derived = url_from_bind(bind)
    print(
        "lti-exchange: LTI_EXCHANGE_BASE_URL is not set; "
        + (
            f"URLs sent to the LMS will name {_derived} (from LTI_EXCHANGE_BIND)."
            if _derived
            else f"the bind address {bind} is a wildcard, so the LTI endpoints will refuse "
            "until LTI_EXCHANGE_BASE_URL is set to the public URL."
        ),
        file=sys.stderr,
    )

# --- Front door: worker class, header limits, access logger (shared with `serve`) ----------
globals().update(FRONT_DOOR)

# --- Opt-in profiling for benchmarks (LTI_EXCHANGE_PROFILE_DIR; never in production) ---------
# Each worker profiles its requests and writes <dir>/worker-<pid>.pstats when it exits.
globals().update(profiling_hooks())

# --- Workers -------------------------------------------------------------------------------------
# One process per CPU, threads for concurrency: processes sharing a CPU cost more CPU per request
# than threads sharing one (one CPU, 16 clients: 1 x 4 3.2-3.4 ms, 1 x 10 3.7-3.9 ms, 5 x 4
# 4.7-5.4 ms per 1 MiB request, and 35 % less throughput; bench/README.md).
workers = _int_env("LTI_EXCHANGE_WORKERS", _cpu_count())
threads = _int_env("LTI_EXCHANGE_THREADS", DEFAULT_THREADS)
# Opt-in: each worker on a CPU of its own (LTI_EXCHANGE_PIN_WORKERS=auto|on).
globals().update(pinning_hooks())

# Large submissions and releases are streamed; give them time.
timeout = 300
# After SIGTERM, running requests get this long to finish (keep it below Kubernetes'
# terminationGracePeriodSeconds minus the preStop sleep).
graceful_timeout = _int_env("LTI_EXCHANGE_GRACEFUL_TIMEOUT", 30)

# --- Proxy ---------------------------------------------------------------------------------------
forwarded_allow_ips = os.environ.get("LTI_EXCHANGE_FORWARDED_ALLOW_IPS", "").strip() or "127.0.0.1"

# --- Logging -------------------------------------------------------------------------------------
errorlog = "-"
loglevel = os.environ.get("LTI_EXCHANGE_LOG_LEVEL", "").strip().lower() or "info"
# The service's own loggers (refusals with their request id, worker errors): configured here,
# once, in the master; the app factory leaves logging alone. LTI_EXCHANGE_LOG_FORMAT=json: every
# line is a JSON object and the per-request line comes from the app (lti_exchange.request), so
# gunicorn's text access log is turned off.
log_format = check_log_format(os.environ.get("LTI_EXCHANGE_LOG_FORMAT", ""))
if log_format == "json":
    globals().update(JSON_LOG_OPTIONS)
configure_logging(loglevel, log_format)

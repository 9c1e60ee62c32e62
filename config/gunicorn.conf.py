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
    Number of worker processes (default ``2 * CPUs + 1``).
``LTI_EXCHANGE_THREADS``
    Threads per worker (``gthread`` worker class; default ``4``).
``LTI_EXCHANGE_FORWARDED_ALLOW_IPS``
    Comma-separated addresses of reverse proxies whose ``X-Forwarded-*`` headers are trusted
    (default ``127.0.0.1``; use the proxy's address, or ``*`` only behind a trusted network).
``LTI_EXCHANGE_LOG_LEVEL``
    Also sets gunicorn's own log level (default ``info``).

The access log never records query strings or request headers (so no tokens or
``Authorization`` values end up in logs): only client address, method, path, status, response
size and duration in milliseconds.
"""

import os


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

# --- Workers -------------------------------------------------------------------------------------
workers = _int_env("LTI_EXCHANGE_WORKERS", 2 * _cpu_count() + 1)
worker_class = "gthread"
threads = _int_env("LTI_EXCHANGE_THREADS", 4)

# Large submissions and releases are streamed; give them time.
timeout = 300
graceful_timeout = 30
keepalive = 5

# Heartbeat files on a RAM-backed filesystem, so a slow disk cannot stall workers.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"

# --- Proxy ---------------------------------------------------------------------------------------
forwarded_allow_ips = os.environ.get("LTI_EXCHANGE_FORWARDED_ALLOW_IPS", "").strip() or "127.0.0.1"

# --- Logging -------------------------------------------------------------------------------------
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LTI_EXCHANGE_LOG_LEVEL", "").strip().lower() or "info"
# %(U)s is the path without the query string; no header atoms, so no Authorization values.
access_log_format = "%(h)s %(m)s %(U)s %(s)s %(B)s %(M)sms"

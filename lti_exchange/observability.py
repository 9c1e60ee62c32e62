"""Prometheus metrics (no Flask): the metric objects, one-line helpers for the layers that count,
served by ``GET /metrics`` (``lti_exchange/web/metrics.py``).

Under gunicorn every worker writes its counters to files in ``PROMETHEUS_MULTIPROC_DIR`` and
``GET /metrics`` adds them up (prometheus-client's multiprocess mode); the directory is set up
by ``lti_exchange/serving/metrics_dir.py`` before this module is first imported.

In that mode a counter without labels makes its process's file as soon as it is defined, and
the file stays after the process ends (so totals never go backwards). The two such counters are
therefore made on first use (``count_submission``, ``count_release``) or by the web app at start
(``start_counting``, so ``/metrics`` shows them at 0): a command-line run that merely imports the
services leaves no file behind in the workers' directory.
"""

from __future__ import annotations

import threading

from prometheus_client import Counter, Histogram

# Uploads and downloads of large archives take minutes: buckets up to 5 minutes.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

HTTP_REQUESTS = Counter(
    "lti_exchange_http_requests_total",
    "HTTP requests answered, by route (the URL rule, not the path), method and status.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "lti_exchange_http_request_duration_seconds",
    "Time from receiving a request to sending the last byte of its answer, by route and method.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
HTTP_BYTES_IN = Counter(
    "lti_exchange_http_request_bytes_total", "Request body bytes read, by route.", ["route"]
)
HTTP_BYTES_OUT = Counter(
    "lti_exchange_http_response_bytes_total", "Response body bytes sent, by route.", ["route"]
)
LAUNCHES = Counter(
    "lti_exchange_lti_launches_total",
    "LTI launches by outcome: completed (tokens), deep_link (the choice page), unbound (the "
    "browser still has to prove the launch), refused (an error page or JSON error).",
    ["outcome"],
)
GRADE_SENDS = Counter(
    "lti_exchange_grade_sends_total",
    "Grade outbox entries handled by the worker, by outcome: sent, retrying, failed, deferred.",
    ["outcome"],
)
S3_DIRECT = Counter(
    "lti_exchange_s3_direct_requests_total",
    "Whole-blob S3 PutObject and GetObject requests the service signed and sent itself, by "
    "outcome: sent (answered), handed_to_boto3 (anything but a plain success: sent again "
    "through boto3).",
    ["outcome"],
)
LAUNCH_OUTCOMES = ("completed", "deep_link", "unbound", "refused")


# Counters without labels, made on first use (see the module docstring): name -> help text.
_PLAIN = {
    "lti_exchange_submissions_total": "Student submissions stored.",
    "lti_exchange_releases_total": "Assignment releases (versions) stored.",
}
_plain: dict[str, Counter] = {}
_plain_lock = threading.Lock()


def _counter(name: str) -> Counter:
    counter = _plain.get(name)
    if counter is None:
        with _plain_lock:
            counter = _plain.get(name)
            if counter is None:
                counter = _plain[name] = Counter(name.removesuffix("_total"), _PLAIN[name])
    return counter


def start_counting() -> None:
    """Make every counter now (the web app at start), so ``/metrics`` lists them from 0."""
    for name in _PLAIN:
        _counter(name)


def count_submission() -> None:
    _counter("lti_exchange_submissions_total").inc()


def count_release() -> None:
    _counter("lti_exchange_releases_total").inc()


def count_s3_direct(outcome: str) -> None:
    S3_DIRECT.labels(outcome).inc()


def count_grade_send(outcome: str) -> None:
    GRADE_SENDS.labels(outcome).inc()

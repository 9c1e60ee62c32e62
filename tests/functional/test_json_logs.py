"""``LTI_EXCHANGE_LOG_FORMAT=json``: every log line is a JSON object, one per request with its id,
route, status, duration and user, never a token; and the plugin's failure messages quote the
request id that the server logged (text format: in gunicorn's access line)."""

from __future__ import annotations

import http.client
import json
import time
from urllib.parse import urlsplit

import pytest
import requests

from nbgrader_plugin.client import ExchangeClient, ExchangeClientError
from nbgrader_plugin.tokens import TokenEntry
from tests.conftest import start_server, stop_server
from tests.support import log_lines, make_tar


@pytest.fixture(scope="module")
def json_server(database_url, tmp_path_factory):
    server = start_server(
        database_url,
        tmp_path_factory.mktemp("json-logs"),
        {"LTI_EXCHANGE_LOG_FORMAT": "json", "LTI_EXCHANGE_LOG_LEVEL": "INFO"},
    )
    yield server
    stop_server(server)


def test_every_line_is_json_with_one_request_line_per_request(json_server, course):
    teacher = json_server.issue_token("json-teacher", course, "Instructor")
    body = make_tar({"p1.ipynb": b"{}"})
    answer = json_server.api(
        "POST",
        f"courses/{course}/assignments/ps1/releases",
        teacher,
        data=body,
        headers={"Content-Type": "application/x-tar", "X-Request-Id": "json-release-1"},
    )
    assert answer.status_code == 201, answer.text
    secret = "not-a-jwt-but-a-secret-9e8d"
    refused = json_server.api("GET", "/me", token=secret, headers={"X-Request-Id": "json-401-1"})
    assert refused.status_code == 401

    lines = log_lines(json_server, "json-release-1")
    requests_logged = [json.loads(line) for line in lines]
    request_lines = [
        entry for entry in requests_logged if entry["logger"] == "lti_exchange.request"
    ]
    assert len(request_lines) == 1, lines
    line = request_lines[0]
    assert line["request_id"] == "json-release-1"
    assert line["method"] == "POST"
    assert (
        line["route"]
        == "/api/v1/courses/<path:course_id>/assignments/<path:assignment_id>/releases"
    )
    assert line["path"] == f"/api/v1/courses/{course}/assignments/ps1/releases"
    assert line["status"] == 201
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["bytes_in"] == len(body)
    assert line["user"] == "json-teacher" and line["course"] == course
    assert line["level"] == "info" and line["time"].endswith("+00:00")

    refusal = [json.loads(line) for line in log_lines(json_server, "json-401-1", at_least=2)]
    loggers = sorted(entry["logger"] for entry in refusal)
    assert loggers == ["lti_exchange.request", "lti_exchange.web.errors"], refusal
    request_line = next(e for e in refusal if e["logger"] == "lti_exchange.request")
    assert request_line["status"] == 401 and "user" not in request_line
    warning = next(e for e in refusal if e["logger"] == "lti_exchange.web.errors")
    assert warning["level"] == "warning" and warning["request_id"] == "json-401-1"

    log = json_server.log_path.read_text(errors="replace")
    assert teacher not in log and secret not in log
    parsed = [json.loads(text) for text in log.splitlines() if text.strip()]  # every line
    assert any(entry["logger"] == "gunicorn.error" for entry in parsed), "gunicorn's lines too"


def test_the_request_line_has_the_raw_path_and_never_the_query_string(json_server, course):
    """``path`` is the path as sent: still percent-encoded (``%2f`` is not ``/``, ``%20`` not a
    space, the case of the hex digits kept), cut before the query string, which may hold
    secrets and appears nowhere in the log."""
    secret = "query-secret-5150"
    raw = f"/api/v1/courses/{course}/assignments/ps%201%2fx/archive"
    url = urlsplit(json_server.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:  # http.client sends the target byte for byte (requests would re-quote it)
        connection.request(
            "GET", f"{raw}?access_token={secret}&x=%2e%2e", headers={"X-Request-Id": "json-path-1"}
        )
        status = connection.getresponse().status
    finally:
        connection.close()
    assert 400 <= status < 500

    deadline = time.monotonic() + 30  # the request line is written after the answer
    while True:
        request_lines = [
            entry
            for entry in map(json.loads, log_lines(json_server, "json-path-1"))
            if entry["logger"] == "lti_exchange.request"
        ]
        if request_lines or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    (line,) = request_lines
    assert line["path"] == raw
    assert line["status"] == status
    assert (
        line["route"] == "/api/v1/courses/<path:course_id>/assignments/<path:assignment_id>/archive"
    )
    assert secret not in json_server.log_path.read_text(errors="replace")


def test_the_plugin_quotes_the_request_id_the_server_logged(live_server, course):
    token = live_server.issue_token("rid-student", course, "Learner")
    entry = TokenEntry.from_access_token(token, live_server.url)
    client = ExchangeClient(live_server.url, entry)
    with pytest.raises(ExchangeClientError) as failed:
        client.download(f"courses/{course}/assignments/nothing-here/archive")
    error = failed.value
    assert error.status == 404 and error.request_id
    assert f"(request id {error.request_id}: quote it to your instructor or operator)" in str(error)
    requests.get(live_server.url + "/healthz", timeout=30)  # flushes the line before it
    lines = log_lines(live_server, f"rid={error.request_id}")
    assert len(lines) == 1 and " 404 " in lines[0], lines


def test_each_plugin_request_has_its_own_id(live_server, course):
    token = live_server.issue_token("rid-student-2", course, "Learner")
    client = ExchangeClient(live_server.url, TokenEntry.from_access_token(token, live_server.url))
    ids = set()
    for _ in range(2):
        with pytest.raises(ExchangeClientError) as failed:
            client.get_json(f"courses/{course}/submissions/123456")
        ids.add(failed.value.request_id)
    assert len(ids) == 2 and None not in ids

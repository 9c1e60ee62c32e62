"""``GET /metrics`` after a small cycle shows the counts the cycle produced.

The server runs under gunicorn with two workers and an operator-given ``PROMETHEUS_MULTIPROC_DIR``;
the grade worker runs as ``lti-exchange worker --once`` with the same directory (as ``serve`` runs
it), so its sends appear in the service's ``/metrics`` too. Counts are compared as deltas.
"""

from __future__ import annotations

import subprocess
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import BIN, ROOT, free_port, start_server, stop_server
from tests.functional.lti.conftest import register_platform
from tests.functional.lti.helpers import bearer, describe, launched
from tests.lms.platform import INSTRUCTOR, LEARNER, LmsContext, LmsUser, SimulatedPlatform
from tests.support import make_tar

SUBMIT = "/api/v1/courses/<path:course_id>/assignments/<path:assignment_id>/submissions"
FETCH = "/api/v1/courses/<path:course_id>/assignments/<path:assignment_id>/archive"
RELEASE = "/api/v1/courses/<path:course_id>/assignments/<path:assignment_id>/releases"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def metered(database_url, tmp_path_factory):
    data = tmp_path_factory.mktemp("metered")
    metrics_dir = data / "prometheus"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"stale")  # a previous run's: emptied
    server = start_server(database_url, data, {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    lms = SimulatedPlatform(server.url).start()
    lms.org_id = register_platform(server, lms)["org_id"]
    yield server, lms
    lms.stop()
    stop_server(server)


def scrape_text(server) -> str:
    answer = requests.get(f"{server.url}/metrics", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain; version=")
    return answer.text


def scrape(server) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(scrape_text(server)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_metrics_count_a_cycle(metered):
    server, lms = metered
    before = scrape(server)

    context = LmsContext.make()
    teacher = launched(lms.launch(requests.Session(), roles=[INSTRUCTOR], context=context))
    student = launched(lms.launch(requests.Session(), user=LmsUser.make(), context=context))
    refused = lms.launch(requests.Session(), user=LmsUser.make(), roles=[LEARNER], context=None)
    assert refused.status_code == 400, describe(refused)
    course = teacher["course_id"]

    release = make_tar({"p1.ipynb": b"{}", "data.csv": b"1,2\n" * 1000})
    answer = server.api(
        "POST",
        f"courses/{course}/assignments/ps1/releases",
        teacher["access_token"],
        data=release,
        headers={"Content-Type": "application/x-tar"},
    )
    assert answer.status_code == 201, describe(answer)
    fetched = server.api(
        "GET", f"courses/{course}/assignments/ps1/archive", student["access_token"]
    )
    assert fetched.status_code == 200, describe(fetched)
    submission = make_tar({"ps1/p1.ipynb": b'{"cells": []}'})
    answer = server.api(
        "POST",
        f"courses/{course}/assignments/ps1/submissions",
        student["access_token"],
        data=submission,
        headers={"Content-Type": "application/x-tar"},
    )
    assert answer.status_code == 201, describe(answer)
    grade = {"assignment_id": "ps1", "student_id": student["username"], "score": 7, "max_score": 10}
    answer = requests.post(
        f"{server.url}/api/v1/courses/{course}/grades",
        json={"grades": [grade]},
        headers=bearer(teacher["access_token"]),
        timeout=60,
    )
    assert answer.status_code == 200, describe(answer)
    for _ in range(20):  # spread over both gunicorn workers: the totals must still add up
        assert requests.get(f"{server.url}/healthz", timeout=30).status_code == 200

    queued = scrape(server)
    assert value(queued, "lti_exchange_grade_outbox_entries") >= 1
    done = subprocess.run(
        [str(BIN / "lti-exchange"), "worker", "--once"],
        env=server.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    after = scrape(server)

    assert delta(before, after, "lti_exchange_releases_total") == 1
    assert delta(before, after, "lti_exchange_submissions_total") == 1
    assert delta(before, after, "lti_exchange_lti_launches_total", outcome="completed") == 2
    assert delta(before, after, "lti_exchange_lti_launches_total", outcome="refused") == 1
    assert delta(before, after, "lti_exchange_grade_sends_total", outcome="sent") == 1
    assert lms.scores(context), "the worker sent the score to the LMS"
    assert value(after, "lti_exchange_grade_outbox_entries") == 0
    assert value(after, "lti_exchange_grade_outbox_oldest_age_seconds") == 0

    requests_total = "lti_exchange_http_requests_total"
    assert delta(before, after, requests_total, route="/healthz", method="GET", status="200") == 20
    assert delta(before, after, requests_total, route=SUBMIT, method="POST", status="201") == 1
    assert delta(before, after, requests_total, route=RELEASE, method="POST", status="201") == 1
    assert delta(before, after, requests_total, route=FETCH, method="GET", status="200") == 1
    assert (
        delta(before, after, requests_total, route="/lti/launch", method="POST", status="400") == 1
    )
    latency = "lti_exchange_http_request_duration_seconds_count"
    assert delta(before, after, latency, route=SUBMIT, method="POST") == 1
    assert delta(before, after, "lti_exchange_http_request_bytes_total", route=SUBMIT) == len(
        submission
    )
    assert delta(before, after, "lti_exchange_http_request_bytes_total", route=RELEASE) == len(
        release
    )
    assert delta(before, after, "lti_exchange_http_response_bytes_total", route=FETCH) == len(
        fetched.content
    )
    # Routes are URL rules, never raw paths: no course id in any label.
    routes = {dict(labels).get("route", "") for (_name, labels) in after}
    assert routes and not any(course in route for route in routes), routes


def test_unknown_paths_share_one_label(metered):
    server, _lms = metered
    before = scrape(server)
    for index in range(3):
        assert requests.get(f"{server.url}/no/such/{index}", timeout=30).status_code == 404
    after = scrape(server)
    name = "lti_exchange_http_requests_total"
    assert delta(before, after, name, route="<unmatched>", method="GET", status="404") == 3
    assert not any("/no/such" in str(labels) for (_name, labels) in after)


def test_the_plain_counters_are_listed_before_anything_is_counted(metered):
    server, _lms = metered
    families = {f.name for f in text_string_to_metric_families(scrape_text(server))}
    assert {"lti_exchange_submissions", "lti_exchange_releases"} <= families


def test_a_command_that_only_imports_the_services_leaves_no_metric_file(tmp_path):
    # An operator's `lti-exchange ...` in the web pod has PROMETHEUS_MULTIPROC_DIR set too; a file
    # it made would stay there (counters of ended processes are kept) and every scrape reads it.
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    code = (
        "import lti_exchange.services.submissions, lti_exchange.services.assignments, "
        "lti_exchange.storage.s3_direct, lti_exchange.observability"
    )
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    done = subprocess.run(
        [str(BIN / "python"), "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert list(metrics_dir.iterdir()) == []


def test_the_stale_metric_files_of_a_previous_run_are_removed(metered):
    server, _lms = metered
    assert not (server.data_dir / "prometheus" / "counter_999999.db").exists()


def test_a_standalone_worker_serves_its_own_metrics(metered):
    server, _lms = metered
    port = free_port()
    env = {k: v for k, v in server.env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    worker = subprocess.Popen(
        [str(BIN / "lti-exchange"), "worker", "--metrics-port", str(port), "--interval", "0.2"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert worker.poll() is None, "the worker exited"
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the worker's metrics port never answered"
                time.sleep(0.2)
        assert answer.status_code == 200
        assert "# TYPE lti_exchange_grade_sends_total counter" in answer.text
    finally:
        worker.terminate()
        worker.wait(timeout=30)

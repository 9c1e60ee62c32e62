"""Two replicas of the service behind one public URL: one PostgreSQL database, one S3 bucket, no
shared disk.

Each replica is its own gunicorn (``start_server``) with its own data directory and its own copy
of the keys (as each Kubernetes pod mounts the same Secret). Both have the same
``LTI_EXCHANGE_BASE_URL``: replica A's address stands in for the load balancer's public URL, and
the tests choose which replica answers each request:

- the nbgrader cycle with the instructor and students spread over both replicas;
- an LTI login answered by A whose launch is posted to B (the state is in the shared database;
  the browser's cookie jar is the same);
- a token minted by one replica is accepted by the other; a refresh token too;
- two grade workers (one per replica's settings) share the outbox and send every score once.

The database is PostgreSQL whatever the main test backend is (SQLite cannot be shared between
machines); PostgreSQL is always there where the tests run.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from requests.adapters import HTTPAdapter
from sqlalchemy import update

from lti_exchange.app_objects import TOKEN_KEY_PREFIX, TOOL_KEY_PREFIX
from lti_exchange.keyring import KeyRing
from lti_exchange.models import GradeOutbox
from lti_exchange.models.types import utcnow
from lti_exchange.worker import GradeWorker
from tests.conftest import _create_database, start_server, stop_server
from tests.end_to_end.helpers import EXCHANGE_CONFIG, Role, submitted_lines
from tests.functional.lti.conftest import register_platform
from tests.functional.lti.helpers import bearer, describe, launched
from tests.lms.platform import INSTRUCTOR, LmsContext, LmsUser, SimulatedPlatform


class ToReplica(HTTPAdapter):
    """The load balancer's choice for one URL prefix: send it to ``target`` instead."""

    def __init__(self, public: str, target: str) -> None:
        super().__init__()
        self.public, self.target = public, target

    def send(self, request, *args, **kwargs):  # type: ignore[override]
        routed = request.copy()
        routed.url = self.target + request.url[len(self.public) :]
        return super().send(routed, *args, **kwargs)


def secret_keys(directory: Path) -> Path:
    """The token-signing and tool keys, created once (what the Kubernetes Secret holds)."""
    KeyRing(directory, TOKEN_KEY_PREFIX).ensure_key()
    KeyRing(directory, TOOL_KEY_PREFIX).ensure_key()
    return directory


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, s3_server):
    tmp = tmp_path_factory.mktemp("replicas")
    database_url, drop = _create_database("postgresql", tmp)
    bucket = s3_server.new_bucket()
    secret = secret_keys(tmp / "secret")
    shared = {
        **s3_server.env(bucket),
        "LTI_EXCHANGE_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "LTI_EXCHANGE_S3_REGION": "us-east-1",
    }
    servers = []
    try:
        for name in ("a", "b"):
            data = tmp / name
            data.mkdir()
            keys = shutil.copytree(secret, data / "mounted-keys")  # each pod's own mount
            env = {**shared, "LTI_EXCHANGE_KEYS_DIR": str(keys)}
            if servers:  # B answers for the same public URL as A
                env["LTI_EXCHANGE_BASE_URL"] = servers[0].url
            servers.append(start_server(database_url, data, env))
        a, b = servers
        lms = SimulatedPlatform(a.url).start()
        lms.org_id = register_platform(a, lms)["org_id"]
        yield a, b, lms, s3_server, bucket
        lms.stop()
    finally:
        for server in servers:
            stop_server(server)
        drop()


def counter(server, name: str, **labels: str) -> float:
    text = requests.get(f"{server.url}/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def test_no_replica_keeps_blobs_on_its_own_disk(replicas):
    a, b, _lms, s3, bucket = replicas
    for server in (a, b):
        assert requests.get(f"{server.url}/readyz", timeout=30).status_code == 200
        assert server.blob_count() == 0
    assert a.env["LTI_EXCHANGE_STORAGE_URL"] == b.env["LTI_EXCHANGE_STORAGE_URL"]
    assert a.env["LTI_EXCHANGE_STORAGE_URL"].startswith(f"s3://{bucket}/")
    assert a.env["LTI_EXCHANGE_DATA_DIR"] != b.env["LTI_EXCHANGE_DATA_DIR"]


def test_a_login_answered_by_one_replica_launches_on_the_other(replicas):
    a, b, lms, _s3, _bucket = replicas
    before = {
        name: (
            counter(
                server,
                "lti_exchange_http_requests_total",
                route="/lti/login",
                method="GET",
                status="302",
            ),
            counter(server, "lti_exchange_lti_launches_total", outcome="completed"),
        )
        for name, server in (("a", a), ("b", b))
    }
    with requests.Session() as browser:  # one browser, one cookie jar
        browser.mount(f"{a.url}/lti/launch", ToReplica(a.url, b.url))
        body = launched(lms.launch(browser, roles=[INSTRUCTOR]), "Instructor")
    logins = {
        name: counter(
            server,
            "lti_exchange_http_requests_total",
            route="/lti/login",
            method="GET",
            status="302",
        )
        - before[name][0]
        for name, server in (("a", a), ("b", b))
    }
    launches = {
        name: counter(server, "lti_exchange_lti_launches_total", outcome="completed")
        - before[name][1]
        for name, server in (("a", a), ("b", b))
    }
    assert logins == {"a": 1, "b": 0}, logins
    assert launches == {"a": 0, "b": 1}, launches

    # The pair B minted works on A, and A's refresh is accepted by B.
    me = requests.get(f"{a.url}/api/v1/me", headers=bearer(body["access_token"]), timeout=30)
    assert me.status_code == 200, describe(me)
    assert me.json()["username"] == body["username"]
    refreshed = requests.post(
        f"{a.url}/api/v1/token/refresh", json={"refresh_token": body["refresh_token"]}, timeout=30
    )
    assert refreshed.status_code == 200, describe(refreshed)
    again = requests.post(
        f"{b.url}/api/v1/token/refresh",
        json={"refresh_token": refreshed.json()["refresh_token"]},
        timeout=30,
    )
    assert again.status_code == 200, describe(again)
    # The first refresh token was used on A: replaying it on B ends the family (shared rows).
    replay = requests.post(
        f"{b.url}/api/v1/token/refresh", json={"refresh_token": body["refresh_token"]}, timeout=30
    )
    assert replay.status_code == 401, describe(replay)


def test_a_token_minted_by_one_replica_is_accepted_by_the_other(replicas):
    a, b, _lms, _s3, _bucket = replicas
    course = f"c{uuid.uuid4().hex[:8]}"
    for minter, other in ((a, b), (b, a)):
        token = minter.issue_token(f"u{uuid.uuid4().hex[:6]}", course, "Learner")
        answer = other.api("GET", "me", token)
        assert answer.status_code == 200, describe(answer)
    forged = a.issue_token("x", course, "Learner")[:-4] + "AAAA"
    assert b.api("GET", "me", forged).status_code == 401


def point_at(role: Role, url: str) -> None:
    """The role's nbgrader now talks to ``url`` (another replica behind the same name)."""
    config = Path(role.env["JUPYTER_CONFIG_DIR"]) / "nbgrader_config.py"
    config.write_text("c = get_config()\n" + EXCHANGE_CONFIG.format(url=url))


def test_the_nbgrader_cycle_spread_over_both_replicas(replicas, tmp_path):
    a, b, _lms, s3, bucket = replicas
    course = f"course{uuid.uuid4().hex[:6]}"
    teacher = Role("teacher", tmp_path, a.url)
    alice = Role("alice", tmp_path, b.url)  # B's students
    carol = Role("carol", tmp_path, a.url)  # A's students
    teacher_token = a.issue_token("teacher", course, "Instructor")
    teacher.login(a.url, teacher_token)
    alice.login(b.url, a.issue_token("alice", course, "Learner"))  # minted by A, used on B
    carol.login(a.url, b.issue_token("carol", course, "Learner"))  # minted by B, used on A

    root = teacher.quickstart(course)
    teacher.nbgrader(
        "db", "assignment", "add", "ps1", "--duedate=2099-01-01 00:00:00 UTC", cwd=root
    )
    teacher.nbgrader("generate_assignment", "ps1", cwd=root)
    assert "version 1" in teacher.nbgrader("release_assignment", "ps1", cwd=root).output  # on A

    assert alice.nbgrader("list", "--course", course).lines(f"{course} ps1")  # on B
    alice.nbgrader("fetch_assignment", "ps1", "--course", course)
    assert (alice.work / "ps1" / "problem1.ipynb").is_file()
    (alice.work / "ps1" / "problem1.ipynb").write_text('{"alice": "her work"}')
    alice.nbgrader("submit", "ps1", "--course", course)
    carol.nbgrader("fetch_assignment", "ps1", "--course", course)  # on A
    carol.nbgrader("submit", "ps1", "--course", course)

    point_at(teacher, b.url)  # the instructor's next requests land on B
    teacher.login(b.url, teacher_token)
    inbound = teacher.nbgrader("list", "--inbound", cwd=root)
    assert len(submitted_lines(inbound, course, "alice", "ps1")) == 1
    assert len(submitted_lines(inbound, course, "carol", "ps1")) == 1
    collected = teacher.nbgrader("collect", "ps1", cwd=root)
    for student in ("alice", "carol"):
        assert collected.lines(f"Collecting submission: {student} ps1")
        assert (root / "submitted" / student / "ps1" / "timestamp.txt").is_file()
    submitted = root / "submitted" / "alice" / "ps1" / "problem1.ipynb"
    assert submitted.read_text() == '{"alice": "her work"}'

    # Every blob is in the bucket, none on either replica's disk.
    listed = s3.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0)
    assert listed >= 3, listed  # a release and two submissions at least
    assert a.blob_count() == 0 and b.blob_count() == 0


def drain_together(workers: list[GradeWorker], session_factory) -> list[dict[str, int]]:
    """Run the workers at once, one entry per pass, until the outbox is empty (bounded)."""
    totals = [{"sent": 0, "retrying": 0, "failed": 0, "deferred": 0} for _ in workers]
    start = threading.Barrier(len(workers))
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            start.wait()
            for _ in range(200):
                for key, value in workers[index].run_once(limit=1).items():
                    totals[index][key] += value
                with session_factory() as session:
                    if not session.query(GradeOutbox).count():
                        return
                    # Retries and deferrals due now instead of sleeping through the back-off.
                    session.execute(update(GradeOutbox).values(available_at=utcnow()))
                    session.commit()
                time.sleep(0.02)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    return totals


@pytest.mark.timeout(600)
def test_two_workers_share_the_outbox_and_send_each_score_once(replicas):
    a, b, lms, _s3, _bucket = replicas
    context = LmsContext.make()
    teacher = launched(lms.launch(requests.Session(), roles=[INSTRUCTOR], context=context))
    students = []
    for index in range(6):
        user = LmsUser.make(f"Replica{index}", "Student")
        with requests.Session() as browser:
            # half the students launch through B
            if index % 2:
                browser.mount(f"{a.url}/lti/", ToReplica(a.url, b.url))
            students.append((user, launched(lms.launch(browser, user=user, context=context))))
    grades = [
        {"assignment_id": "ps1", "student_id": body["username"], "score": i, "max_score": 10}
        for i, (_user, body) in enumerate(students)
    ]
    answer = requests.post(
        f"{b.url}/api/v1/courses/{teacher['course_id']}/grades",
        json={"grades": grades},
        headers=bearer(teacher["access_token"]),
        timeout=60,
    )
    assert answer.status_code == 200, describe(answer)
    assert answer.json()["counts"]["queued"] == 6

    posts_before = len(lms.score_posts)
    workers = [GradeWorker(a.state(), "replica-a"), GradeWorker(b.state(), "replica-b")]
    totals = drain_together(workers, a.state().session_factory)
    assert sum(t["sent"] for t in totals) == 6, totals
    assert sum(t["failed"] for t in totals) == 0, totals

    posts = lms.score_posts[posts_before:]
    assert len(posts) == 6, [p.__dict__ for p in posts]  # none sent twice
    scores = lms.scores(context)
    assert len(scores) == 6
    assert sorted(s["scoreGiven"] for s in scores.values()) == [0, 1, 2, 3, 4, 5]
    assert {user for (_item, user) in scores} == {user.sub for user, _body in students}
    assert len(lms.lineitems(context)) == 1, "one line item, created once"

"""Orphan blobs (stored, then the process died before its row was committed) on both backends:
the worker's sweep deletes them after the grace period; ``storage check`` reports them and rows
whose blob is missing."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from lti_exchange.jobs.orphans import sweep_orphan_blobs
from lti_exchange.storage import FilesystemStorage
from lti_exchange.worker import worker_jobs
from tests.conftest import BIN, ROOT, S3_ENV, start_server, stop_server
from tests.support import NOTEBOOK, TAR, make_tar


@pytest.fixture(scope="module", params=["filesystem", "s3"])
def server(request, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp(f"orphans-{request.param}")
    env = {}
    if request.param == "s3":
        s3_server = request.getfixturevalue("s3_server")
        env = s3_server.env(s3_server.new_bucket())
    server = start_server(f"sqlite:///{data_dir / 'db.sqlite3'}", data_dir, extra_env=env)
    yield server
    stop_server(server)


@pytest.fixture
def state(server, monkeypatch):
    """The server's objects in this process (the S3 client reads the AWS settings from here)."""
    for name, value in {**S3_ENV, **server.env}.items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    return server.state()


def run_check(server, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``lti-exchange storage check ARGS`` with the server's settings (and ``env``)."""
    return subprocess.run(
        [str(BIN / "lti-exchange"), "storage", "check", *args],
        env={**server.env, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def storage_check(server, **env: str) -> tuple[int, dict]:
    done = run_check(server, "--json", **env)
    return done.returncode, json.loads(done.stdout)


def make_older(storage, key: str, seconds: float) -> None:
    """Age a blob by ``seconds``: its file's time moved back, or (S3, whose objects' times
    cannot be set) a wait."""
    if isinstance(storage, FilesystemStorage):
        path = storage.path_for(key)
        then = path.stat().st_mtime - seconds
        os.utime(path, (then, then))
    else:
        time.sleep(seconds)


def release(server, course: str) -> None:
    teacher = server.issue_token("teacher", course, "Instructor")
    path = f"courses/{course}/assignments/ps1/releases"
    answer = server.api("POST", path, teacher, data=make_tar({"p1.ipynb": NOTEBOOK}), headers=TAR)
    assert answer.status_code == 201, answer.text


def keys(state) -> set[str]:
    return {info.key for info in state.storage.iter_blobs()}


def test_an_orphan_is_reported_then_swept_after_the_grace(server, state, course):
    release(server, course)
    code, report = storage_check(server)
    assert (code, report["ok"], report["missing"], report["orphans"]) == (0, True, [], [])
    assert report["blobs"] == report["rows"] >= 1
    referenced = keys(state)

    writer = state.storage.writer("submissions")  # stored; the row never committed
    writer.write(b"orphaned")
    orphan = writer.commit().key

    code, report = storage_check(server)  # younger than the grace: maybe an upload in progress
    assert (code, report["ok"], report["orphans"], report["missing"]) == (0, True, [], [])
    assert [o["key"] for o in report["in_progress"]] == [orphan]
    assert report["grace_seconds"] == 3600

    make_older(state.storage, orphan, 2.5)  # older than a 1 s grace: a real orphan
    code, report = storage_check(server, LTI_EXCHANGE_PARTIAL_UPLOAD_GRACE="1")
    assert (code, report["ok"], report["in_progress"]) == (1, False, [])
    assert [o["key"] for o in report["orphans"]] == [orphan]
    assert report["orphans"][0]["age_seconds"] > 1

    assert sweep_orphan_blobs(state) == 0  # younger than the grace: may be a commit in flight
    assert orphan in keys(state)
    assert worker_jobs(state, "test").run_now("sweep-orphan-blobs") == 0
    assert sweep_orphan_blobs(state, older_than=-60) == 1  # every blob counts as old
    assert keys(state) == referenced  # rows' blobs are kept
    assert storage_check(server)[0] == 0


def test_a_row_whose_blob_is_gone_is_reported(server, state, course):
    release(server, course)
    before = keys(state)
    _code, report = storage_check(server)
    assert report["missing"] == []
    victim = sorted(before)[0]
    state.storage.delete(victim)
    code, report = storage_check(server)
    assert code == 1
    assert [m["key"] for m in report["missing"]] == [victim]
    assert report["missing"][0]["table"] in ("release", "submission", "feedback")
    assert sweep_orphan_blobs(state, older_than=-60) == 0  # nothing to delete: only a gap


def test_the_text_report_says_what_each_finding_means(server, state, course):
    before = run_check(server)  # (earlier tests of this module may have left a gap behind)
    writer = state.storage.writer("submissions")
    writer.write(b"being received")
    young = writer.commit().key
    after = run_check(server)
    assert after.returncode == before.returncode  # an upload in progress is no problem
    assert f"in progress: {young}" in after.stdout
    assert f"orphan blob: {young}" not in after.stdout
    state.storage.delete(young)


def overwrite(storage, key: str, data: bytes, recorded_sha256: str) -> None:
    """Put other bytes under ``key`` behind the service's back (S3: keeping the object's
    SHA-256 metadata, as a fault inside the store would)."""
    if isinstance(storage, FilesystemStorage):
        storage.path_for(key).write_bytes(data)
        return
    storage.client.put_object(
        Bucket=storage.bucket,
        Key=storage.object_key(key),
        Body=data,
        Metadata={"sha256": recorded_sha256},
    )


def test_damaged_blobs_are_reported_by_size_and_with_verify_by_content(server, state, course):
    from lti_exchange.models import Release

    release(server, course)
    with state.session_factory() as session:
        row = session.query(Release).order_by(Release.id.desc()).first()
        key, size, sha256 = row.blob_key, row.size, row.sha256
    with state.storage.open(key) as handle:
        original = handle.read()
    try:
        overwrite(state.storage, key, b"\0" * size, sha256)  # same size, other bytes
        code, report = storage_check(server)
        assert key not in [d["key"] for d in report["damaged"]]  # only reading finds it
        assert report["verified"] is False

        done = run_check(server, "--json", "--verify")
        report = json.loads(done.stdout)
        assert done.returncode == 1 and report["verified"] is True
        [finding] = [d for d in report["damaged"] if d["key"] == key]
        assert finding["table"] == "release" and "SHA-256" in finding["reason"]
        assert "verified" in done.stderr and "(100 %)" in done.stderr

        overwrite(state.storage, key, b"\0" * (size // 2), sha256)  # shorter
        code, report = storage_check(server)
        [finding] = [d for d in report["damaged"] if d["key"] == key]
        assert code == 1 and finding["reason"] == f"{size // 2} bytes stored, {size} recorded"
        text = run_check(server).stdout
        assert f"damaged blob: release {finding['id']} -> {key}" in text
        assert "restore the blob from a backup" in text
    finally:
        overwrite(state.storage, key, original, sha256)
    assert key not in [d["key"] for d in storage_check(server)[1]["damaged"]]

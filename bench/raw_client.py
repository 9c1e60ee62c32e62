"""Raw-client measurements (``bench/transfers.py --raw``): the plugin's HTTP client and tar
helpers without nbgrader's exchange classes, so the transfer itself is measured apart from the
classes' packing and bookkeeping. These use plugin internals (``nbgrader_plugin.client`` and
``nbgrader_plugin.archive``) and may need updating when those change."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from common import (
    MB,
    THREADS,
    MiB,
    Report,
    RssSampler,
    Server,
    baseline_rss,
    mb_per_s,
    path,
    percentile,
    sha256_file,
    stopwatch,
    tar_bytes,
    upload_bytes,
)

from nbgrader_plugin.archive import (
    HashingReader,
    extract_stream,
    iter_safe_members,
    pack_directory,
)


# -- 1. big transfer ------------------------------------------------------------------------------
def warm_up(server: Server, token: str, course: str, rounds: int) -> None:
    """Release and fetch a small archive ``rounds`` times on fresh connections, so that every
    worker has served the upload and download paths before the memory baseline is taken."""
    url_path = path("courses", course, "assignments", "warm-up")
    for _ in range(rounds):
        upload_bytes(server, token, url_path + "/releases", tar_bytes({"a.bin": os.urandom(MiB)}))
        client = server.client(token)
        with client.download(url_path + "/archive") as response:
            response.read()
        client.close()


def bench_big(
    server: Server, work: Path, size_mb: int, report: Report, run_id: str
) -> dict[str, float]:
    """Release one ``size_mb`` MiB random file and download it again, watching server memory."""
    course = f"big-{run_id}"
    token = server.token("bench-instructor", course, "Instructor")
    source = work / "big-source"
    source.mkdir()
    content_hash = hashlib.sha256()
    with open(source / "data.bin", "wb") as fh:
        for _ in range(size_mb):
            chunk = os.urandom(MiB)
            content_hash.update(chunk)
            fh.write(chunk)

    with stopwatch() as elapsed:
        handle, size = pack_directory(source)
    report.add("big: pack_directory (client, not timed below)", mb_per_s(size, elapsed()))

    warm_up(server, token, course, rounds=3 * len(server.worker_pids()))
    sampler = RssSampler(server.process.pid)
    baseline = baseline_rss(server.process.pid)
    sampler.start()
    client = server.client(token)
    try:
        sampler.reset()
        with handle, stopwatch() as elapsed:
            answer = client.upload(
                "POST", path("courses", course, "assignments", "big", "releases"), handle, size
            )
        upload_seconds, upload_peak = elapsed(), sampler.peak
        assert answer["size"] == size, answer

        dest = work / "big-download"
        sampler.reset()
        with stopwatch() as elapsed:
            response = client.download(path("courses", course, "assignments", "big", "archive"))
            with response:
                reader = HashingReader(response)
                extract_stream(reader, dest)
                reader.drain()
        download_seconds, download_peak = elapsed(), sampler.peak
    finally:
        sampler.stop()
        client.close()

    if reader.sha256.hexdigest() != response.headers["X-Content-SHA256"]:
        raise AssertionError("big: downloaded bytes do not match X-Content-SHA256")
    if sha256_file(dest / "data.bin") != content_hash.hexdigest():
        raise AssertionError("big: the extracted file differs from the original")
    shutil.rmtree(source)
    shutil.rmtree(dest)

    for label, seconds, target in (
        ("upload (release)", upload_seconds, 400),
        ("download (fetch)", download_seconds, 1000),
    ):
        rate = size / MB / seconds
        report.add(f"big: {label}", mb_per_s(size, seconds), f"≥ {target} MB/s", rate >= target)
    (server_up,) = server.server_seconds("POST", f"/{course}/assignments/big/releases")
    (server_down,) = server.server_seconds("GET", f"/{course}/assignments/big/archive")
    report.add(
        "big: server-side time (access log)",
        f"upload {server_up:.2f} s, download {server_down:.2f} s",
    )
    report.add("big: server RSS baseline (master + workers)", f"{baseline / MB:8.1f} MB")
    for label, peak in (("upload", upload_peak), ("download", download_peak)):
        growth = (peak - baseline) / MB
        report.add(
            f"big: server RSS growth during {label}",
            f"{growth:8.1f} MB (peak {peak / MB:.1f} MB)",
            "< 64 MB",
            growth < 64,
        )
    return {"upload": upload_seconds, "download": download_seconds}


# -- 2. deadline burst ----------------------------------------------------------------------------
@dataclass
class Burst:
    course: str
    instructor: str
    tars: list[Path]
    copy_fsync: float
    copy_plain: float
    wall: float = 0.0
    p50: float = 0.0
    p99: float = 0.0


def local_copy(files: list[Path], dest: Path, fsync: bool) -> float:
    """Seconds to copy ``files`` into ``dest`` one by one (optionally fsyncing each)."""
    dest.mkdir()
    with stopwatch() as elapsed:
        for file in files:
            target = dest / file.name
            shutil.copyfile(file, target)
            if fsync:
                fd = os.open(target, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
    shutil.rmtree(dest)
    return elapsed()


def bench_burst(server: Server, work: Path, students: int, report: Report, run_id: str) -> Burst:
    """``students`` students each submit a different 1 MiB tar, 16 at a time."""
    course = f"burst-{run_id}"
    instructor = server.token("bench-instructor", course, "Instructor")
    upload_bytes(
        server,
        instructor,
        path("courses", course, "assignments", "burst", "releases"),
        tar_bytes({"burst.ipynb": b"{}"}),
    )
    tokens = [server.token(f"student{i:04d}", course) for i in range(students)]
    tar_dir = work / "burst-tars"
    tar_dir.mkdir()
    tars = []
    for i in range(students):
        tar = tar_dir / f"student{i:04d}.tar"
        tar.write_bytes(tar_bytes({"burst.ipynb": os.urandom(MiB)}))
        tars.append(tar)
    total_bytes = sum(t.stat().st_size for t in tars)

    def submit(i: int) -> float:
        client = server.client(tokens[i])
        start = time.perf_counter()
        with open(tars[i], "rb") as fh:
            client.upload(
                "POST",
                path("courses", course, "assignments", "burst", "submissions"),
                fh,
                tars[i].stat().st_size,
            )
        seconds = time.perf_counter() - start
        client.close()
        return seconds

    with ThreadPoolExecutor(THREADS) as pool, stopwatch() as elapsed:
        latencies = list(pool.map(submit, range(students)))
    wall = elapsed()

    rows = server.api(
        "GET", path("courses", course, "submissions"), instructor, params={"assignment_id": "burst"}
    ).json()["submissions"]
    if len(rows) != students:
        raise AssertionError(f"burst: {len(rows)} submissions stored, expected {students}")

    copy_fsync = local_copy(tars, work / "copy-fsync", fsync=True)
    copy_plain = local_copy(tars, work / "copy-plain", fsync=False)

    p50, p95, p99 = (percentile(latencies, p) for p in (50, 95, 99))
    report.add(
        f"burst: {students} submits of 1 MiB, {THREADS} threads",
        f"p50 {p50:.3f} s, p95 {p95:.3f} s, max {max(latencies):.3f} s",
    )
    report.add("burst: p99 submit latency", f"{p99:8.3f} s", "< 0.25 s", p99 < 0.25)
    inside = server.server_seconds("POST", f"/{course}/assignments/burst/submissions")
    report.add(
        "burst: server-side time per submit (access log)",
        f"p50 {percentile(inside, 50):.3f} s, p99 {percentile(inside, 99):.3f} s, "
        f"max {max(inside):.3f} s",
    )
    report.add(f"burst: all {students} stored (instructor list)", f"{len(rows)} rows")
    report.add("burst: local copy, fsync each file", f"{copy_fsync:8.2f} s")
    report.add("burst: local copy, no fsync", f"{copy_plain:8.2f} s")
    report.add(
        "burst: total wall time",
        f"{wall:8.2f} s ({total_bytes / MB / wall:.1f} MB/s, "
        f"{wall / copy_fsync:.2f}× the fsync copy)",
        "≤ 2× fsync copy",
        wall <= 2 * copy_fsync,
    )
    return Burst(course, instructor, tars, copy_fsync, copy_plain, wall, p50, p99)


# -- 3. collect -----------------------------------------------------------------------------------
def bench_collect(server: Server, work: Path, burst: Burst, report: Report) -> None:
    """Collect every burst submission in one request, unpacking as ``nbgrader collect`` does."""
    rows = server.api(
        "GET",
        path("courses", burst.course, "submissions"),
        burst.instructor,
        params={"assignment_id": "burst"},
    ).json()["submissions"]
    ids = sorted(r["id"] for r in rows)
    dest = work / "collected"
    client = server.client(burst.instructor)
    collected = 0
    with stopwatch() as elapsed:
        response = client.request(
            "POST",
            path("courses", burst.course, "assignments", "burst", "collection"),
            json_body={"submission_ids": ids},
        )
        manifest: dict[int, dict] = {}
        with response, tarfile.open(fileobj=response, mode="r|") as outer:
            for name, info in iter_safe_members(outer, max_members=2 * len(ids) + 2):
                member = outer.extractfile(info)
                if member is None:
                    continue
                if str(name) == "manifest.json":
                    manifest = {m["id"]: m for m in json.loads(member.read())}
                    continue
                submission_id = int(name.stem)
                reader = HashingReader(member)
                extract_stream(reader, dest / str(submission_id))
                reader.drain()
                if reader.sha256.hexdigest() != manifest[submission_id]["sha256"]:
                    raise AssertionError(f"collect: submission {submission_id} corrupted")
                collected += 1
    seconds = elapsed()
    client.close()
    shutil.rmtree(dest)
    if collected != len(ids):
        raise AssertionError(f"collect: unpacked {collected} of {len(ids)} submissions")

    total = sum(r["size"] for r in rows)
    (inside,) = server.server_seconds("POST", f"/{burst.course}/assignments/burst/collection")
    report.add(
        f"collect: {collected} submissions in one request",
        f"{seconds:8.2f} s ({total / MB / seconds:.1f} MB/s; server-side {inside:.2f} s)",
    )
    report.add(
        "collect: compared with the local copy",
        f"{seconds / burst.copy_plain:8.2f}× the no-fsync copy, "
        f"{seconds / burst.copy_fsync:.2f}× the fsync copy",
        "≤ 2× no-fsync copy",
        seconds <= 2 * burst.copy_plain,
    )

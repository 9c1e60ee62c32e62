"""The client-side CPU of one S3 request: boto3 against the service's direct requests.

One process, one request at a time, against moto's S3 server on loopback (or ``--s3-endpoint``):
PutObject and GetObject of one blob through boto3's client, through ``DirectS3`` (the requests
``lti_exchange.storage.s3_direct`` signs and sends itself), and through the storage as the
service uses it (a blob writer's commit, an ``open`` read to its end and checked). The CPU is
this process's (user + system, ``resource.getrusage``), so moto's own work is not in it.

    .venv/bin/python bench/s3_requests.py              # 1 MiB, 100 requests of each kind
    .venv/bin/python bench/s3_requests.py --size-kib 64 --requests 300
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from common import external_s3, moto_s3

from lti_exchange.storage.s3 import S3Storage


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(run: Callable[[], object], count: int) -> tuple[float, float]:
    """Milliseconds of CPU and of wall time per call, after one warm-up call."""
    run()
    cpu, wall = cpu_seconds(), time.perf_counter()
    for _ in range(count):
        run()
    return (cpu_seconds() - cpu) * 1000 / count, (time.perf_counter() - wall) * 1000 / count


@contextmanager
def s3_settings(endpoint: str | None, work: Path) -> Iterator[dict[str, str]]:
    if endpoint:
        with external_s3(endpoint, "s3-requests") as settings:
            yield settings
    else:
        with moto_s3(work) as settings:
            yield settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100, help="requests of each kind")
    parser.add_argument("--size-kib", type=int, default=1024, help="blob size in KiB")
    parser.add_argument("--s3-endpoint", metavar="URL", help="an S3 server instead of moto")
    args = parser.parse_args()
    data = os.urandom(args.size_kib * 1024)

    with (
        tempfile.TemporaryDirectory(prefix="s3-requests-") as tmp,
        s3_settings(args.s3_endpoint, Path(tmp)) as settings,
    ):
        os.environ.update(settings)
        bucket, _, prefix = (
            settings["LTI_EXCHANGE_STORAGE_URL"].removeprefix("s3://").partition("/")
        )
        storage = S3Storage(bucket, prefix, endpoint_url=settings["AWS_ENDPOINT_URL"])
        client, direct = storage.client, storage.direct
        if direct is None:
            raise SystemExit("no direct route to this S3 server (a proxy applies?)")
        digest = hashlib.sha256(data).hexdigest()
        key = storage.object_key("submissions/00/" + "0" * 32)
        keys: list[str] = []

        def store() -> None:
            writer = storage.writer("submissions")
            for start in range(0, len(data), 256 * 1024):
                writer.write(data[start : start + 256 * 1024])
            keys.append(writer.commit().key)

        def read_checked() -> None:
            with storage.open(keys[0]) as blob:
                while blob.read(1024 * 1024):
                    pass

        rows = [
            ("boto3 PutObject", lambda: client.put_object(Bucket=bucket, Key=key, Body=data)),
            ("direct PutObject", lambda: direct.put(key, data, digest, {})),
            (
                "boto3 GetObject (read whole)",
                lambda: client.get_object(Bucket=bucket, Key=key)["Body"].read(),
            ),
            ("direct GetObject (read whole)", lambda: direct.get(key, {})["Body"].read(-1)),
            ("storage: writer + commit (SHA-256 included)", store),
            ("storage: open + read, checked (SHA-256 included)", read_checked),
        ]
        print(
            f"Client CPU per S3 request, {len(data) // 1024} KiB, {args.requests} requests "
            f"of each kind, one at a time ({settings['AWS_ENDPOINT_URL']})"
        )
        print(f"{'request':<52} {'CPU ms':>7} {'wall ms':>8}")
        for label, run in rows:
            cpu, wall = measure(run, args.requests)
            print(f"{label:<52} {cpu:7.2f} {wall:8.2f}")
        print(f"direct requests sent {direct.sent}, handed to boto3 {direct.fell_back}")


if __name__ == "__main__":
    main()

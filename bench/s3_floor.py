"""The S3 server's own floor: boto3 straight to the same ``moto_server`` the transfer bench uses.

``bench/transfers.py`` compares the service on S3 storage with the service on a local
directory. Against moto (a Python S3 server on the same two cores) part of that ratio is moto's
own cost. This script uploads and downloads the same size with boto3 alone, in the service's
way (8 MiB parts one at a time with per-part SHA-256 checksums, then a streamed GET) and
without checksums, and prints MB/s and the moto server's CPU seconds, so the ratio the service
could reach is visible beside the one it reaches.

Run: ``.venv/bin/python bench/s3_floor.py [--mb 512]``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import S3_CREDENTIALS, moto_s3  # noqa: E402

PART = 8 * 1024 * 1024


def moto_cpu_seconds(endpoint: str) -> float:
    """User + system CPU of the ``moto_server`` serving ``endpoint`` (Linux /proc)."""
    port = endpoint.rsplit(":", 1)[1]
    found = subprocess.run(
        ["pgrep", "-f", f"moto_server -H 127.0.0.1 -p {port}"], capture_output=True, text=True
    )
    total = 0.0
    for pid in found.stdout.split():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def upload(client, key: str, data: memoryview, checksums: bool) -> None:
    extra = {"ChecksumAlgorithm": "SHA256"} if checksums else {}
    upload_id = client.create_multipart_upload(Bucket="lti-bench", Key=key, **extra)["UploadId"]
    parts = []
    for number, start in enumerate(range(0, len(data), PART), start=1):
        chunk = bytes(data[start : start + PART])
        args = {}
        if checksums:
            args["ChecksumSHA256"] = base64.b64encode(hashlib.sha256(chunk).digest()).decode()
        answer = client.upload_part(
            Bucket="lti-bench", Key=key, UploadId=upload_id, PartNumber=number, Body=chunk, **args
        )
        part = {"PartNumber": number, "ETag": answer["ETag"]}
        if checksums:
            part["ChecksumSHA256"] = args["ChecksumSHA256"]
        parts.append(part)
    client.complete_multipart_upload(
        Bucket="lti-bench", Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )


def download(client, key: str, expected: int) -> None:
    body = client.get_object(Bucket="lti-bench", Key=key)["Body"]
    size = 0
    while chunk := body.read(1024 * 1024):
        size += len(chunk)
    assert size == expected, (size, expected)


def measure(label: str, mib: int, endpoint: str, action, *args) -> None:
    """Run ``action(*args)`` and print its rate and the moto server's CPU meanwhile."""
    cpu, started = moto_cpu_seconds(endpoint), time.perf_counter()
    action(*args)
    seconds, moto_cpu = time.perf_counter() - started, moto_cpu_seconds(endpoint) - cpu
    rate = mib * 1.048576 / seconds
    print(f"{label:58s} {rate:6.0f} MB/s ({seconds:.2f} s; moto CPU {moto_cpu:.2f} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=512, help="object size in MiB (default 512)")
    args = parser.parse_args()
    import boto3

    data = memoryview(os.urandom(args.mb * 1024 * 1024))
    with tempfile.TemporaryDirectory() as work, moto_s3(Path(work)) as env:
        client = boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"],
        )
        for checksums in (True, False):
            label = "with per-part SHA-256" if checksums else "no checksums"
            key, endpoint = f"floor-{int(checksums)}", env["AWS_ENDPOINT_URL"]
            size = f"{args.mb} MiB, {label}"
            measure(f"boto3 -> moto upload {size}", args.mb, endpoint, upload, client, key, data,
                    checksums)  # fmt: skip
            measure(f"boto3 <- moto download {size}", args.mb, endpoint, download, client, key,
                    len(data))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

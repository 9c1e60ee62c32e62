"""The web pod of deploy/kubernetes, run here as far as one machine allows: its settings
(the rendered ConfigMap and the container's env), the first keys made as docs/operations.md says
and mounted read-only, a root filesystem remounted read-only in a private mount namespace, and
tmpfs where the pod has emptyDirs (/tmp, the data dir, the metrics dir). The migration Job's
command and gunicorn run inside it against the main backend (PostgreSQL in CI; a SQLite file sits
on a bind-mounted folder, as on a persistent volume) and moto's S3 server; a
release goes through, /metrics counts it and the request log line is JSON.

Paths are the manifest's, moved under the test's temporary directory (nothing is mounted over the
host's /etc or /var). Needs root for `unshare -m` and `mount`, as CI and the sessions run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

from lti_exchange.app_objects import build_app_objects
from lti_exchange.config import load_settings
from tests.conftest import free_port
from tests.factories import issue_access_token
from tests.support import TAR, make_tar

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RELEASE_ROUTE = "/api/v1/courses/<path:course_id>/assignments/<path:assignment_id>/releases"

# Inside `unshare -m`: the Secret read-only, emptyDirs as tmpfs, then the root read-only; prove
# the root really refuses writes, then run the command.
POD_SANDBOX = r"""
set -e
mount --make-rprivate /
mount --bind "$POD_KEYS_SOURCE" "$LTI_EXCHANGE_KEYS_DIR"
mount -o remount,bind,ro "$LTI_EXCHANGE_KEYS_DIR"
for dir in $POD_EMPTY_DIRS; do mount -t tmpfs -o size=256m tmpfs "$dir"; done
for dir in $POD_VOLUMES; do mount --bind "$dir" "$dir"; done
mount -o remount,bind,ro /
if touch "$POD_PROBE" 2>/dev/null; then echo "root filesystem is writable" >&2; exit 97; fi
exec "$@"
"""


def _rendered_web_pod() -> tuple[dict[str, str], dict, dict]:
    out = subprocess.run(
        [str(BIN / "kubectl"), "kustomize", str(ROOT / "deploy" / "kubernetes" / "base")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap"]
    (web,) = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "lti-exchange-web"
    ]
    pod = web["spec"]["template"]["spec"]
    return config_map["data"], pod, pod["containers"][0]


def _wait_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the pod did not come up: {log.read_text()[-3000:]}")


def sqlite_folder(database_url: str) -> str:
    """The folder of a SQLite database file (what a PersistentVolume would hold), else ""."""
    if not database_url.startswith("sqlite"):
        return ""
    return str(Path(database_url.split(":///", 1)[1]).parent)


def test_the_web_pod_serves_from_a_read_only_root_with_its_manifest_settings(
    database_url, s3_server, tmp_path
):
    settings, pod, container = _rendered_web_pod()
    moved = tmp_path / "pod"

    def at(path: str) -> Path:
        target = moved / path.lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        return target

    secret_env = {
        "LTI_EXCHANGE_DATABASE_URL": database_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    env = dict(settings)
    for entry in container["env"]:
        env[entry["name"]] = entry["value"] if "value" in entry else secret_env[entry["name"]]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    empty_dirs = [str(at(mounts[name])) for name, v in volumes.items() if "emptyDir" in v]
    (keys_volume,) = [name for name, v in volumes.items() if "secret" in v]
    assert mounts[keys_volume] == env["LTI_EXCHANGE_KEYS_DIR"]
    for name in ("LTI_EXCHANGE_KEYS_DIR", "LTI_EXCHANGE_DATA_DIR", "PROMETHEUS_MULTIPROC_DIR"):
        env[name] = str(at(env[name]))
    bucket = s3_server.new_bucket()
    port = free_port()
    env.update(
        {
            **s3_server.env(bucket),  # the test's S3 endpoint instead of the real one
            "PATH": f"{BIN}:/usr/bin:/bin:/usr/sbin:/sbin",
            "LANG": "C.UTF-8",
            "HOME": str(ROOT),  # the image's HOME (/app) is read-only too
            "TMPDIR": str(at("/tmp")),
            "LTI_EXCHANGE_BIND": f"127.0.0.1:{port}",
            "LTI_EXCHANGE_WORKERS": "2",
        }
    )
    # The first keys, as docs/operations.md makes them for the Secret.
    keys_source = tmp_path / "secret-keys"
    subprocess.run(
        [str(BIN / "lti-exchange"), "keys", "rotate"],
        env={
            **env,
            "LTI_EXCHANGE_KEYS_DIR": str(keys_source),
            "LTI_EXCHANGE_DATA_DIR": str(tmp_path / "scratch"),
        },
        check=True,
        capture_output=True,
        timeout=60,
    )
    secret_files = sorted(p.name for p in keys_source.iterdir())
    sandbox_env = {
        **env,
        "POD_KEYS_SOURCE": str(keys_source),
        "POD_EMPTY_DIRS": " ".join(empty_dirs),
        # A SQLite database lives on a persistent volume (writable, shared by the Job and the
        # pod); a server database needs none.
        "POD_VOLUMES": sqlite_folder(database_url),
        "POD_PROBE": str(tmp_path / "written-on-the-read-only-root"),
    }

    def in_pod(*command: str) -> list[str]:
        return ["unshare", "-m", "sh", "-c", POD_SANDBOX, "pod", *command]

    # The migration Job's command, in the same sandbox.
    migrate = subprocess.run(
        in_pod("lti-exchange", "db", "upgrade"),
        env=sandbox_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr

    log_path = tmp_path / "pod.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            in_pod(*container["command"]),
            env=sandbox_env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, log_path)
        ready = requests.get(f"{url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["database"] == ready.json()["storage"] == "ok"

        outside = build_app_objects(
            load_settings({**env, "LTI_EXCHANGE_KEYS_DIR": str(keys_source)})
        )
        token = issue_access_token(outside, "teacher", "course101", "Instructor")
        outside.engine.dispose()
        answer = requests.post(
            f"{url}/api/v1/courses/course101/assignments/ps1/releases",
            data=make_tar({"ps1/p1.ipynb": b'{"cells": []}'}),
            headers={**TAR, "Authorization": f"Bearer {token}"},
            timeout=60,
        )
        assert answer.status_code == 201, answer.text

        metrics = requests.get(f"{url}/metrics", timeout=10).text
        assert "lti_exchange_releases_total 1.0" in metrics
        assert any(k["Key"].startswith("exchange/") for k in _objects(s3_server, bucket))
    finally:
        process.terminate()
        process.wait(timeout=60)
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    (release_line,) = [line for line in lines if line.get("route") == RELEASE_ROUTE]
    assert release_line["status"] == 201 and release_line["user"] == "teacher"
    # The Secret was only read; the emptyDirs were tmpfs and left nothing on the host.
    assert sorted(p.name for p in keys_source.iterdir()) == secret_files
    assert not (tmp_path / "written-on-the-read-only-root").exists()
    assert all(not any(Path(d).iterdir()) for d in empty_dirs)
    assert os.listdir(moved / env["LTI_EXCHANGE_KEYS_DIR"].removeprefix(str(moved) + "/")) == []


def _objects(s3_server, bucket: str) -> list[dict]:
    return s3_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])

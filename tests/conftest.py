"""Shared fixtures, and which database backends a test runs on.

Backends: ``LTI_EXCHANGE_TEST_BACKENDS`` names them (comma-separated: ``sqlite``, ``postgresql``,
``mariadb``; default ``sqlite``); ``LTI_EXCHANGE_TEST_MAIN_BACKEND`` is the main one (default: the
first listed; ``scripts/test.sh`` uses PostgreSQL).

- A test that uses the database fixtures below runs on the **main backend only**: the HTTP API,
  the LTI rules and everything nbgrader or Jupyter drives behave the same on every database.
- ``@pytest.mark.all_backends`` makes it run on **every** listed backend. Use it where behaviour
  differs by database, and say why next to the mark: concurrency (simultaneous first launches,
  concurrent refreshes, worker claims, the line-item lock, release/grade races), migrations vs
  models, case-sensitive ids (MariaDB's default collation ignores case), column and number ranges,
  timestamp precision, the key-value store's insert-if-absent and atomic pop (nonce replay), query
  counts.
- ``@pytest.mark.one_backend`` is the default said out loud: it wins over a module-wide
  ``all_backends`` for the tests of such a module that do not depend on the database (the closest
  mark decides).

Fixtures:

- ``backend``: each backend the test runs on (see above).
- ``database_url``: a fresh, empty database on that backend (dropped after the session).
- ``live_server``: the real service under gunicorn (2 workers, ``config/gunicorn.conf.py``) on a
  loopback port, migrated with ``lti-exchange db upgrade``; ``.issue_token(...)`` mints tokens with
  the service's own key ring and provisioning code.
- ``course``: a fresh course id per test (tests share one server and never collide).

Processes: ``scripts/test.sh`` runs one pytest-xdist process per CPU; work is handed out per
(backend, file) with the slowest files first (``pytest_xdist_make_scheduler`` below). Every test
gets its own course ids, ports, data directories and databases, so tests in two processes never
meet; a test must not rely on another's having run.

Helpers live in one place each: ``tests/support.py`` (the error shape, tar archives, notebooks),
``tests/factories.py`` (tokens minted by the service's own code), ``tests/end_to_end/helpers.py``
(people with their own HOME running nbgrader, in this process unless
``LTI_EXCHANGE_TEST_NBGRADER=subprocess``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.factories import issue_access_token

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BACKENDS = [b.strip() for b in os.environ.get("LTI_EXCHANGE_TEST_BACKENDS", "sqlite").split(",")]
PG_ADMIN = os.environ.get("LTI_EXCHANGE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
MARIADB_ADMIN = os.environ.get("LTI_EXCHANGE_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306")

TEST_LIMITS = {
    "LTI_EXCHANGE_MAX_UPLOAD_BYTES": str(48 * 1024 * 1024),
    "LTI_EXCHANGE_MAX_UNPACKED_BYTES": str(64 * 1024 * 1024),
    "LTI_EXCHANGE_MAX_ARCHIVE_MEMBERS": "500",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _create_database(backend: str, tmp: Path) -> tuple[str, callable]:
    from sqlalchemy import create_engine, text

    name = f"lte_test_{uuid.uuid4().hex[:10]}"
    if backend == "sqlite":
        return f"sqlite:///{tmp / 'test.sqlite3'}", lambda: None
    if backend == "postgresql":
        admin = create_engine(f"{PG_ADMIN}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))

        def drop() -> None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

        return f"{PG_ADMIN}/{name}", drop
    if backend == "mariadb":
        admin = create_engine(f"{MARIADB_ADMIN}/", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))

        def drop() -> None:
            with admin.connect() as conn:
                conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
            admin.dispose()

        return f"{MARIADB_ADMIN}/{name}?charset=utf8mb4", drop
    raise ValueError(f"unknown backend {backend!r}")


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def database_url(backend, tmp_path_factory):
    url, drop = _create_database(backend, tmp_path_factory.mktemp(f"db-{backend}"))
    yield url
    drop()


@dataclass
class LiveServer:
    url: str
    env: dict[str, str]
    data_dir: Path
    process: subprocess.Popen
    log_path: Path
    _state: object = field(default=None, repr=False)

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "storage"

    def state(self):
        if self._state is None:
            from lti_exchange.app_objects import build_app_objects
            from lti_exchange.config import load_settings

            self._state = build_app_objects(load_settings(self.env))
        return self._state

    def settings_env(self) -> dict[str, str]:
        return {k: v for k, v in self.env.items() if k.startswith("LTI_EXCHANGE_")}

    def issue_token(
        self,
        username: str,
        course: str,
        role: str = "Learner",
        org: str = "test-org",
        ttl: int | None = None,
        **profile,
    ) -> str:
        """Provision ``username`` and mint an access token with the service's own code."""
        return issue_access_token(self.state(), username, course, role, org=org, ttl=ttl, **profile)

    def api(self, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))  # the caller's (often a shared constant) kept
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(
            method, f"{self.url}/api/v1/{path.lstrip('/')}", headers=headers, timeout=60, **kwargs
        )

    def blob_count(self) -> int:
        blobs = self.storage_dir / "blobs"
        return sum(1 for p in blobs.rglob("*") if p.is_file()) if blobs.exists() else 0

    def partial_count(self) -> int:
        tmp = self.storage_dir / "tmp"
        return sum(1 for p in tmp.iterdir()) if tmp.exists() else 0


def start_server(
    database_url: str,
    data_dir: Path,
    extra_env: dict[str, str] | None = None,
    workers: int = 2,
    preexec_fn=None,
) -> LiveServer:
    port = free_port()
    env = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": str(data_dir),
        "LANG": "C.UTF-8",
        "LTI_EXCHANGE_DATA_DIR": str(data_dir),
        "LTI_EXCHANGE_DATABASE_URL": database_url,
        "LTI_EXCHANGE_EXPOSE_QUERY_COUNT": "true",
        "LTI_EXCHANGE_BIND": f"127.0.0.1:{port}",
        "LTI_EXCHANGE_BASE_URL": f"http://127.0.0.1:{port}",
        "LTI_EXCHANGE_WORKERS": str(workers),
        "LTI_EXCHANGE_LOG_LEVEL": "WARNING",
        **TEST_LIMITS,
        **(extra_env or {}),
    }
    subprocess.run(
        [str(BIN / "lti-exchange"), "db", "upgrade"],
        env=env,
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    log_path = data_dir / "gunicorn.log"
    log = open(log_path, "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "-c",
            str(ROOT / "config" / "gunicorn.conf.py"),
            "lti_exchange:create_app()",
        ],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=preexec_fn,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {log_path.read_text()[-3000:]}")
        try:
            if requests.get(url + "/healthz", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(0.2)
    else:
        process.kill()
        raise RuntimeError(f"gunicorn did not start: {log_path.read_text()[-3000:]}")
    return LiveServer(url=url, env=env, data_dir=data_dir, process=process, log_path=log_path)


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
    if server._state is not None:
        server._state.engine.dispose()


@pytest.fixture(scope="session")
def live_server(database_url, tmp_path_factory):
    server = start_server(database_url, tmp_path_factory.mktemp("server"))
    yield server
    stop_server(server)


@pytest.fixture
def course() -> str:
    return f"c{uuid.uuid4().hex[:8]}"


# --- which backends a test runs on (see the module docstring) -----------------------------------
MAIN_BACKEND = os.environ.get("LTI_EXCHANGE_TEST_MAIN_BACKEND", "").strip() or BACKENDS[0]


def pytest_configure(config) -> None:
    if MAIN_BACKEND not in BACKENDS:
        raise pytest.UsageError(
            f"LTI_EXCHANGE_TEST_MAIN_BACKEND={MAIN_BACKEND} is not among "
            f"LTI_EXCHANGE_TEST_BACKENDS={','.join(BACKENDS)}: add it there or choose another."
        )
    config.addinivalue_line(
        "markers",
        "all_backends: behaviour differs by database (concurrency, migrations, collation, ranges, "
        "timestamp precision, key-value store, query counts); run on every test backend",
    )
    config.addinivalue_line(
        "markers",
        "one_backend: database-independent (the default); overrides a module-wide all_backends",
    )


def runs_on_every_backend(item) -> bool:
    """The closest of ``all_backends``/``one_backend`` decides; neither means the main backend."""
    for marker in item.iter_markers():
        if marker.name in ("all_backends", "one_backend"):
            return marker.name == "all_backends"
    return False


def pytest_collection_modifyitems(config, items) -> None:
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("backend") if callspec else None
        if backend and backend != MAIN_BACKEND and not runs_on_every_backend(item):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    keep.sort(key=_run_order)
    items[:] = keep


# --- two test processes (pytest-xdist, ``-n 2`` in scripts/test.sh) ----------------------------
# Work is handed out per (backend, file): a file's module fixtures are set up once, and a process
# switches database backend (tearing down its session server) only a few times. The files that
# take longest go first, so both processes finish together.
SLOWEST_FIRST = (
    "tests/end_to_end/test_nbgrader_cycle.py",
    "tests/functional/test_readme.py",
    "tests/functional/lti/test_grades_cycle.py",
    "tests/security/test_openapi_fuzz.py",
    "tests/browser/test_landing_and_handoff.py",
    "tests/end_to_end/test_replicas.py",
    "tests/end_to_end/test_due_dates_in_gradebook.py",
    "tests/storage/test_orphans.py",
    "tests/security/test_s3_faults.py",
    "tests/functional/test_release_points_from_nbgrader.py",
)


def backend_of(nodeid: str) -> str | None:
    """The database backend in a test id's parameters (``test_x[postgresql-…]``), if any."""
    if not nodeid.endswith("]") or "[" not in nodeid:
        return None
    params = nodeid[nodeid.index("[") + 1 : -1].split("-")
    return next((p for p in params if p in BACKENDS), None)


def work_unit(nodeid: str) -> tuple[str, str]:
    """The (backend, file) a test is handed out with: its backend parameter, else the main one."""
    return backend_of(nodeid) or MAIN_BACKEND, nodeid.split("::", 1)[0]


def _run_order(item) -> tuple[int, int]:
    """Other backends first (few tests each), then the main one; in each, slowest files first."""
    backend, path = work_unit(item.nodeid)
    group = BACKENDS.index(backend) if backend != MAIN_BACKEND else len(BACKENDS)
    rank = SLOWEST_FIRST.index(path) if path in SLOWEST_FIRST else len(SLOWEST_FIRST)
    return group, rank


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class BackendFileScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "::".join(work_unit(nodeid))

    config.option.loadscopereorder = False  # keep the order above
    return BackendFileScheduling(config, log)


# --- S3: a real S3 API server on loopback (moto's server mode) -----------------------------------
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class S3Server:
    """moto's S3 server on a loopback port; ``stop()``/``start()`` simulate an outage (the
    buckets survive: moto keeps them in this process)."""

    port: int
    _server: object = field(default=None, repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, bucket: str, prefix: str = "exchange") -> dict[str, str]:
        """The settings a service needs to store its blobs in ``bucket``."""
        return {
            **S3_ENV,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "LTI_EXCHANGE_STORAGE_URL": f"s3://{bucket}/{prefix}",
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name=S3_ENV["AWS_DEFAULT_REGION"],
        )

    def new_bucket(self) -> str:
        name = f"lte-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()  # type: ignore[attr-defined]

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()  # type: ignore[attr-defined]
            self._server = None


@pytest.fixture(scope="session")
def s3_server():
    server = S3Server(port=free_port())
    server.start()
    yield server
    server.stop()

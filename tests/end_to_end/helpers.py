"""Roles with their own HOME and Jupyter dirs, running the real ``nbgrader`` command line.

``Role.nbgrader`` runs nbgrader in this process by default (the way nbgrader's own
``nbgrader.tests.run_nbgrader`` does: the role's environment and working directory for the call,
then ``NbGraderApp.reset()``), which saves an interpreter start and nbgrader's imports per call.
``Role(..., in_process=False)`` runs the real ``nbgrader`` and ``lti-exchange`` executables
instead; ``Role.run`` runs any executable (``test_learner_cannot_release`` runs the real
``lti-exchange login`` and ``nbgrader release_assignment`` so, the smoke test of both);
``LTI_EXCHANGE_TEST_NBGRADER=subprocess`` makes every role do so, to rule out state that leaks
between in-process runs.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

BIN = Path(sys.executable).parent

EXCHANGE_CONFIG = """
c.ExchangeFactory.exchange = "nbgrader_plugin.Exchange"
c.ExchangeFactory.fetch_assignment = "nbgrader_plugin.ExchangeFetchAssignment"
c.ExchangeFactory.fetch_feedback = "nbgrader_plugin.ExchangeFetchFeedback"
c.ExchangeFactory.release_assignment = "nbgrader_plugin.ExchangeReleaseAssignment"
c.ExchangeFactory.release_feedback = "nbgrader_plugin.ExchangeReleaseFeedback"
c.ExchangeFactory.list = "nbgrader_plugin.ExchangeList"
c.ExchangeFactory.submit = "nbgrader_plugin.ExchangeSubmit"
c.ExchangeFactory.collect = "nbgrader_plugin.ExchangeCollect"
c.Exchange.service_url = "{url}"
"""

LIST_SNIPPET = """
import json, sys
from nbgrader.server_extensions.assignment_list.handlers import AssignmentList
lister = AssignmentList()
lister.root_dir = "."
print(json.dumps(lister.list_assignments(course_id=sys.argv[1])))
"""


@dataclass
class Result:
    returncode: int
    output: str

    def lines(self, needle: str) -> list[str]:
        return [line for line in self.output.splitlines() if needle in line]


_IN_PROCESS = threading.Lock()  # os.environ, the working directory and nbgrader's app are global


@contextlib.contextmanager
def _role_process_state(env: dict[str, str], cwd: Path) -> Iterator[io.StringIO]:
    """Run with ``env`` as the environment and ``cwd`` as the directory; capture the output."""
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    output = io.StringIO()
    with _IN_PROCESS:
        os.environ.clear()
        os.environ.update(env)
        os.chdir(cwd)
        try:
            with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
                yield output
        finally:
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)


def run_nbgrader_in_process(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """``nbgrader *args`` as the command line would run it; the exit code and all it printed."""
    from jupyter_core.application import NoStart
    from nbgrader.apps import NbGraderApp

    with _role_process_state(env, cwd) as output:
        app = NbGraderApp.instance()
        try:
            app.initialize(args)
            app.start()
            code = 0
        except NoStart:  # how jupyter apps say "done" after a subcommand ran
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        finally:
            app.reset()
        return code, output.getvalue()


class Role:
    """One person: a HOME of their own, a working directory, and nothing shared with others."""

    def __init__(self, name: str, base: Path, service_url: str, *, in_process: bool = True) -> None:
        self.name = name
        forced = os.environ.get("LTI_EXCHANGE_TEST_NBGRADER") == "subprocess"
        self.in_process = in_process and not forced
        self.home = base / name
        self.work = self.home / "work"
        self.work.mkdir(parents=True)
        jupyter = self.home / ".jupyter"
        jupyter.mkdir()
        (jupyter / "nbgrader_config.py").write_text(
            "c = get_config()\n" + EXCHANGE_CONFIG.format(url=service_url)
        )
        self.env = {
            "PATH": f"{BIN}:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(self.home),
            "JUPYTER_CONFIG_DIR": str(jupyter),
            "JUPYTER_DATA_DIR": str(self.home / ".local/share/jupyter"),
            "JUPYTER_RUNTIME_DIR": str(self.home / ".local/share/jupyter/runtime"),
        }

    def run(self, *args: str, cwd: Path | None = None, expect: int = 0) -> Result:
        done = subprocess.run(
            list(args),
            cwd=cwd or self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        result = Result(done.returncode, done.stdout + done.stderr)
        assert done.returncode == expect, (
            f"{self.name}: {' '.join(args)} exited {done.returncode}, expected {expect}:\n"
            f"{result.output[-4000:]}"
        )
        return result

    def nbgrader(self, *args: str, cwd: Path | None = None, expect: int = 0) -> Result:
        if not self.in_process:
            return self.run(str(BIN / "nbgrader"), *args, cwd=cwd, expect=expect)
        code, output = run_nbgrader_in_process(list(args), self.env, cwd or self.work)
        result = Result(code, output)
        assert code == expect, (
            f"{self.name}: nbgrader {' '.join(args)} (in-process) exited {code}, "
            f"expected {expect}:\n{output[-4000:]}"
        )
        return result

    def lti_exchange(self, *args: str, expect: int = 0) -> Result:
        """The ``lti-exchange`` command as this user (through click's runner when in-process)."""
        if not self.in_process:
            return self.run(str(BIN / "lti-exchange"), *args, expect=expect)
        from click.testing import CliRunner

        from lti_exchange.cli import main

        with _role_process_state(self.env, self.work):
            done = CliRunner().invoke(main, list(args))
        result = Result(done.exit_code, done.output)
        assert done.exit_code == expect, (
            f"{self.name}: lti-exchange {' '.join(args)} (in-process) exited {done.exit_code}, "
            f"expected {expect}:\n{done.output[-4000:]}\n{done.exception!r}"
        )
        return result

    def login(self, url: str, token: str) -> Result:
        return self.lti_exchange("login", "--url", url, "--token", token)

    def login_pair(self, url: str, launch: dict) -> Result:
        """Store the tokens of an LTI launch answer, as the hand-off would."""
        return self.lti_exchange(
            "login",
            "--url",
            url,
            "--token",
            launch["access_token"],
            "--refresh-token",
            launch["refresh_token"],
        )

    def quickstart(self, course: str) -> Path:
        """``nbgrader quickstart course`` in this user's work folder, its config naming that
        folder as the course root; returns the folder."""
        self.nbgrader("quickstart", course)
        root = self.work / course
        with open(root / "nbgrader_config.py", "a") as fh:
            fh.write(f'\nc.CourseDirectory.root = "{root}"\n')
        return root

    def ui_listing(self, course_id: str, cwd: Path | None = None) -> dict:
        """What the Assignments UI gets: nbgrader's own handler logic, run as this user."""
        if self.in_process:
            from nbgrader.server_extensions.assignment_list.handlers import AssignmentList

            with _role_process_state(self.env, cwd or self.work):
                lister = AssignmentList()
                lister.root_dir = "."
                return lister.list_assignments(course_id=course_id)
        out = self.run(str(BIN / "python"), "-c", LIST_SNIPPET, course_id, cwd=cwd)
        return json.loads(out.output.strip().splitlines()[-1])


class JupyterServer:
    """A real jupyter_server for one role; requests go through nbgrader's assignment_list."""

    def __init__(self, role: Role, port: int) -> None:
        self.role = role
        self.url = f"http://127.0.0.1:{port}"
        self.token = "e2e-" + role.name
        self.log = open(role.home / "jupyter.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                str(BIN / "jupyter"),
                "server",
                "--no-browser",
                "--ip=127.0.0.1",
                f"--port={port}",
                f"--IdentityProvider.token={self.token}",
                f"--ServerApp.root_dir={role.work}",
                "--allow-root",
            ],
            cwd=role.work,
            env=role.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            assert self.process.poll() is None, (role.home / "jupyter.log").read_text()[-3000:]
            try:
                if self.get("/api/status").status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError("jupyter server did not start")

    def get(self, path: str, **params) -> requests.Response:
        return requests.get(
            self.url + path,
            params=params,
            timeout=120,
            headers={"Authorization": f"token {self.token}"},
        )

    def post(self, path: str, body: dict) -> requests.Response:
        return requests.post(
            self.url + path,
            json=body,
            timeout=120,
            headers={"Authorization": f"token {self.token}"},
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def submitted_lines(result: Result, course: str, student: str, assignment: str) -> list[str]:
    pattern = re.compile(rf"\b{re.escape(course)} {re.escape(student)} {re.escape(assignment)} ")
    return [line for line in result.output.splitlines() if pattern.search(line)]


def no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output, result.output[-3000:]


def instructor_course(server, base: Path, course: str, url: str | None = None) -> tuple[Role, Path]:
    """An instructor ``teacher`` logged in to ``course`` (through ``url``, the server's by
    default) with a bare nbgrader course folder: its ``nbgrader_config.py`` names the course
    and the root. Returns the role and the course root."""
    url = url or server.url
    teacher = Role("teacher", base, url)
    teacher.login(url, server.issue_token("teacher", course, "Instructor"))
    root = teacher.work / course
    root.mkdir()
    (root / "nbgrader_config.py").write_text(
        f'c = get_config()\nc.CourseDirectory.course_id = "{course}"\n'
        f'c.CourseDirectory.root = "{root}"\n'
    )
    return teacher, root


def student_with_release(
    server, base: Path, course: str, *, name: str = "ann", fetch: bool = True
) -> Role:
    """``course`` with ``ps1`` released (one notebook, ``ps1.ipynb``) and the student ``name``
    logged in, having fetched it into ``work/ps1`` unless ``fetch`` is false."""
    from tests.support import NOTEBOOK, release_as_teacher

    release_as_teacher(server, course, "ps1", {"ps1.ipynb": NOTEBOOK})
    student = Role(name, base, server.url)
    student.login(server.url, server.issue_token(name, course))
    if fetch:
        student.nbgrader("fetch_assignment", "ps1", "--course", course)
    return student

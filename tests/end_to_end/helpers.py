"""Roles with their own HOME and Jupyter dirs, running the real ``nbgrader`` command line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
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


class Role:
    """One person: a HOME of their own, a working directory, and nothing shared with others."""

    def __init__(self, name: str, base: Path, service_url: str) -> None:
        self.name = name
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
        return self.run(str(BIN / "nbgrader"), *args, cwd=cwd, expect=expect)

    def login(self, url: str, token: str) -> Result:
        return self.run(str(BIN / "lti-exchange"), "login", "--url", url, "--token", token)

    def login_pair(self, url: str, launch: dict) -> Result:
        """Store the tokens of an LTI launch answer, as the hand-off would."""
        return self.run(
            str(BIN / "lti-exchange"),
            "login",
            "--url",
            url,
            "--token",
            launch["access_token"],
            "--refresh-token",
            launch["refresh_token"],
        )

    def ui_listing(self, course_id: str, cwd: Path | None = None) -> dict:
        """What the Assignments UI gets: nbgrader's own handler logic, run as this user."""
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

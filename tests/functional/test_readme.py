"""The README's "Trying it by hand" block, typed as written, reaches fetch_feedback.

The block is read from README.md itself and run by bash (stopping at the first failing command)
with a fresh HOME, a fresh TMPDIR, no lti-exchange variables and only /usr/bin:/bin on PATH, in a
fresh working directory laid out like a clone (its entries are links into this checkout, so
``scripts/serve.sh`` finds the installed .venv and installs nothing). The one change made to the
text: port 8000 becomes a free port. The block starts the service itself, in the background;
the test stops that process group at the end.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.one_backend

CLONE_ENTRIES = ("scripts", "config", ".venv")  # no sources: serve.sh cannot reinstall


def by_hand_block() -> str:
    """The first bash block under the "Trying it by hand" heading of README.md."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Trying it by hand", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, "README.md has no bash block under 'Trying it by hand'"
    return match.group(1)


def test_the_by_hand_block_runs_as_written_to_fetch_feedback(tmp_path: Path) -> None:
    block = by_hand_block()
    assert block.count("8000") >= 3, "the block names the service's port"
    port = free_port()
    script = block.replace("8000", str(port))

    clone, home, tmp = tmp_path / "clone", tmp_path / "home", tmp_path / "tmp"
    for directory in (clone, home, tmp):
        directory.mkdir()
    for name in CLONE_ENTRIES:
        (clone / name).symlink_to(ROOT / name)
    env = {"HOME": str(home), "TMPDIR": str(tmp), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}

    log = tmp_path / "output.txt"
    with open(log, "w") as out:  # a file, not a pipe: the service left running keeps it open
        run = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=clone,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the block leaves the service running: stop the group
        )
        try:
            run.wait(timeout=280)
        finally:
            os.killpg(run.pid, signal.SIGTERM)
            run.wait(timeout=30)
    output = log.read_text(errors="replace")

    assert run.returncode == 0, output
    feedback = list(tmp.glob("*/ps1/feedback/*/problem1.html"))
    assert len(feedback) == 1, output
    assert "problem1.html" in output  # the block's own last command lists it
    # It ran against the block's own data directory, named by absolute path.
    data_dir = clone / "lti-exchange-data"
    assert (data_dir / "keys").is_dir(), output
    assert f"lti-exchange: data directory {data_dir}" in output, output
    assert not (home / "course101" / "lti-exchange-data").exists()
    assert "Traceback" not in output, output

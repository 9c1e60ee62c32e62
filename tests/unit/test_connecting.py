"""Connecting by hand: URL checks of ``lti-exchange login``, the token variable, which URL the
plugin uses, the release size check, enabling the hand-off extension and ``serve``'s port check."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from nbgrader.coursedir import CourseDirectory
from nbgrader.exchange.abc.exchange import ExchangeError
from traitlets.config import Config

from lti_exchange.cli import main
from nbgrader_plugin.connect import LoginProblem, check_login, service_base_url
from nbgrader_plugin.exchange import Exchange
from nbgrader_plugin.server_extension.enable import CONFIG, enable
from nbgrader_plugin.tokens import TokenEntry, TokenStore
from tests.conftest import ROOT, free_port


@pytest.mark.parametrize(
    "url, words",
    [
        (
            "127.0.0.1:8000",
            "not an http:// or https:// URL: give the whole address, e.g. http://127.0.0.1:8000",
        ),
        ("localhost:8000", "e.g. http://localhost:8000"),
        ("http://127.0.0.1:8000/api/v1", "without /api/v1: http://127.0.0.1:8000"),
        ("http://127.0.0.1:8000/api/v1/me", "without /api/v1: http://127.0.0.1:8000"),
        ("http://127.0.0.1:99999", "invalid port"),
        ("http://u:p@host", "credentials"),
    ],
)
def test_login_says_what_is_wrong_with_the_url(url, words):
    with pytest.raises(LoginProblem) as refused:
        service_base_url(url)
    assert words in str(refused.value)


def test_a_good_url_is_kept_without_its_trailing_slash():
    assert service_base_url(" http://127.0.0.1:8000/ ") == "http://127.0.0.1:8000"
    assert service_base_url("https://ex.example.edu/exchange/") == "https://ex.example.edu/exchange"


def test_nothing_listening_asks_whether_the_service_runs_there():
    base = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(LoginProblem) as refused:
        check_login(base, "x.y.z", timeout=5)
    assert f"Cannot connect to {base}: is the service running at that URL?" in str(refused.value)
    assert "/healthz" in str(refused.value)


def test_https_to_a_plain_http_port_says_to_use_http(live_server):
    port = live_server.url.rsplit(":", 1)[1]
    with pytest.raises(LoginProblem) as refused:
        check_login(f"https://127.0.0.1:{port}", "x.y.z", timeout=3)
    assert f"use http://127.0.0.1:{port}" in str(refused.value)


def test_a_garbage_token_variable_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("LTI_EXCHANGE_TOKEN", "garbage")
    with pytest.raises(ValueError) as refused:
        TokenStore(tmp_path / "tokens.json").load()
    assert "LTI_EXCHANGE_TOKEN holds no usable access token" in str(refused.value)


def _token(course: str = "c1") -> str:
    import base64

    payload = base64.urlsafe_b64encode(json.dumps({"course_id": course}).encode()).decode()
    return f"e30.{payload.rstrip('=')}.sig"


def _exchange(tmp_path: Path, **exchange: object) -> Exchange:
    config = Config()
    config.Exchange.token_file = str(tmp_path / "tokens.json")
    for name, value in exchange.items():
        setattr(config.Exchange, name, value)
    coursedir = CourseDirectory(config=config, root=str(tmp_path))
    return Exchange(config=config, coursedir=coursedir)


def test_the_stored_url_wins_over_a_different_configured_one(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("LTI_EXCHANGE_TOKEN", raising=False)
    monkeypatch.delenv("LTI_EXCHANGE_URL", raising=False)
    exchange = _exchange(tmp_path, service_url="https://wrong.example.edu")
    entry = TokenEntry.from_access_token(_token(), "http://127.0.0.1:8000")
    with caplog.at_level("WARNING"):
        assert exchange.exchange_url(entry) == "http://127.0.0.1:8000"
    assert (
        "https://wrong.example.edu" in caplog.text and "using http://127.0.0.1:8000" in caplog.text
    )
    unstored = TokenEntry.from_access_token(_token(), None)
    assert exchange.exchange_url(unstored) == "https://wrong.example.edu"


def test_no_token_at_all_says_how_to_connect(tmp_path, monkeypatch):
    monkeypatch.delenv("LTI_EXCHANGE_TOKEN", raising=False)
    with pytest.raises(ExchangeError) as refused:
        _exchange(tmp_path).course_ids()
    assert "not connected to an exchange" in str(refused.value)
    assert "lti-exchange login --url URL --token TOKEN" in str(refused.value)


def test_a_release_that_would_drop_a_large_file_is_refused(tmp_path):
    source = tmp_path / "release" / "ps1"
    source.mkdir(parents=True)
    (source / "big.bin").write_bytes(b"x" * 2500)
    (source / "small.txt").write_bytes(b"x" * 100)
    exchange = _exchange(tmp_path)
    exchange.coursedir.max_file_size = 2  # kB
    exchange.coursedir.max_dir_size = 1000
    message = exchange.size_limits(source, refuse_dropped_files=True)
    assert "big.bin (3 kB)" in message
    assert (
        "c.CourseDirectory.max_file_size = 3 and c.CourseDirectory.max_dir_size = 1000" in message
    )
    # Raising both as told is enough; submissions keep nbgrader's behaviour (dropped, warned).
    assert exchange.size_limits(source, refuse_dropped_files=False) == ""
    exchange.coursedir.max_file_size = 3
    assert exchange.size_limits(source, refuse_dropped_files=True) == ""
    exchange.coursedir.max_dir_size = 2
    message = exchange.size_limits(source, refuse_dropped_files=True)
    assert "3 kB in all, over CourseDirectory.max_dir_size (2 kB)" in message
    assert "c.CourseDirectory.max_dir_size = 3" in message


def test_enable_writes_the_file_a_wheel_install_ships(tmp_path):
    path, changed = enable(tmp_path)
    shipped = ROOT / "jupyter-config" / "jupyter_server_config.d" / "nbgrader_plugin.json"
    assert changed and json.loads(path.read_text()) == json.loads(shipped.read_text()) == CONFIG
    assert enable(tmp_path) == (path, False)


def test_serve_on_a_port_in_use_says_so_once_before_serving():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", "--port", str(port)])
    assert result.exit_code == 1
    assert result.output.count(f"port {port} is in use") == 1
    assert "serving on" not in result.output


def test_token_issue_warns_when_it_changes_a_role(tmp_path, monkeypatch):
    monkeypatch.setenv("LTI_EXCHANGE_DATA_DIR", str(tmp_path / "data"))
    for name in ("LTI_EXCHANGE_DATABASE_URL", "LTI_EXCHANGE_KEYS_DIR", "LTI_EXCHANGE_STORAGE_URL"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()  # click 8.2+: result.stdout and result.stderr apart
    issue = ["token", "issue", "--org", "demo", "--username", "teacher", "--course", "c101"]
    first = runner.invoke(main, [*issue, "--role", "Instructor"])
    assert first.exit_code == 0, first.output
    assert f"creating a new data directory {tmp_path / 'data'}" in first.stderr
    assert "Warning" not in first.stderr
    second = runner.invoke(main, [*issue, "--role", "Learner"])
    assert second.exit_code == 0
    assert f"lti-exchange: data directory {tmp_path / 'data'}" in second.stderr
    assert "teacher was Instructor in c101 and is now Learner" in second.stderr
    assert second.stdout.count(".") == 2  # stdout is the token alone

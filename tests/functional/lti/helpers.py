"""Assertions and small helpers shared by the LTI tests."""

from __future__ import annotations

import json
import re

import requests

from tests.support import make_tar

IDENTIFIER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]*")
LAUNCH_KEYS = {
    "access_token",
    "refresh_token",
    "token_type",
    "expires_in",
    "username",
    "course_id",
    "role",
    "org_id",
}


def describe(answer: requests.Response) -> str:
    """The request and the answer, for assertion messages."""
    request = answer.request
    return (
        f"{request.method} {request.url} -> {answer.status_code} "
        f"{answer.headers.get('Content-Type')}\n{answer.text[:3000]}"
    )


def is_identifier(value: object) -> bool:
    return (
        isinstance(value, str) and 0 < len(value) <= 100 and IDENTIFIER.fullmatch(value) is not None
    )


def launched(answer: requests.Response, role: str | None = None) -> dict:
    """A successful JSON launch answer: every key, sane values; return it."""
    assert answer.status_code == 200, describe(answer)
    assert answer.headers["Content-Type"].startswith("application/json"), describe(answer)
    body = answer.json()
    assert set(body) >= LAUNCH_KEYS, body
    assert body["token_type"] == "Bearer", body
    assert isinstance(body["expires_in"], int) and body["expires_in"] > 0, body
    assert isinstance(body["access_token"], str) and body["access_token"].count(".") == 2, body
    assert isinstance(body["refresh_token"], str) and len(body["refresh_token"]) >= 20, body
    assert body["refresh_token"] != body["access_token"], body
    assert is_identifier(body["username"]), body
    assert is_identifier(body["course_id"]), body
    assert isinstance(body["org_id"], int), body
    assert body["role"] in ("Instructor", "TeachingAssistant", "Learner"), body
    if role is not None:
        assert body["role"] == role, body
    return body


def assert_json_error(
    answer: requests.Response,
    statuses: tuple[int, ...] = (400, 401, 403),
    words: tuple[str, ...] = (),
) -> dict:
    """A 4xx in the JSON error shape whose message names one of ``words`` (case-insensitive)."""
    assert answer.status_code in statuses, describe(answer)
    assert answer.headers.get("Content-Type", "").startswith("application/json"), describe(answer)
    body = answer.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert {"status", "code", "message"} <= set(error), error
    assert error["status"] == answer.status_code, error
    assert isinstance(error["code"], str) and error["code"], error
    message = error["message"]
    assert isinstance(message, str) and len(message) >= 15, error
    if words:
        assert any(word.lower() in message.lower() for word in words), (words, message)
    return error


def assert_html_error(
    answer: requests.Response,
    statuses: tuple[int, ...] = (400, 401, 403),
    words: tuple[str, ...] = (),
) -> str:
    """A 4xx HTML error page that names one of ``words``."""
    assert answer.status_code in statuses, describe(answer)
    assert answer.headers.get("Content-Type", "").startswith("text/html"), describe(answer)
    page = answer.text
    assert "<html" in page.lower(), page[:500]
    assert "Traceback" not in page, page
    if words:
        assert any(word.lower() in page.lower() for word in words), (words, page[:2000])
    return page


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def notebook(text: str = "print('hello')") -> bytes:
    return json.dumps(
        {
            "cells": [
                {
                    "cell_type": "code",
                    "execution_count": None,
                    "id": "cell-1",
                    "metadata": {},
                    "outputs": [],
                    "source": text,
                }
            ],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    ).encode()


def release(live_server, course_id: str, token: str, assignment_id: str = "ps1") -> dict:
    """Release an assignment through the API with an instructor's launched token."""
    answer = live_server.api(
        "POST",
        f"courses/{course_id}/assignments/{assignment_id}/releases",
        token,
        data=make_tar({"problem1.ipynb": notebook()}),
        headers={"Content-Type": "application/x-tar"},
    )
    assert answer.status_code == 201, describe(answer)
    return answer.json()


def me(live_server, token: str) -> requests.Response:
    return live_server.api("GET", "me", token)

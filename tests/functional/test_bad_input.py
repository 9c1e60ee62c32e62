"""Hostile and malformed input against the live service: identifiers, archives, bodies, routes.

Every refused upload must leave nothing behind: no blob, no partial file, no row.
"""

from __future__ import annotations

import gzip
import http.client
import io
import json
import socket
import tarfile
import time
from urllib.parse import urlsplit

import pytest

from tests.support import NOTEBOOK, TAR, MiB, assert_error, make_tar

MAX_UPLOAD = 48 * MiB


# --- helpers ---------------------------------------------------------------------------------


def tar_with(*special: tarfile.TarInfo) -> bytes:
    """A tar holding a normal notebook followed by the ``special`` members (no data)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        ok = tarfile.TarInfo("p1.ipynb")
        ok.size = len(NOTEBOOK)
        archive.addfile(ok, io.BytesIO(NOTEBOOK))
        for info in special:
            if info.isreg():
                archive.addfile(info, io.BytesIO(b"x" * info.size))
            else:
                archive.addfile(info)
    return buffer.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, **attrs) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = attrs.pop("size", 1 if kind == tarfile.REGTYPE else 0)
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def many_members(count: int) -> bytes:
    return make_tar({f"f{i:04d}.txt": b"x" for i in range(count - 1)} | {"p1.ipynb": NOTEBOOK})


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


_GZIPPED: dict[int, bytes] = {}


def gzipped_zeros(size: int) -> bytes:
    """A gzip tar holding a notebook and ``size`` bytes of zeros: tiny on the wire."""
    if size not in _GZIPPED:
        raw = io.BytesIO()
        with (
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9) as packed,
            tarfile.open(fileobj=packed, mode="w|") as archive,
        ):
            notebook = tarfile.TarInfo("p1.ipynb")
            notebook.size = len(NOTEBOOK)
            archive.addfile(notebook, io.BytesIO(NOTEBOOK))
            info = tarfile.TarInfo("zeros.bin")
            info.size = size
            archive.addfile(info, io.BufferedReader(_Zeros(info.size)))
        _GZIPPED[size] = raw.getvalue()
    assert len(_GZIPPED[size]) < MiB
    return _GZIPPED[size]


# name -> (body, extra headers, status, code, words in the message)
# Member checks (links, devices, '..') are tested one by one in tests/unit/test_archives.py;
# a few here show that a refused member leaves nothing behind.
BAD_UPLOADS = {
    "absolute": (tar_with(member("/etc/evil.txt")), {}, 400, "invalid_archive", ["absolute"]),
    "dotdot": (tar_with(member("../escape.txt")), {}, 400, "invalid_archive", [".."]),
    "symlink": (
        tar_with(member("link", tarfile.SYMTYPE, linkname="/etc/passwd")),
        {},
        400,
        "invalid_archive",
        ["link"],
    ),
    "501-members": (many_members(501), {}, 413, "archive_too_many_members", ["500"]),
    "gzip-bomb": (
        None,
        {"Content-Type": "application/gzip"},
        413,
        "archive_too_large",
        [str(64 * MiB)],
    ),
    "not-a-tar": (
        b"This is a plain text file, not a tar archive.\n" * 50,
        {},
        400,
        "invalid_archive",
        ["tar"],
    ),
    "truncated-header": (make_tar({"p1.ipynb": NOTEBOOK})[:300], {}, 400, "invalid_archive", []),
    "empty": (b"", {}, 400, None, ["empty"]),
    "json-content-type": (
        make_tar({"p1.ipynb": NOTEBOOK}),
        {"Content-Type": "application/json"},
        415,
        "unsupported_media_type",
        ["application/x-tar", "application/json"],
    ),
    "no-content-type": (
        make_tar({"p1.ipynb": NOTEBOOK}),
        {"Content-Type": ""},
        415,
        "unsupported_media_type",
        ["application/x-tar"],
    ),
    "49-MiB": (b"\0" * (49 * MiB), {}, 413, "payload_too_large", [str(MAX_UPLOAD)]),
}


class Course:
    """A course with ps1 released; uploads are checked to leave nothing behind."""

    def __init__(self, live_server, course: str) -> None:
        self.server = live_server
        self.code = course
        self.teacher = live_server.issue_token("teacher", course, "Instructor")
        self.student = live_server.issue_token("alice", course, "Learner")
        answer = self.post_archive("release", make_tar({"p1.ipynb": NOTEBOOK}), name="ps1")
        assert answer.status_code == 201, answer.text

    def post_archive(self, target: str, body, name: str | None = None, headers=None):
        headers = {**TAR, **(headers or {})}
        if headers.get("Content-Type") == "":
            del headers["Content-Type"]
        path, token = self.upload_target(target, name)
        return self.server.api("POST", path, token, data=body, headers=headers)

    def upload_target(self, target: str, name: str | None = None) -> tuple[str, str]:
        """The API path and the token of an upload: a release, a submission or feedback."""
        if target == "release":
            return f"courses/{self.code}/assignments/{name or 'ps2'}/releases", self.teacher
        if target == "feedback":
            return f"courses/{self.code}/assignments/{name or 'ps1'}/feedback", self.teacher
        return f"courses/{self.code}/assignments/{name or 'ps1'}/submissions", self.student

    def assignments(self) -> list[tuple[str, bool, int | None]]:
        answer = self.server.api("GET", f"courses/{self.code}/assignments", self.teacher)
        assert answer.status_code == 200, answer.text
        return [
            (a["assignment_id"], a["released"], a["release"] and a["release"]["version"])
            for a in answer.json()["assignments"]
        ]

    def submissions(self) -> list[dict]:
        answer = self.server.api(
            "GET", f"courses/{self.code}/submissions?include_removed=true", self.teacher
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["submissions"]

    def snapshot(self) -> tuple:
        return (
            self.server.blob_count(),
            self.server.partial_count(),
            self.assignments(),
            [s["id"] for s in self.submissions()],
        )


@pytest.fixture
def setup(live_server, course) -> Course:
    return Course(live_server, course)


def wait_for(condition, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def server_address(live_server) -> tuple[str, int]:
    parts = urlsplit(live_server.url)
    return parts.hostname, parts.port


def request_head(live_server, method: str, path: str, headers: dict[str, str]) -> bytes:
    host, port = server_address(live_server)
    lines = [f"{method} /api/v1/{path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# --- identifiers -----------------------------------------------------------------------------

# Percent-encoded, as a client would send them: the rule itself is tested case by case in
# tests/unit/test_rules.py; these are the ones where URL decoding and routing could interfere.
BAD_IDS = {
    "dotdot-slash": "..%2Fx",
    "slash": "a%2Fb",
    "dotdot": "%2E%2E",
    "trailing-newline": "ps1%0A",
    "nul": "a%00b",
    "unicode": "%C3%A9t%C3%A9",
    "101-chars": "a" * 101,
}


@pytest.mark.parametrize("bad", BAD_IDS.values(), ids=BAD_IDS.keys())
@pytest.mark.parametrize("operation", ["release", "submit", "fetch"])
def test_invalid_assignment_id(live_server, setup, operation, bad):
    before = setup.snapshot()
    if operation == "fetch":
        answer = live_server.api(
            "GET", f"courses/{setup.code}/assignments/{bad}/archive", setup.student
        )
    else:
        answer = setup.post_archive(operation, make_tar({"p1.ipynb": NOTEBOOK}), name=bad)
    error = assert_error(answer, 400, "invalid_identifier", "letters, digits")
    assert setup.snapshot() == before, error


@pytest.mark.parametrize("operation", ["release", "submit", "fetch"])
def test_empty_assignment_id(live_server, setup, operation):
    before = setup.snapshot()
    if operation == "fetch":
        answer = live_server.api("GET", f"courses/{setup.code}/assignments//archive", setup.student)
    else:
        path = "releases" if operation == "release" else "submissions"
        token = setup.teacher if operation == "release" else setup.student
        answer = live_server.api(
            "POST",
            f"courses/{setup.code}/assignments//{path}",
            token,
            data=make_tar({"p1.ipynb": NOTEBOOK}),
            headers=TAR,
        )
    assert_error(answer, 400, "invalid_identifier", "empty")
    assert setup.snapshot() == before


@pytest.mark.all_backends  # column lengths are enforced differently by each database
def test_longest_valid_assignment_id_is_accepted(live_server, setup):
    name = "a" * 100
    answer = setup.post_archive("release", make_tar({"p1.ipynb": NOTEBOOK}), name=name)
    assert answer.status_code == 201, answer.text
    assert (name, True, 1) in setup.assignments()


@pytest.mark.parametrize(
    "bad", ["bad id", "../bob", "bob/x", "alice\n", "al\x00ice", "", "x" * 101, ".alice"]
)
def test_invalid_student_id_query(live_server, setup, bad):
    answer = live_server.api(
        "GET", f"courses/{setup.code}/submissions", setup.teacher, params={"student_id": bad}
    )
    assert_error(answer, 400, "invalid_identifier", "student")
    answer = live_server.api(
        "GET",
        f"courses/{setup.code}/assignments/ps1/feedback",
        setup.teacher,
        params={"student_id": bad},
    )
    assert_error(answer, 400, "invalid_identifier", "student")


def test_invalid_assignment_id_query(live_server, setup):
    answer = live_server.api(
        "GET",
        f"courses/{setup.code}/submissions",
        setup.teacher,
        params={"assignment_id": "ps1\n"},
    )
    assert_error(answer, 400, "invalid_identifier", "assignment")


def test_invalid_boolean_query(live_server, setup):
    answer = live_server.api(
        "GET", f"courses/{setup.code}/submissions?include_removed=maybe", setup.teacher
    )
    assert_error(answer, 400, "invalid_request", "include_removed")


# --- archives --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", BAD_UPLOADS.keys())
@pytest.mark.parametrize("target", ["release", "submit"])
def test_refused_upload_leaves_nothing(live_server, setup, target, case):
    body, headers, status, code, words = BAD_UPLOADS[case]
    if body is None:
        body = gzipped_zeros(70 * MiB)
    before = setup.snapshot()
    answer = setup.post_archive(target, body, headers=headers)
    assert_error(answer, status, code, *words)
    assert setup.snapshot() == before
    assert setup.assignments() == [("ps1", True, 1)]
    assert setup.submissions() == []


@pytest.mark.parametrize("target", ["release", "submit"])
def test_largest_allowed_archive_is_accepted(live_server, setup, target):
    """The controls for the refusals: 500 members, and 60 MiB of zeros unpacked, pass."""
    blobs = live_server.blob_count()
    answer = setup.post_archive(target, many_members(500))
    assert answer.status_code == 201, answer.text
    assert answer.json()["notebooks"] == ["p1"]
    answer = setup.post_archive(
        target,
        gzipped_zeros(60 * MiB),
        name="ps3" if target == "release" else None,
        headers={"Content-Type": "application/gzip"},
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["notebooks"] == ["p1"]
    assert live_server.blob_count() == blobs + 2


class RawAnswer:
    """The parts of a ``requests.Response`` that ``assert_error`` reads, from a raw socket."""

    def __init__(self, sock: socket.socket) -> None:
        response = http.client.HTTPResponse(sock)
        response.begin()
        self.status_code = response.status
        self.headers = dict(response.getheaders())
        self.content = response.read()
        self.text = self.content.decode()

    def json(self):
        return json.loads(self.content)


def submission_head(live_server, setup, length: int) -> bytes:
    return request_head(
        live_server,
        "POST",
        f"courses/{setup.code}/assignments/ps1/submissions",
        {
            "Authorization": f"Bearer {setup.student}",
            "Content-Type": "application/x-tar",
            "Content-Length": str(length),
        },
    )


@pytest.mark.parametrize("target", ["submit", "release", "feedback"])
@pytest.mark.parametrize(
    ("header", "declared", "code", "limit", "setting"),
    [
        ("Content-Length", MAX_UPLOAD + 1, "payload_too_large", MAX_UPLOAD, "MAX_UPLOAD_BYTES"),
        ("X-Archive-Members", 501, "archive_too_many_members", 500, "MAX_ARCHIVE_MEMBERS"),
        (
            "X-Archive-Unpacked-Bytes",
            64 * MiB + 1,
            "archive_too_large",
            64 * MiB,
            "MAX_UNPACKED_BYTES",
        ),
    ],
)
def test_an_upload_declared_over_the_limits_is_refused_before_reading(
    live_server, setup, target, header, declared, code, limit, setting
):
    """Only the headers are sent: a body longer than the upload limit, or the sender's own count
    of members or bytes over theirs, is answered at once (413 with the advice for what was sent,
    and the connection closed: the body is never read)."""
    before = setup.snapshot()
    path, token = setup.upload_target(target)
    head = request_head(
        live_server,
        "POST",
        path,
        {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/x-tar",
            "Content-Length": str(10 * MiB),
            header: str(declared),
        },
    )
    with socket.create_connection(server_address(live_server), timeout=30) as sock:
        sock.sendall(head)
        answer = RawAnswer(sock)
    error = assert_error(answer, 413, code, str(declared), str(limit))
    expected = (
        {"limit": limit} if header == "Content-Length" else {"limit": limit, "declared": declared}
    )
    assert error["details"] == expected
    advice = "Release feedback for fewer students" if target == "feedback" else "from the folder"
    assert advice in error["message"] and f"LTI_EXCHANGE_{setting}" in error["message"]
    assert answer.headers.get("Connection") == "close"
    assert setup.snapshot() == before


@pytest.mark.parametrize("target", ["submit", "release", "feedback"])
@pytest.mark.parametrize("value", ["", "abc", "-1", "+5", "1e3", "1.0", "7 7", "1234567890123456"])
@pytest.mark.parametrize("header", ["X-Archive-Members", "X-Archive-Unpacked-Bytes"])
def test_a_declaration_that_is_not_a_number_is_refused(setup, target, header, value):
    before = setup.snapshot()
    body = make_tar({"p1.ipynb": NOTEBOOK})
    answer = setup.post_archive(target, body, headers={header: value})
    error = assert_error(answer, 400, "invalid_archive_header", header)
    assert error["details"] == {"header": header}
    assert answer.headers.get("Connection") == "close"
    assert setup.snapshot() == before


def test_a_declaration_is_only_a_hint(setup):
    """Declaring less than is sent buys nothing: the archive is still counted as it streams;
    a true declaration within the limits is stored as without one."""
    before = setup.snapshot()
    declared = {"X-Archive-Members": "1", "X-Archive-Unpacked-Bytes": "1"}
    answer = setup.post_archive("submit", many_members(501), headers=declared)
    assert_error(answer, 413, "archive_too_many_members", "500")
    assert setup.snapshot() == before
    body = make_tar({"p1.ipynb": NOTEBOOK})
    true = {"X-Archive-Members": "1", "X-Archive-Unpacked-Bytes": str(len(NOTEBOOK))}
    assert setup.post_archive("submit", body, headers=true).status_code == 201
    assert setup.post_archive("release", body, headers=true).status_code == 201


def cut_off_tar(shape: str) -> bytes:
    if shape == "mid-member":
        # One big notebook: the cut lands inside its data.
        tar = make_tar({"p1.ipynb": b"x" * (900 * 1024)})
    else:
        # 1 536-byte members (2 KiB with their headers): 200 KiB ends exactly between two, so
        # what arrives is itself a readable tar of 100 members.
        tar = make_tar({f"f{i:03d}.ipynb": b"y" * 1536 for i in range(400)})
    assert len(tar) > CUT_AT
    return tar


CUT_AT = 200 * 1024
SHAPES = ["mid-member", "member-boundary"]


@pytest.mark.parametrize("shape", SHAPES)
def test_cut_off_upload_leaves_nothing(live_server, setup, shape):
    """Declare 1 MiB, send 200 KiB, wait until the server is writing, hang up."""
    tar = cut_off_tar(shape)
    before = setup.snapshot()
    partial = live_server.partial_count()
    sock = socket.create_connection(server_address(live_server), timeout=30)
    try:
        sock.sendall(submission_head(live_server, setup, MiB) + tar[:CUT_AT])
        wait_for(lambda: live_server.partial_count() > partial, what="the upload to start")
    finally:
        sock.close()
    wait_for(lambda: live_server.partial_count() == partial, what="the partial file to go")
    assert setup.snapshot() == before
    assert setup.submissions() == []
    assert setup.assignments() == [("ps1", True, 1)]
    # The same upload, complete, is accepted.
    answer = setup.post_archive("submit", tar)
    assert answer.status_code == 201, answer.text
    assert len(setup.submissions()) == 1


@pytest.mark.parametrize("shape", SHAPES)
def test_body_shorter_than_its_content_length_is_refused(live_server, setup, shape):
    """The client stops sending (half-close) but still listens: it is told what happened."""
    tar = cut_off_tar(shape)
    before = setup.snapshot()
    with socket.create_connection(server_address(live_server), timeout=30) as sock:
        sock.sendall(submission_head(live_server, setup, MiB) + tar[:CUT_AT])
        sock.shutdown(socket.SHUT_WR)
        answer = RawAnswer(sock)
    assert_error(answer, 400, "upload_incomplete", str(CUT_AT), str(MiB))
    wait_for(lambda: live_server.partial_count() == before[1], what="the partial file to go")
    assert setup.snapshot() == before


# --- unknown things and conflicts ------------------------------------------------------------


def test_unknown_assignment(live_server, setup):
    answer = setup.post_archive("submit", make_tar({"p1.ipynb": NOTEBOOK}), name="nope")
    assert_error(answer, 404, "assignment_not_found", "nope", setup.code)
    for token in (setup.student, setup.teacher):
        answer = live_server.api("GET", f"courses/{setup.code}/assignments/nope/archive", token)
        assert_error(answer, 404, "assignment_not_found", "nope")
    answer = live_server.api(
        "DELETE", f"courses/{setup.code}/assignments/nope/release", setup.teacher
    )
    assert_error(answer, 404, "assignment_not_found", "nope")
    answer = live_server.api(
        "POST", f"courses/{setup.code}/assignments/nope/collection", setup.teacher, json={}
    )
    assert_error(answer, 404, "assignment_not_found", "nope")


def test_unknown_submission(live_server, setup):
    for method, suffix in (("GET", ""), ("GET", "/archive"), ("DELETE", "")):
        answer = live_server.api(
            method, f"courses/{setup.code}/submissions/999999999{suffix}", setup.teacher
        )
        assert_error(answer, 404, "submission_not_found", "999999999")
    answer = live_server.api(
        "POST",
        f"courses/{setup.code}/assignments/ps1/collection",
        setup.teacher,
        json={"submission_ids": [999999999]},
    )
    assert_error(answer, 404, "submission_not_found", "999999999")


def test_submit_to_an_unreleased_assignment(live_server, setup):
    """Staff get 409 not_released; to a learner an unreleased assignment does not exist (404,
    as docs/openapi.yaml says). Either way nothing is stored."""
    answer = live_server.api(
        "DELETE", f"courses/{setup.code}/assignments/ps1/release", setup.teacher
    )
    assert answer.status_code == 200, answer.text
    assert setup.assignments() == [("ps1", False, 1)]
    before = setup.snapshot()
    answer = live_server.api(
        "POST",
        f"courses/{setup.code}/assignments/ps1/submissions",
        setup.teacher,
        data=make_tar({"p1.ipynb": NOTEBOOK}),
        headers=TAR,
    )
    assert_error(answer, 409, "not_released", "ps1", "not released")
    answer = live_server.api(
        "POST",
        f"courses/{setup.code}/assignments/ps1/submissions",
        setup.student,
        data=make_tar({"p1.ipynb": NOTEBOOK}),
        headers=TAR,
    )
    assert_error(answer, 404, "assignment_not_found", "ps1")
    assert setup.snapshot() == before
    answer = live_server.api(
        "DELETE", f"courses/{setup.code}/assignments/ps1/release", setup.teacher
    )
    assert_error(answer, 409, "not_released", "ps1")


@pytest.mark.parametrize(
    "body, words",
    [
        ("not json at all", ["JSON"]),
        ('{"submission_ids": ', ["JSON"]),
        ("[1, 2]", ["JSON object"]),
        ('"text"', ["JSON object"]),
        ('{"submission_ids": ["x"]}', ["submission_ids"]),
        ('{"submission_ids": "1"}', ["submission_ids"]),
        ('{"submission_ids": [0]}', ["submission_ids"]),
        ('{"submission_ids": [-3]}', ["submission_ids"]),
        ('{"submission_ids": [1.5]}', ["submission_ids"]),
        ('{"submission_ids": [true]}', ["submission_ids"]),
        ('{"student_ids": "alice"}', ["student_ids"]),
        ('{"student_ids": [1]}', ["student_ids"]),
        ('{"student_ids": ["../x"]}', ["student"]),
        ('{"since": 5}', ["since"]),
        ('{"since": "yesterday"}', ["timestamp"]),
    ],
)
def test_bad_collection_body(live_server, setup, body, words):
    answer = setup.post_archive("submit", make_tar({"p1.ipynb": NOTEBOOK}))
    assert answer.status_code == 201, answer.text
    answer = live_server.api(
        "POST",
        f"courses/{setup.code}/assignments/ps1/collection",
        setup.teacher,
        data=body,
        headers={"Content-Type": "application/json"},
    )
    error = assert_error(answer, 400, None, *words)
    assert error["code"] in ("invalid_request", "invalid_identifier"), error
    assert [s["collected_at"] for s in setup.submissions()] == [None]


def test_unknown_route_is_a_json_404(live_server, setup):
    for path in ("nope", "courses", f"courses/{setup.code}/nothing-here", "courses/x/y/z/w"):
        answer = live_server.api("GET", path, setup.teacher)
        assert_error(answer, 404, "not_found", "endpoint")
    answer = live_server.api("GET", "nope")
    assert_error(answer, 404, "not_found", "endpoint")


@pytest.mark.parametrize(
    "method, path",
    [
        ("PUT", "courses/{c}/assignments"),
        ("DELETE", "courses/{c}/assignments"),
        ("GET", "courses/{c}/assignments/ps1/releases"),
        ("PATCH", "courses/{c}/submissions/1"),
        ("POST", "me"),
    ],
)
def test_wrong_method_is_a_json_405(live_server, setup, method, path):
    answer = live_server.api(method, path.format(c=setup.code), setup.teacher)
    assert_error(answer, 405, "method_not_allowed", method)
    allowed = {m.strip() for m in answer.headers.get("Allow", "").split(",")}
    assert method not in allowed and len(allowed - {""}) >= 1, answer.headers

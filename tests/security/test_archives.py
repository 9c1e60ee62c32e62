"""The archive attacks measured against the server, replayed over HTTP on a memory-capped server.

Each hostile upload must be refused with the right status and code, leave nothing stored, and keep
every worker's peak memory bounded; every archive the server accepts must be one the nbgrader
plugin unpacks into a fresh folder. Last, the plugin's ``collect`` skips (and names) a submission
it cannot unpack instead of aborting the class.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select

from nbgrader_plugin.archive import extract_stream
from tests.security.conftest import peak_rss_mb
from tests.support import GZIP, NOTEBOOK, TAR, MiB, assert_error, make_tar, make_tgz
from tests.tar_headers import END, entry, header, long_name, pad, pax, record, tar

pytestmark = pytest.mark.one_backend

MAX_UNPACKED = 64 * MiB  # tests/conftest.py TEST_LIMITS
RSS_BOUND_MB = 300


def gzip_of_zeros(prefix: bytes, zeros: int, suffix: bytes = b"") -> bytes:
    """``prefix`` + ``zeros`` zero bytes + ``suffix``, gzip-compressed (concatenated members,
    so a GiB costs one compression of 1 MiB)."""
    chunk = gzip.compress(bytes(MiB), compresslevel=9, mtime=0)
    whole, rest = divmod(zeros, MiB)
    parts = [gzip.compress(prefix, mtime=0), chunk * whole]
    parts += [gzip.compress(bytes(rest) + suffix, mtime=0)]
    return b"".join(parts)


def huge_pax_header() -> bytes:
    """A PAX extended header claiming 256 MiB of NULs (255 KB on the wire)."""
    return gzip_of_zeros(header(b"././@PaxHeader", size=256 * MiB, kind=b"x"), 256 * MiB)


def huge_long_name() -> bytes:
    """A GNU long name of 64 MiB."""
    return gzip_of_zeros(header(b"././@LongLink", size=64 * MiB, kind=b"L"), 64 * MiB)


def pax_digits() -> bytes:
    """The quadratic-parsing attack: a PAX record length of 60,000 digits (within 64 KiB)."""
    body = b"1" * 60_000 + b" path=x\n"
    return gzip.compress(header(b"././@PaxHeader", size=len(body), kind=b"x") + pad(body) + END)


def pax_digits_80000() -> bytes:
    body = b"1" * 80_000 + b" path=x\n"
    return gzip.compress(header(b"././@PaxHeader", size=len(body), kind=b"x") + pad(body) + END)


def digit_record(size: int) -> bytes:
    """A PAX ``comment`` record of exactly ``size`` bytes, its value all digits."""
    first = record(b"comment", b"7" * (size - 20))
    return record(b"comment", b"7" * (size - 20 - (len(first) - size)))


def pax_digit_comments(size: int) -> bytes:
    """CVE-2024-6232 aimed at the plugin: eight members, each after a PAX comment of ``size``
    digits (``tarfile`` on Python 3.11.7 takes ~5 s to parse one of 64 KiB)."""
    members = [pax(digit_record(size)) + entry(b"f%d.txt" % n, b"x") for n in range(8)]
    return gzip.compress(tar(entry(b"p1.ipynb", NOTEBOOK), *members))


def gzip_bomb(size: int) -> bytes:
    """One zero-filled member of ``size`` bytes after a notebook, in well under 1 MB of gzip."""
    start = entry(b"p1.ipynb", NOTEBOOK) + header(b"zeros.bin", size=size)
    return gzip_of_zeros(start, size, END)


def zero_flood() -> bytes:
    """A valid small tar, then 960 MiB of zeros after its end block: no member is large."""
    return gzip_of_zeros(make_tar({"p1.ipynb": NOTEBOOK}), 960 * MiB)


def _gzip_without_trailer() -> bytes:
    packed = make_tgz({"p1.ipynb": NOTEBOOK, "data.csv": b"1,2\n"})
    return packed[:-8]


def _bad_crc() -> bytes:
    packed = bytearray(make_tgz({"p1.ipynb": NOTEBOOK}))
    packed[-8] ^= 0xFF
    return bytes(packed)


def _cut_at_member_boundary() -> bytes:
    whole = make_tar({"p1.ipynb": NOTEBOOK, "data.csv": b"1,2\n" * 200})
    return whole[: 512 + 512 + 512 + 1024]  # both members, no end block


# name -> (body builder, headers, status, code, words, memory-bounded attack)
ATTACKS = {
    "pax-256MiB": (huge_pax_header, GZIP, 400, "invalid_archive", ["PAX header", "16384"], True),
    "long-name-64MiB": (huge_long_name, GZIP, 400, "invalid_archive", ["long file name"], True),
    "pax-60000-digits": (pax_digits, GZIP, 400, "invalid_archive", ["PAX"], True),
    "pax-80000-digits": (pax_digits_80000, GZIP, 400, "invalid_archive", ["PAX"], True),
    "pax-64KiB-digit-comments": (
        lambda: pax_digit_comments(64 * 1024),
        GZIP,
        400,
        "invalid_archive",
        ["PAX header", "16384", "after 'p1.ipynb'"],
        True,
    ),
    "pax-16KiB-digit-comments": (
        lambda: pax_digit_comments(16 * 1024),
        GZIP,
        400,
        "invalid_archive",
        ["digits", "after 'p1.ipynb'"],
        True,
    ),
    "pax-unknown-key": (
        lambda: tar(entry(b"p1.ipynb", NOTEBOOK), pax(record(b"SUN.holesdata", b"1")), entry(b"x")),
        TAR,
        400,
        "invalid_archive",
        ["SUN.holesdata", "does not accept"],
        False,
    ),
    "empty-name": (
        lambda: tar(entry(b"p1.ipynb", NOTEBOOK), entry(b"", kind=b"5")),
        TAR,
        400,
        "invalid_archive",
        ["empty name", "after 'p1.ipynb'"],
        False,
    ),
    "gzip-bomb-900MiB": (
        lambda: gzip_bomb(900 * MiB),
        GZIP,
        413,
        "archive_too_large",
        [str(MAX_UNPACKED)],
        True,
    ),
    "zero-flood-960MiB": (zero_flood, GZIP, 413, "archive_too_large", [], True),
    "file-then-inside": (
        lambda: make_tar({"p1.ipynb": NOTEBOOK, "data": b"1", "data/x.csv": b"2"}),
        TAR,
        400,
        "invalid_archive",
        ["data/x.csv", "rename"],
        False,
    ),
    "inside-then-file": (
        lambda: make_tar({"p1.ipynb": NOTEBOOK, "data/x.csv": b"2", "data": b"1"}),
        TAR,
        400,
        "invalid_archive",
        ["'data'", "rename"],
        False,
    ),
    "duplicate": (
        lambda: tar(entry(b"p1.ipynb", NOTEBOOK), entry(b"p1.ipynb", b"{}")),
        TAR,
        400,
        "invalid_archive",
        ["p1.ipynb", "twice"],
        False,
    ),
    "case-duplicate": (
        lambda: make_tar({"p1.ipynb": NOTEBOOK, "Data.csv": b"1", "data.CSV": b"2"}),
        TAR,
        400,
        "invalid_archive",
        ["data.CSV", "twice", "case"],
        False,
    ),
    "nfd-duplicate": (
        lambda: make_tar({"p1.ipynb": NOTEBOOK, "caf\u00e9.txt": b"1", "cafe\u0301.txt": b"2"}),
        TAR,
        400,
        "invalid_archive",
        ["twice", "Unicode"],
        False,
    ),
    "windows-name": (
        lambda: make_tar({"p1.ipynb": NOTEBOOK, "results/aux.csv": b"1"}),
        TAR,
        400,
        "invalid_archive",
        ["results/aux.csv", "reserved", "rename"],
        False,
    ),
    "cut-at-member-boundary": (
        _cut_at_member_boundary,
        TAR,
        400,
        "invalid_archive",
        ["truncated"],
        False,
    ),
    "gzip-without-trailer": (
        _gzip_without_trailer,
        GZIP,
        400,
        "invalid_archive",
        ["truncated"],
        False,
    ),
    "gzip-bad-crc": (_bad_crc, GZIP, 400, "invalid_archive", ["corrupt"], False),
    "trailing-garbage": (
        lambda: make_tar({"p1.ipynb": NOTEBOOK}) + b"hidden payload",
        TAR,
        400,
        "invalid_archive",
        ["after the end"],
        False,
    ),
    "symlink": (
        lambda: tar(entry(b"p1.ipynb", NOTEBOOK), entry(b"link", kind=b"2")),
        TAR,
        400,
        "invalid_archive",
        ["link"],
        False,
    ),
}

_BODIES: dict[str, bytes] = {}


def body_of(case: str) -> bytes:
    if case not in _BODIES:
        _BODIES[case] = ATTACKS[case][0]()
    return _BODIES[case]


class Course:
    """A course with ``ps1`` released by ``teacher``; ``alice`` and ``bob`` are learners."""

    def __init__(self, server, code: str) -> None:
        self.server = server
        self.code = code
        self.teacher = server.issue_token("teacher", code, "Instructor")
        self.students = {name: server.issue_token(name, code) for name in ("alice", "bob")}
        answer = self.upload("release", make_tar({"p1.ipynb": NOTEBOOK}), TAR, name="ps1")
        assert answer.status_code == 201, answer.text

    def upload(self, target: str, body: bytes, headers: dict, name: str = "ps1", who="alice"):
        if target == "release":
            path, token = f"courses/{self.code}/assignments/{name}/releases", self.teacher
        else:
            path, token = f"courses/{self.code}/assignments/{name}/submissions", self.students[who]
        return self.server.api("POST", path, token, data=body, headers=dict(headers))

    def submissions(self) -> list[dict]:
        answer = self.server.api(
            "GET", f"courses/{self.code}/submissions?include_removed=true", self.teacher
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["submissions"]

    def releases(self) -> list:
        answer = self.server.api("GET", f"courses/{self.code}/assignments", self.teacher)
        assert answer.status_code == 200, answer.text
        return [(a["assignment_id"], a["release"]["version"]) for a in answer.json()["assignments"]]

    def snapshot(self) -> tuple:
        return (
            self.server.blob_count(),
            self.server.partial_count(),
            self.releases(),
            [s["id"] for s in self.submissions()],
        )

    def download(self, path: str) -> bytes:
        answer = self.server.api("GET", path, self.teacher)
        assert answer.status_code == 200, answer.text[:500]
        return answer.content


@pytest.fixture
def setup(guarded_server, course) -> Course:
    return Course(guarded_server, course)


def unpack_with_plugin(data: bytes, tmp_path: Path) -> set[str]:
    dest = tmp_path / f"plugin-{len(list(tmp_path.iterdir()))}"
    return {str(p) for p in extract_stream(io.BytesIO(data), dest)}


@pytest.mark.parametrize("case", ATTACKS.keys())
@pytest.mark.parametrize("target", ["submit", "release"])
def test_attack_is_refused_and_nothing_is_stored(guarded_server, setup, target, case):
    _builder, headers, status, code, words, memory_attack = ATTACKS[case]
    body = body_of(case)
    if memory_attack:
        assert len(body) < MiB
    before = setup.snapshot()
    answer = setup.upload(target, body, headers, name="ps2" if target == "release" else "ps1")
    assert_error(answer, status, code, *words)
    assert setup.snapshot() == before
    assert setup.submissions() == []
    assert peak_rss_mb(guarded_server) < RSS_BOUND_MB


def test_parallel_digit_attacks_do_not_freeze_the_workers(guarded_server, setup):
    """Two at once (one per worker), then a normal upload is still answered."""
    body = body_of("pax-60000-digits")
    with ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(lambda who: setup.upload("submit", body, GZIP, who=who), ["alice", "bob"])
        )
    for answer in answers:
        assert_error(answer, 400, "invalid_archive", "PAX")
    answer = setup.upload("submit", make_tar({"p1.ipynb": NOTEBOOK}), TAR)
    assert answer.status_code == 201, answer.text
    assert peak_rss_mb(guarded_server) < RSS_BOUND_MB


def concatenated(data: bytes) -> bytes:
    """``data`` as two gzip members, one after the other (as ``cat a.gz b.gz`` makes)."""
    return gzip.compress(data[:700], mtime=0) + gzip.compress(data[700:], mtime=0)


ACCEPTED = {
    "plain": (lambda: make_tar({"p1.ipynb": NOTEBOOK, "sub/data.csv": b"1,2\n"}), TAR),
    "gzip": (lambda: make_tgz({"p1.ipynb": NOTEBOOK, "sub/data.csv": b"1,2\n"}), GZIP),
    "gzip-60MiB-of-zeros": (lambda: gzip_bomb(60 * MiB), GZIP),
    "concatenated-gzip": (lambda: concatenated(make_tar({"p1.ipynb": NOTEBOOK})), GZIP),
    "long-names-and-unicode": (
        lambda: tar(
            long_name(("deep/" * 40 + "é-notes.txt").encode()),
            entry(b"cut", b"long"),
            entry(b"p1.ipynb", NOTEBOOK),
            pax(record(b"path", "straße/ä.txt".encode())),
            entry(b"x", b"pax"),
            entry(b"sub/", kind=b"5"),
            entry(b"sub/", kind=b"5"),
        ),
        TAR,
    ),
    "pax-metadata-records": (
        lambda: tar(
            pax(
                record(b"mtime", b"1700000000.123456789"),
                record(b"atime", b"1700000000.5"),
                record(b"uname", b"student"),
                record(b"SCHILY.xattr.user.origin", b"downloaded"),
                record(b"LIBARCHIVE.creationtime", b"1700000000"),
            ),
            entry(b"p1.ipynb", NOTEBOOK),
            pax(record(b"comment", b"git archive 0123456789abcdef"), kind=b"g"),
            entry(b"./", kind=b"5"),
        ),
        TAR,
    ),
}


@pytest.mark.parametrize("case", ACCEPTED.keys())
@pytest.mark.parametrize("target", ["submit", "release"])
def test_accepted_archives_are_unpacked_by_the_plugin(
    guarded_server, setup, tmp_path, target, case
):
    builder, headers = ACCEPTED[case]
    body = builder()
    name = "ps2" if target == "release" else "ps1"
    answer = setup.upload(target, body, headers, name=name)
    assert answer.status_code == 201, answer.text
    assert answer.json()["notebooks"] == ["p1"]
    if target == "release":
        stored = setup.download(f"courses/{setup.code}/assignments/ps2/archive")
    else:
        stored = setup.download(f"courses/{setup.code}/submissions/{answer.json()['id']}/archive")
    assert stored == body
    files = unpack_with_plugin(stored, tmp_path)
    assert "p1.ipynb" in files
    assert peak_rss_mb(guarded_server) < RSS_BOUND_MB


# --- the plugin's collect skips what it cannot unpack --------------------------------------


def plant(server, submission_id: int, data: bytes) -> None:
    """Replace a stored submission's bytes (as a damaged or older store might hold them)."""
    from lti_exchange.models import Submission

    state = server.state()
    with state.session_factory() as session:
        row = session.execute(select(Submission).where(Submission.id == submission_id)).scalar_one()
        state.storage.path_for(row.blob_key).write_bytes(data)
        row.sha256 = hashlib.sha256(data).hexdigest()
        row.size = len(data)
        session.commit()


def test_collect_skips_a_submission_it_cannot_unpack(
    guarded_server, setup, tmp_path, caplog, monkeypatch
):
    from nbgrader.auth import Authenticator
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    from nbgrader_plugin import ExchangeCollect
    from nbgrader_plugin.tokens import TokenEntry, TokenStore

    # nbgrader creates its gradebook by running `alembic` from PATH.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    good = make_tar({"p1.ipynb": NOTEBOOK, "data/x.csv": b"1,2\n"})
    ids = {}
    for who in ("alice", "bob"):
        answer = setup.upload("submit", good, TAR, who=who)
        assert answer.status_code == 201, answer.text
        ids[who] = answer.json()["id"]
    # Bob's stored archive now holds a file `data` and a file `data/x.csv`: unpackable.
    plant(
        guarded_server,
        ids["bob"],
        make_tar({"p1.ipynb": NOTEBOOK, "data": b"!", "data/x.csv": b"2"}),
    )

    root = tmp_path / "course"
    root.mkdir()
    tokens = tmp_path / "tokens.json"
    TokenStore(tokens).save(
        TokenEntry.from_access_token(setup.teacher, service_url=guarded_server.url)
    )
    config = Config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.course_id = setup.code
    config.CourseDirectory.assignment_id = "ps1"
    config.Exchange.service_url = guarded_server.url
    config.Exchange.token_file = str(tokens)
    log = logging.getLogger("test-collect")
    coursedir = CourseDirectory(config=config)
    collect = ExchangeCollect(
        coursedir=coursedir, authenticator=Authenticator(config=config), config=config, log=log
    )
    with caplog.at_level(logging.INFO, logger="test-collect"):
        collect.start()  # returns normally: nbgrader exits 0

    submitted = root / "submitted"
    assert (submitted / "alice" / "ps1" / "p1.ipynb").read_bytes() == NOTEBOOK
    assert (submitted / "alice" / "ps1" / "data" / "x.csv").read_bytes() == b"1,2\n"
    assert not (submitted / "bob").exists()
    assert not [p for p in submitted.iterdir() if p.name.startswith(".collect-")]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "Skipped the submission of bob" in errors[0], errors
    assert "data" in errors[0]
    summary = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "Skipped 1 submission(s)" in m and "bob" in m and "submit again" in m for m in summary
    )
    assert any("Collected 1 submission(s)" in r.getMessage() for r in caplog.records)

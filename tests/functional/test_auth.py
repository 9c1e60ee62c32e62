"""Authentication and authorisation at the API boundary, against the live service.

Every refusal is checked for its status and for the one JSON error shape with a useful message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import shutil
import subprocess
import tarfile
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lti_exchange.tokens.access import AUDIENCE
from tests.support import TAR, assert_error, make_tar


def assert_unauthenticated(answer, code: str = "unauthenticated", *words: str) -> dict:
    error = assert_error(answer, 401, code, *words)
    assert answer.headers.get("WWW-Authenticate", "").startswith("Bearer"), answer.headers
    return error


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def reminted(live_server, token: str, **changes) -> str:
    """A token from our own TokenService for the same user, org and course, with ``changes``."""
    claims = claims_of(token)
    arguments = {
        "user_id": int(claims["sub"]),
        "org_id": claims["org_id"],
        "username": claims["username"],
        "course_code": claims["course_id"],
        "course_title": claims["course_title"],
        "role": claims["role"],
    }
    arguments.update(changes)
    return live_server.state().tokens.mint(**arguments)


def release(live_server, course: str, token: str, name: str = "ps1", files=None):
    body = make_tar(files or {"p1.ipynb": b'{"cells": []}'})
    answer = live_server.api(
        "POST", f"courses/{course}/assignments/{name}/releases", token, data=body, headers=TAR
    )
    return answer


def submit(live_server, course: str, token: str, name: str = "ps1", files=None):
    body = make_tar(files or {"p1.ipynb": b'{"cells": ["answer"]}'})
    return live_server.api(
        "POST", f"courses/{course}/assignments/{name}/submissions", token, data=body, headers=TAR
    )


@pytest.fixture
def student(live_server, course) -> str:
    return live_server.issue_token("alice", course, "Learner")


# --- 401: who is calling cannot be established -----------------------------------------------


def test_valid_token_is_accepted(live_server, course, student):
    """The control for every 401 below: the same request with a good token works."""
    answer = live_server.api("GET", f"courses/{course}/assignments", student)
    assert answer.status_code == 200, answer.text
    assert answer.json()["role"] == "Learner"


def test_missing_authorization_header(live_server, course):
    answer = live_server.api("GET", f"courses/{course}/assignments")
    assert_unauthenticated(answer, "unauthenticated", "Bearer")


@pytest.mark.parametrize(
    "header",
    ["Basic YWxpY2U6c2VjcmV0", "Token abc.def.ghi", "Bearer", "Bearer    ", "bearer-abc"],
)
def test_non_bearer_scheme(live_server, course, student, header):
    answer = live_server.api(
        "GET", f"courses/{course}/assignments", headers={"Authorization": header}
    )
    assert_unauthenticated(answer, "unauthenticated", "Bearer")


def test_real_token_behind_wrong_scheme(live_server, course, student):
    answer = live_server.api(
        "GET", f"courses/{course}/assignments", headers={"Authorization": f"Basic {student}"}
    )
    assert_unauthenticated(answer, "unauthenticated", "Bearer")


@pytest.mark.parametrize("garbage", ["garbage", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.e30.", "x" * 3000])
def test_garbage_token(live_server, course, garbage):
    answer = live_server.api("GET", f"courses/{course}/assignments", garbage)
    assert_unauthenticated(answer, "unauthenticated", "token")


def test_expired_token(live_server, course, student):
    claims = claims_of(student)
    expired = live_server.state().tokens.mint(
        user_id=int(claims["sub"]),
        org_id=claims["org_id"],
        username="alice",
        course_code=course,
        course_title=None,
        role="Learner",
        now=int(time.time()) - 3600,
        ttl=60,
    )
    assert claims_of(expired)["exp"] < time.time() - 60
    answer = live_server.api("GET", f"courses/{course}/assignments", expired)
    assert_unauthenticated(answer, "token_expired", "expired")


def test_token_signed_by_another_key_with_a_plausible_kid(live_server, course, student):
    """Another RSA key, with a kid in our format that is not in our ring."""
    ours = live_server.state().token_keys.active.kid
    stamp, _, _suffix = ours.rpartition("-")
    foreign_kid = f"{stamp}-deadbeef" if not ours.endswith("-deadbeef") else f"{stamp}-feedface"
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims_of(student), other, algorithm="RS256", headers={"kid": foreign_kid})
    answer = live_server.api("GET", f"courses/{course}/assignments", forged)
    assert_unauthenticated(answer, "unauthenticated", "not signed by this service")


def test_token_signed_by_another_key_under_our_kid(live_server, course, student):
    """Another RSA key claiming our active kid: the signature check must fail."""
    ours = live_server.state().token_keys.active.kid
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims_of(student), other, algorithm="RS256", headers={"kid": ours})
    answer = live_server.api("GET", f"courses/{course}/assignments", forged)
    assert_unauthenticated(answer, "unauthenticated", "invalid", "signature")


def test_alg_none_token(live_server, course, student):
    kid = live_server.state().token_keys.active.kid
    header = b64url(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    payload = b64url(json.dumps(claims_of(student)).encode())
    for unsigned in (f"{header}.{payload}.", f"{header}.{payload}"):
        answer = live_server.api("GET", f"courses/{course}/assignments", unsigned)
        assert_unauthenticated(answer, "unauthenticated", "token")


def test_hs256_token_keyed_with_our_public_key(live_server, course, student):
    """The classic algorithm-confusion attack: HMAC with the RSA public key as the secret."""
    active = live_server.state().token_keys.active
    public_pem = active.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = dict(claims_of(student), role="Instructor")
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": active.kid}).encode())
    payload = b64url(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = b64url(hmac.new(public_pem, signing_input, hashlib.sha256).digest())
    forged = f"{header}.{payload}.{signature}"
    answer = live_server.api("GET", f"courses/{course}/assignments", forged)
    assert_unauthenticated(answer, "unauthenticated", "RS256")
    answer = live_server.api("GET", f"courses/{course}/members", forged)
    assert_unauthenticated(answer, "unauthenticated", "RS256")


def test_tampered_payload_keeps_no_authority(live_server, course, student):
    """Promote a Learner token to Instructor by editing the payload and keeping the signature."""
    header, payload, signature = student.split(".")
    claims = json.loads(unb64url(payload))
    assert claims["role"] == "Learner"
    claims["role"] = "Instructor"
    tampered = f"{header}.{b64url(json.dumps(claims).encode())}.{signature}"
    answer = live_server.api("GET", f"courses/{course}/members", tampered)
    assert_unauthenticated(answer, "unauthenticated", "invalid")
    answer = live_server.api("GET", f"courses/{course}/assignments", tampered)
    assert_unauthenticated(answer, "unauthenticated", "invalid")


@pytest.mark.parametrize("audience", ["not-lti-exchange", ["other-service"], None])
def test_wrong_audience(live_server, course, student, audience):
    active = live_server.state().token_keys.active
    claims = claims_of(student)
    assert claims["aud"] == AUDIENCE
    if audience is None:
        del claims["aud"]
    else:
        claims["aud"] = audience
    forged = jwt.encode(claims, active.private_key, algorithm="RS256", headers={"kid": active.kid})
    answer = live_server.api("GET", f"courses/{course}/assignments", forged)
    assert_unauthenticated(answer, "unauthenticated", "aud")


# --- 403 / 404: authenticated, but not allowed here ------------------------------------------


@pytest.fixture
def released(live_server, course):
    """A course with ps1 released and one submission by alice; returns the tokens and ids."""
    teacher = live_server.issue_token("teacher", course, "Instructor")
    alice = live_server.issue_token("alice", course, "Learner")
    answer = release(live_server, course, teacher)
    assert answer.status_code == 201, answer.text
    answer = submit(live_server, course, alice)
    assert answer.status_code == 201, answer.text
    return {"teacher": teacher, "alice": alice, "submission_id": answer.json()["id"]}


def test_learner_cannot_release(live_server, course, released):
    blobs = live_server.blob_count()
    answer = release(live_server, course, released["alice"], files={"p1.ipynb": b"hacked"})
    assert_error(answer, 403, "role_forbidden", "Instructor", "Learner")
    assert live_server.blob_count() == blobs
    listing = live_server.api("GET", f"courses/{course}/assignments", released["teacher"]).json()
    assert [a["release"]["version"] for a in listing["assignments"]] == [1]


def test_learner_cannot_release_a_new_assignment(live_server, course, released):
    answer = release(live_server, course, released["alice"], name="mine")
    assert_error(answer, 403, "role_forbidden", "Instructor")
    listing = live_server.api("GET", f"courses/{course}/assignments", released["teacher"]).json()
    assert [a["assignment_id"] for a in listing["assignments"]] == ["ps1"]


def test_learner_cannot_unrelease(live_server, course, released):
    answer = live_server.api(
        "DELETE", f"courses/{course}/assignments/ps1/release", released["alice"]
    )
    assert_error(answer, 403, "role_forbidden", "Instructor")
    listing = live_server.api("GET", f"courses/{course}/assignments", released["alice"]).json()
    assert [(a["assignment_id"], a["released"]) for a in listing["assignments"]] == [("ps1", True)]


def test_learner_cannot_collect(live_server, course, released):
    answer = live_server.api(
        "POST", f"courses/{course}/assignments/ps1/collection", released["alice"], json={}
    )
    assert_error(answer, 403, "role_forbidden", "Instructor")
    mine = live_server.api("GET", f"courses/{course}/submissions", released["alice"]).json()
    assert [s["collected_at"] for s in mine["submissions"]] == [None]


def test_learner_cannot_release_feedback(live_server, course, released):
    blobs = live_server.blob_count()
    body = make_tar(
        {"alice/timestamp.txt": b"2020-01-01 00:00:00.000000 UTC", "alice/p1.html": b""}
    )
    answer = live_server.api(
        "POST",
        f"courses/{course}/assignments/ps1/feedback",
        released["alice"],
        data=body,
        headers=TAR,
    )
    assert_error(answer, 403, "role_forbidden", "Instructor")
    assert live_server.blob_count() == blobs


def test_learner_cannot_list_members(live_server, course, released):
    answer = live_server.api("GET", f"courses/{course}/members", released["alice"])
    assert_error(answer, 403, "role_forbidden", "Instructor")
    staff = live_server.api("GET", f"courses/{course}/members", released["teacher"])
    assert staff.status_code == 200, staff.text
    assert {m["username"] for m in staff.json()["members"]} == {"alice", "teacher"}


def test_learner_cannot_remove_a_submission(live_server, course, released):
    sid = released["submission_id"]
    answer = live_server.api("DELETE", f"courses/{course}/submissions/{sid}", released["alice"])
    assert_error(answer, 403, "role_forbidden", "Instructor")
    mine = live_server.api("GET", f"courses/{course}/submissions", released["alice"]).json()
    assert [(s["id"], s["removed"]) for s in mine["submissions"]] == [(sid, False)]


def test_token_for_another_course(live_server, course):
    other = f"{course}b"
    live_server.issue_token("teacher", other, "Instructor")
    token_a = live_server.issue_token("teacher", course, "Instructor")
    for method, path in (
        ("GET", f"courses/{other}/assignments"),
        ("GET", f"courses/{other}/members"),
        ("GET", f"courses/{other}/submissions"),
    ):
        answer = live_server.api(method, path, token_a)
        assert_error(answer, 403, "wrong_course", course, other)
    answer = release(live_server, other, token_a)
    assert_error(answer, 403, "wrong_course", course, other)
    token_b = live_server.issue_token("teacher", other, "Instructor")
    listing = live_server.api("GET", f"courses/{other}/assignments", token_b).json()
    assert listing["assignments"] == []


def test_unknown_course(live_server, course):
    token = live_server.issue_token("teacher", course, "Instructor")
    answer = live_server.api("GET", f"courses/{course}nope/assignments", token)
    assert_error(answer, 404, "course_not_found", f"{course}nope")


def test_organisations_are_isolated(live_server, course):
    """Two LMS registrations with the same course code never see each other's files."""
    two_teacher = live_server.issue_token("teacher", course, "Instructor", org="org-two")
    one_teacher = live_server.issue_token("teacher", course, "Instructor", org="org-one")
    one_student = live_server.issue_token("alice", course, "Learner", org="org-one")
    assert claims_of(two_teacher)["org_id"] != claims_of(one_student)["org_id"]
    answer = release(live_server, course, two_teacher, name="secret", files={"s.ipynb": b"42"})
    assert answer.status_code == 201, answer.text
    answer = release(live_server, course, one_teacher, name="open")
    assert answer.status_code == 201, answer.text

    listing = live_server.api("GET", f"courses/{course}/assignments", one_student)
    assert listing.status_code == 200, listing.text
    assert [a["assignment_id"] for a in listing.json()["assignments"]] == ["open"]
    staff = live_server.api("GET", f"courses/{course}/assignments", one_teacher).json()
    assert [a["assignment_id"] for a in staff["assignments"]] == ["open"]
    answer = live_server.api("GET", f"courses/{course}/assignments/secret/archive", one_student)
    assert_error(answer, 404, "assignment_not_found", "secret")
    answer = live_server.api("GET", f"courses/{course}/assignments/secret/archive", one_teacher)
    assert_error(answer, 404, "assignment_not_found", "secret")
    answer = submit(live_server, course, one_student, name="secret")
    assert_error(answer, 404, "assignment_not_found", "secret")
    members = live_server.api("GET", f"courses/{course}/members", two_teacher).json()
    assert [m["username"] for m in members["members"]] == ["teacher"]


def test_token_with_another_organisations_id(live_server, course):
    """A token for org-one's user that names org-two (where the course code also exists)."""
    live_server.issue_token("teacher", course, "Instructor", org="org-two")
    live_server.issue_token("alice", course, "Learner", org="org-two")
    one_student = live_server.issue_token("alice", course, "Learner", org="org-one")
    org_two = claims_of(live_server.issue_token("bob", course, "Learner", org="org-two"))["org_id"]
    assert org_two != claims_of(one_student)["org_id"]
    crossed = reminted(live_server, one_student, org_id=org_two)
    for path in (f"courses/{course}/assignments", f"courses/{course}/submissions", "me"):
        answer = live_server.api("GET", path, crossed)
        assert_error(answer, 403, None, course)


def test_revoked_token_is_refused_and_a_new_one_works(live_server, course):
    username = f"rev{course}"
    fresh = live_server.issue_token(username, course, "Learner")
    old = reminted(live_server, fresh, now=int(time.time()) - 5)
    before = live_server.api("GET", f"courses/{course}/assignments", old)
    assert before.status_code == 200, before.text

    done = subprocess.run(
        [
            shutil.which("lti-exchange", path=live_server.env["PATH"]),
            "token",
            "revoke",
            "--user",
            username,
            "--course",
            course,
        ],
        env=live_server.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert course in done.stdout

    answer = live_server.api("GET", f"courses/{course}/assignments", old)
    assert_unauthenticated(answer, "revoked", "revoked")
    answer = live_server.api("GET", "me", old)
    assert_unauthenticated(answer, "revoked", "revoked")
    new = live_server.issue_token(username, course, "Learner")
    answer = live_server.api("GET", f"courses/{course}/assignments", new)
    assert answer.status_code == 200, answer.text


# --- one student, another student's work -----------------------------------------------------


@pytest.fixture
def two_students(live_server, course, released):
    bob = live_server.issue_token("bob", course, "Learner")
    answer = submit(live_server, course, bob, files={"p1.ipynb": b"bob's answer"})
    assert answer.status_code == 201, answer.text
    return dict(released, bob=bob, bob_submission=answer.json()["id"])


def test_student_cannot_list_another_students_submissions(live_server, course, two_students):
    alice = two_students["alice"]
    answer = live_server.api("GET", f"courses/{course}/submissions?student_id=bob", alice)
    assert_error(answer, 403, None, "own")
    own = live_server.api("GET", f"courses/{course}/submissions?student_id=alice", alice)
    assert own.status_code == 200, own.text
    assert {s["student_id"] for s in own.json()["submissions"]} == {"alice"}
    everything = live_server.api("GET", f"courses/{course}/submissions", alice).json()
    assert {s["student_id"] for s in everything["submissions"]} == {"alice"}


def test_student_cannot_download_another_students_submission(live_server, course, two_students):
    alice, bob_id = two_students["alice"], two_students["bob_submission"]
    answer = live_server.api("GET", f"courses/{course}/submissions/{bob_id}/archive", alice)
    assert_error(answer, 404, "submission_not_found", str(bob_id))
    answer = live_server.api("GET", f"courses/{course}/submissions/{bob_id}", alice)
    assert_error(answer, 404, "submission_not_found", str(bob_id))
    own = live_server.api(
        "GET", f"courses/{course}/submissions/{two_students['submission_id']}/archive", alice
    )
    assert own.status_code == 200, own.text
    with tarfile.open(fileobj=io.BytesIO(own.content)) as archive:
        assert archive.extractfile("p1.ipynb").read() == b'{"cells": ["answer"]}'


def test_student_cannot_fetch_another_students_feedback(live_server, course, two_students):
    alice = two_students["alice"]
    answer = live_server.api(
        "GET", f"courses/{course}/assignments/ps1/feedback?student_id=bob", alice
    )
    assert_error(answer, 403, None, "own")
    own = live_server.api("GET", f"courses/{course}/assignments/ps1/feedback", alice)
    assert own.status_code == 200, own.text


@pytest.mark.all_backends  # case-sensitive ids: MariaDB's default collation ignores case
def test_ids_that_differ_only_in_case_are_different_people(live_server, course):
    """nbgrader ids are case-sensitive: 'Bob' must not become 'bob' (nor see bob's work)."""
    teacher = live_server.issue_token("teacher", course, "Instructor")
    assert release(live_server, course, teacher).status_code == 201
    lower = live_server.issue_token("casebob", course, "Learner")
    answer = submit(live_server, course, lower, files={"p1.ipynb": b"lower's answer"})
    assert answer.status_code == 201, answer.text
    upper = live_server.issue_token("CaseBob", course, "Learner")
    assert claims_of(upper)["sub"] != claims_of(lower)["sub"]
    theirs = live_server.api("GET", f"courses/{course}/submissions", upper).json()
    assert theirs["submissions"] == []
    members = live_server.api("GET", f"courses/{course}/members", teacher).json()
    assert {m["username"] for m in members["members"]} == {"teacher", "casebob", "CaseBob"}


def test_me_answers_from_the_live_rows_not_the_token(live_server, course, student):
    """``/me`` reads the user and the course title with the authorising query: a title changed
    since the token was issued shows at once, and the token's own claim is not what answers."""
    from sqlalchemy import update

    from lti_exchange.models import Course

    with live_server.state().session_factory() as session:
        session.execute(update(Course).where(Course.code == course).values(title="Renamed 101"))
        session.commit()
    answer = live_server.api("GET", "me", student)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["course_title"] == "Renamed 101"
    assert claims_of(student)["course_title"] != "Renamed 101"
    assert (body["course_id"], body["username"], body["role"]) == (course, "alice", "Learner")

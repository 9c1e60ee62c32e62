"""docs/openapi.yaml describes the API the app really serves.

The app is built in-process (embedded SQLite under a temporary directory, no server) and compared
with the spec: the routes, who may call each one (read from the view's ``caller_for`` call), the
path and query parameters, the request bodies and download headers (read from the helpers each
view uses), the success statuses, and, through Flask's test client, the status, content type,
headers and JSON body of every response of a scripted session.
"""

from __future__ import annotations

import ast
import inspect
import io
import re
import tarfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from sqlalchemy import update as sa_update
from werkzeug.routing import IntegerConverter

from lti_exchange import create_app
from lti_exchange.api import common
from lti_exchange.config import load_settings
from lti_exchange.identifiers import IDENTIFIER_PATTERN, MAX_IDENTIFIER_LENGTH
from lti_exchange.models import COURSE_ROLES, Grade
from tests.factories import issue_access_token, issue_refresh_token
from tests.support import make_tar

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
IGNORED_METHODS = {"HEAD", "OPTIONS"}
UPLOAD_LIMIT = 64 * 1024
CONVERTER = re.compile(r"<(?:(?P<converter>[a-zA-Z_]+)(?:\([^)]*\))?:)?(?P<name>\w+)>")


# --------------------------------------------------------------------------- fixtures, helpers


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    with SPEC_PATH.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    environ = {
        "LTI_EXCHANGE_DATA_DIR": str(tmp_path_factory.mktemp("openapi-app")),
        "LTI_EXCHANGE_LOG_LEVEL": "WARNING",
        "LTI_EXCHANGE_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
    }
    application = create_app(load_settings(environ))
    yield application
    application.extensions["lti_exchange"].engine.dispose()


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def openapi_path(rule: str) -> str:
    """``/courses/<path:course_id>/x/<int:submission_id>`` → ``/courses/{courseId}/x/{...}``."""
    return CONVERTER.sub(lambda m: "{" + camel(m.group("name")) + "}", rule)


def documented_rules(app) -> Iterator:
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/") or rule.rule in ("/healthz", "/readyz"):
            yield rule


def app_operations(app) -> dict[tuple[str, str], Any]:
    """``(METHOD, openapi path)`` → the werkzeug Rule serving it."""
    found: dict[tuple[str, str], Any] = {}
    for rule in documented_rules(app):
        for method in sorted(rule.methods - IGNORED_METHODS):
            key = (method, openapi_path(rule.rule))
            assert key not in found, f"two rules serve {key}"
            found[key] = rule
    return found


def spec_operations(spec) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS and method.upper() not in IGNORED_METHODS
    }


def resolve(spec, node: dict[str, Any]) -> dict[str, Any]:
    """Follow local ``$ref`` chains (``#/a/b``) to the object they name."""
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"only local references are expected, got {ref}"
        target: Any = spec
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def operation_parameters(spec, path: str, method: str) -> list[dict[str, Any]]:
    item = spec["paths"][path]
    params = item.get("parameters", []) + item[method.lower()].get("parameters", [])
    return [resolve(spec, p) for p in params]


def schema_validator(spec, schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for ``schema`` in which ``#/components/...`` references resolve."""
    root = {"components": spec.get("components", {}), "allOf": [schema]}
    Draft202012Validator.check_schema(root)
    return Draft202012Validator(root)


def view_tree(app, endpoint: str) -> ast.AST:
    source = textwrap.dedent(inspect.getsource(app.view_functions[endpoint]))
    return ast.parse(source)


def calls_to(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Name) and node.func.id == name)
            or (isinstance(node.func, ast.Attribute) and node.func.attr == name)
        )
    ]


def view_roles(app, endpoint: str) -> list[str] | None:
    """The roles in the view's ``caller_for(course, ROLES)`` call; None when it has none."""
    calls = calls_to(view_tree(app, endpoint), "caller_for")
    if not calls:
        return None
    assert len(calls) == 1, f"{endpoint}: expected one caller_for call, found {len(calls)}"
    call = calls[0]
    roles_arg = call.args[1] if len(call.args) > 1 else None
    for keyword in call.keywords:
        if keyword.arg == "roles":
            roles_arg = keyword.value
    assert isinstance(roles_arg, ast.Name), f"{endpoint}: caller_for roles must be STAFF/ANY_ROLE"
    assert roles_arg.id in ("STAFF", "ANY_ROLE"), f"{endpoint}: unexpected roles {roles_arg.id}"
    roles = app.view_functions[endpoint].__globals__[roles_arg.id]
    return list(roles)


def query_names(app, endpoint: str) -> set[str]:
    """Query parameters the view reads: ``request.args.get("x")`` and ``bool_arg("x")``."""
    names = set()
    for node in ast.walk(view_tree(app, endpoint)):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        first = node.args[0]
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            continue
        func = node.func
        reads_args = (
            isinstance(func, ast.Attribute)
            and func.attr in ("get", "getlist")
            and isinstance(func.value, ast.Attribute)
            and func.value.attr == "args"
        )
        if reads_args or (isinstance(func, ast.Name) and func.id == "bool_arg"):
            names.add(first.value)
    return names


def success_statuses(app, endpoint: str) -> set[str]:
    """Statuses a view returns explicitly (``return body, 201``); 200 when it returns a body."""
    statuses = set()
    for node in ast.walk(view_tree(app, endpoint)):
        if isinstance(node, ast.Return) and node.value is not None:
            value = node.value
            if (
                isinstance(value, ast.Tuple)
                and len(value.elts) >= 2
                and isinstance(value.elts[1], ast.Constant)
                and isinstance(value.elts[1].value, int)
            ):
                statuses.add(str(value.elts[1].value))
            else:
                statuses.add("200")
    return statuses


# --------------------------------------------------------------------------- the document


def test_spec_is_a_valid_openapi_31_document(spec):
    try:
        from openapi_spec_validator import OpenAPIV31SpecValidator, validate
    except ImportError:  # pragma: no cover - the test extra installs it
        pytest.fail("openapi-spec-validator is missing: pip install -e '.[test]'")
    assert str(spec["openapi"]).startswith("3.1")
    validate(spec, cls=OpenAPIV31SpecValidator)


def test_info_announces_token_refresh(spec):
    assert "POST /api/v1/token/refresh" in spec["info"]["description"]


def test_bearer_jwt_security_is_the_default(spec):
    schemes = spec["components"]["securitySchemes"]
    bearer = [name for name, s in schemes.items() if s.get("scheme", "").lower() == "bearer"]
    assert len(bearer) == 1, schemes
    scheme = schemes[bearer[0]]
    assert scheme["type"] == "http" and scheme["bearerFormat"] == "JWT"
    assert "RS256" in scheme["description"]
    assert spec["security"] == [{bearer[0]: []}]


def test_identifier_schema_is_the_code_rule(spec):
    identifier = spec["components"]["schemas"]["Identifier"]
    assert identifier["pattern"] == IDENTIFIER_PATTERN.pattern
    assert identifier["maxLength"] == MAX_IDENTIFIER_LENGTH
    for name in ("courseId", "assignmentId"):
        param = spec["components"]["parameters"][name]
        schema = resolve(spec, param["schema"])
        assert param["in"] == "path" and param["required"] is True
        assert schema["pattern"] == IDENTIFIER_PATTERN.pattern
        assert schema["maxLength"] == MAX_IDENTIFIER_LENGTH


def test_error_schema_is_the_error_shape(spec):
    from lti_exchange.errors import ApiError

    validator = schema_validator(spec, {"$ref": "#/components/schemas/Error"})
    bare = ApiError("message", status=404, code="x_not_found").to_dict()
    detailed = ApiError("message", status=413, code="too_big", details={"limit": 1}).to_dict()
    validator.validate(bare)
    validator.validate(detailed)
    assert not validator.is_valid({"status": 404, "code": "x", "message": "m"})
    assert set(bare["error"]) == set(
        spec["components"]["schemas"]["Error"]["properties"]["error"]["required"]
    )


# --------------------------------------------------------------------------- routes and views


def test_routes_and_spec_paths_are_the_same(app, spec):
    served = set(app_operations(app))
    described = set(spec_operations(spec))
    assert served, "no /api/ routes found in the app"
    assert not served - described, f"served but not in docs/openapi.yaml: {served - described}"
    assert not described - served, f"in docs/openapi.yaml but not served: {described - served}"


def test_every_operation_is_described(spec):
    ids = []
    for (method, path), operation in spec_operations(spec).items():
        where = f"{method} {path}"
        ids.append(operation.get("operationId"))
        assert operation.get("operationId"), f"{where}: no operationId"
        assert operation.get("summary") and operation.get("description"), f"{where}: say what"
        roles = operation.get("x-roles")
        assert isinstance(roles, list), f"{where}: x-roles must be a list"
        assert set(roles) <= set(COURSE_ROLES), f"{where}: unknown roles {roles}"
        assert len(set(roles)) == len(roles), f"{where}: repeated roles {roles}"
        public = operation.get("security") == []
        assert public == (roles == []), f"{where}: security: [] exactly when x-roles is empty"
        statuses = set(operation["responses"])
        assert any(s.startswith("2") for s in statuses), f"{where}: no success response"
        if public:
            assert any(s[0] in "45" for s in statuses), f"{where}: no error response"
        else:
            assert any(s.startswith("4") for s in statuses), f"{where}: no 4xx response"
            assert {"401", "403"} <= statuses, f"{where}: a token operation can be 401 and 403"
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def test_error_responses_are_shared_and_use_the_error_shape(spec):
    for (method, path), operation in spec_operations(spec).items():
        for status, response in operation["responses"].items():
            if status[0] not in "45":
                continue
            where = f"{method} {path} {status}"
            assert response.get("$ref", "").startswith("#/components/responses/"), where
            content = resolve(spec, response)["content"]
            assert content["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }, where


def test_x_roles_are_the_roles_the_view_checks(app, spec):
    operations = spec_operations(spec)
    for key, rule in app_operations(app).items():
        roles = view_roles(app, rule.endpoint)
        operation = operations[key]
        where = f"{key[0]} {key[1]} ({rule.endpoint})"
        if roles is None:
            assert operation["x-roles"] == [], f"{where}: the view checks no role"
            assert operation.get("security") == [], f"{where}: the view needs no token"
        else:
            assert sorted(operation["x-roles"]) == sorted(roles), where
            assert operation.get("security") != [], f"{where}: the view needs a token"


def test_path_parameters_match_the_rule_converters(app, spec):
    for (method, path), rule in app_operations(app).items():
        params = {
            p["name"]: p for p in operation_parameters(spec, path, method) if p["in"] == "path"
        }
        converters = {camel(name): conv for name, conv in rule._converters.items()}
        assert set(params) == set(converters), f"{method} {path}"
        for name, converter in converters.items():
            schema = resolve(spec, params[name]["schema"])
            if isinstance(converter, IntegerConverter):
                assert schema["type"] == "integer", f"{method} {path} {name}"
            else:
                assert schema["type"] == "string", f"{method} {path} {name}"
                assert schema["pattern"] == IDENTIFIER_PATTERN.pattern, f"{method} {path} {name}"


def test_query_parameters_are_the_ones_the_view_reads(app, spec):
    for (method, path), rule in app_operations(app).items():
        described = {
            p["name"] for p in operation_parameters(spec, path, method) if p["in"] == "query"
        }
        assert described == query_names(app, rule.endpoint), f"{method} {path}"


def test_success_status_is_the_one_the_view_returns(app, spec):
    operations = spec_operations(spec)
    for key, rule in app_operations(app).items():
        described = {s for s in operations[key]["responses"] if s.startswith("2")}
        assert described == success_statuses(app, rule.endpoint), f"{key}"


def test_bodies_and_download_headers_follow_the_view_helpers(app, spec):
    operations = spec_operations(spec)
    for key, rule in app_operations(app).items():
        tree = view_tree(app, rule.endpoint)
        operation = operations[key]
        where = f"{key[0]} {key[1]}"
        body = resolve(spec, operation.get("requestBody", {}))
        body_types = set(body.get("content", {}))
        statuses = set(operation["responses"])
        success = next(s for s in statuses if s.startswith("2"))
        response = resolve(spec, operation["responses"][success])
        headers = set(response.get("headers", {}))

        if calls_to(tree, "archive_body"):
            assert body.get("required") is True, where
            assert body_types == set(common.ARCHIVE_TYPES), where
            assert {"400", "413", "415"} <= statuses, where
        else:
            assert "415" not in statuses, where
        if calls_to(tree, "json_body"):
            assert body_types == {"application/json"}, where
            assert "413" in statuses, f"{where}: a JSON body over 1 MiB is 413"
        elif not calls_to(tree, "archive_body"):
            assert "413" not in statuses, where
        if not calls_to(tree, "archive_body") and not calls_to(tree, "json_body"):
            assert not body, f"{where}: the view reads no body"

        blob = calls_to(tree, "blob_response")
        stream = calls_to(tree, "tar_stream_response")
        if blob or stream:
            assert set(response["content"]) == {"application/x-tar"}, where
        else:
            assert set(response["content"]) == {"application/json"}, where
        if blob:
            extra = {kw.arg.replace("_", "-") for kw in blob[0].keywords if kw.arg}
            expected = {"Content-Length", "X-Content-SHA256", "ETag", "Cache-Control"} | extra
            assert headers == expected, where
        elif stream:
            assert headers == {"Cache-Control"}, where


# --------------------------------------------------------------------------- live responses


def tar_names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return archive.getnames()


class ApiSession:
    """Calls the app through the test client and checks each answer against the spec."""

    def __init__(self, app, spec) -> None:
        self.app = app
        self.spec = spec
        self.client = app.test_client()
        self.state = app.extensions["lti_exchange"]
        self.seen: dict[str, set[str]] = {}

    def token(self, username: str, course: str, role: str) -> str:
        return issue_access_token(self.state, username, course, role, org="openapi-org")

    def refresh_token(self, username: str, course: str) -> str:
        """A refresh token issued by the service's own code for an existing enrolment."""
        return issue_refresh_token(self.state, username, course)

    def call(
        self,
        method: str,
        template: str,
        token: str | None = None,
        *,
        expect: int | tuple[int, ...],
        query: dict | None = None,
        tar: bytes | None = None,
        **kwargs,
    ):
        values = {k: kwargs.pop(k) for k in list(kwargs) if k in template}
        url = template.format(**values)
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if tar is not None:
            kwargs["data"] = tar
            headers.setdefault("Content-Type", "application/x-tar")
        answer = self.client.open(url, method=method, headers=headers, query_string=query, **kwargs)
        expected = expect if isinstance(expect, tuple) else (expect,)
        assert answer.status_code in expected, (method, url, answer.get_data()[:500])
        self.check(method, template, answer)
        return answer

    def check(self, method: str, template: str, answer) -> None:
        operation = self.spec["paths"][template][method.lower()]
        status = str(answer.status_code)
        where = f"{method} {template} → {status}"
        assert status in operation["responses"], f"{where} is not documented"
        self.seen.setdefault(operation["operationId"], set()).add(status)
        described = resolve(self.spec, operation["responses"][status])
        content = described.get("content", {})
        assert answer.mimetype in content, f"{where}: undocumented type {answer.mimetype}"
        schema = content[answer.mimetype].get("schema")
        if answer.mimetype == "application/json" and schema is not None:
            body = answer.get_json()
            errors = sorted(schema_validator(self.spec, schema).iter_errors(body), key=str)
            assert not errors, f"{where}: {errors[0].message} in {body}"
            if status[0] in "45":
                assert body["error"]["status"] == answer.status_code, where
        for name, header in described.get("headers", {}).items():
            header = resolve(self.spec, header)
            assert name in answer.headers, f"{where}: no {name} header"
            value: Any = answer.headers[name]
            if resolve(self.spec, header["schema"]).get("type") == "integer":
                value = int(value)
            errors = list(schema_validator(self.spec, header["schema"]).iter_errors(value))
            assert not errors, f"{where}: header {name}={value!r}: {errors[0].message}"


def test_responses_of_a_session_match_the_spec(app, spec):
    s = ApiSession(app, spec)
    course = "/api/v1/courses/{courseId}"
    assignment = course + "/assignments/{assignmentId}"
    submission = course + "/submissions/{submissionId}"
    c = {"courseId": "c1"}
    a = {**c, "assignmentId": "ps1"}
    teacher = s.token("teacher", "c1", "Instructor")
    ta = s.token("ta", "c1", "TeachingAssistant")
    alice = s.token("alice", "c1", "Learner")
    bob = s.token("bob", "c1", "Learner")
    s.token("carol", "c2", "Instructor")
    release = make_tar({"p1.ipynb": b"{}", "data/x.csv": b"1,2"})

    s.call("GET", "/healthz", expect=200)
    s.call("GET", "/readyz", expect=200)
    s.call("GET", "/api/v1/me", expect=401)
    s.call("GET", "/api/v1/me", "not-a-jwt", expect=401)
    s.call("GET", "/api/v1/me", alice, expect=200)
    s.call("GET", "/api/v1/limits", expect=401)
    limits = s.call("GET", "/api/v1/limits", alice, expect=200).get_json()
    assert limits["max_upload_bytes"] == UPLOAD_LIMIT
    s.call("GET", course + "/members", teacher, expect=200, **c)
    s.call("GET", course + "/members", alice, expect=403, **c)
    s.call("GET", course + "/members", teacher, expect=404, courseId="nowhere")
    s.call("GET", course + "/members", teacher, expect=403, courseId="c2")
    s.call("GET", course + "/members", teacher, expect=400, courseId="bad%20id")

    s.call("POST", assignment + "/releases", alice, expect=403, tar=release, **a)
    s.call("POST", assignment + "/releases", teacher, expect=415, data=release, **a)
    s.call("POST", assignment + "/releases", teacher, expect=400, tar=b"not a tar", **a)
    s.call(
        "POST",
        assignment + "/releases",
        teacher,
        expect=413,
        tar=make_tar({"big.bin": b"x" * UPLOAD_LIMIT}),
        **a,
    )
    s.call("POST", assignment + "/releases", ta, expect=201, tar=release, **a)
    s.call(
        "POST", assignment + "/releases", ta, expect=400, tar=release, query={"max_score": "0"}, **a
    )
    pointed = s.call(
        "POST",
        assignment + "/releases",
        ta,
        expect=201,
        tar=release,
        query={"max_score": "12.5"},
        **a,
    )
    assert pointed.get_json()["max_score"] == 12.5
    again = s.call("POST", assignment + "/releases", teacher, expect=201, tar=release, **a)
    s.call("GET", course + "/assignments", alice, expect=200, **c)
    download = s.call("GET", assignment + "/archive", alice, expect=200, **a)
    assert download.headers["X-Release-Version"] == str(again.get_json()["version"])
    s.call("GET", assignment + "/archive", alice, expect=404, courseId="c1", assignmentId="x")

    mine = s.call("POST", assignment + "/submissions", alice, expect=201, tar=release, **a)
    theirs = s.call("POST", assignment + "/submissions", bob, expect=201, tar=release, **a)
    mine_id, theirs_id = mine.get_json()["id"], theirs.get_json()["id"]
    s.call("GET", course + "/submissions", alice, expect=200, **c)
    s.call("GET", course + "/submissions", alice, expect=403, query={"student_id": "bob"}, **c)
    s.call("GET", course + "/submissions", ta, expect=400, query={"include_removed": "x"}, **c)
    s.call("GET", submission, alice, expect=200, submissionId=mine_id, **c)
    s.call("GET", submission, alice, expect=404, submissionId=theirs_id, **c)
    s.call("GET", submission + "/archive", alice, expect=200, submissionId=mine_id, **c)
    s.call("GET", submission + "/archive", alice, expect=404, submissionId=theirs_id, **c)

    collected = s.call("POST", assignment + "/collection", ta, expect=200, json={}, **a)
    names = tar_names(collected.get_data())
    assert names[0] == "manifest.json"
    assert sorted(names[1:]) == sorted(f"submissions/{i}.tar" for i in (mine_id, theirs_id))
    s.call("POST", assignment + "/collection", teacher, expect=200, **a)
    s.call(
        "POST",
        assignment + "/collection",
        teacher,
        expect=404,
        json={"submission_ids": [theirs_id + 1000]},
        **a,
    )
    s.call("POST", assignment + "/collection", teacher, expect=400, json={"since": "soon"}, **a)
    s.call("POST", assignment + "/collection", alice, expect=403, json={}, **a)

    stamp = mine.get_json()["timestamp"].encode()
    feedback = make_tar({"alice/timestamp.txt": stamp, "alice/p1.html": b"<p>ok</p>"})
    s.call("POST", assignment + "/feedback", teacher, expect=201, tar=feedback, **a)
    wrong = make_tar({"bob/timestamp.txt": stamp, "bob/p1.html": b"<p>?</p>"})
    s.call("POST", assignment + "/feedback", teacher, expect=404, tar=wrong, **a)
    s.call(
        "POST",
        assignment + "/feedback",
        teacher,
        expect=400,
        tar=make_tar({"alice/p1.html": b"<p/>"}),
        **a,
    )
    fetched = s.call("GET", assignment + "/feedback", alice, expect=200, **a)
    assert tar_names(fetched.get_data())[0] == "manifest.json"
    s.call("GET", assignment + "/feedback", alice, expect=403, query={"student_id": "bob"}, **a)
    s.call("GET", submission, alice, expect=200, submissionId=mine_id, **c)

    s.call("DELETE", submission, alice, expect=403, submissionId=theirs_id, **c)
    s.call("DELETE", submission, ta, expect=200, submissionId=theirs_id, **c)
    s.call("DELETE", submission, ta, expect=404, submissionId=theirs_id + 1000, **c)
    s.call("DELETE", assignment + "/release", teacher, expect=200, **a)
    s.call("DELETE", assignment + "/release", teacher, expect=409, **a)
    # Learners get 404 (an unreleased assignment is invisible to them) or 409: both documented.
    s.call("POST", assignment + "/submissions", alice, expect=(404, 409), tar=release, **a)
    s.call("POST", assignment + "/submissions", teacher, expect=409, tar=release, **a)

    pushed = s.call(
        "POST",
        course + "/grades",
        teacher,
        expect=200,
        json={
            "grades": [{"assignment_id": "ps1", "student_id": "alice", "score": 3, "max_score": 5}]
        },
        **c,
    )
    assert pushed.get_json()["counts"]["not_sendable"] == 1  # alice never launched from an LMS
    s.call("POST", course + "/grades", teacher, expect=400, json={"grades": [{"score": -1}]}, **c)
    s.call("POST", course + "/grades", alice, expect=403, json={"grades": []}, **c)
    s.call("GET", course + "/grades", ta, expect=200, query={"assignment_id": "ps1"}, **c)
    s.call("GET", course + "/grades", alice, expect=403, **c)

    # The dashboard's JSON twin, due dates, extensions, retry (tests/functional/test_dashboard.py)
    dated = s.call(
        "PUT", assignment + "/due-date", teacher, expect=200, json={"due_at": "2020-01-01"}, **a
    )
    assert dated.get_json()["source"] == "instructor"
    s.call("PUT", assignment + "/due-date", teacher, expect=400, json={"due_at": "soon"}, **a)
    s.call("PUT", assignment + "/due-date", alice, expect=403, json={"due_at": None}, **a)
    student = {**a, "studentId": "alice"}
    s.call(
        "PUT",
        assignment + "/extensions/{studentId}",
        ta,
        expect=200,
        json={"due_at": "2100-01-01T00:00Z"},
        **student,
    )
    s.call(
        "PUT",
        assignment + "/extensions/{studentId}",
        ta,
        expect=404,
        json={"due_at": None},
        **{**a, "studentId": "nobody"},
    )
    s.call("GET", assignment + "/due-dates", teacher, expect=200, **a)
    s.call("GET", course + "/dashboard", ta, expect=200, **c)
    s.call("GET", course + "/dashboard", alice, expect=403, **c)
    s.call(
        "GET",
        course + "/dashboard/students/{studentId}",
        teacher,
        expect=200,
        **{**c, "studentId": "alice"},
    )
    s.call("GET", course + "/my-assignments", alice, expect=200, **c)
    retry = {"assignment_id": "ps1", "student_id": "alice"}
    s.call("POST", course + "/grades/retry", teacher, expect=409, json=retry, **c)  # not_sendable
    with app.extensions["lti_exchange"].session_factory() as db:
        db.execute(sa_update(Grade).values(status="failed", reason="refused by the LMS"))
        db.commit()
    s.call("POST", course + "/grades/retry", teacher, expect=200, json=retry, **c)
    s.call("POST", course + "/grades/retry", alice, expect=403, json=retry, **c)

    refresh = s.refresh_token("alice", "c1")
    pair = s.call("POST", "/api/v1/token/refresh", expect=200, json={"refresh_token": refresh})
    assert pair.get_json()["refresh_token"] != refresh
    s.call("POST", "/api/v1/token/refresh", expect=401, json={"refresh_token": refresh})
    s.call("POST", "/api/v1/token/refresh", expect=400, json={"token": "x"})

    for operation in spec_operations(spec).values():
        seen = s.seen.get(operation["operationId"], set())
        assert any(status.startswith("2") for status in seen), (
            f"{operation['operationId']} is not exercised by this test; add a call"
        )

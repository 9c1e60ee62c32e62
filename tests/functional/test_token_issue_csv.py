"""``lti-exchange token issue --from-csv``: many tokens in one process, all or nothing.

In-process (``CliRunner``) against the live test server's database and keys; every token issued
is then used on the API, so a token that does not work fails the test.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat

import pytest
from click.testing import CliRunner

from lti_exchange.cli import main


def run(live_server, *args: str, stdin: str | None = None):
    return CliRunner(env=live_server.settings_env()).invoke(main, list(args), input=stdin)


def write_csv(path, rows: list[list[str]]) -> str:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return str(path)


def me(live_server, token: str) -> dict:
    answer = live_server.api("GET", "me", token)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_csv_issues_one_working_token_per_row(live_server, course, tmp_path):
    rows = [["username", "course", "role", "name", "email", "notes"]]
    rows.append(["teacher", course, "Instructor", "Tea Cher", "t@example.org", "x"])
    rows += [[f"s{i:03d}", course, "learner", f"Stu {i}", "", ""] for i in range(30)]
    done = run(live_server, "token", "issue", "--org", "csv-org", "--from-csv",
               write_csv(tmp_path / "people.csv", rows))  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "Ignored column(s): notes." in done.stderr
    assert "Issued 31 token(s)." in done.stderr
    issued = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [r["line"] for r in issued] == [str(n) for n in range(2, 33)]
    assert [r["username"] for r in issued] == ["teacher"] + [f"s{i:03d}" for i in range(30)]
    assert {r["role"] for r in issued[1:]} == {"Learner"}
    teacher = me(live_server, issued[0]["access_token"])
    assert (teacher["username"], teacher["role"]) == ("teacher", "Instructor")
    student = me(live_server, issued[7]["access_token"])
    assert (student["username"], student["course_id"]) == ("s006", course)


def test_one_bad_row_issues_nothing_and_every_bad_row_is_named(live_server, course, tmp_path):
    rows = [
        ["username", "course", "role", "ttl"],
        ["ok1", course, "Learner", ""],
        ["bad name", course, "Learner", ""],  # line 3
        ["ok2", course, "Teacher", ""],  # line 4: no such role
        ["ok3", course, "Learner", "-5"],  # line 5
        ["ok1", course, "Learner", ""],  # line 6: twice
        ["", course, "Learner", ""],  # line 7
    ]
    done = run(live_server, "token", "issue", "--org", "csv-org", "--from-csv",
               write_csv(tmp_path / "bad.csv", rows))  # fmt: skip
    assert done.exit_code == 1
    assert done.stdout == ""
    for words in (
        "line 3: username 'bad name' is not valid",
        "line 4: role 'Teacher' is not one of Instructor, TeachingAssistant, Learner",
        "line 5: ttl '-5' is not a positive number",
        "line 6: ok1 in " + course + " is already on line 2",
        "line 7: no username",
        "5 bad row(s)",
        "nothing was issued",
    ):
        assert words in done.stderr, (words, done.stderr)
    # ok1 (a good row) was not enrolled either: a single token for it is its first enrolment.
    single = run(live_server, "token", "issue", "--org", "csv-org", "--username", "ok1",
                 "--course", course, "--role", "Instructor")  # fmt: skip
    assert single.exit_code == 0, single.output
    assert "Warning" not in single.stderr


def test_an_unknown_org_id_is_named_by_line_and_nothing_is_issued(live_server, course, tmp_path):
    rows = [["username", "course", "role", "org"], ["a", course, "Learner", "csv-org"],
            ["b", course, "Learner", "987654"]]  # fmt: skip
    done = run(live_server, "token", "issue", "--from-csv", write_csv(tmp_path / "o.csv", rows))
    assert done.exit_code == 1
    assert "line 3: No organisation with id 987654." in done.stderr
    assert "1 bad row(s)" in done.stderr
    again = run(live_server, "token", "issue", "--org", "csv-org", "--username", "a",
                "--course", course, "--role", "Learner")  # fmt: skip
    assert "Warning" not in again.stderr


def test_json_output_to_a_private_file_and_role_changes_are_warned(live_server, course, tmp_path):
    first = run(live_server, "token", "issue", "--org", "csv-org", "--username", "ta",
                "--course", course, "--role", "Learner")  # fmt: skip
    assert first.exit_code == 0, first.output
    rows = [["student_id", "course_id", "Role"], ["ta", course, "TeachingAssistant"]]
    out = tmp_path / "tokens.json"
    done = run(live_server, "token", "issue", "--org", "csv-org", "--ttl", "600", "--json",
               "--from-csv", write_csv(tmp_path / "t.csv", rows), "--output", str(out))  # fmt: skip
    assert done.exit_code == 0, done.output
    assert done.stdout == ""
    assert "line 2: ta was Learner in " + course + " and is now TeachingAssistant" in done.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    (token,) = json.loads(out.read_text())
    assert (token["line"], token["role"], token["expires_in"]) == (2, "TeachingAssistant", 600)
    assert me(live_server, token["access_token"])["role"] == "TeachingAssistant"
    exists = run(live_server, "token", "issue", "--org", "csv-org", "--from-csv",
                 write_csv(tmp_path / "t2.csv", rows), "--output", str(out))  # fmt: skip
    assert exists.exit_code == 1 and "Cannot create" in exists.stderr


@pytest.mark.parametrize(
    "args, words",
    [
        (["--username", "x", "--from-csv", "-"], "drop --username"),
        (["--org", "o", "--username", "x", "--course", "c"], "Missing option '--role'"),
        (["--org", "o"], "'--username', '--course', '--role' (or give --from-csv FILE)"),
    ],
)
def test_option_mistakes_are_explained(live_server, args, words):
    done = run(live_server, "token", "issue", *args, stdin="username,course,role\n")
    assert done.exit_code == 2
    assert words in done.output


def test_a_header_without_the_needed_columns_is_refused(live_server):
    done = run(live_server, "token", "issue", "--org", "o", "--from-csv", "-",
               stdin="user,course\nalice,c1\n")  # fmt: skip
    assert done.exit_code == 1
    assert "line 1: the header row has no username, role column" in done.stderr

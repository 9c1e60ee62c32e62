"""The ``lti-exchange`` command: serve, db, token, keys, login.

A thin layer: each command parses its options, calls a service and prints the answer. Modules of
``lti_exchange`` are imported inside the commands, so that ``--help`` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from lti_exchange.app_objects import AppObjects
    from lti_exchange.config import Settings


def _settings() -> Settings:
    from lti_exchange.config import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc


def _note_data_dir(settings: Settings) -> None:
    """Say on stderr which data directory this command uses, and when it is a new one."""
    uses = not settings.database_url or not settings.keys_dir or not settings.storage_url
    if not uses:
        return
    data_dir = settings.resolved_data_dir
    if data_dir.exists():
        click.echo(f"lti-exchange: data directory {data_dir}", err=True)
    else:
        click.echo(
            f"lti-exchange: creating a new data directory {data_dir} (new database and signing "
            "keys). A service running with another data directory refuses what is made here: "
            "set LTI_EXCHANGE_DATA_DIR to the service's.",
            err=True,
        )


def _state(settings: Settings | None = None, quiet: bool = False) -> AppObjects:
    from lti_exchange.app_objects import build_app_objects

    settings = settings or _settings()
    if not quiet:
        _note_data_dir(settings)
    return build_app_objects(settings)


class _ProgressLine:
    """``progress(done, total)`` in bytes, as a line on stderr at most every 2 s and at the end."""

    def __init__(self, verb: str) -> None:
        self.verb = verb
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last < 2:
            return
        self.last = now
        percent = 100 * done // total if total else 100
        click.echo(
            f"{self.verb} {done / 1e6:,.1f} of {total / 1e6:,.1f} MB ({percent} %)", err=True
        )


def _emit(as_json: bool, data: Any, text: str) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)


@click.group()
@click.version_option(package_name="lti-exchange")
def main() -> None:
    """lti-exchange: an LTI 1.3-integrated exchange service for nbgrader."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option("--workers", default=2, show_default=True, type=int, help="Worker processes.")
@click.option("--threads", default=4, show_default=True, type=int, help="Threads per worker.")
def serve(host: str, port: int, workers: int, threads: int) -> None:
    """Run the service (embedded default: SQLite + storage + keys under the data dir)."""
    import os

    from lti_exchange.serving.metrics_dir import prepare_multiprocess_dir

    # First, before anything imports prometheus_client; the worker below shares the directory,
    # so /metrics shows its grade sends too.
    prepare_multiprocess_dir()
    from lti_exchange.migrate import ensure_schema

    _check_port_free(host, port)
    # The workers build LMS-facing URLs from this when LTI_EXCHANGE_BASE_URL is unset (never
    # from the Host header); they inherit the environment.
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    os.environ["LTI_EXCHANGE_BIND"] = bind
    settings = _settings()
    state = _state(settings, quiet=True)
    try:
        ensure_schema(state.engine, settings)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc
    state.token_keys.ensure_key()
    state.tool_keys.ensure_key()
    state.engine.dispose()
    url = settings.public_base_url or f"http://{bind}"
    click.echo(f"lti-exchange serving on {url} (data: {settings.resolved_data_dir})", err=False)
    if not settings.public_base_url:
        click.echo(
            f"Warning: {host} is a wildcard address, so the LTI endpoints cannot name this "
            "service to an LMS and will refuse; set LTI_EXCHANGE_BASE_URL to the public URL.",
            err=True,
        )
    import atexit
    import subprocess

    from lti_exchange.serving.gunicorn_app import run_gunicorn

    grade_worker = subprocess.Popen([sys.executable, "-m", "lti_exchange.cli", "worker"])
    atexit.register(grade_worker.terminate)
    run_gunicorn(bind, workers=workers, threads=threads)


def _check_port_free(host: str, port: int) -> None:
    """Fail with one clear line when ``host:port`` is taken (gunicorn would retry and log)."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise click.ClickException(f"Cannot listen on {host!r}: {exc.strerror}.") from exc
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn does
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise click.ClickException(
                    f"port {port} is in use on {host}: stop what uses it (another "
                    "`lti-exchange serve`?) or choose another with --port."
                ) from exc
            raise click.ClickException(f"Cannot listen on {host}:{port}: {exc.strerror}.") from exc


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Migrate the configured database to the newest schema."""
    from lti_exchange.migrate import SchemaOutOfDate, schema_state, upgrade

    state = _state()
    before = schema_state(state.engine)
    try:
        upgrade(state.engine)
    except SchemaOutOfDate as exc:
        raise click.ClickException(str(exc)) from exc
    state.token_keys.ensure_key()
    state.tool_keys.ensure_key()
    if before.status == "newer":
        click.echo(
            f"Database left at {before.current}, a later release's schema (this release's is "
            f"{before.head}); this release runs on it."
        )
    else:
        click.echo(f"Database upgraded from {before.current or 'empty'} to {before.head}.")


@db.command("current")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def db_current(as_json: bool) -> None:
    """Show the database's schema revision and the newest one."""
    from lti_exchange.migrate import current_revision, head_revision

    state = _state()
    current, head = current_revision(state.engine), head_revision()
    _emit(as_json, {"current": current, "head": head}, f"current: {current}  head: {head}")


@main.group()
def platform() -> None:
    """LMS registrations (one organisation each)."""


def _registration_json(row) -> dict[str, Any]:
    return {
        "org_id": row.org_id,
        "name": row.organisation_name,
        "issuer": row.issuer,
        "client_id": row.client_id,
        "deployment_ids": sorted(d.deployment_id for d in row.deployments),
        "auth_login_url": row.auth_login_url,
        "auth_token_url": row.auth_token_url,
        "auth_audience": row.auth_audience,
        "key_set_url": row.key_set_url,
        "notebook_url_template": row.notebook_url_template,
        "username_claim": row.username_claim,
    }


@platform.command("add")
@click.option("--issuer", required=True, help="The platform's issuer (iss), exactly.")
@click.option("--client-id", required=True, help="The client id the LMS gave this tool.")
@click.option(
    "--deployment-id", "deployment_ids", multiple=True, required=True, help="Allowed deployment."
)
@click.option("--auth-login-url", required=True, help="The LMS OIDC authorisation endpoint.")
@click.option("--auth-token-url", required=True, help="The LMS OAuth2 token endpoint.")
@click.option("--key-set-url", required=True, help="The LMS JWKS URL.")
@click.option("--auth-audience", default=None, help="aud of client assertions (Brightspace).")
@click.option("--name", default=None, help="A name for the organisation.")
@click.option(
    "--notebook-url-template",
    default=None,
    help="Where users' notebook servers live, e.g. https://hub.example.edu/hub/user-redirect/ "
    "or https://hub.example.edu/user/{username}/ ({username} and {course_id} are filled in).",
)
@click.option(
    "--username-claim",
    default=None,
    help="Comma-separated rule for student ids (default: LTI_EXCHANGE_LTI_USERNAME_RULE).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def platform_add(
    issuer,
    client_id,
    deployment_ids,
    auth_login_url,
    auth_token_url,
    key_set_url,
    auth_audience,
    name,
    notebook_url_template,
    username_claim,
    as_json,
):
    """Register an LMS; prints the new organisation's id. Adding again updates it."""
    from lti_exchange.lti.registrations import RegistrationInput, upsert_registration

    for url in (auth_login_url, auth_token_url, key_set_url):
        if not url.startswith(("https://", "http://")):
            raise click.ClickException(f"{url!r} is not an http(s) URL.")
    state = _state()
    with state.session_factory() as session:
        try:  # a bad notebook URL template is refused before anything is written
            row = upsert_registration(
                session,
                RegistrationInput(
                    issuer=issuer,
                    client_id=client_id,
                    deployment_ids=list(deployment_ids),
                    auth_login_url=auth_login_url,
                    auth_token_url=auth_token_url,
                    key_set_url=key_set_url,
                    auth_audience=auth_audience,
                    name=name,
                    notebook_url_template=notebook_url_template,
                    username_claim=username_claim,
                ),
            )
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        session.commit()
        data = _registration_json(row)
    _emit(
        as_json, data, f"Registered {issuer} (client {client_id}) as organisation {data['org_id']}."
    )


@platform.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def platform_list(as_json: bool) -> None:
    """List the registered LMSs."""
    from lti_exchange.lti.registrations import list_registrations

    state = _state()
    with state.session_factory() as session:
        rows = [_registration_json(r) for r in list_registrations(session)]
    text = "\n".join(
        f"org {r['org_id']}: {r['issuer']} client {r['client_id']} "
        f"deployments {', '.join(r['deployment_ids'])}"
        for r in rows
    )
    _emit(as_json, rows, text or "No LMS registered yet: use `lti-exchange platform add`.")


@platform.command("remove")
@click.option("--issuer", required=True, help="The platform's issuer.")
@click.option("--client-id", required=True, help="The client id.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def platform_remove(issuer: str, client_id: str, as_json: bool) -> None:
    """Remove a registration: its launches stop working; the organisation's data is kept."""
    from lti_exchange.lti.registrations import remove_registration

    state = _state()
    with state.session_factory() as session:
        removed = remove_registration(session, issuer, client_id)
        session.commit()
    if not removed:
        raise click.ClickException(f"No registration for {issuer} with client id {client_id}.")
    _emit(
        as_json,
        {"removed": True, "issuer": issuer, "client_id": client_id},
        f"Removed the registration of {issuer} (client {client_id}).",
    )


@platform.command("invite")
@click.option("--name", default=None, help="A name for the organisation it will create.")
@click.option(
    "--ttl",
    type=click.IntRange(60, 30 * 24 * 3600),
    default=24 * 3600,
    show_default=True,
    help="Seconds the URL stays valid.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def platform_invite(name: str | None, ttl: int, as_json: bool) -> None:
    """Print a one-time LTI Dynamic Registration URL to paste into an LMS (Moodle, Canvas,
    Brightspace, …); the LMS that opens it first is registered as a new organisation."""
    from datetime import timedelta

    from lti_exchange.lti.dynamic_registration import create_invitation, invitation_url
    from lti_exchange.lti.store import DatabaseStore

    if name is not None and not 0 < len(name.strip()) <= 150:
        raise click.ClickException("--name must be 1 to 150 characters.")
    settings = _settings()
    base = settings.public_base_url
    if not base:
        raise click.ClickException(
            "This exchange does not know its public address: set LTI_EXCHANGE_BASE_URL (e.g. "
            "https://exchange.example.edu) as the service has it."
        )
    state = _state(settings)
    token = create_invitation(DatabaseStore(state.session_factory), name and name.strip(), ttl)
    url = invitation_url(base, token)
    expires = (datetime.now(UTC) + timedelta(seconds=ttl)).isoformat(timespec="seconds")
    _emit(
        as_json,
        {"registration_url": url, "expires_at": expires, "name": name},
        f"{url}\nPaste this URL into the LMS's tool registration (LTI Advantage / dynamic "
        f"registration). It works once, until {expires}.",
    )


@main.group()
def token() -> None:
    """Issue and revoke tokens."""


@token.command("issue")
@click.option("--org", default=None, help="Organisation id, or a name (created if new).")
@click.option("--username", default=None, help="The nbgrader student id.")
@click.option("--course", default=None, help="The nbgrader course id.")
@click.option(
    "--role",
    default=None,
    type=click.Choice(["Instructor", "TeachingAssistant", "Learner"]),
    help="Role in the course.",
)
@click.option("--ttl", type=int, default=None, help="Lifetime in seconds.")
@click.option("--name", default=None, help="Full name.")
@click.option("--email", default=None, help="Email address.")
@click.option("--lms-user-id", default=None, help="The user's id in the LMS.")
@click.option("--course-title", default=None, help="Course title.")
@click.option(
    "--from-csv",
    "csv_file",
    type=click.File("r", encoding="utf-8-sig"),
    default=None,
    help="Issue one token per row of this CSV file ('-': standard input). Columns: username, "
    "course, role; optional org, ttl, name, email, lms_user_id, course_title. --org and --ttl "
    "are the defaults for rows without them. Any bad row: nothing is issued.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="With --from-csv: write the tokens to this new file (mode 0600), not to stdout.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def token_issue(
    org,
    username,
    course,
    role,
    ttl,
    name,
    email,
    lms_user_id,
    course_title,
    csv_file,
    output,
    as_json,
):
    """Print an access token, creating the user, course and enrolment if needed.

    With --from-csv, print one token per row (CSV with username, course, role, org_id,
    expires_in, access_token; --json: a JSON list), creating what each row needs.
    """
    from lti_exchange.migrate import SchemaOutOfDate, ensure_schema

    if csv_file is not None:
        if ttl is not None and ttl <= 0:
            raise click.BadParameter("must be a positive number of seconds", param_hint="--ttl")
        given = [
            f"--{n}"
            for n, v in (
                ("username", username),
                ("course", course),
                ("role", role),
                ("name", name),
                ("email", email),
                ("lms-user-id", lms_user_id),
                ("course-title", course_title),
            )
            if v
        ]
        if given:
            raise click.UsageError(
                f"--from-csv takes each row's values from the file; drop {', '.join(given)} "
                "(--org and --ttl are the defaults for rows without them)."
            )
    else:
        missing = [
            f"'--{n}'"
            for n, v in (("org", org), ("username", username), ("course", course), ("role", role))
            if not v
        ]
        if missing:
            raise click.UsageError(
                f"Missing option {', '.join(missing)} (or give --from-csv FILE)."
            )
        if output:
            raise click.UsageError("--output goes with --from-csv.")
    settings = _settings()
    state = _state(settings)
    try:
        ensure_schema(state.engine, settings)
    except SchemaOutOfDate as exc:
        raise click.ClickException(str(exc)) from exc
    if csv_file is not None:
        _issue_from_csv(state, csv_file, org, ttl, output, as_json)
        return
    _issue_one(
        state,
        org,
        username,
        course,
        role,
        ttl,
        as_json,
        course_title=course_title,
        lms_user_id=lms_user_id,
        name=name,
        email=email,
    )


def _issue_one(state, org, username, course, role, ttl, as_json, **profile) -> None:
    from lti_exchange.errors import ApiError
    from lti_exchange.services.operators import enrol_for_token
    from lti_exchange.tokens.refresh import token_pair

    with state.session_factory() as session:
        try:
            issued = enrol_for_token(
                session, org=org, username=username, course_code=course, role=role, **profile
            )
            session.commit()
        except ApiError as exc:
            raise click.ClickException(exc.message) from exc
        if issued.previous_role:
            click.echo(
                f"Warning: {username} was {issued.previous_role} in {course} and is now {role} "
                "(a user has one role per course, and their earlier tokens now act as "
                f"{role}). For another person, use another --username.",
                err=True,
            )
        data = token_pair(state, session, issued.enrolment, with_refresh=False, ttl=ttl)
    access = data["access_token"]
    _emit(as_json, data, access)


TOKEN_CSV_COLUMNS = (
    "line",
    "username",
    "course_id",
    "role",
    "org_id",
    "expires_in",
    "access_token",
)


def _issue_from_csv(state, csv_file, org, ttl, output, as_json) -> None:
    """``token issue --from-csv``: check every row, then issue all in one transaction."""
    import csv
    import io
    import os

    from lti_exchange.services.token_batch import issue_rows, parse_rows

    where = getattr(csv_file, "name", "the CSV file")
    try:
        parsed = parse_rows(csv_file, org, ttl)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{where} is not a readable UTF-8 CSV file ({exc}).") from exc
    if parsed.ignored_columns:
        click.echo(f"Ignored column(s): {', '.join(parsed.ignored_columns)}.", err=True)
    errors = parsed.errors
    if not errors:
        with state.session_factory() as session:
            issued = issue_rows(state, session, parsed.rows)
        errors = issued.errors
    if errors:
        for error in errors:
            click.echo(f"{where}: {error}", err=True)
        raise click.ClickException(
            f"{len(errors)} bad row(s) in {where}; nothing was issued. Fix them and run the "
            "command again with the whole file."
        )
    for warning in issued.warnings:
        click.echo(f"Warning: {warning}", err=True)
    if as_json:
        text = json.dumps(issued.tokens, indent=2, default=str) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(
            buffer, TOKEN_CSV_COLUMNS, extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(issued.tokens)
        text = buffer.getvalue()
    if output:
        try:
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise click.ClickException(
                f"Cannot create {output} ({exc.strerror}); the tokens were issued: run the "
                "command again (it re-issues them) with another --output."
            ) from exc
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        click.echo(f"Issued {len(issued.tokens)} token(s) into {output}.", err=True)
    else:
        click.echo(text, nl=False)
        click.echo(f"Issued {len(issued.tokens)} token(s).", err=True)


@token.command("revoke")
@click.option("--user", "username", required=True, help="The nbgrader student id.")
@click.option("--course", default=None, help="Only this course.")
@click.option("--org", default=None, help="Only this organisation (id or name).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def token_revoke(username, course, org, as_json):
    """Revoke the user's tokens issued until now (in one course, or all of them)."""
    from lti_exchange.errors import ApiError
    from lti_exchange.services.operators import revoke_tokens

    state = _state()
    with state.session_factory() as session:
        try:
            result = revoke_tokens(session, username, course, org)
        except ApiError as exc:
            raise click.ClickException(exc.message) from exc
        session.commit()
    _emit(
        as_json,
        {
            "username": username,
            "courses": result.courses,
            "refresh_tokens_revoked": result.refresh_tokens_revoked,
            "revoked_at": result.revoked_at.isoformat(),
        },
        f"Revoked the tokens of {username} in {len(result.courses)} course(s): "
        f"{', '.join(result.courses)} ({result.refresh_tokens_revoked} refresh token(s)); "
        "they must launch from the LMS again.",
    )


@main.group()
def keys() -> None:
    """Signing keys."""


@keys.command("rotate")
@click.option(
    "--only",
    type=click.Choice(["token", "tool"]),
    default=None,
    help="Rotate only the token-signing key or only the LTI tool key (default: both).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def keys_rotate(only: str | None, as_json: bool) -> None:
    """Add new signing keys; older ones keep verifying until the overlap window ends.

    The token-signing key signs our access tokens; the LTI tool key (published at /lti/jwks)
    signs client assertions and deep-linking responses.
    """
    settings = _settings()
    state = _state()
    overlap = max(settings.key_rotation_overlap, settings.access_token_ttl)
    result, lines = {}, []
    for name, ring in (("token", state.token_keys), ("tool", state.tool_keys)):
        if only and only != name:
            continue
        new = ring.generate()
        signer = ring.active
        signs_from = datetime.now(UTC) if signer.kid == new.kid else _utc(ring.signs_from(new))
        result[name] = {
            "active": new.kid,
            "signs_from": signs_from.isoformat(timespec="seconds"),
            "signing_until_then": signer.kid,
            "pruned": ring.prune(overlap),
        }
        when = (
            "signs now"
            if signer.kid == new.kid
            else f"verifies now and signs from {signs_from:%Y-%m-%d %H:%M:%S} UTC "
            f"(LTI_EXCHANGE_KEY_ACTIVATION_DELAY; until then {signer.kid} signs)"
        )
        pruned = len(result[name]["pruned"])
        lines.append(f"New {name} key {new.kid} {when}; pruned {pruned} old key(s).")
    _emit(as_json, result, "\n".join(lines))


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def keys_list(as_json: bool) -> None:
    """List the token-signing and LTI tool keys (the newest past its activation delay signs)."""
    state = _state()
    rows = [
        {
            "kind": kind,
            "kid": k.kid,
            "created": _utc(k.created).isoformat(),
            "signs_from": _utc(ring.signs_from(k)).isoformat(),
            "signing": k.kid == ring.active.kid,
        }
        for kind, ring in (("token", state.token_keys), ("tool", state.tool_keys))
        for k in ring.all()
    ]
    text = "\n".join(
        f"{r['kind']:6} {r['kid']}  {r['created']}{'  (signing)' if r['signing'] else ''}"
        for r in rows
    )
    _emit(as_json, rows, text or "no keys")


@main.command()
@click.option("--url", required=True, help="The exchange service URL, e.g. http://127.0.0.1:8000")
@click.option("--token", "access_token", required=True, help="Your access token.")
@click.option("--refresh-token", default=None, help="Your refresh token, if you have one.")
@click.option(
    "--token-file", default=None, help="Token store (default ~/.lti-exchange/tokens.json)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def login(url, access_token, refresh_token, token_file, as_json):
    """Check your token with the service and store it (with the URL) so nbgrader can use it."""
    from pathlib import Path

    from nbgrader_plugin.connect import LoginProblem, check_login, service_base_url
    from nbgrader_plugin.tokens import TokenEntry, TokenStore

    try:
        base = service_base_url(url)
        entry = TokenEntry.from_access_token(access_token, base, refresh_token)
    except ValueError as exc:  # LoginProblem is one
        message = (
            str(exc) if isinstance(exc, LoginProblem) else f"That is not an access token ({exc})."
        )
        raise click.ClickException(message) from exc
    try:
        me = check_login(base, access_token)
    except LoginProblem as exc:
        raise click.ClickException(str(exc)) from exc
    store = TokenStore(Path(token_file).expanduser() if token_file else None)
    store.save(entry)
    _emit(
        as_json,
        {**me, "token_file": str(store.path)},
        f"Logged in as {me['username']} ({me['role']}) in course {me['course_id']} at {base}; "
        f"tokens stored in {store.path}",
    )


@main.group()
def handoff() -> None:
    """The Jupyter server extension that takes tokens from the LTI landing page."""


@handoff.command("enable")
@click.option("--user", is_flag=True, help="For this user only (~/.jupyter), not the environment.")
def handoff_enable(user: bool) -> None:
    """Enable the extension in Jupyter (a wheel install does this; an editable one does not)."""
    from nbgrader_plugin.server_extension.enable import config_root, enable

    path, changed = enable(config_root(user))
    click.echo(
        f"{'Wrote' if changed else 'Already enabled by'} {path}; restart the Jupyter server. "
        "`jupyter server extension list` shows nbgrader_plugin.server_extension enabled."
    )


def _course_for(session, course: str, org: str | None):
    from lti_exchange.errors import ApiError
    from lti_exchange.services.operators import find_course

    try:
        return find_course(session, course, org)
    except ApiError as exc:
        raise click.ClickException(exc.message) from exc


@main.group()
def grades() -> None:
    """Grades sent to the LMS."""


@grades.command("status")
@click.option("--course", required=True, help="The nbgrader course id.")
@click.option("--assignment", default=None, help="Only this assignment.")
@click.option("--org", default=None, help="Organisation id or name (when course ids repeat).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def grades_status(course: str, assignment: str | None, org: str | None, as_json: bool) -> None:
    """Per student: pending, sent (when), failed (why) or not sendable (why)."""
    from lti_exchange.errors import ApiError
    from lti_exchange.services.context import ServiceContext
    from lti_exchange.services.grades import GradeService

    state = _state()
    with state.session_factory() as session:
        service = GradeService(ServiceContext(session, state.storage, state.limits))
        try:
            status = service.course_status(_course_for(session, course, org), assignment)
        except ApiError as exc:
            raise click.ClickException(exc.message) from exc
    counts = {name: n for name, n in status["counts"].items() if n}
    lines = [
        f"{g['assignment_id']:20} {g['student_id']:24} {g['score']:>7g}/{g['max_score']:<7g} "
        f"{g['status']:12} {g['sent_at'] or g['reason'] or ''}"
        for g in status["grades"]
    ]
    lines.append("totals: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"))
    _emit(
        as_json,
        {"course_id": course, "counts": counts, "grades": status["grades"]},
        "\n".join(lines),
    )


@main.command()
@click.option(
    "--once",
    is_flag=True,
    help="Run the housekeeping jobs and send the grades that are due now, then exit (for cron).",
)
@click.option("--interval", default=2.0, show_default=True, help="Seconds between passes.")
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Serve this worker's Prometheus metrics (grade sends) on this port (all interfaces).",
)
def worker(once: bool, interval: float, metrics_port: int | None) -> None:
    """Send queued grades to the LMS and run the housekeeping jobs (purges, partial-upload sweep,
    roster syncs) until stopped (Ctrl-C); restarts lose nothing."""
    import signal
    import threading

    from lti_exchange.logging_setup import configure_logging
    from lti_exchange.worker import GradeWorker, summarise

    state = _state()
    configure_logging(state.settings.log_level, state.settings.log_format)
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port)
    grade_worker = GradeWorker(state)
    if once:
        grade_worker.jobs.run_due()
        click.echo(summarise(grade_worker.run_once()))
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    click.echo(f"grade worker {grade_worker.worker_id} running (Ctrl-C to stop)")
    with contextlib.suppress(KeyboardInterrupt):
        grade_worker.run_forever(interval=interval, stop=stop)


@main.group()
def roster() -> None:
    """The class roster from the LMS (NRPS)."""


@roster.command("sync")
@click.option("--course", required=True, help="The nbgrader course id.")
@click.option("--org", default=None, help="Organisation id or name (when course ids repeat).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def roster_sync(course: str, org: str | None, as_json: bool) -> None:
    """Import the course's members from the LMS (users, enrolments, roles, who left)."""
    from lti_exchange.lti.nrps import RosterUnavailable, sync_roster
    from lti_exchange.lti.platform_client import PlatformError

    state = _state()
    with state.session_factory() as session:
        row = _course_for(session, course, org)
        try:
            result = sync_roster(state, session, row)
        except (RosterUnavailable, PlatformError) as exc:
            raise click.ClickException(str(exc)) from exc
    data = result.as_dict()
    _emit(
        as_json,
        {"course_id": course, **data},
        f"Roster of {course}: {data['members']} member(s), {data['created']} new, "
        f"{data['deactivated']} marked as having left.",
    )


@main.group()
def course() -> None:
    """Which nbgrader course an LMS course (context) is."""


@course.command("map")
@click.option("--org", required=True, help="Organisation id or name (see `platform list`).")
@click.option("--context", "context_id", required=True, help="The LMS context (course) id.")
@click.option("--course-id", "course_code", required=True, help="The nbgrader course id.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def course_map(org: str, context_id: str, course_code: str, as_json: bool) -> None:
    """Map an LMS context to an nbgrader course id: its course is renamed (assignments,
    submissions, grades and enrolments stay with it); a context nobody launched yet gets it at
    its first launch. Refused when another course has the id."""
    from lti_exchange.errors import ApiError
    from lti_exchange.services.course_mapping import map_context

    state = _state()
    with state.session_factory() as session:
        try:
            result = map_context(session, org, context_id, course_code)
            session.commit()
        except ApiError as exc:
            raise click.ClickException(exc.message) from exc
    texts = {
        "unchanged": f"Context {context_id!r} is already course {course_code!r}; nothing changed.",
        "created": f"Context {context_id!r} is now course {course_code!r} (created; its first "
        "launch uses it).",
        "adopted": f"Context {context_id!r} is now the existing course {course_code!r}.",
        "renamed": f"Renamed course {result.previous_course_id!r} to {course_code!r} (context "
        f"{context_id!r}): its {result.assignments} assignment(s), {result.submissions} "
        "submission(s), grades and enrolments stay with it. Tokens issued for the old id stop "
        "working for it: users launch again from the LMS, and nbgrader's course_id must become "
        f"{course_code!r}.",
    }
    _emit(as_json, result.as_dict(), texts[result.action])


@main.group()
def storage() -> None:
    """The blob storage."""


@storage.command("sweep")
@click.option(
    "--older-than",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds untouched (default: LTI_EXCHANGE_PARTIAL_UPLOAD_GRACE).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def storage_sweep(older_than: float | None, as_json: bool) -> None:
    """Delete partial uploads left by killed processes (the worker does this every 5 minutes)."""
    from lti_exchange.jobs.uploads import sweep_partial_uploads
    from lti_exchange.storage import StorageUnavailable

    try:
        removed = sweep_partial_uploads(_state(), older_than)
    except StorageUnavailable as exc:
        raise click.ClickException(f"The storage failed: {exc}.") from exc
    _emit(as_json, {"removed": removed}, f"Removed {removed} partial upload(s).")


@storage.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--verify",
    is_flag=True,
    help="Also read every blob and compare its SHA-256 with its row's (reads all stored "
    "bytes: progress goes to stderr).",
)
def storage_check(as_json: bool, verify: bool) -> None:
    """Report rows whose blob is missing or damaged (a size other than recorded; with
    --verify, bytes other than recorded) and blobs that no row references (exit 1 if any;
    blobs younger than LTI_EXCHANGE_PARTIAL_UPLOAD_GRACE are uploads in progress: exit 0)."""
    from lti_exchange.services.blob_inventory import check_inventory
    from lti_exchange.storage import StorageUnavailable

    settings = _settings()
    state = _state(settings)
    grace = settings.partial_upload_grace
    try:
        with state.session_factory() as session:
            report = check_inventory(
                session, state.storage, grace, verify=verify, progress=_ProgressLine("verified")
            )
    except StorageUnavailable as exc:
        raise click.ClickException(f"The storage failed: {exc}.") from exc
    lines = [f"{report.blobs} blob(s) stored, {report.rows} row(s) point to blobs."]
    lines += [
        f"missing blob: {m['table']} {m['id']} -> {m['key']} (restore the blob, or the database "
        "and bucket from matching backups: see docs/operations.md)"
        for m in report.missing
    ]
    lines += [
        f"damaged blob: {d['table']} {d['id']} -> {d['key']}: {d['reason']} (restore the blob "
        "from a backup; otherwise it has to be sent again: see docs/operations.md)"
        for d in report.damaged
    ]
    lines += [
        f"orphan blob: {o['key']} ({o['size']} bytes, {o['age_seconds']} s old, older than "
        f"LTI_EXCHANGE_PARTIAL_UPLOAD_GRACE={grace} s: the worker's next sweep deletes it; if it "
        "stays, check that `lti-exchange worker` runs)"
        for o in report.orphans
    ]
    lines += [
        f"in progress: {o['key']} ({o['size']} bytes, {o['age_seconds']} s old, no row yet: an "
        "upload being received, or an orphan the worker deletes once older than "
        f"LTI_EXCHANGE_PARTIAL_UPLOAD_GRACE={grace} s)"
        for o in report.in_progress
    ]
    if report.ok:
        lines.append("Storage and database agree.")
    _emit(as_json, report.as_dict(), "\n".join(lines))
    if not report.ok:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

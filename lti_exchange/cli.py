"""The ``lti-exchange`` command: serve, db, token, keys, login."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click

from lti_exchange.config import SettingsError, load_settings


def _settings():
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc


def _state():
    from lti_exchange.state import build_state

    return build_state(_settings())


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
    from lti_exchange.migrate import ensure_schema

    settings = _settings()
    state = _state()
    try:
        ensure_schema(state.engine, settings)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc
    state.token_keys.ensure_key()
    state.engine.dispose()
    url = settings.base_url or f"http://{host}:{port}"
    click.echo(f"lti-exchange serving on {url} (data: {settings.resolved_data_dir})", err=False)
    from lti_exchange.server import run_gunicorn

    run_gunicorn(f"{host}:{port}", workers=workers, threads=threads)


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Migrate the configured database to the newest schema."""
    from lti_exchange.migrate import current_revision, head_revision, upgrade

    state = _state()
    before = current_revision(state.engine)
    upgrade(state.engine)
    state.token_keys.ensure_key()
    click.echo(f"Database upgraded from {before or 'empty'} to {head_revision()}.")


@db.command("current")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def db_current(as_json: bool) -> None:
    """Show the database's schema revision and the newest one."""
    from lti_exchange.migrate import current_revision, head_revision

    state = _state()
    current, head = current_revision(state.engine), head_revision()
    _emit(as_json, {"current": current, "head": head}, f"current: {current}  head: {head}")


@main.group()
def token() -> None:
    """Issue and revoke tokens."""


@token.command("issue")
@click.option("--org", required=True, help="Organisation id, or a name (created if new).")
@click.option("--username", required=True, help="The nbgrader student id.")
@click.option("--course", required=True, help="The nbgrader course id.")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["Instructor", "TeachingAssistant", "Learner"]),
    help="Role in the course.",
)
@click.option("--ttl", type=int, default=None, help="Lifetime in seconds.")
@click.option("--name", default=None, help="Full name.")
@click.option("--email", default=None, help="Email address.")
@click.option("--lms-user-id", default=None, help="The user's id in the LMS.")
@click.option("--course-title", default=None, help="Course title.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def token_issue(org, username, course, role, ttl, name, email, lms_user_id, course_title, as_json):
    """Print an access token, creating the user, course and enrolment if needed."""
    from lti_exchange.errors import ApiError
    from lti_exchange.migrate import SchemaOutOfDate, ensure_schema
    from lti_exchange.services.provisioning import find_or_create_org, provision

    settings = _settings()
    state = _state()
    try:
        ensure_schema(state.engine, settings)
    except SchemaOutOfDate as exc:
        raise click.ClickException(str(exc)) from exc
    with state.session_factory() as session:
        try:
            organisation = find_or_create_org(session, org)
            enrolment = provision(
                session,
                org=organisation,
                username=username,
                course_code=course,
                role=role,
                course_title=course_title,
                lms_user_id=lms_user_id,
                name=name,
                email=email,
            )
            session.commit()
        except ApiError as exc:
            raise click.ClickException(exc.message) from exc
        user, course_row = enrolment.user, enrolment.course
        access = state.tokens.mint(
            user_id=user.id,
            org_id=organisation.id,
            username=user.username,
            course_id=course_row.code,
            course_title=course_row.title,
            role=enrolment.role,
            lms_user_id=user.lms_user_id,
            name=user.name,
            email=user.email,
            ttl=ttl,
        )
    data = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ttl or settings.access_token_ttl,
        "username": username,
        "course_id": course,
        "role": role,
        "org_id": organisation.id,
    }
    _emit(as_json, data, access)


@token.command("revoke")
@click.option("--user", "username", required=True, help="The nbgrader student id.")
@click.option("--course", default=None, help="Only this course.")
@click.option("--org", default=None, help="Only this organisation (id or name).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def token_revoke(username, course, org, as_json):
    """Revoke the user's tokens issued until now (in one course, or all of them)."""
    from sqlalchemy import select

    from lti_exchange.models import Course, Enrolment, Organisation, User

    state = _state()
    now = datetime.now(UTC)
    with state.session_factory() as session:
        query = (
            select(Enrolment)
            .join(User, User.id == Enrolment.user_id)
            .join(Course, Course.id == Enrolment.course_id)
            .where(User.username == username)
        )
        if course:
            query = query.where(Course.code == course)
        if org:
            org_filter = Organisation.id == int(org) if org.isdigit() else Organisation.name == org
            query = query.join(Organisation, Organisation.id == User.org_id).where(org_filter)
        enrolments = session.execute(query).scalars().all()
        for enrolment in enrolments:
            enrolment.tokens_not_before = now
        session.commit()
        revoked = [e.course.code for e in enrolments]
    if not revoked:
        raise click.ClickException(f"No enrolment of {username!r} matches; nothing revoked.")
    _emit(
        as_json,
        {"username": username, "courses": revoked, "revoked_at": now.isoformat()},
        f"Revoked the tokens of {username} in {len(revoked)} course(s): {', '.join(revoked)}",
    )


@main.group()
def keys() -> None:
    """Signing keys."""


@keys.command("rotate")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def keys_rotate(as_json: bool) -> None:
    """Add a new token-signing key; older ones verify until the overlap window ends."""
    settings = _settings()
    state = _state()
    new = state.token_keys.generate()
    overlap = max(settings.key_rotation_overlap, settings.access_token_ttl)
    pruned = state.token_keys.prune(overlap)
    _emit(
        as_json,
        {"active": new.kid, "pruned": pruned},
        f"New token-signing key {new.kid} is active; pruned {len(pruned)} expired key(s).",
    )


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def keys_list(as_json: bool) -> None:
    """List the token-signing keys (newest signs)."""
    state = _state()
    ring = state.token_keys.all()
    rows = [
        {"kid": k.kid, "created": datetime.fromtimestamp(k.created, UTC).isoformat()} for k in ring
    ]
    _emit(as_json, rows, "\n".join(f"{r['kid']}  {r['created']}" for r in rows) or "no keys")


@main.command()
@click.option("--url", required=True, help="The exchange service URL.")
@click.option("--token", "access_token", required=True, help="Your access token.")
@click.option("--refresh-token", default=None, help="Your refresh token, if you have one.")
@click.option(
    "--token-file", default=None, help="Token store (default ~/.lti-exchange/tokens.json)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def login(url, access_token, refresh_token, token_file, as_json):
    """Store tokens in your token store so nbgrader can use the exchange."""
    from pathlib import Path

    import requests

    from nbgrader_plugin.tokens import TokenEntry, TokenStore

    try:
        entry = TokenEntry.from_access_token(access_token, url.rstrip("/"), refresh_token)
    except ValueError as exc:
        raise click.ClickException(f"That is not an access token ({exc}).") from exc
    try:
        answer = requests.get(
            url.rstrip("/") + "/api/v1/me",
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=30,
        )
    except requests.RequestException as exc:
        raise click.ClickException(f"Cannot reach {url}: {exc}") from exc
    if answer.status_code != 200:
        try:
            message = answer.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {answer.status_code}"
        raise click.ClickException(f"The exchange refused the token: {message}")
    store = TokenStore(Path(token_file).expanduser() if token_file else None)
    store.save(entry)
    me = answer.json()
    _emit(
        as_json,
        {**me, "token_file": str(store.path)},
        f"Logged in as {me['username']} ({me['role']}) in course {me['course_id']}; "
        f"tokens stored in {store.path}",
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

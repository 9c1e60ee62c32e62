"""The Flask app: settings → database (schema check) → storage → keys → blueprints → hooks;
``/healthz`` (liveness), ``/readyz`` (readiness), ``/metrics`` (``web/metrics.py``) and ``/``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, g, jsonify
from sqlalchemy import text
from sqlalchemy.orm import configure_mappers

from lti_exchange import __version__
from lti_exchange.app_objects import build_app_objects
from lti_exchange.config import Settings, load_settings
from lti_exchange.errors import ApiError, InsufficientStorage
from lti_exchange.lti.headers import install_default_headers
from lti_exchange.migrate import ensure_schema, schema_advice, schema_state
from lti_exchange.storage import StorageUnavailable
from lti_exchange.web.body_limits import install_body_limits
from lti_exchange.web.current import EXTENSION, close_request_session, install_query_counter
from lti_exchange.web.errors import register_error_handlers
from lti_exchange.web.hot_routes import HotRoutes
from lti_exchange.web.request_id import install_request_id

log = logging.getLogger(__name__)


class ExchangeFlask(Flask):
    """Flask, with ``ensure_sync`` answered once per function: Flask asks it for every hook and
    view of every request (an ``inspect`` call each), and the answer never changes."""

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        cache = self.__dict__.setdefault("_ensured_sync", {})
        try:
            return cache[func]
        except KeyError:
            synced = cache[func] = super().ensure_sync(func)
            return synced
        except TypeError:  # unhashable callable: ask Flask every time
            return super().ensure_sync(func)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the WSGI app: settings → database → storage → keys → blueprints → errors."""
    settings = settings or load_settings()
    objects = build_app_objects(settings)
    ensure_schema(objects.engine, settings)
    objects.token_keys.ensure_key()
    objects.tool_keys.ensure_key()
    warm_up = getattr(objects.storage, "warm_up", None)
    if warm_up is not None:  # S3: this worker's client now, not in its first upload
        warm_up()
    configure_mappers()  # the ORM's one-off set-up now, not in this worker's first request

    app = ExchangeFlask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = None
    app.extensions[EXTENSION] = objects
    install_request_id(app)
    app.teardown_appcontext(close_request_session)
    if settings.expose_query_count:
        install_query_counter(objects.engine)

        @app.after_request
        def _query_count(response):
            response.headers["X-Query-Count"] = str(g.get("query_count", 0))
            return response

    from lti_exchange.api import bp as api_bp
    from lti_exchange.lti.dashboard_views import bp as dashboard_bp
    from lti_exchange.lti.register_view import bp as lti_register_bp
    from lti_exchange.lti.views import bp as lti_bp

    app.register_blueprint(api_bp)
    app.register_blueprint(lti_bp)
    app.register_blueprint(lti_register_bp)  # /lti/register: LTI Dynamic Registration
    app.register_blueprint(dashboard_bp)  # /lti/dashboard, /lti/my-assignments
    # Fetch and submit without Flask's per-request machinery (the deadline's two requests).
    app.wsgi_app = HotRoutes(app, objects)  # type: ignore[method-assign]
    if settings.trusted_proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)  # type: ignore[method-assign]
    register_error_handlers(app)
    install_body_limits(app)
    install_default_headers(app)

    @app.get("/healthz")
    def healthz():
        # Liveness: the process answers, so always 200 (a database outage or a full disk must
        # not get every replica restarted; /readyz fails for those). Touches neither the
        # database nor the storage's data: "storage" only reports whether it is full.
        return jsonify(status="ok", version=__version__, storage=_storage_room(objects.storage))

    @app.get("/readyz")
    def readyz():
        checks = {
            "database": _check(lambda: _ping(objects.engine)),
            "schema": _schema_check(objects.engine),
            "storage": _storage_check(objects.storage),
        }
        _fail_unless_ok(checks, "not_ready", "Not ready to serve")
        return jsonify(status="ok", version=__version__, **checks)

    @app.get("/")
    def index():
        return jsonify(
            service="lti-exchange",
            version=__version__,
            api="/api/v1",
            health="/healthz",
            ready="/readyz",
            metrics="/metrics",
        )

    from lti_exchange.web.metrics import install_metrics

    install_metrics(app, objects.engine, settings.log_format.strip().lower())  # wraps all: last
    return app


def _ping(engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _check(probe) -> str:
    try:
        probe()
    except Exception as exc:  # noqa: BLE001 - any failure means "not healthy"
        log.warning("health check failed: %s", exc)
        return f"error: {exc.__class__.__name__}"
    return "ok"


STORAGE_CAUSES = {
    "bucket_missing": "bucket does not exist: create it or fix LTI_EXCHANGE_STORAGE_URL",
    "credentials_rejected": "refused our credentials: check AWS_ACCESS_KEY_ID, "
    "AWS_SECRET_ACCESS_KEY and the bucket's permissions",
    "credentials_missing": "needs credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    "endpoint_unreachable": "cannot be reached: check AWS_ENDPOINT_URL and that S3 is up",
    "storage_error": "answered with an error (the cause is in the service log)",
}


def _storage_check(storage) -> str:
    """``ok``, ``full`` (free space below the reserve, or ENOSPC) or ``error: <kind>``."""
    try:
        storage.check()
    except InsufficientStorage:
        return "full"
    except StorageUnavailable as exc:  # S3: the cause is a readable word (bucket_missing, ...)
        log.warning("storage check failed: %s", exc)
        return f"error: {exc.cause}"
    except Exception as exc:  # noqa: BLE001 - any other failure means "not healthy"
        log.warning("storage check failed: %s", exc)
        return f"error: {exc.__class__.__name__}"
    return "ok"


def _storage_room(storage) -> str:
    """``full`` or ``ok`` for /healthz, cheaply: the free-space check uploads make before
    writing (local directory: one ``statvfs``; S3: nothing, its capacity is the provider's).
    Broken storage is /readyz's business (its probe write); here it is ``unknown``."""
    try:
        storage.ensure_room(0)
    except InsufficientStorage:
        return "full"
    except Exception as exc:  # noqa: BLE001 - liveness must answer whatever the storage does
        log.warning("storage free-space check failed: %s", exc)
        return "unknown"
    return "ok"


def _schema_check(engine) -> str:
    """``ok`` when the database is at this code's schema head or a later release's (rolling
    upgrades, see ``migrate.py``), else where it is."""
    try:
        return schema_state(engine).summary
    except Exception as exc:  # noqa: BLE001 - an unreachable database is reported by its check
        return f"error: {exc.__class__.__name__}"


def _fail_unless_ok(checks: dict[str, str], code: str, lead: str) -> None:
    """Raise 503 naming each failing check and what to do about it; ``details`` has them all."""
    problems = []
    for name, value in checks.items():
        if value == "ok":
            continue
        if value == "full":
            problems.append(
                "the storage is full (free space is below LTI_EXCHANGE_STORAGE_MIN_FREE_BYTES): "
                "free some space or enlarge the volume"
            )
        elif name == "schema" and not value.startswith("error"):
            problems.append(f"the database schema is {value}: {schema_advice(value)}")
        elif name == "storage" and value.removeprefix("error: ") in STORAGE_CAUSES:
            problems.append(f"the storage {STORAGE_CAUSES[value.removeprefix('error: ')]}")
        else:
            problems.append(f"the {name} does not answer (the cause is in the service log)")
    if problems:
        raise ApiError(
            f"{lead}: " + "; ".join(problems) + ".",
            status=503,
            code=code,
            details=checks,
        )

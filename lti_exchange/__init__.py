"""lti-exchange: an LTI 1.3-integrated exchange service for nbgrader."""

from __future__ import annotations

import logging

from flask import Flask, g, jsonify
from sqlalchemy import text

from lti_exchange.config import Settings, load_settings
from lti_exchange.db import close_request_session, install_query_counter
from lti_exchange.errors import ApiError, register_error_handlers
from lti_exchange.migrate import ensure_schema
from lti_exchange.state import build_state

__version__ = "0.1.0"


def create_app(settings: Settings | None = None) -> Flask:
    """Build the WSGI app: settings → database → storage → keys → blueprints → errors."""
    settings = settings or load_settings()
    logging.basicConfig(level=settings.log_level.upper())
    state = build_state(settings)
    ensure_schema(state.engine, settings)
    state.token_keys.ensure_key()
    state.tool_keys.ensure_key()

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = None
    app.extensions["lti_exchange"] = state
    app.teardown_appcontext(close_request_session)
    if settings.expose_query_count:
        install_query_counter(state.engine)

        @app.after_request
        def _query_count(response):
            response.headers["X-Query-Count"] = str(g.get("query_count", 0))
            return response

    from lti_exchange.api import bp as api_bp
    from lti_exchange.lti import bp as lti_bp

    app.register_blueprint(api_bp)
    app.register_blueprint(lti_bp)
    if settings.trusted_proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)  # type: ignore[method-assign]
    register_error_handlers(app)

    @app.get("/healthz")
    def healthz():
        checks = {
            "database": _check(lambda: _ping(state.engine)),
            "storage": _check(state.storage.check),
        }
        if any(value != "ok" for value in checks.values()):
            failing = ", ".join(name for name, value in checks.items() if value != "ok")
            raise ApiError(
                f"The {failing} does not answer; the cause is in the service log.",
                status=503,
                code="unavailable",
                details=checks,
            )
        return jsonify(status="ok", version=__version__, **checks)

    @app.get("/")
    def index():
        return jsonify(
            service="lti-exchange",
            version=__version__,
            api="/api/v1",
            health="/healthz",
        )

    return app


def _ping(engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _check(probe) -> str:
    try:
        probe()
    except Exception as exc:  # noqa: BLE001 - any failure means "not healthy"
        logging.getLogger(__name__).warning("health check failed: %s", exc)
        return f"error: {exc.__class__.__name__}"
    return "ok"

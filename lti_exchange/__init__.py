"""lti-exchange: an LTI 1.3-integrated exchange service for nbgrader."""

from __future__ import annotations

import logging

from flask import Flask, g, jsonify
from sqlalchemy import text

from lti_exchange.config import Settings, load_settings
from lti_exchange.db import close_request_session, install_query_counter
from lti_exchange.errors import register_error_handlers
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

    app.register_blueprint(api_bp)
    register_error_handlers(app)

    @app.get("/healthz")
    def healthz():
        with state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        state.storage.check()
        return jsonify(status="ok", version=__version__, database="ok", storage="ok")

    @app.get("/")
    def index():
        return jsonify(
            service="lti-exchange",
            version=__version__,
            api="/api/v1",
            health="/healthz",
        )

    return app

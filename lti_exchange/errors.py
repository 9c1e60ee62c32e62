"""Domain errors and the one JSON error shape every ``/api/`` response uses."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error with an HTTP status, a stable machine ``code`` and a message for people."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class InvalidRequest(ApiError):
    status, code = 400, "invalid_request"


class InvalidIdentifier(ApiError):
    status, code = 400, "invalid_identifier"


class InvalidArchive(ApiError):
    status, code = 400, "invalid_archive"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class Unauthenticated(ApiError):
    status, code = 401, "unauthenticated"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class InsufficientStorage(ApiError):
    """507: the blob storage is full (ENOSPC, EDQUOT, or free space below the reserve)."""

    status, code = 507, "insufficient_storage"

    def __init__(self, message: str = "", **kwargs: Any) -> None:
        super().__init__(
            message
            or "Nothing was stored: the exchange's storage is full. Try again later, and tell "
            "your instructor or the exchange's operator that its storage is full.",
            **kwargs,
        )


def error_response(error: ApiError):
    response = jsonify(error.to_dict())
    response.status_code = error.status
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="lti-exchange"'
    return response


def register_error_handlers(app: Flask) -> None:
    """Install the handlers that turn every failure under ``/api/`` into the JSON error shape."""

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        return error_response(error)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        if not _wants_json():
            return error
        status = error.code or 500
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        message = {
            404: "No such endpoint. See docs/openapi.yaml for the API.",
            405: f"Method {request.method} is not allowed on {request.path}.",
        }.get(status, error.description or error.name)
        response = error_response(
            ApiError(message, status=status, code=codes.get(status, "http_error"))
        )
        if getattr(error, "valid_methods", None):
            response.headers["Allow"] = ", ".join(error.valid_methods)  # RFC 9110: 405 must
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("Unhandled error on %s %s", request.method, request.path)
        from lti_exchange.db import rollback_request_session

        rollback_request_session()
        if not _wants_json():
            return "Internal server error. The operator can find the details in the log.", 500
        return error_response(
            ApiError(
                "Internal server error. Try again; if it persists, tell your operator "
                "(the details are in the service log).",
                status=500,
                code="internal_error",
            )
        )


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path in ("/healthz", "/readyz")

"""Flask error handlers: every failure under ``/api/`` becomes the JSON error shape."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from lti_exchange.errors import ApiError, DatabaseUnavailable, InsufficientStorage
from lti_exchange.logging_setup import current_request_id
from lti_exchange.services.retry import is_disk_full, is_unavailable
from lti_exchange.storage import BlobNotFound
from lti_exchange.web.current import rollback_request_session

log = logging.getLogger(__name__)


def log_refusal(error: ApiError) -> None:
    """One line for a refused request (401/403): method, path, code and request id; the
    message is ours (it never holds a token) and the query string is left out."""
    if error.status in (401, 403):
        log.warning(
            "refused %s %s: %d %s (request %s)",
            request.method,
            request.path,
            error.status,
            error.code,
            current_request_id(),
        )


def error_response(error: ApiError):
    response = jsonify(error.to_dict())
    response.status_code = error.status
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="lti-exchange"'
    return close_if_unread(response, error)


def close_if_unread(response, error: ApiError):
    """``Connection: close`` on the answer to a body that could not be read to its end (the
    worker honours it: ``serving.head_buffering``); the connection cannot carry another."""
    if error.closes_connection:
        response.headers["Connection"] = "close"
    return response


def register_error_handlers(app: Flask) -> None:
    """Install the handlers that turn every failure under ``/api/`` into the JSON error shape."""

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        log_refusal(error)
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
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)  # RFC 9110: 405 must
        return response

    @app.errorhandler(BlobNotFound)
    def _blob_missing(error: BlobNotFound):
        # A row whose files are gone from the blob store (deleted or lost outside the service):
        # the operator has to look; the user gets what happened, not the 500 of a bug.
        log.error(
            "a stored blob is missing on %s %s (request %s): %s",
            request.method,
            request.path,
            current_request_id(),
            error,
        )
        return _answer_failure(
            ApiError(
                "The files stored for this are missing from the exchange's storage, so they "
                "cannot be sent. Tell your operator (quote the request id); a student can submit "
                "again.",
                status=410,
                code="content_missing",
            )
        )

    @app.errorhandler(InterfaceError)  # e.g. a connection the driver found closed
    @app.errorhandler(OperationalError)
    def _database_error(error: OperationalError | InterfaceError):
        # The database's own failures (out of disk; down, restarting, unreachable): an answer
        # that says so and asks to try again later, not the 500 of a bug.
        if is_disk_full(error):
            log.warning(
                "the database is full on %s %s: %s", request.method, request.path, error.orig
            )
            failure: ApiError = InsufficientStorage()
        elif is_unavailable(error):
            log.error(
                "the database did not answer on %s %s (request %s): %s",
                request.method,
                request.path,
                current_request_id(),
                error.orig,
            )
            failure = DatabaseUnavailable()
        else:
            return _unexpected(error)
        return _answer_failure(failure)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception(
            "Unhandled error on %s %s (request %s)",
            request.method,
            request.path,
            current_request_id(),
        )
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


def _answer_failure(failure: ApiError):
    """The answer to a request that failed for a reason of the service's own (its database,
    its blob store): the request's transaction rolled back, then JSON or, on a page, text."""
    rollback_request_session()
    if not _wants_json():
        return failure.message, failure.status
    return error_response(failure)


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path in ("/healthz", "/readyz")

"""Domain errors and the one JSON error shape every ``/api/`` response uses (no Flask: the
handlers that send them are in ``lti_exchange.web.errors``)."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error with an HTTP status, a stable machine ``code`` and a message for people."""

    status = 400
    code = "bad_request"
    # True when the request body could not be read to its end: what is left of it on the
    # connection is unknown, so the answer says ``Connection: close`` and the server closes.
    closes_connection = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        closes_connection: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.details = details
        self.closes_connection = closes_connection

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


class DatabaseUnavailable(ApiError):
    """503: the database could not be reached or dropped the connection (down, restarting,
    failing over); ``services.retry.is_unavailable`` tells it from a bad statement."""

    status, code = 503, "database_unavailable"

    def __init__(self) -> None:
        super().__init__(
            "The exchange's database did not answer, so your request was not completed. Try "
            "again in a minute; if it keeps failing, tell your instructor or the exchange's "
            "operator."
        )


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

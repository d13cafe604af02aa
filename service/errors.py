"""The service's error tree: each class carries its HTTP status and error type.

Scoring code raises these; one handler in `service.api.errors` renders every one of them (and FastAPI's
own validation errors) as the single envelope `{"error": {"type", "message"}}`. Lower layers (the model,
the maths) raise their own `ValueError` subclasses, which the scorer translates here.
"""

from __future__ import annotations


class ServiceError(Exception):
    status_code: int = 500
    error_type: str = "internal_error"
    headers: dict[str, str] | None = None

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if headers is not None:
            self.headers = headers


class InvalidRequest(ServiceError):
    status_code = 422
    error_type = "invalid_request"


class PayloadTooLarge(ServiceError):
    status_code = 413
    error_type = "payload_too_large"


class Unauthorized(ServiceError):
    status_code = 401
    error_type = "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Overloaded(ServiceError):
    status_code = 429
    error_type = "overloaded"

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, round(retry_after_s)))})


class NotReady(ServiceError):
    status_code = 503
    error_type = "unavailable"

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, round(retry_after_s)))})


class DeadlineExceeded(ServiceError):
    status_code = 504
    error_type = "deadline_exceeded"


class ClientGone(ServiceError):
    """The client disconnected before its request reached the model; nobody reads this answer."""

    status_code = 499
    error_type = "client_closed_request"

"""The client's exception tree: catch at exactly the level you need.

    RewardServiceError          anything the reward service (or the way to it) did wrong
    ├── Unavailable             no replica answered: connection refused or reset, 502, 503 (loading, draining)
    ├── Overloaded              every try met 429: the service's queue stayed full for the whole deadline
    ├── BadRequest              400, 404, 413, 422: the input is wrong, retrying cannot help (see the message)
    ├── Unauthorized            401: missing or wrong API key (argument `api_key` or `PARETORM_API_KEY`)
    └── Timeout                 the call's total deadline ran out (locally, or 504 from the server)

`Unavailable`, `Overloaded` and `Timeout` are raised only after the retry policy gave up; `BadRequest` and
`Unauthorized` are raised at once, never retried. Every error carries the server's own message when there
was one, the HTTP status and error type, and the URL that answered last.
"""

from __future__ import annotations


class RewardServiceError(Exception):
    """Base of every error the client raises for a failed call."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_type: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.error_type = error_type
        self.url = url

    def __str__(self) -> str:
        where = f" [{self.status_code} from {self.url}]" if self.status_code and self.url else ""
        if not where and self.url:
            where = f" [{self.url}]"
        return f"{self.message}{where}"


class Unavailable(RewardServiceError):
    """No replica could be reached or all said 503 (not ready / draining) until the retries ran out."""


class Overloaded(RewardServiceError):
    """The service answered 429 (queue full) until the retries ran out; lower your request rate."""


class BadRequest(RewardServiceError):
    """The service rejected the input (400, 404, 413, 422); `message` is the server's explanation."""


class Unauthorized(RewardServiceError):
    """401: pass `api_key=` or set `PARETORM_API_KEY` to a key the service accepts."""


class Timeout(RewardServiceError):
    """The call's total deadline expired before an answer came (locally or as the server's 504)."""


__all__ = ["BadRequest", "Overloaded", "RewardServiceError", "Timeout", "Unauthorized", "Unavailable"]

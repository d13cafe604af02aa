"""Every JSON body is decoded and checked in one place, before any route's schema sees it.

FastAPI's own body reading turns every decoding failure that is not a `JSONDecodeError` into a bare
400 ("There was an error parsing the body"): non-UTF-8 bytes, nesting deeper than Python's recursion
limit, integers longer than Python's 4300-digit cap. And what does decode (lone surrogates, integers too
large for a float, NaN) passes `str` and `Any` fields and fails later in the tokenizer, the maths or the
serializer as a 500. `CheckedJsonRoute`, the route class of every router with a body, decodes the body
itself and runs `clients.wire_values.first_invalid_value` over it, so each of these is a 422 in the one
envelope, naming the field, for every route at once. It raises a Starlette `HTTPException`, the one kind
FastAPI lets out of its body reading unchanged; `service.api.errors` renders it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from clients.wire_values import MAX_JSON_DEPTH, first_invalid_value
from service.api.auth import check_bearer

__all__ = ["BodyRejected", "CheckedJsonRequest", "CheckedJsonRoute", "decode_json_body"]

_INLINE_BYTES = 256 * 1024
"""Bodies up to this size are decoded on the event loop (under a millisecond); larger ones on a thread."""


class BodyRejected(HTTPException):
    """A body that is not JSON the service can use: a 422 `invalid_request`."""

    def __init__(self, message: str) -> None:
        super().__init__(status_code=422, detail=message)


def decode_json_body(body: bytes) -> Any:
    """Decode a UTF-8 JSON body and check every value in it; raises `BodyRejected` naming the problem."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BodyRejected(
            f"body: byte {error.start} ({body[error.start:error.start + 1]!r}) is not valid UTF-8; "
            "send the JSON encoded as UTF-8"
        ) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise BodyRejected(
            f"body: not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}); send a JSON "
            "object with `Content-Type: application/json`"
        ) from None
    except RecursionError:
        raise BodyRejected(
            f"body: JSON nested more than {MAX_JSON_DEPTH} levels deep; no paretorm request needs that"
        ) from None
    except ValueError as error:  # e.g. an integer literal over Python's digit limit
        raise BodyRejected(
            f"body: unreadable JSON value ({error}); send numbers that fit a 64-bit float"
        ) from None
    problem = first_invalid_value(value)
    if problem is not None:
        raise BodyRejected(problem)
    return value


class CheckedJsonRequest(Request):
    """A request whose `json()` is `decode_json_body` of its body (decoded once, then cached)."""

    async def json(self) -> Any:
        if not hasattr(self, "_checked_json"):
            body = await self.body()
            if len(body) <= _INLINE_BYTES:
                self._checked_json = decode_json_body(body)
            else:  # the check's Python loop then gives the event loop turns (json.loads itself cannot)
                self._checked_json = await asyncio.to_thread(decode_json_body, body)
        return self._checked_json


class CheckedJsonRoute(APIRoute):
    """The route class of the protected routers: auth first, then the endpoint sees a `CheckedJsonRequest`.

    The API key is checked before the body is read (FastAPI reads and parses it before any dependency),
    so an anonymous client gets its 401 whatever it sends and cannot make the service parse 16 MB of
    JSON. The routers' own auth dependency stays, for the OpenAPI document and as a second check.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            check_bearer(request, request.app.state.api_keys)
            return await handler(CheckedJsonRequest(request.scope, request.receive))

        return checked

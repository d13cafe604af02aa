"""ASGI middleware refusing request bodies over `max_body_bytes` with a 413, before any parsing.

It checks `Content-Length` up front and also counts streamed (chunked) bodies, so a client cannot get
around the limit by omitting the header (a chunked body over the limit is a 413 too, not FastAPI's 400).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a streamed body passes the limit.

    An `HTTPException`, because FastAPI re-raises those from its body reading (any other exception there
    becomes a bare 400); the app's handler then renders this 413 in the one envelope.
    """

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(status_code=413, detail=too_large_message(size, limit))


def too_large_message(size: int, limit: int) -> str:
    return (f"request body of {size}+ bytes is over the limit of {limit} bytes; split the request (the "
            "paretorm client does this itself) or raise PARETORM_MAX_BODY_BYTES")


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._refuse(send, int(declared))
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(received, self.max_body_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send, received)

    async def _refuse(self, send: Send, size: int) -> None:
        body: dict[str, Any] = {
            "error": {
                "type": "payload_too_large",
                "message": too_large_message(size, self.max_body_bytes),
            }
        }
        payload = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

"""One error envelope for every 4xx and 5xx: `{"error": {"type": ..., "message": ...}}`.

Service errors carry their status; FastAPI's validation errors become 422s whose message names each
offending field by its path (`items[3].response: Field required`); anything unexpected is a 500 whose
message says the failure was logged, without leaking internals.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from clients.protocol import ErrorDetail, ErrorResponse
from service.errors import ServiceError

logger = logging.getLogger(__name__)


_HTTP_ERROR_TYPES = {
    404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 422: "invalid_request",
}
"""Error types of the HTTP exceptions raised below our handlers (routing, body limit, body decoding)."""


def error_response(status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorResponse(error=ErrorDetail(type=error_type, message=message)).model_dump()
    return JSONResponse(status_code=status, content=body, headers=headers)


def _field_path(location: tuple[object, ...]) -> str:
    path = ""
    for part in location:
        if part in {"body", "query", "path", "header"} and not path:
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def validation_message(error: RequestValidationError) -> str:
    problems = []
    for item in error.errors()[:10]:
        message = str(item.get("msg", "invalid value")).removeprefix("Value error, ")
        if tuple(item.get("loc", ())) == ("body",) and item.get("type") in {"model_attributes_type", "dict_type"}:
            message += " (send a JSON object with `Content-Type: application/json`)"
        problems.append(f"{_field_path(tuple(item.get('loc', ())))}: {message}")
    more = len(error.errors()) - len(problems)
    return "; ".join(problems) + (f"; and {more} more" if more > 0 else "")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, error: ServiceError) -> JSONResponse:
        return error_response(error.status_code, error.error_type, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", validation_message(error))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        kind = _HTTP_ERROR_TYPES.get(error.status_code, "http_error")
        return error_response(error.status_code, kind, str(error.detail), getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", f"internal error ({type(error).__name__}); it was logged")

"""One error shape for every 4xx/5xx answer: ``{"error": {"code", "message", "detail"}}``.

Handlers here turn FastAPI's validation errors (naming the field), Starlette's HTTP errors and
any unexpected exception into that shape; a stack trace never reaches a client (it goes to the
log with a reference id the client also gets). :class:`BodySizeLimit` refuses oversized
request bodies before they are read into memory.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("liftwatch.api")


class ErrorBody(BaseModel):
    code: str
    message: str
    detail: Any = None


class ErrorResponse(BaseModel):
    """The body of every error answer."""

    error: ErrorBody


class ApiError(Exception):
    """Raised by routes and dependencies; rendered as the error shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail
        self.headers = headers


_DESCRIPTIONS = {
    400: "Malformed request body",
    401: "Missing, invalid or revoked bearer token",
    403: "The token's role may not do this (inspectors never write)",
    404: "No such resource, or it belongs to another company",
    409: "Conflicts with the current state (the message says why)",
    413: "Request body too large",
    415: "Unsupported Content-Type",
    422: "Invalid request; `detail` names each field",
    503: "A dependency (InfluxDB) is unavailable; retry",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error answers, so the document lists every status a route gives."""
    return {c: {"model": ErrorResponse, "description": _DESCRIPTIONS[c]} for c in codes}


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} {ident!r} not found")


def forbidden(message: str = "this token's role may not do that") -> ApiError:
    return ApiError(403, "forbidden", message)


def conflict(message: str, detail: Any = None) -> ApiError:
    return ApiError(409, "conflict", message, detail)


def invalid(field: str, message: str) -> ApiError:
    """A request value that passed type validation but is still wrong (e.g. a time range)."""
    return ApiError(
        422,
        "validation_error",
        f"{field}: {message}",
        [{"field": field, "message": message, "type": "value_error"}],
    )


def error_json(status: int, code: str, message: str, detail: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "detail": detail}}


def _response(
    status: int, code: str, message: str, detail: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_json(status, code, message, detail), status, headers=headers)


_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "unavailable",
}


def field_name(loc: Sequence[Any]) -> str:
    """``("query", "fields")`` → ``fields``; ``("body", "overrides", "x")`` → ``overrides.x``."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_detail(errors: Sequence[Any]) -> list[dict[str, str]]:
    return [
        {
            "field": field_name(err.get("loc", ())),
            "in": str(err.get("loc", ("body",))[0]) if err.get("loc") else "body",
            "message": str(err.get("msg", "invalid")),
            "type": str(err.get("type", "value_error")),
        }
        for err in errors
    ]


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _response(exc.status, exc.code, exc.message, exc.detail, exc.headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = validation_detail(exc.errors())
    names = ", ".join(dict.fromkeys(d["field"] for d in detail))
    return _response(422, "validation_error", f"invalid request: {names}", detail)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _CODES.get(exc.status_code, "error" if exc.status_code >= 500 else "bad_request")
    try:
        phrase = HTTPStatus(exc.status_code).phrase
    except ValueError:
        phrase = "error"
    message = exc.detail if isinstance(exc.detail, str) and exc.detail else phrase
    return _response(exc.status_code, code, message, None, dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    ref = uuid.uuid4().hex[:12]
    log.error(
        "event=unhandled_error ref=%s method=%s path=%s",
        ref,
        request.method,
        request.url.path,
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    return _response(
        500, "internal_error", "internal error; the server log has details", {"ref": ref}
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


class BodySizeLimit:
    """Refuse request bodies above a limit with 413, by ``Content-Length`` when sent and by
    counting while streaming otherwise. ``limits`` maps a path suffix (e.g. ``/lifts/import``)
    to a larger allowance."""

    def __init__(self, app: ASGIApp, *, default: int, limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.default = default
        self.limits = limits or {}

    def _limit_for(self, path: str) -> int:
        for suffix, limit in self.limits.items():
            if path.endswith(suffix):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope["path"])
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._reject(send, 400, "bad_request", "invalid Content-Length")
                    return
                if declared > limit:
                    await self._too_large(send, limit)
                    return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._too_large(send, limit)

    async def _too_large(self, send: Send, limit: int) -> None:
        await self._reject(
            send,
            413,
            "payload_too_large",
            f"request body larger than {limit} bytes",
            {"limit_bytes": limit},
        )

    @staticmethod
    async def _reject(send: Send, status: int, code: str, message: str, detail: Any = None) -> None:
        response = _response(status, code, message, detail)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": response.raw_headers,
            }
        )
        await send({"type": "http.response.body", "body": response.body})


class _TooLarge(StarletteHTTPException):
    """An HTTP error, so that FastAPI's body parsing passes it through as a 413 instead of
    turning it into "error parsing the body" (400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")

"""Every refusal as `{"error": {"code", "message"}}` with the right status (SPEC §5)."""

from __future__ import annotations

import math

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from open_clanker.core.errors import ClankerError, RateLimitError
from open_clanker.core.logging import REDACTOR

log = structlog.get_logger("open_clanker.gateway")

_HTTP_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "request_too_large",
    429: "rate_limited",
}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def clanker_error_response(exc: ClankerError) -> JSONResponse:
    headers = None
    if isinstance(exc, RateLimitError):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    # A provider's error text may echo what it was sent (its API key): clients get it redacted.
    return error_response(exc.status, exc.code, REDACTOR.redact(exc.message), headers)


def _describe_validation(exc: RequestValidationError) -> tuple[int, str, str]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "invalid_json", "The request body is not valid JSON."
    first = errors[0] if errors else {}
    loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    msg = str(first.get("msg", "invalid value")).rstrip(".")
    return 422, "invalid_input", f"{loc}: {msg}."


def body_parse_error(exc: StarletteHTTPException) -> str | None:
    """FastAPI answers a body it could not decode (invalid UTF-8, JSON nested past Python's
    recursion limit) with a bare 400; SPEC §5 calls that `invalid_json`. The sentence, or None."""
    if exc.status_code != 400:
        return None
    if isinstance(exc.__cause__, RecursionError):
        return "The request body is nested too deeply to be read; send flatter JSON."
    if isinstance(exc.__cause__, UnicodeDecodeError):
        return "The request body is not valid JSON: it is not UTF-8 text."
    return None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ClankerError)
    async def _clanker(_request: Request, exc: ClankerError) -> JSONResponse:
        return clanker_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        status, code, message = _describe_validation(exc)
        return error_response(status, code, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        unparsable = body_parse_error(exc)
        if unparsable is not None:
            return error_response(400, "invalid_json", unparsable)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else "Request refused."
        if exc.status_code == 404:
            message = "Nothing here: check the path."
        return error_response(exc.status_code, code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("request_crashed", error=type(exc).__name__)
        return error_response(500, "internal_error", "Something went wrong inside the gateway.")

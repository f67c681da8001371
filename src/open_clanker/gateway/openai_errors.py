"""OpenAI's error shape for the `/v1/` routes, so OpenAI's SDKs raise their own exceptions.

`{"error": {"message", "type", "param", "code"}}`, with the statuses the SDKs map to exception
classes. Every other route keeps SPEC §5's shape; this one is a superset of it (`code` and
`message` are always strings).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from open_clanker.core.errors import (
    AuthError,
    ClankerError,
    InputError,
    MessageTooLongError,
    NotFoundError,
    NotReadyError,
    ProviderError,
    RateLimitError,
)
from open_clanker.core.logging import REDACTOR

OPENAI_PREFIX = "/v1/"


class OpenAIRequestError(InputError):
    """A request OpenAI's API would refuse with 400; `param` names the field."""

    code = "invalid_value"
    status = 400

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        if code is not None:
            self.code = code


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"


def error_body(
    message: str, kind: str, code: str, param: str | None = None
) -> dict[str, dict[str, str | None]]:
    # A provider's error text may echo what it was sent (its API key): clients get it redacted.
    return {
        "error": {"message": REDACTOR.redact(message), "type": kind, "param": param, "code": code}
    }


def describe(exc: ClankerError) -> tuple[int, str, str]:
    """(status, type, code) of one of our errors, in OpenAI's vocabulary."""
    if isinstance(exc, AuthError):
        return 401, "invalid_request_error", "invalid_api_key"
    if isinstance(exc, RateLimitError):
        return 429, "requests", "rate_limit_exceeded"
    if isinstance(exc, NotFoundError):
        return 404, "invalid_request_error", exc.code
    if isinstance(exc, MessageTooLongError):
        return 413, "invalid_request_error", exc.code
    if isinstance(exc, InputError):  # OpenAI answers 400 where SPEC §5 says 422
        return 400, "invalid_request_error", exc.code
    if isinstance(exc, ProviderError):
        return 502, "server_error", exc.code
    if isinstance(exc, NotReadyError):
        return 503, "server_error", exc.code
    return exc.status, "server_error" if exc.status >= 500 else "invalid_request_error", exc.code


def openai_error_response(exc: ClankerError) -> JSONResponse:
    status, kind, code = describe(exc)
    headers = None
    if isinstance(exc, RateLimitError):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    param = exc.param if isinstance(exc, OpenAIRequestError) else None
    return JSONResponse(error_body(exc.message, kind, code, param), status, headers=headers)


def validation_error(exc: RequestValidationError) -> OpenAIRequestError:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return OpenAIRequestError("The request body is not valid JSON.", None, "invalid_json")
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    msg = str(first.get("msg", "invalid value")).rstrip(".")
    return OpenAIRequestError(f"{param or 'body'}: {msg}.", param)


def http_error_response(exc: StarletteHTTPException) -> JSONResponse:
    """Errors Starlette raises itself (a body over the size limit, a slow body)."""
    message = exc.detail if isinstance(exc.detail, str) else "Request refused."
    kind = "server_error" if exc.status_code >= 500 else "invalid_request_error"
    code = str(getattr(exc, "code", "") or f"http_{exc.status_code}")
    return JSONResponse(
        error_body(message, kind, code), exc.status_code, headers=getattr(exc, "headers", None)
    )


def guard_error_body(path: str, code: str, message: str) -> dict[str, Any]:
    """The front door's refusals (Host, body size): OpenAI's shape on `/v1/`, SPEC §5's
    elsewhere."""
    if path.startswith(OPENAI_PREFIX):
        return error_body(message, "invalid_request_error", code)
    return {"error": {"code": code, "message": message}}


class OpenAIRoute(APIRoute):
    """A route whose refusals — auth, lockout, validation, ours — come out in OpenAI's shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except ClankerError as exc:
                return openai_error_response(exc)
            except RequestValidationError as exc:
                return openai_error_response(validation_error(exc))
            except StarletteHTTPException as exc:
                return http_error_response(exc)

        return guarded

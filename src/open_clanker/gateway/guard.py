"""Pure-ASGI front door: request id, Host check (DNS rebinding), cross-site refusal, and the
access log line.

Written as raw ASGI rather than BaseHTTPMiddleware: it sits on every request's hot path.

A WebSocket upgrade to one of `websocket_routes` is handed from here straight to its endpoint,
past the HTTP-only layers inside (HEAD, gzip) and FastAPI's own (error, telemetry, body-limit,
exception and exit-stack middleware, router, route wrapper): each of them holds a coroutine
frame for as long as the socket stays open, ~12 KiB per idle connection together, a third of
what one cost (docs/benchmarks.md, "Levers: WebSockets"). The checks above still run first.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from fastapi import HTTPException

from open_clanker.gateway import cross_site
from open_clanker.gateway.asgi import ASGIApp, Message, Receive, Scope, Send, header
from open_clanker.gateway.hosts import HostPolicy

ErrorBody = Callable[[str, str, str], dict[str, Any]]  # (path, code, message) -> JSON body


def spec_error_body(_path: str, code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


access_log = structlog.get_logger("open_clanker.access")

_UNGUARDED_PATHS = frozenset({"/health"})

MAX_BODY_BYTES = 1_048_576  # far above max_message_chars; bounds memory per request
BODY_CHUNK_TIMEOUT_S = 30.0  # a client trickling its body is cut off, not waited on forever


class _BodyRefused(HTTPException):
    """Raised from `receive`; FastAPI re-raises HTTPExceptions from body reading as they are."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, message)
        self.status, self.code, self.message = status, code, message


def _limited_receive(receive: Receive, limit: int = MAX_BODY_BYTES) -> Receive:
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        try:
            message = await asyncio.wait_for(receive(), BODY_CHUNK_TIMEOUT_S)
        except TimeoutError:
            raise _BodyRefused(
                408, "request_timeout", "The request body arrived too slowly."
            ) from None
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _BodyRefused(
                    413, "request_too_large", f"The request body is over {limit} bytes."
                )
        return message

    return wrapped


def _assume_json(scope: Scope) -> None:
    """API bodies are JSON whatever Content-Type a client sent (curl defaults to a form type),
    so a bad body is reported as invalid JSON rather than as a form."""
    headers = [(k, v) for k, v in scope.get("headers", ()) if k != b"content-type"]
    headers.append((b"content-type", b"application/json"))
    scope["headers"] = headers


class GatewayGuard:
    def __init__(
        self,
        app: ASGIApp,
        hosts: HostPolicy,
        open_paths: frozenset[str] = frozenset(),
        body_limits: Mapping[str, int] | None = None,
        error_body: ErrorBody = spec_error_body,
        cors_origins: tuple[str, ...] = (),
        websocket_routes: Mapping[str, ASGIApp] | None = None,
    ) -> None:
        self.app = app
        self.websocket_routes = websocket_routes or {}
        self.hosts = hosts
        self.body_limits = body_limits or {}  # paths allowed more than MAX_BODY_BYTES (images)
        self.error_body = error_body  # the OpenAI-compatible routes answer in OpenAI's shape
        self.cors_origins = cors_origins
        # Platform webhooks: called by the platform under the public name, authenticated by
        # their own secret header, never driven from a browser.
        self.open_paths = _UNGUARDED_PATHS | open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = header(scope, b"x-request-id")
        request_id = incoming if incoming and len(incoming) <= 64 else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        path = scope.get("path", "")
        host = header(scope, b"host") or ""
        if path not in self.open_paths and not self.hosts.allows(host):
            await self._refuse_host(scope, send, host)
            return
        # Before auth: another site's page never reaches the lockout (nor anything else).
        if path not in _UNGUARDED_PATHS and cross_site.refused(
            cross_site.source_of(scope), self.cors_origins
        ):
            access_log.info("cross_site_refused", path=path, method=scope.get("method"))
            await cross_site.send_refusal(scope, send)
            return
        if (
            scope["type"] == "http"
            and scope.get("method") == "POST"
            and path.startswith(("/api/", "/v1/"))
        ):
            _assume_json(scope)
        if scope["type"] == "websocket":
            # Bound and reset by hand: a context manager's generator would be held (and its
            # memory with it) for the socket's whole life.
            bound = structlog.contextvars.bind_contextvars(request_id=request_id)
            try:
                await self.websocket_routes.get(path, self.app)(scope, receive, send)
            finally:
                structlog.contextvars.reset_contextvars(**bound)
            return
        limit = self.body_limits.get(path, MAX_BODY_BYTES)
        length = header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            body = self.error_body(
                path, "request_too_large", f"The request body is over {limit} bytes."
            )
            await _send_json(send, 413, body)
            return
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            nonlocal response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, _limited_receive(receive, limit), send_wrapper)
            except _BodyRefused as refused:
                status = refused.status
                if not response_started:
                    body = self.error_body(path, refused.code, refused.message)
                    await _send_json(send, refused.status, body)
            finally:
                if path != "/health":
                    # Path only: query strings never reach the log.
                    access_log.info(
                        "http_request",
                        method=scope.get("method"),
                        path=path,
                        status=status,
                        ms=round((time.perf_counter() - started) * 1000, 2),
                    )

    async def _refuse_host(self, scope: Scope, send: Send, host: str) -> None:
        access_log.warning("host_refused", host=host[:100], path=scope.get("path"))
        if scope["type"] == "websocket":
            await send({"type": "websocket.http.response.start", "status": 403, "headers": []})
            await send({"type": "websocket.http.response.body", "body": b""})
            return
        message = "This Host is not served here; add it to server.allowed_hosts."
        body = self.error_body(scope.get("path", ""), "forbidden_host", message)
        await _send_json(send, 403, body)


async def _send_json(send: Send, status: int, error: dict[str, Any]) -> None:
    body = json.dumps(error).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

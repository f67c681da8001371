"""Pure-ASGI front door: request id, Host check (DNS rebinding), and the access log line.

Written as raw ASGI rather than BaseHTTPMiddleware: it sits on every request's hot path.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog

from open_clanker.gateway.hosts import HostPolicy

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = structlog.get_logger("open_clanker.access")

_UNGUARDED_PATHS = frozenset({"/health"})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _assume_json(scope: Scope) -> None:
    """API bodies are JSON whatever Content-Type a client sent (curl defaults to a form type),
    so a bad body is reported as invalid JSON rather than as a form."""
    headers = [(k, v) for k, v in scope.get("headers", ()) if k != b"content-type"]
    headers.append((b"content-type", b"application/json"))
    scope["headers"] = headers


class GatewayGuard:
    def __init__(self, app: ASGIApp, hosts: HostPolicy) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and len(incoming) <= 64 else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        path = scope.get("path", "")
        host = _header(scope, b"host") or ""
        if path not in _UNGUARDED_PATHS and not self.hosts.allows(host):
            await self._refuse_host(scope, send, host)
            return
        if scope["type"] == "http" and scope.get("method") == "POST" and path.startswith("/api/"):
            _assume_json(scope)
        if scope["type"] == "websocket":
            with structlog.contextvars.bound_contextvars(request_id=request_id):
                await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_wrapper)
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
        body = json.dumps(
            {
                "error": {
                    "code": "forbidden_host",
                    "message": "This Host is not served here; add it to server.allowed_hosts.",
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

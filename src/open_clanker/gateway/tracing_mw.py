"""Pure-ASGI middleware: each HTTP request runs in a W3C trace, the caller's `traceparent`
or a new one, so every log line of the request and of its message carries `trace_id`.

WebSocket connections are left alone: each chat frame is a message of its own and starts
its own trace when its `Inbound` is made.
"""

from __future__ import annotations

from open_clanker.core import tracing
from open_clanker.gateway.asgi import ASGIApp, Receive, Scope, Send, header


class TraceRequests:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = tracing.parse_traceparent(header(scope, b"traceparent")) or tracing.new_trace()
        with tracing.bound(ctx):
            await self.app(scope, receive, send)

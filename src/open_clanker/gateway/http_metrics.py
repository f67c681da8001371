"""Pure-ASGI middleware: every HTTP request counted by route template, method and status,
with its duration (to the last byte, so a stream counts as long as it lasts).

The route template (`/api/v1/sessions/{key}/messages`) is what the router matched; a path
nothing matched is `<unmatched>`, so a scanner cannot create one series per path it tries.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from open_clanker.gateway.asgi import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "<unmatched>"
# Methods outside this set are counted as "other": the label's values stay bounded.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

Observe = Callable[[str, str, int, float], None]


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str) and path:
        return path
    return UNMATCHED


class HttpMetrics:
    def __init__(self, app: ASGIApp, observe: Observe) -> None:
        self.app = app
        self._observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = str(scope.get("method", "")).upper()  # before HEAD is answered as GET
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            self._observe(
                route_template(scope),
                method if method in _METHODS else "other",
                status,
                time.perf_counter() - started,
            )

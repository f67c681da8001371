"""Pure-ASGI middleware: `HEAD` is answered for every `GET` route (SPEC §5), as `GET` with
the headers kept and the body dropped. FastAPI's routes answer only the methods declared."""

from __future__ import annotations

from open_clanker.gateway.asgi import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "HEAD":
            await self.app(scope, receive, send)
            return
        scope["method"] = "GET"

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # the body is not sent; only its end is
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app(scope, receive, headers_only)

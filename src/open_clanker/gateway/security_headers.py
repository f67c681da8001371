"""Browser-facing safety headers on every HTTP answer: a strict Content-Security-Policy, no
framing, no MIME sniffing, no referrer. Pure ASGI, like the guard, since it is on every request.

The page loads only its own files (no inline script or style, no CDN), so the policy can be
strict: a reply that somehow carried markup could not run script or load anything elsewhere.
"""

from __future__ import annotations

import re

from open_clanker.gateway.asgi import ASGIApp, Message, Receive, Scope, Send, header

# A Host header that can be written into the policy as it is (a name or an IP, and a port).
_PLAIN_HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def content_security_policy(host: str | None) -> str:
    """The page's policy. `connect-src 'self'` covers ws/wss of the same host in current
    browsers; the explicit entries cover older ones (CSP level 2 treats them apart)."""
    connect = "'self'"
    if host and _PLAIN_HOST.fullmatch(host):
        connect += f" ws://{host} wss://{host}"
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            f"connect-src {connect}",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "object-src 'none'",
        )
    )


def security_headers(host: str | None) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-security-policy", content_security_policy(host).encode()),
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
    ]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = security_headers(header(scope, b"host"))
        names = {name for name, _ in extra}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() not in names]
                message["headers"] = headers + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)

"""Pure-ASGI gzip (`[server] compression`): JSON, the page and its text assets above ~1 KiB,
when the client accepts gzip. Never a stream (SSE), a WebSocket, or a body that is already
encoded; a response whose first part says more is coming is compressed as it goes.

Written here rather than taken from Starlette's `GZipMiddleware`, which compresses whatever
content type is not on its exclusion list and reads `gzip;q=0` as an acceptance.
"""

from __future__ import annotations

import gzip
import zlib

from open_clanker.gateway.asgi import ASGIApp, Message, Receive, Scope, Send, header

MIN_SIZE = 1024  # below this gzip's header and the CPU cost outweigh the bytes saved
LEVEL = 6  # zlib's default: most of level 9's ratio for a fraction of its time
COMPRESSIBLE = frozenset(
    {
        "application/json",
        "application/javascript",
        "text/javascript",
        "text/html",
        "text/css",
        "text/plain",  # /metrics, /health
        "image/svg+xml",
    }
)


def accepts_gzip(accept_encoding: str | None) -> bool:
    """RFC 9110 §12.5.3: `gzip` (or `*`) listed with a q-value above zero."""
    if not accept_encoding:
        return False
    named: dict[str, float] = {}
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        named[coding.strip().lower()] = q
    if "gzip" in named:
        return named["gzip"] > 0
    return named.get("*", 0.0) > 0


def compressible(headers: list[tuple[bytes, bytes]], status: int) -> bool:
    """Whether a response with these headers may be gzipped at all."""
    if status < 200 or status in (204, 206, 304):
        return False
    values = {k.lower(): v for k, v in headers}
    if b"content-encoding" in values:
        return False
    if b"no-transform" in values.get(b"cache-control", b"").lower():
        return False
    media = values.get(b"content-type", b"").split(b";")[0].strip().lower().decode("latin-1")
    return media in COMPRESSIBLE


class Gzip:
    def __init__(self, app: ASGIApp, min_size: int = MIN_SIZE) -> None:
        self.app = app
        self.min_size = min_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not accepts_gzip(header(scope, b"accept-encoding")):
            await self.app(scope, receive, send)
            return
        await _GzipResponse(self.min_size, send).run(self.app, scope, receive)


class _GzipResponse:
    """One response: the start message is held until the first body part shows its size."""

    def __init__(self, min_size: int, send: Send) -> None:
        self._min_size = min_size
        self._send = send
        self._start: Message | None = None
        self._encoder: zlib._Compress | None = None
        self._passthrough = False

    async def run(self, app: ASGIApp, scope: Scope, receive: Receive) -> None:
        await app(scope, receive, self.send)

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            headers = list(message.get("headers", ()))
            if compressible(headers, int(message["status"])):
                self._start = message
            else:
                self._passthrough = True
                await self._send(message)
            return
        if kind != "http.response.body" or self._passthrough:
            await self._send(message)
            return
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        if self._start is not None:
            start, self._start = self._start, None
            if not more:
                await self._whole(start, body)
                return
            self._encoder = zlib.compressobj(LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            await self._send(_with_gzip_headers(start, None))
        assert self._encoder is not None
        chunk = self._encoder.compress(body)
        if more:
            chunk += self._encoder.flush(zlib.Z_SYNC_FLUSH)  # each part reaches the client now
        else:
            chunk += self._encoder.flush()
        await self._send({"type": "http.response.body", "body": chunk, "more_body": more})

    async def _whole(self, start: Message, body: bytes) -> None:
        if len(body) < self._min_size:
            await self._send(start)
            await self._send({"type": "http.response.body", "body": body})
            return
        packed = gzip.compress(body, LEVEL, mtime=0)
        await self._send(_with_gzip_headers(start, len(packed)))
        await self._send({"type": "http.response.body", "body": packed})


def _with_gzip_headers(start: Message, length: int | None) -> Message:
    headers = [(k, v) for k, v in start.get("headers", ()) if k.lower() != b"content-length"]
    headers.append((b"content-encoding", b"gzip"))
    vary = [v for k, v in headers if k.lower() == b"vary"]
    if not any(b"accept-encoding" in v.lower() or v.strip() == b"*" for v in vary):
        headers.append((b"vary", b"Accept-Encoding"))
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {**start, "headers": headers}

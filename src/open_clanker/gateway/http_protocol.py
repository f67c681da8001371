"""uvicorn's httptools protocol with the bounds it lacks before a request reaches the app: a
cap on the request head (431), a deadline for the head to arrive (408, or a quiet close when
nothing came), and a cap on open connections per client address (429).

httptools buffers a header of any size until its line ends and starts no timer before the
first request, so one unauthenticated connection could hold 64 MB or stay open forever; h11
caps the head but has no deadline either, and serves ~30 % fewer requests a second (measured
in ARCHITECTURE.md, "Request heads"). The WebSocket class is subclassed to give back its
connection's slot when it closes (an upgraded connection keeps the slot it had as HTTP), and
to hold less for as long as a socket stays open.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import Protocol

from open_clanker.gateway.ws_slim import Flag, Inbox

MAX_HEAD_BYTES = 64 * 1024  # request line + headers; nginx allows 32 KiB, h11 16 KiB
HEAD_TIMEOUT_S = 10.0  # from the first byte of a request (or the connection) to its last header
DEFAULT_PER_ADDRESS = 256


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_head_bytes: int = MAX_HEAD_BYTES
    head_timeout_s: float = HEAD_TIMEOUT_S
    per_address: int = DEFAULT_PER_ADDRESS
    exempt: tuple[str, ...] = ()  # trusted proxies: one address carries many clients


class ConnectionSlots:
    """Open connections per peer address, HTTP and upgraded WebSockets alike."""

    def __init__(self, per_address: int, exempt: Sequence[str]) -> None:
        self.per_address = per_address
        self._exempt = _networks(exempt)
        self._open: dict[str, int] = {}

    def key(self, transport: asyncio.BaseTransport) -> str | None:
        """The address a connection counts against; None when it is not counted."""
        peer = transport.get_extra_info("peername")
        if not isinstance(peer, tuple) or not peer:
            return None  # a Unix socket: no address to count
        addr = str(peer[0])
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return addr
        return None if any(ip in net for net in self._exempt) else addr

    def acquire(self, addr: str) -> bool:
        held = self._open.get(addr, 0)
        if held >= self.per_address:
            return False
        self._open[addr] = held + 1
        return True

    def release(self, addr: str | None) -> None:
        if addr is None:
            return
        held = self._open.get(addr, 0) - 1
        if held > 0:
            self._open[addr] = held
        else:
            self._open.pop(addr, None)

    def held(self, addr: str) -> int:
        return self._open.get(addr, 0)


def _networks(entries: Sequence[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    nets = []
    for entry in entries:
        try:
            nets.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            continue
    return tuple(nets)


def error_response(status: int, reason: str, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 answer in SPEC §5's JSON shape, closing the connection."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n"
    )
    if status == 429:
        head += "retry-after: 1\r\n"
    return head.encode() + b"\r\n" + body


HEAD_TOO_SLOW = error_response(
    408, "Request Timeout", "request_timeout", "The request's headers arrived too slowly."
)
TOO_MANY_CONNECTIONS = error_response(
    429,
    "Too Many Requests",
    "too_many_connections",
    "Too many connections from your address are open; close some and try again.",
)


def protocol_classes(limits: ConnectionLimits) -> tuple[type[asyncio.Protocol], type[Any]]:
    """(http, ws) protocol classes for `uvicorn.Config`, sharing one table of slots."""
    slots = ConnectionSlots(limits.per_address, limits.exempt)
    head_too_large = error_response(
        431,
        "Request Header Fields Too Large",
        "headers_too_large",
        f"The request's headers are over {limits.max_head_bytes} bytes.",
    )

    class GuardedWebSocket(WebSocketsSansIOProtocol):
        _slot: str | None = None

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # What an idle socket holds, made smaller (ws_slim.py says how much and why).
            self.queue = Inbox()  # type: ignore[assignment]
            self.writable = Flag()  # type: ignore[assignment]
            self.writable.set()

        async def send(self, message: Any) -> None:
            await super().send(message)
            if self.handshake_complete and getattr(self, "request", None) is not None:
                self._forget_handshake()

        def _forget_handshake(self) -> None:
            """The parsed handshake (request, response, their headers: ~5 KiB) is read only
            until the accept is sent; the app has its own copy in the scope. uvicorn keeps
            both, and websockets' server parser keeps the request alive in its generator's
            frame for the connection's life, so that parser is swapped for the frame parser it
            runs from then on -- only while it waits at a frame boundary with nothing read."""
            self.request = self.response = None  # type: ignore[assignment]
            conn = self.conn
            frames = getattr(conn.parser, "gi_yieldfrom", None)  # Protocol.parse
            waiting = getattr(frames, "gi_yieldfrom", None)  # StreamReader.at_eof
            code = getattr(waiting, "gi_code", None)
            if code is None or code.co_name != "at_eof" or conn.reader.buffer:
                return
            fresh = Protocol.parse(conn)
            next(fresh)  # to its first wait, as the library starts a parser
            conn.parser = fresh

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self._slot = slots.key(transport)  # held since the HTTP request it upgraded
            super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            slots.release(self._slot)
            self._slot = None
            super().connection_lost(exc)

    class GuardedHttpTools(HttpToolsProtocol):
        _slot: str | None = None
        _reading_head = True
        _head_bytes = 0
        _head_tail = b""  # the last bytes seen, in case the blank line spans two reads
        _head_timer: asyncio.TimerHandle | None = None
        _upgraded = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            key = slots.key(transport)
            if key is not None and not slots.acquire(key):
                self._refuse(TOO_MANY_CONNECTIONS)
                return
            self._slot = key
            self._arm_head_timer()  # an idle new connection is cut off too

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_head_timer()
            slots.release(self._slot)
            self._slot = None
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._reading_head and not self._upgraded:
                if self._head_bytes == 0:
                    self._arm_head_timer()
                # Measured before httptools sees the bytes, so it never holds more than the
                # cap: up to the blank line that ends the head, or all of it while none came.
                window = self._head_tail + data
                end = window.find(b"\r\n\r\n")
                taken = len(data) if end == -1 else end + 4 - len(self._head_tail)
                if self._head_bytes + taken > limits.max_head_bytes:
                    self._refuse(head_too_large)
                    return
                self._head_bytes += taken
                self._head_tail = window[-3:]
            super().data_received(data)

        def on_headers_complete(self) -> None:
            self._reading_head = False
            self._disarm_head_timer()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            # A pipelined request may follow.
            self._reading_head, self._head_bytes, self._head_tail = True, 0, b""

        def handle_websocket_upgrade(self) -> None:
            self._upgraded = True
            self._disarm_head_timer()
            self._slot = None  # the WebSocket protocol gives it back when it closes
            super().handle_websocket_upgrade()

        def _arm_head_timer(self) -> None:
            self._disarm_head_timer()
            self._head_timer = self.loop.call_later(limits.head_timeout_s, self._head_late)

        def _disarm_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_late(self) -> None:
            self._head_timer = None
            if not self._reading_head or self._upgraded or self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                # A response is still being written (we stopped reading meanwhile): the next
                # request's head is not late, it is waiting for us.
                self._arm_head_timer()
                return
            if self._head_bytes == 0:
                self.transport.close()  # nothing was asked: nothing to answer
            else:
                self._refuse(HEAD_TOO_SLOW)

        def _refuse(self, response: bytes) -> None:
            self._disarm_head_timer()
            self._reading_head = False
            self.transport.write(response)
            self.transport.close()

    return GuardedHttpTools, GuardedWebSocket

"""One WebSocket connection's outgoing frames: a buffer bounded in bytes, and its one writer.

Deltas of one chat that are still waiting merge into one frame, so a client that reads slower
than the model writes gets fewer, longer deltas instead of a growing queue; a client reading
at loopback speed never comes near the bound. Past it, events (droppable) are dropped and
anything else closes the socket with 1008, so a client that stops reading costs bounded memory.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

Frame = dict[str, Any]

CLOSE_POLICY = 1008
# Far above what a reading client ever has waiting (merged deltas plus one reply frame, whose
# text is bounded by max_message_chars and the model's max_tokens), small enough that 10,000
# stuck connections stay bounded.
SEND_BUFFER_BYTES = 2 * 1024 * 1024


def encode(frame: Frame) -> str:
    return json.dumps(frame, separators=(",", ":"))


def _text_size(text: str) -> int:
    return len(json.dumps(text)) - 2  # as it will appear inside the frame, escapes counted


@dataclass
class _Waiting:
    frame: Frame
    size: int
    parts: list[str] = field(default_factory=list)  # a delta's text, joined when it is sent

    def encode(self) -> str:
        if self.parts:
            return encode({**self.frame, "text": "".join(self.parts)})
        return encode(self.frame)


class SendBuffer:
    """Frames waiting for one socket. Drained either by `run()` (a writer for the socket's
    life) or, with `on_demand`, by a task started when a frame arrives and ended when the
    buffer is empty: an idle connection then holds no writer task, no waiting future."""

    def __init__(
        self, websocket: WebSocket, max_bytes: int = SEND_BUFFER_BYTES, *, on_demand: bool = False
    ) -> None:
        self._ws = websocket
        self._max_bytes = max_bytes
        self._waiting: deque[_Waiting] = deque()
        self._bytes = 0
        self._on_demand = on_demand
        self._wake: asyncio.Event | None = None if on_demand else asyncio.Event()
        self.writer: asyncio.Task[None] | None = None  # on demand: the drain running now
        self._close_with: tuple[int, str] | None = None
        self.closed = False

    def _kick(self) -> None:
        if not self._on_demand:
            assert self._wake is not None
            self._wake.set()
        elif self.writer is None:
            self.writer = asyncio.create_task(self._drain())

    @property
    def waiting_bytes(self) -> int:
        return self._bytes

    def send(self, frame: Frame, *, droppable: bool = False) -> None:
        if self.closed:
            return
        last = self._waiting[-1] if self._waiting else None
        if (
            frame.get("type") == "delta"
            and last is not None
            and last.parts
            and last.frame.get("id") == frame.get("id")
        ):
            added = _text_size(frame["text"])
            if self._over(added, droppable):
                return
            last.parts.append(frame["text"])
            last.size += added
            self._bytes += added
            return
        if frame.get("type") == "delta":
            head = {"type": "delta", "id": frame.get("id")}
            item = _Waiting(head, len(encode(frame)), [frame["text"]])
        else:
            item = _Waiting(frame, len(encode(frame)))
        if self._over(item.size, droppable):
            return
        self._waiting.append(item)
        self._bytes += item.size
        self._kick()

    def _over(self, size: int, droppable: bool) -> bool:
        """True when `size` more bytes do not fit; a frame that does not fit closes the socket
        unless it may be dropped. An empty buffer takes any one frame."""
        if not self._waiting or self._bytes + size <= self._max_bytes:
            return False
        if not droppable:
            self.close(CLOSE_POLICY, "client too slow")
        return True

    def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self._waiting.clear()
        self._bytes = 0
        self._close_with = (code, reason)
        self._kick()

    async def run(self) -> None:
        """Send frames as they come until the buffer is closed (not with `on_demand`)."""
        assert self._wake is not None
        try:
            while True:
                if self._close_with is not None:
                    await self._ws.close(*self._close_with)
                    return
                if not self._waiting:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                item = self._waiting.popleft()
                self._bytes -= item.size
                await self._ws.send_text(item.encode())
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.closed = True  # the client went away; the reader sees the disconnect

    async def _drain(self) -> None:
        """On demand: send what is waiting (and the close, once asked), then end."""
        try:
            while True:
                if self._close_with is not None:
                    await self._ws.close(*self._close_with)
                    return
                if not self._waiting:
                    return  # no await since the check: a frame sent now starts a new drain
                item = self._waiting.popleft()
                self._bytes -= item.size
                await self._ws.send_text(item.encode())
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.closed = True  # the client went away; the reader sees the disconnect
        finally:
            self.writer = None

"""The echo model and the Telegram double, listening on one port per replica.

The randomized replica test must tell which replica made a model call or a `sendMessage`: a
duplicate send is acceptable only from a replica that was killed before it could record the
send, and a second model call only from one killed (or fenced off) mid-turn. Each replica's
config points at its own port of the same double, so the local port of a request names its
caller; every record carries the caller and a monotonic time, the clock the kill schedule uses.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.doubles.echo_model import EchoModel
from tests.doubles.telegram_double import TelegramDouble

_caller: contextvars.ContextVar[int] = contextvars.ContextVar("caller", default=-1)

# Called as (kind, replica) when a call reaches a double ("model", "send"): the run may kill
# that replica right there, before the double answers it.
OnCall = Callable[[str, int], None]


def _ignore(_kind: str, _replica: int) -> None:
    return None


@dataclass(frozen=True, slots=True)
class ModelCall:
    replica: int
    at: float  # time.monotonic() when the call arrived
    messages: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class SendRecord:
    """A successful `sendMessage` (a new chat message) or `editMessageText` (of `message_id`)."""

    replica: int
    at: float
    chat_id: int
    raw: str  # exactly what the bot sent: an outbox part's text, or a draft
    message_id: int = 0
    edit: bool = False


async def _add_ports(runner: web.AppRunner | None, count: int) -> list[int]:
    """One more listening port per replica on an already started runner."""
    assert runner is not None
    ports = []
    for _ in range(count):
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only through the server
        assert server is not None
        ports.append(int(server.sockets[0].getsockname()[1]))  # type: ignore[union-attr]
    return ports


async def _ports_by_replica(runner: web.AppRunner | None, count: int) -> dict[int, int]:
    """One more listening port per replica: port -> replica index (in port order)."""
    ports = await _add_ports(runner, count)
    return {port: i for i, port in enumerate(ports)}


def _local_port(request: web.Request) -> int:
    assert request.transport is not None
    return int(request.transport.get_extra_info("sockname")[1])


@dataclass
class TracedEchoModel(EchoModel):
    """`EchoModel` that records which replica asked, and when."""

    calls: list[ModelCall] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    on_call: OnCall = _ignore
    _port_of: dict[int, int] = field(default_factory=dict)

    async def listen_per_replica(self, count: int) -> list[str]:
        await self.start()
        self._port_of = await _ports_by_replica(self._runner, count)
        self.urls = [f"http://127.0.0.1:{port}/v1" for port in self._port_of]
        return self.urls

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()  # aiohttp keeps the body: the double reads it again
        messages = [m for m in body.get("messages", []) if m.get("role") != "system"]
        replica = self._port_of.get(_local_port(request), -1)
        self.calls.append(ModelCall(replica, time.monotonic(), messages))
        self.on_call("model", replica)
        return await super()._completions(request)


@dataclass
class TracedTelegram(TelegramDouble):
    """`TelegramDouble` that records which replica sent each message, and when."""

    records: list[SendRecord] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    on_call: OnCall = _ignore
    _port_of: dict[int, int] = field(default_factory=dict)

    async def listen_per_replica(self, count: int) -> list[str]:
        await self.start()
        self._port_of = await _ports_by_replica(self._runner, count)
        self.urls = [f"http://127.0.0.1:{port}" for port in self._port_of]
        return self.urls

    async def _handle(self, request: web.Request) -> web.Response:
        # Each request runs in its own task: the caller is seen by this request's method only.
        _caller.set(self._port_of.get(_local_port(request), -1))
        return await super()._handle(request)

    async def _m_sendMessage(self, params: dict[str, Any]) -> web.Response:
        before = len(self.sent)
        response = await super()._m_sendMessage(params)  # no await inside: nothing interleaves
        for sent in self.sent[before:]:
            self.records.append(
                SendRecord(
                    _caller.get(), time.monotonic(), int(sent.chat_id), sent.raw, sent.message_id
                )
            )
        if len(self.sent) > before:
            self.on_call("send", _caller.get())  # sent: a kill now is a send never recorded
        return response

    async def _m_editMessageText(self, params: dict[str, Any]) -> web.Response:
        response = await super()._m_editMessageText(params)
        if response.status == 200:
            self.records.append(
                SendRecord(
                    _caller.get(),
                    time.monotonic(),
                    int(params["chat_id"]),
                    str(params["text"]),
                    int(params["message_id"]),
                    edit=True,
                )
            )
        return response

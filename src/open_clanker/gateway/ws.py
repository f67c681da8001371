"""The `/ws` endpoint (SPEC §5): auth, chat turns streamed as frames, bus events, ping.

Each connection has one send buffer bounded in bytes and drained by one writer task while
frames wait (`ws_outbox.py`), so a client that stops reading costs bounded memory and an idle
one holds no task. Chats on one socket run concurrently; a pipeline turn is shielded from the
socket, so a client leaving mid-stream does not stop its reply from being stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

import structlog
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from open_clanker.config.model import Config
from open_clanker.core.errors import ClankerError, InputError, ProviderError
from open_clanker.core.types import (
    AgentResponse,
    ChannelType,
    Inbound,
    Message,
    SessionKey,
    client_session_key,
)
from open_clanker.gateway import ws_frames as frames
from open_clanker.gateway.asgi import ASGIApp, Receive, Scope, Send
from open_clanker.gateway.auth import locked_out_error
from open_clanker.gateway.client_ip import client_ip
from open_clanker.gateway.errors import clanker_error_response
from open_clanker.gateway.lockout import AuthLockout, Outcome
from open_clanker.gateway.ws_frames import (
    AuthFrame,
    ChatFrame,
    Frame,
    PingFrame,
    StopFrame,
    SubscribeFrame,
)
from open_clanker.gateway.ws_outbox import CLOSE_POLICY, SEND_BUFFER_BYTES, SendBuffer
from open_clanker.pipeline.context import Ending, Turn
from open_clanker.pipeline.pipeline import Pipeline

log = structlog.get_logger("open_clanker.gateway.ws")

# RFC 6455 close codes (and CLOSE_POLICY, 1008).
CLOSE_TOO_BIG = 1009
CLOSE_TRY_LATER = 1013
CLOSE_WAIT_S = 5.0


class TokenCheck(Protocol):
    def check(self, presented: str) -> bool: ...


class EventSource(Protocol):
    def subscribe(self) -> AbstractAsyncContextManager[asyncio.Queue[Message]]: ...


class WSRuntime(Protocol):
    """What the endpoint needs from `Runtime` (found at `app.state.runtime`)."""

    @property
    def config(self) -> Config: ...
    @property
    def tokens(self) -> TokenCheck: ...
    @property
    def bus(self) -> EventSource: ...
    @property
    def pipeline(self) -> Pipeline: ...
    @property
    def lockout(self) -> AuthLockout: ...


@dataclass(frozen=True)
class WSLimits:
    """Per-connection bounds; put another on `app.state.ws_limits` to change them (tests)."""

    auth_timeout_s: float = 5.0
    send_buffer_bytes: int = SEND_BUFFER_BYTES
    chats_in_flight: int = 16
    max_frame_bytes: int = frames.MAX_FRAME_BYTES


DEFAULT_LIMITS = WSLimits()

_open_connections = 0
# Pipeline turns whose socket has gone: kept referenced until they finish and store the reply.
_detached_turns: set[asyncio.Task[Turn]] = set()


def open_ws_connections() -> int:
    """Accepted WebSocket connections right now (for `/metrics`)."""
    return _open_connections


class _FrameSink:
    """The pipeline's `ReplySink` for one chat frame."""

    def __init__(self, outbox: SendBuffer, chat_id: str) -> None:
        self._outbox = outbox
        self._id = chat_id

    async def delta(self, text: str) -> None:
        self._outbox.send(frames.delta_frame(self._id, text))

    async def reset(self) -> None:
        self._outbox.send(frames.reset_frame(self._id))


def turn_frame(turn: Turn, chat_id: str, session: SessionKey) -> Frame:
    """What the client hears when a turn is done (pure)."""
    ending = turn.ending
    # `message` is the user's message and `reply.id` the stored reply's, as in POST /api/v1/chat.
    if ending is Ending.ANSWERED and turn.reply is not None and turn.response is not None:
        response = turn.response.model_copy(update={"id": turn.reply.id})
        return frames.reply_frame(chat_id, session, turn.message, response)
    if ending is Ending.COMMAND and turn.reply is not None:
        notice = AgentResponse(
            id=turn.reply.id, content=turn.notice or "", model="", provider="gateway"
        )
        return frames.reply_frame(chat_id, session, turn.message, notice)
    if ending is Ending.FAILED:
        provider = turn.error.provider if isinstance(turn.error, ProviderError) else "unknown"
        return frames.error_frame(
            "provider_error",
            f"The model provider {provider!r} could not answer. Please try again in a moment.",
            chat_id,
        )
    if ending is Ending.REFUSED and turn.error is not None:
        return frames.error_frame(turn.error.code, turn.error.message, chat_id)
    return frames.error_frame(
        "internal_error",
        f"The gateway did not answer this message ({ending}). Please try again.",
        chat_id,
    )


def _runtime(websocket: WebSocket) -> WSRuntime:
    runtime: WSRuntime = websocket.app.state.runtime
    return runtime


def _limits(websocket: WebSocket) -> WSLimits:
    limits = getattr(websocket.app.state, "ws_limits", None)
    return limits if isinstance(limits, WSLimits) else DEFAULT_LIMITS


def websocket_app(app: Starlette) -> ASGIApp:
    """`/ws` as a raw ASGI app for the guard to call: `app` is what the endpoint reads its
    runtime and limits from (`websocket.app.state`), as it would under Starlette's router."""

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = app
        await websocket_endpoint(WebSocket(scope, receive, send))

    return serve


async def websocket_endpoint(websocket: WebSocket) -> None:
    global _open_connections
    runtime = _runtime(websocket)
    limits = _limits(websocket)
    server = runtime.config.server
    origin = websocket.headers.get("origin")
    if not frames.origin_allowed(origin, websocket.headers.get("host"), server.cors_origins):
        log.warning("ws_origin_refused", origin=origin)
        await websocket.close(CLOSE_POLICY)  # before accept: the upgrade gets a 403
        return
    peer = websocket.client.host if websocket.client else None
    addr = client_ip(peer, websocket.headers.getlist("x-forwarded-for"), server.trusted_proxies)
    wait = await runtime.lockout.retry_after(addr)
    if wait is not None:
        log.warning("ws_locked_out", retry_after=round(wait))
        await _deny(websocket, clanker_error_response(locked_out_error(wait)))
        return
    await websocket.accept()
    if _open_connections >= server.max_ws_connections:
        log.warning("ws_connection_cap", open=_open_connections)
        await websocket.close(CLOSE_TRY_LATER, "try again later")
        return
    _open_connections += 1
    try:
        if await _authenticate(websocket, runtime, limits, addr):
            await _Connection(websocket, runtime, limits).serve()
    finally:
        _open_connections -= 1


async def _deny(websocket: WebSocket, response: Response) -> None:
    """Refuse the upgrade with an HTTP answer (429 + Retry-After), or a plain close."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:
        await websocket.close(CLOSE_POLICY)


async def _authenticate(
    websocket: WebSocket, runtime: WSRuntime, limits: WSLimits, addr: str
) -> bool:
    header = websocket.headers.get("authorization")
    token = frames.bearer_token(header)
    if header is None:
        token = await _auth_frame(websocket, limits)
    # Counted before the client hears the outcome: many sockets at once get no more answers.
    verdict = await runtime.lockout.attempt(addr, token is not None and runtime.tokens.check(token))
    if verdict.outcome is Outcome.PASS:
        return True
    if verdict.locked:
        log.warning("ws_locked_out", retry_after=round(verdict.retry_after))
        refusal = locked_out_error(verdict.retry_after)
        frame = frames.error_frame(refusal.code, refusal.message)
    else:
        log.info("ws_unauthorized", header=header is not None)
        frame = frames.error_frame(
            "unauthorized",
            "A valid gateway token is needed: send an Authorization header or an "
            'auth frame {"type": "auth", "token": "..."} first.',
        )
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        await websocket.send_text(json.dumps(frame))
        await websocket.close(CLOSE_POLICY, frame["code"])
    return False


async def _auth_frame(websocket: WebSocket, limits: WSLimits) -> str | None:
    try:
        message = await asyncio.wait_for(websocket.receive(), limits.auth_timeout_s)
    except TimeoutError:
        return None
    raw = message.get("text") or message.get("bytes")
    if message["type"] != "websocket.receive" or raw is None:
        return None
    if len(raw) > limits.max_frame_bytes:
        return None
    try:
        frame = frames.parse_frame(raw)
    except InputError as exc:  # named to the client, then counted as a failed attempt
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await websocket.send_text(json.dumps(frames.error_frame(exc.code, exc.message)))
        return None
    return frame.token if isinstance(frame, AuthFrame) else None


class _Connection:
    def __init__(self, websocket: WebSocket, runtime: WSRuntime, limits: WSLimits) -> None:
        self._ws = websocket
        self._runtime = runtime
        self._limits = limits
        # The writer runs only while frames wait: an idle socket holds no task (KiB each, at
        # 10,000 idle sockets: docs/benchmarks.md, "Levers: WebSockets").
        self._outbox = SendBuffer(websocket, limits.send_buffer_bytes, on_demand=True)
        self._chats: set[asyncio.Task[None]] = set()
        self._subscription: asyncio.Task[None] | None = None

    async def serve(self) -> None:
        try:
            await self._read()
            writer = self._outbox.writer
            if self._outbox.closed and writer is not None:  # let it send the close frame
                await asyncio.wait({writer}, timeout=CLOSE_WAIT_S)
        finally:
            self._outbox.closed = True
            for task in [*self._chats, self._subscription]:
                if task is not None:
                    task.cancel()  # the pipeline turns themselves are shielded
            writer = self._outbox.writer
            if writer is not None:
                writer.cancel()
            await asyncio.gather(*self._chats, return_exceptions=True)
            if writer is not None:
                await asyncio.gather(writer, return_exceptions=True)
            if self._subscription is not None:
                await asyncio.gather(self._subscription, return_exceptions=True)

    async def _read(self) -> None:
        while True:
            message = await self._ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            raw: str | bytes | None = message.get("text")
            if raw is None:
                raw = message.get("bytes")
            if raw is None:
                continue
            size = len(raw.encode() if isinstance(raw, str) else raw)
            if size > self._limits.max_frame_bytes:
                log.info("ws_frame_too_big", size=size)
                self._outbox.close(CLOSE_TOO_BIG, "frame over 1 MiB")
                return
            self._dispatch(raw)

    def _dispatch(self, raw: str | bytes) -> None:
        try:
            frame = frames.parse_frame(raw)
        except InputError as exc:
            self._outbox.send(frames.error_frame(exc.code, exc.message, frames.frame_id(raw)))
            return
        if isinstance(frame, PingFrame):
            self._outbox.send(frames.PONG)
        elif isinstance(frame, SubscribeFrame):
            if self._subscription is None:
                self._subscription = asyncio.create_task(self._forward_events())
        elif isinstance(frame, ChatFrame):
            self._start_chat(frame)
        elif isinstance(frame, StopFrame):
            # A task like a chat's: the stop may ask storage which replica runs the answer.
            task = asyncio.create_task(self._stop(frame))
            self._chats.add(task)
            task.add_done_callback(self._chats.discard)
        # A repeated auth frame on an authenticated socket changes nothing.

    async def _stop(self, frame: StopFrame) -> None:
        key = client_session_key(frame.session, ChannelType.WEBCHAT)
        stopped = await self._runtime.pipeline.stop(key)
        self._outbox.send(frames.stopped_frame(key, stopped))

    def _start_chat(self, frame: ChatFrame) -> None:
        server = self._runtime.config.server
        if len(frame.text) > server.max_message_chars:
            self._outbox.send(
                frames.error_frame(
                    "message_too_long",
                    f"Your message is {len(frame.text)} characters long; the limit is "
                    f"{server.max_message_chars}. Please send something shorter.",
                    frame.id,
                )
            )
            return
        if not self._runtime.pipeline.accepting:
            self._outbox.send(
                frames.error_frame(
                    "not_ready", "The gateway is shutting down; please retry shortly.", frame.id
                )
            )
            return
        if len(self._chats) >= self._limits.chats_in_flight:
            self._outbox.send(
                frames.error_frame(
                    "rate_limited",
                    "Too many messages are waiting for an answer on this connection; "
                    "wait for a reply before sending more.",
                    frame.id,
                )
            )
            return
        task = asyncio.create_task(self._chat(frame))
        self._chats.add(task)
        task.add_done_callback(self._chats.discard)

    async def _chat(self, frame: ChatFrame) -> None:
        key = client_session_key(frame.session, ChannelType.WEBCHAT)
        message = Message(
            channel_type=ChannelType.WEBCHAT,
            channel_id=key.split(":", 1)[1],
            sender="webchat",
            text=frame.text,
            session=key,
        )
        self._outbox.send(frames.ack_frame(frame.id))
        handle = asyncio.create_task(
            self._runtime.pipeline.handle(Inbound(message), _FrameSink(self._outbox, frame.id))
        )
        _detached_turns.add(handle)
        handle.add_done_callback(_turn_done)
        try:
            turn = await asyncio.shield(handle)
        except ClankerError as exc:
            self._outbox.send(frames.error_frame(exc.code, exc.message, frame.id))
            return
        except Exception:  # the border: the client hears of it; `_turn_done` logs it
            self._outbox.send(
                frames.error_frame(
                    "internal_error", "The gateway failed on this message; please retry.", frame.id
                )
            )
            return
        self._outbox.send(turn_frame(turn, frame.id, key))

    async def _forward_events(self) -> None:
        async with self._runtime.bus.subscribe() as queue:
            while True:
                message = await queue.get()
                self._outbox.send(frames.event_frame(message), droppable=True)


def _turn_done(task: asyncio.Task[Turn]) -> None:
    _detached_turns.discard(task)
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None and not isinstance(exc, ClankerError):
        log.error("ws_turn_crashed", error=repr(exc))

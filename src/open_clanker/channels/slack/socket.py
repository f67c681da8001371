"""Slack Socket Mode: slack_sdk's aiohttp `SocketModeClient`, supervised.

The SDK keeps one connection alive by itself: it pings every `ping_interval` and reconnects
when pongs stop, when Slack closes the socket, and when Slack sends `disconnect` (reasons
`refresh_requested`, `warning`, `link_disabled`). We add what it lacks: an envelope is
acknowledged only after its message is stored (`intake` returned), so a crash before that
makes Slack deliver it again; a fresh client after a fatal error or when the connection has
been silent too long (our watchdog), with capped backoff; one log line per (re)connect; and
the channel's health for `/ready`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import WSMessage
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from open_clanker.channels.base import ChannelHealth
from open_clanker.channels.slack.errors import (
    AUTH_ERRORS,
    TRANSPORT_ERRORS,
    TokenKind,
    describe,
    error_code,
    fix_for,
    retry_after_s,
)

log = structlog.get_logger("open_clanker.slack")

Intake = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SocketTiming:
    """The SDK's ping interval (it calls a connection stale after 4 without a pong), our
    watchdog's check interval and silence limit, the backoff between fresh clients, and how
    long one connect may take."""

    ping_interval_s: float = 5.0
    watch_interval_s: float = 5.0
    stall_after_s: float = 45.0
    backoff_min_s: float = 1.0
    backoff_max_s: float = 60.0
    connect_timeout_s: float = 30.0


@dataclass(eq=False)
class _Connection:
    """What one SDK client saw: its hello, its last frame, why Slack asked it to go."""

    client: SocketModeClient
    hello: asyncio.Event = field(default_factory=asyncio.Event)
    last_frame: float = field(default_factory=time.time)


class _NoTracebacks(logging.Filter):
    """The SDK logs every failed (re)connect attempt with a traceback; one line is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text = None, None
        return True


def quiet_sdk_logs() -> None:
    library = logging.getLogger("slack_sdk")
    if library.level == logging.NOTSET and not logging.getLogger().isEnabledFor(logging.DEBUG):
        library.setLevel(logging.WARNING)
    socket_log = logging.getLogger("slack_sdk.socket_mode.aiohttp")
    if not any(isinstance(f, _NoTracebacks) for f in socket_log.filters):
        socket_log.addFilter(_NoTracebacks())


class SocketReceiver:
    """Receives events over Socket Mode until `stop()`; sending is not its job."""

    def __init__(
        self,
        app_token: str,
        web: Callable[[], AsyncWebClient],
        ensure_ready: Callable[[], Awaitable[None]],
        intake: Intake,
        health: ChannelHealth,
        timing: SocketTiming,
    ) -> None:
        self._app_token = app_token
        self._web = web
        self._ensure_ready = ensure_ready
        self._intake = intake
        self._health = health
        self._timing = timing
        self._task: asyncio.Task[None] | None = None
        self._conn: _Connection | None = None
        self._order = asyncio.Lock()  # envelopes are handed on in the order they arrived
        self._handling: set[asyncio.Task[None]] = set()
        self._connected_once = False
        self._reason: str | None = None  # why the next hello is a reconnect
        self._first_attempt = asyncio.Event()
        self._stopping = False

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.hello.is_set()

    async def start(self, wait_s: float) -> None:
        """Connect in the background; return once connected or the first attempt failed."""
        self._stopping = False
        self._connected_once = False
        self._first_attempt = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="slack-socket")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await self._first_attempt.wait()

    async def stop(self, drain_s: float) -> None:
        """Stop taking envelopes (un-acked ones are delivered again by Slack), let the ones
        being stored finish and be acked (bounded), then close the connection."""
        self._stopping = True
        if self._handling:
            await asyncio.wait(set(self._handling), timeout=drain_s)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close()

    # -- the supervisor ---------------------------------------------------------------------

    async def _run(self) -> None:
        t = self._timing
        delay = t.backoff_min_s
        while not self._stopping:
            wait, problem, fatal = delay, "", False
            try:
                await self._ensure_ready()
                conn = self._open()
                async with asyncio.timeout(t.connect_timeout_s):
                    await conn.client.connect_to_new_endpoint(force=True)
                    await conn.hello.wait()
                delay = t.backoff_min_s
                await self._watch(conn)  # returns when the connection went silent
                self._reason, wait = "stalled", 0.0
            except SlackApiError as exc:
                code = error_code(exc)
                fatal = code in AUTH_ERRORS
                kind: TokenKind = "app" if _is_connections_open(exc) else "bot"
                problem = fix_for(code, kind) if fatal else f"Slack failed ({describe(exc)})"
                wait = retry_after_s(exc) or (t.backoff_max_s if fatal else delay)
            except TRANSPORT_ERRORS as exc:
                problem = f"could not connect to Slack's Socket Mode ({describe(exc)})"
            finally:
                await self._close()
            if problem:
                self._health.degrade(problem)
                # Only what the operator must fix is an error; a network blip is retried quietly.
                (log.error if fatal else log.warning)(
                    "slack_connect_failed", error=problem, retry_in=round(wait, 2)
                )
                self._reason = self._reason or "connect failed"
            self._first_attempt.set()
            await asyncio.sleep(wait)
            if problem:
                delay = min(delay * 2, t.backoff_max_s)

    async def _watch(self, conn: _Connection) -> None:
        """Our watchdog: the SDK reconnects by itself, but a connection (or a reconnect) that
        has shown no sign of life for `stall_after_s` is replaced by a fresh client."""
        t = self._timing
        while True:
            await asyncio.sleep(t.watch_interval_s)
            last = max(conn.last_frame, conn.client.last_ping_pong_time or 0.0)
            silent = time.time() - last
            if silent > t.stall_after_s:
                self._health.degrade(
                    f"no contact with Slack's Socket Mode for {silent:.0f} s; reconnecting"
                )
                log.warning("slack_socket_stalled", silent_s=round(silent, 1))
                return
            if conn.hello.is_set() and await conn.client.is_connected():
                self._health.contact()
                self._health.last_contact = last
            elif conn.hello.is_set():
                self._health.degrade("disconnected from Slack's Socket Mode; reconnecting")

    def _open(self) -> _Connection:
        client = SocketModeClient(
            self._app_token,
            web_client=self._web(),
            auto_reconnect_enabled=True,
            ping_interval=self._timing.ping_interval_s,
        )
        conn = _Connection(client)

        async def frame(message: WSMessage) -> None:
            self._on_frame(conn, message)

        async def request(_client: Any, req: SocketModeRequest) -> None:
            await self._on_request(conn, req)

        client.on_message_listeners.append(frame)
        client.socket_mode_request_listeners.append(request)
        self._conn = conn
        return conn

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # closing a broken socket may fail; it is gone
                await conn.client.close()  # type: ignore[no-untyped-call]

    # -- frames -----------------------------------------------------------------------------

    def _on_frame(self, conn: _Connection, message: WSMessage) -> None:
        """Every text frame: contact for `/ready`; `hello` and `disconnect` for the log."""
        conn.last_frame = time.time()
        try:
            frame = json.loads(message.data)
        except (TypeError, ValueError):
            return
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "hello":
            conn.hello.set()
            self._health.contact()
            if self._connected_once:
                log.info("slack_reconnected", reason=self._reason or "connection closed")
            else:
                log.info("slack_connected", mode="socket")
            self._connected_once, self._reason = True, None
            self._first_attempt.set()
        elif kind == "disconnect":
            self._reason = str(frame.get("reason") or "disconnect")

    async def _on_request(self, conn: _Connection, req: SocketModeRequest) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handling.add(task)
        try:
            await self._handle(conn, req)
        finally:
            if task is not None:
                self._handling.discard(task)

    async def _handle(self, conn: _Connection, req: SocketModeRequest) -> None:
        if req.type == "events_api":
            async with self._order:
                if self._stopping:
                    return  # not acked: Slack delivers it again (to whoever receives next)
                if req.retry_attempt:
                    log.info(
                        "slack_envelope_redelivered",
                        attempt=req.retry_attempt,
                        reason=req.retry_reason or "",
                    )
                try:
                    await self._intake(req.payload)
                except Exception as exc:  # not acked: Slack delivers it again later
                    log.error("slack_intake_failed", error=repr(exc))
                    return
        # Interactive and slash-command envelopes are not used; acking stops their resends.
        try:
            await conn.client.send_socket_mode_response(SocketModeResponse(req.envelope_id))
        except TRANSPORT_ERRORS as exc:  # the message is stored; a re-delivery is deduplicated
            log.warning("slack_ack_failed", error=describe(exc))


def _is_connections_open(exc: SlackApiError) -> bool:
    return str(getattr(exc.response, "api_url", "")).endswith("apps.connections.open")

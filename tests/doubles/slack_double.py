"""A loopback Slack: the Web API, the Socket Mode WebSocket and signed Events API delivery.

This file is longer than our usual ~500 lines on purpose: it is one platform (Web API, Socket
Mode and the Events API share the workspace's state), and splitting it would scatter that.

What it does, as Slack does it (checked against slack_sdk 3.x in tests/test_slack_double.py):

* Web API at `<base>/api/<method>`, arguments from the query string, a form or a JSON body,
  the token from `Authorization: Bearer` (or a `token` argument). Answers are HTTP 200 with
  `{"ok": true, …}` or `{"ok": false, "error": "<code>"}` (`not_authed`, `invalid_auth`,
  `not_allowed_token_type` for the wrong kind of token, `channel_not_found`, `no_text`,
  `msg_too_long` past 40,000 characters, `message_not_found`, `cant_update_message`), with
  `X-Slack-Req-Id` and `X-OAuth-Scopes` headers. `fail_next` scripts failures: 429 with
  `Retry-After` and `{"ok": false, "error": "ratelimited"}`, 5xx with an HTML body, or any
  `ok: false` error (`missing_scope` carries `needed` and `provided`).
* Messages the bot posts are stored, recorded in `posted` and echoed back as `message` events
  with `bot_id` (the bot sees its own messages); edits echo as `message_changed`.
* Socket Mode: `apps.connections.open` (app-level `xapp-` token only) returns a one-use
  `ws://…/link/?ticket=…` URL. A connection gets `hello`, then `events_api` envelopes. An
  envelope not acknowledged (`{"envelope_id": …}`) within `ack_timeout_s` is sent again with
  `retry_attempt` + 1 and `retry_reason: "timeout"`, at most 3 times, to any open connection;
  when none is open it waits for the next one. `request_refresh` sends `disconnect`
  (`refresh_requested`) and closes the socket after a grace period; `drop` closes it at once;
  `zombie` stops answering pings and sending frames, and makes new connections hang.
* Events API: `deliver_http` posts an `event_callback` signed with the signing secret
  (`X-Slack-Signature: v0=HMAC-SHA256("v0:<ts>:<body>")`, `X-Slack-Request-Timestamp`) and,
  like Slack, retries a request that was not answered 200 within 3 s, up to 3 times, with
  `X-Slack-Retry-Num` and `X-Slack-Retry-Reason`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Self

import aiohttp
from aiohttp import WSMsgType, web

BOT_TOKEN = "xoxb-1000000001-2000000000002-sLaCkDoUbLeBoTtOkEn0001"
APP_TOKEN = "xapp-1-A0DOUBLE01-3000000000003-5lackd0ubleappt0ken000000000000000001"
SIGNING_SECRET = "8f742231b10e8888abcd99edabcd00d9"
TEAM_ID = "T0DOUBLE01"
APP_ID = "A0DOUBLE01"
BOT_USER_ID = "U0BOTUSER1"
BOT_ID = "B0BOTID001"
BOT_NAME = "clanker"
MAX_TEXT = 40_000
MAX_RETRIES = 3
SCOPES = "app_mentions:read,channels:history,chat:write,groups:history,im:history,mpim:history"

JSON = dict[str, Any]


@dataclass
class ApiCall:
    method: str
    args: JSON
    token: str  # "bot", "app", "none" or "wrong": which kind of token authenticated it
    status: int = 200
    error: str | None = None


@dataclass
class Posted:
    """A message the bot posted, as the channel shows it (edits applied)."""

    channel: str
    ts: str
    text: str
    thread_ts: str | None
    args: JSON
    edits: list[str] = field(default_factory=list)


@dataclass
class Envelope:
    envelope_id: str
    payload: JSON
    attempts: int = 0  # deliveries so far
    acked: bool = False
    sent_at: float = 0.0

    def frame(self) -> JSON:
        retry = max(self.attempts - 1, 0)
        return {
            "envelope_id": self.envelope_id,
            "payload": self.payload,
            "type": "events_api",
            "accepts_response_payload": False,
            "retry_attempt": retry,
            "retry_reason": "timeout" if retry else "",
        }


@dataclass
class HttpDelivery:
    attempt: int  # 0 first, then 1..3 (X-Slack-Retry-Num)
    status: int | None  # None: no answer within 3 s
    body: str


@dataclass(eq=False)
class _Socket:
    ws: web.WebSocketResponse
    ticket: str
    closed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Failure:
    method: str
    status: int
    error: str
    retry_after: float | None
    extra: JSON


class SlackDouble:
    def __init__(
        self,
        *,
        ack_timeout_s: float = 3.0,
        refresh_grace_s: float = 2.0,
        http_timeout_s: float = 3.0,
        retry_delays_s: tuple[float, ...] = (0.05, 0.1, 0.2),
    ) -> None:
        self.bot_token = BOT_TOKEN
        self.app_token = APP_TOKEN
        self.signing_secret = SIGNING_SECRET
        self.ack_timeout_s = ack_timeout_s
        self.refresh_grace_s = refresh_grace_s
        self.http_timeout_s = http_timeout_s
        self.retry_delays_s = retry_delays_s
        self.calls: list[ApiCall] = []
        self.posted: list[Posted] = []
        self.envelopes: list[Envelope] = []
        self.acks: list[str] = []  # envelope ids, in the order they were acknowledged
        self.hellos = 0  # connections that got `hello`
        self.channels: dict[str, str] = {}  # id -> channel_type (channel, group, im, mpim)
        self.files: dict[str, tuple[bytes, str]] = {}  # file id -> (content, mimetype)
        self._sockets: list[_Socket] = []
        self._tickets: set[str] = set()
        self._failures: list[_Failure] = []
        self._zombie = False
        self._unzombie = asyncio.Event()
        self._changed = asyncio.Condition()
        self._ts = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.base_url = ""

    # -- running ----------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/link/", self._link)
        app.router.add_get("/files-pri/{ref}/{name}", self._file)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self._spawn(self._redeliver_loop())
        return self.base_url

    async def stop(self) -> None:
        self._unzombie.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for sock in list(self._sockets):
            with contextlib.suppress(Exception):
                await sock.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def api_base_url(self) -> str:
        return f"{self.base_url}/api"

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Block until the predicate holds after some change (an API call, a frame, an ack)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

    # -- scripting --------------------------------------------------------------------------

    def add_channel(self, channel_id: str, kind: str = "channel") -> None:
        self.channels[channel_id] = kind

    def fail_next(
        self,
        method: str,
        *,
        status: int = 200,
        error: str = "internal_error",
        retry_after: float | None = None,
        times: int = 1,
        **extra: Any,
    ) -> None:
        """The next `times` calls of `method` fail: `status` 429 (ratelimited, Retry-After),
        5xx (an HTML page) or 200 with `{"ok": false, "error": error, **extra}`."""
        for _ in range(times):
            self._failures.append(_Failure(method, status, error, retry_after, extra))

    def add_file(self, name: str, content: bytes, mimetype: str) -> JSON:
        file_id = f"F{len(self.files) + 1:08d}"
        self.files[file_id] = (content, mimetype)
        return {
            "id": file_id,
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": name.rsplit(".", 1)[-1],
            "size": len(content),
            "url_private": f"{self.base_url}/files-pri/{TEAM_ID}-{file_id}/{name}",
            "url_private_download": f"{self.base_url}/files-pri/{TEAM_ID}-{file_id}/download/{name}",
        }

    def next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    def message(
        self,
        channel: str,
        text: str,
        *,
        user: str = "U0ALICE001",
        thread_ts: str | None = None,
        ts: str | None = None,
        **extra: Any,
    ) -> JSON:
        """A `message` event as Slack sends it for what a person wrote."""
        ts = ts or self.next_ts()
        kind = self.channels.get(channel) or ("im" if channel.startswith("D") else "channel")
        event: JSON = {
            "client_msg_id": str(uuid.uuid4()),
            "type": "message",
            "text": text,
            "user": user,
            "ts": ts,
            "team": TEAM_ID,
            "blocks": [
                {
                    "type": "rich_text",
                    "block_id": uuid.uuid4().hex[:5],
                    "elements": [
                        {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}
                    ],
                }
            ],
            "channel": channel,
            "event_ts": ts,
            "channel_type": kind,
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
            event["parent_user_id"] = user
        event.update(extra)
        return event

    def callback(self, event: JSON) -> JSON:
        """The `event_callback` body around an event (Socket Mode payload, Events API body)."""
        return {
            "token": "deprecated-verification-token",
            "team_id": TEAM_ID,
            "context_team_id": TEAM_ID,
            "context_enterprise_id": None,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(float(event.get("event_ts") or time.time())),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": TEAM_ID,
                    "user_id": BOT_USER_ID,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": f"4-{uuid.uuid4().hex}",
        }

    async def push(self, event: JSON) -> Envelope:
        """Deliver an event over Socket Mode (now, or when a connection next opens)."""
        envelope = Envelope(str(uuid.uuid4()), self.callback(event))
        self.envelopes.append(envelope)
        await self._deliver(envelope)
        return envelope

    async def redeliver(self, envelope: Envelope) -> None:
        """Send an envelope again now, as Slack does when it saw no ack in time."""
        await self._deliver(envelope)

    def unacked(self) -> list[Envelope]:
        return [e for e in self.envelopes if not e.acked]

    @property
    def connected(self) -> int:
        return sum(1 for s in self._sockets if not s.ws.closed)

    async def request_refresh(self, reason: str = "refresh_requested") -> None:
        """`disconnect` on every open socket; Slack closes them after a grace period."""
        for sock in list(self._sockets):
            frame = {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-7"}}
            with contextlib.suppress(ConnectionError, RuntimeError):
                await sock.ws.send_json(frame)
            self._spawn(self._close_later(sock, self.refresh_grace_s))

    async def drop(self) -> None:
        """Close every socket at once, as a network failure or a Slack restart does."""
        for sock in list(self._sockets):
            await sock.ws.close(code=1011, message=b"server going away")

    @contextlib.asynccontextmanager
    async def zombie(self) -> AsyncIterator[None]:
        """Open sockets go silent (no pongs, no frames) and new connections hang, until exit."""
        self._zombie = True
        self._unzombie.clear()
        try:
            yield
        finally:
            self._zombie = False
            self._unzombie.set()
            for envelope in self.unacked():
                if envelope.attempts == 0:
                    await self._deliver(envelope)

    # -- Events API -------------------------------------------------------------------------

    def sign(self, body: bytes, timestamp: int | None = None, secret: str | None = None) -> JSON:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        base = b"v0:" + stamp.encode() + b":" + body
        digest = hmac.new((secret or self.signing_secret).encode(), base, hashlib.sha256)
        return {
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": f"v0={digest.hexdigest()}",
        }

    async def deliver_http(
        self,
        url: str,
        body: JSON,
        *,
        retries: bool = True,
        retry_num: int = 0,
        timestamp: int | None = None,
        secret: str | None = None,
        host: str | None = None,
    ) -> list[HttpDelivery]:
        """POST a signed request as Slack does; retry (if `retries`) until one is answered 200
        within `http_timeout_s`, at most 3 times, with X-Slack-Retry-Num/-Reason. `retry_num`
        makes the first request one of those retries."""
        data = json.dumps(body).encode()
        out: list[HttpDelivery] = []
        reason = "http_error"
        async with aiohttp.ClientSession() as http:
            for attempt in range(retry_num, MAX_RETRIES + 1 if retries else retry_num + 1):
                headers = self.sign(data, timestamp, secret)
                if host:
                    headers["Host"] = host
                if attempt:
                    headers["X-Slack-Retry-Num"] = str(attempt)
                    headers["X-Slack-Retry-Reason"] = reason
                if attempt > retry_num:
                    delays = self.retry_delays_s
                    await asyncio.sleep(delays[min(attempt, len(delays)) - 1])
                try:
                    timeout = aiohttp.ClientTimeout(total=self.http_timeout_s)
                    async with http.post(url, data=data, headers=headers, timeout=timeout) as r:
                        delivery = HttpDelivery(attempt, r.status, await r.text())
                except TimeoutError:
                    delivery = HttpDelivery(attempt, None, "")
                out.append(delivery)
                if delivery.status == 200:
                    break
                reason = "http_timeout" if delivery.status is None else "http_error"
        await self._notify()
        return out

    # -- the Web API ------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await _args(request)
        token = _bearer(request) or str(args.pop("token", "") or "")
        kind = (
            "bot"
            if token == self.bot_token
            else "app"
            if token == self.app_token
            else "none"
            if not token
            else "wrong"
        )
        call = ApiCall(method, args, kind)
        self.calls.append(call)
        try:
            return await self._answer(call)
        finally:
            await self._notify()

    async def _answer(self, call: ApiCall) -> web.Response:
        failure = next((f for f in self._failures if f.method == call.method), None)
        if failure is not None:
            self._failures.remove(failure)
            call.status, call.error = failure.status, failure.error
            if failure.status == 429:
                headers = {"Retry-After": str(int(failure.retry_after or 1))}
                return _json({"ok": False, "error": "ratelimited"}, 429, headers)
            if failure.status >= 500:
                page = "<html><body><h1>Service Unavailable</h1></body></html>"
                return web.Response(text=page, status=failure.status, content_type="text/html")
            return self._error(call, failure.error, **failure.extra)
        if call.token in ("none", "wrong"):
            return self._error(call, "not_authed" if call.token == "none" else "invalid_auth")
        handler = getattr(self, "_m_" + call.method.replace(".", "_"), None)
        if handler is None:
            return self._error(call, "unknown_method")
        answer: web.Response = await handler(call)
        return answer

    def _error(self, call: ApiCall, error: str, **extra: Any) -> web.Response:
        call.error = error
        return _json({"ok": False, "error": error, **extra})

    async def _m_auth_test(self, call: ApiCall) -> web.Response:
        if call.token != "bot":
            return self._error(call, "not_allowed_token_type")
        return _json(
            {
                "ok": True,
                "url": "https://double-workspace.slack.com/",
                "team": "Double Workspace",
                "user": BOT_NAME,
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "bot_id": BOT_ID,
                "is_enterprise_install": False,
            }
        )

    async def _m_apps_connections_open(self, call: ApiCall) -> web.Response:
        if call.token != "app":
            return self._error(call, "not_allowed_token_type")
        ticket = str(uuid.uuid4())
        self._tickets.add(ticket)
        port = self.base_url.rsplit(":", 1)[1]
        return _json(
            {"ok": True, "url": f"ws://127.0.0.1:{port}/link/?ticket={ticket}&app_id={APP_ID}"}
        )

    async def _m_chat_postMessage(self, call: ApiCall) -> web.Response:
        if call.token != "bot":
            return self._error(call, "not_allowed_token_type")
        channel, text = str(call.args.get("channel") or ""), str(call.args.get("text") or "")
        if not channel or (channel not in self.channels and not channel.startswith(("D", "U"))):
            return self._error(call, "channel_not_found")
        if not text.strip() and not call.args.get("blocks"):
            return self._error(call, "no_text")
        if len(text) > MAX_TEXT:
            return self._error(call, "msg_too_long")
        thread = call.args.get("thread_ts") or None
        posted = Posted(channel, self.next_ts(), text, str(thread) if thread else None, call.args)
        self.posted.append(posted)
        message = self._bot_message(posted)
        await self._echo({**message, "channel": channel, "event_ts": posted.ts})
        return _json({"ok": True, "channel": channel, "ts": posted.ts, "message": message})

    async def _m_chat_update(self, call: ApiCall) -> web.Response:
        if call.token != "bot":
            return self._error(call, "not_allowed_token_type")
        channel, ts = str(call.args.get("channel") or ""), str(call.args.get("ts") or "")
        text = str(call.args.get("text") or "")
        posted = next((p for p in self.posted if p.channel == channel and p.ts == ts), None)
        if posted is None:
            return self._error(call, "message_not_found")
        if len(text) > MAX_TEXT:
            return self._error(call, "msg_too_long")
        posted.text = text
        posted.edits.append(text)
        message = self._bot_message(posted)
        await self._echo(
            {
                "type": "message",
                "subtype": "message_changed",
                "hidden": True,
                "channel": channel,
                "ts": self.next_ts(),
                "event_ts": self.next_ts(),
                "message": message,
            }
        )
        return _json({"ok": True, "channel": channel, "ts": ts, "text": text, "message": message})

    def _bot_message(self, posted: Posted) -> JSON:
        message: JSON = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "text": posted.text,
            "ts": posted.ts,
            "team": TEAM_ID,
            "bot_profile": {"id": BOT_ID, "app_id": APP_ID, "name": BOT_NAME},
        }
        if posted.thread_ts:
            message["thread_ts"] = posted.thread_ts
        return message

    async def _echo(self, event: JSON) -> None:
        """The bot's own messages come back as events, as they do from Slack."""
        kind = self.channels.get(str(event.get("channel")))
        if kind:
            event["channel_type"] = kind
        if self._sockets:
            await self.push(event)

    async def _file(self, request: web.Request) -> web.Response:
        if _bearer(request) != self.bot_token:
            # Slack answers an unauthenticated file request with its login page, not the file.
            return web.Response(text="<html>Sign in</html>", content_type="text/html")
        file_id = request.match_info["ref"].split("-", 1)[-1]
        if file_id not in self.files:
            return web.Response(status=404)
        content, mimetype = self.files[file_id]
        return web.Response(body=content, content_type=mimetype)

    # -- Socket Mode ------------------------------------------------------------------------

    async def _link(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.Response(status=401, text="invalid ticket")
        self._tickets.discard(ticket)
        if self._zombie:
            await self._unzombie.wait()  # the handshake hangs while Slack is unreachable
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        sock = _Socket(ws, ticket)
        self._sockets.append(sock)
        try:
            await ws.send_json(
                {
                    "type": "hello",
                    "num_connections": self.connected,
                    "debug_info": {
                        "host": "applink-7",
                        "build_number": 118,
                        "approximate_connection_time": 18060,
                    },
                    "connection_info": {"app_id": APP_ID},
                }
            )
            self.hellos += 1
            await self._notify()
            for envelope in self.unacked():  # waiting, or left unacknowledged by a lost socket
                if envelope.attempts <= MAX_RETRIES:
                    await self._send(sock, envelope)
            async for msg in ws:
                await self._on_frame(sock, msg)
        finally:
            sock.closed.set()
            self._sockets.remove(sock)
            await self._notify()
        return ws

    async def _on_frame(self, sock: _Socket, msg: aiohttp.WSMessage) -> None:
        if msg.type == WSMsgType.PING:
            if not self._zombie:
                await sock.ws.pong(msg.data)
            return
        if msg.type != WSMsgType.TEXT:
            return
        try:
            frame = json.loads(msg.data)
        except ValueError:
            return
        envelope_id = frame.get("envelope_id") if isinstance(frame, dict) else None
        for envelope in self.envelopes:
            if envelope.envelope_id == envelope_id and not envelope.acked:
                envelope.acked = True
                self.acks.append(envelope.envelope_id)
        await self._notify()

    async def _deliver(self, envelope: Envelope) -> None:
        live = [s for s in self._sockets if not s.ws.closed]
        if live and not self._zombie:
            await self._send(live[0], envelope)

    async def _send(self, sock: _Socket, envelope: Envelope) -> None:
        envelope.attempts += 1
        envelope.sent_at = time.monotonic()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await sock.ws.send_json(envelope.frame())
        await self._notify()

    async def _redeliver_loop(self) -> None:
        """Slack re-sends an envelope nobody acknowledged within its timeout."""
        while True:
            await asyncio.sleep(min(self.ack_timeout_s / 4, 0.25))
            now = time.monotonic()
            for envelope in self.unacked():
                due = envelope.attempts and now - envelope.sent_at >= self.ack_timeout_s
                if due and envelope.attempts <= MAX_RETRIES:
                    await self._deliver(envelope)

    async def _close_later(self, sock: _Socket, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sock.closed.wait(), delay)
        if not sock.ws.closed:
            await sock.ws.close(code=1000, message=b"refresh")


async def _args(request: web.Request) -> JSON:
    args: JSON = dict(request.query)
    if request.can_read_body:
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                args.update(body)
        else:
            form = await request.post()
            args.update({k: v for k, v in form.items() if isinstance(v, str)})
    return args


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    return header[7:] if header.startswith("Bearer ") else ""


def _json(body: JSON, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    base = {"X-Slack-Req-Id": uuid.uuid4().hex, "X-OAuth-Scopes": SCOPES}
    return web.json_response(body, status=status, headers={**base, **(headers or {})})


def config_for(double: SlackDouble, **overrides: Any) -> Any:
    """A `SlackConfig` pointing at the double (Socket Mode unless `mode` says otherwise)."""
    from open_clanker.channels.slack.config import SlackConfig

    values: JSON = {
        "bot_token": double.bot_token,
        "app_token": double.app_token,
        "signing_secret": double.signing_secret,
        "api_base_url": double.api_base_url,
    }
    values.update(overrides)
    return SlackConfig(**values)

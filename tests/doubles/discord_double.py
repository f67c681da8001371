"""A loopback Discord: REST v10 and the gateway WebSocket, enough to drive discord.py for real.

This file is longer than our usual ~500 lines on purpose: it is one platform (REST, gateway,
and the state both share), and splitting it would only scatter that state across modules.

Pointing discord.py 2.7.1 at it takes two process-wide class attributes (`point_discord_py_at`
does both and restores them):

* REST: every `discord.http.Route` builds its URL as `Route.BASE + path` (http.py, `Route.BASE`
  and `Route.__init__`), so `Route.BASE = double.api_base_url` moves all REST calls here.
  Attachment downloads use the `url` in the attachment payload, which the double points at
  itself; only avatar/icon assets (`Asset.BASE`) and jump URLs still name discord.com.
* Gateway: a plain `Client.connect()` never calls `GET /gateway/bot`; it dials
  `DiscordWebSocket.DEFAULT_GATEWAY` (gateway.py, `from_client`) and falls back to it again
  after an INVALID_SESSION that cannot be resumed. Set that to `double.gateway_url` (or to the
  `url` from `await client.http.get_bot_gateway()`). Resumes dial READY's
  `resume_gateway_url`, here `ws://127.0.0.1:PORT/resume-gateway` so tests can tell them apart.

What the double does, as Discord does it:

* REST under `/api/v10` with `Authorization: Bot <token>` (401 otherwise). Messages are
  checked (2000 characters, empty messages, unknown reply targets), stored, recorded in `sent`
  and echoed back over the gateway as MESSAGE_CREATE (the bot sees its own messages).
  Every response carries `Via: 1.1 google` and `X-RateLimit-*` headers.
* `fail_next` scripts failures. What discord.py does with them (http.py, `HTTPClient.request`):
  a 429 with `Via` and a JSON body is slept on (`retry_after`) and retried, 5 attempts in all,
  then `HTTPException` (status 429); with `Client(max_ratelimit_timeout=...)` a longer
  `retry_after` raises `RateLimited` at once; a 429 without `Via` (Cloudflare) raises
  `HTTPException` at once. 500, 502, 504 and 524 sleep 1, 3, 5, 7, 9 s after each of 5
  attempts (25 s) and then raise `DiscordServerError`; 503 and other 5xx raise it at once.
* Gateway: HELLO, HEARTBEAT_ACK, IDENTIFY (token 4004, privileged intents 4014), READY then
  GUILD_CREATE per guild, RESUME with replay of every dispatch the client missed, RESUMED,
  INVALID_SESSION for unknown sessions, RECONNECT on request. A client closing with 1000/1001
  ends its session, as on Discord; discord.py closes with 4000 when it means to resume.
  `compress=zlib-stream` (what discord.py asks for without zstandard) is honoured with one
  zlib stream per connection flushed with Z_SYNC_FLUSH in BINARY frames; any other value gets
  plain TEXT frames, which discord.py also accepts.
* Intents are honoured for messages: no GUILD_MESSAGES/DIRECT_MESSAGES, no MESSAGE_CREATE
  (recorded in `withheld`); no MESSAGE_CONTENT, empty content in guild messages that do not
  mention the bot.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import fnmatch
import json
import math
import mimetypes
import re
import time
import uuid
import warnings
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self

import yarl
from aiohttp import WSMsgType, web

with warnings.catch_warnings():
    # discord.py 2.7 imports audioop, deprecated since Python 3.11; our tests make warnings errors.
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GdOubl.loopback-test-token-for-the-discord-double"
BOT_ID = 1234567890123456789  # the id the token's first part encodes, as Discord's do
BOT_USERNAME = "clanker"
OWNER_ID = 1100000000000000001

# Gateway intents (https://discord.com/developers/docs/events/gateway#list-of-intents).
GUILDS = 1 << 0
GUILD_MEMBERS = 1 << 1
GUILD_PRESENCES = 1 << 8
GUILD_MESSAGES = 1 << 9
DIRECT_MESSAGES = 1 << 12
MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT
# Application flags for an unverified bot with the privileged intents ticked.
_LIMITED_INTENT_FLAGS = (1 << 13) | (1 << 15) | (1 << 19)

API_PREFIX = "/api/v10"
MAX_CONTENT = 2000
_DISCORD_EPOCH_MS = 1_420_070_400_000
_TEXT, _DM, _PUBLIC_THREAD = 0, 1, 11
_REPLY_TYPE = 19

JSON = dict[str, Any]


# -- what tests read --------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One REST call. `headers` never holds the Authorization value; `authorized` says if it fit."""

    method: str
    path: str  # after /api/v10
    query: dict[str, str]
    headers: dict[str, str]
    json: Any  # the JSON body, or a multipart's payload_json
    files: tuple[str, ...]
    authorized: bool


@dataclass(frozen=True)
class SentMessage:
    channel_id: int
    message_id: int
    content: str
    message_reference: JSON | None
    allowed_mentions: JSON | None
    json: JSON
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Edit:
    channel_id: int
    message_id: int
    content: str | None
    json: JSON


@dataclass(frozen=True)
class Identify:
    session_id: str
    intents: int
    payload: JSON  # IDENTIFY's `d`, token redacted


@dataclass(frozen=True)
class Resume:
    session_id: str
    seq: int | None
    path: str  # which gateway URL the client dialled
    replayed: int  # dispatches re-sent because the client had missed them
    accepted: bool


# -- internals --------------------------------------------------------------------------------


@dataclass
class _Failure:
    method: str
    pattern: str
    status: int
    retry_after: float | None
    times: int
    is_global: bool
    via: bool


@dataclass
class _Guild:
    id: int
    name: str
    joined_at: str
    members: list[int] = field(default_factory=list)  # besides the bot
    channels: dict[int, JSON] = field(default_factory=dict)
    threads: dict[int, JSON] = field(default_factory=dict)


@dataclass(eq=False)
class _Connection:
    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    path: str
    compressor: zlib._Compress | None
    session: _Session | None = None
    ready: bool = False  # READY or RESUMED sent: dispatches flow
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, frame: JSON) -> None:
        text = json.dumps(frame, separators=(",", ":"))
        async with self.lock:  # one zlib stream: frames must leave in compression order
            if self.compressor is None:
                await self.ws.send_str(text)
            else:
                data = self.compressor.compress(text.encode()) + self.compressor.flush(
                    zlib.Z_SYNC_FLUSH
                )
                await self.ws.send_bytes(data)


@dataclass(eq=False)
class _Session:
    id: str
    intents: int
    seq: int = 0
    log: list[JSON] = field(default_factory=list)  # every dispatch frame, for RESUME replay
    conn: _Connection | None = None
    resumable: bool = True
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class _Closed(Exception):
    """The double closed this gateway connection with a close code."""


@dataclass(frozen=True)
class _Upload:
    filename: str
    data: bytes
    content_type: str


@dataclass(frozen=True)
class _Call:
    """What a REST handler gets: path ids, the JSON object sent (or {}), uploaded files."""

    ids: dict[str, int]
    json: JSON
    uploads: list[_Upload]


_Handler = Callable[[_Call], Awaitable[web.Response]]


class DiscordDouble:
    """Discord on 127.0.0.1: `async with DiscordDouble() as double:` starts and stops it."""

    def __init__(
        self,
        token: str = TOKEN,
        *,
        bot_user_id: int = BOT_ID,
        bot_username: str = BOT_USERNAME,
        heartbeat_interval_ms: int = 41_250,
        privileged_intents_allowed: bool = True,
        echo_own_messages: bool = True,
    ) -> None:
        self.token = token
        self.bot_user_id = bot_user_id
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.privileged_intents_allowed = privileged_intents_allowed
        self.echo_own_messages = echo_own_messages

        self.requests: list[Request] = []
        self.sent: list[SentMessage] = []
        self.edits: list[Edit] = []
        self.typing: list[int] = []  # channel ids
        self.identifies: list[Identify] = []
        self.resumes: list[Resume] = []
        self.heartbeats: list[int | None] = []  # the sequence each heartbeat acknowledged
        self.presence_updates: list[JSON] = []
        self.member_requests: list[JSON] = []  # op 8 payloads
        self.withheld: list[JSON] = []  # MESSAGE_CREATEs the session's intents kept back
        self.connections = 0
        self.silent = False  # see zombie()
        self.connection_urls: list[str] = []  # path and query of each gateway connection

        self.users: dict[int, JSON] = {}
        self.messages: dict[int, JSON] = {}  # every message, by id: dispatched and sent
        self._guilds: dict[int, _Guild] = {}
        self._channel_guild: dict[int, int] = {}
        self._dm_channels: dict[int, JSON] = {}
        self._dm_by_user: dict[int, int] = {}
        self._files: dict[tuple[int, int, str], tuple[bytes, str]] = {}
        self._failures: list[_Failure] = []
        self._sessions: dict[str, _Session] = {}
        self._session: _Session | None = None  # the latest identified session
        self._conns: set[_Connection] = set()
        self._last_snowflake = 0

        self._changed = asyncio.Condition()
        self._gateway_up = asyncio.Event()
        self._gateway_up.set()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._port = 0

        self.users[bot_user_id] = _user_json(bot_user_id, bot_username, bot=True)
        self.users[OWNER_ID] = _user_json(OWNER_ID, "owner")

    # -- running ----------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/resume-gateway", self._gateway)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self._file)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._api)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        self._closing = True
        self._gateway_up.set()  # held handshakes answer 503 now
        for conn in list(self._conns):
            await conn.ws.close(code=1001, message=b"Going away")
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_base_url(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/gateway"

    @property
    def resume_gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/resume-gateway"

    @property
    def session_id(self) -> str | None:
        return self._session.id if self._session is not None else None

    @property
    def connected(self) -> bool:
        """A client has IDENTIFYed or RESUMEd and its connection is up."""
        conn = self._session.conn if self._session is not None else None
        return conn is not None and conn.ready

    # -- world building ---------------------------------------------------------------------

    async def add_user(
        self, user_id: int, username: str, *, bot: bool = False, global_name: str | None = None
    ) -> JSON:
        self.users[user_id] = _user_json(user_id, username, bot=bot, global_name=global_name)
        return self.users[user_id]

    async def add_guild(
        self,
        guild_id: int,
        name: str,
        channels: Iterable[tuple[int, str]] = (),
        *,
        members: Iterable[int] = (),
    ) -> JSON:
        """A guild the bot is in, with text channels as (id, name) and other members by user id
        (GUILD_CREATE lists only the bot; op 8 chunks list them all). A live session gets a
        GUILD_CREATE, as when a bot joins."""
        guild = _Guild(guild_id, name, joined_at=_now_iso(), members=list(members))
        self._guilds[guild_id] = guild
        for position, (channel_id, channel_name) in enumerate(channels):
            guild.channels[channel_id] = _text_channel(guild_id, channel_id, channel_name, position)
            self._channel_guild[channel_id] = guild_id
        payload = self._guild_json(guild)
        await self._dispatch_if_session("GUILD_CREATE", payload)
        return payload

    async def add_text_channel(self, guild_id: int, channel_id: int, name: str) -> JSON:
        guild = self._guilds[guild_id]
        channel = _text_channel(guild_id, channel_id, name, len(guild.channels))
        guild.channels[channel_id] = channel
        self._channel_guild[channel_id] = guild_id
        await self._dispatch_if_session("CHANNEL_CREATE", channel)
        return channel

    async def add_thread(self, guild_id: int, parent_id: int, thread_id: int, name: str) -> JSON:
        guild = self._guilds[guild_id]
        if parent_id not in guild.channels:
            raise ValueError(f"channel {parent_id} is not a text channel of guild {guild_id}")
        thread = _thread(guild_id, parent_id, thread_id, name, owner_id=self.bot_user_id)
        guild.threads[thread_id] = thread
        self._channel_guild[thread_id] = guild_id
        await self._dispatch_if_session("THREAD_CREATE", thread | {"newly_created": True})
        return thread

    # -- scripting --------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        path_pattern: str,
        status: int,
        retry_after: float | None = None,
        times: int = 1,
        *,
        is_global: bool = False,
        via: bool = True,
    ) -> None:
        """The next `times` REST calls matching answer `status` instead.

        `path_pattern` is a glob over the path after /api/v10 (`*` spans slashes), e.g.
        `/channels/*/messages`; `method` may be `*`. A 429 carries `retry_after` (default 1 s)
        in body and headers; `via=False` leaves out the `Via` header, as a Cloudflare ban does.
        See the module docstring for what discord.py does with each status.
        """
        self._failures.append(
            _Failure(
                method.upper(),
                path_pattern.removeprefix(API_PREFIX),
                status,
                retry_after,
                times,
                is_global,
                via,
            )
        )

    async def dispatch(self, event: str, data: JSON) -> int:
        """Send any dispatch event to the current session (queued if it is disconnected)."""
        return await self._dispatch(self._require_session(), event, data)

    async def dispatch_message(
        self,
        channel_id: int,
        content: str,
        *,
        author_id: int,
        guild_id: int | None = None,
        mentions: Iterable[int] = (),
        mention_roles: Iterable[int] = (),
        mention_everyone: bool = False,
        reply_to_message_id: int | None = None,
        attachments: Sequence[tuple[str, bytes]] = (),
        message_id: int | None = None,
    ) -> JSON:
        """A user posts a message; returns the MESSAGE_CREATE payload.

        A channel of a known guild makes a guild message (with `member`); any other channel a
        DM, which Discord (and so discord.py) tells apart by the missing `guild_id`. Unknown
        users are created as plain users. A reply carries `message_reference` and the stored
        `referenced_message` (null if the double never saw it, as for a deleted message).
        """
        session = self._require_session()
        author = self._user(author_id)
        guild_id = guild_id or self._channel_guild.get(channel_id)
        if guild_id is None:
            self._dm_channel(author_id, channel_id)
        elif self._channel_guild.get(channel_id) != guild_id:
            raise ValueError(f"channel {channel_id} is not in guild {guild_id}")
        new_id = message_id if message_id is not None else self._snowflake()
        reference = None
        if reply_to_message_id is not None:
            reference = {"type": 0, "channel_id": str(channel_id)}
            reference["message_id"] = str(reply_to_message_id)
            if guild_id is not None:
                reference["guild_id"] = str(guild_id)
        message = self._message_json(
            message_id=new_id,
            channel_id=channel_id,
            author=author,
            content=content,
            mentions=[self._user(u) for u in mentions],
            mention_roles=mention_roles,
            mention_everyone=mention_everyone,
            attachments=[
                self._store_file(channel_id, _Upload(name, data, _guess_type(name)))
                for name, data in attachments
            ],
            reference=reference,
        )
        self.messages[new_id] = message
        return await self._deliver_message(session, "MESSAGE_CREATE", message)

    async def drop_connection(self) -> None:
        """Cut the current connection as a network failure would (no close frame); discord.py
        reconnects at once and RESUMEs."""
        conn = self._current_conn()
        self._detach(conn)  # from here on dispatches queue for the replay
        if conn.transport is not None:
            conn.transport.abort()
        await asyncio.wait_for(conn.ended.wait(), 5)

    @contextlib.asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        """Inside, the gateway is unreachable: the connection is cut and new ones wait at the
        handshake; whatever is dispatched meanwhile is replayed when the client RESUMEs."""
        self._gateway_up.clear()
        try:
            await self.drop_connection()
            yield
        finally:
            self._gateway_up.set()

    @contextlib.asynccontextmanager
    async def zombie(self) -> AsyncIterator[None]:
        """Inside, the connection stays open but the gateway goes silent (heartbeats are not
        acknowledged) and new connections wait at the handshake: a stalled connection, which
        only the client's own watchdog can notice. Leaving lets the client back in to RESUME."""
        self._gateway_up.clear()
        self.silent = True
        try:
            yield
        finally:
            self.silent = False
            self._gateway_up.set()

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT: discord.py closes with 4000 and RESUMEs."""
        await self._current_conn().send({"op": 7, "d": None, "s": None, "t": None})

    async def invalidate_session(self, *, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION; unless resumable, the session is gone for good."""
        session = self._require_session()
        if not resumable:
            session.resumable = False
        await self._current_conn().send({"op": 9, "d": resumable, "s": None, "t": None})

    async def request_heartbeat(self) -> None:
        """Send op 1: Discord asking for a heartbeat now."""
        await self._current_conn().send({"op": 1, "d": None, "s": None, "t": None})

    # -- waiting ----------------------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Block until the predicate holds after some change the double saw (no polling)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

    async def wait_sent(self, n: int = 1, timeout: float = 5.0) -> SentMessage:
        """Wait for the n-th created message and return it."""
        await self.wait_for(lambda: len(self.sent) >= n, timeout)
        return self.sent[n - 1]

    async def wait_connected(self, timeout: float = 5.0) -> None:
        await self.wait_for(lambda: self.connected, timeout)

    async def wait_identified(self, n: int = 1, timeout: float = 5.0) -> Identify:
        await self.wait_for(lambda: len(self.identifies) >= n and self.connected, timeout)
        return self.identifies[n - 1]

    async def wait_resumed(self, n: int = 1, timeout: float = 5.0) -> Resume:
        """Wait for the n-th accepted RESUME (RESUMED sent) and return it."""

        def accepted() -> list[Resume]:
            return [r for r in self.resumes if r.accepted]

        await self.wait_for(lambda: len(accepted()) >= n and self.connected, timeout)
        return accepted()[n - 1]

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- the gateway ------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        await self._gateway_up.wait()  # an outage holds the handshake
        if self._closing:
            return web.Response(status=503)
        if request.query.get("encoding", "json") != "json":
            return web.Response(status=400, text="only encoding=json is offered")
        compressor = zlib.compressobj() if request.query.get("compress") == "zlib-stream" else None
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        conn = _Connection(ws, request.transport, request.path, compressor)
        self._conns.add(conn)
        self.connections += 1
        self.connection_urls.append(str(request.rel_url))
        try:
            if request.query.get("v") != "10":
                raise _Closed(4012, "Invalid API version")
            await conn.send(
                {"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}}
                | {"s": None, "t": None}
            )
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    break
                await self._on_frame(conn, msg.data)
        except _Closed as closed:
            code, reason = closed.args
            await ws.close(code=code, message=reason.encode())
        except ConnectionResetError:
            pass  # dropped while answering
        finally:
            self._detach(conn)
            if conn.session is not None and ws.close_code in (1000, 1001):
                conn.session.resumable = False  # a clean close ends the session on Discord
            self._conns.discard(conn)
            conn.ended.set()
            await self._notify()
        return ws

    async def _on_frame(self, conn: _Connection, text: str) -> None:
        try:
            frame = json.loads(text)
            op, data = frame["op"], frame.get("d")
        except (ValueError, KeyError, TypeError):
            raise _Closed(4002, "Error while decoding payload.") from None
        if op in (2, 6, 8) and not isinstance(data, dict):
            raise _Closed(4002, "Error while decoding payload.")
        if op == 1:
            self.heartbeats.append(data)
            if not self.silent:
                await conn.send({"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            await self._identify(conn, data)
        elif op == 6:
            await self._resume(conn, data)
        elif conn.session is None:
            raise _Closed(4003, "Not authenticated.")
        elif op == 3:
            self.presence_updates.append(data)
        elif op == 4:
            pass  # voice state: no voice here
        elif op == 8:
            self.member_requests.append(data)
            await self._members_chunk(conn.session, data)
        else:
            raise _Closed(4001, "Unknown opcode.")
        await self._notify()

    async def _identify(self, conn: _Connection, data: JSON) -> None:
        if conn.session is not None:
            raise _Closed(4005, "Already authenticated.")
        if data.get("token") != self.token:
            raise _Closed(4004, "Authentication failed.")
        intents = data.get("intents")
        if not isinstance(intents, int) or intents < 0 or intents >= 1 << 26:
            raise _Closed(4013, "Invalid intent(s).")
        if intents & PRIVILEGED_INTENTS and not self.privileged_intents_allowed:
            raise _Closed(4014, "Disallowed intent(s).")
        session = _Session(uuid.uuid4().hex, intents)
        self._sessions[session.id] = session
        self._session = session
        self.identifies.append(Identify(session.id, intents, data | {"token": "<redacted>"}))
        session.conn, conn.session = conn, session
        ready: JSON = {
            "v": 10,
            "user": self._me_json(),
            "guilds": [{"id": str(g), "unavailable": True} for g in self._guilds],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_gateway_url,
            "application": {"id": str(self.bot_user_id), "flags": self._application_flags()},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "auth": {},
        }
        if "shard" in data:
            ready["shard"] = data["shard"]
        await self._dispatch(session, "READY", ready)
        for guild in self._guilds.values():
            await self._dispatch(session, "GUILD_CREATE", self._guild_json(guild))
        conn.ready = True

    async def _resume(self, conn: _Connection, data: JSON) -> None:
        if data.get("token") != self.token:
            raise _Closed(4004, "Authentication failed.")
        session = self._sessions.get(str(data.get("session_id")))
        seq = data.get("seq")
        if session is None or not session.resumable:
            self.resumes.append(Resume(str(data.get("session_id")), seq, conn.path, 0, False))
            await conn.send({"op": 9, "d": False, "s": None, "t": None})
            return
        previous = session.conn
        async with session.lock:
            session.conn, conn.session = conn, session
            missed = [f for f in session.log if f["s"] > (seq or 0)]
            for frame in missed:
                await conn.send(frame)
            self.resumes.append(Resume(session.id, seq, conn.path, len(missed), True))
        await self._dispatch(session, "RESUMED", {})
        conn.ready = True
        if previous is not None and previous is not conn and not previous.ws.closed:
            await previous.ws.close(code=4000, message=b"Session resumed elsewhere.")

    async def _members_chunk(self, session: _Session, data: JSON) -> None:
        """Op 8 (discord.py sends it to chunk guilds when the members intent is on)."""
        guild = self._guilds.get(int(data.get("guild_id") or 0))
        members = []
        if guild is not None:
            for user_id in (self.bot_user_id, *guild.members):
                members.append(self._member_json(guild.id, user_id, with_user=True))
        chunk: JSON = {
            "guild_id": str(data.get("guild_id")),
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        await self._dispatch(session, "GUILD_MEMBERS_CHUNK", chunk)

    async def _dispatch(self, session: _Session, event: str, data: JSON) -> int:
        async with session.lock:
            session.seq += 1
            frame = {"op": 0, "t": event, "s": session.seq, "d": data}
            session.log.append(frame)
            conn = session.conn
            if conn is not None and not conn.ws.closed:
                with contextlib.suppress(ConnectionResetError):  # kept in the log for RESUME
                    await conn.send(frame)
        await self._notify()
        return session.seq

    async def _dispatch_if_session(self, event: str, data: JSON) -> None:
        if self._session is not None:
            await self._dispatch(self._session, event, data)

    async def _deliver_message(self, session: _Session, event: str, message: JSON) -> JSON:
        payload = self._message_event(message)
        in_guild = "guild_id" in payload
        if not session.intents & (GUILD_MESSAGES if in_guild else DIRECT_MESSAGES):
            self.withheld.append(payload)
            return payload
        author = int(payload["author"]["id"])
        mentioned = any(int(u["id"]) == self.bot_user_id for u in payload["mentions"])
        stripped = in_guild and not session.intents & MESSAGE_CONTENT
        if stripped and author != self.bot_user_id and not mentioned:
            payload |= {"content": "", "embeds": [], "attachments": [], "components": []}
        await self._dispatch(session, event, payload)
        return payload

    def _require_session(self) -> _Session:
        if self._session is None:
            raise RuntimeError("no gateway session yet: await double.wait_connected() first")
        return self._session

    def _current_conn(self) -> _Connection:
        conn = self._require_session().conn
        if conn is None:
            raise RuntimeError("the gateway session has no live connection right now")
        return conn

    def _detach(self, conn: _Connection) -> None:
        if conn.session is not None and conn.session.conn is conn:
            conn.session.conn = None

    # -- REST -------------------------------------------------------------------------------

    def _routes(self) -> list[tuple[str, re.Pattern[str], _Handler, bool]]:
        """(method, path regex, handler, needs a bot token)."""
        routes: list[tuple[str, str, _Handler, bool]] = [
            ("GET", r"/users/@me", self._r_me, True),
            ("GET", r"/users/(?P<user_id>\d+)", self._r_user, True),
            ("POST", r"/users/@me/channels", self._r_create_dm, True),
            ("GET", r"/gateway", self._r_gateway, False),
            ("GET", r"/gateway/bot", self._r_gateway_bot, True),
            ("GET", r"/oauth2/applications/@me", self._r_application, True),
            ("GET", r"/applications/@me", self._r_application, True),
            ("GET", r"/channels/(?P<channel_id>\d+)", self._r_channel, True),
            ("POST", r"/channels/(?P<channel_id>\d+)/messages", self._r_create_message, True),
            ("GET", r"/channels/(?P<channel_id>\d+)/messages/(?P<message_id>\d+)", self._r_message, True),
            ("PATCH", r"/channels/(?P<channel_id>\d+)/messages/(?P<message_id>\d+)", self._r_edit, True),
            ("POST", r"/channels/(?P<channel_id>\d+)/typing", self._r_typing, True),
        ]  # fmt: skip
        return [(m, re.compile(p), h, auth) for m, p, h, auth in routes]

    async def _api(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        body, uploads = await _read_body(request)
        authorized = request.headers.get("Authorization") == f"Bot {self.token}"
        self.requests.append(
            Request(
                request.method,
                path,
                dict(request.query),
                {k: v for k, v in request.headers.items() if k.lower() != "authorization"},
                body,
                tuple(u.filename for u in uploads),
                authorized,
            )
        )
        try:
            return await self._answer(request.method, path, body, uploads, authorized)
        finally:
            await self._notify()

    async def _answer(
        self, method: str, path: str, body: Any, uploads: list[_Upload], authorized: bool
    ) -> web.Response:
        matched = [(r, m) for r in self._routes() if (m := r[1].fullmatch(path))]
        if not matched:
            return _error(404, 0, "404: Not Found")
        for (route_method, regex, handler, needs_auth), match in matched:
            if route_method != method:
                continue
            if needs_auth and not authorized:
                return _error(401, 0, "401: Unauthorized")
            failure = self._take_failure(method, path)
            if failure is not None:
                return _failure_response(failure, self._bucket(method, regex.pattern))
            ids = {k: int(v) for k, v in match.groupdict().items()}
            call = _Call(ids, body if isinstance(body, dict) else {}, uploads)
            response = await handler(call)
            response.headers.update(_ratelimit_headers(self._bucket(method, regex.pattern)))
            return response
        return _error(405, 0, "405: Method Not Allowed")

    def _take_failure(self, method: str, path: str) -> _Failure | None:
        for failure in self._failures:
            if failure.method in ("*", method) and fnmatch.fnmatchcase(path, failure.pattern):
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.remove(failure)
                return failure
        return None

    def _bucket(self, method: str, pattern: str) -> str:
        return f"{zlib.crc32(f'{method} {pattern}'.encode()):08x}"

    async def _r_me(self, call: _Call) -> web.Response:
        return _json(self._me_json())

    async def _r_user(self, call: _Call) -> web.Response:
        user = self.users.get(call.ids["user_id"])
        if user is None:
            return _error(404, 10013, "Unknown User")
        return _json(user)

    async def _r_create_dm(self, call: _Call) -> web.Response:
        recipient = call.json.get("recipient_id")
        if recipient is None or not str(recipient).isdigit():
            return _form_error("recipient_id", "BASE_TYPE_REQUIRED", "This field is required")
        if int(recipient) not in self.users:
            return _error(404, 10013, "Unknown User")
        return _json(self._dm_channel(int(recipient)))

    async def _r_gateway(self, call: _Call) -> web.Response:
        return _json({"url": self.gateway_url})

    async def _r_gateway_bot(self, call: _Call) -> web.Response:
        limit = {
            "total": 1000,
            "remaining": max(0, 1000 - len(self.identifies)),
            "reset_after": 86_400_000,
            "max_concurrency": 1,
        }
        return _json({"url": self.gateway_url, "shards": 1, "session_start_limit": limit})

    async def _r_application(self, call: _Call) -> web.Response:
        me = self.users[self.bot_user_id]
        return _json(
            {
                "id": str(self.bot_user_id),
                "name": me["username"],
                "icon": None,
                "description": "",
                "summary": "",
                "type": None,
                "bot": me,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "owner": self.users[OWNER_ID],
                "team": None,
                "flags": self._application_flags(),
                "rpc_origins": [],
                "redirect_uris": [],
                "interactions_endpoint_url": None,
                "tags": [],
                "integration_types_config": {"0": {}},
                "approximate_guild_count": len(self._guilds),
            }
        )

    async def _r_channel(self, call: _Call) -> web.Response:
        channel = self._channel(call.ids["channel_id"])
        if channel is None:
            return _error(404, 10003, "Unknown Channel")
        return _json(channel)

    async def _r_message(self, call: _Call) -> web.Response:
        message = self.messages.get(call.ids["message_id"])
        if message is None or int(message["channel_id"]) != call.ids["channel_id"]:
            return _error(404, 10008, "Unknown Message")
        return _json(message)

    async def _r_typing(self, call: _Call) -> web.Response:
        channel_id = call.ids["channel_id"]
        if self._channel(channel_id) is None:
            return _error(404, 10003, "Unknown Channel")
        self.typing.append(channel_id)
        return web.Response(status=204)

    async def _r_create_message(self, call: _Call) -> web.Response:
        channel_id = call.ids["channel_id"]
        if self._channel(channel_id) is None:
            return _error(404, 10003, "Unknown Channel")
        payload = call.json
        content = payload.get("content") or ""
        errors: JSON = {}
        if (problem := _content_problem(content)) is not None:
            errors["content"] = problem
        allowed = payload.get("allowed_mentions")
        if isinstance(allowed, dict):
            for kind in ("users", "roles"):
                if kind in allowed.get("parse", []) and allowed.get(kind):
                    errors["allowed_mentions"] = _field_error(
                        "SET_TYPE_ALREADY_CONTAINS_VALUE",
                        f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.',
                    )
        reference = payload.get("message_reference")
        if isinstance(reference, dict) and reference.get("message_id") is not None:
            target = self.messages.get(int(reference["message_id"]))
            if target is None or int(target["channel_id"]) != channel_id:
                if reference.get("fail_if_not_exists", True):
                    errors["message_reference"] = _field_error(
                        "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
                    )
                reference = None
        else:
            reference = None
        if errors:
            return _error(400, 50035, "Invalid Form Body", errors=errors)
        if not (content or payload.get("embeds") or call.uploads or payload.get("sticker_ids")):
            return _error(400, 50006, "Cannot send an empty message")
        message_id = self._snowflake()
        wire_reference = None
        if reference is not None:
            wire_reference = {
                "type": int(reference.get("type", 0)),
                "channel_id": str(channel_id),
                "message_id": str(reference["message_id"]),
            }
            if channel_id in self._channel_guild:
                wire_reference["guild_id"] = str(self._channel_guild[channel_id])
        message = self._message_json(
            message_id=message_id,
            channel_id=channel_id,
            author=self.users[self.bot_user_id],
            content=content,
            attachments=[self._store_file(channel_id, u) for u in call.uploads],
            embeds=list(payload.get("embeds") or []),
            reference=wire_reference,
            nonce=payload.get("nonce"),
            tts=bool(payload.get("tts", False)),
            flags=int(payload.get("flags") or 0),
        )
        self.messages[message_id] = message
        self.sent.append(
            SentMessage(
                channel_id,
                message_id,
                content,
                payload.get("message_reference"),
                allowed if isinstance(allowed, dict) else None,
                payload,
                tuple(u.filename for u in call.uploads),
            )
        )
        if self.echo_own_messages and self._session is not None:
            await self._deliver_message(self._session, "MESSAGE_CREATE", message)
        return _json(message)

    async def _r_edit(self, call: _Call) -> web.Response:
        channel_id, message_id = call.ids["channel_id"], call.ids["message_id"]
        message = self.messages.get(message_id)
        if message is None or int(message["channel_id"]) != channel_id:
            return _error(404, 10008, "Unknown Message")
        if int(message["author"]["id"]) != self.bot_user_id:
            return _error(403, 50005, "Cannot edit a message authored by another user")
        payload = call.json
        content = payload.get("content")
        if content is not None and (problem := _content_problem(content)) is not None:
            return _error(400, 50035, "Invalid Form Body", errors={"content": problem})
        if "content" in payload:
            message["content"] = content or ""  # null clears it
        if "embeds" in payload:
            message["embeds"] = list(payload["embeds"] or [])
        message["edited_timestamp"] = _now_iso()
        self.edits.append(Edit(channel_id, message_id, content, payload))
        if self.echo_own_messages and self._session is not None:
            await self._deliver_message(self._session, "MESSAGE_UPDATE", message)
        return _json(message)

    async def _file(self, request: web.Request) -> web.Response:
        key = (
            int(request.match_info["channel_id"]),
            int(request.match_info["attachment_id"]),
            request.match_info["filename"],
        )
        if key not in self._files:
            return web.Response(status=404)
        data, content_type = self._files[key]
        return web.Response(body=data, content_type=content_type)

    # -- wire objects -----------------------------------------------------------------------

    def _snowflake(self) -> int:
        now = (int(time.time() * 1000) - _DISCORD_EPOCH_MS) << 22
        self._last_snowflake = max(now, self._last_snowflake + 1)
        return self._last_snowflake

    def _user(self, user_id: int) -> JSON:
        if user_id not in self.users:
            self.users[user_id] = _user_json(user_id, f"user{user_id}")
        return self.users[user_id]

    def _me_json(self) -> JSON:
        return self.users[self.bot_user_id] | {
            "verified": True,
            "mfa_enabled": False,
            "email": None,
            "locale": "en-US",
            "flags": 0,
        }

    def _application_flags(self) -> int:
        return _LIMITED_INTENT_FLAGS if self.privileged_intents_allowed else 0

    def _channel(self, channel_id: int) -> JSON | None:
        if channel_id in self._dm_channels:
            return self._dm_channels[channel_id]
        guild = self._guilds.get(self._channel_guild.get(channel_id, 0))
        if guild is None:
            return None
        return guild.channels.get(channel_id) or guild.threads.get(channel_id)

    def _dm_channel(self, user_id: int, channel_id: int | None = None) -> JSON:
        """The bot's DM channel with a user, made on first use."""
        known = self._dm_by_user.get(user_id)
        if known is not None and channel_id in (None, known):
            return self._dm_channels[known]
        channel_id = channel_id if channel_id is not None else self._snowflake()
        channel = {
            "id": str(channel_id),
            "type": _DM,
            "last_message_id": None,
            "flags": 0,
            "recipients": [self._user(user_id)],
        }
        self._dm_channels[channel_id] = channel
        self._dm_by_user[user_id] = channel_id
        return channel

    def _store_file(self, channel_id: int, upload: _Upload) -> JSON:
        attachment_id = self._snowflake()
        self._files[(channel_id, attachment_id, upload.filename)] = (
            upload.data,
            upload.content_type,
        )
        url = f"{self.base_url}/attachments/{channel_id}/{attachment_id}/{upload.filename}"
        return {
            "id": str(attachment_id),
            "filename": upload.filename,
            "size": len(upload.data),
            "url": url,
            "proxy_url": url,
            "content_type": upload.content_type,
        }

    def _member_json(self, guild_id: int, user_id: int, *, with_user: bool) -> JSON:
        member: JSON = {
            "roles": [],
            "nick": None,
            "avatar": None,
            "banner": None,
            "joined_at": self._guilds[guild_id].joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        if with_user:
            member["user"] = self._user(user_id)
        return member

    def _guild_json(self, guild: _Guild) -> JSON:
        everyone = {
            "id": str(guild.id),
            "name": "@everyone",
            "permissions": "1071698660929",
            "position": 0,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "owner_id": str(OWNER_ID),
            "unavailable": False,
            "large": False,
            "member_count": 1 + len(guild.members),
            "joined_at": guild.joined_at,
            "roles": [everyone],
            "channels": list(guild.channels.values()),
            "threads": list(guild.threads.values()),
            "members": [self._member_json(guild.id, self.bot_user_id, with_user=True)],
            "voice_states": [],
            "presences": [],
            "emojis": [],
            "stickers": [],
            "features": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "system_channel_id": None,
            "preferred_locale": "en-US",
            "description": None,
        }

    def _message_json(
        self,
        *,
        message_id: int,
        channel_id: int,
        author: JSON,
        content: str,
        mentions: Sequence[JSON] = (),
        mention_roles: Iterable[int] = (),
        mention_everyone: bool = False,
        attachments: Sequence[JSON] = (),
        embeds: Sequence[JSON] = (),
        reference: JSON | None = None,
        nonce: Any = None,
        tts: bool = False,
        flags: int = 0,
    ) -> JSON:
        """A message object as the REST API returns it (the gateway adds guild fields)."""
        message: JSON = {
            "id": str(message_id),
            "channel_id": str(channel_id),
            "author": author,
            "content": content,
            "timestamp": _snowflake_iso(message_id),
            "edited_timestamp": None,
            "tts": tts,
            "mention_everyone": mention_everyone,
            "mentions": list(mentions),
            "mention_roles": [str(r) for r in mention_roles],
            "attachments": list(attachments),
            "embeds": list(embeds),
            "pinned": False,
            "type": 0,
            "flags": flags,
            "components": [],
        }
        if nonce is not None:
            message["nonce"] = nonce
        if reference is not None:
            message["message_reference"] = reference
            if reference.get("type", 0) == 0:
                message["type"] = _REPLY_TYPE
                target = self.messages.get(int(reference["message_id"]))
                message["referenced_message"] = (
                    {k: v for k, v in target.items() if k != "referenced_message"}
                    if target is not None
                    else None
                )
        return copy.deepcopy(message)

    def _message_event(self, message: JSON) -> JSON:
        """MESSAGE_CREATE/UPDATE's payload: the message plus guild_id, member, channel_type."""
        event = copy.deepcopy(message)
        channel_id = int(message["channel_id"])
        guild_id = self._channel_guild.get(channel_id)
        if guild_id is None:
            event["channel_type"] = _DM
            return event
        event["guild_id"] = str(guild_id)
        event["channel_type"] = (self._channel(channel_id) or {}).get("type", _TEXT)
        event["member"] = self._member_json(guild_id, int(message["author"]["id"]), with_user=False)
        for user in event["mentions"]:
            user["member"] = self._member_json(guild_id, int(user["id"]), with_user=False)
        return event


# -- helpers ----------------------------------------------------------------------------------


@contextlib.contextmanager
def point_discord_py_at(double: DiscordDouble) -> Iterator[None]:
    """Send discord.py's REST calls and gateway connections to the double, then restore."""
    base, gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    Route.BASE = double.api_base_url
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(double.gateway_url)
    try:
        yield
    finally:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = base, gateway


async def _read_body(request: web.Request) -> tuple[Any, list[_Upload]]:
    if not request.can_read_body:
        return None, []
    if request.content_type == "application/json":
        return await request.json(), []
    if request.content_type == "multipart/form-data":
        form = await request.post()
        uploads: list[_Upload] = []
        body: Any = None
        for name, value in form.items():
            if isinstance(value, web.FileField):
                uploads.append(_Upload(value.filename, value.file.read(), value.content_type))
            elif name == "payload_json" and isinstance(value, str):
                body = json.loads(value)
        return body, uploads
    return await request.text(), []


def _user_json(
    user_id: int, username: str, *, bot: bool = False, global_name: str | None = None
) -> JSON:
    user: JSON = {
        "id": str(user_id),
        "username": username,
        "discriminator": "0",
        "global_name": global_name,
        "avatar": None,
        "avatar_decoration_data": None,
        "banner": None,
        "accent_color": None,
        "public_flags": 0,
    }
    if bot:
        user["bot"] = True
    return user


def _text_channel(guild_id: int, channel_id: int, name: str, position: int) -> JSON:
    return {
        "id": str(channel_id),
        "type": _TEXT,
        "guild_id": str(guild_id),
        "name": name,
        "position": position,
        "permission_overwrites": [],
        "parent_id": None,
        "topic": None,
        "nsfw": False,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "flags": 0,
    }


def _thread(guild_id: int, parent_id: int, thread_id: int, name: str, *, owner_id: int) -> JSON:
    now = _now_iso()
    return {
        "id": str(thread_id),
        "type": _PUBLIC_THREAD,
        "guild_id": str(guild_id),
        "parent_id": str(parent_id),
        "owner_id": str(owner_id),
        "name": name,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "message_count": 0,
        "member_count": 1,
        "total_message_sent": 0,
        "flags": 0,
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": 1440,
            "archive_timestamp": now,
            "locked": False,
            "create_timestamp": now,
        },
    }


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _snowflake_iso(snowflake: int) -> str:
    ms = (snowflake >> 22) + _DISCORD_EPOCH_MS
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def _guess_type(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def _ratelimit_headers(bucket: str, retry_after: float = 1.0, remaining: int = 4) -> dict[str, str]:
    return {
        "Via": "1.1 google",
        "X-RateLimit-Bucket": bucket,
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
        "X-RateLimit-Reset-After": f"{retry_after:.3f}",
    }


def _failure_response(failure: _Failure, bucket: str) -> web.Response:
    status = failure.status
    if status == 429:
        retry_after = 1.0 if failure.retry_after is None else failure.retry_after
        headers = _ratelimit_headers(bucket, retry_after, remaining=0)
        headers["Retry-After"] = str(math.ceil(retry_after))
        headers["X-RateLimit-Scope"] = "global" if failure.is_global else "user"
        if failure.is_global:
            headers["X-RateLimit-Global"] = "true"
        if not failure.via:  # Cloudflare answers itself: HTML, no Via
            del headers["Via"]
            return web.Response(
                status=429, text="error code: 1015", content_type="text/html", headers=headers
            )
        body = {
            "message": "You are being rate limited.",
            "retry_after": retry_after,
            "global": failure.is_global,
        }
        return _json(body, status=429, headers=headers)
    if status in (502, 504):  # these come from the proxy in front of Discord, as HTML
        return web.Response(
            status=status,
            text=f"<html><body><h1>{status} Bad Gateway</h1></body></html>",
            content_type="text/html",
            headers={"Via": "1.1 google"},
        )
    reason = _REASONS.get(status, "Error")
    response = _error(status, 0, f"{status}: {reason}")
    response.headers["Via"] = "1.1 google"
    return response


_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _json(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """Exactly `application/json`, as Discord sends it: discord.py compares the header verbatim
    and treats `application/json; charset=utf-8` (aiohttp's default) as plain text."""
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": "application/json"} | (headers or {}),
    )


def _content_problem(content: object) -> JSON | None:
    """Discord's form error for a message's `content`, or None when it is acceptable."""
    if not isinstance(content, str):
        return _field_error("STRING_TYPE_CONVERT", "Could not interpret as string.")
    if len(content) > MAX_CONTENT:
        return _field_error("BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length.")
    return None


def _field_error(code: str, message: str) -> JSON:
    return {"_errors": [{"code": code, "message": message}]}


def _form_error(field_name: str, code: str, message: str) -> web.Response:
    return _error(400, 50035, "Invalid Form Body", errors={field_name: _field_error(code, message)})


def _error(status: int, code: int, message: str, *, errors: JSON | None = None) -> web.Response:
    body: JSON = {"message": message, "code": code}
    if errors is not None:
        body["errors"] = errors
    return _json(body, status=status)

"""The Discord channel: a discord.py `Client` running inside the gateway's event loop.

discord.py keeps the gateway WebSocket alive on its own: heartbeats, its watchdog (no frame
for `heartbeat_timeout` closes and restarts the connection), RESUME after a drop, a fresh
IDENTIFY when the session is gone. We add what it lacks: the gateway URL taken from
`GET /gateway/bot`, a supervisor that starts a new client after a fatal error (bad token,
refused intent) with capped backoff, one log line per disconnect / resume / connect, and
health for `/ready`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import structlog
import yarl

from open_clanker.channels.base import ChannelHealth, ChannelState, Submit
from open_clanker.channels.discord.config import DiscordConfig
from open_clanker.channels.discord.errors import channel_error, describe
from open_clanker.channels.discord.inbound import (
    DiscordScope,
    ignored_reason,
    inbound_from_message,
)
from open_clanker.channels.discord.library import DiscordWebSocket, Route, VoiceClient, discord
from open_clanker.channels.discord.splitting import DISCORD_LIMIT, split_for_discord
from open_clanker.core.errors import ChannelError, ConfigError
from open_clanker.core.tasks import cancel_and_wait
from open_clanker.core.types import ChannelType
from open_clanker.storage.outbox import OutboxItem

log = structlog.get_logger("open_clanker.discord")

# The model's text may contain "@everyone", role or user mentions: none of them pings anyone.
# Only the user we reply to is notified, as any reply does.
SAFE_MENTIONS = discord.AllowedMentions(everyone=False, users=False, roles=False, replied_user=True)

INTENTS_HELP = (
    "Discord refused the Message Content intent. Turn it on for this bot: "
    "https://discord.com/developers/applications -> your app -> Bot -> "
    "Privileged Gateway Intents -> Message Content Intent."
)
REFUSED_LOGIN_HELP = (
    "Discord refused the bot token; check [channels.discord].bot_token "
    "(or OPENCLAW_DISCORD_BOT_TOKEN)."
)


@dataclass(frozen=True, slots=True)
class ConnectTiming:
    """Backoff between fresh clients, discord.py's silence watchdog, and how long start waits."""

    backoff_min_s: float = 1.0
    backoff_max_s: float = 60.0
    heartbeat_timeout_s: float = 60.0
    start_wait_s: float = 30.0


DEFAULT_TIMING = ConnectTiming()


def intents() -> discord.Intents:
    """Guild and DM messages with their text; nothing else (no members, no presences)."""
    return discord.Intents(guilds=True, guild_messages=True, dm_messages=True, message_content=True)


def point_library_at(api_base_url: str, gateway_url: str | None = None) -> None:
    """discord.py builds REST URLs from `Route.BASE` and connects a plain `Client` to
    `DiscordWebSocket.DEFAULT_GATEWAY` (also used again after an invalidated session). Both are
    class attributes, so this is process-wide; one gateway runs one Discord bot."""
    Route.BASE = api_base_url.rstrip("/")
    if gateway_url is not None:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


class _DropReconnectTraceback(logging.Filter):
    """discord.py logs each reconnect with a full traceback; we log one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Attempting a reconnect")


def _quiet_library_logs() -> None:
    library = logging.getLogger("discord")
    if library.getEffectiveLevel() < logging.WARNING and not logging.getLogger().isEnabledFor(
        logging.DEBUG
    ):
        library.setLevel(logging.WARNING)
    client_log = logging.getLogger("discord.client")
    if not any(isinstance(f, _DropReconnectTraceback) for f in client_log.filters):
        client_log.addFilter(_DropReconnectTraceback())
    # Voice is not used; the library would warn about its missing codecs at every start.
    VoiceClient.warn_nacl = False
    VoiceClient.warn_dave = False


class _Client(discord.Client):
    """Routes the events we care about to the adapter; everything else stays default."""

    def __init__(self, adapter: DiscordChannel, heartbeat_timeout: float) -> None:
        super().__init__(
            intents=intents(),
            max_messages=None,  # no message cache: replies carry the message they refer to
            member_cache_flags=discord.MemberCacheFlags.none(),
            chunk_guilds_at_startup=False,
            max_ratelimit_timeout=30.0,  # longer 429 waits come back to the outbox
            heartbeat_timeout=heartbeat_timeout,
            enable_debug_events=True,  # every frame counts as contact for /ready
            allowed_mentions=SAFE_MENTIONS,
        )
        self._adapter = adapter

    def dispatch(self, event: str, /, *args: Any, **kwargs: Any) -> None:
        if event == "socket_raw_receive":
            self._adapter.health.contact()
            return  # no task per frame: nothing else listens to it
        self._adapter._on_event(event)
        super().dispatch(event, *args, **kwargs)

    async def on_message(self, message: discord.Message) -> None:
        await self._adapter._on_message(message)


class DiscordChannel:
    type = ChannelType.DISCORD

    def __init__(self, config: DiscordConfig, *, timing: ConnectTiming | None = None) -> None:
        self._token = config.bot_token.get_secret_value()
        if not self._token:
            raise ConfigError(
                "channels.discord.bot_token: required when [channels.discord] is present "
                "(or set OPENCLAW_DISCORD_BOT_TOKEN)."
            )
        self.config = config
        self.health = ChannelHealth()
        self.bot_username: str | None = None
        self._timing = timing or DEFAULT_TIMING
        self._scope = DiscordScope(
            bot_id=0,
            guild_id=config.guild_id.strip(),
            allowed_channels=frozenset(str(c).strip() for c in config.allowed_channels),
            require_mention=config.require_mention,
        )
        self._client: _Client | None = None  # the gateway connection's client (receiving)
        self._rest: _Client | None = None  # logged in for sending only (standby replica)
        self._rest_lock = asyncio.Lock()
        self._submit: Submit | None = None
        self._task: asyncio.Task[None] | None = None
        self._first_attempt = asyncio.Event()
        self._connected = False
        self._stopping = False

    # -- one receiver across replicas (pipeline/receiver_lease.py) ----------------------------

    @property
    def exclusive_receiver(self) -> bool:
        """Each gateway session gets every message: one replica connects, all of them send."""
        return True

    @property
    def receiver_name(self) -> str:
        return "discord:" + hashlib.sha256(self._token.encode()).hexdigest()[:16]

    # -- outbound ---------------------------------------------------------------------------

    def split(self, text: str) -> list[str]:
        return split_for_discord(text)

    async def send(self, item: OutboxItem) -> None:
        channel = await self._messageable(item.channel_id)
        # Only the first part quotes the user's message; the rest follow it.
        reference = _reference(item.channel_id, item.reply_to) if item.part == 0 else None
        try:
            if item.edit_message_id and await self._edit_final(channel, item):
                return
            await _send(channel, item.text, reference)
        except (discord.DiscordException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise channel_error(exc, self._token) from None
        self.health.contact()

    async def _edit_final(self, channel: discord.PartialMessageable, item: OutboxItem) -> bool:
        """Turn the streamed draft into the first part. False: the draft is gone (send anew)."""
        assert item.edit_message_id is not None
        draft = channel.get_partial_message(int(item.edit_message_id))
        try:
            await draft.edit(content=item.text, allowed_mentions=SAFE_MENTIONS)
        except discord.NotFound:
            return False
        self.health.contact()
        return True

    async def draft(
        self,
        chat_id: str,
        thread_id: str | None,
        reply_to: str | None,
        text: str,
        message_id: str | None,
    ) -> str:
        """Show the reply so far (at most one message long); the pipeline throttles calls."""
        if len(text) > DISCORD_LIMIT:
            text = text[: DISCORD_LIMIT - 2].rstrip() + " …"
        channel = await self._messageable(chat_id)
        try:
            if message_id is None:
                sent = await _send(channel, text, _reference(chat_id, reply_to))
                self.health.contact()
                return str(sent.id)
            await channel.get_partial_message(int(message_id)).edit(
                content=text, allowed_mentions=SAFE_MENTIONS
            )
        except (discord.DiscordException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise channel_error(exc, self._token) from None
        self.health.contact()
        return message_id

    async def typing(self, chat_id: str, thread_id: str | None) -> None:
        try:
            await (await self._messageable(chat_id)).typing()
        except (discord.DiscordException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise channel_error(exc, self._token) from None

    def chat_id_problem(self, chat_id: str) -> str | None:
        if chat_id.isdigit():
            return None
        return (
            f"{chat_id!r} is not a Discord channel id: use the channel's number "
            "(Developer Mode, then right-click the channel, Copy Channel ID)."
        )

    async def _messageable(self, chat_id: str) -> discord.PartialMessageable:
        if not chat_id.isdigit():
            raise ChannelError(
                f"{chat_id!r} is not a Discord channel id (a number).", "discord", retryable=False
            )
        return (await self._sender()).get_partial_messageable(int(chat_id))

    async def _sender(self) -> _Client:
        """A logged-in client: the gateway's when this replica receives, else one logged in
        over REST only, so a standby replica sends too."""
        for client in (self._client, self._rest):
            if client is not None and client.user is not None and not client.is_closed():
                return client
        if self._task is not None:  # the gateway client is logging in: the outbox retries
            raise ChannelError("Not logged in to Discord yet.", "discord", retryable=True)
        async with self._rest_lock:
            if self._rest is None or self._rest.user is None or self._rest.is_closed():
                self._rest = await self._login_rest()
            return self._rest

    async def _login_rest(self) -> _Client:
        client = _Client(self, self._timing.heartbeat_timeout_s)
        point_library_at(self.config.api_base_url)
        try:
            await client.login(self._token)
        except discord.LoginFailure:
            await client.close()
            self.health.degrade(REFUSED_LOGIN_HELP)
            raise ChannelError(REFUSED_LOGIN_HELP, "discord", retryable=False) from None
        except (discord.DiscordException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            await client.close()
            error = channel_error(exc, self._token)
            self.health.degrade(error.message)
            raise error from None
        self._learn_identity(client)
        self.health.contact()
        return client

    def _learn_identity(self, client: _Client) -> None:
        user = client.user
        assert user is not None  # login fetched it
        self._scope = DiscordScope(
            bot_id=user.id,
            guild_id=self._scope.guild_id,
            allowed_channels=self._scope.allowed_channels,
            require_mention=self._scope.require_mention,
        )
        self.bot_username = user.name

    def reconfigure(self, config: DiscordConfig) -> None:
        """A reload's guild, allowed channels and mention rule (gateway/reload.py); the
        connection stays as it is, the next message is filtered by the new scope."""
        self.config = config
        self._scope = replace(
            self._scope,
            guild_id=config.guild_id.strip(),
            allowed_channels=frozenset(str(c).strip() for c in config.allowed_channels),
            require_mention=config.require_mention,
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, submit: Submit, *, receive: bool = True) -> None:
        """Log in and (with `receive`) connect to the gateway in the background; return once
        connected or the first attempt failed (bounded), so that start-up problems are logged
        at start-up. Without `receive`, only log in over REST, for sending."""
        self._submit = submit
        self._stopping = False
        self.health.state = ChannelState.STARTING
        _quiet_library_logs()
        if receive:
            await self.start_receiving()
            return
        self.health.receiving = False
        with contextlib.suppress(ChannelError):  # logged and shown in health; sends retry
            await self._sender()

    async def start_receiving(self) -> None:
        if self._stopping or self._task is not None:
            return
        self.health.receiving = True
        self._first_attempt.clear()
        self._task = asyncio.create_task(self._run(), name="discord")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._timing.start_wait_s):
                await self._first_attempt.wait()

    async def pause_receiving(self) -> None:
        """Another replica holds the gateway lease: close our gateway session, keep sending
        (over REST, logged in again on the next send)."""
        task, self._task = self._task, None
        client = self._client
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
        await cancel_and_wait(task)
        self._client = None
        self._connected = False
        self.health.receiving = False
        log.info("discord_receiving_paused", bot=self.bot_username)

    async def stop_receiving(self) -> None:
        """Nothing to pause: Discord replays missed events only to a RESUMEd session, never
        to the fresh one a restart opens, so messages keep being accepted (stored) until
        `stop()`; the drain answers them, or recovery at the next start."""

    async def stop(self) -> None:
        self._stopping = True
        for client in (self._client, self._rest):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.close()
        await cancel_and_wait(self._task)
        self._task = None
        self.health.state = ChannelState.STOPPED
        log.info("discord_stopped")

    async def _run(self) -> None:
        """One client per attempt; a fatal error (token, intents, gateway gone) starts afresh."""
        delay = self._timing.backoff_min_s
        while not self._stopping:
            client = _Client(self, self._timing.heartbeat_timeout_s)
            self._client = client
            try:
                await self._connect(client)
                if self._stopping:
                    return
                problem, wait, fatal = "the Discord connection closed", delay, False
            except discord.PrivilegedIntentsRequired:
                problem, wait, fatal = INTENTS_HELP, self._timing.backoff_max_s, True
            except discord.LoginFailure:
                problem, wait, fatal = REFUSED_LOGIN_HELP, self._timing.backoff_max_s, True
            except (discord.DiscordException, aiohttp.ClientError, OSError, TimeoutError) as exc:
                problem, wait, fatal = describe(exc, self._token), delay, False
            finally:
                if not client.is_closed():
                    with contextlib.suppress(Exception):
                        await client.close()
            self._connected = False
            self.health.degrade(problem)
            # Only what the operator must fix is an error; a network blip is retried quietly.
            (log.error if fatal else log.warning)(
                "discord_connect_failed", error=problem, retry_in=round(wait, 2)
            )
            self._first_attempt.set()
            await asyncio.sleep(wait)
            delay = min(delay * 2, self._timing.backoff_max_s)

    async def _connect(self, client: _Client) -> None:
        point_library_at(self.config.api_base_url)
        await client.login(self._token)
        self._learn_identity(client)
        # A plain Client would dial the hard-coded default; ask Discord where to connect.
        _shards, url, _limit = await client.http.get_bot_gateway()
        point_library_at(self.config.api_base_url, url)
        await client.connect(reconnect=True)

    def _on_event(self, event: str) -> None:
        """One log line per connection change discord.py handles by itself."""
        if event == "connect":  # READY received: a fresh session (`ready` waits for guilds)
            self._connected = True
            self.health.contact()
            log.info("discord_connected", bot=self.bot_username)
            self._first_attempt.set()
        elif event == "resumed":
            self._connected = True
            self.health.contact()
            log.info("discord_resumed", bot=self.bot_username)
        elif event == "disconnect" and self._connected and not self._stopping:
            self._connected = False
            self.health.degrade("disconnected from the Discord gateway; reconnecting")
            log.warning("discord_disconnected", bot=self.bot_username)

    # -- inbound ----------------------------------------------------------------------------

    async def _on_message(self, msg: discord.Message) -> None:
        if self._submit is None:
            return
        reason = ignored_reason(msg, self._scope)
        if reason is not None:
            if reason != "from a bot":  # our own replies come back here: not worth a line
                log.info("discord_message_ignored", message_id=str(msg.id), reason=reason)
            return
        try:
            await self._submit(inbound_from_message(msg, self._scope))
        except Exception as exc:  # one bad message must not reach discord.py's on_error
            log.error("discord_submit_failed", message_id=str(msg.id), error=str(exc))


async def _send(
    channel: discord.PartialMessageable, text: str, reference: discord.MessageReference | None
) -> discord.Message:
    if reference is None:
        return await channel.send(text, allowed_mentions=SAFE_MENTIONS)
    return await channel.send(text, reference=reference, allowed_mentions=SAFE_MENTIONS)


def _reference(chat_id: str, reply_to: str | None) -> discord.MessageReference | None:
    if not reply_to or not reply_to.isdigit() or not chat_id.isdigit():
        return None
    # fail_if_not_exists=False: if the user deleted their message, the answer still arrives.
    return discord.MessageReference(
        message_id=int(reply_to), channel_id=int(chat_id), fail_if_not_exists=False
    )

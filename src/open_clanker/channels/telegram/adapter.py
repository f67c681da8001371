"""The Telegram channel: python-telegram-bot's `Bot` driven by our own loop in the gateway's loop.

Polling mode long-polls `getUpdates` in one task (restarted with capped backoff on failure and
by a per-round deadline when it stalls); webhook mode registers the URL and takes updates from
`handle_webhook`, which the HTTP server calls. Sending renders Markdown to escaped HTML.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import structlog

# Opt in to PTB's future `timedelta` time periods now: no deprecation warnings on RetryAfter.
os.environ.setdefault("PTB_TIMEDELTA", "true")

from telegram import Bot, BotCommand, ReplyParameters, Update
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, Conflict, InvalidToken, RetryAfter, TelegramError
from telegram.request import HTTPXRequest

from open_clanker.channels.base import ChannelHealth, ChannelState, Submit
from open_clanker.channels.telegram.config import TelegramConfig
from open_clanker.channels.telegram.errors import (
    channel_error,
    describe,
    is_entity_error,
    retry_after_s,
)
from open_clanker.channels.telegram.formatting import render
from open_clanker.channels.telegram.splitting import split_for_telegram
from open_clanker.channels.telegram.updates import (
    ALLOWED_UPDATES,
    FILE_REF_PREFIX,
    BotIdentity,
    ignored_reason,
    inbound_from_update,
)
from open_clanker.core.errors import ConfigError, StorageError
from open_clanker.core.tasks import cancel_and_wait
from open_clanker.core.types import Attachment, ChannelType
from open_clanker.storage.outbox import OutboxItem

log = structlog.get_logger("open_clanker.telegram")

COMMANDS = (
    BotCommand("help", "What I can do"),
    BotCommand("new", "Start a fresh conversation"),
    BotCommand("reset", "Start a fresh conversation"),
    BotCommand("stop", "Stop the answer being written"),
    BotCommand("status", "Model and conversation state"),
    BotCommand("start", "Say hello"),
)


@dataclass(frozen=True, slots=True)
class PollTiming:
    """Long-poll length, the watchdog's deadline for one round, and the reconnect backoff.

    `stall_after_s` should exceed `poll_timeout_s` plus the HTTP timeouts (10 s read on top
    of the poll), so that only a round that is truly stuck trips the watchdog.
    """

    poll_timeout_s: int = 30
    stall_after_s: float = 90.0
    backoff_min_s: float = 1.0
    backoff_max_s: float = 60.0


class _RedactToken(logging.Filter):
    """PTB logs the Bot API URL (token included) at DEBUG; this takes the token out."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.token in message:
            record.msg, record.args = message.replace(self.token, "[REDACTED]"), None
        return True


def _keep_token_out_of_logs(token: str) -> None:
    # httpx logs every request URL at INFO, and Bot API URLs contain the token.
    httpx_log = logging.getLogger("httpx")
    if httpx_log.getEffectiveLevel() < logging.WARNING:
        httpx_log.setLevel(logging.WARNING)
    if not token:
        return
    for name in ("telegram.Bot", "telegram.request", "telegram.ext"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactToken) and f.token == token for f in logger.filters):
            logger.addFilter(_RedactToken(token))


def build_bot(config: TelegramConfig) -> Bot:
    """A PTB `Bot` on `api_base_url`; the long-poll read timeout exceeds the poll length."""
    if not config.bot_token.get_secret_value():
        raise ConfigError(
            "channels.telegram.bot_token: required when [channels.telegram] is present "
            "(or set OPENCLAW_TELEGRAM_BOT_TOKEN)."
        )
    _keep_token_out_of_logs(config.bot_token.get_secret_value())
    base = config.api_base_url.rstrip("/")
    request = HTTPXRequest(
        connection_pool_size=8,
        connect_timeout=10.0,
        read_timeout=20.0,
        write_timeout=20.0,
        pool_timeout=5.0,
    )
    # PTB adds the getUpdates `timeout` to this read timeout.
    poll_request = HTTPXRequest(
        connection_pool_size=1, connect_timeout=10.0, read_timeout=10.0, pool_timeout=5.0
    )
    return Bot(
        config.bot_token.get_secret_value(),
        base_url=f"{base}/bot",
        base_file_url=f"{base}/file/bot",
        request=request,
        get_updates_request=poll_request,
    )


DEFAULT_WEBHOOK_PATH = "/telegram/webhook"


def webhook_path_for(config: TelegramConfig) -> str:
    """The gateway path Telegram posts to: the path of `webhook_url` (polling mode: none)."""
    if config.mode != "webhook":
        return ""
    path = urlsplit(config.webhook_url).path
    return path if path not in ("", "/") else DEFAULT_WEBHOOK_PATH


# Largest image downloaded for a vision model (vendors cap images at about 5 MB).
MAX_FETCH_BYTES = 5 * 1024 * 1024


class TelegramChannel:
    type = ChannelType.TELEGRAM

    def __init__(
        self,
        config: TelegramConfig,
        *,
        bot: Bot | None = None,
        timing: PollTiming = PollTiming(),
    ) -> None:
        self.config = config
        self.health = ChannelHealth()
        self.bot_username: str | None = None
        self.webhook_path = webhook_path_for(config)
        self._bot_id: int | None = None
        self._token = config.bot_token.get_secret_value()
        self._timing = timing
        self._bot = bot if bot is not None else build_bot(config)
        self._submit: Submit | None = None
        self._offset: int | None = None
        self._ready = False
        self._failing = False
        self._receiving = True  # False once shutdown has begun: never receives again
        self._task: asyncio.Task[None] | None = None
        self._standing_by = False  # `_task` only retries the connection (a standby replica)

    # -- one receiver across replicas (pipeline/receiver_lease.py) ----------------------------

    @property
    def exclusive_receiver(self) -> bool:
        """Long polling: Telegram serves one `getUpdates` per bot, so one replica polls.
        Webhook mode: Telegram posts to the load balancer, any replica takes updates."""
        return self.config.mode == "polling"

    @property
    def receiver_name(self) -> str:
        return "telegram:" + hashlib.sha256(self._token.encode()).hexdigest()[:16]

    # -- outbound ---------------------------------------------------------------------------

    def split(self, text: str) -> list[str]:
        return split_for_telegram(text)

    async def send(self, item: OutboxItem) -> None:
        chat_id = _chat_id(item.channel_id)
        thread_id = _thread(item.thread_id)
        reply = _reply(item.reply_to)
        rendered = render(item.text)
        html = rendered.html if rendered.visible.strip() else item.text
        plain = rendered.visible if rendered.visible.strip() else item.text
        mode = ParseMode.HTML if rendered.visible.strip() else None
        try:
            if item.edit_message_id and await self._edit_final(
                chat_id, int(item.edit_message_id), html, plain, mode
            ):
                self._contact()
                return
            try:
                await self._bot.send_message(
                    chat_id, html, parse_mode=mode, message_thread_id=thread_id,
                    reply_parameters=reply,
                )  # fmt: skip
            except TelegramError as exc:
                if not is_entity_error(exc):
                    raise
                log.warning("telegram_entities_rejected", chat=item.channel_id, seq=item.seq)
                await self._bot.send_message(
                    chat_id, plain, message_thread_id=thread_id, reply_parameters=reply
                )
        except TelegramError as exc:
            raise channel_error(exc, self._token) from None
        self._contact()

    async def _edit_final(
        self, chat_id: int | str, message_id: int, html: str, plain: str, mode: str | None
    ) -> bool:
        """Turn the streamed draft into the final first part. False: the draft is gone (send
        a new message instead)."""
        try:
            try:
                await self._bot.edit_message_text(html, chat_id, message_id, parse_mode=mode)
            except TelegramError as exc:
                if not is_entity_error(exc):
                    raise
                await self._bot.edit_message_text(plain, chat_id, message_id)
        except BadRequest as exc:
            text = exc.message.lower()
            if "not modified" in text:
                return True  # a retry after the edit landed: already final
            if "not found" in text or "can't be edited" in text:
                return False
            raise
        return True

    async def draft(
        self,
        chat_id: str,
        thread_id: str | None,
        reply_to: str | None,
        text: str,
        message_id: str | None,
    ) -> str:
        """The streamed reply so far, as plain text (partial Markdown is not worth rendering)."""
        try:
            if message_id is None:
                sent = await self._bot.send_message(
                    _chat_id(chat_id),
                    text,
                    message_thread_id=_thread(thread_id),
                    reply_parameters=_reply(reply_to),
                )
                self._contact()
                return str(sent.message_id)
            await self._bot.edit_message_text(text, _chat_id(chat_id), int(message_id))
        except BadRequest as exc:
            if message_id is not None and "not modified" in exc.message.lower():
                return message_id
            raise channel_error(exc, self._token) from None
        except TelegramError as exc:
            raise channel_error(exc, self._token) from None
        self._contact()
        return message_id

    async def typing(self, chat_id: str, thread_id: str | None) -> None:
        try:
            await self._bot.send_chat_action(
                _chat_id(chat_id),
                ChatAction.TYPING,
                message_thread_id=int(thread_id) if thread_id else None,
            )
        except TelegramError as exc:
            raise channel_error(exc, self._token) from None

    async def fetch_attachment(self, attachment: Attachment) -> Attachment | None:
        """Download a photo for a vision model: a `data:` URL, so the token never leaves us."""
        if not attachment.url.startswith(FILE_REF_PREFIX):
            return None
        file_id = attachment.url[len(FILE_REF_PREFIX) :]
        try:
            tg_file = await self._bot.get_file(file_id)
            if tg_file.file_size and tg_file.file_size > MAX_FETCH_BYTES:
                return None
            data = bytes(await tg_file.download_as_bytearray())
        except TelegramError as exc:
            log.warning("telegram_file_failed", error=channel_error(exc, self._token).message)
            return None
        if len(data) > MAX_FETCH_BYTES:
            return None
        encoded = base64.b64encode(data).decode("ascii")
        return attachment.model_copy(
            update={"url": f"data:{attachment.mime_type};base64,{encoded}"}
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, submit: Submit, *, receive: bool = True) -> None:
        """Connect once (so `bot_username` is known when this returns, if Telegram answers),
        then keep the connection alive in the background (polling: only with `receive`)."""
        self._submit = submit
        self.health.state = ChannelState.STARTING
        try:
            await self._setup()
        except TelegramError as exc:
            self._failed("telegram_start_failed", exc, self._timing.backoff_min_s)
        if receive:
            await self.start_receiving()
        else:
            self._standby()

    async def start_receiving(self) -> None:
        """Poll (or watch the webhook); this replica holds the connection's lease."""
        if not self._receiving or (self._task is not None and not self._standing_by):
            return  # shutting down, or already running
        await cancel_and_wait(self._task)
        self._standing_by = False
        self.health.receiving = True
        self._task = asyncio.create_task(self._run(), name="telegram")

    async def pause_receiving(self) -> None:
        """Another replica holds the lease: stop polling, keep sending. Updates fetched but
        not yet stored are fetched again by the new holder (their offset was not confirmed)."""
        await cancel_and_wait(self._task)
        self._task = None
        self._standby()

    def _standby(self) -> None:
        self.health.receiving = False
        if self.health.state is ChannelState.CONNECTED:
            self.health.detail = "standby: another replica receives this bot's updates"
        if not self._ready and self._receiving:
            # The first connection failed: keep trying, so sending works and health is true.
            self._standing_by = True
            self._task = asyncio.create_task(self._reconnect_standby(), name="telegram-standby")

    async def _reconnect_standby(self) -> None:
        delay = self._timing.backoff_min_s
        while not self._ready:
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._timing.backoff_max_s)
            try:
                await self._setup()
            except TelegramError as exc:
                self._failed("telegram_setup_failed", exc, delay)

    async def stop_receiving(self) -> None:
        """Shutdown: no new updates. Polling: the poll loop ends (updates it has not confirmed
        are fetched again after the restart); webhook: new updates get 503, and Telegram
        delivers them again later. Sending keeps working until `stop()`."""
        self._receiving = False
        await cancel_and_wait(self._task)
        self._task = None
        self.health.state = ChannelState.STOPPED
        self.health.detail = "shutting down: no new updates; replies already accepted still go out"
        log.info("telegram_receiving_stopped", mode=self.config.mode)

    async def stop(self) -> None:
        self._receiving = False
        await cancel_and_wait(self._task)
        self._task = None
        with contextlib.suppress(TelegramError):
            await self._bot.shutdown()
        self.health.state = ChannelState.STOPPED
        log.info("telegram_stopped")

    async def _setup(self) -> None:
        await self._bot.initialize()
        me = await self._bot.get_me()
        self.bot_username, self._bot_id = me.username, me.id
        await self._bot.set_my_commands(list(COMMANDS))
        if self.config.mode == "webhook":
            await self._bot.set_webhook(
                url=self.config.webhook_url,
                secret_token=self.config.webhook_secret.get_secret_value() or None,
                allowed_updates=list(ALLOWED_UPDATES),
            )
        else:
            await self._bot.delete_webhook()
        self._ready = True
        self._failing = False
        self.health.contact()
        log.info("telegram_connected", bot=self.bot_username, mode=self.config.mode)

    async def _run(self) -> None:
        delay = self._timing.backoff_min_s
        while True:
            try:
                async with asyncio.timeout(self._timing.stall_after_s):
                    if not self._ready:
                        await self._setup()
                    if self.config.mode == "webhook":
                        await self._check_webhook()
                    else:
                        await self._poll_once()
            except StorageError as exc:
                # An update could not be stored: its offset stays unconfirmed, so Telegram
                # hands it over again at the next poll.
                log.warning("telegram_update_not_stored", error=exc.message, retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._timing.backoff_max_s)
                continue
            except TimeoutError:
                # The watchdog: a round that takes far longer than a long poll is stuck.
                self.health.degrade("the Telegram poll loop stalled and was restarted")
                self._failing = True
                log.warning("telegram_poll_stalled", stall_after_s=self._timing.stall_after_s)
                continue
            except TelegramError as exc:
                wait = retry_after_s(exc) if isinstance(exc, RetryAfter) else delay
                event = "telegram_setup_failed" if not self._ready else "telegram_poll_failed"
                if isinstance(exc, Conflict) and "other getupdates" in exc.message.lower():
                    # Another program polls this bot (our replicas take turns by lease):
                    # setting up again would not help, and would flood Telegram.
                    event = "telegram_poll_conflict"
                elif isinstance(exc, Conflict | InvalidToken):
                    self._ready = False  # e.g. a webhook was set elsewhere: set up again
                self._failed(event, exc, wait)
                await asyncio.sleep(wait)
                delay = min(delay * 2, self._timing.backoff_max_s)
                continue
            delay = self._timing.backoff_min_s
            if self.config.mode == "webhook":
                # Telegram pushes updates to handle_webhook; this is only the health probe.
                await asyncio.sleep(self._timing.poll_timeout_s)

    async def _check_webhook(self) -> None:
        """Webhook mode's watchdog: is our URL still set, and can Telegram reach it?"""
        info = await self._bot.get_webhook_info()
        self._contact()
        if info.url != self.config.webhook_url:
            log.warning("telegram_webhook_lost")
            self._ready = False
            self.health.degrade("the Telegram webhook was removed; setting it again")
            return
        if info.last_error_message and info.last_error_date is not None:
            age = time.time() - info.last_error_date.timestamp()
            if age < 2 * self._timing.poll_timeout_s + 60:
                self.health.degrade(
                    f"Telegram cannot deliver to the webhook: {info.last_error_message}"
                )

    async def _poll_once(self) -> None:
        updates = await self._bot.get_updates(
            offset=self._offset,
            timeout=self._timing.poll_timeout_s,
            allowed_updates=list(ALLOWED_UPDATES),
        )
        self._contact()
        for update in updates:
            try:
                await self._dispatch(update)
            except StorageError:
                raise  # not stored: the offset stays, so the update comes again
            except Exception as exc:  # one update that breaks us must not stop the bot
                log.error("telegram_update_failed", update_id=update.update_id, error=repr(exc))
            # Confirmed (by the next getUpdates) only now that the message is stored.
            self._offset = update.update_id + 1

    def _failed(self, event: str, exc: TelegramError, retry_in: float) -> None:
        detail = describe(exc, self._token)
        if isinstance(exc, InvalidToken):
            detail = "Telegram refused the bot token; check [channels.telegram].bot_token"
        self.health.degrade(detail)
        self._failing = True
        log.warning(event, error=detail, retry_in=round(retry_in, 2))

    def _contact(self) -> None:
        if not self._receiving:  # shutting down: sends still succeed, but stay "stopped"
            self.health.last_contact = time.time()
            return
        self.health.contact()
        if self._failing:
            self._failing = False
            log.info("telegram_recovered", bot=self.bot_username)

    # -- inbound ----------------------------------------------------------------------------

    async def handle_webhook(self, secret_header: str | None, body: bytes) -> int:
        """One webhook request: 401 wrong secret, 400 bad body, 503 not started or shutting
        down (Telegram delivers the update again later), else 200."""
        expected = self.config.webhook_secret.get_secret_value()
        if (
            not expected
            or secret_header is None
            or not hmac.compare_digest(secret_header.encode(), expected.encode())
        ):
            log.warning("telegram_webhook_refused")
            return 401
        if self._submit is None or not self._receiving:
            return 503
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                return 400
            update = Update.de_json(data, self._bot)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            log.warning("telegram_webhook_bad_body", size=len(body))
            return 400
        self._contact()
        try:
            await self._dispatch(update)
        except StorageError:
            return 503  # not stored: Telegram delivers the update again later
        return 200

    async def _dispatch(self, update: Update) -> None:
        assert self._submit is not None
        reason = ignored_reason(update)
        inbound = (
            None
            if reason is not None
            else inbound_from_update(update, BotIdentity(self._bot_id, self.bot_username))
        )
        if inbound is None:
            log.info(
                "telegram_update_ignored",
                update_id=update.update_id,
                reason=reason or "unsupported",
            )
            return
        await self._submit(inbound)


def _thread(thread_id: str | None) -> int | None:
    return int(thread_id) if thread_id and thread_id.isdigit() else None


def _reply(reply_to: str | None) -> ReplyParameters | None:
    if not reply_to or not reply_to.isdigit():
        return None
    return ReplyParameters(message_id=int(reply_to), allow_sending_without_reply=True)


def _chat_id(value: str) -> int | str:
    """Chat ids are numbers; `@channelusername` stays a string."""
    return int(value) if value.lstrip("-").isdigit() else value

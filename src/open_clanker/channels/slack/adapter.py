"""The Slack channel: slack_sdk's `AsyncWebClient` to send, Socket Mode or the Events API to receive.

`start` does what sending needs (`auth.test`: the bot's user id) and starts receiving unless
told not to; `start_receiving` / `stop_receiving` may be called any number of times, in any
order, so that a replica can take the Socket Mode connection over (`exclusive_receiver`).
Events API requests (`handle_webhook_request`) work on every replica. Either way a message is
confirmed to Slack (envelope ack, HTTP 200) only once `submit` returned: once it is stored.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from open_clanker.channels.base import ChannelHealth, ChannelState, Submit
from open_clanker.channels.slack.config import EVENTS_PATH, SlackConfig
from open_clanker.channels.slack.errors import (
    AUTH_ERRORS,
    TRANSPORT_ERRORS,
    channel_error,
    describe,
    error_code,
    fix_for,
)
from open_clanker.channels.slack.events import (
    FILE_REF_PREFIX,
    SlackScope,
    addressed_without_memory,
    ignored_reason,
    inbound_from_event,
    needs_thread_memory,
    session_for,
)
from open_clanker.channels.slack.formatting import to_mrkdwn
from open_clanker.channels.slack.signature import signature_problem
from open_clanker.channels.slack.socket import SocketReceiver, SocketTiming, quiet_sdk_logs
from open_clanker.channels.slack.splitting import SLACK_LIMIT, split_for_slack, split_mrkdwn
from open_clanker.core.errors import ChannelError, ConfigError
from open_clanker.core.tasks import cancel_and_wait
from open_clanker.core.types import Attachment, ChannelType, SessionKey
from open_clanker.storage.outbox import OutboxItem

log = structlog.get_logger("open_clanker.slack")

# Does the bot already take part in this thread's session? Answered from storage, so the
# answer survives restarts and holds on every replica.
ThreadMemory = Callable[[SessionKey], Awaitable[bool]]
# Edits of a draft that is gone: post the final answer as a new message instead.
_DRAFT_GONE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})
MAX_FETCH_BYTES = 5 * 1024 * 1024  # vendors cap images at about 5 MB
SENDING_ONLY = "sending only: this replica does not receive Slack events"


@dataclass(frozen=True, slots=True)
class SlackTiming:
    socket: SocketTiming = field(default_factory=SocketTiming)
    probe_interval_s: float = 30.0  # auth.test when nothing else showed Slack is there
    start_wait_s: float = 15.0  # start_receiving waits this long for the first connect
    ack_deadline_s: float = 2.5  # Events API: answer before Slack's 3 s (it retries after)
    drain_s: float = 5.0  # stop_receiving waits this long for messages being stored
    http_timeout_s: int = 30


DEFAULT_TIMING = SlackTiming()


async def _never(_key: SessionKey) -> bool:
    return False


class SlackChannel:
    type = ChannelType.SLACK

    def __init__(
        self,
        config: SlackConfig,
        *,
        threads: ThreadMemory = _never,
        timing: SlackTiming | None = None,
    ) -> None:
        self._token = config.bot_token.get_secret_value()
        if not self._token:
            raise ConfigError(
                "channels.slack.bot_token: required when [channels.slack] is present "
                "(or set OPENCLAW_SLACK_BOT_TOKEN)."
            )
        self.config = config
        self.health = ChannelHealth()
        self.bot_username: str | None = None
        self.webhook_path = EVENTS_PATH if config.mode == "events" else ""
        self._secrets = (
            self._token,
            config.app_token.get_secret_value(),
            config.signing_secret.get_secret_value(),
        )
        self._threads = threads
        self._timing = timing or DEFAULT_TIMING
        self._scope: SlackScope | None = None
        self._http: aiohttp.ClientSession | None = None
        self._web: AsyncWebClient | None = None
        self._submit: Submit | None = None
        self._receiving = False
        self._receiver: SocketReceiver | None = None
        self._probe: asyncio.Task[None] | None = None
        self._lifecycle = asyncio.Lock()
        self._stops = 0  # stop_receiving calls: one during start() means "do not receive"
        self._requests: set[asyncio.Future[None]] = set()

    @property
    def exclusive_receiver(self) -> bool:
        """Socket Mode spreads events over every open connection: one replica must hold it.
        The Events API posts to the load balancer: every replica takes requests."""
        return self.config.mode == "socket"

    @property
    def receiver_name(self) -> str:
        """The lease's name: the Slack app whose Socket Mode connection it is."""
        app = self.config.app_token.get_secret_value() or self._token
        return "slack:" + hashlib.sha256(app.encode()).hexdigest()[:16]

    # -- outbound ---------------------------------------------------------------------------

    def split(self, text: str) -> list[str]:
        """Parts are rendered mrkdwn, so the 4,000-character limit holds for what is sent."""
        return split_for_slack(text)

    async def send(self, item: OutboxItem) -> None:
        web = self._client()
        try:
            if item.edit_message_id and await self._edit_final(web, item):
                self._contact()
                return
            await web.chat_postMessage(
                channel=item.channel_id, text=item.text, thread_ts=item.thread_id, link_names=False
            )
        except SlackApiError as exc:
            raise self._send_failed(exc) from None
        except TRANSPORT_ERRORS as exc:
            raise channel_error(exc, self._secrets) from None
        self._contact()

    async def _edit_final(self, web: AsyncWebClient, item: OutboxItem) -> bool:
        """Turn the streamed draft into the first part. False: the draft is gone (post anew)."""
        try:
            await web.chat_update(
                channel=item.channel_id, ts=str(item.edit_message_id), text=item.text
            )
        except SlackApiError as exc:
            if error_code(exc) in _DRAFT_GONE:
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
        """Show the reply so far (one message at most); the pipeline throttles the calls."""
        shown = to_mrkdwn(text)
        if len(shown) > SLACK_LIMIT:
            shown = split_mrkdwn(shown)[0]
        web = self._client()
        try:
            if message_id is None:
                sent = await web.chat_postMessage(
                    channel=chat_id, text=shown, thread_ts=thread_id, link_names=False
                )
                self._contact()
                return str(sent["ts"])
            await web.chat_update(channel=chat_id, ts=message_id, text=shown)
        except SlackApiError as exc:
            raise self._send_failed(exc) from None
        except TRANSPORT_ERRORS as exc:
            raise channel_error(exc, self._secrets) from None
        self._contact()
        return message_id

    def chat_id_problem(self, chat_id: str) -> str | None:
        if chat_id[:1] in ("C", "D", "G", "U", "W") and chat_id.isalnum() and chat_id.isupper():
            return None
        return (
            f"{chat_id!r} is not a Slack channel id: use the id (C…, D… or a user's U…), "
            "shown at the bottom of the channel's details, not its #name."
        )

    async def fetch_attachment(self, attachment: Attachment) -> Attachment | None:
        """Download a shared image for a vision model, with the bot token, as a `data:` URL.
        The token is sent only to Slack's file host (or to the configured API host)."""
        if not attachment.url.startswith(FILE_REF_PREFIX) or self._http is None:
            return None
        url = attachment.url[len(FILE_REF_PREFIX) :]
        host = urlsplit(url).hostname or ""
        if host not in ("files.slack.com", urlsplit(self.config.api_base_url).hostname):
            return None
        if attachment.size_bytes > MAX_FETCH_BYTES:
            return None
        try:
            headers = {"Authorization": f"Bearer {self._token}"}
            async with self._http.get(url, headers=headers, allow_redirects=False) as resp:
                if resp.status != 200:
                    return None
                data = await resp.content.read(MAX_FETCH_BYTES + 1)
        except TRANSPORT_ERRORS as exc:
            log.warning("slack_file_failed", error=describe(exc, self._secrets))
            return None
        if len(data) > MAX_FETCH_BYTES:
            return None
        encoded = base64.b64encode(data).decode("ascii")
        return attachment.model_copy(
            update={"url": f"data:{attachment.mime_type};base64,{encoded}"}
        )

    def _client(self) -> AsyncWebClient:
        if self._web is None:
            raise ChannelError("The Slack channel has not started yet.", "slack", retryable=True)
        return self._web

    def _send_failed(self, exc: SlackApiError) -> ChannelError:
        error = channel_error(exc, self._secrets)
        if error_code(exc) in AUTH_ERRORS:
            self.health.degrade(error.message)
            log.error("slack_auth_failed", error=error.message)
        return error

    def _contact(self) -> None:
        self.health.contact()
        self.health.receiving = self._receiving  # a standby's silence is no stall
        if not self._receiving:
            self.health.detail = SENDING_ONLY

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, submit: Submit, *, receive: bool = True) -> None:
        """Ready to send (bot identity from `auth.test`); then receive unless `receive` is
        false (another replica holds the Socket Mode connection)."""
        self._submit = submit
        stops = self._stops
        self.health.state = ChannelState.STARTING
        self.health.receiving = self._receiving
        quiet_sdk_logs()
        if self._http is None:
            self._http = aiohttp.ClientSession()
            self._web = AsyncWebClient(
                token=self._token,
                base_url=self.config.api_base_url.rstrip("/") + "/",
                session=self._http,
                timeout=self._timing.http_timeout_s,
                retry_handlers=[],  # the outbox retries, in order, with Retry-After
            )
        try:
            await self._identify()
        except SlackApiError as exc:
            self._identify_failed(exc)
        except TRANSPORT_ERRORS as exc:
            self.health.degrade(f"could not reach Slack ({describe(exc, self._secrets)})")
            log.warning("slack_start_failed", error=self.health.detail)
        if self._probe is None:
            self._probe = asyncio.create_task(self._keep_checking(), name="slack-probe")
        if receive and self._stops == stops:  # shutdown may have begun while we set up
            await self.start_receiving()

    async def start_receiving(self) -> None:
        """Take Slack events from now on (Socket Mode: connect). Calling it again is a no-op."""
        async with self._lifecycle:
            if self._receiving:
                return
            self._receiving = True
            self.health.receiving = True
            if self.health.detail == SENDING_ONLY:
                self.health.detail = ""
            if self.config.mode == "socket":
                self._receiver = SocketReceiver(
                    self.config.app_token.get_secret_value(),
                    self._socket_web,
                    self._ensure_identity,
                    self._intake,
                    self.health,
                    self._timing.socket,
                )
                await self._receiver.start(self._timing.start_wait_s)
            elif self._scope is not None:
                self.health.contact()
        log.info("slack_receiving_started", mode=self.config.mode)

    async def stop_receiving(self) -> None:
        """No new events: Socket Mode envelopes not yet acked are delivered again by Slack to
        whoever receives next, Events API requests get 503 (Slack retries). Messages being
        stored finish first (bounded); sending keeps working until `stop()`."""
        self._stops += 1
        async with self._lifecycle:
            if not self._receiving:
                return
            self._receiving = False
            self.health.receiving = False
            receiver, self._receiver = self._receiver, None
            if receiver is not None:
                await receiver.stop(self._timing.drain_s)
            if self._requests:
                await asyncio.wait(set(self._requests), timeout=self._timing.drain_s)
            self.health.detail = SENDING_ONLY
        log.info("slack_receiving_stopped", mode=self.config.mode)

    async def pause_receiving(self) -> None:
        """Another replica holds the Socket Mode lease: the same as `stop_receiving`, which
        `start_receiving` undoes."""
        await self.stop_receiving()

    async def stop(self) -> None:
        await self.stop_receiving()
        await cancel_and_wait(self._probe)
        self._probe = None
        if self._http is not None:
            await self._http.close()
        self._http, self._web = None, None
        self.health.state = ChannelState.STOPPED
        log.info("slack_stopped")

    def _socket_web(self) -> AsyncWebClient:
        """The Web API client the SDK's Socket Mode client calls apps.connections.open with."""
        return AsyncWebClient(
            base_url=self.config.api_base_url.rstrip("/") + "/",
            session=self._http,
            timeout=self._timing.http_timeout_s,
            retry_handlers=[],
        )

    async def _identify(self) -> None:
        me = await self._client().auth_test()
        first = self._scope is None
        self._scope = SlackScope(
            bot_user_id=str(me.get("user_id") or ""),
            bot_id=str(me.get("bot_id") or ""),
            require_mention=self.config.require_mention,
        )
        self.bot_username = str(me.get("user") or "") or None
        self._contact()
        if first:
            log.info("slack_identified", bot=self.bot_username, team=me.get("team"))

    def reconfigure(self, config: SlackConfig) -> None:
        """A reload's mention rule (gateway/reload.py; allowed channels are the pipeline's)."""
        self.config = config
        if self._scope is not None:
            self._scope = replace(self._scope, require_mention=config.require_mention)

    async def _ensure_identity(self) -> None:
        if self._scope is None:
            await self._identify()

    def _identify_failed(self, exc: SlackApiError) -> None:
        code = error_code(exc)
        detail = fix_for(code, "bot") if code in AUTH_ERRORS else f"Slack failed ({code})"
        self.health.degrade(detail)
        (log.error if code in AUTH_ERRORS else log.warning)("slack_start_failed", error=detail)

    async def _keep_checking(self) -> None:
        """`auth.test` whenever nothing else showed that Slack is there: Events API mode and
        send-only replicas get no traffic while the workspace is quiet. Socket Mode's own
        watchdog covers a receiving connection."""
        t = self._timing
        delay = t.probe_interval_s if self._scope is not None else t.socket.backoff_min_s
        while True:
            await asyncio.sleep(delay)
            if self._receiver is not None:
                continue
            last = self.health.last_contact
            healthy = self.health.state is ChannelState.CONNECTED
            if healthy and last is not None and time.time() - last < t.probe_interval_s:
                continue
            try:
                await self._identify()
                delay = t.probe_interval_s
            except SlackApiError as exc:
                self._identify_failed(exc)
                delay = min(delay * 2, t.probe_interval_s)  # one line per try, backing off
            except TRANSPORT_ERRORS as exc:
                self.health.degrade(f"could not reach Slack ({describe(exc, self._secrets)})")
                delay = min(delay * 2, t.probe_interval_s)

    # -- inbound ----------------------------------------------------------------------------

    async def _intake(self, payload: dict[str, Any]) -> None:
        """One `event_callback`: submit it if it is for us. Returns once it is stored."""
        scope, submit = self._scope, self._submit
        if scope is None or submit is None:
            raise ChannelError("The Slack channel is not ready yet.", "slack")
        event = payload.get("event")
        reason = ignored_reason(event, scope)
        if reason is not None:
            # Our own replies and their edits come back as events: not worth a line each.
            quiet = reason == "from a bot" or reason.startswith("subtype")
            (log.debug if quiet else log.info)(
                "slack_event_ignored", reason=reason, event_id=payload.get("event_id")
            )
            return
        assert isinstance(event, dict)
        addressed = addressed_without_memory(event, scope)
        if not addressed and needs_thread_memory(event, scope):
            addressed = await self._threads(session_for(event))
        if not addressed:
            return  # channel chatter: nothing to store, nothing to answer
        await submit(inbound_from_event(event, scope))

    async def handle_webhook_request(
        self, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, object] | None]:
        """One Events API request -> (HTTP status, JSON body). 401 unsigned or stale, 400 bad
        JSON, 503 not ready or shutting down (Slack retries), 200 once the message is stored."""
        problem = signature_problem(
            self.config.signing_secret.get_secret_value(),
            headers.get("x-slack-request-timestamp"),
            headers.get("x-slack-signature"),
            body,
            time.time(),
        )
        if problem is not None:
            log.warning("slack_events_refused", reason=problem)
            return 401, None
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            log.warning("slack_events_bad_body", size=len(body))
            return 400, None
        kind = data.get("type")
        if kind == "url_verification":
            return 200, {"challenge": str(data.get("challenge", ""))}
        if kind != "event_callback":
            log.info("slack_events_other", type=str(kind))
            return 200, None
        if not self._receiving or self._scope is None:
            return 503, None
        self._contact()
        retry = headers.get("x-slack-retry-num")
        if retry:
            log.info(
                "slack_event_redelivered",
                attempt=retry,
                reason=headers.get("x-slack-retry-reason", ""),
            )
        return await self._intake_in_time(data), None

    async def _intake_in_time(self, data: dict[str, Any]) -> int:
        """Store within Slack's 3 s, or answer 503 and let the storing finish: Slack's retry
        then finds the message stored and is answered once."""
        task = asyncio.ensure_future(self._logged_intake(data))
        self._requests.add(task)
        task.add_done_callback(self._request_done)
        try:
            await asyncio.wait_for(asyncio.shield(task), self._timing.ack_deadline_s)
        except TimeoutError:
            log.warning("slack_intake_slow", deadline_s=self._timing.ack_deadline_s)
            return 503
        except Exception:  # not confirmed: Slack delivers it again
            return 500
        return 200

    async def _logged_intake(self, data: dict[str, Any]) -> None:
        try:
            await self._intake(data)
        except Exception as exc:
            log.error("slack_intake_failed", error=repr(exc))
            raise

    def _request_done(self, task: asyncio.Future[None]) -> None:
        self._requests.discard(task)
        if not task.cancelled():
            task.exception()  # logged by _logged_intake; a late failure must not warn again

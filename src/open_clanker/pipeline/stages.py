"""The pipeline's stages (SPEC §2), each a small callable `await stage(turn)`.

A stage either enriches the turn or ends it (`turn.end(...)`); the pipeline stops at the first
ending. Stages get their collaborators through their constructors and never reach for globals.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from open_clanker.agent.base import ProviderRequest, StreamDone, StreamReset, TextDelta
from open_clanker.agent.chain import ProviderChain
from open_clanker.channels.base import (
    Channels,
    SupportsAttachments,
    SupportsDrafts,
    SupportsTyping,
)
from open_clanker.core.client_context import Sampling, capped_max_tokens, model_turns
from open_clanker.core.errors import MessageTooLongError, ProviderError, RateLimitError
from open_clanker.core.tasks import cancel_and_wait
from open_clanker.core.types import AgentResponse, ChatTurn, Message, Role
from open_clanker.pipeline.access import (
    Access,
    AccessFacts,
    StaticAllowList,
    decide_access,
)
from open_clanker.pipeline.bus import EventBus
from open_clanker.pipeline.commands import (
    HELP_TEXT,
    NEW_TEXT,
    NOTHING_TO_STOP_TEXT,
    START_TEXT,
    STOPPED_TEXT,
    Command,
    parse_command,
)
from open_clanker.pipeline.context import Ending, ReplySink, Turn
from open_clanker.pipeline.context_windows import ContextWindows
from open_clanker.pipeline.drafts import DraftSink
from open_clanker.pipeline.history import (
    RATIO_BOUNDS,
    Measured,
    estimate_request,
    fit_history,
)
from open_clanker.pipeline.overflow import OVERFLOW_TEXT, ask_within_context
from open_clanker.pipeline.ratelimit import RateLimiter
from open_clanker.pipeline.stopping import STOPPED, Stopper
from open_clanker.storage.messages import Status
from open_clanker.storage.reply_usage import ReplyUsage
from open_clanker.storage.store import Store

log = structlog.get_logger("open_clanker.pipeline")

TYPING_REFRESH_S = 4.0
PROVIDER_FAILED_TEXT = (
    "Sorry, I could not reach the AI model just now. Please try again in a moment."
)
# The provider's count of the last request is read from the newest of these replies that has
# it (a reply stored before this was recorded, or by an echo provider, has none).
MEASURED_REPLIES = 3


class Stage(Protocol):
    async def __call__(self, turn: Turn) -> None: ...


class Dedupe:
    """Step 2: a platform message seen before is processed once (the claim is atomic later)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def __call__(self, turn: Turn) -> None:
        pid = turn.inbound.platform_id
        if pid is not None and await self._store.messages.seen(turn.message.channel_type, pid):
            log.info("duplicate_dropped", platform_id=pid)
            turn.end(Ending.DUPLICATE)


class AccessCheck:
    """Step 3: allowlist / pairing / open, and groups only when addressed."""

    def __init__(self, policy: str, allow: StaticAllowList, store: Store) -> None:
        self._policy = policy
        self._allow = allow
        self._store = store

    async def __call__(self, turn: Turn) -> None:
        msg, inbound = turn.message, turn.inbound
        channel = msg.channel_type.value
        sender_allowed = f"{channel}:{msg.sender}" in self._allow
        chat_allowed = f"{channel}:{msg.channel_id}" in self._allow or (
            inbound.parent_id is not None and f"{channel}:{inbound.parent_id}" in self._allow
        )
        # Pairing opens direct chats only (a group needs the group allowed): no lookup there.
        if inbound.is_direct and not sender_allowed and not chat_allowed and self._policy != "open":
            sender_allowed = await self._store.access.is_allowed(channel, msg.sender)
        facts = AccessFacts(
            msg.channel_type, inbound.is_direct, inbound.addressed, sender_allowed, chat_allowed
        )
        decision = decide_access(self._policy, facts)
        if decision is Access.ALLOW:
            return
        if decision is Access.IGNORE:
            log.info("message_ignored", sender=msg.sender, direct=inbound.is_direct)
            turn.end(Ending.IGNORED)
            return
        # The code itself is issued only by the replica that wins this message's claim.
        turn.end(Ending.PAIRING)


class Limits:
    """Step 4: maximum size and per-sender rate; one refusal notice per window."""

    def __init__(self, limiter: RateLimiter, max_chars: int) -> None:
        self._limiter = limiter
        self._max_chars = max_chars

    @property
    def limiter(self) -> RateLimiter:
        """Handed to the stage a reload builds, so senders' counts carry over."""
        return self._limiter

    async def __call__(self, turn: Turn) -> None:
        msg = turn.message
        if len(msg.text) > self._max_chars:
            error = MessageTooLongError(
                f"Your message is {len(msg.text)} characters long; the limit is "
                f"{self._max_chars}. Please send something shorter."
            )
            turn.end(Ending.REFUSED, error=error, notice=error.message)
            return
        # The APIs' rate limit counts per session; chat platforms count per sender.
        key = (
            f"session:{msg.session}"
            if msg.channel_type.value in ("api", "openai")
            else (f"{msg.channel_type.value}:{msg.sender}")
        )
        decision = await self._limiter.check(key)
        if not decision.allowed:
            limited = RateLimitError(
                "You are sending messages faster than I can answer. "
                f"Please wait {decision.retry_after:.0f} seconds.",
                retry_after=decision.retry_after,
            )
            log.info("rate_limited", key=key, retry_after=round(decision.retry_after, 1))
            notice = limited.message if decision.notify else None
            turn.end(Ending.REFUSED, error=limited, notice=notice)


class StoreInbound:
    """Step 5: the message is stored (and its platform id claimed) before any model call and
    before it waits for its session; this replica claims it, and takes the session's turn in
    the same transaction when nothing is ahead of it."""

    def __init__(self, store: Store, bus: EventBus) -> None:
        self._store = store
        self._bus = bus

    async def __call__(self, turn: Turn) -> None:
        msg = turn.message
        accepted = await self._store.messages.accept(
            msg, turn.inbound.platform_id, turn.context_json(), Status.PENDING, turn.claim
        )
        if not accepted.stored:
            log.info("duplicate_dropped", platform_id=turn.inbound.platform_id, race=True)
            turn.end(Ending.DUPLICATE)
            return
        turn.seq, turn.has_turn, turn.version = accepted.seq, accepted.has_turn, accepted.version
        # Debug: the turn's `reply_stored` is the message's one line at info.
        log.debug("message_accepted", session=msg.session, chars=len(msg.text))
        await self._bus.publish(msg)


@dataclass(frozen=True, slots=True)
class StatusFacts:
    provider: str
    model: str


class SessionStage:
    """Step 6: slash commands, then the session's history trimmed to both budgets
    (pipeline/history.py)."""

    def __init__(
        self,
        store: Store,
        history_messages: int,
        status: Callable[[], StatusFacts],
        bot_username: Callable[[str], str | None],
        *,
        history_tokens: int = 24_000,
        system_prompt: str = "",
        windows: ContextWindows | None = None,
    ) -> None:
        self._store = store
        self._history_messages = history_messages
        self._history_tokens = history_tokens
        self._system_prompt = system_prompt
        self._status = status
        self._bot_username = bot_username
        self._usage = ReplyUsage(store.db)
        self._windows = windows or ContextWindows()

    async def __call__(self, turn: Turn) -> None:
        msg = turn.message
        command = parse_command(msg.text, self._bot_username(msg.channel_type.value))
        if command is not None:
            turn.end(Ending.COMMAND, notice=await self._answer(command, turn))
            return
        client = turn.inbound.client
        if client is not None and client.history is not None:
            turn.history = [msg]  # a stateless API client sent the whole context itself
            return
        # The session's earlier exchanges (every one is finished: turns run in order), then
        # this message.
        earlier = await self._store.messages.history(
            msg.session, self._history_messages - 1, turn.version
        )
        offered = [*earlier, msg]
        budget = self._windows.budget(self._status().provider, self._history_tokens)
        measured = None
        # The provider's count matters only when some ratio could make this not fit.
        if estimate_request(self._system_prompt, offered) * RATIO_BOUNDS[1] > budget:
            replies = [m.id for m in earlier if m.role is Role.ASSISTANT][-MEASURED_REPLIES:]
            found = await self._usage.latest_measured(replies)
            measured = Measured(*found) if found else None
        context = fit_history(
            offered, self._system_prompt, self._history_messages, budget, measured
        )
        turn.history = context.messages
        if context.dropped:
            log.info(
                "history_trimmed",
                messages=len(context.messages),
                dropped=context.dropped,
                tokens=context.tokens,
                ratio=round(context.ratio, 3),
            )

    async def _answer(self, command: Command, turn: Turn) -> str:
        if command is Command.NEW:
            await self._store.messages.reset_session(turn.message.session)
            return NEW_TEXT
        if command is Command.STATUS:
            facts = self._status()
            history = await self._store.messages.history(turn.message.session, 10_000)
            return (
                f"Model: {facts.provider} / {facts.model}. "
                f"This conversation has {len(history)} messages; the model is sent the newest "
                f"{self._history_messages} of them, up to about {self._history_tokens:,} "
                "tokens (older ones are left out first)."
            )
        if command is Command.START:
            return START_TEXT
        if command is Command.STOP:  # the stop itself ran before the session lock (stopping.py)
            return STOPPED_TEXT if turn.stopped else NOTHING_TO_STOP_TEXT
        return HELP_TEXT


class ModelCall:
    """Step 7: the provider chain (retries, fallbacks), streamed to the sink when there is one."""

    def __init__(
        self,
        chain: ProviderChain,
        channels: Channels,
        system_prompt: str,
        max_tokens: int,
        stream: bool,
        stopper: Stopper | None = None,
        windows: ContextWindows | None = None,
    ) -> None:
        self._chain = chain
        self._channels = channels
        self._system_prompt = system_prompt
        self._max_tokens = max_tokens
        self._stream = stream
        self._stopper = stopper or Stopper()
        self._windows = windows or ContextWindows()

    async def __call__(self, turn: Turn) -> None:
        history = turn.history or [turn.message]
        client = turn.inbound.client  # an API client's own context (images already read)
        newest = ChatTurn(history[-1].role, history[-1].text, history[-1].metadata.attachments)
        if client is None and newest.attachments:
            newest = await self._resolve_attachments(turn, newest)
        system = self._system_prompt
        if client is not None and client.system_prompt is not None:
            system = client.system_prompt
        max_tokens = capped_max_tokens(client, self._max_tokens)
        sampling = client.sampling if client else Sampling()
        started = time.perf_counter()
        drafts = self._draft_sink(turn)
        sink = drafts if drafts is not None else turn.sink if self._stream else None
        typing = self._start_typing(turn)

        async def ask(sent: list[Message], sink: ReplySink | None) -> AgentResponse:
            turns = [ChatTurn(m.role, m.text, m.metadata.attachments) for m in sent[:-1]]
            turns.append(newest)
            if client is not None:
                turns = model_turns(client, turns)
            request = ProviderRequest(
                system_prompt=system,
                turns=tuple(turns),
                max_tokens=max_tokens,
                sampling=sampling,
            )
            return await (self._streamed(request, sink) if sink else self._chain.complete(request))

        def sent(tokens: int) -> None:
            turn.sent_tokens = tokens

        async def call(sink: ReplySink | None) -> AgentResponse:
            # After a "context too long", once more with less history (overflow.py).
            return await ask_within_context(
                history, system, lambda h: ask(h, sink), self._windows, sent
            )

        try:
            # /stop ends the call early and keeps what was streamed (stopping.py).
            response = await self._stopper.run(turn.message.session, call, sink, self._stopped)
        except ProviderError as exc:
            log.warning(
                "provider_failed", provider=exc.provider, status=exc.status_code, error=exc.message
            )
            if exc.context_overflow is not None:  # the reply (and API error) names /new
                exc = ProviderError(
                    OVERFLOW_TEXT,
                    exc.provider,
                    status_code=exc.status_code,
                    context_overflow=exc.context_overflow,
                )
            notice = OVERFLOW_TEXT if exc.context_overflow else PROVIDER_FAILED_TEXT
            turn.end(Ending.FAILED, error=exc, notice=notice)
            return
        finally:
            await cancel_and_wait(typing)
            if drafts is not None:
                turn.draft_id = drafts.message_id  # the reply's first part edits the draft
        latency = (time.perf_counter() - started) * 1000
        turn.response = response.model_copy(update={"latency_ms": round(latency, 3)})

    def _stopped(self, text: str) -> AgentResponse:
        primary = self._chain.primary
        return AgentResponse(
            content=text, model=primary.model, provider=primary.name, finish_reason=STOPPED
        )

    async def _resolve_attachments(self, turn: Turn, chat_turn: ChatTurn) -> ChatTurn:
        """Images of the newest message, fetched from the platform so the model can see them.
        Older turns keep their references (described as notes), so history costs no downloads."""
        channel = self._channels.get(turn.message.channel_type)
        if channel is None or not isinstance(channel, SupportsAttachments):
            return chat_turn
        resolved = []
        for att in chat_turn.attachments:
            if att.mime_type.startswith("image/") and not att.url.startswith(
                ("https://", "http://", "data:")
            ):
                fetched = await channel.fetch_attachment(att)
                resolved.append(fetched or att)
            else:
                resolved.append(att)
        return ChatTurn(chat_turn.role, chat_turn.text, tuple(resolved))

    def _draft_sink(self, turn: Turn) -> DraftSink | None:
        if turn.sink is not None or not self._stream:
            return None
        channel = self._channels.get(turn.message.channel_type)
        if channel is None or not isinstance(channel, SupportsDrafts):
            return None
        return DraftSink(
            channel, turn.message.channel_id, turn.inbound.thread_id, turn.inbound.reply_target
        )

    async def _streamed(self, request: ProviderRequest, sink: ReplySink) -> AgentResponse:
        shown = False
        try:
            async for event in self._chain.stream(request):
                if isinstance(event, TextDelta):
                    await sink.delta(event.text)
                    shown = True
                elif isinstance(event, StreamReset):
                    await sink.reset()
                elif isinstance(event, StreamDone):
                    return event.response
        except ProviderError as exc:
            if shown and exc.context_overflow is not None:
                await sink.reset()  # a shorter context is asked next: its answer starts over
            raise
        raise ProviderError("The model's stream ended without an answer.", self._chain.primary.name)

    def _start_typing(self, turn: Turn) -> asyncio.Task[None] | None:
        channel = self._channels.get(turn.message.channel_type)
        if channel is None or turn.sink is not None or not isinstance(channel, SupportsTyping):
            return None
        chat_id, thread_id = turn.message.channel_id, turn.inbound.thread_id

        async def keep_typing() -> None:
            while True:
                with contextlib.suppress(Exception):  # typing is cosmetic; never fail a reply
                    await channel.typing(chat_id, thread_id)
                await asyncio.sleep(TYPING_REFRESH_S)

        return asyncio.create_task(keep_typing())


def reply_message(turn: Turn, text: str) -> Message:
    msg = turn.message
    return Message(
        channel_type=msg.channel_type,
        channel_id=msg.channel_id,
        sender="assistant",
        role=Role.ASSISTANT,
        text=text,
        session=msg.session,
    )

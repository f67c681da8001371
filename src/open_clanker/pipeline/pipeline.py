"""The pipeline: run the stages in order, then store and deliver what the turn produced."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import structlog

from open_clanker.channels.base import Channels
from open_clanker.core.client_context import client_from_json
from open_clanker.core.types import ChannelType, Inbound
from open_clanker.pipeline.bus import EventBus
from open_clanker.pipeline.context import Ending, ReplySink, Turn
from open_clanker.pipeline.stages import Stage, reply_message
from open_clanker.storage.messages import Status
from open_clanker.storage.outbox import outbox_rows
from open_clanker.storage.store import Store

log = structlog.get_logger("open_clanker.pipeline")


class Pipeline:
    def __init__(
        self,
        stages: Sequence[Stage],
        store: Store,
        bus: EventBus,
        channels: Channels,
        wake_outbox: Callable[[], None],
        recovery_max_age_s: float,
        observe: Callable[[Turn, float], None] = lambda _turn, _seconds: None,
    ) -> None:
        self.stages = list(stages)
        self._store = store
        self._bus = bus
        self._channels = channels
        self._wake_outbox = wake_outbox
        self._recovery_max_age_s = recovery_max_age_s
        self.observe = observe  # metrics hook, called once per finished turn
        self._session_locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._tasks: set[asyncio.Task[Turn]] = set()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.accepting = True

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def handle(
        self, inbound: Inbound, sink: ReplySink | None = None, *, recovered: bool = False
    ) -> Turn:
        """Take one message all the way; returns the finished turn."""
        self._enter()
        try:
            return await self._process(inbound, sink, recovered)
        finally:
            self._leave()

    async def _process(self, inbound: Inbound, sink: ReplySink | None, recovered: bool) -> Turn:
        turn = Turn(inbound=inbound, sink=sink, recovered=recovered)
        started = time.perf_counter()
        with structlog.contextvars.bound_contextvars(
            request_id=inbound.request_id,
            message_id=inbound.message.id,
            channel=inbound.message.channel_type.value,
        ):
            async with self._session_lock(inbound.message.session):
                for stage in self.stages:
                    if recovered and not stage.runs_on_recovery:
                        continue
                    await stage(turn)
                    if turn.ending is not None:
                        break
                else:
                    turn.ending = Ending.ANSWERED
                await self._finish(turn)
        self.observe(turn, time.perf_counter() - started)
        return turn

    def _enter(self) -> None:
        self._in_flight += 1
        self._idle.clear()

    def _leave(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    async def submit(self, inbound: Inbound) -> None:
        """For push channels: process in the background; returns at once."""
        self._enter()  # counted from now, so a drain waits for tasks that have not started yet
        task = asyncio.create_task(self._handle_submitted(inbound))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    async def _handle_submitted(self, inbound: Inbound) -> Turn:
        try:
            return await self._process(inbound, None, False)
        finally:
            self._leave()

    def _task_done(self, task: asyncio.Task[Turn]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("pipeline_crashed", error=repr(task.exception()))

    async def drain(self, timeout_s: float) -> bool:
        """Stop accepting and wait for in-flight messages (SIGTERM). True if all finished in
        time; calling it again waits again (returns at once when idle)."""
        self.accepting = False
        if self._idle.is_set():
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def _session_lock(self, key: str) -> _SessionLock:
        return _SessionLock(self._session_locks, key)

    async def _finish(self, turn: Turn) -> None:
        ending = turn.ending
        if ending in (Ending.DUPLICATE, Ending.IGNORED, Ending.EXPIRED):
            if ending is Ending.IGNORED and turn.inbound.platform_id:
                await self._store.messages.mark_processed(
                    turn.message.channel_type, turn.inbound.platform_id
                )
            return
        if ending in (Ending.PAIRING, Ending.REFUSED):
            # Not part of any conversation: remember the platform id, send the notice.
            if turn.inbound.platform_id:
                await self._store.messages.mark_processed(
                    turn.message.channel_type, turn.inbound.platform_id
                )
            if turn.notice:
                await self._enqueue_notice(turn, turn.notice)
            return
        if ending is Ending.ANSWERED:
            assert turn.response is not None
            reply = reply_message(turn, turn.response.content)
            status, answered = Status.REPLY, Status.ANSWERED
        else:  # COMMAND or FAILED: a short gateway answer, kept out of the model's context
            reply = reply_message(turn, turn.notice or "")
            status, answered = Status.NOTICE, Status.FAILED
        turn.reply = reply
        rows = self._outbox_rows(turn, reply.id, reply.text)
        await self._store.messages.store_reply(
            reply,
            turn.response,
            rows,
            status=status,
            answers=turn.message if ending is not Ending.COMMAND else None,
            answers_status=answered,
        )
        if rows:
            self._wake_outbox()
        log.info(
            "reply_stored",
            ending=ending.value if ending else None,
            parts=len(rows),
            provider=turn.response.provider if turn.response else None,
        )
        await self._bus.publish(reply)

    def _outbox_rows(self, turn: Turn, message_id: str, text: str) -> list[dict[str, object]]:
        channel = self._channels.get(turn.message.channel_type)
        if channel is None or not text:
            return []  # API / web chat: the answer goes back in the response itself
        return outbox_rows(
            message_id,
            turn.message.channel_type.value,
            turn.message.channel_id,
            channel.split(text),
            thread_id=turn.inbound.thread_id,
            reply_to=turn.inbound.reply_target,
            edit_first=turn.draft_id,
            request_id=turn.inbound.request_id,
        )

    async def _enqueue_notice(self, turn: Turn, text: str) -> None:
        rows = self._outbox_rows(turn, f"notice-{turn.message.id}", text)
        if rows:
            await self._store.outbox.enqueue(rows)
            self._wake_outbox()

    async def recover(self) -> tuple[int, int]:
        """Answer what was accepted but not answered before a restart. Returns (resumed, expired).

        Stops early when shutdown begins: what is left stays pending for the next start."""
        resumed = expired = 0
        now = time.time()
        for pending in await self._store.messages.pending():
            if not self.accepting:
                break
            msg, ctx = pending.message, pending.context
            age = now - msg.timestamp.timestamp()
            if age > self._recovery_max_age_s:
                await self._store.messages.set_status(msg.id, Status.EXPIRED)
                log.warning("pending_expired", message_id=msg.id, age_s=round(age))
                expired += 1
                continue
            pushed = msg.channel_type not in (
                ChannelType.API,
                ChannelType.OPENAI,
                ChannelType.WEBCHAT,
            )
            if pushed and self._channels.get(msg.channel_type) is None:
                log.warning("pending_channel_disabled", message_id=msg.id)
                continue
            inbound = Inbound(
                message=msg,
                platform_id=ctx.get("platform_id"),
                is_direct=bool(ctx.get("is_direct", True)),
                addressed=bool(ctx.get("addressed", True)),
                reply_target=ctx.get("reply_target"),
                thread_id=ctx.get("thread_id"),
                request_id=str(ctx.get("request_id") or msg.id),
                client=client_from_json(ctx.get("client")),
            )
            log.info("pending_resumed", message_id=msg.id, age_s=round(age))
            await self.handle(inbound, recovered=True)
            resumed += 1
        return resumed, expired


class _SessionLock:
    """One turn at a time per session, so history and replies never interleave.
    Locks are reference-counted and dropped when unused (bounded memory)."""

    def __init__(self, locks: dict[str, tuple[asyncio.Lock, int]], key: str) -> None:
        self._locks = locks
        self._key = key

    async def __aenter__(self) -> None:
        lock, users = self._locks.get(self._key) or (asyncio.Lock(), 0)
        self._locks[self._key] = (lock, users + 1)
        await lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        lock, users = self._locks[self._key]
        lock.release()
        if users <= 1:
            del self._locks[self._key]
        else:
            self._locks[self._key] = (lock, users - 1)

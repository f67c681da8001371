"""The pipeline: intake (stored before anything waits), then the session's turn, in order.

Intake — dedupe, access, limits, store — runs as soon as a message arrives and ends with the
message stored and claimed by this replica. The turn — session commands and history, the
model call, the reply stored — runs once the message is its session's oldest pending one and
this replica holds the session (`SessionGate`), across all replicas. The reply's transaction
also settles the message and ends the turn, fenced by the claim: a turn whose claim lapsed
while it ran (this replica stalled, another took over) stores nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError

from open_clanker.channels.base import Channels
from open_clanker.core import tracing
from open_clanker.core.types import Inbound, SessionKey
from open_clanker.pipeline.access import PairingDesk, pairing_text
from open_clanker.pipeline.bus import EventBus
from open_clanker.pipeline.context import Ending, ReplySink, Turn
from open_clanker.pipeline.replica import Replica
from open_clanker.pipeline.session_gate import SessionGate
from open_clanker.pipeline.stages import Stage, reply_message
from open_clanker.pipeline.stopping import Stopper
from open_clanker.storage.messages import Status
from open_clanker.storage.outbox import outbox_rows
from open_clanker.storage.reply_usage import reply_context
from open_clanker.storage.store import Store

log = structlog.get_logger("open_clanker.pipeline")

OUTBOX = "outbox"  # the notice that wakes every replica's outbox worker
STOP = "stop"  # the notice that stops a session's answer on whichever replica runs it


class Pipeline:
    def __init__(
        self,
        intake: Sequence[Stage],
        turn: Sequence[Stage],
        store: Store,
        bus: EventBus,
        channels: Channels,
        replica: Replica,
        desk: PairingDesk,
        observe: Callable[[Turn, float], None] = lambda _turn, _seconds: None,
        stopper: Stopper | None = None,
    ) -> None:
        self.intake = list(intake)
        self.turn_stages = list(turn)
        self._store = store
        self._bus = bus
        self._channels = channels
        self.replica = replica
        self._desk = desk
        self._gate = SessionGate(store.claims, bus)
        self.stopper = stopper or Stopper()  # /stop: running answers by session (stopping.py)
        bus.on_notice(self._on_notice)
        self.observe = observe  # metrics hook, called once per finished turn
        self._tasks: set[asyncio.Task[Turn]] = set()
        self._handling: set[asyncio.Task[Any]] = set()  # tasks inside `handle`
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.accepting = True

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def replace_stages(self, intake: Sequence[Stage], turn: Sequence[Stage]) -> None:
        """A reload's new stages (gateway/reload.py). A message already in a stage list keeps
        iterating the old list, so turns under way finish on the settings they started with."""
        self.intake, self.turn_stages = list(intake), list(turn)

    # -- the three ways in --------------------------------------------------------------------

    async def handle(self, inbound: Inbound, sink: ReplySink | None = None) -> Turn:
        """Take one message all the way (HTTP, WebSocket); returns the finished turn."""
        self._enter()
        me = asyncio.current_task()
        if me is not None:
            self._handling.add(me)  # so that a shutdown past its drain can cut it short
        try:
            turn = Turn(inbound=inbound, sink=sink)
            with self._bound(inbound):
                if await self._take_in(turn):
                    await self._run_turn(turn)
            return turn
        finally:
            self._handling.discard(me)
            self._leave()

    async def submit(self, inbound: Inbound) -> None:
        """For platform channels: returns once the message is stored (or refused), so the
        platform's update is confirmed only then; the turn runs in the background. A storage
        failure propagates: the adapter must not confirm the update."""
        self._enter()  # counted from now, so a drain waits for turns not started yet
        started = False
        try:
            turn = Turn(inbound=inbound)
            with self._bound(inbound):
                if await self._take_in(turn):
                    self._spawn(self._turn_task(turn))
                    started = True
        finally:
            if not started:
                self._leave()

    def resume(self, inbound: Inbound, seq: int) -> None:
        """Answer a message this replica just claimed from a replica that died (or from the
        previous run): the turn runs in the background, in its session's order."""
        self._enter()
        turn = Turn(
            inbound=inbound,
            recovered=True,
            claim=self.replica.claim(),
            seq=seq,
        )
        self._spawn(self._turn_task(turn))

    # -- intake -------------------------------------------------------------------------------

    async def _take_in(self, turn: Turn) -> bool:
        """Run intake; True when the message is stored and its turn should run."""
        turn.claim = self.replica.claim()
        for stage in self.intake:
            await stage(turn)
            if turn.ending is not None:
                await self._refused(turn)
                self.observe(turn, 0.0)  # metrics: refusals and duplicates count too
                return False
        if self.stopper.is_stop(turn):
            # Now, not in its turn: it would wait behind the very answer it stops. Its own
            # turn then answers "stopped" (or "nothing to stop") in order.
            turn.stopped = await self.stop(turn.message.session)
        return True

    async def stop(self, key: SessionKey) -> bool:
        """End the session's running answer, here or on the replica running it. False when
        nothing was running."""
        if self.stopper.stop(key):
            return True
        holder = await self._store.claims.session_holder(key)
        if holder is None or holder == self.replica.id:
            return False
        await self._bus.notify(STOP, key)
        return True

    def _on_notice(self, kind: str, key: str) -> None:
        if kind == STOP:
            self.stopper.stop(key)

    async def _refused(self, turn: Turn) -> None:
        """Endings before storage. A notice (a refusal, a pairing code) goes out only from
        the replica that won the platform id's claim, so it is sent once."""
        ending, pid = turn.ending, turn.inbound.platform_id
        if ending in (Ending.DUPLICATE, Ending.EXPIRED, Ending.SUPERSEDED):
            return
        if pid is not None and not await self._store.messages.mark_processed(
            turn.message.channel_type, pid
        ):
            log.info("duplicate_dropped", platform_id=pid, race=True)
            turn.end(Ending.DUPLICATE, notice=None)
            return
        if ending is Ending.PAIRING:
            msg = turn.message
            code = await self._desk.code_for(msg.channel_type, msg.sender, msg.channel_id)
            log.info("pairing_requested", sender=msg.sender, code_sent=code is not None)
            turn.notice = pairing_text(code) if code else None
        if ending in (Ending.PAIRING, Ending.REFUSED) and turn.notice:
            await self._enqueue_notice(turn, turn.notice)

    # -- the turn -----------------------------------------------------------------------------

    async def _turn_task(self, turn: Turn) -> Turn:
        try:
            with self._bound(turn.inbound):
                await self._run_turn(turn)
            return turn
        finally:
            self._leave()

    async def _run_turn(self, turn: Turn) -> None:
        assert turn.claim is not None
        key = turn.message.session
        started = time.perf_counter()
        if not turn.has_turn:
            turn.version = await self._gate.wait_turn(key, turn.claim, turn.seq)
            turn.has_turn = True
        try:
            for stage in self.turn_stages:
                await stage(turn)
                if turn.ending is not None:
                    break
            else:
                turn.ending = Ending.ANSWERED
            await self._finish(turn)
        except (SQLAlchemyError, OSError, asyncio.CancelledError) as exc:
            # Storage failed, or shutdown cut the turn short: the message stays pending; the
            # sweep (here or on another replica) answers it.
            if not isinstance(exc, asyncio.CancelledError):
                log.exception("turn_storage_failed")
            await self._let_go(turn, give_back=True)
            raise
        except Exception:
            log.exception("turn_crashed")
            await self._let_go(turn, give_back=False)
            raise
        finally:
            await self._gate.freed(key)
        self.observe(turn, time.perf_counter() - started)

    async def _let_go(self, turn: Turn, *, give_back: bool) -> None:
        """A turn that ended without its reply transaction: free its session for the next
        turn and (on storage trouble) its message for the sweep. Best effort: if storage is
        down, both claims simply lapse."""
        assert turn.claim is not None
        if not turn.has_turn:
            return
        try:
            await self._store.claims.release_session(turn.message.session, turn.claim)
            if give_back:
                await self._store.claims.give_back(turn.message.id, turn.claim.owner)
            else:
                await self._store.messages.set_status(turn.message.id, Status.FAILED)
        except (SQLAlchemyError, OSError):
            log.warning("turn_release_failed")

    async def _finish(self, turn: Turn) -> None:
        ending = turn.ending
        if ending is Ending.ANSWERED:
            assert turn.response is not None
            reply = reply_message(turn, turn.response.content)
            status, answered = Status.REPLY, Status.ANSWERED
        elif ending is Ending.COMMAND:
            reply = reply_message(turn, turn.notice or "")
            status, answered = Status.NOTICE, Status.COMMAND
        else:  # FAILED: a short gateway answer, kept out of the model's context
            reply = reply_message(turn, turn.notice or "")
            status, answered = Status.NOTICE, Status.FAILED
        rows = self._outbox_rows(turn, reply.id, reply.text)
        stored = await self._store.messages.store_reply(
            reply,
            turn.response,
            rows,
            status=status,
            answers=turn.message,
            answers_status=answered,
            turn=turn.claim,
            context=reply_context(turn.sent_tokens) if turn.sent_tokens else None,
            # A stateless API client's conversation was kept only for recovery.
            answered_context=turn.context_json(keep_client=False)
            if turn.inbound.client is not None
            else None,
            answers_seq=turn.seq,
        )
        turn.has_turn = False  # ended by that transaction, or lost before it
        if not stored:
            # Our claim lapsed mid-turn (a stall) and another replica answered instead.
            log.warning("reply_dropped_stale", ending=ending.value if ending else None)
            turn.end(Ending.SUPERSEDED)
            return
        turn.reply = reply
        if rows:
            await self._bus.notify(OUTBOX, turn.message.channel_type.value)
        log.info(  # the message's one line at info (message_accepted is debug)
            "reply_stored",
            session=turn.message.session,
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
            await self._bus.notify(OUTBOX, turn.message.channel_type.value)

    # -- sessions, from outside a turn --------------------------------------------------------

    async def reset_session(self, key: SessionKey) -> bool:
        """Start a session afresh between its turns (DELETE /api/v1/sessions/{key}); False if
        there is no such session."""
        claim = self.replica.claim()
        while not await self._store.claims.take_session(key, claim):
            if not await self._store.messages.session_exists(key):
                return False
            await asyncio.sleep(0.2)
        try:
            return await self._store.messages.reset_session(key)
        finally:
            await self._store.claims.release_session(key, claim)
            await self._gate.freed(key)

    # -- bookkeeping --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _bound(self, inbound: Inbound) -> Iterator[None]:
        with (
            structlog.contextvars.bound_contextvars(
                request_id=inbound.request_id,
                message_id=inbound.message.id,
                channel=inbound.message.channel_type.value,
            ),
            tracing.bound_traceparent(inbound.traceparent),  # trace_id on every line (ops)
        ):
            yield

    def _spawn(self, coro: Coroutine[Any, Any, Turn]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Turn]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("pipeline_crashed", error=repr(task.exception()))

    def _enter(self) -> None:
        self._in_flight += 1
        self._idle.clear()

    def _leave(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

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

    async def cancel_waiting(self) -> None:
        """At the end of a shutdown: stop turns still running or waiting (their messages stay
        pending in storage, for another replica or the next start)."""
        tasks = [*self._tasks, *self._handling]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

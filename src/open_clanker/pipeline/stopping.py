"""`/stop`: the model calls running now, by session, and how one is ended early.

A stopped call keeps the text streamed so far; the turn then finishes as usual with that text
and `finish_reason = "stopped"`, and nothing more reaches the client or the chat. `/stop`
itself is handled at intake, or it would wait behind the very answer it stops. This registry
is per process; `Pipeline.stop` sends a `stop` notice through the bus when the session's turn
runs on another replica, whose listener stops it there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

from open_clanker.core.tasks import cancel_and_wait
from open_clanker.core.types import AgentResponse
from open_clanker.pipeline.commands import Command, parse_command
from open_clanker.pipeline.context import ReplySink, Turn

log = structlog.get_logger("open_clanker.pipeline")

STOPPED = "stopped"  # the finish_reason of an answer ended by /stop

ModelCallFn = Callable[[ReplySink | None], Coroutine[Any, Any, AgentResponse]]


class _Recorder:
    """Passes deltas on and remembers the text they add up to (a reset starts it over)."""

    def __init__(self, inner: ReplySink) -> None:
        self._inner = inner
        self.text = ""
        self.closed = False

    async def delta(self, text: str) -> None:
        if self.closed:
            return
        self.text += text
        await self._inner.delta(text)

    async def reset(self) -> None:
        if self.closed:
            return
        self.text = ""
        await self._inner.reset()


@dataclass(eq=False)
class _Running:
    task: asyncio.Task[AgentResponse]
    recorder: _Recorder | None
    stopped: bool = False


class Stopper:
    """The registry of running model calls, and `/stop` handled at once."""

    def __init__(self, bot_username: Callable[[str], str | None] = lambda _channel: None) -> None:
        self._bot_username = bot_username
        self._running: dict[str, set[_Running]] = {}

    def running(self, session: str) -> bool:
        return any(not r.task.done() for r in self._running.get(session, ()))

    def stop(self, session: str) -> bool:
        """End the session's running answer. False when nothing was running."""
        stopped = False
        for entry in self._running.get(session, ()):
            if entry.task.done() or entry.stopped:
                continue
            entry.stopped = True
            if entry.recorder is not None:
                entry.recorder.closed = True  # not one more delta after the stop
            entry.task.cancel()
            stopped = True
        if stopped:
            log.info("answer_stopped", session=session)
        return stopped

    async def run(
        self,
        session: str,
        call: ModelCallFn,
        sink: ReplySink | None,
        stopped_response: Callable[[str], AgentResponse],
    ) -> AgentResponse:
        """Run one model call so that `stop(session)` can end it; the answer, or the text
        streamed so far as `stopped_response(text)` if it was stopped."""
        recorder = _Recorder(sink) if sink is not None else None
        entry = _Running(asyncio.create_task(call(recorder)), recorder)
        entries = self._running.setdefault(session, set())
        entries.add(entry)
        try:
            await asyncio.wait({entry.task})
        finally:
            if not entry.task.done():  # our own turn was cancelled (shutdown): take it along
                await cancel_and_wait(entry.task)
            entries.discard(entry)
            if not entries:
                self._running.pop(session, None)
        if entry.stopped:
            if not entry.task.cancelled():
                entry.task.exception()  # retrieved: a failure after the stop is not an error
            return stopped_response(recorder.text if recorder is not None else "")
        return entry.task.result()

    def is_stop(self, turn: Turn) -> bool:
        msg = turn.message
        return parse_command(msg.text, self._bot_username(msg.channel_type.value)) is Command.STOP

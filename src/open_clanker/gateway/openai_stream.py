"""Running one OpenAI-API answer in its own task: awaited for a `chat.completion`, or relayed as
`chat.completion.chunk` lines while the provider streams.

A streamed answer starts once the first text (or the answer itself) is there, or after one
keep-alive interval of silence: a refusal or a provider failure before that is still a plain
HTTP error the SDKs raise on, and a model that thinks for minutes still gets its stream started
and kept alive (`: keep-alive` comments) before a proxy's idle timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import structlog

from open_clanker.core.errors import ClankerError, ProviderError
from open_clanker.core.types import Inbound
from open_clanker.gateway.openai_wire import ChunkWriter, completion_id
from open_clanker.pipeline.context import ReplySink

log = structlog.get_logger("open_clanker.gateway")

# Produces the `chat.completion` (or raises the error the turn ended with), streaming into
# the sink when there is one.
Answer = Callable[[ReplySink | None], Coroutine[Any, Any, dict[str, Any]]]
Event = tuple[str, str]  # ("delta", text), ("reset", ""), or SILENCE
SILENCE: Event = ("silence", "")  # nothing for one keep-alive interval
KEEPALIVE = ": keep-alive\n\n"

# Referenced until done: a client that hangs up must not let its turn be collected.
_RUNNING: set[asyncio.Task[Any]] = set()

REPLACED_TEXT = (
    "The model's answer changed after a retry, so the streamed text is incomplete; "
    "ask again, or repeat the request with its Idempotency-Key to get the whole answer."
)


class _QueueSink:
    def __init__(self, queue: asyncio.Queue[Event]) -> None:
        self._queue = queue

    async def delta(self, text: str) -> None:
        await self._queue.put(("delta", text))

    async def reset(self) -> None:
        await self._queue.put(("reset", ""))


class AnswerRun:
    """One answer in its own task, finished and stored however the client fares."""

    def __init__(self, inbound: Inbound, answer: Answer, stream: bool) -> None:
        msg = inbound.message
        self.cid = completion_id(msg.id)
        self.created = int(msg.timestamp.timestamp())
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.task = asyncio.create_task(answer(_QueueSink(self.queue) if stream else None))
        _RUNNING.add(self.task)
        self.task.add_done_callback(_RUNNING.discard)

    async def result(self) -> dict[str, Any]:
        """The `chat.completion` (raises the turn's error). Shielded: a client that hangs up
        does not cancel a reply that is being stored."""
        return await asyncio.shield(self.task)

    async def next_event(self, silence_s: float) -> Event | None:
        """The next delta or reset; SILENCE after `silence_s` without one; None once the
        answer is there and nothing is left."""
        if not self.queue.empty():
            return self.queue.get_nowait()
        if self.task.done():
            return None
        waiter = asyncio.ensure_future(self.queue.get())
        try:
            done, _ = await asyncio.wait(
                {self.task, waiter}, timeout=silence_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not waiter.done():
                waiter.cancel()
        if not done:
            return SILENCE
        if waiter in done:
            return waiter.result()
        return self.queue.get_nowait() if not self.queue.empty() else None


async def start_stream(
    run: AnswerRun, include_usage: bool, keepalive_s: float
) -> AsyncIterator[str]:
    """Waits for the first event (at most `keepalive_s`); raises the answer's error if it came
    before that. Returns the chunk lines to send."""
    first = await run.next_event(keepalive_s)
    if first is None:
        done = run.task.result()  # raises: an early error is a plain HTTP error
        # An Idempotency-Key repeat answers with the first request's id.
        writer = ChunkWriter(done["id"], done["created"], include_usage)
        return _chunks(run, None, writer, keepalive_s)
    return _chunks(run, first, ChunkWriter(run.cid, run.created, include_usage), keepalive_s)


async def _chunks(
    run: AnswerRun, first: Event | None, writer: ChunkWriter, keepalive_s: float
) -> AsyncIterator[str]:
    yield writer.role()
    shown = ""
    event = first
    while event is not None:
        kind, text = event
        if event is SILENCE:
            yield KEEPALIVE  # a comment line: clients skip it, proxies see traffic
        elif kind == "reset" and shown:
            # Text already sent would change: end with an error rather than show it twice.
            yield writer.error(ProviderError(REPLACED_TEXT, "gateway"))
            return
        elif kind == "delta" and text:
            shown += text
            yield writer.content(text)
        event = await run.next_event(keepalive_s)
    try:
        done = await run.result()
    except ClankerError as exc:
        yield writer.error(exc)
        return
    except Exception:  # the stream has begun: an error chunk, not a torn connection
        log.exception("stream_crashed")
        yield writer.error(ClankerError("Something went wrong inside the gateway."))
        return
    choice = done["choices"][0]
    content = choice["message"]["content"] or ""
    if not content.startswith(shown):  # never happens without a reset; be sure
        yield writer.error(ProviderError(REPLACED_TEXT, "gateway"))
        return
    if rest := content[len(shown) :]:
        yield writer.content(rest)  # a provider that does not stream: the whole answer at once
    for line in writer.finish(choice["finish_reason"], done["usage"]):
        yield line

"""POST /api/v1/chat: one answer as JSON, or streamed as server-sent events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import structlog
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, StreamingResponse

from open_clanker.core.errors import (
    ClankerError,
    MessageTooLongError,
    ProviderError,
)
from open_clanker.core.types import (
    AgentResponse,
    ChannelType,
    Inbound,
    Message,
    client_session_key,
)
from open_clanker.gateway.auth import require_token
from open_clanker.gateway.runtime import Runtime
from open_clanker.gateway.schemas import ERROR_RESPONSES, ChatRequest, ChatResponse
from open_clanker.pipeline.context import Ending, Turn

router = APIRouter(dependencies=[Depends(require_token)])
# A comment line after this much silence, so a proxy's idle timeout does not cut a stream while
# the model thinks (nginx: 60 s). `app.state.sse_keepalive_s` overrides it (tests).
SSE_KEEPALIVE_S = 15.0
KEEPALIVE = ": keep-alive\n\n"
log = structlog.get_logger("open_clanker.gateway")


def inbound_for(
    text: str, session: str | None, channel: ChannelType, request_id: str | None
) -> Inbound:
    key = client_session_key(session, channel)
    chat_id = key.split(":", 1)[1]
    msg = Message(
        channel_type=channel, channel_id=chat_id, sender=channel.value, text=text, session=key
    )
    return Inbound(message=msg, request_id=request_id or msg.id)


def turn_result(turn: Turn) -> dict[str, Any]:
    """The finished turn as SPEC §5's answer, or the error it ended with."""
    if turn.ending is Ending.ANSWERED and turn.response is not None:
        reply = turn.response
    elif turn.ending is Ending.COMMAND:
        reply = AgentResponse(content=turn.notice or "", model="", provider="gateway")
    elif turn.ending is Ending.FAILED and isinstance(turn.error, ProviderError):
        raise ProviderError(
            f"The model provider '{turn.error.provider}' failed: {turn.error.message}",
            turn.error.provider,
        )
    elif turn.error is not None:
        raise turn.error
    else:
        raise ClankerError("The message was not processed.")
    if turn.reply is not None:
        reply = reply.model_copy(update={"id": turn.reply.id})
    return ChatResponse(session=turn.message.session, message=turn.message, reply=reply).model_dump(
        mode="json"
    )


def check_length(runtime: Runtime, text: str) -> None:
    limit = runtime.config.server.max_message_chars
    if len(text) > limit:
        raise MessageTooLongError(f"The text is {len(text)} characters long; the limit is {limit}.")


@router.post(
    "/api/v1/chat",
    response_model=ChatResponse,
    responses={
        **ERROR_RESPONSES,
        200: {
            "content": {"text/event-stream": {}},
            "description": "JSON answer, or an SSE stream when stream is true",
        },
    },
    summary="Talk to the assistant",
)
async def chat(
    body: ChatRequest,
    request: Request,
    idempotency_key: str | None = Header(default=None, max_length=255),
) -> Any:
    runtime: Runtime = request.app.state.runtime
    runtime.check_accepting()
    check_length(runtime, body.text)
    if idempotency_key:
        cached = await runtime.store.idempotency.get(idempotency_key)
        if cached is not None:
            return JSONResponse(json.loads(cached))
    inbound = inbound_for(
        body.text, body.session, ChannelType.API, request.scope["state"].get("request_id")
    )
    if body.stream:
        keepalive_s = getattr(request.app.state, "sse_keepalive_s", SSE_KEEPALIVE_S)
        return StreamingResponse(
            _sse(runtime, inbound, idempotency_key, keepalive_s),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    # Shielded: a client that hangs up does not cancel a reply that is being stored.
    turn = await asyncio.shield(runtime.pipeline.handle(inbound))
    result = turn_result(turn)
    if idempotency_key:
        await runtime.store.idempotency.put(idempotency_key, json.dumps(result))
    return result


_RUNNING: set[asyncio.Task[Turn]] = set()


class _QueueSink:
    def __init__(self, queue: asyncio.Queue[tuple[str, dict[str, Any]]]) -> None:
        self._queue = queue

    async def delta(self, text: str) -> None:
        await self._queue.put(("delta", {"text": text}))

    async def reset(self) -> None:
        await self._queue.put(("reset", {}))


def _sse_event(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


async def _sse(
    runtime: Runtime, inbound: Inbound, idempotency_key: str | None, keepalive_s: float
) -> AsyncIterator[str]:
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
    task = asyncio.create_task(runtime.pipeline.handle(inbound, _QueueSink(queue)))
    # Referenced until done: a client that hangs up must not let the turn be collected.
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)
    waiter: asyncio.Task[tuple[str, dict[str, Any]]] | None = None
    try:
        while True:
            if waiter is None or waiter.done():
                waiter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait(
                {task, waiter}, timeout=keepalive_s, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                yield KEEPALIVE
                continue
            if waiter in done:
                event, data = waiter.result()
                yield _sse_event(event, data)
                continue
            waiter.cancel()
            while not queue.empty():
                event, data = queue.get_nowait()
                yield _sse_event(event, data)
            break
        try:
            result = turn_result(task.result())
        except ClankerError as exc:
            yield _sse_event("error", {"error": {"code": exc.code, "message": exc.message}})
            return
        except Exception:  # the stream has begun: an error event, not a torn connection
            log.exception("stream_crashed")
            error = {
                "code": "internal_error",
                "message": "Something went wrong inside the gateway.",
            }
            yield _sse_event("error", {"error": error})
            return
        if idempotency_key:
            await runtime.store.idempotency.put(idempotency_key, json.dumps(result))
        yield _sse_event("done", result)
    finally:
        if waiter is not None:
            waiter.cancel()
        # The reply is stored even if the client went away mid-stream.

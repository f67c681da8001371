"""POST /api/v1/chat: one answer as JSON, or streamed as server-sent events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import structlog
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response, StreamingResponse

from open_clanker.core.errors import (
    ClankerError,
    MessageTooLongError,
    ProviderError,
    SupersededError,
)
from open_clanker.core.logging import REDACTOR
from open_clanker.core.types import (
    AgentResponse,
    ChannelType,
    Inbound,
    Message,
    client_session_key,
)
from open_clanker.gateway.auth import require_token
from open_clanker.gateway.idempotency import Outcome, once
from open_clanker.gateway.runtime import Runtime
from open_clanker.gateway.schemas import ERROR_RESPONSES, ChatRequest, ChatResponse
from open_clanker.pipeline.context import Ending, Turn
from open_clanker.storage.idempotency import StoredAnswer

IDEMPOTENCY_SCOPE = "chat"

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
    return turn_response(turn).model_dump(mode="json")


def turn_json(turn: Turn) -> Response:
    """The same answer as a response body serialized once: FastAPI would validate the dict
    against `ChatResponse` again and serialize it a second time (the OpenAPI document still
    names `ChatResponse`, the route's `response_model`)."""
    return Response(turn_response(turn).model_dump_json(), media_type="application/json")


def turn_response(turn: Turn) -> ChatResponse:
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
    elif turn.ending is Ending.SUPERSEDED:
        raise SupersededError(
            "This message was answered by another replica while this one stalled; "
            "read the answer from the session's messages."
        )
    else:
        raise ClankerError("The message was not processed.")
    if turn.reply is not None:
        reply = reply.model_copy(update={"id": turn.reply.id})
    return ChatResponse(session=turn.message.session, message=turn.message, reply=reply)


def stored_result(answer: StoredAnswer) -> dict[str, Any]:
    """An earlier request's answer, read back from storage (an Idempotency-Key repeat)."""
    assert answer.message is not None
    reply = answer.response
    if answer.reply is not None:
        reply = (reply or _gateway_answer(answer.reply.text)).model_copy(
            update={"id": answer.reply.id}
        )
    return ChatResponse(
        session=answer.message.session,
        message=answer.message,
        reply=reply or _gateway_answer(""),
    ).model_dump(mode="json")


def _gateway_answer(text: str) -> AgentResponse:
    return AgentResponse(content=text, model="", provider="gateway")


def idempotency_wait_s(runtime: Runtime) -> float:
    """How long a repeat waits for the first request's answer: as long as that answer may
    take (every attempt of every provider), within reason."""
    agent = runtime.config.agent
    attempts = (agent.max_retries + 1) * (1 + len(agent.fallbacks))
    return min(agent.timeout_s * attempts + 5, 600.0)


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
    inbound = inbound_for(
        body.text, body.session, ChannelType.API, request.scope["state"].get("request_id")
    )
    if body.stream:
        keepalive_s = getattr(request.app.state, "sse_keepalive_s", SSE_KEEPALIVE_S)
        return StreamingResponse(
            _sse(runtime, inbound, idempotency_key, body, keepalive_s),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def run() -> Turn:
        # Shielded: a client that hangs up does not cancel a reply that is being stored.
        return await asyncio.shield(runtime.pipeline.handle(inbound))

    if not idempotency_key:
        return turn_json(await run())
    outcome = await _once(runtime, idempotency_key, body, inbound, run)
    return _outcome_result(outcome)


async def _once(
    runtime: Runtime,
    key: str,
    body: ChatRequest,
    inbound: Inbound,
    run: Any,
) -> Outcome:
    # The same text to the same session is the same request, streamed or not.
    fields = {"text": body.text, "session": body.session}
    return await once(
        runtime.store.idempotency,
        IDEMPOTENCY_SCOPE,
        key,
        fields,
        inbound,
        run,
        idempotency_wait_s(runtime),
    )


def _outcome_result(outcome: Outcome) -> dict[str, Any]:
    if outcome.turn is not None:
        return turn_result(outcome.turn)
    assert outcome.stored is not None
    return stored_result(outcome.stored)


_RUNNING: set[asyncio.Task[dict[str, Any]]] = set()


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
    runtime: Runtime,
    inbound: Inbound,
    idempotency_key: str | None,
    body: ChatRequest,
    keepalive_s: float,
) -> AsyncIterator[str]:
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
    sink = _QueueSink(queue)

    async def run() -> Turn:
        return await runtime.pipeline.handle(inbound, sink)

    async def answer() -> dict[str, Any]:
        if not idempotency_key:
            return turn_result(await run())
        # A repeat of a key gets the first answer as its `done` event, without deltas.
        return _outcome_result(await _once(runtime, idempotency_key, body, inbound, run))

    task = asyncio.create_task(answer())
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
            result = task.result()
        except ClankerError as exc:
            message = REDACTOR.redact(exc.message)  # a provider's error may echo its key
            yield _sse_event("error", {"error": {"code": exc.code, "message": message}})
            return
        except Exception:  # the stream has begun: an error event, not a torn connection
            log.exception("stream_crashed")
            error = {
                "code": "internal_error",
                "message": "Something went wrong inside the gateway.",
            }
            yield _sse_event("error", {"error": error})
            return
        yield _sse_event("done", result)
    finally:
        if waiter is not None:
            waiter.cancel()
        # The reply is stored even if the client went away mid-stream.

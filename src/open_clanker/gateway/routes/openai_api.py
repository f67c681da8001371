"""POST /v1/chat/completions and GET /v1/models: OpenAI's Chat Completions API (SPEC §5.1).

Another entry into the same pipeline as POST /api/v1/chat: the model `open-clanker` is the
configured provider chain and system prompt. Refusals come out in OpenAI's error shape.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, StreamingResponse

from open_clanker.core.types import Inbound
from open_clanker.gateway.auth import require_token
from open_clanker.gateway.idempotency import once
from open_clanker.gateway.openai_errors import OpenAIRoute
from open_clanker.gateway.openai_images import ImageReader
from open_clanker.gateway.openai_stream import Answer, AnswerRun, start_stream
from open_clanker.gateway.openai_turns import (
    check_request,
    conversation,
    openai_inbound,
    session_name,
    stored_completion,
    turn_completion,
)
from open_clanker.gateway.openai_wire import (
    MODEL_ID,
    ChatCompletion,
    ChatCompletionRequest,
    ModelCard,
    ModelList,
    OpenAIErrorBody,
)
from open_clanker.gateway.routes.chat import SSE_KEEPALIVE_S, check_length, idempotency_wait_s
from open_clanker.gateway.runtime import Runtime
from open_clanker.pipeline.context import ReplySink, Turn

router = APIRouter(dependencies=[Depends(require_token)], route_class=OpenAIRoute)

# Bodies may carry images as data URLs (base64, 10 MiB of images at most): more than 1 MiB.
MAX_BODY_BYTES = 16 * 1024 * 1024
COMPLETIONS_PATH = "/v1/chat/completions"
IDEMPOTENCY_SCOPE = "openai"  # /api/v1/chat's keys are scope "chat"
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


_ERRORS = {
    400: "Invalid request (invalid_request_error): bad JSON or fields, n > 1, tools, an "
    "Idempotency-Key reused for another request",
    401: "Missing or wrong bearer token (invalid_api_key)",
    404: "Another model than open-clanker (model_not_found)",
    413: "Text over max_message_chars, or a body too large",
    409: "A request with this Idempotency-Key is still being answered",
    429: "Rate limited or locked out (rate_limit_exceeded); see Retry-After",
    502: "Every model provider failed (provider_error)",
    503: "Shutting down (not_ready)",
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": OpenAIErrorBody, "description": _ERRORS[s]} for s in statuses}


def _answerer(
    runtime: Runtime,
    inbound: Inbound,
    body: ChatCompletionRequest,
    name: str | None,
    idempotency_key: str | None,
) -> Answer:
    """The pipeline's turn for this request — or, with an `Idempotency-Key` already used, the
    first request's answer. The one place that talks to the idempotency machinery; keys are
    scoped to this route."""

    async def answer(sink: ReplySink | None) -> dict[str, Any]:
        async def run() -> Turn:
            return await runtime.pipeline.handle(inbound, sink)

        if not idempotency_key:
            return turn_completion(await run())
        # The same messages and fields to the same session are the same request, streamed
        # or not.
        fields = body.model_dump(mode="json", exclude={"stream", "stream_options"})
        fields["session"] = name
        outcome = await once(
            runtime.store.idempotency,
            IDEMPOTENCY_SCOPE,
            idempotency_key,
            fields,
            inbound,
            run,
            idempotency_wait_s(runtime),
        )
        if outcome.turn is not None:
            return turn_completion(outcome.turn)
        assert outcome.stored is not None
        return stored_completion(outcome.stored)

    return answer


@router.get(
    "/v1/models",
    response_model=ModelList,
    responses=_errors(401, 429),
    summary="The one model: the configured assistant (OpenAI-compatible)",
)
async def models(request: Request) -> ModelList:
    runtime: Runtime = request.app.state.runtime
    card = ModelCard(id=MODEL_ID, created=int(runtime.started_at), owned_by=MODEL_ID)
    return ModelList(data=[card])


@router.post(
    COMPLETIONS_PATH,
    response_model=None,
    responses={
        200: {
            "model": ChatCompletion,
            "description": "A chat.completion, or chat.completion.chunk lines when stream is true",
            "content": {"text/event-stream": {}},
        },
        **_errors(400, 401, 404, 409, 413, 429, 502, 503),
    },
    summary="Talk to the assistant in OpenAI's Chat Completions format",
)
async def chat_completions(
    body: ChatCompletionRequest,
    request: Request,
    idempotency_key: str | None = Header(default=None, max_length=255),
    x_session_key: str | None = Header(default=None, max_length=400),
) -> JSONResponse | StreamingResponse:
    runtime: Runtime = request.app.state.runtime
    runtime.check_accepting()
    check_request(body)
    name = session_name(x_session_key)
    conv = conversation(body.messages)
    check_length(runtime, conv.newest.text)
    images = await ImageReader(runtime.http).read_all(conv.image_urls)
    inbound = openai_inbound(body, conv, images, name, request.scope["state"].get("request_id"))
    answer = _answerer(runtime, inbound, body, name, idempotency_key)
    run = AnswerRun(inbound, answer, body.stream)
    headers = {"X-Session-Key": inbound.message.session}
    if not body.stream:
        return JSONResponse(await run.result(), headers=headers)
    keepalive_s = getattr(request.app.state, "sse_keepalive_s", SSE_KEEPALIVE_S)
    chunks = await start_stream(run, body.include_usage, keepalive_s)
    return StreamingResponse(
        chunks, media_type="text/event-stream", headers={**STREAM_HEADERS, **headers}
    )

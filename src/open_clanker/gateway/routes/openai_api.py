"""POST /v1/chat/completions and GET /v1/models: OpenAI's Chat Completions API (SPEC §5.1).

Another entry into the same pipeline as POST /api/v1/chat: the model `open-clanker` is the
configured provider chain and system prompt. Refusals come out in OpenAI's error shape.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, StreamingResponse

from open_clanker.core.types import Inbound
from open_clanker.gateway.auth import require_token
from open_clanker.gateway.openai_errors import OpenAIRoute
from open_clanker.gateway.openai_images import ImageReader
from open_clanker.gateway.openai_stream import TurnRun, start_stream
from open_clanker.gateway.openai_turns import (
    check_request,
    conversation,
    openai_inbound,
    session_name,
)
from open_clanker.gateway.openai_wire import (
    MODEL_ID,
    ChatCompletion,
    ChatCompletionRequest,
    ModelCard,
    ModelList,
    OpenAIErrorBody,
    replay,
)
from open_clanker.gateway.routes.chat import check_length
from open_clanker.gateway.runtime import Runtime
from open_clanker.storage.store import Store

router = APIRouter(dependencies=[Depends(require_token)], route_class=OpenAIRoute)

# Bodies may carry images as data URLs (base64, 10 MiB of images at most): more than 1 MiB.
MAX_BODY_BYTES = 16 * 1024 * 1024
COMPLETIONS_PATH = "/v1/chat/completions"
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


_ERRORS = {
    400: "Invalid request (invalid_request_error): bad JSON or fields, n > 1, tools",
    401: "Missing or wrong bearer token (invalid_api_key)",
    404: "Another model than open-clanker (model_not_found)",
    413: "Text over max_message_chars, or a body too large",
    429: "Rate limited or locked out (rate_limit_exceeded); see Retry-After",
    502: "Every model provider failed (provider_error)",
    503: "Shutting down (not_ready)",
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": OpenAIErrorBody, "description": _ERRORS[s]} for s in statuses}


class CompletionMemo:
    """`Idempotency-Key` for this route: a repeat gets the first answer, no second model call.
    The one place that talks to the idempotency store; keys are scoped to the route."""

    def __init__(self, store: Store, key: str | None) -> None:
        self._store = store
        self._key = f"POST {COMPLETIONS_PATH} {key}" if key else None

    @property
    def keep_if_keyed(self) -> Callable[[dict[str, Any]], Awaitable[None]] | None:
        return self.keep if self._key is not None else None

    async def recall(self) -> dict[str, Any] | None:
        if self._key is None:
            return None
        cached = await self._store.idempotency.get(self._key)
        return json.loads(cached) if cached is not None else None

    async def keep(self, result: dict[str, Any]) -> None:
        if self._key is not None:
            await self._store.idempotency.put(self._key, json.dumps(result))


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
        **_errors(400, 401, 404, 413, 429, 502, 503),
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
    memo = CompletionMemo(runtime.store, idempotency_key)
    cached = await memo.recall()
    if cached is not None:
        if body.stream:
            lines = replay(cached, body.include_usage)
            return StreamingResponse(
                iter(lines), media_type="text/event-stream", headers=STREAM_HEADERS
            )
        return JSONResponse(cached)
    images = await ImageReader(runtime.http).read_all(conv.image_urls)
    inbound = openai_inbound(body, conv, images, name, request.scope["state"].get("request_id"))
    return await _answer(runtime, inbound, memo, body)


async def _answer(
    runtime: Runtime, inbound: Inbound, memo: CompletionMemo, body: ChatCompletionRequest
) -> JSONResponse | StreamingResponse:
    headers = {"X-Session-Key": inbound.message.session}
    run = TurnRun(runtime.pipeline, inbound, memo.keep_if_keyed, stream=body.stream)
    if not body.stream:
        return JSONResponse(await run.result(), headers=headers)
    chunks = await start_stream(run, body.include_usage)
    return StreamingResponse(
        chunks, media_type="text/event-stream", headers={**STREAM_HEADERS, **headers}
    )

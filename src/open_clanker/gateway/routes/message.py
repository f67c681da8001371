"""POST /api/v1/message: deliver text to a chat through a channel, without the model."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from open_clanker.channels.base import ChecksChatIds
from open_clanker.core.errors import InputError, MessageTooLongError, NotFoundError
from open_clanker.core.types import ChannelType, Message, Role, session_key
from open_clanker.gateway.auth import require_token
from open_clanker.gateway.runtime import Runtime
from open_clanker.gateway.schemas import ERROR_RESPONSES, SendRequest, SendResponse
from open_clanker.storage.messages import Status
from open_clanker.storage.outbox import outbox_rows

router = APIRouter(dependencies=[Depends(require_token)])


@router.post(
    "/api/v1/message",
    status_code=202,
    response_model=SendResponse,
    responses=ERROR_RESPONSES,
    summary="Deliver text to a chat (no model call)",
)
async def send_message(body: SendRequest, request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    runtime.check_accepting()
    channel = runtime.channels.get(body.channel)
    if channel is None:
        raise NotFoundError(
            f"Channel {body.channel!r} is not enabled; enabled: "
            + (", ".join(c.type.value for c in runtime.channels) or "none")
            + "."
        )
    limit = runtime.config.server.max_message_chars
    if len(body.text) > limit:
        raise MessageTooLongError(f"The text is {len(body.text)} characters; the limit is {limit}.")
    if isinstance(channel, ChecksChatIds) and (problem := channel.chat_id_problem(body.channel_id)):
        raise InputError(problem)
    ctype = ChannelType(body.channel)
    msg = Message(
        channel_type=ctype,
        channel_id=body.channel_id,
        sender="operator",
        role=Role.ASSISTANT,
        text=body.text,
        session=session_key(ctype, body.channel_id),
    )
    rows = outbox_rows(
        msg.id,
        ctype.value,
        body.channel_id,
        channel.split(body.text),
        request_id=request.scope["state"].get("request_id"),
    )
    await runtime.store.messages.store_reply(msg, None, rows, status=Status.NOTICE)
    await runtime.bus.notify("outbox", body.channel)
    return JSONResponse(SendResponse(id=msg.id, status="queued").model_dump(), status_code=202)

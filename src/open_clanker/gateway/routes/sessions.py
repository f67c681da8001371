"""Sessions: list, read history, start afresh, stop the running answer."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from open_clanker.core.errors import NotFoundError
from open_clanker.core.types import ChannelType, client_session_key
from open_clanker.gateway.auth import require_token
from open_clanker.gateway.runtime import Runtime
from open_clanker.gateway.schemas import (
    ERROR_RESPONSES,
    MessageList,
    ResetResponse,
    SessionList,
    SessionOut,
    StopResponse,
)

router = APIRouter(dependencies=[Depends(require_token)], responses=ERROR_RESPONSES)


@router.get("/api/v1/sessions", response_model=SessionList, summary="Sessions, newest first")
async def list_sessions(request: Request, limit: int = Query(50, ge=1, le=500)) -> SessionList:
    runtime: Runtime = request.app.state.runtime
    infos = await runtime.store.messages.list_sessions(limit)
    return SessionList(
        sessions=[
            SessionOut(
                key=i.key,
                channel=i.channel,
                channel_id=i.channel_id,
                created_at=i.created_at.isoformat(),
                updated_at=i.updated_at.isoformat(),
                message_count=i.message_count,
            )
            for i in infos
        ]
    )


@router.get(
    "/api/v1/sessions/{key}/messages", response_model=MessageList, summary="A session's history"
)
async def session_messages(
    key: str,
    request: Request,
    limit: int = Query(100, ge=1, le=1000),
    before: str | None = Query(None, max_length=64, description="A message id"),
) -> MessageList:
    runtime: Runtime = request.app.state.runtime
    session = client_session_key(key, ChannelType.API)
    found = await runtime.store.messages.session_messages(session, limit, before)
    if found is None:
        raise NotFoundError(f"There is no session {session!r}.")
    return MessageList(session=session, messages=found)


@router.delete(
    "/api/v1/sessions/{key}", response_model=ResetResponse, summary="Start a session afresh"
)
async def reset_session(key: str, request: Request) -> ResetResponse:
    runtime: Runtime = request.app.state.runtime
    session = client_session_key(key, ChannelType.API)
    # Between the session's turns, on whichever replica runs them (the session lease).
    if not await runtime.pipeline.reset_session(session):
        raise NotFoundError(f"There is no session {session!r}.")
    return ResetResponse(session=session, status="reset")


@router.post(
    "/api/v1/sessions/{key}/stop",
    response_model=StopResponse,
    summary="Stop the answer being written in a session",
)
async def stop_session(key: str, request: Request) -> StopResponse:
    """The partial answer is kept with finish_reason "stopped" (an addition to SPEC §5)."""
    runtime: Runtime = request.app.state.runtime
    session = client_session_key(key, ChannelType.API)
    stopped = await runtime.pipeline.stop(session)
    if not stopped and await runtime.store.messages.session_messages(session, 1, None) is None:
        raise NotFoundError(f"There is no session {session!r}.")
    return StopResponse(session=session, stopped=stopped)

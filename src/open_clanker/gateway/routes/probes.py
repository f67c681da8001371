"""Liveness, readiness and status."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from open_clanker.gateway.auth import require_token
from open_clanker.gateway.runtime import Runtime
from open_clanker.gateway.schemas import ERROR_RESPONSES
from open_clanker.gateway.schemas_ops import ReadyResponse, StatusResponse
from open_clanker.storage.outbox_depth import pending_by_channel

router = APIRouter()


@router.get("/health", response_class=PlainTextResponse, summary="Liveness")
async def health() -> str:
    return "OK"


@router.get(
    "/ready",
    summary="Readiness: storage, provider and each channel",
    responses={
        200: {"model": ReadyResponse, "description": "ready or degraded"},
        503: {"model": ReadyResponse, "description": "not_ready: storage down or shutting down"},
    },
)
async def ready(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    storage_ok = await runtime.store.ping()
    channels = runtime.channel_health()
    if runtime.shutting_down or not storage_ok:
        status = "not_ready"
    elif any(c["state"] != "connected" for c in channels.values()):
        status = "degraded"
    else:
        status = "ready"
    body: dict[str, Any] = {
        "status": status,
        "replica": runtime.replica.id,
        "storage": {"ok": storage_ok},
        "provider": {"name": runtime.choice.name, "model": runtime.choice.model},
        "channels": channels,
    }
    return JSONResponse(body, status_code=503 if status == "not_ready" else 200)


@router.get(
    "/api/v1/status",
    dependencies=[Depends(require_token)],
    response_model=StatusResponse,
    responses=ERROR_RESPONSES,
    summary="Version, uptime, provider, channels, counts",
)
async def status(request: Request) -> dict[str, Any]:
    runtime: Runtime = request.app.state.runtime
    body = runtime.status()
    counts = await runtime.store.messages.counts()
    counts["outbox_pending"] = await runtime.store.outbox.count("pending")
    body["counts"] = counts
    return body


@router.get(
    "/metrics",
    dependencies=[Depends(require_token)],
    response_class=PlainTextResponse,
    responses=ERROR_RESPONSES,
    summary="Prometheus metrics",
)
async def metrics(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    pending = await pending_by_channel(runtime.store.db)  # the outbox depth gauge, per scrape
    runtime.metrics.set_outbox_depth([c.type.value for c in runtime.channels], pending)
    return Response(runtime.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

"""Platform webhooks served by the gateway's own HTTP server (Telegram's webhook mode, Slack's
Events API at `/slack/events`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, runtime_checkable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from open_clanker.gateway.auth import locked_out_error, request_ip
from open_clanker.gateway.errors import clanker_error_response
from open_clanker.gateway.lockout import AuthLockout
from open_clanker.gateway.runtime import Runtime

MAX_WEBHOOK_BODY = 1_048_576


@runtime_checkable
class SupportsWebhook(Protocol):
    webhook_path: str

    async def handle_webhook(self, secret_header: str | None, body: bytes) -> int: ...


@runtime_checkable
class SupportsSignedWebhook(Protocol):
    """A webhook that checks its own headers (a signature) and may answer with JSON."""

    webhook_path: str

    async def handle_webhook_request(
        self, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, object] | None]: ...


def add_webhook_routes(app: FastAPI, runtime: Runtime) -> frozenset[str]:
    """Routes for channels in webhook mode; returns their paths."""
    paths = set()
    for channel in runtime.channels:
        if isinstance(channel, SupportsWebhook) and channel.webhook_path:
            paths.add(channel.webhook_path)
            app.add_api_route(
                channel.webhook_path,
                _endpoint(channel),
                methods=["POST"],
                include_in_schema=False,
            )
        elif isinstance(channel, SupportsSignedWebhook) and channel.webhook_path:
            paths.add(channel.webhook_path)
            app.add_api_route(
                channel.webhook_path,
                _signed_endpoint(channel),
                methods=["POST"],
                include_in_schema=False,
            )
    return frozenset(paths)


def _endpoint(channel: SupportsWebhook) -> Callable[[Request], Awaitable[Response]]:
    async def webhook(request: Request) -> Response:
        # A wrong secret is a failed sign-in like a wrong token: the same lockout counts it.
        lockout: AuthLockout = request.app.state.runtime.lockout
        addr = request_ip(request)
        wait = await lockout.retry_after(addr)
        if wait is not None:
            return clanker_error_response(locked_out_error(wait))
        body = await request.body()
        if len(body) > MAX_WEBHOOK_BODY:
            return Response(status_code=413)
        secret = request.headers.get("x-telegram-bot-api-secret-token")
        status = await channel.handle_webhook(secret, body)
        if status == 401:
            verdict = await lockout.attempt(addr, valid=False)
            if verdict.locked:
                return clanker_error_response(locked_out_error(verdict.retry_after))
        return Response(status_code=status)

    return webhook


def _signed_endpoint(channel: SupportsSignedWebhook) -> Callable[[Request], Awaitable[Response]]:
    async def webhook(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_WEBHOOK_BODY:
            return Response(status_code=413)
        status, answer = await channel.handle_webhook_request(request.headers, body)
        if answer is None:
            return Response(status_code=status)
        return JSONResponse(answer, status_code=status)

    return webhook

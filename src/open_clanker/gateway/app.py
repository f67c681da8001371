"""The FastAPI application: routes, error shape, the front-door guard, the web chat."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from open_clanker import __version__
from open_clanker.gateway.asgi import ASGIApp
from open_clanker.gateway.compression import Gzip
from open_clanker.gateway.errors import install_error_handlers
from open_clanker.gateway.guard import GatewayGuard
from open_clanker.gateway.head import HeadAsGet
from open_clanker.gateway.hosts import HostPolicy
from open_clanker.gateway.http_metrics import HttpMetrics
from open_clanker.gateway.openai_errors import guard_error_body
from open_clanker.gateway.openapi import TAGS, install_openapi, operation_id
from open_clanker.gateway.routes import (
    chat,
    message,
    openai_api,
    openapi_doc,
    ops,
    page,
    probes,
    sessions,
)
from open_clanker.gateway.runtime import Runtime
from open_clanker.gateway.security_headers import SecurityHeaders
from open_clanker.gateway.tracing_mw import TraceRequests


def create_app(runtime: Runtime, bind_host: str = "127.0.0.1") -> FastAPI:
    app = FastAPI(
        title="Open Clanker gateway",
        version=__version__,
        description="Self-hosted AI assistant gateway. Every /api route needs a bearer token.",
        docs_url=None,
        redoc_url=None,
        openapi_tags=TAGS,
        generate_unique_id_function=operation_id,
        openapi_url=None,  # served by routes/openapi_doc.py, behind the token
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    install_openapi(app)
    app.include_router(probes.router, tags=["operations"])
    app.include_router(chat.router, tags=["chat"])
    app.include_router(sessions.router, tags=["sessions"])
    app.include_router(message.router, tags=["delivery"])
    app.include_router(ops.router, tags=["operations"])
    app.include_router(openapi_doc.router)
    body_limits: dict[str, int] = {}
    if runtime.config.server.openai_api:  # SPEC §5.1; off: both routes answer 404
        app.include_router(openai_api.router, tags=["openai"])
        body_limits[openai_api.COMPLETIONS_PATH] = openai_api.MAX_BODY_BYTES
    webhook_paths = _mount_channel_routes(app, runtime)
    websocket_routes: dict[str, ASGIApp] = {}
    if runtime.config.channels.webchat.enabled:
        app.include_router(page.router)
        if page.STATIC_DIR.is_dir():
            app.mount("/static", StaticFiles(directory=page.STATIC_DIR), name="static")
        websocket_routes = _websocket_routes(app)
    if runtime.config.server.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=runtime.config.server.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "X-Session-Key",
                "traceparent",
            ],
        )
    if runtime.config.server.compression:
        app.add_middleware(Gzip)
    app.add_middleware(HeadAsGet)
    policy = HostPolicy.build(bind_host, runtime.config.server.allowed_hosts)
    app.add_middleware(
        GatewayGuard,
        hosts=policy,
        open_paths=webhook_paths,
        body_limits=body_limits,
        error_body=guard_error_body,
        cors_origins=tuple(runtime.config.server.cors_origins),
        websocket_routes=websocket_routes,
    )
    app.add_middleware(SecurityHeaders)  # around the guard: every answer gets them, refusals too
    # Outermost (added last): every request is traced and counted, refused ones included.
    app.add_middleware(TraceRequests)
    app.add_middleware(HttpMetrics, observe=runtime.metrics.http_request)
    return app


def _websocket_routes(app: FastAPI) -> dict[str, ASGIApp]:
    """`/ws`, served by the guard itself (gateway/guard.py says why)."""
    try:
        from open_clanker.gateway.ws import websocket_app
    except ImportError:  # the WebSocket module ships with the web chat
        return {}
    return {"/ws": websocket_app(app)}


def _mount_channel_routes(app: FastAPI, runtime: Runtime) -> frozenset[str]:
    from open_clanker.gateway.routes.webhooks import add_webhook_routes

    return add_webhook_routes(app, runtime)

"""The FastAPI application: routes, error shape, the front-door guard, the web chat."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from open_clanker import __version__
from open_clanker.gateway.errors import install_error_handlers
from open_clanker.gateway.guard import GatewayGuard
from open_clanker.gateway.hosts import HostPolicy
from open_clanker.gateway.routes import chat, message, openapi_doc, page, probes, sessions
from open_clanker.gateway.runtime import Runtime
from open_clanker.gateway.security_headers import SecurityHeaders


def create_app(runtime: Runtime, bind_host: str = "127.0.0.1") -> FastAPI:
    app = FastAPI(
        title="Open Clanker gateway",
        version=__version__,
        description="Self-hosted AI assistant gateway. Every /api route needs a bearer token.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served by routes/openapi_doc.py, behind the token
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    app.include_router(probes.router)
    app.include_router(chat.router)
    app.include_router(sessions.router)
    app.include_router(message.router)
    app.include_router(openapi_doc.router)
    webhook_paths = _mount_channel_routes(app, runtime)
    if runtime.config.channels.webchat.enabled:
        app.include_router(page.router)
        if page.STATIC_DIR.is_dir():
            app.mount("/static", StaticFiles(directory=page.STATIC_DIR), name="static")
        _mount_websocket(app)
    if runtime.config.server.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=runtime.config.server.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        )
    policy = HostPolicy.build(bind_host, runtime.config.server.allowed_hosts)
    app.add_middleware(
        GatewayGuard,
        hosts=policy,
        open_paths=webhook_paths,
        cors_origins=tuple(runtime.config.server.cors_origins),
    )
    app.add_middleware(SecurityHeaders)  # outermost: every answer gets them, refusals too
    return app


def _mount_websocket(app: FastAPI) -> None:
    try:
        from open_clanker.gateway.ws import websocket_endpoint
    except ImportError:  # the WebSocket module ships with the web chat
        return
    app.add_api_websocket_route("/ws", websocket_endpoint)


def _mount_channel_routes(app: FastAPI, runtime: Runtime) -> frozenset[str]:
    from open_clanker.gateway.routes.webhooks import add_webhook_routes

    return add_webhook_routes(app, runtime)

"""The OpenAPI document's finish (`GET /openapi.json`): stable operation ids, tags, and the
server-sent events of `POST /api/v1/chat` described. The bearer scheme comes from
`require_token`'s `HTTPBearer` (gateway/auth.py)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

TAGS = [
    {"name": "chat", "description": "Talk to the assistant (JSON or server-sent events)."},
    {"name": "sessions", "description": "Conversations: list, read, start afresh."},
    {"name": "delivery", "description": "Send text to a chat through a channel."},
    {"name": "operations", "description": "Probes, status, metrics, reload, tokens."},
    {"name": "openai", "description": "The OpenAI-compatible API (SPEC §5.1)."},
]

SSE_DESCRIPTION = (
    'With `"stream": true`: a `text/event-stream` of events, each `event: <name>` and one '
    '`data:` line of JSON. `delta` (`{"text"}`) carries text as the model writes it; '
    "`reset` (`{}`) drops the text shown so far (a provider retry after partial output; "
    "deltas start over); the stream ends with one `done`, whose data is the JSON of the "
    "non-streamed answer, or one `error` with the error JSON."
)

SSE_EVENTS: dict[str, dict[str, Any]] = {
    "delta": {"$ref": "#/components/schemas/SseDelta"},
    "reset": {"$ref": "#/components/schemas/SseReset"},
    "done": {"$ref": "#/components/schemas/ChatResponse"},
    "error": {"$ref": "#/components/schemas/ErrorBody"},
}

SSE_SCHEMAS: dict[str, dict[str, Any]] = {
    "SseDelta": {
        "type": "object",
        "title": "SseDelta",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
    },
    "SseReset": {"type": "object", "title": "SseReset", "properties": {}},
}


def operation_id(route: APIRoute) -> str:
    """The endpoint's function name: stable across releases (FastAPI's default mixes in the
    path and method). A duplicate makes FastAPI warn, and the test suite fails on warnings."""
    return route.name


def install_openapi(app: FastAPI) -> None:
    default = app.openapi

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = default()
            _describe_sse(schema)
            _tag_untagged(schema)
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]


def _describe_sse(schema: dict[str, Any]) -> None:
    post = schema.get("paths", {}).get("/api/v1/chat", {}).get("post")
    if post is None:
        return
    ok = post.setdefault("responses", {}).setdefault("200", {"description": "The answer"})
    ok.setdefault("content", {})["text/event-stream"] = {
        "schema": {"type": "string", "description": SSE_DESCRIPTION},
        "x-sse-events": SSE_EVENTS,
    }
    ok["description"] = "The answer as JSON, or server-sent events when `stream` is true."
    schema.setdefault("components", {}).setdefault("schemas", {}).update(SSE_SCHEMAS)


def _tag_untagged(schema: dict[str, Any]) -> None:
    """Routes mounted without a tag get one from their path."""
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            if isinstance(operation, dict) and not operation.get("tags"):
                operation["tags"] = ["openai" if path.startswith("/v1/") else "operations"]

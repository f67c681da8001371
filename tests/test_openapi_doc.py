"""The OpenAPI document: the bearer scheme on every authenticated operation (and only there),
tags, stable operation ids, typed probe and status schemas, the SSE events described."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.harness import running_gateway

pytestmark = pytest.mark.usefixtures("data_dir")

# Operation ids are part of the API: generated clients name their methods after them.
EXPECTED_IDS = {
    ("get", "/health"): "health",
    ("get", "/ready"): "ready",
    ("get", "/api/v1/status"): "status",
    ("get", "/metrics"): "metrics",
    ("post", "/api/v1/chat"): "chat",
    ("post", "/api/v1/message"): "send_message",
    ("get", "/api/v1/sessions"): "list_sessions",
    ("get", "/api/v1/sessions/{key}/messages"): "session_messages",
    ("delete", "/api/v1/sessions/{key}"): "reset_session",
    ("post", "/api/v1/reload"): "reload_config",
    ("post", "/api/v1/tokens"): "rotate_token",
    ("get", "/api/v1/tokens"): "list_tokens",
}
OPEN = {"/health", "/ready"}


async def document() -> dict[str, Any]:
    async with running_gateway() as gw, aiohttp.ClientSession() as http:
        async with http.get(f"{gw.base_url}/openapi.json", headers=gw.auth) as r:
            assert r.status == 200
            doc: dict[str, Any] = await r.json()
    return doc


def resolve(doc: dict[str, Any], ref: str) -> dict[str, Any]:
    assert ref.startswith("#/components/schemas/")
    schema: dict[str, Any] = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return schema


async def test_security_tags_and_operation_ids() -> None:
    doc = await document()
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {
        "type": "http",
        "scheme": "bearer",
        "description": scheme["description"],
    }
    tag_names = {t["name"] for t in doc["tags"]}
    seen = {}
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            seen[(method, path)] = op["operationId"]
            assert op["tags"] and set(op["tags"]) <= tag_names, (method, path)
            secured = op.get("security") == [{"bearerAuth": []}]
            assert secured is (path not in OPEN), (method, path)
            if secured:
                assert "401" in op["responses"], (method, path)
    for key, operation_id in EXPECTED_IDS.items():
        assert seen.get(key) == operation_id, key
    assert len(set(seen.values())) == len(seen)  # unique


async def test_typed_ready_status_and_sse() -> None:
    doc = await document()
    paths = doc["paths"]
    ready = paths["/ready"]["get"]["responses"]
    for code in ("200", "503"):
        ref = ready[code]["content"]["application/json"]["schema"]["$ref"]
        schema = resolve(doc, ref)
        assert set(schema["required"]) >= {"status", "storage", "provider", "channels"}
        assert schema["properties"]["status"]["enum"] == ["ready", "degraded", "not_ready"]
    status_ref = paths["/api/v1/status"]["get"]["responses"]["200"]["content"]["application/json"]
    status = resolve(doc, status_ref["schema"]["$ref"])
    for field in ("version", "uptime_s", "provider", "channels", "storage", "counts"):
        assert field in status["properties"], field
    channel = resolve(doc, status["properties"]["channels"]["additionalProperties"]["$ref"])
    assert channel["properties"]["state"]["enum"] == [
        "starting",
        "connected",
        "degraded",
        "stopped",
    ]

    ok = paths["/api/v1/chat"]["post"]["responses"]["200"]
    assert "application/json" in ok["content"]
    sse = ok["content"]["text/event-stream"]
    assert "event: <name>" in sse["schema"]["description"]
    events = sse["x-sse-events"]
    assert set(events) == {"delta", "reset", "done", "error"}
    for ref in events.values():
        resolve(doc, ref["$ref"])  # every event's data has a schema in the document
    assert resolve(doc, events["delta"]["$ref"])["required"] == ["text"]

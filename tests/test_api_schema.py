"""Schemathesis against the gateway's own /openapi.json: no 5xx, every error in the JSON shape."""

from __future__ import annotations

import itertools
import json
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.proc import GatewayProcess, clean_env, free_port

TOKEN = "schema-test-token-123456"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    root: Path = tmp_path_factory.mktemp("schema")
    env = clean_env(root / "data", OPENCLAW_GATEWAY_TOKEN=TOKEN, OPENCLAW_LOGGING__LEVEL="warning")
    gw = GatewayProcess(env, root, free_port())
    gw.wait_healthy()
    try:
        yield without_security(gw.base_url)
    finally:
        code, _out, err = gw.stop(signal.SIGTERM)
        assert code == 0, err[-2000:]
        assert "Traceback" not in err


def without_security(base_url: str) -> schemathesis.BaseSchema:
    """The gateway's document without its bearer scheme: fuzzing the token would only lock
    the test out (the lockout and wrong tokens are tested in test_gateway_security.py)."""
    request = urllib.request.Request(f"{base_url}/openapi.json", headers=AUTH)
    with urllib.request.urlopen(request, timeout=10) as r:
        doc = json.loads(r.read())
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    del doc["components"]["securitySchemes"]
    for operations in doc["paths"].values():
        for operation in operations.values():
            operation.pop("security", None)
    schema = schemathesis.openapi.from_dict(doc)
    schema.location = f"{base_url}/openapi.json"
    return schema


def check(case: schemathesis.Case) -> None:
    response = case.call(headers=AUTH, timeout=10)
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"}
        assert isinstance(body["error"]["code"], str) and body["error"]["code"]
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
        if response.status_code == 429:
            retry_after = {k.lower(): v for k, v in response.headers.items()}["retry-after"]
            assert int(retry_after[0] if isinstance(retry_after, list) else retry_after) >= 1


def test_no_server_errors_and_json_errors(api_schema: schemathesis.BaseSchema) -> None:
    checked = []
    operations = [r.ok() for r in api_schema.get_all_operations()]
    for operation, mode in itertools.product(operations, list(GenerationMode)):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=30,
            derandomize=True,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case: schemathesis.Case) -> None:
            check(case)

        try:
            run()
        except Unsatisfiable:
            # Nothing can be made invalid for this operation (e.g. GET /health takes no input).
            assert mode is GenerationMode.NEGATIVE
            continue
        checked.append(f"{operation.label} {mode.value}")
    assert "POST /api/v1/chat negative" in checked
    assert len(checked) >= 8

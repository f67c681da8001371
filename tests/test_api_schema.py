"""Schemathesis against the gateway's own /openapi.json: no 5xx, every error in the JSON shape."""

from __future__ import annotations

import itertools
import signal
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
        # The document itself needs the token (SPEC §5).
        yield schemathesis.openapi.from_url(f"{gw.base_url}/openapi.json", headers=AUTH)
    finally:
        code, _out, err = gw.stop(signal.SIGTERM)
        assert code == 0, err[-2000:]
        assert "Traceback" not in err


def check(case: schemathesis.Case) -> None:
    response = case.call(headers=AUTH, timeout=10)
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"}
        assert isinstance(body["error"]["code"], str) and body["error"]["code"]
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) >= 1


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

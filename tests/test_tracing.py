"""W3C trace context: a caller's `traceparent` (or a new trace) is logged as `trace_id` on
every line of that message and reaches the model provider as a child `traceparent`."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from open_clanker.core.tracing import TraceContext, parse_traceparent
from tests.doubles.openai_double import OpenAIDouble
from tests.gw_async import TOKEN, json_lines, signal_and_wait, start_gateway
from tests.proc import clean_env

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"00-{TRACE}-{PARENT}-01", TraceContext(TRACE, PARENT, "01")),
        (f"00-{TRACE}-{PARENT}-00", TraceContext(TRACE, PARENT, "00")),
        (f"  00-{TRACE}-{PARENT}-01 ", TraceContext(TRACE, PARENT, "01")),
        # A later version may add fields; its first four are read as version 00's.
        (f"01-{TRACE}-{PARENT}-01-extra", TraceContext(TRACE, PARENT, "01")),
        (f"00-{TRACE}-{PARENT}-01-extra", None),  # version 00 has exactly four fields
        (f"ff-{TRACE}-{PARENT}-01", None),  # version ff is invalid
        (f"00-{'0' * 32}-{PARENT}-01", None),  # all-zero trace id
        (f"00-{TRACE}-{'0' * 16}-01", None),  # all-zero parent id
        (f"00-{TRACE.upper()}-{PARENT}-01", None),  # hex is lowercase
        (f"00-{TRACE[:-1]}-{PARENT}-01", None),
        ("garbage", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_traceparent(header: str | None, expected: TraceContext | None) -> None:
    assert parse_traceparent(header) == expected


def test_child_keeps_the_trace_and_makes_a_new_span() -> None:
    ctx = TraceContext(TRACE, PARENT, "01")
    child = ctx.child()
    assert child.trace_id == TRACE and child.flags == "01"
    assert child.span_id != PARENT and len(child.span_id) == 16
    assert parse_traceparent(child.traceparent) == child


async def test_trace_in_logs_and_to_the_provider(tmp_path: Path) -> None:
    async with OpenAIDouble() as double:
        env = clean_env(
            tmp_path / "data",
            OPENCLAW_GATEWAY_TOKEN=TOKEN,
            OPENCLAW_OPENAI_API_KEY="sk-test",
            OPENCLAW_AGENT__PROVIDER="openai",
            OPENCLAW_AGENT__BASE_URL=double.base_url,
            OPENCLAW_LOGGING__FORMAT="json",
        )
        gw = await start_gateway(env, tmp_path)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        request_ids = []
        async with aiohttp.ClientSession() as http:
            given = {**auth, "traceparent": f"00-{TRACE}-{PARENT}-01"}
            body = {"text": "traced", "session": "t", "stream": False}
            async with http.post(f"{gw.base_url}/api/v1/chat", json=body, headers=given) as r:
                assert r.status == 200
                request_ids.append(r.headers["x-request-id"])
            streamed = {"text": "untraced", "session": "u", "stream": True}
            async with http.post(f"{gw.base_url}/api/v1/chat", json=streamed, headers=auth) as r:
                assert r.status == 200
                await r.read()
                request_ids.append(r.headers["x-request-id"])
        code, _out, err = await signal_and_wait(gw)
    assert code == 0, err[-2000:]

    sent = [parse_traceparent(req.headers.get("traceparent")) for req in double.requests]
    assert len(sent) == 2 and all(sent)
    first, second = sent
    assert first is not None and second is not None
    # The caller's trace goes on, as a new span of ours.
    assert first.trace_id == TRACE and first.span_id != PARENT
    # No traceparent: the gateway started a trace of its own.
    assert second.trace_id not in (TRACE, "0" * 32)

    lines = json_lines(err)
    for request_id, trace in zip(request_ids, (first, second), strict=True):
        mine = [line for line in lines if line.get("request_id") == request_id]
        events = {line["event"] for line in mine}
        assert {"reply_stored", "http_request"} <= events, events
        assert {line.get("trace_id") for line in mine} == {trace.trace_id}

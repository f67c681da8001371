"""`/metrics` scraped for real from a running gateway and parsed with prometheus-client's own
parser: every family the docs and the Grafana dashboard name, with its labels."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from open_clanker.config.model import Config
from tests.doubles import openai_double
from tests.doubles.telegram_double import TelegramDouble, message, update
from tests.harness import RunningGateway, running_gateway, settled

pytestmark = pytest.mark.usefixtures("data_dir")
ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "open-clanker.json"


async def scrape(http: aiohttp.ClientSession, gw: RunningGateway) -> dict[str, list[Sample]]:
    async with http.get(f"{gw.base_url}/metrics", headers=gw.auth) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
    families: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = list(family.samples)
    return families


def find(samples: list[Sample], name: str, **labels: str) -> list[Sample]:
    return [
        s
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def config(double: openai_double.OpenAIDouble, telegram: TelegramDouble) -> Config:
    return Config.model_validate(
        {
            "agent": {"provider": "openai", "base_url": double.base_url, "model": "gpt-test"},
            "access": {"dm_policy": "open"},
            "channels": {
                "telegram": {"bot_token": telegram.token, "api_base_url": telegram.base_url}
            },
        }
    )


async def test_scrape_names_labels_and_units(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCLAW_OPENAI_API_KEY", "sk-test")
    telegram = TelegramDouble()
    await telegram.start()
    try:
        async with (
            openai_double.OpenAIDouble() as double,
            running_gateway(config(double, telegram)) as gw,
            aiohttp.ClientSession() as http,
        ):
            body = {"text": "hello", "session": "m", "stream": True}
            async with http.post(f"{gw.base_url}/api/v1/chat", json=body, headers=gw.auth) as r:
                assert r.status == 200
                await r.read()
            async with http.get(
                f"{gw.base_url}/api/v1/sessions/api:m/messages", headers=gw.auth
            ) as r:
                assert r.status == 200
            async with http.get(f"{gw.base_url}/no/such/path/{'x' * 8}", headers=gw.auth) as r:
                assert r.status == 404
            telegram.fail_sends(1)  # one 429: the part is retried from the outbox
            telegram.push(update(message("hi there", chat_id=42)))
            await telegram.wait_until(lambda: any(s.chat_id == 42 for s in telegram.sent), 15)
            await settled(gw)
            families = await scrape(http, gw)
    finally:
        await telegram.stop()

    # The standard collectors, on the runtime's own registry.
    for name in (
        "process_cpu_seconds",
        "process_resident_memory_bytes",
        "process_open_fds",
        "python_info",
        "python_gc_collections",
    ):
        assert name in families, sorted(families)
    # _created series are off: they double every counter and no dashboard reads them.
    assert not [s for samples in families.values() for s in samples if s.name.endswith("_created")]

    (build,) = families["clanker_build_info"]
    assert build.name == "clanker_build_info" and build.value == 1
    assert build.labels["version"] and build.labels["python_version"]

    http_samples = families["clanker_http_requests"]
    chat = find(http_samples, "clanker_http_requests_total", route="/api/v1/chat", method="POST")
    assert chat and chat[0].labels["status"] == "200"
    # The route template, not the path a client sent.
    assert find(
        http_samples, "clanker_http_requests_total", route="/api/v1/sessions/{key}/messages"
    )
    assert find(http_samples, "clanker_http_requests_total", route="<unmatched>", status="404")
    assert not [s for s in http_samples if "x" * 8 in s.labels.get("route", "")]
    durations = families["clanker_http_request_duration_seconds"]
    assert find(durations, "clanker_http_request_duration_seconds_bucket", route="/api/v1/chat")

    ttft = families["clanker_provider_time_to_first_token_seconds"]
    (count,) = find(ttft, "clanker_provider_time_to_first_token_seconds_count", provider="openai")
    assert count.labels["model"] == "gpt-test" and count.value >= 1
    latency = families["clanker_reply_latency_seconds"]
    assert find(latency, "clanker_reply_latency_seconds_count", provider="openai", model="gpt-test")
    tokens = families["clanker_provider_tokens"]
    inputs = find(tokens, "clanker_provider_tokens_total", direction="input", model="gpt-test")
    outputs = find(tokens, "clanker_provider_tokens_total", direction="output", model="gpt-test")
    assert inputs and inputs[0].value >= 9 and outputs and outputs[0].value >= 4

    retries = find(families["clanker_delivery_retries"], "clanker_delivery_retries_total")
    assert retries and retries[0].labels["channel"] == "telegram" and retries[0].value >= 1
    sent = find(families["clanker_deliveries"], "clanker_deliveries_total", outcome="sent")
    assert sent and sent[0].labels["channel"] == "telegram"
    (depth,) = find(families["clanker_outbox_depth"], "clanker_outbox_depth", channel="telegram")
    assert depth.value == 0
    states = find(families["clanker_channel_state"], "clanker_channel_state", channel="telegram")
    assert {s.labels["state"]: s.value for s in states}["connected"] == 1
    assert sum(s.value for s in states) == 1
    assert "clanker_websocket_connections" in families
    messages = find(families["clanker_messages_in"], "clanker_messages_in_total", channel="api")
    assert messages and messages[0].value >= 1


def dashboard_metric_names(dashboard: dict[str, Any]) -> set[str]:
    exprs = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    assert exprs
    names = set()
    for expr in exprs:
        for name in re.findall(r"\b((?:clanker|process|python)_[a-z_]+)\b", expr):
            names.add(name)
    return names


def exposed_names(families: dict[str, list[Sample]]) -> set[str]:
    return {s.name for samples in families.values() for s in samples}


async def test_grafana_dashboard_names_only_exposed_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"]
    monkeypatch.setenv("OPENCLAW_OPENAI_API_KEY", "sk-test")
    telegram = TelegramDouble()
    await telegram.start()
    try:
        async with (
            openai_double.OpenAIDouble() as double,
            running_gateway(config(double, telegram)) as gw,
            aiohttp.ClientSession() as http,
        ):
            body = {"text": "hello", "session": "g", "stream": True}
            async with http.post(f"{gw.base_url}/api/v1/chat", json=body, headers=gw.auth) as r:
                await r.read()
            telegram.fail_sends(1, status=403)  # a failed delivery, so that series exists
            telegram.push(update(message("hi", chat_id=42)))
            await telegram.wait_until(lambda: "sendMessage" in telegram.methods(), 15)
            await settled(gw)
            # A re-delivered platform message: counted as an error of kind "duplicate".
            again = message("once", chat_id=44, message_id=777)
            telegram.push(update(again))
            telegram.push(update(again))
            await telegram.wait_until(lambda: any(s.chat_id == 44 for s in telegram.sent), 15)
            telegram.fail_sends(1)
            telegram.push(update(message("again", chat_id=43)))
            await telegram.wait_until(lambda: any(s.chat_id == 43 for s in telegram.sent), 15)
            await settled(gw)
            families = await scrape(http, gw)
    finally:
        await telegram.stop()
    missing = dashboard_metric_names(dashboard) - exposed_names(families)
    assert not missing, f"the dashboard queries metrics the gateway does not expose: {missing}"

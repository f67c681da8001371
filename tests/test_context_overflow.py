"""Context too long: each vendor's real refusal classified at the border, not retried by the
chain, and answered by trimming harder once, then with a reply naming /new (SPEC §8)."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from open_clanker.agent.anthropic import AnthropicProvider
from open_clanker.agent.base import ProviderRequest
from open_clanker.agent.chain import ProviderChain
from open_clanker.agent.openai import OpenAIProvider
from open_clanker.agent.select import ProviderChoice
from open_clanker.agent.wire_errors import error_from_status, error_from_stream
from open_clanker.config.model import Config
from open_clanker.core.errors import ContextOverflow, ProviderError
from open_clanker.core.types import ChatTurn, Role
from open_clanker.pipeline.overflow import OVERFLOW_TEXT
from tests.doubles import anthropic_double as ad
from tests.doubles import openai_double as od
from tests.harness import RunningGateway, running_gateway

pytestmark = pytest.mark.usefixtures("data_dir")

OPENAI_8K = (
    "This model's maximum context length is 8192 tokens. However, your messages resulted in "
    "8227 tokens. Please reduce the length of the messages."
)
OPENAI_PARTS = (
    "This model's maximum context length is 4097 tokens. However, you requested 4120 tokens "
    "(3120 in the messages, 1000 in the completion). Please reduce the length of the messages "
    "or completion."
)


def openai_error(message: str, code: str | None = "context_length_exceeded") -> str:
    body = {"message": message, "type": "invalid_request_error", "param": "messages", "code": code}
    return json.dumps({"error": body})


def anthropic_error(message: str, kind: str = "invalid_request_error") -> str:
    return json.dumps(
        {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_01"}
    )


@pytest.mark.parametrize(
    ("status", "body", "overflow"),
    [
        (400, openai_error(OPENAI_8K), ContextOverflow(8227, 8192)),
        (400, openai_error(OPENAI_PARTS), ContextOverflow(3120, 3097)),
        (400, openai_error("Your input exceeds the context window of this model."), ContextOverflow()),
        # An OpenAI-compatible server (vLLM) without OpenAI's code.
        (400, json.dumps({"object": "error", "message": "This model's maximum context length is 131072 tokens. However, you requested 351430 tokens. Please reduce the length of the messages or completion.", "type": "BadRequestError", "param": None, "code": 400}), ContextOverflow(351430, 131072)),
        (400, anthropic_error("prompt is too long: 208656 tokens > 200000 maximum"), ContextOverflow(208656, 200000)),
        (400, anthropic_error("input length and `max_tokens` exceed context limit: 199759 + 8192 > 200000, decrease input length or `max_tokens` and try again"), ContextOverflow(199759, 191808)),
        (413, anthropic_error("Request exceeds the maximum allowed number of bytes.", "request_too_large"), ContextOverflow()),
        (413, "<html><head><title>413 Request Entity Too Large</title></head></html>", ContextOverflow()),
        # Not an overflow.
        (400, anthropic_error("messages: roles must alternate between user and assistant"), None),
        (400, openai_error("Invalid value for 'model'.", code="model_not_found"), None),
        (429, openai_error("Rate limit reached for requests", code="rate_limit_exceeded"), None),
        (500, anthropic_error("Internal server error", "api_error"), None),
    ],
)  # fmt: skip
def test_vendor_errors_are_classified(
    status: int, body: str, overflow: ContextOverflow | None
) -> None:
    err = error_from_status("vendor", status, {}, body)
    assert err.context_overflow == overflow
    if overflow is not None:
        assert not err.retryable  # the same request would be refused again
        assert "too long for the model's context" in err.message


def test_an_overflow_inside_a_stream_is_classified_too() -> None:
    err = error_from_stream("openai", {"code": "context_length_exceeded", "message": OPENAI_8K})
    assert err.context_overflow == ContextOverflow(8227, 8192)
    assert not err.retryable
    busy = error_from_stream("anthropic", {"type": "overloaded_error", "message": "Overloaded"})
    assert busy.context_overflow is None and busy.retryable


async def test_the_chain_hands_an_overflow_back_without_retry_or_fallback() -> None:
    request = ProviderRequest("Be brief.", (ChatTurn(Role.USER, "x" * 3000),), 64)
    async with (
        od.OpenAIDouble() as primary,
        ad.AnthropicDouble() as fallback,
        aiohttp.ClientSession() as http,
    ):
        primary.context_limit = 100
        providers = [
            OpenAIProvider(
                ProviderChoice("openai", "gpt-t", primary.base_url, "sk-test", "t"), http
            ),
            AnthropicProvider(
                ProviderChoice("anthropic", "c", fallback.base_url, "sk-ant-test", "t"), http
            ),
        ]
        chain = ProviderChain(providers, max_retries=3, sleep=_no_sleep)
        with pytest.raises(ProviderError) as complete:
            await chain.complete(request)
        with pytest.raises(ProviderError) as streamed:
            async for _event in chain.stream(request):
                pass
    for raised in (complete, streamed):
        assert raised.value.context_overflow == ContextOverflow(primary.prompt_counts[0], 100)
    assert len(primary.requests) == 2  # once per call: no retries
    assert fallback.requests == []  # and no fallback


async def _no_sleep(_s: float) -> None:
    return None


# -- through the gateway, against each vendor's double --------------------------------------


@dataclass(frozen=True)
class Vendor:
    name: str
    env: str
    make: Callable[[], Any]  # the double
    transcript: Callable[[dict[str, Any]], list[tuple[str, str]]]  # (role, text), no system

    def config(self, base_url: str, **agent: Any) -> Config:
        return Config.model_validate(
            {
                "agent": {"provider": self.name, "base_url": base_url, "stream": False, **agent},
                "limits": {"messages_per_minute": 1000},  # 200 turns in a few seconds
            }
        )


def _openai_transcript(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in body["messages"] if m["role"] != "system"]


def _anthropic_transcript(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in body["messages"]]


VENDORS = [
    Vendor("openai", "OPENCLAW_OPENAI_API_KEY", od.OpenAIDouble, _openai_transcript),
    Vendor("anthropic", "OPENCLAW_ANTHROPIC_API_KEY", ad.AnthropicDouble, _anthropic_transcript),
]
KEYS = {"openai": "sk-test", "anthropic": "sk-ant-test"}


@pytest.fixture(params=VENDORS, ids=lambda v: v.name)
def vendor(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Vendor:
    v: Vendor = request.param
    monkeypatch.setenv(v.env, KEYS[v.name])
    return v


@asynccontextmanager
async def gateway(
    vendor: Vendor, context_limit: int, **agent: Any
) -> AsyncIterator[tuple[RunningGateway, Any, aiohttp.ClientSession]]:
    async with vendor.make() as double:
        double.context_limit = context_limit
        config = vendor.config(double.base_url, **agent)
        async with running_gateway(config) as gw, aiohttp.ClientSession() as http:
            yield gw, double, http


async def chat(
    http: aiohttp.ClientSession, gw: RunningGateway, text: str, session: str = "long"
) -> tuple[int, dict[str, Any]]:
    body = {"text": text, "session": session}
    async with http.post(f"{gw.base_url}/api/v1/chat", json=body, headers=gw.auth) as r:
        return r.status, await r.json()


def turn_text(i: int, size: int = 2000) -> str:
    return f"turn {i}: ".ljust(size, "z")


async def test_an_overflow_is_trimmed_harder_and_answered(vendor: Vendor) -> None:
    # The gateway's own budget is far away; the model's window (3,000 of its tokens) is not.
    async with gateway(vendor, 3000, history_tokens=100_000, history_messages=1000) as (
        gw,
        double,
        http,
    ):
        for i in range(6):
            status, body = await chat(http, gw, turn_text(i))
            assert status == 200, body
            assert body["reply"]["content"] == "Hello from the double."
    counts = double.prompt_counts
    # Turns 0-3 fit; turn 4 was refused (over 3,000), then sent shorter and answered; the
    # limit it named is remembered, so turn 5 goes out short enough at once.
    assert len(counts) == 7
    assert [c > 3000 for c in counts] == [False] * 4 + [True] + [False] * 2
    refused, retried = double.requests[4].body, double.requests[5].body
    assert len(vendor.transcript(retried)) < len(vendor.transcript(refused))
    assert vendor.transcript(retried)[0][0] == "user"
    assert vendor.transcript(retried)[-1] == ("user", turn_text(4))


async def test_a_message_too_long_alone_gets_a_reply_naming_new(vendor: Vendor) -> None:
    async with gateway(vendor, 3000) as (gw, double, http):
        status, _ = await chat(http, gw, "a short question")
        assert status == 200
        status, body = await chat(http, gw, turn_text(1, size=12_000))  # 4,000+ tokens alone
        async with http.get(
            f"{gw.base_url}/api/v1/sessions/api:long/messages", headers=gw.auth
        ) as r:
            stored = (await r.json())["messages"]
    assert status == 502
    assert "/new" in body["error"]["message"]
    # Asked with the history, then with the newest message alone: refused both times.
    assert len(double.prompt_counts) == 3
    assert len(vendor.transcript(double.requests[1].body)) == 3
    assert vendor.transcript(double.requests[2].body) == [("user", turn_text(1, size=12_000))]
    assert stored[-1]["role"] == "assistant"
    assert stored[-1]["text"] == OVERFLOW_TEXT


async def test_a_413_is_answered_with_half_the_context(vendor: Vendor) -> None:
    too_large = {
        "openai": od.Reply(status=413, error_type="invalid_request_error", error_message="Request too large."),
        "anthropic": ad.Reply(status=413, error_type="request_too_large", error_message="Request exceeds the maximum allowed number of bytes."),
    }[vendor.name]  # fmt: skip
    async with gateway(vendor, 100_000, history_messages=1000) as (gw, double, http):
        for i in range(4):
            assert (await chat(http, gw, turn_text(i)))[0] == 200
        double.script(too_large)
        status, body = await chat(http, gw, turn_text(4))
    assert status == 200, body
    full, halved = (vendor.transcript(double.requests[k].body) for k in (4, 5))
    assert len(full) == 9
    assert len(halved) < len(full) and halved[0][0] == "user" and halved[-1] == full[-1]


async def test_two_hundred_turns_of_2000_characters_stay_inside_the_budget(
    vendor: Vendor,
) -> None:
    # The double counts characters / 3 and refuses anything over the budget, so an estimate
    # left uncorrected (characters / 4) would overflow within ten turns.
    budget = 6000
    async with gateway(vendor, budget, history_tokens=budget, history_messages=1000) as (
        gw,
        double,
        http,
    ):
        for i in range(200):
            status, body = await chat(http, gw, turn_text(i))
            assert status == 200, (i, body)
            assert body["reply"]["content"] == "Hello from the double."
    assert len(double.requests) == 200  # one request per turn: nothing refused, nothing retried
    assert all(c <= budget for c in double.prompt_counts)
    assert max(double.prompt_counts) > budget * 0.85  # and the budget is used, not wasted
    for i, received in enumerate(double.requests):
        transcript = vendor.transcript(received.body)
        assert transcript[-1] == ("user", turn_text(i))  # the newest message, last
        assert transcript[0][0] == "user"
        assert all(a[0] != b[0] for a, b in itertools.pairwise(transcript))
    last = vendor.transcript(double.requests[-1].body)
    assert 5 < len(last) < 20  # the oldest turns were left out


async def test_a_streamed_answer_after_an_overflow_is_shown_once(vendor: Vendor) -> None:
    async with gateway(vendor, 1500, stream=True) as (gw, double, http):
        for i in range(2):
            assert (await chat(http, gw, turn_text(i)))[0] == 200
        body = {"text": turn_text(2), "session": "long", "stream": True}
        async with http.post(f"{gw.base_url}/api/v1/chat", json=body, headers=gw.auth) as r:
            raw = (await r.read()).decode()
    events = [
        block.split("\n", 1)[0].removeprefix("event: ") for block in raw.strip().split("\n\n")
    ]
    assert events[-1] == "done"
    assert "reset" not in events and "error" not in events
    done = json.loads(raw.strip().split("\n\n")[-1].split("\n", 1)[1].removeprefix("data: "))
    assert done["reply"]["content"] == "Hello from the double."
    assert [c > 1500 for c in double.prompt_counts] == [False, False, True, False]

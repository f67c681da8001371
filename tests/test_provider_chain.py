"""ProviderChain: retries, Retry-After, fallbacks and stream de-duplication, over real HTTP."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest

from open_clanker.agent.anthropic import AnthropicProvider
from open_clanker.agent.base import (
    Provider,
    ProviderRequest,
    StreamDone,
    StreamEvent,
    StreamReset,
    TextDelta,
)
from open_clanker.agent.chain import (
    MAX_RETRY_AFTER_S,
    ProviderChain,
    backoff_delay,
    catch_up,
    settle,
)
from open_clanker.agent.config import AgentConfig, FallbackConfig
from open_clanker.agent.echo import EchoProvider
from open_clanker.agent.factory import build_chain
from open_clanker.agent.http import probe_openai_compatible
from open_clanker.agent.openai import OpenAIProvider
from open_clanker.agent.select import ProviderChoice
from open_clanker.core.errors import ProviderError
from open_clanker.core.types import AgentResponse, ChatTurn, Role
from tests.doubles import anthropic_double as ad
from tests.doubles import openai_double as od

REQUEST = ProviderRequest("Be brief.", (ChatTurn(Role.USER, "Hello?"),), 64)


class Sleeps:
    """The chain's injected sleep: records the delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def anthropic_double() -> AsyncIterator[ad.AnthropicDouble]:
    async with ad.AnthropicDouble() as d:
        yield d


@pytest.fixture
async def openai_double() -> AsyncIterator[od.OpenAIDouble]:
    async with od.OpenAIDouble() as d:
        yield d


def claude(d: ad.AnthropicDouble, http: aiohttp.ClientSession, timeout_s: float = 5) -> Provider:
    choice = ProviderChoice("anthropic", "claude-test", d.base_url, d.api_key, "test")
    return AnthropicProvider(choice, http, timeout_s=timeout_s)


def gpt(d: od.OpenAIDouble, http: aiohttp.ClientSession) -> Provider:
    return OpenAIProvider(ProviderChoice("openai", "gpt-test", d.base_url, d.api_key, "t"), http)


def visible(events: list[StreamEvent]) -> str:
    """What a user watching the stream sees at the end."""
    text = ""
    for event in events:
        if isinstance(event, StreamReset):
            text = ""
        elif isinstance(event, TextDelta):
            text += event.text
    return text


async def collect(chain: ProviderChain) -> list[StreamEvent]:
    return [event async for event in chain.stream(REQUEST)]


# --- pure decisions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "retry_after", "jitter", "expected"),
    [
        (0, 7.0, 0.9, 7.0),  # the server's word wins
        (0, 120.0, 0.9, MAX_RETRY_AFTER_S),  # ...capped
        (0, -1.0, 0.9, 0.0),
        (0, None, 0.0, 0.25),  # base 0.5, jitter takes it to between half and all of it
        (0, None, 1.0, 0.5),
        (2, None, 1.0, 2.0),
        (10, None, 1.0, 8.0),  # exponential growth is capped
    ],
)
def test_backoff_delay(
    attempt: int, retry_after: float | None, jitter: float, expected: float
) -> None:
    assert backoff_delay(attempt, retry_after, jitter=lambda: jitter) == expected


@pytest.mark.parametrize(
    ("shown", "received", "events", "after"),
    [
        ("", "He", [TextDelta("He")], "He"),
        ("Hello", "Hel", [], "Hello"),  # a retry replaying what was shown: silence
        ("Hello", "Hello", [], "Hello"),
        ("Hello", "Hello wo", [TextDelta(" wo")], "Hello wo"),  # only the rest
        ("Hello", "Hey", [StreamReset(), TextDelta("Hey")], "Hey"),  # departs: start over
    ],
)
def test_catch_up(shown: str, received: str, events: list[StreamEvent], after: str) -> None:
    assert catch_up(shown, received) == (events, after)


@pytest.mark.parametrize(
    ("shown", "final", "events"),
    [
        ("Hello", "Hello", []),
        ("Hel", "Hello", [TextDelta("lo")]),
        ("Hello there", "Hello", [StreamReset(), TextDelta("Hello")]),
        ("Hello", "", [StreamReset()]),
    ],
)
def test_settle(shown: str, final: str, events: list[StreamEvent]) -> None:
    assert settle(shown, final) == events


# --- retries over HTTP ------------------------------------------------------------------------


async def test_rate_limit_waits_retry_after_then_succeeds(
    anthropic_double: ad.AnthropicDouble, http: aiohttp.ClientSession
) -> None:
    anthropic_double.script(ad.Reply(status=429, retry_after="3", error_type="rate_limit_error"))
    sleeps = Sleeps()
    reply = await ProviderChain([claude(anthropic_double, http)], 2, sleeps).complete(REQUEST)
    assert reply.content == "Hello from the double."
    assert sleeps.delays == [3.0]
    assert len(anthropic_double.requests) == 2


async def test_huge_retry_after_is_capped(
    openai_double: od.OpenAIDouble, http: aiohttp.ClientSession
) -> None:
    openai_double.script(od.Reply(status=429, retry_after="86400"))
    sleeps = Sleeps()
    await ProviderChain([gpt(openai_double, http)], 1, sleeps).complete(REQUEST)
    assert sleeps.delays == [MAX_RETRY_AFTER_S]


async def test_server_error_then_success_with_jittered_backoff(
    anthropic_double: ad.AnthropicDouble, http: aiohttp.ClientSession
) -> None:
    anthropic_double.script(ad.Reply(status=500), ad.Reply(status=529))
    sleeps = Sleeps()
    events = await collect(ProviderChain([claude(anthropic_double, http)], 2, sleeps))
    assert visible(events) == "Hello from the double."
    assert len(sleeps.delays) == 2
    assert 0.25 <= sleeps.delays[0] <= 0.5
    assert 0.5 <= sleeps.delays[1] <= 1.0
    assert len(anthropic_double.requests) == 3


async def test_timeout_then_success(
    anthropic_double: ad.AnthropicDouble, http: aiohttp.ClientSession
) -> None:
    anthropic_double.script(ad.Reply(delay_s=5))
    sleeps = Sleeps()
    chain = ProviderChain([claude(anthropic_double, http, timeout_s=0.2)], 1, sleeps)
    reply = await chain.complete(REQUEST)
    assert reply.content == "Hello from the double."
    assert len(sleeps.delays) == 1
    assert len(anthropic_double.requests) == 2


@pytest.mark.parametrize("vendor", ["anthropic", "openai"])
async def test_stream_cut_midway_then_success_shows_text_once(
    anthropic_double: ad.AnthropicDouble,
    openai_double: od.OpenAIDouble,
    http: aiohttp.ClientSession,
    vendor: str,
) -> None:
    text = "The quick brown fox jumps."
    if vendor == "anthropic":
        anthropic_double.script(ad.Reply(text=text, cut_after=3), ad.Reply(text=text))
        provider = claude(anthropic_double, http)
    else:
        openai_double.script(od.Reply(text=text, cut_after=3), od.Reply(text=text))
        provider = gpt(openai_double, http)
    events = await collect(ProviderChain([provider], 2, Sleeps()))

    assert not any(isinstance(e, StreamReset) for e in events)
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert deltas == ["The ", "quick ", "brown ", "fox ", "jumps."]  # each piece exactly once
    done = events[-1]
    assert isinstance(done, StreamDone)
    assert done.response.content == text


async def test_stream_retry_with_different_text_resets_first(
    anthropic_double: ad.AnthropicDouble, http: aiohttp.ClientSession
) -> None:
    anthropic_double.script(
        ad.Reply(text="Sure, here it is.", cut_after=2), ad.Reply(text="Sure thing.")
    )
    events = await collect(ProviderChain([claude(anthropic_double, http)], 1, Sleeps()))
    assert visible(events) == "Sure thing."
    resets = [i for i, e in enumerate(events) if isinstance(e, StreamReset)]
    assert len(resets) == 1
    assert [e.text for e in events[: resets[0]] if isinstance(e, TextDelta)] == ["Sure, ", "here "]


# --- no retry, fallbacks, giving up -----------------------------------------------------------


async def test_no_retry_on_bad_key(
    anthropic_double: ad.AnthropicDouble, http: aiohttp.ClientSession
) -> None:
    choice = ProviderChoice("anthropic", "m", anthropic_double.base_url, "sk-ant-wrong", "t")
    sleeps = Sleeps()
    chain = ProviderChain([AnthropicProvider(choice, http)], 3, sleeps)
    with pytest.raises(ProviderError) as info:
        await chain.complete(REQUEST)
    assert info.value.auth
    assert len(anthropic_double.requests) == 1
    assert sleeps.delays == []


async def test_no_retry_on_bad_request_in_a_stream(
    openai_double: od.OpenAIDouble, http: aiohttp.ClientSession
) -> None:
    openai_double.script(od.Reply(status=400, error_type="invalid_request_error"))
    with pytest.raises(ProviderError) as info:
        await collect(ProviderChain([gpt(openai_double, http)], 3, Sleeps()))
    assert info.value.status_code == 400
    assert len(openai_double.requests) == 1


@pytest.mark.parametrize("streaming", [False, True])
async def test_fallbacks_are_tried_in_order(
    anthropic_double: ad.AnthropicDouble,
    openai_double: od.OpenAIDouble,
    http: aiohttp.ClientSession,
    streaming: bool,
) -> None:
    anthropic_double.default = ad.Reply(status=503)
    openai_double.default = od.Reply(status=500)
    chain = ProviderChain(
        [claude(anthropic_double, http), gpt(openai_double, http), EchoProvider()], 1, Sleeps()
    )
    if streaming:
        last = (await collect(chain))[-1]
        assert isinstance(last, StreamDone)
        reply = last.response
    else:
        reply = await chain.complete(REQUEST)
    assert reply.provider == "echo"
    assert len(anthropic_double.requests) == 2  # first try + one retry each
    assert len(openai_double.requests) == 2


async def test_bad_key_moves_straight_to_the_fallback(
    anthropic_double: ad.AnthropicDouble,
    openai_double: od.OpenAIDouble,
    http: aiohttp.ClientSession,
) -> None:
    bad = ProviderChoice("anthropic", "m", anthropic_double.base_url, "wrong", "t")
    chain = ProviderChain([AnthropicProvider(bad, http), gpt(openai_double, http)], 2, Sleeps())
    reply = await chain.complete(REQUEST)
    assert reply.provider == "openai"
    assert (len(anthropic_double.requests), len(openai_double.requests)) == (1, 1)


@pytest.mark.parametrize("streaming", [False, True])
async def test_all_failing_raises_the_last_error(
    anthropic_double: ad.AnthropicDouble,
    openai_double: od.OpenAIDouble,
    http: aiohttp.ClientSession,
    streaming: bool,
) -> None:
    anthropic_double.default = ad.Reply(status=500)
    openai_double.default = od.Reply(status=503, error_message="Service unavailable")
    chain = ProviderChain([claude(anthropic_double, http), gpt(openai_double, http)], 0, Sleeps())
    call = collect(chain) if streaming else chain.complete(REQUEST)
    with pytest.raises(ProviderError) as info:
        await call
    err = info.value
    assert (err.provider, err.status_code, err.status) == ("openai", 503, 502)
    assert "Service unavailable" in err.message


class Unfinished:
    """A provider whose stream stops without a StreamDone (a bug, or a swallowed cut)."""

    name = "unfinished"
    model = "m"

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, request: ProviderRequest) -> AgentResponse:
        raise NotImplementedError

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamEvent]:
        self.calls += 1
        yield TextDelta("partial")


async def test_a_stream_without_done_is_retried_then_reported() -> None:
    provider = Unfinished()
    events: list[StreamEvent] = []

    async def consume() -> None:
        async for event in ProviderChain([provider], 2, Sleeps()).stream(REQUEST):
            events.append(event)

    with pytest.raises(ProviderError, match="without finishing") as info:
        await consume()
    assert info.value.retryable
    assert provider.calls == 3
    assert events == [TextDelta("partial")]  # the replays were not shown again


# --- the chain as the gateway builds it -------------------------------------------------------


async def test_build_chain_wires_primary_and_fallbacks(
    anthropic_double: ad.AnthropicDouble,
    openai_double: od.OpenAIDouble,
    http: aiohttp.ClientSession,
) -> None:
    config = AgentConfig(
        provider="openai",
        base_url=openai_double.base_url,
        max_retries=0,
        timeout_s=5,
        fallbacks=[
            FallbackConfig(
                provider="anthropic", base_url=anthropic_double.base_url, api_key_env="AK"
            ),
            FallbackConfig(provider="echo"),
        ],
    )
    env = {"OPENAI_API_KEY": "sk-test", "AK": "sk-ant-test"}
    chain, choice = await build_chain(config, http, env)
    assert [p.name for p in chain.providers] == ["openai", "anthropic", "echo"]
    assert choice.reason == "agent.provider = 'openai', key from OPENAI_API_KEY"

    openai_double.script(od.Reply(status=500))
    reply = await chain.complete(REQUEST)
    assert reply.provider == "anthropic"
    assert anthropic_double.requests[0].headers["x-api-key"] == "sk-ant-test"
    assert openai_double.requests[0].headers["authorization"] == "Bearer sk-test"


async def test_probe_finds_a_compatible_server(
    openai_double: od.OpenAIDouble, http: aiohttp.ClientSession
) -> None:
    assert await probe_openai_compatible(http, openai_double.base_url)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert not await probe_openai_compatible(http, f"http://127.0.0.1:{port}/v1")

"""OpenAIProvider against a loopback Chat Completions double, over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from open_clanker.agent.base import ProviderRequest, StreamDone, StreamEvent, TextDelta
from open_clanker.agent.openai import OpenAIProvider
from open_clanker.agent.select import ProviderChoice
from open_clanker.core.errors import ProviderError
from open_clanker.core.types import ChatTurn, Role
from tests.doubles.openai_double import OpenAIDouble, Reply

REQUEST = ProviderRequest(
    system_prompt="Be brief.",
    turns=(
        ChatTurn(Role.USER, "Hi, I am Ada."),
        ChatTurn(Role.ASSISTANT, "Hello Ada!"),
        ChatTurn(Role.USER, "What is my name?"),
    ),
    max_tokens=64,
)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def double() -> AsyncIterator[OpenAIDouble]:
    async with OpenAIDouble() as d:
        yield d


def make(
    double: OpenAIDouble,
    http: aiohttp.ClientSession,
    *,
    key: str | None = None,
    timeout_s: float = 5.0,
) -> OpenAIProvider:
    choice = ProviderChoice(
        "openai", "gpt-test", double.base_url, double.api_key if key is None else key, "test"
    )
    return OpenAIProvider(choice, http, timeout_s=timeout_s)


async def drain(provider: OpenAIProvider, seen: list[str]) -> None:
    async for event in provider.stream(REQUEST):
        assert isinstance(event, TextDelta)  # never a StreamDone for a broken stream
        seen.append(event.text)


async def collect(provider: OpenAIProvider) -> list[StreamEvent]:
    return [event async for event in provider.stream(REQUEST)]


async def test_complete_sends_a_chat_completions_request(
    double: OpenAIDouble, http: aiohttp.ClientSession
) -> None:
    reply = await make(double, http).complete(REQUEST)

    (got,) = double.requests
    assert got.path == "/v1/chat/completions"
    assert got.headers["authorization"] == "Bearer sk-test"
    assert got.headers["content-type"] == "application/json"
    assert got.body["model"] == "gpt-test"
    assert got.body["max_tokens"] == 64
    assert got.body["stream"] is False
    assert "stream_options" not in got.body
    assert [(m["role"], m["content"]) for m in got.body["messages"]] == [
        ("system", "Be brief."),
        ("user", "Hi, I am Ada."),
        ("assistant", "Hello Ada!"),
        ("user", "What is my name?"),
    ]
    assert reply.content == "Hello from the double."
    assert (reply.provider, reply.model, reply.finish_reason) == ("openai", "gpt-test", "stop")
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (9, 4)
    assert reply.usage.total_tokens == 13
    assert reply.latency_ms > 0


async def test_stream_yields_deltas_usage_and_one_done(
    double: OpenAIDouble, http: aiohttp.ClientSession
) -> None:
    double.script(Reply(text="One two three.", prompt_tokens=30, completion_tokens=3))
    events = await collect(make(double, http))

    assert [e.text for e in events if isinstance(e, TextDelta)] == ["One ", "two ", "three."]
    assert sum(isinstance(e, StreamDone) for e in events) == 1
    last = events[-1]
    assert isinstance(last, StreamDone)
    assert last.response.content == "One two three."
    assert last.response.usage.total_tokens == 33
    (got,) = double.requests
    assert got.body["stream"] is True
    assert got.body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("streaming", [False, True])
async def test_tool_calls_and_reasoning_are_ignored(
    double: OpenAIDouble, http: aiohttp.ClientSession, streaming: bool
) -> None:
    double.script(Reply(text="Just text.", extra_parts=True))
    provider = make(double, http)
    if streaming:
        events = await collect(provider)
        assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Just text."
        last = events[-1]
        assert isinstance(last, StreamDone)
        content = last.response.content
    else:
        content = (await provider.complete(REQUEST)).content
    assert content == "Just text."


async def test_keyless_server_gets_no_authorization_header(http: aiohttp.ClientSession) -> None:
    async with OpenAIDouble(api_key="") as local:
        reply = await make(local, http).complete(REQUEST)
        (got,) = local.requests
    assert "authorization" not in got.headers
    assert reply.content == "Hello from the double."


async def test_stream_without_done_after_finish_reason_is_accepted(
    double: OpenAIDouble, http: aiohttp.ClientSession
) -> None:
    double.script(Reply(text="Fine.", no_done=True))
    events = await collect(make(double, http))
    last = events[-1]
    assert isinstance(last, StreamDone)
    assert last.response.content == "Fine."


async def test_rate_limit_and_auth_errors(
    double: OpenAIDouble, http: aiohttp.ClientSession
) -> None:
    double.script(Reply(status=429, error_message="Rate limit reached", retry_after="2"))
    with pytest.raises(ProviderError) as info:
        await make(double, http).complete(REQUEST)
    assert (info.value.retryable, info.value.retry_after) == (True, 2.0)
    assert "Rate limit reached" in info.value.message

    with pytest.raises(ProviderError) as info:
        await collect(make(double, http, key="sk-wrong"))
    assert info.value.auth
    assert not info.value.retryable
    assert "sk-wrong" not in info.value.message
    assert "Incorrect API key" in info.value.message


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (Reply(cut_after=2), "closed the connection"),
        (Reply(end_after=2), "before it was complete"),
        (Reply(stall_after=2), "in time"),
        (Reply(error_chunk="server_error"), "mid-answer"),
    ],
    ids=["cut", "ended-early", "stalled", "error-chunk"],
)
async def test_broken_streams_are_retryable_errors(
    double: OpenAIDouble, http: aiohttp.ClientSession, reply: Reply, words: str
) -> None:
    double.script(reply)
    seen: list[str] = []
    with pytest.raises(ProviderError, match=words) as info:
        await drain(make(double, http, timeout_s=0.3), seen)
    assert info.value.retryable
    assert seen


async def test_slow_answer_times_out_retryably(
    double: OpenAIDouble, http: aiohttp.ClientSession
) -> None:
    double.script(Reply(delay_s=5))
    with pytest.raises(ProviderError, match="in time") as info:
        await make(double, http, timeout_s=0.2).complete(REQUEST)
    assert info.value.retryable

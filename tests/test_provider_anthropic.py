"""AnthropicProvider against a loopback double of the Messages API, over real HTTP."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest

from open_clanker.agent.anthropic import AnthropicProvider
from open_clanker.agent.base import ProviderRequest, StreamDone, StreamEvent, TextDelta
from open_clanker.agent.select import ProviderChoice
from open_clanker.core.errors import ProviderError
from open_clanker.core.types import ChatTurn, Role
from tests.doubles.anthropic_double import AnthropicDouble, Reply

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
async def double() -> AsyncIterator[AnthropicDouble]:
    async with AnthropicDouble() as d:
        yield d


def make(
    double: AnthropicDouble,
    http: aiohttp.ClientSession,
    *,
    key: str | None = None,
    timeout_s: float = 5.0,
) -> AnthropicProvider:
    choice = ProviderChoice(
        "anthropic", "claude-test", double.base_url, double.api_key if key is None else key, "test"
    )
    return AnthropicProvider(choice, http, timeout_s=timeout_s)


async def drain(provider: AnthropicProvider, seen: list[str]) -> None:
    async for event in provider.stream(REQUEST):
        assert isinstance(event, TextDelta)  # never a StreamDone for a broken stream
        seen.append(event.text)


async def collect(provider: AnthropicProvider) -> list[StreamEvent]:
    return [event async for event in provider.stream(REQUEST)]


async def test_complete_sends_the_messages_api_request(
    double: AnthropicDouble, http: aiohttp.ClientSession
) -> None:
    reply = await make(double, http).complete(REQUEST)

    (got,) = double.requests
    assert got.path == "/v1/messages"
    assert got.headers["x-api-key"] == "sk-ant-test"
    assert got.headers["anthropic-version"] == "2023-06-01"
    assert got.headers["content-type"] == "application/json"
    assert "anthropic-dangerous-direct-browser-access" not in got.headers
    assert "authorization" not in got.headers
    assert got.body["model"] == "claude-test"
    assert got.body["max_tokens"] == 64
    assert got.body["system"] == "Be brief."
    assert "stream" not in got.body
    assert [(m["role"], m["content"]) for m in got.body["messages"]] == [
        ("user", "Hi, I am Ada."),
        ("assistant", "Hello Ada!"),
        ("user", "What is my name?"),
    ]
    assert reply.content == "Hello from the double."
    assert (reply.provider, reply.model, reply.finish_reason) == (
        "anthropic",
        "claude-test",
        "stop",
    )
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (12, 5)
    assert reply.usage.total_tokens == 17
    assert reply.latency_ms > 0


async def test_stream_yields_deltas_then_one_done(
    double: AnthropicDouble, http: aiohttp.ClientSession
) -> None:
    double.script(Reply(text="One two three.", input_tokens=20, output_tokens=3))
    events = await collect(make(double, http))

    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert deltas == ["One ", "two ", "three."]
    assert isinstance(events[-1], StreamDone)
    assert sum(isinstance(e, StreamDone) for e in events) == 1
    done = events[-1].response
    assert done.content == "One two three."
    assert (done.usage.prompt_tokens, done.usage.completion_tokens, done.usage.total_tokens) == (
        20,
        3,
        23,
    )
    (got,) = double.requests
    assert got.body["stream"] is True
    assert got.headers["accept"] == "text/event-stream"


@pytest.mark.parametrize("streaming", [False, True])
async def test_thinking_and_tool_blocks_are_ignored(
    double: AnthropicDouble, http: aiohttp.ClientSession, streaming: bool
) -> None:
    double.script(Reply(text="Just text.", extra_blocks=True, stop_reason="tool_use"))
    provider = make(double, http)
    if streaming:
        events = await collect(provider)
        assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Just text."
        last = events[-1]
        assert isinstance(last, StreamDone)
        reply = last.response
    else:
        reply = await provider.complete(REQUEST)
    assert reply.content == "Just text."
    assert reply.finish_reason == "tool_calls"


async def test_rate_limit_carries_retry_after(
    double: AnthropicDouble, http: aiohttp.ClientSession
) -> None:
    double.script(
        Reply(status=429, error_type="rate_limit_error", error_message="Slow down", retry_after="7")
    )
    with pytest.raises(ProviderError) as info:
        await make(double, http).complete(REQUEST)
    err = info.value
    assert (err.retryable, err.retry_after, err.status_code, err.provider) == (
        True,
        7.0,
        429,
        "anthropic",
    )
    assert "Slow down" in err.message


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (529, True), (400, False)])
async def test_status_errors(
    double: AnthropicDouble, http: aiohttp.ClientSession, status: int, retryable: bool
) -> None:
    double.script(Reply(status=status))
    with pytest.raises(ProviderError) as info:
        await collect(make(double, http))
    assert info.value.retryable is retryable
    assert info.value.status_code == status


async def test_wrong_key_is_a_configuration_problem(
    double: AnthropicDouble, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(ProviderError) as info:
        await make(double, http, key="sk-ant-wrong").complete(REQUEST)
    err = info.value
    assert err.auth
    assert not err.retryable
    assert "configuration problem" in err.message
    assert "sk-ant-wrong" not in err.message
    assert "sk-ant-wrong" not in repr(make(double, http, key="sk-ant-wrong"))


async def test_slow_answer_times_out_retryably(
    double: AnthropicDouble, http: aiohttp.ClientSession
) -> None:
    double.script(Reply(delay_s=5))
    with pytest.raises(ProviderError, match="in time") as info:
        await make(double, http, timeout_s=0.2).complete(REQUEST)
    assert info.value.retryable


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (Reply(cut_after=2), "closed the connection"),
        (Reply(end_after=2), "before it was complete"),
        (Reply(stall_after=2), "in time"),
        (Reply(error_event="overloaded_error"), "Overloaded"),
    ],
    ids=["cut", "ended-early", "stalled", "error-event"],
)
async def test_broken_streams_are_retryable_errors(
    double: AnthropicDouble, http: aiohttp.ClientSession, reply: Reply, words: str
) -> None:
    double.script(reply)
    seen: list[str] = []
    with pytest.raises(ProviderError, match=words) as info:
        await drain(make(double, http, timeout_s=0.3), seen)
    assert info.value.retryable
    assert seen  # some text had arrived before the break


async def test_unreachable_server_is_retryable(http: aiohttp.ClientSession) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connection refused
        choice = ProviderChoice("anthropic", "m", f"http://127.0.0.1:{port}", "k", "test")
        with pytest.raises(ProviderError, match="could not be reached") as info:
            await AnthropicProvider(choice, http, timeout_s=2).complete(REQUEST)
    assert info.value.retryable


async def test_history_without_a_user_turn_is_refused_without_a_call(
    double: AnthropicDouble, http: aiohttp.ClientSession
) -> None:
    request = ProviderRequest("s", (ChatTurn(Role.ASSISTANT, "hello?"),), 10)
    with pytest.raises(ProviderError) as info:
        await make(double, http).complete(request)
    assert not info.value.retryable
    assert double.requests == []

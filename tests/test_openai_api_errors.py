"""Every refusal of the OpenAI-compatible API in OpenAI's shape and status, so the real SDK
raises its own exception classes (SPEC §5.1)."""

from __future__ import annotations

import io
from typing import Any

import aiohttp
import openai
import pytest

from open_clanker.config.model import Config
from open_clanker.gateway.lockout import MAX_FAILURES
from tests.doubles.openai_double import Reply
from tests.harness import running_gateway
from tests.openai_kit import rig, sdk

pytestmark = pytest.mark.usefixtures("data_dir")

USER = [{"role": "user", "content": "hi"}]


def openai_shape(body: object) -> dict[str, Any]:
    """The SDK hands over `error` itself; check it is OpenAI's four fields."""
    assert isinstance(body, dict)
    assert set(body) == {"message", "type", "param", "code"}
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["code"], str) and body["code"]
    return body


async def test_a_wrong_token_is_an_authentication_error() -> None:
    async with running_gateway() as gw, sdk(gw, api_key="wrong-token") as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.chat.completions.create(model="open-clanker", messages=USER)
    body = openai_shape(caught.value.body)
    assert (caught.value.status_code, body["code"]) == (401, "invalid_api_key")
    assert body["type"] == "invalid_request_error"


async def test_the_auth_lockout_is_a_rate_limit_error_with_retry_after() -> None:
    async with running_gateway() as gw, sdk(gw, api_key="wrong-token") as bad, sdk(gw) as good:
        for _ in range(MAX_FAILURES):
            with pytest.raises(openai.AuthenticationError):
                await bad.models.list()
        with pytest.raises(openai.RateLimitError) as caught:
            await good.models.list()  # locked out, whatever it sends
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert openai_shape(caught.value.body)["code"] == "rate_limit_exceeded"


async def test_another_model_is_not_found() -> None:
    async with running_gateway() as gw, sdk(gw) as client:
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(model="gpt-4o", messages=USER)
    body = openai_shape(caught.value.body)
    assert (body["code"], body["type"]) == ("model_not_found", "invalid_request_error")
    assert "gpt-4o" in body["message"]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        ({"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]}, "messages.0.role"),
        ({"messages": [{"role": "assistant", "content": "only me"}]}, "messages"),
        ({"messages": [{"role": "user", "content": "  "}]}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, None),
        ({"temperature": 3}, "temperature"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"extra_headers": {"X-Session-Key": "two words"}}, "X-Session-Key"),
    ],
)
async def test_requests_this_model_refuses_are_bad_requests(
    extra: dict[str, Any], param: str | None
) -> None:
    ask: dict[str, Any] = {"model": "open-clanker", "messages": USER, **extra}
    async with running_gateway() as gw, sdk(gw) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(**ask)
    body = openai_shape(caught.value.body)
    assert body["type"] == "invalid_request_error"
    if param is not None:
        assert body["param"] == param


async def test_unparsable_json_is_a_bad_request() -> None:
    async with running_gateway() as gw, aiohttp.ClientSession() as http:
        url = f"{gw.base_url}/v1/chat/completions"
        async with http.post(url, data=b"{nope", headers=gw.auth) as r:
            assert r.status == 400
            assert openai_shape((await r.json())["error"])["code"] == "invalid_json"


async def test_text_over_the_limit_and_a_body_too_large_are_413() -> None:
    config = Config.model_validate({"server": {"max_message_chars": 10}})
    async with running_gateway(config) as gw, sdk(gw) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(
                model="open-clanker", messages=[{"role": "user", "content": "x" * 11}]
            )
        async with aiohttp.ClientSession() as http:
            # Beyond the 1 MiB a route other than the completions one accepts.
            big = b"x" * (1024 * 1024 + 1)
            url = f"{gw.base_url}/v1/models"
            async with http.get(url, data=io.BytesIO(big), headers=gw.auth) as r:
                too_large = (r.status, await r.json())
            url = f"{gw.base_url}/api/v1/chat"
            async with http.post(url, data=io.BytesIO(big), headers=gw.auth) as r:
                spec_shape = await r.json()
    assert caught.value.status_code == 413
    assert openai_shape(caught.value.body)["code"] == "message_too_long"
    assert too_large[0] == 413
    assert openai_shape(too_large[1]["error"])["code"] == "request_too_large"
    assert set(spec_shape["error"]) == {"code", "message"}  # other routes keep SPEC §5's shape


async def test_the_rate_limit_is_a_rate_limit_error_with_retry_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with rig(monkeypatch, limits={"messages_per_minute": 2}) as r:
        kept = {"X-Session-Key": "busy"}
        for _ in range(2):
            await r.client.chat.completions.create(
                model="open-clanker", messages=USER, extra_headers=kept
            )
        with pytest.raises(openai.RateLimitError) as caught:
            await r.client.chat.completions.create(
                model="open-clanker", messages=USER, extra_headers=kept, stream=True
            )
    assert int(caught.value.response.headers["retry-after"]) >= 1
    body = openai_shape(caught.value.body)
    assert (body["code"], body["type"]) == ("rate_limit_exceeded", "requests")
    assert len(r.double.requests) == 2


@pytest.mark.parametrize("stream", [False, True])
async def test_a_provider_failure_is_502(monkeypatch: pytest.MonkeyPatch, stream: bool) -> None:
    async with rig(monkeypatch) as r:
        r.double.script(Reply(status=500))
        with pytest.raises(openai.APIStatusError) as caught:
            await r.client.chat.completions.create(
                model="open-clanker", messages=USER, stream=stream
            )
    assert caught.value.status_code == 502
    body = openai_shape(caught.value.body)
    assert (body["code"], body["type"]) == ("provider_error", "server_error")


async def test_shutting_down_is_503() -> None:
    async with running_gateway() as gw, sdk(gw) as client:
        await gw.runtime.begin_shutdown()
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="open-clanker", messages=USER)
    assert caught.value.status_code == 503
    assert openai_shape(caught.value.body)["type"] == "server_error"


async def test_a_retry_that_changes_sent_text_ends_the_stream_with_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with rig(monkeypatch, agent={"max_retries": 1}) as r:
        r.double.script(Reply(text="Hello there friend", cut_after=2), Reply(text="Goodbye now"))
        keyed = {"Idempotency-Key": "changed-1"}
        stream = await r.client.chat.completions.create(
            model="open-clanker", messages=USER, stream=True, extra_headers=keyed
        )
        seen: list[str] = []

        async def read_all() -> None:
            async for chunk in stream:
                seen.extend(c.delta.content or "" for c in chunk.choices)

        with pytest.raises(openai.APIError) as caught:
            await read_all()
        # The whole answer was stored: a repeat with the key gets it, no third model call.
        whole = await r.client.chat.completions.create(
            model="open-clanker", messages=USER, extra_headers=keyed
        )
    assert "".join(seen) == "Hello there "  # what was shown is never shown again, changed
    assert "changed" in caught.value.message
    assert whole.choices[0].message.content == "Goodbye now"
    assert len(r.double.requests) == 2


async def test_a_retry_that_replays_sent_text_shows_it_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with rig(monkeypatch, agent={"max_retries": 1}) as r:
        text = "Hello there friend of mine"
        r.double.script(Reply(text=text, cut_after=2), Reply(text=text))
        stream = await r.client.chat.completions.create(
            model="open-clanker", messages=USER, stream=True
        )
        seen = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(seen) == text

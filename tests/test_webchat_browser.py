"""The web chat page in headless Chromium against the real gateway on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser_kit import MARKS, expect, launch, open_chat, other_origin, send
from tests.doubles.openai_double import OpenAIDouble, Reply
from tests.test_ws import TOKEN, Gateway, run_gateway

pytestmark = MARKS


@pytest.fixture
async def gateway(tmp_path: Path, data_dir: Path) -> AsyncIterator[Gateway]:
    async with run_gateway(tmp_path) as gw:
        yield gw


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with launch() as chromium:
        yield chromium


async def test_streamed_reply_appears_and_token_leaves_the_url(
    browser: Any, gateway: Gateway
) -> None:
    page = await (await browser.new_context()).new_page()
    deltas: list[str] = []

    def watch(ws: Any) -> None:
        def frame(payload: str | bytes) -> None:
            data = json.loads(payload)
            if data.get("type") == "delta":
                deltas.append(data["text"])

        ws.on("framereceived", frame)

    page.on("websocket", watch)
    await page.goto(f"{gateway.http}/#token={TOKEN}")
    await expect(page.locator("#status")).to_have_attribute("data-state", "online")
    assert "token" not in page.url
    assert await page.evaluate("localStorage.getItem('openClanker.token')") == TOKEN

    await send(page, "Hello **bold** and `code`", replies=1)
    answer = page.locator(".msg.assistant .bubble").last
    await expect(answer).to_contain_text("You said: Hello bold and code")
    await expect(answer.locator("strong")).to_have_text("bold")
    await expect(answer.locator("code")).to_have_text("code")
    await expect(page.locator(".msg.user .bubble").last).to_have_text("Hello **bold** and `code`")
    assert len(deltas) > 1
    assert "".join(deltas).endswith("Hello **bold** and `code`")


async def test_html_in_a_reply_is_shown_as_text(browser: Any, gateway: Gateway) -> None:
    page = await open_chat(browser, gateway)
    attack = '<img src=x onerror="window.pwned=1"> [link](javascript:alert(1)) <b>hi</b>'
    await send(page, attack, replies=1)
    answer = page.locator(".msg.assistant .bubble").last
    await expect(answer).to_contain_text('<img src=x onerror="window.pwned=1">')
    await expect(answer).to_contain_text("<b>hi</b>")
    assert await page.locator("#messages img").count() == 0
    assert await page.locator("#messages b").count() == 0
    assert await page.locator("#messages a").count() == 0
    assert await page.evaluate("window.pwned") is None


async def test_markdown_blocks_and_safe_links(browser: Any, gateway: Gateway) -> None:
    page = await open_chat(browser, gateway)
    text = "Intro *soft*\n\n- one\n- two\n\n```python\nprint('<hi>')\n```\n\nsee [docs](https://example.org/a)"
    await send(page, text, replies=1)
    answer = page.locator(".msg.assistant .bubble").last
    await expect(answer.locator("em")).to_have_text("soft")
    await expect(answer.locator("ul li")).to_have_text(["one", "two"])
    await expect(answer.locator("pre code")).to_have_text("print('<hi>')")
    anchor = answer.locator("a")
    await expect(anchor).to_have_attribute("href", "https://example.org/a")
    await expect(anchor).to_have_attribute("target", "_blank")
    await expect(anchor).to_have_attribute("rel", "noopener noreferrer")


async def test_reload_keeps_session_and_history(browser: Any, gateway: Gateway) -> None:
    page = await open_chat(browser, gateway)
    await send(page, "remember me", replies=1)
    session = await page.evaluate("localStorage.getItem('openClanker.session')")
    assert session.startswith("webchat:")
    current = page.locator(f'.session[data-key="{session}"]')
    await expect(current).to_have_attribute("aria-current", "true")

    await page.reload()
    await expect(page.locator(".msg.user .bubble")).to_have_text(["remember me"])
    await expect(page.locator(".msg.assistant .bubble")).to_contain_text(["You said: remember me"])
    await expect(page.locator("#chat-title")).to_have_text("remember me")
    assert await page.evaluate("localStorage.getItem('openClanker.session')") == session

    await page.locator("#new-chat").click()
    await expect(page.locator(".msg")).to_have_count(0)
    await send(page, "second chat", replies=1)
    await expect(page.locator(".session")).to_have_count(2)
    await expect(page.locator(".session .session-name").first).to_have_text("second chat")
    await page.locator(f'.session[data-key="{session}"]').click()
    await expect(page.locator(".msg.user .bubble")).to_have_text(["remember me"])

    await send(page, "/new", replies=1)
    await expect(page.locator(".msg")).to_have_count(1)
    await expect(page.locator(".msg.assistant")).to_contain_text("Started a new conversation")


async def test_token_prompt_without_token_and_for_a_wrong_one(
    browser: Any, gateway: Gateway
) -> None:
    page = await (await browser.new_context()).new_page()
    await page.goto(gateway.http + "/")
    prompt = page.locator("#token-prompt")
    await expect(prompt).to_be_visible()
    await page.locator("#token-input").fill("not-the-token")
    await page.locator("#token-input").press("Enter")
    await expect(page.locator("#token-error")).to_contain_text("did not accept")
    await expect(prompt).to_be_visible()
    await page.locator("#token-input").fill(TOKEN)
    await page.locator("#token-input").press("Enter")
    await expect(prompt).to_be_hidden()
    await expect(page.locator("#status")).to_have_attribute("data-state", "online")


async def test_banner_when_gateway_goes_away(browser: Any, tmp_path: Path, data_dir: Path) -> None:
    async with run_gateway(tmp_path) as gw:
        page = await open_chat(browser, gw)
    # The server has stopped: the page says so and keeps trying.
    await expect(page.locator("#banner")).to_contain_text("cannot be reached")
    await expect(page.locator("#status")).to_have_attribute("data-state", "offline")


async def test_page_from_another_origin_cannot_drive_the_gateway(
    browser: Any, gateway: Gateway
) -> None:
    """A site the user visits (here: another port on loopback, so another origin) tries the
    API and the WebSocket with a stolen token; the browser and the gateway refuse both."""
    script = """async ([base, token]) => {
        const out = {};
        try {
            const r = await fetch(base + "/api/v1/chat", {method: "POST",
                headers: {"Authorization": "Bearer " + token, "Content-Type": "application/json"},
                body: JSON.stringify({text: "from evil"})});
            out.api = "status " + r.status;
        } catch (e) { out.api = "blocked"; }
        out.ws = await new Promise((resolve) => {
            const ws = new WebSocket(base.replace("http", "ws") + "/ws");
            ws.onopen = () => { ws.send(JSON.stringify({type: "auth", token})); };
            ws.onmessage = (ev) => resolve("message " + ev.data);
            ws.onerror = () => resolve("refused");
            ws.onclose = () => resolve("refused");
        });
        return out;
    }"""
    async with other_origin("<h1>evil</h1>") as evil_url:
        page = await (await browser.new_context()).new_page()
        await page.goto(evil_url)
        result = await page.evaluate(script, [gateway.http, TOKEN])
    assert result == {"api": "blocked", "ws": "refused"}
    assert await gateway.runtime.store.messages.list_sessions(10) == []  # nothing got through


async def test_stop_button_ends_a_streaming_answer(
    browser: Any, tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENCLAW_OPENAI_API_KEY", "sk-test")
    async with OpenAIDouble() as double:
        # Three words, then the model goes quiet for an hour: only Stop ends this answer.
        double.script(Reply(text="Once upon a time, there was more", stall_after=3))
        agent = {"provider": "openai", "base_url": double.base_url}
        async with run_gateway(tmp_path, agent=agent) as gw:
            page = await open_chat(browser, gw)
            await expect(page.locator("#stop")).to_be_hidden()
            await page.locator("#input").fill("Tell me a long story")
            await page.locator("#input").press("Enter")
            answer = page.locator(".msg.assistant").last
            await expect(answer).to_have_class("msg assistant streaming")
            await expect(answer.locator(".bubble")).to_have_text("Once upon a")
            await expect(page.locator("#send")).to_be_hidden()
            await page.locator("#stop").click()
            await expect(answer).to_have_class("msg assistant")
            await expect(answer.locator(".stopped-note")).to_have_text("Stopped")
            await expect(answer.locator(".bubble p").first).to_have_text("Once upon a")
            await expect(page.locator("#stop")).to_be_hidden()
            await expect(page.locator("#send")).to_be_visible()
            await expect(page.locator("#input")).to_be_enabled()
            session = await page.evaluate("localStorage.getItem('openClanker.session')")
            history = await gw.runtime.store.messages.session_messages(session, 10, None)
    assert history is not None
    assert [(m.role.value, m.text) for m in history] == [
        ("user", "Tell me a long story"),
        ("assistant", "Once upon a "),
    ]

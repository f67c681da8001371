"""The page under its Content-Security-Policy, not framable, and careful with a token that
arrives in a link, in headless Chromium against the real gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser_kit import MARKS, expect, launch, open_chat, other_origin, send
from tests.test_ws import TOKEN, Gateway, run_gateway

pytestmark = MARKS

# Runs before the page's own scripts (Playwright injects it outside the page's CSP).
WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(e.violatedDirective + " " + (e.blockedURI || "inline"));
});
"""


@pytest.fixture
async def gateway(tmp_path: Path, data_dir: Path) -> AsyncIterator[Gateway]:
    async with run_gateway(tmp_path) as gw:
        yield gw


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with launch() as chromium:
        yield chromium


async def test_the_page_works_under_its_csp_without_one_violation(
    browser: Any, gateway: Gateway
) -> None:
    context = await browser.new_context()
    await context.add_init_script(WATCH_CSP)
    page = await context.new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text))
    response = await page.goto(f"{gateway.http}/#token={TOKEN}")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    await expect(page.locator("#status")).to_have_attribute("data-state", "online")
    await send(
        page,
        "Here:\n\n| a | b |\n|:-:|--:|\n| 1 | 2 |\n\n- x\n  - y\n\n```js\nconst a = 1;\n```",
        replies=1,
    )
    await expect(page.locator(".msg.assistant table")).to_have_count(1)
    await expect(page.locator(".msg.assistant .hljs-keyword")).to_have_text("const")
    await page.locator("#change-token").click()  # the dialogs too
    await expect(page.locator("#token-prompt")).to_be_visible()
    assert await page.evaluate("window.__csp") == []
    assert not [line for line in console if "Content Security Policy" in line]
    # A new chat asks for no history the gateway cannot have, and the icon is there: a fresh
    # page logs no failed request at all.
    assert not [line for line in console if "Failed to load resource" in line]

    # The policy is enforced: script or style written into the page by anything but its own
    # files is refused (what a markup injection would try).
    await page.evaluate(
        """() => {
            const s = document.createElement("script");
            s.textContent = "window.injected = true";
            document.body.append(s);
            const div = document.createElement("div");
            div.innerHTML = '<p id="styled" style="color: red">x</p>';
            document.body.append(div);
        }"""
    )
    assert await page.evaluate("window.injected") is None
    violations = await page.evaluate("window.__csp")
    assert any(v.startswith("script-src") for v in violations)
    assert any(v.startswith("style-src") for v in violations)
    color = await page.evaluate("getComputedStyle(document.getElementById('styled')).color")
    assert color != "rgb(255, 0, 0)"


async def test_another_site_cannot_frame_the_page(browser: Any, gateway: Gateway) -> None:
    html = f'<h1>evil</h1><iframe id="f" src="{gateway.http}/"></iframe>'
    async with other_origin(html) as evil_url:
        page = await (await browser.new_context()).new_page()
        console: list[str] = []
        page.on("console", lambda msg: console.append(msg.text))
        await page.goto(evil_url)
        await expect(page.locator("h1")).to_have_text("evil")
        frame = page.frames[1]
        await frame.wait_for_load_state()
        # Blocked: the frame holds Chromium's error page, not the chat.
        assert await frame.locator("#app").count() == 0
        assert not frame.url.startswith(gateway.http)
    assert any("frame-ancestors" in line for line in console)


async def test_a_link_with_another_token_asks_before_replacing_the_saved_one(
    browser: Any, gateway: Gateway
) -> None:
    page = await open_chat(browser, gateway)
    context = page.context
    saved = "localStorage.getItem('openClanker.token')"

    # A link to the page with someone else's token: the saved one stays unless accepted.
    tab = await context.new_page()
    await tab.goto(f"{gateway.http}/#token=garbage")
    prompt = tab.locator("#replace-prompt")
    await expect(prompt).to_be_visible()
    assert "token" not in tab.url
    await expect(tab.locator("#keep-token")).to_be_focused()
    await tab.locator("#keep-token").click()
    await expect(prompt).to_be_hidden()
    await expect(tab.locator("#status")).to_have_attribute("data-state", "online")
    assert await tab.evaluate(saved) == TOKEN

    # The same link's token is taken only when the user says so.
    tab = await context.new_page()
    await tab.goto(f"{gateway.http}/#token=garbage")
    await tab.locator("#use-token").click()
    await expect(tab.locator("#token-error")).to_contain_text("did not accept")
    assert await tab.evaluate(saved) is None  # refused by the gateway, so forgotten

    # The saved token in a link again: no question asked.
    tab = await context.new_page()
    await tab.goto(f"{gateway.http}/#token={TOKEN}")
    await expect(tab.locator("#status")).to_have_attribute("data-state", "online")
    await expect(tab.locator("#replace-prompt")).to_be_hidden()

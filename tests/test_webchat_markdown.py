"""The web chat's Markdown (vendored markdown-it + highlight.js) in headless Chromium, against
the real gateway. The echo provider repeats what is sent, so each test writes the Markdown
the assistant answers with; the screenshots use a model double with real-looking answers."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser_kit import DOCS, MARKS, expect, launch, open_chat, send
from tests.doubles.openai_double import OpenAIDouble, Reply
from tests.test_ws import Gateway, run_gateway

pytestmark = MARKS


@pytest.fixture
async def gateway(tmp_path: Path, data_dir: Path) -> AsyncIterator[Gateway]:
    async with run_gateway(tmp_path) as gw:
        yield gw


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with launch() as chromium:
        yield chromium


async def answer_to(browser: Any, gateway: Gateway, text: str, **context: Any) -> Any:
    page = await open_chat(browser, gateway, **context)
    await send(page, "Here:\n\n" + text, replies=1)
    return page.locator(".msg.assistant .bubble").last


async def test_table(browser: Any, gateway: Gateway) -> None:
    answer = await answer_to(
        browser,
        gateway,
        "| Model | Context | Price |\n|:--|:-:|--:|\n| small | 8k | $1 |\n| **large** | 200k | $15 |",
    )
    table = answer.locator(".table-wrap > table")
    await expect(table.locator("thead th")).to_have_text(["Model", "Context", "Price"])
    await expect(table.locator("tbody tr")).to_have_count(2)
    await expect(table.locator("tbody tr").nth(1).locator("td")).to_have_text(
        ["large", "200k", "$15"]
    )
    await expect(table.locator("tbody tr").nth(1).locator("td strong")).to_have_text("large")
    # Alignment as classes, never an inline style (the page's CSP forbids inline style).
    await expect(table.locator("thead th").nth(1)).to_have_class("align-center")
    await expect(table.locator("tbody td").nth(2)).to_have_class("align-right")
    assert await answer.locator("[style]").count() == 0


async def test_nested_list_with_code_in_an_item(browser: Any, gateway: Gateway) -> None:
    answer = await answer_to(
        browser,
        gateway,
        "1. Install\n   - with pip\n   - or with uv\n     1. fast\n2. Configure:\n\n"
        '   ```toml\n   [agent]\n   provider = "openai"\n   ```\n\n3. Run',
    )
    top = answer.locator(":scope > ol")
    await expect(top.locator(":scope > li")).to_have_count(3)
    first = top.locator(":scope > li").nth(0)
    await expect(first.locator(":scope > ul > li")).to_have_count(2)
    await expect(first.locator(":scope > ul > li").nth(1).locator(":scope > ol > li")).to_have_text(
        "fast"
    )
    second = top.locator(":scope > li").nth(1)
    code = second.locator(".code-block pre code")
    await expect(code).to_have_text('[agent]\nprovider = "openai"')
    await expect(second.locator(".code-bar span")).to_have_text("toml")
    await expect(top.locator(":scope > li").nth(2)).to_have_text("Run")


async def test_inline_emphasis_strikethrough_and_links(browser: Any, gateway: Gateway) -> None:
    answer = await answer_to(
        browser,
        gateway,
        "***both*** and ~~gone~~ and *one*\n\n"
        "See https://en.wikipedia.org/wiki/Python_(programming_language) and "
        "[the docs](https://example.org/a_(b)) or mail a@example.org.",
    )
    await expect(answer.locator("em > strong, strong > em")).to_have_text("both")
    await expect(answer.locator("s")).to_have_text("gone")
    links = answer.locator("a")
    await expect(links).to_have_count(3)
    await expect(links.nth(0)).to_have_attribute(
        "href", "https://en.wikipedia.org/wiki/Python_(programming_language)"
    )
    await expect(links.nth(1)).to_have_attribute("href", "https://example.org/a_(b)")
    await expect(links.nth(1)).to_have_text("the docs")
    await expect(links.nth(2)).to_have_attribute("href", "mailto:a@example.org")
    for n in range(3):
        await expect(links.nth(n)).to_have_attribute("rel", "noopener noreferrer")
        await expect(links.nth(n)).to_have_attribute("target", "_blank")


async def test_only_web_and_mail_links(browser: Any, gateway: Gateway) -> None:
    answer = await answer_to(
        browser,
        gateway,
        "[a](javascript:alert(1)) [b](data:text/html,x) [c](ftp://example.org/f) "
        "[d](/api/v1/status) [e](vbscript:x) ![pic](https://example.org/p.png) "
        "<span onclick='x()'>raw</span>",
    )
    links = answer.locator("a")
    await expect(links).to_have_count(1)  # the image, shown as a link to it and not loaded
    await expect(links).to_have_attribute("href", "https://example.org/p.png")
    await expect(links).to_have_text("pic")
    assert await answer.locator("img").count() == 0
    await expect(answer).to_contain_text("[a](javascript:alert(1))")
    await expect(answer).to_contain_text("[d](/api/v1/status)")
    await expect(answer).to_contain_text("<span onclick='x()'>raw</span>")
    assert await answer.locator("span").count() == 0


async def test_code_block_is_highlighted_and_copied(browser: Any, gateway: Gateway) -> None:
    page = await open_chat(browser, gateway, permissions=["clipboard-read", "clipboard-write"])
    code = 'def greet(name):\n    return f"Hello, {name}!"  # <b>not bold</b>'
    await send(page, f"Here:\n\n```python\n{code}\n```", replies=1)
    block = page.locator(".msg.assistant .code-block").last
    await expect(block.locator(".code-bar span")).to_have_text("python")
    await expect(block.locator("pre code")).to_have_text(code)
    await expect(block.locator("code .hljs-keyword").first).to_have_text("def")
    await expect(block.locator("code .hljs-string")).to_have_count(1)
    await expect(block.locator("code .hljs-comment")).to_have_text("# <b>not bold</b>")
    assert await block.locator("b").count() == 0
    await block.locator("button.copy").click()
    await expect(block.locator("button.copy")).to_have_text("Copied")
    assert await page.evaluate("navigator.clipboard.readText()") == code


SCREENSHOT_ANSWERS = (
    "Here is how the three providers compare:\n\n"
    "| Provider | Streaming | Vision | Runs locally |\n"
    "|:--|:-:|:-:|:-:|\n"
    "| Anthropic | yes | yes | no |\n"
    "| OpenAI | yes | yes | no |\n"
    "| Ollama | yes | some models | **yes** |\n\n"
    "For an offline setup, ~~a cloud key~~ Ollama is enough.",
    "Sure, in three steps:\n\n"
    "1. **Install** the gateway\n"
    "   - from PyPI: `pip install open-clanker`\n"
    "   - or run the Docker image\n"
    "2. **Configure** the model in `config.toml`:\n\n"
    "   ```toml\n"
    "   [agent]\n"
    '   provider = "openai"\n'
    '   base_url = "http://127.0.0.1:11434/v1"\n'
    "   ```\n\n"
    "3. **Start** it and check it answers:\n\n"
    "```python\n"
    "import json, urllib.request\n\n"
    "def ask(text: str) -> str:\n"
    '    body = json.dumps({"text": text}).encode()\n'
    '    req = urllib.request.Request("http://127.0.0.1:18789/api/v1/chat", body)\n'
    '    req.add_header("Authorization", "Bearer " + TOKEN)\n'
    "    with urllib.request.urlopen(req) as r:\n"
    '        return json.load(r)["reply"]["content"]  # the answer\n'
    "```",
)


@pytest.mark.parametrize(
    ("name", "viewport"),
    [
        ("webchat.png", {"width": 1280, "height": 1180}),
        ("webchat-mobile.png", {"width": 390, "height": 844}),
    ],
)
async def test_screenshot(
    browser: Any,
    tmp_path: Path,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    viewport: dict[str, int],
) -> None:
    """A conversation with a table, a nested list and highlighted code, at desktop and phone
    width (`OPENCLAW_TEST_SCREENSHOTS=1` writes them to docs/)."""
    monkeypatch.setenv("OPENCLAW_OPENAI_API_KEY", "sk-test")
    async with OpenAIDouble() as double:
        double.script(*(Reply(text=t) for t in SCREENSHOT_ANSWERS))
        agent = {"provider": "openai", "base_url": double.base_url}
        async with run_gateway(tmp_path, agent=agent) as gw:
            page = await open_chat(browser, gw, viewport=viewport, device_scale_factor=1)
            await send(page, "Which model providers can I use?", replies=1)
            await send(page, "How do I set it up with a local model?", replies=2)
            await expect(page.locator(".code-block")).to_have_count(2)
            await expect(page.locator(".hljs-keyword").first).to_be_visible()
            await expect(page.locator(".session")).to_have_count(1)
            await page.evaluate(
                "document.querySelector('#messages').scrollTo({top: 0, behavior: 'instant'})"
            )
            out = DOCS if os.environ.get("OPENCLAW_TEST_SCREENSHOTS") else tmp_path
            out.mkdir(exist_ok=True)
            await page.screenshot(path=str(out / name), full_page=False)

"""What the web chat's browser tests share: Debian's chromium through Playwright, the page
opened with a token, a message sent and answered, and a page on another origin."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.test_ws import TOKEN, Gateway

CHROMIUM = Path("/usr/bin/chromium")
DOCS = Path(__file__).resolve().parent.parent / "docs"

if not CHROMIUM.exists() and os.environ.get("CI"):
    # On CI `make test` installs chromium first; a missing browser there is a failure, not a skip.
    raise RuntimeError("CI run without /usr/bin/chromium: `make browser` should have installed it")

MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium"),
]

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect


@asynccontextmanager
async def launch() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield chromium
        finally:
            await chromium.close()


async def open_chat(browser: Any, gw: Gateway, **context: Any) -> Any:
    page = await (await browser.new_context(**context)).new_page()
    await page.goto(f"{gw.http}/#token={TOKEN}")
    await expect(page.locator("#status")).to_have_attribute("data-state", "online")
    return page


async def send(page: Any, text: str, replies: int) -> None:
    """Type TEXT, press Enter, wait for the REPLIES-th assistant answer to finish."""
    await page.locator("#input").fill(text)
    await page.locator("#input").press("Enter")
    done = page.locator(".msg.assistant:not(.streaming)")
    await expect(done).to_have_count(replies)
    await expect(page.locator("#input")).to_be_enabled()


@asynccontextmanager
async def other_origin(html: str) -> AsyncIterator[str]:
    """A page on another loopback port (so another origin) serving HTML; its URL."""
    from aiohttp import web

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/"
    finally:
        await runner.cleanup()

"""`image_url` parts through the OpenAI-compatible API: data URLs, and http(s) URLs the gateway
reads itself (from a loopback image server) within the attachment limits."""

from __future__ import annotations

import base64
import contextlib
import io
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import openai
import pytest
from aiohttp import web

from open_clanker.gateway.openai_images import MAX_IMAGE_BYTES
from tests.doubles.openai_double import Reply
from tests.openai_kit import Rig, rig

pytestmark = pytest.mark.usefixtures("data_dir")

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()


@contextlib.asynccontextmanager
async def image_server() -> AsyncIterator[str]:
    """Serves /cat.jpg (an image), /page.html (not one), /huge.png (over the limit)."""

    async def cat(_r: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/jpeg")

    async def page(_r: web.Request) -> web.Response:
        return web.Response(text="<html></html>", content_type="text/html")

    async def huge(_r: web.Request) -> web.Response:
        return web.Response(body=b"\0" * (MAX_IMAGE_BYTES + 1), content_type="image/png")

    app = web.Application()
    app.router.add_get("/cat.jpg", cat)
    app.router.add_get("/page.html", page)
    app.router.add_get("/huge.png", huge)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def with_image(url: str, text: str = "What is this?") -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": text},
                {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
            ],
        }
    ]


def image_parts(body: dict[str, Any]) -> list[str]:
    last = body["messages"][-1]["content"]
    return [p["image_url"]["url"] for p in last if p["type"] == "image_url"]


async def stored(r: Rig, session: str) -> list[dict[str, Any]]:
    url = f"{r.gw.base_url}/api/v1/sessions/{quote(session, safe='')}/messages"
    async with aiohttp.ClientSession() as http, http.get(url, headers=r.gw.auth) as resp:
        return list((await resp.json())["messages"])


async def test_a_data_url_image_reaches_the_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    async with rig(monkeypatch) as r:
        r.double.script(Reply(text="A pixel."))
        raw = await r.client.chat.completions.with_raw_response.create(
            model="open-clanker", messages=with_image(PNG_URL)
        )
        messages = await stored(r, raw.headers["x-session-key"])
    assert image_parts(r.sent()) == [PNG_URL]
    assert r.sent()["messages"][-1]["content"][0] == {"type": "text", "text": "What is this?"}
    attachment = messages[0]["metadata"]["attachments"][0]
    # The stored message keeps a reference, never the bytes.
    assert attachment["url"] == "inline:image-1"
    assert (attachment["mime_type"], attachment["size_bytes"]) == ("image/png", len(PNG))


async def test_an_http_image_is_read_by_the_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    async with image_server() as images, rig(monkeypatch) as r:
        url = f"{images}/cat.jpg"
        await r.client.chat.completions.create(
            model="open-clanker",
            messages=[
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]},
                {"role": "assistant", "content": "A cat."},
                *with_image(url, "And now?"),
            ],
        )
    body = r.sent()
    expected = "data:image/jpeg;base64," + base64.b64encode(PNG).decode()
    assert image_parts(body) == [expected]  # the model gets the bytes, not our loopback URL
    assert body["messages"][1]["content"] == [{"type": "image_url", "image_url": {"url": expected}}]


@pytest.mark.parametrize(
    ("path_or_url", "words"),
    [
        ("/page.html", "is not JPEG, PNG, GIF or WebP"),
        ("/huge.png", "over 5 MiB"),
        ("/missing.png", "HTTP 404"),
        ("ftp://example.invalid/x.png", "data: URL or an http(s) URL"),
        ("data:image/png,notbase64", "must be base64"),
        ("data:image/svg+xml;base64,PHN2Zz4=", "must hold JPEG"),
        ("data:image/png;base64,@@@", "not valid base64"),
    ],
)
async def test_images_outside_the_limits_are_refused(
    monkeypatch: pytest.MonkeyPatch, path_or_url: str, words: str
) -> None:
    async with image_server() as images, rig(monkeypatch) as r:
        url = f"{images}{path_or_url}" if path_or_url.startswith("/") else path_or_url
        with pytest.raises(openai.BadRequestError) as caught:
            await r.client.chat.completions.create(model="open-clanker", messages=with_image(url))
    assert words in caught.value.message
    assert r.double.requests == []


async def test_a_large_data_url_fits_the_completions_body_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    big = base64.b64encode(b"\x89PNG" + b"\0" * (2 * 1024 * 1024)).decode()
    async with rig(monkeypatch) as r:
        body = {"model": "open-clanker", "messages": with_image(f"data:image/png;base64,{big}")}
        url = f"{r.v1}/chat/completions"
        async with aiohttp.ClientSession() as http:
            data = io.BytesIO(json.dumps(body).encode())
            async with http.post(url, data=data, headers=r.gw.auth) as resp:
                assert resp.status == 200, await resp.text()
    assert image_parts(r.sent())[0].endswith(big[-20:])

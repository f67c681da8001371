"""Another site's requests are refused before auth and never count toward the lockout
(issue 13, item 1); the OpenAPI document needs the token (item 13). Table, then a real server."""

from __future__ import annotations

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from open_clanker.config.model import Config
from open_clanker.gateway.cross_site import RequestSource, refused
from tests.harness import running_gateway

pytestmark = pytest.mark.usefixtures("data_dir")

HOST = "127.0.0.1:18789"


def src(
    method: str = "GET",
    path: str = "/api/v1/status",
    origin: str | None = None,
    site: str | None = None,
    mode: str | None = None,
    host: str = HOST,
) -> RequestSource:
    return RequestSource(method, path, host, origin, site, mode)


@pytest.mark.parametrize(
    ("source", "cors", "is_refused"),
    [
        # Not a browser page (CLI, curl, a webhook): judged by its token alone.
        (src(), [], False),
        # The gateway's own page, and a person typing the URL or opening a bookmark.
        (src(site="same-origin", origin=f"http://{HOST}", method="POST"), [], False),
        (src(site="none", mode="navigate"), [], False),
        # Another site: <img>, fetch, a form, a WebSocket.
        (src(site="cross-site", mode="no-cors"), [], True),
        (src(site="cross-site", mode="cors", origin="http://evil.example"), [], True),
        (src(site="cross-site", mode="navigate", method="POST", path="/api/v1/chat"), [], True),
        (src(site="cross-site", mode="websocket", path="/ws"), [], True),
        # Another port on this machine is "same-site" for a browser, but another origin.
        (src(site="same-site", mode="no-cors"), [], True),
        # A link to the web chat page itself is followed (it changes nothing).
        (src(site="cross-site", mode="navigate", path="/"), [], False),
        (src(site="cross-site", mode="navigate", path="/api/v1/status"), [], True),
        # Browsers without Fetch Metadata: Origin decides.
        (src(origin="http://evil.example", method="POST"), [], True),
        (src(origin="null", method="POST"), [], True),
        (src(origin=f"http://{HOST}", method="POST"), [], False),
        (src(origin="http://localhost:18789", method="POST"), [], True),  # another origin
        # A configured origin may call (CORS).
        (
            src(site="cross-site", mode="cors", origin="https://app.example"),
            ["https://app.example/"],
            False,
        ),
        (
            src(site="cross-site", mode="cors", origin="https://app.example"),
            ["https://other.example"],
            True,
        ),
    ],
)
def test_cross_site_table(source: RequestSource, cors: list[str], is_refused: bool) -> None:
    assert refused(source, cors) is is_refused


async def test_cross_site_requests_never_lock_the_owner_out() -> None:
    async with running_gateway() as gw, aiohttp.ClientSession() as http:
        cross = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}
        for path in ("/api/v1/status", "/api/v1/sessions", "/metrics", "/openapi.json") * 5:
            async with http.get(f"{gw.base_url}{path}", headers=cross) as r:
                assert r.status == 403
                assert (await r.json())["error"]["code"] == "cross_site_refused"
        for origin in ("http://evil.example", "null", "http://localhost:1"):
            headers = {"Origin": origin, "Content-Type": "text/plain"}
            async with http.post(
                f"{gw.base_url}/api/v1/chat", data='{"text": "hi"}', headers=headers
            ) as r:
                assert r.status == 403
        with pytest.raises(InvalidStatus) as upgrade:
            async with connect(
                gw.base_url.replace("http", "ws") + "/ws", origin=Origin("http://evil.example")
            ):
                pass
        assert upgrade.value.response.status_code == 403
        # 24 cross-site attempts, none counted: the owner is not locked out.
        assert await gw.runtime.lockout.retry_after("127.0.0.1") is None
        async with http.get(f"{gw.base_url}/api/v1/status", headers=gw.auth) as r:
            assert r.status == 200
        # A link to the page still opens it.
        link = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
        async with http.get(f"{gw.base_url}/", headers=link) as r:
            assert r.status == 200


async def test_a_configured_origin_may_call_with_its_token() -> None:
    config = Config.model_validate({"server": {"cors_origins": ["http://app.example"]}})
    async with running_gateway(config) as gw, aiohttp.ClientSession() as http:
        headers = {**gw.auth, "Origin": "http://app.example", "Sec-Fetch-Site": "cross-site"}
        async with http.get(f"{gw.base_url}/api/v1/status", headers=headers) as r:
            assert r.status == 200
            assert r.headers["Access-Control-Allow-Origin"] == "http://app.example"


async def test_openapi_document_needs_the_token() -> None:
    async with running_gateway() as gw, aiohttp.ClientSession() as http:
        async with http.get(f"{gw.base_url}/openapi.json") as r:
            assert r.status == 401
            assert (await r.json())["error"]["code"] == "unauthorized"
        async with http.get(f"{gw.base_url}/openapi.json", headers=gw.auth) as r:
            assert r.status == 200
            document = await r.json()
        assert "/api/v1/chat" in document["paths"]
        assert "/openapi.json" not in document["paths"]
        for open_path in ("/health", "/ready", "/"):
            async with http.get(f"{gw.base_url}{open_path}") as r:
                assert r.status in (200, 503), open_path

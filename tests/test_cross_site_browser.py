"""Issue 13, item 1 in a real Chromium: a page on another loopback origin fires 20 requests at
the gateway (images, fetches, a form, WebSockets); the owner is not locked out — their own page
and the CLI still work."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser_kit import MARKS, expect, launch, other_origin
from tests.proc import clean_env, cli
from tests.test_ws import TOKEN, Gateway, run_gateway

pytestmark = MARKS

# Twenty requests a hostile page can make without the token; each settles or times out.
ATTACK = """
<!doctype html><body><script>
const gw = GATEWAY;
const settle = (p) => Promise.race([p, new Promise((r) => setTimeout(r, 4000))]);
const jobs = [];
for (let i = 0; i < 6; i++) {
  jobs.push(settle(new Promise((done) => {
    const img = new Image(); img.onload = img.onerror = done;
    img.src = gw + "/api/v1/status?img=" + i; document.body.appendChild(img);
  })));
}
for (let i = 0; i < 4; i++) jobs.push(settle(fetch(gw + "/api/v1/sessions", {mode: "no-cors"}).catch(() => 0)));
for (let i = 0; i < 4; i++) {
  jobs.push(settle(fetch(gw + "/api/v1/chat", {method: "POST", mode: "no-cors",
    headers: {"Content-Type": "text/plain"}, body: '{"text": "from evil"}'}).catch(() => 0)));
}
for (let i = 0; i < 2; i++) {
  jobs.push(settle(fetch(gw + "/api/v1/status", {headers: {Authorization: "Bearer guess" + i}}).catch(() => 0)));
}
for (let i = 0; i < 2; i++) {
  jobs.push(settle(new Promise((done) => {
    const ws = new WebSocket(gw.replace("http", "ws") + "/ws");
    ws.onopen = () => ws.send(JSON.stringify({type: "auth", token: "guess" + i}));
    ws.onclose = ws.onerror = done;
  })));
}
for (let i = 0; i < 2; i++) {
  jobs.push(settle(new Promise((done) => {
    const frame = document.createElement("iframe"); frame.name = "f" + i; frame.onload = done;
    document.body.appendChild(frame);
    const form = document.createElement("form");
    form.method = "POST"; form.action = gw + "/api/v1/chat"; form.target = frame.name;
    form.enctype = "text/plain";
    const field = document.createElement("input"); field.name = '{"text": "'; field.value = 'x"}';
    form.appendChild(field); document.body.appendChild(form); form.submit();
  })));
}
window.fired = jobs.length;
Promise.all(jobs).then(() => { window.done = true; });
</script></body>
"""


@pytest.fixture
async def gateway(tmp_path: Path, data_dir: Path) -> AsyncIterator[Gateway]:
    async with run_gateway(tmp_path) as gw:
        yield gw


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with launch() as chromium:
        yield chromium


async def test_another_origin_cannot_lock_the_owner_out(
    browser: Any, gateway: Gateway, tmp_path: Path
) -> None:
    statuses: list[int] = []
    html = ATTACK.replace("GATEWAY", json.dumps(gateway.http))
    async with other_origin(html) as url:
        port = url.rsplit(":", 1)[1].rstrip("/")
        # 127.0.0.1:<other port> is "same-site" to Chromium, localhost:<port> "cross-site".
        for origin in (f"http://127.0.0.1:{port}/", f"http://localhost:{port}/"):
            page = await (await browser.new_context()).new_page()
            page.on(
                "response",
                lambda r: statuses.append(r.status) if r.url.startswith(gateway.http) else None,
            )
            await page.goto(origin)
            assert await page.evaluate("window.fired") == 20
            await page.wait_for_function("window.done === true", timeout=20_000)
            await page.context.close()
    # What reached the gateway was refused as cross-site: never a 401 that counts.
    assert statuses, "no request reached the gateway"
    assert set(statuses) == {403}
    assert await gateway.runtime.lockout.retry_after("127.0.0.1") is None
    assert await gateway.runtime.store.messages.list_sessions(10) == []

    # The owner's own page works, and so does the CLI, from the same address.
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{gateway.http}/#token={TOKEN}")
    await expect(page.locator("#status")).to_have_attribute("data-state", "online")
    own = await page.evaluate(
        """async (token) => (await fetch("/api/v1/status",
            {headers: {Authorization: "Bearer " + token}})).status""",
        TOKEN,
    )
    assert own == 200
    env = clean_env(
        tmp_path / "cli-data", OPENCLAW_GATEWAY_URL=gateway.http, OPENCLAW_GATEWAY_TOKEN=TOKEN
    )
    result = await asyncio.to_thread(cli, ["status", "--json"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["provider"]["name"] == "echo"

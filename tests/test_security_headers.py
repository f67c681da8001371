"""The page, its files and the API answer with a strict CSP, no framing and no sniffing."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from open_clanker.gateway.security_headers import content_security_policy
from tests.test_ws import AUTH, run_gateway

STRICT = (
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'self'",
)


@pytest.mark.parametrize(
    ("host", "connect"),
    [
        ("127.0.0.1:18789", "connect-src 'self' ws://127.0.0.1:18789 wss://127.0.0.1:18789"),
        ("chat.example.com", "connect-src 'self' ws://chat.example.com wss://chat.example.com"),
        ("[::1]:8080", "connect-src 'self' ws://[::1]:8080 wss://[::1]:8080"),
        (None, "connect-src 'self'"),
        ("", "connect-src 'self'"),
        # Never written into the header: it could add its own directives.
        ("evil.example; script-src *", "connect-src 'self'"),
        ("a b", "connect-src 'self'"),
        ("host:99999999", "connect-src 'self'"),
    ],
)
def test_policy(host: str | None, connect: str) -> None:
    directives = content_security_policy(host).split("; ")
    assert set(STRICT) <= set(directives)
    assert [d for d in directives if d.startswith("connect-src")] == [connect]
    assert "unsafe-inline" not in content_security_policy(host)


@pytest.mark.parametrize(
    ("path", "auth", "status", "kind"),
    [
        ("/", False, 200, "text/html"),
        ("/static/app.js", False, 200, "javascript"),
        ("/static/markdown.js", False, 200, "javascript"),
        ("/static/vendor/markdown-it.min.js", False, 200, "javascript"),
        ("/static/vendor/highlight.min.js", False, 200, "javascript"),
        ("/static/style.css", False, 200, "text/css"),
        ("/api/v1/status", True, 200, "application/json"),
        ("/api/v1/status", False, 401, "application/json"),
        ("/nowhere", False, 404, "application/json"),
    ],
)
async def test_every_answer_carries_the_headers(
    tmp_path: Path, data_dir: Path, path: str, auth: bool, status: int, kind: str
) -> None:
    async with run_gateway(tmp_path) as gw, aiohttp.ClientSession() as http:
        async with http.get(gw.http + path, headers=AUTH if auth else {}) as r:
            assert r.status == status
            assert kind in r.headers["Content-Type"]
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert r.headers["X-Frame-Options"] == "DENY"
            assert r.headers["Referrer-Policy"] == "no-referrer"
            policy = r.headers.getall("Content-Security-Policy")
    assert len(policy) == 1
    assert set(STRICT) <= set(policy[0].split("; "))
    assert f"ws://127.0.0.1:{gw.port}" in policy[0]


def test_vendored_libraries_ship_with_their_licenses() -> None:
    from open_clanker.gateway.routes.page import STATIC_DIR

    vendor = STATIC_DIR / "vendor"
    for name, license_words in (
        ("markdown-it", "Permission is hereby granted"),
        ("highlight", "BSD 3-Clause"),
    ):
        assert (vendor / f"{name}.min.js").stat().st_size > 10_000
        assert license_words in (vendor / f"{name}.LICENSE").read_text()
    page = (STATIC_DIR / "index.html").read_text()
    assert "<script>" not in page and "style=" not in page and "//cdn" not in page

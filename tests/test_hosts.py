"""Which Host headers the gateway answers (SPEC §5), as a table."""

from __future__ import annotations

import pytest

from open_clanker.gateway.hosts import HostPolicy, host_name


@pytest.mark.parametrize(
    ("bind", "allowed", "host", "ok"),
    [
        # Loopback bind: loopback names, plus allowed_hosts.
        ("127.0.0.1", [], "127.0.0.1:18789", True),
        ("127.0.0.1", [], "localhost", True),
        ("127.0.0.1", [], "[::1]:18789", True),
        ("127.0.0.1", [], "evil.example", False),  # DNS rebinding
        ("127.0.0.1", ["bot.example.com"], "bot.example.com:443", True),
        ("127.0.0.1", ["bot.example.com"], "evil.example", False),
        # Public bind: anything until allowed_hosts is set; loopback names always.
        ("0.0.0.0", [], "203.0.113.7:18789", True),
        ("0.0.0.0", ["bot.example.com"], "bot.example.com", True),
        ("0.0.0.0", ["bot.example.com"], "203.0.113.7:18789", False),
        ("0.0.0.0", ["bot.example.com"], "127.0.0.1:18789", True),  # docker exec … status
        ("0.0.0.0", ["bot.example.com"], "localhost", True),
        ("::", ["Bot.Example.com:8443"], "BOT.example.COM", True),
        # Only exact loopback names and IP literals (issue 13, item 2).
        ("127.0.0.1", [], "127.evil.com", False),
        ("127.0.0.1", [], "127.0.0.1.evil.com:18789", False),
        ("127.0.0.1", [], "localhost.evil.com", False),
        ("127.0.0.1", [], "127.1.2.3:18789", True),
        ("127.0.0.1", [], "[::1]", True),
        ("127.0.0.1", [], "::1", True),
        ("127.0.0.1", [], "[::2]:18789", False),
        ("127.0.0.1", [], "LOCALHOST:80", True),
        ("0.0.0.0", ["bot.example.com"], "127.evil.com", False),
        ("127.5.5.5", [], "evil.example", False),  # any 127/8 bind is a loopback bind
        ("127.evil.com", [], "evil.example", True),  # a name bind is not loopback
    ],
)
def test_host_policy(bind: str, allowed: list[str], host: str, ok: bool) -> None:
    assert HostPolicy.build(bind, allowed).allows(host) is ok


def test_host_name_strips_the_port() -> None:
    assert host_name("Example.com:8080") == "example.com"
    assert host_name("[::1]:80") == "[::1]"
    assert host_name("::1") == "::1"


@pytest.mark.usefixtures("data_dir")
async def test_a_name_that_starts_with_127_is_refused_by_the_server() -> None:
    import aiohttp

    from tests.harness import running_gateway

    async with running_gateway() as gw, aiohttp.ClientSession() as http:
        for host, status in (("127.evil.com", 403), ("127.0.0.2:1", 200), ("localhost", 200)):
            headers = {**gw.auth, "Host": host}
            async with http.get(f"{gw.base_url}/api/v1/status", headers=headers) as r:
                assert r.status == status, host
                if status == 403:
                    assert (await r.json())["error"]["code"] == "forbidden_host"

"""The one aiohttp session every provider shares: one pool, one TLS context, made once."""

from __future__ import annotations

import aiohttp


def make_http_session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=200, ttl_dns_cache=300, enable_cleanup_closed=True)
    # Timeouts are per request (the provider's `timeout_s`), not per session.
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))


async def probe_openai_compatible(http: aiohttp.ClientSession, base_url: str) -> bool:
    """True when an OpenAI-compatible server answers `GET <base>/models` quickly."""
    try:
        async with http.get(f"{base_url}/models", timeout=aiohttp.ClientTimeout(total=0.5)) as resp:
            return resp.status == 200
    except (aiohttp.ClientError, TimeoutError, OSError):
        return False

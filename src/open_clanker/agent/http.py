"""The one aiohttp session every provider shares, and the thin I/O helpers providers use.

Everything that can go wrong on the wire leaves here as a `ProviderError`; the rules for
which failures are retryable live in `wire_errors` as pure functions.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from open_clanker.agent.sse import SSEEvent, SSEParser
from open_clanker.agent.wire_errors import error_from_exception, error_from_status
from open_clanker.core.errors import ProviderError

MAX_ERROR_BODY_BYTES = 64 * 1024
# Longest silence tolerated inside a stream; vendors send keep-alive pings well within this.
STREAM_IDLE_S = 60.0
CONNECT_S = 10.0
# Above this aiohttp wants a stream it writes in chunks (a body with images as data URLs).
LARGE_BODY_BYTES = 1024 * 1024


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


def request_timeout(timeout_s: float, *, streaming: bool) -> aiohttp.ClientTimeout:
    """`timeout_s` bounds the whole exchange; a stream also may not fall silent for long."""
    return aiohttp.ClientTimeout(
        total=timeout_s,
        sock_connect=min(timeout_s, CONNECT_S),
        sock_read=min(timeout_s, STREAM_IDLE_S) if streaming else timeout_s,
    )


@asynccontextmanager
async def post_json(
    http: aiohttp.ClientSession,
    provider: str,
    url: str,
    *,
    headers: Mapping[str, str],
    body: Mapping[str, Any],
    client_timeout: aiohttp.ClientTimeout,
) -> AsyncIterator[aiohttp.ClientResponse]:
    """POST a JSON body; yields a 2xx response. Errors while the caller reads it are mapped too."""
    text = json.dumps(body)  # ASCII: as many bytes as characters
    data: str | io.BytesIO = io.BytesIO(text.encode()) if len(text) > LARGE_BODY_BYTES else text
    try:
        async with http.post(url, data=data, headers=dict(headers), timeout=client_timeout) as resp:
            if resp.status >= 300:
                raw = await resp.content.read(MAX_ERROR_BODY_BYTES)
                raise error_from_status(
                    provider, resp.status, resp.headers, raw.decode("utf-8", "replace")
                )
            yield resp
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise error_from_exception(provider, exc) from exc


async def read_json(resp: aiohttp.ClientResponse, provider: str) -> dict[str, Any]:
    raw = await resp.read()
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ProviderError(
            f"{provider} sent an answer that is not a JSON object", provider, retryable=True
        )
    return data


async def sse_events(resp: aiohttp.ClientResponse) -> AsyncIterator[SSEEvent]:
    parser = SSEParser()
    async for chunk in resp.content.iter_any():
        for event in parser.feed(chunk):
            yield event


def parse_event_json(event: SSEEvent, provider: str) -> dict[str, Any]:
    try:
        data = json.loads(event.data)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ProviderError(f"{provider} sent an unreadable stream event", provider, retryable=True)
    return data

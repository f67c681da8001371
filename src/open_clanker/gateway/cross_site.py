"""Requests a browser makes for another web site are refused before auth, so a page elsewhere
can neither drive the gateway nor spend the owner's auth lockout with tokenless requests.

Browsers say where a request comes from: `Sec-Fetch-Site` (every current browser) and
`Origin` (CORS requests, every POST, WebSocket upgrades). A request with neither is not from a
browser page (the CLI, curl, a platform's webhook) and is judged by its token alone.
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from open_clanker.gateway.ws_frames import origin_allowed

CODE = "cross_site_refused"
MESSAGE = (
    "Requests from other web sites are refused: use the gateway's own page, "
    "or add that site's origin to server.cors_origins."
)

# `same-site` is another origin too: another port on this machine (every loopback port is
# one "site"), or a sibling subdomain.
_OTHER_SITES = frozenset({"cross-site", "same-site"})
_PAGE_PATHS = frozenset({"/"})


@dataclass(frozen=True, slots=True)
class RequestSource:
    method: str
    path: str
    host: str | None
    origin: str | None
    fetch_site: str | None
    fetch_mode: str | None


def refused(source: RequestSource, cors_origins: Sequence[str]) -> bool:
    """True for a browser request made by another site's page (pure)."""
    if source.origin is not None and _configured(source.origin, cors_origins):
        return False
    site = (source.fetch_site or "").lower()
    if site in _OTHER_SITES:
        # A link to the web chat page is followed (the page asks before it replaces a saved
        # token); it carries no credentials and changes nothing.
        return not _page_navigation(source)
    if source.origin is not None:
        # Browsers without Fetch Metadata still send Origin on what could change something.
        return not origin_allowed(source.origin, source.host, list(cors_origins))
    return False


def _configured(origin: str, cors_origins: Sequence[str]) -> bool:
    return origin.rstrip("/").lower() in {o.rstrip("/").lower() for o in cors_origins}


def _page_navigation(source: RequestSource) -> bool:
    return (
        source.method in ("GET", "HEAD")
        and (source.fetch_mode or "").lower() == "navigate"
        and source.path in _PAGE_PATHS
    )


def source_of(scope: MutableMapping[str, Any]) -> RequestSource:
    found: dict[bytes, str] = {}
    for key, value in scope.get("headers", ()):
        if key in (b"host", b"origin", b"sec-fetch-site", b"sec-fetch-mode") and key not in found:
            found[key] = value.decode("latin-1")
    return RequestSource(
        method=str(scope.get("method", "GET")),
        path=str(scope.get("path", "")),
        host=found.get(b"host"),
        origin=found.get(b"origin"),
        fetch_site=found.get(b"sec-fetch-site"),
        fetch_mode=found.get(b"sec-fetch-mode"),
    )


async def send_refusal(scope: MutableMapping[str, Any], send: Any) -> None:
    """403 `cross_site_refused`, as JSON (a WebSocket upgrade gets it as its HTTP answer)."""
    body = json.dumps({"error": {"code": CODE, "message": MESSAGE}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    prefix = "websocket.http.response" if scope["type"] == "websocket" else "http.response"
    await send({"type": f"{prefix}.start", "status": 403, "headers": headers})
    await send({"type": f"{prefix}.body", "body": body})

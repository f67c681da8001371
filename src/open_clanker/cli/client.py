"""A small HTTP client for commands that talk to a running gateway (stdlib only: fast start)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

from open_clanker.core.errors import ClankerError

DEFAULT_GATEWAY_URL = "http://127.0.0.1:18789"


class GatewayUnavailable(ClankerError):
    code = "gateway_unavailable"


def gateway_url(explicit: str | None) -> str:
    return (explicit or os.environ.get("OPENCLAW_GATEWAY_URL") or DEFAULT_GATEWAY_URL).rstrip("/")


def gateway_token() -> str | None:
    from open_clanker.core.secret_env import GATEWAY_TOKEN_ENV, secret_from_env

    env = secret_from_env(os.environ, GATEWAY_TOKEN_ENV)  # or OPENCLAW_GATEWAY_TOKEN_FILE
    if env:
        return env
    from open_clanker.gateway.tokens import read_token_file

    return read_token_file()


def call(
    base_url: str, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 30
) -> Any:
    """Call the gateway; every failure becomes one clear ClankerError sentence."""
    headers = {"Accept": "application/json"}
    token = gateway_token()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(base_url + path, data=data, headers=headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise _refused(exc, token is not None) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise GatewayUnavailable(
            f"Cannot reach the gateway at {base_url} ({reason}). "
            "Is it running? Start it with: open-clanker gateway"
        ) from None


class GatewayRefused(ClankerError):
    """The gateway answered with an error; `code` is its own (`config_invalid`, …)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def _refused(exc: urllib.error.HTTPError, had_token: bool) -> GatewayRefused:
    try:
        error = json.loads(exc.read())["error"]
        detail, code = str(error["message"]), str(error["code"])
    except (ValueError, KeyError, TypeError):
        detail, code = str(exc.reason), "http_error"
    if exc.code == 401:
        hint = (
            "the token was refused; check OPENCLAW_GATEWAY_TOKEN"
            if had_token
            else "no token found; set OPENCLAW_GATEWAY_TOKEN or run on the gateway's machine"
        )
        return GatewayRefused(f"The gateway refused the request: {hint}.", code)
    return GatewayRefused(f"The gateway answered {exc.code}: {detail}", code)

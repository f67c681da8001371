"""`open-clanker chat`: a streamed terminal chat over the gateway's WebSocket."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from typing import Any

from open_clanker.cli.client import GatewayUnavailable, gateway_token
from open_clanker.core.errors import AuthError, ClankerError

PROMPT = "you> "


def ws_url(base_url: str) -> str:
    if base_url.startswith("https://"):
        return "wss://" + base_url[len("https://") :] + "/ws"
    return "ws://" + base_url.removeprefix("http://") + "/ws"


def run_chat(base_url: str, session: str | None) -> None:
    try:
        asyncio.run(_chat(base_url, session))
    except (KeyboardInterrupt, EOFError):
        print(file=sys.stderr)


async def _chat(base_url: str, session: str | None) -> None:
    import aiohttp

    token = gateway_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(ws_url(base_url), headers=headers, heartbeat=30)
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403):
                raise AuthError(
                    "The gateway refused the token; check OPENCLAW_GATEWAY_TOKEN."
                ) from None
            raise ClankerError(f"The gateway refused the WebSocket ({exc.status}).") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise GatewayUnavailable(
                f"Cannot reach the gateway at {base_url} ({exc}). "
                "Is it running? Start it with: open-clanker gateway"
            ) from None
        async with ws:
            await _check_auth(ws)
            print(f"Connected to {base_url}. Type a message; Ctrl-D to quit.", file=sys.stderr)
            loop = asyncio.get_running_loop()
            while True:
                line = await loop.run_in_executor(None, _read_line)
                if line is None:
                    return
                if not line.strip():
                    continue
                frame_id = uuid.uuid4().hex[:8]
                frame: dict[str, Any] = {"type": "chat", "id": frame_id, "text": line}
                if session:
                    frame["session"] = session
                await ws.send_str(json.dumps(frame))
                session = await _print_reply(ws, frame_id) or session


async def _check_auth(ws: Any) -> None:
    """A ping answered by a pong proves the token; anything else is reported now, not after
    the user has typed a first message."""
    import aiohttp

    await ws.send_str(json.dumps({"type": "ping"}))
    raw = await ws.receive(timeout=10)
    if raw.type is aiohttp.WSMsgType.TEXT:
        frame = json.loads(raw.data)
        if frame.get("type") == "pong":
            return
        if frame.get("code") == "unauthorized":
            raise AuthError("The gateway refused the token; check OPENCLAW_GATEWAY_TOKEN.")
        raise ClankerError(f"The gateway answered: {frame.get('message', frame)}")
    raise AuthError("The gateway closed the connection; check OPENCLAW_GATEWAY_TOKEN.")


def _read_line() -> str | None:
    try:
        return input(PROMPT)
    except EOFError:
        return None


async def _print_reply(ws: Any, frame_id: str) -> str | None:
    import aiohttp

    shown = 0
    async for raw in ws:
        if raw.type is not aiohttp.WSMsgType.TEXT:
            if raw.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                raise GatewayUnavailable("The gateway closed the connection.")
            continue
        frame = json.loads(raw.data)
        kind = frame.get("type")
        if frame.get("id") not in (None, frame_id):
            continue
        if kind == "delta":
            sys.stdout.write(frame["text"])
            sys.stdout.flush()
            shown += len(frame["text"])
        elif kind == "reset":
            if shown:
                sys.stdout.write("\n[retrying…]\n")
            shown = 0
        elif kind == "reply":
            if not shown:
                sys.stdout.write(frame["reply"]["content"])
            sys.stdout.write("\n")
            return str(frame.get("session") or "") or None
        elif kind == "error":
            if frame.get("code") == "unauthorized":
                raise AuthError("The gateway refused the token; check OPENCLAW_GATEWAY_TOKEN.")
            sys.stdout.write(f"\n[error] {frame.get('message')}\n")
            return None
    raise GatewayUnavailable("The gateway closed the connection.")

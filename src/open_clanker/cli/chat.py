"""`open-clanker chat`: a streamed terminal chat over the gateway's WebSocket.

The prompt runs in the main thread (readline, and Ctrl-C as KeyboardInterrupt); the socket
lives on an event loop in a second thread, so it keeps answering pings while the user thinks.
Ctrl-C during an answer stops it (a `stop` frame); a second Ctrl-C, or Ctrl-C / Ctrl-D at the
prompt, ends the chat.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import signal
import sys
import threading
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

from open_clanker.cli.client import GatewayUnavailable, gateway_token
from open_clanker.cli.line_input import HISTORY_FILE, LineInput
from open_clanker.core.errors import AuthError, ClankerError

PROMPT = "you> "
REFUSED = "The gateway refused the token; check OPENCLAW_GATEWAY_TOKEN."
T = TypeVar("T")


def ws_url(base_url: str) -> str:
    if base_url.startswith("https://"):
        return "wss://" + base_url[len("https://") :] + "/ws"
    return "ws://" + base_url.removeprefix("http://") + "/ws"


def run_chat(base_url: str, session: str | None) -> None:
    from open_clanker.config.paths import data_dir

    # A session named now, so Ctrl-C can stop the first answer too.
    session = session or uuid.uuid4().hex[:12]
    lines = LineInput(data_dir() / HISTORY_FILE)
    link = _Link()
    try:
        link.connect(base_url)
        hint = "Ctrl-C stops an answer; Ctrl-D quits." if lines.editing else "Ctrl-D quits."
        print(f"Connected to {base_url}. Type a message; {hint}", file=sys.stderr)
        while True:
            line = lines.read(PROMPT)
            if line is None:
                break
            if line.strip():
                session = _ask(link, line, session)
    except KeyboardInterrupt:
        pass
    finally:
        print(file=sys.stderr)
        link.close()


def _ask(link: _Link, line: str, session: str) -> str:
    """Send one line and print the streamed answer; Ctrl-C once stops it."""
    socket = link.socket
    answer = link.submit(socket.ask(line, session))
    try:
        return link.wait(answer)
    except KeyboardInterrupt:
        link.submit(socket.stop(session))
    try:
        return link.wait(answer)  # the stopped answer arrives at once with its partial text
    except KeyboardInterrupt:
        answer.cancel()
        raise


class _Link:
    """An event loop in a daemon thread, and the one socket on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self.socket: _Socket

    def _run(self) -> None:
        # The kernel hands a process's SIGINT to any thread that does not block it. Taken here,
        # Python only sets a flag, and the main thread waiting in readline for a key never
        # sees Ctrl-C (it hung at the prompt now and then): only the main thread takes it.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def connect(self, base_url: str) -> None:
        future = self.submit(_Socket.open(base_url))
        try:
            self.socket = future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise

    @staticmethod
    def wait(future: concurrent.futures.Future[T]) -> T:
        """The result; Ctrl-C meanwhile raises KeyboardInterrupt here and leaves it running."""
        return future.result()

    def close(self) -> None:
        socket = getattr(self, "socket", None)
        if socket is not None:
            with contextlib.suppress(concurrent.futures.TimeoutError, ClankerError, OSError):
                self.submit(socket.close()).result(5)  # leaving anyway if it does not
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


class _Socket:
    """The WebSocket, read by one task that hands each frame to whoever waits for it."""

    def __init__(self, http: Any, ws: Any) -> None:
        self._http = http
        self._ws = ws
        self._frames: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, base_url: str) -> _Socket:
        import aiohttp

        token = gateway_token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        http = aiohttp.ClientSession()
        try:
            ws = await http.ws_connect(ws_url(base_url), headers=headers, heartbeat=30)
        except aiohttp.WSServerHandshakeError as exc:
            await http.close()
            if exc.status in (401, 403):
                raise AuthError(REFUSED) from None
            raise ClankerError(f"The gateway refused the WebSocket ({exc.status}).") from None
        except (aiohttp.ClientError, OSError) as exc:
            await http.close()
            raise GatewayUnavailable(
                f"Cannot reach the gateway at {base_url} ({exc}). "
                "Is it running? Start it with: open-clanker gateway"
            ) from None
        socket = cls(http, ws)
        try:
            await socket._check_auth()
        except BaseException:
            await socket.close()
            raise
        return socket

    async def _read(self) -> None:
        import aiohttp

        try:
            async for raw in self._ws:
                if raw.type is aiohttp.WSMsgType.TEXT:
                    self._frames.put_nowait(json.loads(raw.data))
        finally:
            self._frames.put_nowait(None)  # closed: whoever waits hears of it

    async def _next(self) -> dict[str, Any]:
        frame = await self._frames.get()
        if frame is None:
            self._frames.put_nowait(None)
            raise GatewayUnavailable("The gateway closed the connection.")
        return frame

    async def _check_auth(self) -> None:
        """A ping answered by a pong proves the token; anything else is reported now, not after
        the user has typed a first message."""
        await self._ws.send_str(json.dumps({"type": "ping"}))
        try:
            async with asyncio.timeout(10):
                frame = await self._next()
        except (GatewayUnavailable, TimeoutError):
            raise AuthError(
                "The gateway closed the connection; check OPENCLAW_GATEWAY_TOKEN."
            ) from None
        if frame.get("type") == "pong":
            return
        if frame.get("code") == "unauthorized":
            raise AuthError(REFUSED)
        raise ClankerError(f"The gateway answered: {frame.get('message', frame)}")

    async def ask(self, text: str, session: str) -> str:
        frame_id = uuid.uuid4().hex[:8]
        frame = {"type": "chat", "id": frame_id, "text": text, "session": session}
        await self._ws.send_str(json.dumps(frame))
        return await self._print_reply(frame_id) or session

    async def stop(self, session: str) -> None:
        await self._ws.send_str(json.dumps({"type": "stop", "session": session}))

    async def _print_reply(self, frame_id: str) -> str | None:
        out = sys.stdout
        shown = 0
        while True:
            frame = await self._next()
            kind = frame.get("type")
            if frame.get("id") not in (None, frame_id):
                continue
            if kind == "delta":
                out.write(frame["text"])
                out.flush()
                shown += len(frame["text"])
            elif kind == "reset":
                if shown:
                    out.write("\n[retrying…]\n")
                shown = 0
            elif kind == "reply":
                reply = frame["reply"]
                if not shown:
                    out.write(reply["content"])
                out.write("\n[stopped]\n" if reply.get("finish_reason") == "stopped" else "\n")
                out.flush()
                return str(frame.get("session") or "") or None
            elif kind == "error":
                if frame.get("code") == "unauthorized":
                    raise AuthError(REFUSED)
                out.write(f"\n[error] {frame.get('message')}\n")
                return None

    async def close(self) -> None:
        self._reader.cancel()
        await self._ws.close()
        await self._http.close()

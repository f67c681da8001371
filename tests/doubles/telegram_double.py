"""A loopback Telegram Bot API: enough of it to drive python-telegram-bot for real.

Methods live under `/bot<token>/<method>` and take JSON, urlencoded or multipart bodies. It
records every call, long-polls `getUpdates` on an event, checks `sendMessage` like Telegram
(length after entity parsing, HTML tags), and can be scripted to fail.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from aiohttp import web

TOKEN = "123456789:AAF-test-token-for-the-double-0123456789"
BOT_ID = 999_000_111
BOT_USERNAME = "clanker_bot"

_JSON_PARAMS = {"reply_parameters", "allowed_updates", "commands", "entities", "reply_markup"}
_INT_PARAMS = {
    "chat_id",
    "offset",
    "timeout",
    "limit",
    "message_thread_id",
    "reply_to_message_id",
    "message_id",
}
_HTML_TAGS = {
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "code", "pre", "a",
    "tg-spoiler", "span", "blockquote", "tg-emoji",
}  # fmt: skip


class EntityError(ValueError):
    pass


class _Entities(HTMLParser):
    """Telegram's HTML parse mode, minimally: known tags, properly nested; text unescaped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _HTML_TAGS:
            raise EntityError(f'Unsupported start tag "{tag}"')
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            raise EntityError(f'Unmatched end tag "{tag}"')
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def visible_text(text: str, parse_mode: str | None) -> str:
    """What Telegram would show for the text; raises EntityError when it would refuse it."""
    if parse_mode is None:
        return text
    if parse_mode.upper() != "HTML":
        raise EntityError(f"unsupported parse mode {parse_mode}")
    parser = _Entities()
    parser.feed(text)
    parser.close()
    if parser.stack:
        raise EntityError(f'Can\'t find end tag corresponding to start tag "{parser.stack[-1]}"')
    return "".join(parser.text)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass
class Call:
    method: str
    params: dict[str, Any]


@dataclass
class Sent:
    """A message the bot sent, as the chat would show it."""

    message_id: int
    chat_id: int | str
    text: str  # visible text
    raw: str  # what the bot sent
    parse_mode: str | None
    thread_id: int | None
    reply_to: int | None


@dataclass
class TelegramDouble:
    token: str = TOKEN
    calls: list[Call] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    webhook_url: str = ""
    webhook_secret: str = ""
    webhook_error: str = ""  # what getWebhookInfo reports as the last delivery error
    # Scripted failures: each sendMessage pops one (status, body) while any are left.
    send_failures: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    reject_entities: int = 0  # the next N HTML sendMessage calls fail to parse
    get_updates_failures: int = 0  # the next N getUpdates answer 502
    hang_get_updates: bool = False  # getUpdates never answers while set
    chat_types: dict[int, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)  # file_id -> content for getFile
    # Real Telegram serves one getUpdates per bot: a second poll ends the one waiting with
    # 409 "terminated by other getUpdates request". Each such ending is counted here.
    conflicts: int = 0

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._message_ids = itertools.count(10_000)
        self._arrived = asyncio.Event()
        self._changed = asyncio.Condition()
        self._unhang = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._closing = False
        self._poll = 0  # the id of the getUpdates call Telegram would answer
        self.base_url = ""

    # -- running ----------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        app.router.add_get("/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        self._closing = True  # answer pending long polls now, so shutdown does not wait
        self._arrived.set()
        self._unhang.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- scripting --------------------------------------------------------------------------

    def push(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates (an update_id is assigned when missing)."""
        update = dict(update)
        update.setdefault("update_id", next(self._ids))
        for key in ("message", "edited_message"):
            if key in update:
                chat = update[key]["chat"]
                self.chat_types[chat["id"]] = chat["type"]
        self.updates.append(update)
        self._arrived.set()
        return update

    def fail_sends(self, n: int, status: int = 429) -> None:
        for _ in range(n):
            if status == 429:
                body = {
                    "ok": False,
                    "error_code": 429,
                    "description": "Too Many Requests: retry after 1",
                    "parameters": {"retry_after": 1},
                }
            elif status == 403:
                body = {
                    "ok": False,
                    "error_code": 403,
                    "description": "Forbidden: bot was blocked by the user",
                }
            elif status == 400:
                body = {
                    "ok": False,
                    "error_code": 400,
                    "description": "Bad Request: chat not found",
                }
            else:
                body = {"ok": False, "error_code": status, "description": "Internal Server Error"}
            self.send_failures.append((status, body))

    def release_hang(self) -> None:
        self.hang_get_updates = False
        self._unhang.set()

    def methods(self) -> list[str]:
        return [c.method for c in self.calls]

    def params_of(self, method: str) -> list[dict[str, Any]]:
        return [c.params for c in self.calls if c.method == method]

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Block until the predicate holds after some API call (no sleeping)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

    # -- the API ----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _params(request)
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        self.calls.append(Call(method, params))
        handler = getattr(self, f"_m_{method}", None)
        try:
            if handler is None:
                return _error(404, "Not Found: method not found")
            response: web.Response = await handler(params)
            return response
        finally:
            async with self._changed:
                self._changed.notify_all()

    async def _m_getMe(self, _params: dict[str, Any]) -> web.Response:
        return _ok(self.bot_user())

    def bot_user(self) -> dict[str, Any]:
        return {"id": BOT_ID, "is_bot": True, "first_name": "Clanker", "username": BOT_USERNAME}

    async def _m_setMyCommands(self, _params: dict[str, Any]) -> web.Response:
        return _ok(True)

    async def _m_setWebhook(self, params: dict[str, Any]) -> web.Response:
        self.webhook_url = str(params.get("url", ""))
        self.webhook_secret = str(params.get("secret_token", ""))
        return _ok(True)

    async def _m_getWebhookInfo(self, _params: dict[str, Any]) -> web.Response:
        info: dict[str, Any] = {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": 0,
        }
        if self.webhook_error:
            info["last_error_date"] = int(time.time())
            info["last_error_message"] = self.webhook_error
        return _ok(info)

    async def _m_deleteWebhook(self, _params: dict[str, Any]) -> web.Response:
        self.webhook_url = ""
        return _ok(True)

    async def _m_getUpdates(self, params: dict[str, Any]) -> web.Response:
        if self.webhook_url:
            return _error(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        if self.get_updates_failures > 0:
            self.get_updates_failures -= 1
            return _error(502, "Bad Gateway")
        if self.hang_get_updates:
            self._unhang.clear()
            await self._unhang.wait()
        offset = int(params.get("offset") or 0)
        if offset:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        self._poll += 1
        mine = self._poll
        self._arrived.set()  # wake a poll already waiting: it is terminated below
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        while not self.updates and not self._closing:
            if self._poll != mine:
                self.conflicts += 1
                return _error(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only "
                    "one bot instance is running",
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
        limit = int(params.get("limit") or 100)
        return _ok(self.updates[:limit])

    async def _m_sendMessage(self, params: dict[str, Any]) -> web.Response:
        if self.send_failures:
            status, body = self.send_failures.pop(0)
            return web.json_response(body, status=status)
        text = str(params.get("text", ""))
        parse_mode = params.get("parse_mode")
        if parse_mode and self.reject_entities > 0:
            self.reject_entities -= 1
            return _error(
                400, "Bad Request: can't parse entities: Unsupported start tag at byte offset 0"
            )
        try:
            shown = visible_text(text, parse_mode)
        except EntityError as exc:
            return _error(400, f"Bad Request: can't parse entities: {exc}")
        if not shown.strip():
            return _error(400, "Bad Request: message text is empty")
        if utf16_len(shown) > 4096:
            return _error(400, "Bad Request: message is too long")
        chat_id = params["chat_id"]
        reply = params.get("reply_parameters") or {}
        reply_to = reply.get("message_id") if isinstance(reply, dict) else None
        reply_to = reply_to or params.get("reply_to_message_id")
        sent = Sent(
            message_id=next(self._message_ids),
            chat_id=chat_id,
            text=shown,
            raw=text,
            parse_mode=parse_mode,
            thread_id=params.get("message_thread_id"),
            reply_to=reply_to,
        )
        self.sent.append(sent)
        return _ok(self._message_json(sent))

    def _message_json(self, sent: Sent) -> dict[str, Any]:
        chat_type = self.chat_types.get(int(sent.chat_id), "private")
        return {
            "message_id": sent.message_id,
            "date": int(time.time()),
            "chat": {"id": sent.chat_id, "type": chat_type},
            "from": self.bot_user(),
            "text": sent.text,
        }

    async def _m_sendChatAction(self, _params: dict[str, Any]) -> web.Response:
        return _ok(True)

    async def _m_editMessageText(self, params: dict[str, Any]) -> web.Response:
        for sent in self.sent:
            if sent.message_id == params.get("message_id") and sent.chat_id == params.get(
                "chat_id"
            ):
                if str(params["text"]) == sent.raw and params.get("parse_mode") == sent.parse_mode:
                    return _error(
                        400,
                        "Bad Request: message is not modified: specified new message content "
                        "and reply markup are exactly the same as a current content and reply "
                        "markup of the message",
                    )
                sent.text = visible_text(str(params["text"]), params.get("parse_mode"))
                sent.raw = str(params["text"])
                sent.parse_mode = params.get("parse_mode")
                return _ok(self._message_json(sent))
        return _error(400, "Bad Request: message to edit not found")

    async def _m_getFile(self, params: dict[str, Any]) -> web.Response:
        file_id = str(params.get("file_id", ""))
        if self.files and file_id not in self.files:
            return _error(400, "Bad Request: invalid file_id")
        return _ok(
            {
                "file_id": file_id,
                "file_unique_id": f"u-{file_id}",
                "file_size": len(self.files.get(file_id, b"")) or 1234,
                "file_path": f"documents/{file_id}.bin",
            }
        )

    async def _download(self, request: web.Request) -> web.Response:
        """The file endpoint: /file/bot<token>/<file_path>, as getFile's file_path names it."""
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        self.calls.append(Call("download", {"path": request.match_info["path"]}))
        file_id = request.match_info["path"].removeprefix("documents/").removesuffix(".bin")
        if file_id not in self.files:
            return web.Response(status=404)
        return web.Response(body=self.files[file_id])


async def _params(request: web.Request) -> dict[str, Any]:
    if request.method == "GET":
        raw: dict[str, Any] = dict(request.query)
    elif request.content_type == "application/json":
        body = await request.json()
        return dict(body) if isinstance(body, dict) else {}
    elif request.can_read_body:
        raw = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    else:
        raw = {}
    params: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _JSON_PARAMS:
            params[key] = json.loads(value)
        elif key in _INT_PARAMS and value.lstrip("-").isdigit():
            params[key] = int(value)
        elif value in ("true", "false"):
            params[key] = value == "true"
        else:
            params[key] = value
    return params


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _error(status: int, description: str) -> web.Response:
    return web.json_response(
        {"ok": False, "error_code": status, "description": description}, status=status
    )


# -- update builders --------------------------------------------------------------------------

_message_ids = itertools.count(1)


def user(user_id: int = 42, username: str = "alice") -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": username.title(), "username": username}


def message(
    text: str | None = None,
    *,
    chat_id: int = 42,
    chat_type: str = "private",
    sender: dict[str, Any] | None = None,
    message_id: int | None = None,
    entities: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A Message object as Telegram sends it."""
    msg: dict[str, Any] = {
        "message_id": message_id if message_id is not None else next(_message_ids),
        "date": int(time.time()),
        "chat": {"id": chat_id, "type": chat_type}
        | ({"title": "Group"} if chat_type != "private" else {"first_name": "Alice"}),
        "from": sender if sender is not None else user(),
    }
    if text is not None:
        msg["text"] = text
        msg["entities"] = entities if entities is not None else auto_entities(text)
    msg.update(extra)
    return msg


def auto_entities(text: str) -> list[dict[str, Any]]:
    """The mention and command entities Telegram would attach (ASCII text assumed)."""
    found: list[dict[str, Any]] = []
    for i, word in enumerate(text.split(" ")):
        offset = sum(len(w) + 1 for w in text.split(" ")[:i])
        if word.startswith("@") and len(word) > 1:
            found.append({"type": "mention", "offset": offset, "length": len(word)})
        elif word.startswith("/") and i == 0 and len(word) > 1:
            found.append({"type": "bot_command", "offset": 0, "length": len(word)})
    return found


def update(
    msg: dict[str, Any], *, kind: str = "message", update_id: int | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {kind: msg}
    if update_id is not None:
        body["update_id"] = update_id
    return body


def config_for(double: TelegramDouble, **overrides: Any) -> Any:
    """A `TelegramConfig` pointing at the double."""
    from open_clanker.channels.telegram.config import TelegramConfig

    values: dict[str, Any] = {"bot_token": double.token, "api_base_url": double.base_url}
    values.update(overrides)
    return TelegramConfig(**values)

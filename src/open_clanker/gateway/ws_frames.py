"""WebSocket wire format (SPEC §5): client frames parsed strictly, server frames built as dicts.

Pure functions only; the endpoint in `ws.py` does the I/O around them.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from open_clanker.core.errors import InputError, InvalidJSONError
from open_clanker.core.logging import REDACTOR
from open_clanker.core.text import CleanStr
from open_clanker.core.types import AgentResponse, Message

MAX_FRAME_BYTES = 1024 * 1024  # SPEC §5: a bigger frame closes the socket with 1009
MAX_ID_CHARS = 200
MAX_SESSION_CHARS = 500

Frame = dict[str, Any]


class _ClientFrame(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class AuthFrame(_ClientFrame):
    type: Literal["auth"]
    token: str = Field(max_length=4096)


class ChatFrame(_ClientFrame):
    type: Literal["chat"]
    id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    text: CleanStr = Field(min_length=1)  # NULs removed, as everywhere (core/text.py)
    session: CleanStr | None = Field(None, max_length=MAX_SESSION_CHARS)


class SubscribeFrame(_ClientFrame):
    type: Literal["subscribe"]


class PingFrame(_ClientFrame):
    type: Literal["ping"]


class StopFrame(_ClientFrame):
    """Stop the answer being written in a session (an addition to SPEC §5)."""

    type: Literal["stop"]
    session: str = Field(min_length=1, max_length=MAX_SESSION_CHARS)


AnyClientFrame = AuthFrame | ChatFrame | SubscribeFrame | PingFrame | StopFrame
ClientFrame = Annotated[AnyClientFrame, Field(discriminator="type")]
_client_frame: TypeAdapter[AnyClientFrame] = TypeAdapter(ClientFrame)


def parse_frame(raw: str | bytes) -> AnyClientFrame:
    """One client frame, or `InvalidJSONError` / `InputError` with a sentence for the client."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidJSONError("That frame is not valid JSON; send one JSON object.") from None
    except RecursionError:  # a frame nested thousands of levels deep
        raise InvalidJSONError(
            "That frame is nested too deeply; send a flat JSON object."
        ) from None
    if not isinstance(data, dict):
        raise InputError('A frame must be a JSON object with a "type".')
    try:
        return _client_frame.validate_python(data)
    except ValidationError as exc:
        raise InputError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "frame"
    if first["type"] == "union_tag_invalid" or first["type"] == "union_tag_not_found":
        return 'Unknown frame type; expected "auth", "chat", "subscribe", "ping" or "stop".'
    return f"The frame's {where!r} field is wrong: {first['msg']}."


def frame_id(raw: str | bytes) -> str | None:
    """The client's `id` of a frame that failed validation, so its error can name it."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and len(value) <= MAX_ID_CHARS else None


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _host_port(netloc: str, default_port: int) -> tuple[str, int] | None:
    parts = urlsplit(f"//{netloc}")
    try:
        port = parts.port or default_port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname.lower(), port


def origin_allowed(origin: str | None, host: str | None, cors_origins: list[str]) -> bool:
    """A browser's upgrade is allowed from the gateway's own page or a configured origin.

    Clients that send no Origin (CLI, scripts) are not browsers and pass; bearer auth still
    applies to them.
    """
    if origin is None:
        return True
    allowed = {o.rstrip("/").lower() for o in cors_origins}
    if origin.rstrip("/").lower() in allowed:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    default = 443 if parts.scheme == "https" else 80
    theirs = _host_port(parts.netloc, default)
    ours = _host_port(host or "", default)
    return theirs is not None and theirs == ours


def error_frame(code: str, message: str, frame_id: str | None = None) -> Frame:
    # Redacted like a log line: a provider's error may echo a secret it was sent.
    frame: Frame = {"type": "error", "code": code, "message": REDACTOR.redact(message)}
    if frame_id is not None:
        frame["id"] = frame_id
    return frame


def ack_frame(frame_id: str) -> Frame:
    return {"type": "ack", "id": frame_id}


def delta_frame(frame_id: str, text: str) -> Frame:
    return {"type": "delta", "id": frame_id, "text": text}


def reset_frame(frame_id: str) -> Frame:
    return {"type": "reset", "id": frame_id}


def reply_frame(frame_id: str, session: str, message: Message, reply: AgentResponse) -> Frame:
    return {
        "type": "reply",
        "id": frame_id,
        "session": session,
        "message": message.model_dump(mode="json"),
        "reply": reply.model_dump(mode="json"),
    }


def stopped_frame(session: str, stopped: bool) -> Frame:
    return {"type": "stopped", "session": session, "stopped": stopped}


def event_frame(message: Message) -> Frame:
    return {"type": "event", "message": message.model_dump(mode="json")}


PONG: Frame = {"type": "pong"}

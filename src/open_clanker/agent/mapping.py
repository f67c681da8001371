"""Conversation history turned into each vendor's message list (pure, table-tested).

Both vendors want user/assistant turns alternating with the newest user turn last; Anthropic
also refuses a conversation that opens with the assistant. Images the vendor can see become
image parts; any other attachment becomes a one-line note naming the file.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from open_clanker.core.types import Attachment, ChatTurn, Role

JSON = dict[str, Any]

# The image types both vendors accept; anything else (svg, heic, ...) is described instead.
VISION_MIME_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


def is_image(att: Attachment) -> bool:
    """An image the vendor can fetch or read: platform-internal references (a Telegram file id)
    are described instead, never sent as a URL the vendor cannot open."""
    return att.mime_type.lower() in VISION_MIME_TYPES and att.url.startswith(
        ("https://", "http://", "data:")
    )


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n / (1024 * 1024):.1f} MB"


def attachment_note(att: Attachment) -> str:
    parts = [att.name or att.id, att.mime_type]
    if att.size_bytes > 0:
        parts.append(_size(att.size_bytes))
    return f"[attachment: {', '.join(parts)}]"


def normalize_turns(turns: Iterable[ChatTurn], *, allow_assistant_first: bool) -> list[ChatTurn]:
    """Alternating turns ending with a user turn.

    Empty turns are dropped, neighbours of the same role merged (a blank line between), and
    assistant turns after the newest user turn dropped: a history should never end that way,
    and sending one would make the model continue its own answer.
    """
    merged: list[ChatTurn] = []
    for turn in turns:
        if not turn.text.strip() and not turn.attachments:
            continue
        if merged and merged[-1].role is turn.role:
            prev = merged[-1]
            text = "\n\n".join(t for t in (prev.text, turn.text) if t.strip())
            merged[-1] = ChatTurn(prev.role, text, prev.attachments + turn.attachments)
        else:
            merged.append(turn)
    while merged and merged[-1].role is Role.ASSISTANT:
        merged.pop()
    if not allow_assistant_first:
        while merged and merged[0].role is Role.ASSISTANT:
            merged.pop(0)
    return merged


def _text_with_notes(turn: ChatTurn, notes_for: Iterable[Attachment]) -> str:
    notes = [attachment_note(a) for a in notes_for]
    return "\n".join(part for part in (turn.text, *notes) if part.strip())


def _anthropic_image(att: Attachment) -> JSON:
    if att.url.startswith("data:") and ";base64," in att.url:
        head, data = att.url[5:].split(";base64,", 1)
        source: JSON = {"type": "base64", "media_type": head or att.mime_type, "data": data}
    else:
        source = {"type": "url", "url": att.url}
    return {"type": "image", "source": source}


def to_anthropic_messages(turns: Iterable[ChatTurn]) -> list[JSON]:
    """Anthropic Messages API `messages` (the system prompt goes in the top-level `system`)."""
    out: list[JSON] = []
    for turn in normalize_turns(turns, allow_assistant_first=False):
        images = [a for a in turn.attachments if is_image(a)] if turn.role is Role.USER else []
        text = _text_with_notes(turn, (a for a in turn.attachments if a not in images))
        if not images:
            out.append({"role": turn.role.value, "content": text})
            continue
        # Images first, then the words about them: the order Anthropic recommends.
        blocks = [_anthropic_image(a) for a in images]
        if text:
            blocks.append({"type": "text", "text": text})
        out.append({"role": turn.role.value, "content": blocks})
    return out


def to_openai_messages(system_prompt: str, turns: Iterable[ChatTurn]) -> list[JSON]:
    """Chat Completions `messages`: the system prompt first, then the conversation."""
    out: list[JSON] = []
    if system_prompt.strip():
        out.append({"role": "system", "content": system_prompt})
    for turn in normalize_turns(turns, allow_assistant_first=True):
        images = [a for a in turn.attachments if is_image(a)] if turn.role is Role.USER else []
        text = _text_with_notes(turn, (a for a in turn.attachments if a not in images))
        if not images:
            out.append({"role": turn.role.value, "content": text})
            continue
        parts: list[JSON] = [{"type": "text", "text": text}] if text else []
        parts.extend({"type": "image_url", "image_url": {"url": a.url}} for a in images)
        out.append({"role": turn.role.value, "content": parts})
    return out

"""An incremental Server-Sent Events parser: feed it bytes as they arrive, get whole events.

Follows the WHATWG event-stream rules that matter for model APIs: `\\n`, `\\r\\n` or `\\r` line
ends, `:` comments, several `data:` lines joined by `\\n`, one optional space after the colon,
an event dispatched on a blank line, and UTF-8 split across chunks.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str  # "message" when the server named none
    data: str


class SSEParser:
    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._event = ""
        self._data: list[str] = []
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        text = self._decoder.decode(chunk)
        if self._pending_cr:
            # A `\r` ended the previous chunk; a `\n` starting this one belongs to it.
            self._pending_cr = False
            if text.startswith("\n"):
                text = text[1:]
        if not text:
            return []
        if text.endswith("\r"):
            self._pending_cr = True
        self._buffer += text
        lines = self._buffer.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self._buffer = lines.pop()  # the unfinished last line (empty after a line end)
        events: list[SSEEvent] = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            if not self._data:
                self._event = ""  # an event with no data is not dispatched
                return None
            event = SSEEvent(self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        return None  # `id` and `retry` do not matter for a one-shot model answer

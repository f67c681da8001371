"""Streamed drafts on chat platforms: the growing reply shown as one message edited in place,
at most once per interval (platforms rate-limit edits). Cosmetic: a failed draft never fails
the reply, which is stored and delivered through the outbox as always."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from open_clanker.channels.base import SupportsDrafts
from open_clanker.core.errors import ChannelError

log = structlog.get_logger("open_clanker.pipeline")

DRAFT_INTERVAL_S = 1.0
DRAFT_MAX_CHARS = 3500  # a draft is one message: the final reply may be split later
CURSOR = " …"


class DraftSink:
    """A `ReplySink` that turns deltas into throttled draft edits."""

    def __init__(
        self,
        channel: SupportsDrafts,
        chat_id: str,
        thread_id: str | None,
        reply_to: str | None,
        interval_s: float = DRAFT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._channel = channel
        self._chat_id = chat_id
        self._thread_id = thread_id
        self._reply_to = reply_to
        self._interval_s = interval_s
        self._clock = clock
        self._text = ""
        self._shown = ""
        self._last = clock()
        self._broken = False
        self.message_id: str | None = None

    async def delta(self, text: str) -> None:
        self._text += text
        if self._clock() - self._last >= self._interval_s:
            await self._show()

    async def reset(self) -> None:
        self._text = ""

    async def _show(self) -> None:
        self._last = self._clock()
        text = self._text[:DRAFT_MAX_CHARS].rstrip() + CURSOR
        if self._broken or not self._text.strip() or text == self._shown:
            return
        try:
            self.message_id = await self._channel.draft(
                self._chat_id, self._thread_id, self._reply_to, text, self.message_id
            )
            self._shown = text
        except ChannelError as exc:
            self._broken = True  # e.g. a 429: stop drafting, the final reply still arrives
            log.info("draft_stopped", error=exc.message)

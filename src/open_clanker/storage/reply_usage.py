"""How the provider counted a stored reply's request, against our estimate of that request.

The provider's count is the reply's `usage.prompt_tokens` (`messages.response_json`); our
estimate is `sent_tokens` in the reply's `context_json`, written with the reply. Together they
give the session's token correction (pipeline/history.py) on any replica, after any restart.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from open_clanker.storage.database import Database
from open_clanker.storage.schema import messages

SENT_TOKENS = "sent_tokens"  # the key in a reply's context_json


def reply_context(sent_tokens: int) -> dict[str, int]:
    """What a reply row keeps about the request it answers."""
    return {SENT_TOKENS: sent_tokens}


def measured_of(row: Any) -> tuple[int, int] | None:
    """(prompt tokens, sent tokens) of a reply row, or None when either is missing."""
    try:
        usage = json.loads(row.response_json or "{}").get("usage") or {}
        prompt = int(usage.get("prompt_tokens") or 0)
        sent = int(json.loads(row.context_json or "{}").get(SENT_TOKENS) or 0)
    except (ValueError, TypeError, AttributeError):
        return None
    return (prompt, sent) if prompt > 0 and sent > 0 else None


class ReplyUsage:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def latest_measured(self, reply_ids: Sequence[str]) -> tuple[int, int] | None:
        """(prompt tokens, sent tokens) of the last of `reply_ids` (oldest first) that has
        both, or None."""
        if not reply_ids:
            return None
        return await self._db.read(self._latest, list(reply_ids))

    def _latest(self, conn: sa.Connection, reply_ids: list[str]) -> tuple[int, int] | None:
        stmt = sa.select(messages.c.id, messages.c.response_json, messages.c.context_json).where(
            messages.c.id.in_(reply_ids)
        )
        found = {row.id: measured_of(row) for row in conn.execute(stmt).all()}
        for reply_id in reversed(reply_ids):
            if (measured := found.get(reply_id)) is not None:
                return measured
        return None

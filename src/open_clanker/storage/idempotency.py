"""`Idempotency-Key`, insert-first: the key names its message before the model is called.

A repeat finds the key and reads the answer to that message from storage, whichever replica (or
the recovery sweep) produced it, so a concurrent repeat never causes a second model call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from open_clanker.core.types import AgentResponse, Message
from open_clanker.storage.database import Database
from open_clanker.storage.dialect import insert_ignore
from open_clanker.storage.messages import Status, message_from_row
from open_clanker.storage.schema import idempotency_keys, messages


@dataclass(frozen=True, slots=True)
class KeyedRequest:
    """What a key already stands for: its request's hash and the message it was sent with."""

    request_hash: str
    message_id: str
    age_s: float = 0.0  # since the key was bound to `message_id` (wall clock)


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """The state of the message a key names: pending, or settled with its reply (if any)."""

    message: Message | None
    status: str
    reply: Message | None = None
    response: AgentResponse | None = None


class IdempotencyStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim(
        self, scope: str, key: str, request_hash: str, message_id: str
    ) -> KeyedRequest | None:
        """Bind `key` to this request and message. None: it is ours now; else what the key
        was bound to before (a repeat, or another request reusing the key)."""
        return await self._db.write(self._claim, scope, key, request_hash, message_id)

    def _claim(
        self, conn: sa.Connection, scope: str, key: str, request_hash: str, message_id: str
    ) -> KeyedRequest | None:
        values = {
            "scope": scope,
            "key": key,
            "request_hash": request_hash,
            "message_id": message_id,
            "created_at": time.time(),
        }
        if conn.execute(insert_ignore(self._db.dialect, idempotency_keys, values)).rowcount:
            return None
        row = conn.execute(
            sa.select(idempotency_keys).where(
                idempotency_keys.c.scope == scope, idempotency_keys.c.key == key
            )
        ).one()
        return KeyedRequest(row.request_hash, row.message_id, time.time() - row.created_at)

    async def rebind(self, scope: str, key: str, old_message_id: str, message_id: str) -> bool:
        """Point the key at a new attempt after the first one failed; False: another repeat
        did so first."""
        return await self._db.write(self._rebind, scope, key, old_message_id, message_id)

    def _rebind(
        self, conn: sa.Connection, scope: str, key: str, old_message_id: str, message_id: str
    ) -> bool:
        stmt = (
            idempotency_keys.update()
            .where(
                idempotency_keys.c.scope == scope,
                idempotency_keys.c.key == key,
                idempotency_keys.c.message_id == old_message_id,
            )
            .values(message_id=message_id, created_at=time.time())
        )
        return bool(conn.execute(stmt).rowcount)

    async def release(self, scope: str, key: str, message_id: str) -> None:
        """Forget the key when its request was refused before anything was stored."""
        await self._db.write(self._release, scope, key, message_id)

    def _release(self, conn: sa.Connection, scope: str, key: str, message_id: str) -> None:
        conn.execute(
            idempotency_keys.delete().where(
                idempotency_keys.c.scope == scope,
                idempotency_keys.c.key == key,
                idempotency_keys.c.message_id == message_id,
            )
        )

    async def answer(self, message_id: str) -> StoredAnswer:
        return await self._db.read(self._answer, message_id)

    def _answer(self, conn: sa.Connection, message_id: str) -> StoredAnswer:
        question = conn.execute(sa.select(messages).where(messages.c.id == message_id)).first()
        if question is None:  # the first request is still on its way to storage
            return StoredAnswer(None, Status.PENDING)
        reply = conn.execute(
            sa.select(messages)
            .where(messages.c.answers_id == message_id)
            .order_by(messages.c.seq)
            .limit(1)
        ).first()
        return StoredAnswer(
            message_from_row(question),
            question.status,
            message_from_row(reply) if reply is not None else None,
            _response(reply),
        )


def _response(row: Any) -> AgentResponse | None:
    if row is None or not row.response_json:
        return None
    return AgentResponse.model_validate_json(row.response_json)

"""Who may talk: allowed senders and pairing codes (SPEC §4.4)."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from open_clanker.storage.database import Database
from open_clanker.storage.dialect import insert_ignore
from open_clanker.storage.schema import allowed_senders, pairing_codes


@dataclass(frozen=True, slots=True)
class PairingCode:
    code: str
    channel: str
    sender: str
    chat_id: str
    created_at: float
    expires_at: float
    last_sent_at: float


@dataclass(frozen=True, slots=True)
class AllowedSender:
    channel: str
    sender: str
    added_at: float
    via: str


class AccessStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def is_allowed(self, channel: str, sender: str) -> bool:
        return await self._db.read(self._is_allowed, channel, sender)

    def _is_allowed(self, conn: sa.Connection, channel: str, sender: str) -> bool:
        stmt = sa.select(allowed_senders.c.sender).where(
            allowed_senders.c.channel == channel, allowed_senders.c.sender == sender
        )
        return conn.execute(stmt).first() is not None

    async def allow(self, channel: str, sender: str, via: str) -> None:
        values = {"channel": channel, "sender": sender, "added_at": time.time(), "via": via}
        await self._db.write(self._insert_allowed, values)

    def _insert_allowed(self, conn: sa.Connection, values: dict[str, Any]) -> None:
        conn.execute(insert_ignore(self._db.dialect, allowed_senders, values))

    async def revoke(self, channel: str, sender: str) -> bool:
        return await self._db.write(self._revoke, channel, sender)

    def _revoke(self, conn: sa.Connection, channel: str, sender: str) -> bool:
        result = conn.execute(
            allowed_senders.delete().where(
                allowed_senders.c.channel == channel, allowed_senders.c.sender == sender
            )
        )
        codes = conn.execute(
            pairing_codes.delete().where(
                pairing_codes.c.channel == channel, pairing_codes.c.sender == sender
            )
        )
        return bool(result.rowcount or codes.rowcount)

    async def allowed(self) -> list[AllowedSender]:
        return await self._db.read(self._allowed)

    def _allowed(self, conn: sa.Connection) -> list[AllowedSender]:
        rows = conn.execute(sa.select(allowed_senders).order_by(allowed_senders.c.added_at))
        return [AllowedSender(r.channel, r.sender, r.added_at, r.via) for r in rows.all()]

    async def pending_codes(self, now: float, channel: str | None = None) -> list[PairingCode]:
        return await self._db.read(self._pending_codes, now, channel)

    def _pending_codes(
        self, conn: sa.Connection, now: float, channel: str | None
    ) -> list[PairingCode]:
        stmt = sa.select(pairing_codes).where(
            pairing_codes.c.status == "pending", pairing_codes.c.expires_at > now
        )
        if channel is not None:
            stmt = stmt.where(pairing_codes.c.channel == channel)
        return [_code(r) for r in conn.execute(stmt.order_by(pairing_codes.c.created_at)).all()]

    async def create_code(self, code: PairingCode) -> None:
        await self._db.write(self._create_code, code)

    def _create_code(self, conn: sa.Connection, code: PairingCode) -> None:
        conn.execute(
            pairing_codes.insert().values(
                code=code.code,
                channel=code.channel,
                sender=code.sender,
                chat_id=code.chat_id,
                created_at=code.created_at,
                expires_at=code.expires_at,
                last_sent_at=code.last_sent_at,
                status="pending",
            )
        )

    async def issue_code(
        self,
        wanted: PairingCode,
        *,
        max_pending: int,
        resend_after_s: float,
        new_code: Callable[[], str],
    ) -> str | None:
        """The code to send this stranger now, or None (told recently, or the channel's pending
        codes are full), decided and written in one transaction. Replicas issuing codes at once
        for one channel take turns on a per-channel lock, so the cap and "one pending code per
        sender" hold."""
        return await self._db.write(self._issue_code, wanted, max_pending, resend_after_s, new_code)

    def _issue_code(
        self,
        conn: sa.Connection,
        wanted: PairingCode,
        max_pending: int,
        resend_after_s: float,
        new_code: Callable[[], str],
    ) -> str | None:
        now = wanted.created_at
        if conn.dialect.name == "postgresql":
            lock = zlib.crc32(f"pairing:{wanted.channel}".encode())
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock})
        # Expired codes stop being pending, so they count neither toward the cap nor against
        # the sender's one pending code.
        conn.execute(
            pairing_codes.update()
            .where(pairing_codes.c.status == "pending", pairing_codes.c.expires_at <= now)
            .values(status="expired")
        )
        pending = self._pending_codes(conn, now, wanted.channel)
        mine = next((c for c in pending if c.sender == wanted.sender), None)
        if mine is not None:
            if now - mine.last_sent_at < resend_after_s:
                return None
            self._touch_code(conn, mine.code, now)
            return mine.code
        if len(pending) >= max_pending:
            return None
        code = PairingCode(
            new_code(),
            wanted.channel,
            wanted.sender,
            wanted.chat_id,
            now,
            wanted.expires_at,
            now,
        )
        self._create_code(conn, code)
        return code.code

    async def touch_code(self, code: str, now: float) -> None:
        await self._db.write(self._touch_code, code, now)

    def _touch_code(self, conn: sa.Connection, code: str, now: float) -> None:
        conn.execute(
            pairing_codes.update().where(pairing_codes.c.code == code).values(last_sent_at=now)
        )

    async def approve(self, code: str, now: float) -> PairingCode | None:
        """Use a pending, unexpired code once: its sender becomes allowed."""
        return await self._db.write(self._approve, code, now)

    def _approve(self, conn: sa.Connection, code: str, now: float) -> PairingCode | None:
        row = conn.execute(
            sa.select(pairing_codes).where(
                pairing_codes.c.code == code,
                pairing_codes.c.status == "pending",
                pairing_codes.c.expires_at > now,
            )
        ).first()
        if row is None:
            return None
        conn.execute(
            pairing_codes.update().where(pairing_codes.c.code == code).values(status="approved")
        )
        values = {"channel": row.channel, "sender": row.sender, "added_at": now, "via": "pairing"}
        conn.execute(insert_ignore(self._db.dialect, allowed_senders, values))
        return _code(row)


def _code(r: Any) -> PairingCode:
    return PairingCode(
        r.code, r.channel, r.sender, r.chat_id, r.created_at, r.expires_at, r.last_sent_at
    )

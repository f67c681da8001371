"""Rotated gateway tokens at rest: SHA-256 hashes with a creation time and an expiry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from open_clanker.storage.database import Database
from open_clanker.storage.schema import gateway_tokens

# Rows that expired this long ago are deleted at the next rotation (`token list` shows the
# recent past, not all of it).
FORGET_AFTER_S = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class StoredToken:
    id: str
    token_hash: str  # hex SHA-256 of the token
    origin: str  # "rotated", or "generated" (the data dir's token file, retired by a rotation)
    created_at: float
    expires_at: float | None

    def __repr__(self) -> str:  # a hash is not a secret, but it has no business in a log
        return f"StoredToken(id={self.id!r}, origin={self.origin!r}, expires_at={self.expires_at})"


class TokenStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def all(self) -> list[StoredToken]:
        return await self._db.read(_all)

    async def rotate(
        self, new: StoredToken, others_expire_at: float, retired: list[StoredToken]
    ) -> None:
        """In one transaction: add `new`; every other token expires by `others_expire_at`
        (one already expiring sooner keeps its time); `retired` tokens that are not stored
        yet (the token file's) are added with that expiry."""
        await self._db.write(_rotate, new, others_expire_at, retired)


def _row(row: Any) -> StoredToken:
    expires = row.expires_at
    return StoredToken(
        str(row.id),
        str(row.token_hash),
        str(row.origin),
        float(row.created_at),
        None if expires is None else float(expires),
    )


def _all(conn: sa.Connection) -> list[StoredToken]:
    t = gateway_tokens.c
    stmt = sa.select(t.id, t.token_hash, t.origin, t.created_at, t.expires_at).order_by(
        t.created_at
    )
    return [_row(r) for r in conn.execute(stmt)]


def _rotate(
    conn: sa.Connection, new: StoredToken, expire_at: float, retired: list[StoredToken]
) -> None:
    t = gateway_tokens.c
    conn.execute(gateway_tokens.delete().where(t.expires_at < new.created_at - FORGET_AFTER_S))
    conn.execute(
        gateway_tokens.update()
        .where(sa.or_(t.expires_at.is_(None), t.expires_at > expire_at))
        .values(expires_at=expire_at)
    )
    known = set(conn.execute(sa.select(t.token_hash)).scalars())
    for old in retired:
        if old.token_hash not in known:
            conn.execute(gateway_tokens.insert().values(**_values(old, expire_at)))
    conn.execute(gateway_tokens.insert().values(**_values(new, new.expires_at)))


def _values(token: StoredToken, expires_at: float | None) -> dict[str, object]:
    return {
        "id": token.id,
        "token_hash": token.token_hash,
        "origin": token.origin,
        "created_at": token.created_at,
        "expires_at": expires_at,
    }

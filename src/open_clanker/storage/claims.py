"""Leases and claims in the database, so several replicas never do the same work (SPEC §9).

A replica claims a session's turn, a pending message, an outbox part or a platform connection
by writing its id and an expiry (in the database's clock, `storage/clock.py`). Its heartbeat
renews every claim it holds in one transaction; claims of a replica that died lapse after
`lease_s` and are taken by another. Every write made under a claim checks that it still holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from open_clanker.storage.clock import db_now, db_now_plus
from open_clanker.storage.database import Database
from open_clanker.storage.dialect import dialect_insert
from open_clanker.storage.prepared import Prepared
from open_clanker.storage.schema import leases, messages, outbox, sessions

PENDING = "pending"


class StaleClaim(Exception):
    """Raised inside a transaction whose claim was lost: the transaction rolls back."""


@dataclass(frozen=True, slots=True)
class Claim:
    """Who holds something: a replica, and (for a session's turn) which of its turns."""

    owner: str
    token: str = ""


class ClaimStore:
    def __init__(self, db: Database, lease_s: float) -> None:
        self._db = db
        self.lease_s = lease_s
        self._now = db_now(db.dialect)
        self._until = db_now_plus(db.dialect, lease_s)
        earlier_pending = (
            sa.select(messages.c.seq)
            .where(
                messages.c.session_key == sa.bindparam("b_key"),
                messages.c.status == PENDING,
                messages.c.seq < sa.bindparam("b_seq"),
            )
            .exists()
        )
        free = sa.or_(sessions.c.lease_owner.is_(None), sessions.c.lease_until < self._now)
        take = sessions.update().values(
            lease_owner=sa.bindparam("b_owner"),
            lease_token=sa.bindparam("b_token"),
            lease_until=self._until,
        )
        # A turn starts only when its message is the session's oldest pending one: turns run
        # in order, and each sees every earlier exchange.
        self._take_turn_stmt = Prepared(
            take.where(sessions.c.key == sa.bindparam("b_key"), free, ~earlier_pending).returning(
                sessions.c.version
            ),
            db.dialect,
        )
        self._take_any_stmt = take.where(sessions.c.key == sa.bindparam("b_key"), free)
        self._release_stmt = Prepared(
            sessions.update()
            .where(
                sessions.c.key == sa.bindparam("b_key"),
                sessions.c.lease_owner == sa.bindparam("b_owner"),
                sessions.c.lease_token == sa.bindparam("b_token"),
            )
            .values(lease_owner=None, lease_token=None, lease_until=None),
            db.dialect,
        )

    # -- a session's turn ---------------------------------------------------------------------

    def take_turn_in(self, conn: sa.Connection, key: str, claim: Claim, seq: int) -> int | None:
        """Inside another transaction (accept): take the session for the message `seq`.
        Returns the session's history version (storage/history_cache.py); None: not taken."""
        params = {"b_key": key, "b_owner": claim.owner, "b_token": claim.token, "b_seq": seq}
        version = self._take_turn_stmt.scalar(conn, params)
        return None if version is None else int(version)

    async def take_turn(self, key: str, claim: Claim, seq: int) -> bool:
        return await self.take_turn_at(key, claim, seq) is not None

    async def take_turn_at(self, key: str, claim: Claim, seq: int) -> int | None:
        """Take the turn: the session's history version once taken; None: not taken."""
        return await self._db.write(self.take_turn_in, key, claim, seq)

    async def take_session(self, key: str, claim: Claim) -> bool:
        """Hold the session whatever is pending (an operator's reset between turns)."""
        return await self._db.write(self._take_any, key, claim)

    def _take_any(self, conn: sa.Connection, key: str, claim: Claim) -> bool:
        params = {"b_key": key, "b_owner": claim.owner, "b_token": claim.token}
        return bool(conn.execute(self._take_any_stmt, params).rowcount)

    def release_turn_in(self, conn: sa.Connection, key: str, claim: Claim) -> None:
        """Inside the reply's transaction: end the turn, or roll it all back if it was lost."""
        params = {"b_key": key, "b_owner": claim.owner, "b_token": claim.token}
        if not self._release_stmt.rowcount(conn, params):
            raise StaleClaim(key)

    async def release_session(self, key: str, claim: Claim) -> None:
        await self._db.write(self._release_quietly, key, claim)

    def _release_quietly(self, conn: sa.Connection, key: str, claim: Claim) -> None:
        self._release_stmt.rowcount(
            conn, {"b_key": key, "b_owner": claim.owner, "b_token": claim.token}
        )

    async def session_holder(self, key: str) -> str | None:
        """The replica whose turn holds the session now (None: free or lapsed)."""
        return await self._db.read(self._session_holder, key)

    def _session_holder(self, conn: sa.Connection, key: str) -> str | None:
        stmt = sa.select(sessions.c.lease_owner).where(
            sessions.c.key == key, sessions.c.lease_until >= self._now
        )
        value = conn.execute(stmt).scalar()
        return str(value) if value is not None else None

    # -- pending messages whose replica died ----------------------------------------------------

    async def take_orphans(
        self, owner: str, channels: list[str], expire_before: float, limit: int
    ) -> tuple[list[tuple[Any, dict[str, Any]]], int]:
        """Claim up to `limit` pending messages whose claim has lapsed, oldest first, of the
        given channels; those accepted before `expire_before` (epoch s) are marked expired.
        Returns ([(row, context)], expired count)."""
        return await self._db.write(self._take_orphans, owner, channels, expire_before, limit)

    def _take_orphans(
        self,
        conn: sa.Connection,
        owner: str,
        channels: list[str],
        expire_before: float,
        limit: int,
    ) -> tuple[list[tuple[Any, dict[str, Any]]], int]:
        lapsed = sa.or_(messages.c.claim_until.is_(None), messages.c.claim_until < self._now)
        expired = conn.execute(
            messages.update()
            .where(messages.c.status == PENDING, lapsed, messages.c.timestamp < expire_before)
            .values(status="expired", claimed_by=None, claim_until=None)
        ).rowcount
        candidates = (
            sa.select(messages.c.seq)
            .where(messages.c.status == PENDING, lapsed, messages.c.channel_type.in_(channels))
            .order_by(messages.c.seq)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows = sorted(
            conn.execute(
                messages.update()
                .where(
                    messages.c.seq.in_(candidates.scalar_subquery()),
                    messages.c.status == PENDING,
                )
                .values(claimed_by=owner, claim_until=self._until)
                .returning(*messages.c)
            ).all(),
            key=lambda r: r.seq,
        )
        return [(r, json.loads(r.context_json)) for r in rows], int(expired or 0)

    async def give_back(self, message_id: str, owner: str) -> None:
        """Let the sweep retry a message this replica could not finish (storage failed)."""
        await self._db.write(self._give_back, message_id, owner)

    def _give_back(self, conn: sa.Connection, message_id: str, owner: str) -> None:
        conn.execute(
            messages.update()
            .where(messages.c.id == message_id, messages.c.claimed_by == owner)
            # Unowned, or the heartbeat would renew the claim forever and no sweep take it.
            .values(claimed_by=None, claim_until=None)
        )

    # -- the heartbeat and the end of a replica ------------------------------------------------

    async def heartbeat(self, owner: str) -> None:
        """Renew everything `owner` holds: one transaction, one statement per table."""
        await self._db.write(self._renew_all, owner)

    def _renew_all(self, conn: sa.Connection, owner: str) -> None:
        conn.execute(
            sessions.update().where(sessions.c.lease_owner == owner).values(lease_until=self._until)
        )
        for table in (messages, outbox):
            conn.execute(
                table.update()
                .where(table.c.status == PENDING, table.c.claimed_by == owner)
                .values(claim_until=self._until)
            )
        conn.execute(leases.update().where(leases.c.owner == owner).values(until=self._until))

    async def release_owner(self, owner: str) -> None:
        """A clean stop: hand everything `owner` holds to the other replicas at once."""
        await self._db.write(self._release_owner, owner)

    def _release_owner(self, conn: sa.Connection, owner: str) -> None:
        conn.execute(
            sessions.update()
            .where(sessions.c.lease_owner == owner)
            .values(lease_owner=None, lease_token=None, lease_until=None)
        )
        for table in (messages, outbox):
            conn.execute(
                table.update()
                .where(table.c.claimed_by == owner, table.c.status == PENDING)
                .values(claimed_by=None, claim_until=None)
            )
        conn.execute(leases.delete().where(leases.c.owner == owner))

    async def release_everything(self) -> None:
        """One process owns the database (SQLite): whatever a previous run held is free."""
        await self._db.write(self._release_everything)

    def _release_everything(self, conn: sa.Connection) -> None:
        conn.execute(
            sessions.update()
            .where(sessions.c.lease_owner.is_not(None))
            .values(lease_owner=None, lease_token=None, lease_until=None)
        )
        for table in (messages, outbox):
            conn.execute(
                table.update()
                .where(table.c.status == PENDING, table.c.claimed_by.is_not(None))
                .values(claimed_by=None, claim_until=None)
            )
        conn.execute(leases.delete())

    # -- named leases (one receiver per platform connection) -----------------------------------

    async def take_lease(self, name: str, owner: str) -> bool:
        """Hold `name` if it is free, lapsed or already ours (renewing it)."""
        return await self._db.write(self._take_lease, name, owner)

    def _take_lease(self, conn: sa.Connection, name: str, owner: str) -> bool:
        insert = dialect_insert(self._db.dialect, leases).values(
            name=name, owner=owner, until=self._until, acquired_at=self._now
        )
        lapsed_or_ours = sa.or_(leases.c.owner == owner, leases.c.until < self._now)
        stmt = insert.on_conflict_do_update(
            index_elements=["name"],
            set_={
                "owner": owner,
                "until": self._until,
                "acquired_at": sa.case(
                    (leases.c.owner == owner, leases.c.acquired_at), else_=self._now
                ),
            },
            where=lapsed_or_ours,
        )
        return bool(conn.execute(stmt).rowcount)

    async def release_lease(self, name: str, owner: str) -> None:
        await self._db.write(self._release_lease, name, owner)

    def _release_lease(self, conn: sa.Connection, name: str, owner: str) -> None:
        conn.execute(leases.delete().where(leases.c.name == name, leases.c.owner == owner))

    async def lease_holder(self, name: str) -> str | None:
        return await self._db.read(self._lease_holder, name)

    def _lease_holder(self, conn: sa.Connection, name: str) -> str | None:
        stmt = sa.select(leases.c.owner).where(leases.c.name == name, leases.c.until >= self._now)
        value = conn.execute(stmt).scalar()
        return str(value) if value is not None else None

"""Messages and sessions: accept an inbound message, load history, store a reply, list."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from open_clanker.core.types import (
    AgentResponse,
    ChannelType,
    Message,
    MessageMetadata,
    Role,
    SessionKey,
)
from open_clanker.storage.claims import Claim, ClaimStore, StaleClaim
from open_clanker.storage.clock import db_now_plus
from open_clanker.storage.database import Database
from open_clanker.storage.dialect import dialect_insert
from open_clanker.storage.history_cache import HistoryCache, HistoryRow
from open_clanker.storage.nul_guard import has_nul
from open_clanker.storage.prepared import Prepared
from open_clanker.storage.schema import messages, outbox, processed_ids, sessions


class Status:
    PENDING = "pending"
    ANSWERED = "answered"
    FAILED = "failed"
    EXPIRED = "expired"
    COMMAND = "command"
    REPLY = "reply"  # a model answer: part of the conversation
    NOTICE = "notice"  # a gateway answer (command output, error): kept out of the context


# The statuses of a session's history (what the model is sent).
HISTORY_STATUSES = frozenset((Status.ANSWERED, Status.FAILED, Status.REPLY))


@dataclass(frozen=True, slots=True)
class PendingMessage:
    """An accepted user message that has no reply yet, with its transport context."""

    message: Message
    context: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Accepted:
    """What `accept` did: stored (False: a re-delivery), the message's order in storage, and
    whether the session's turn was taken in the same transaction (no wait needed), and then
    the session's history version (storage/history_cache.py)."""

    stored: bool
    seq: int = 0
    has_turn: bool = False
    version: int | None = None


@dataclass(frozen=True, slots=True)
class SessionInfo:
    key: SessionKey
    channel: str
    channel_id: str
    created_at: datetime
    updated_at: datetime
    message_count: int


_DEFAULT_METADATA_JSON = MessageMetadata().model_dump_json()
_DEFAULT_METADATA = MessageMetadata()


def _ts(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def message_from_row(row: Any) -> Message:
    """Rows were validated on the way in; constructing without re-validation is ~10x faster."""
    meta = (
        _DEFAULT_METADATA
        if row.metadata_json == _DEFAULT_METADATA_JSON
        else MessageMetadata.model_validate_json(row.metadata_json)
    )
    return Message.model_construct(
        id=row.id,
        channel_type=ChannelType(row.channel_type),
        channel_id=row.channel_id,
        sender=row.sender,
        role=Role(row.role),
        text=row.text,
        timestamp=_ts(row.timestamp),
        session=SessionKey(row.session_key),
        metadata=meta,
    )


def _history_row(values: dict[str, Any], seq: int) -> HistoryRow:
    """A row this process just wrote, as a read would return it (the same conversion)."""
    row = _RowView(values)
    return HistoryRow(seq, values["id"], values["answers_id"], message_from_row(row))


class _RowView:
    """Attribute access to an insert's values, the way `message_from_row` reads a row."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def __getattr__(self, name: str) -> Any:
        return self._values[name]


def _message_values(msg: Message, generation: int, status: str) -> dict[str, Any]:
    """Every column, always: one statement shape, so its compiled form is reused."""
    return {
        "context_json": "{}",
        "answers_id": None,
        "response_json": None,
        "claimed_by": None,
        "claim_until": None,
        "id": msg.id,
        "session_key": msg.session,
        "generation": generation,
        "channel_type": msg.channel_type.value,
        "channel_id": msg.channel_id,
        "sender": msg.sender,
        "role": msg.role.value,
        "text": msg.text,
        "timestamp": msg.timestamp.timestamp(),
        "metadata_json": (
            _DEFAULT_METADATA_JSON
            if msg.metadata == _DEFAULT_METADATA
            else msg.metadata.model_dump_json()
        ),
        "status": status,
    }


def exchanges_in_order(rows: Sequence[Any]) -> list[Any]:
    """Rows newest first -> oldest first, each reply right after the message it answers. By
    plain `seq` a message accepted while an earlier turn ran would sit before that turn's
    reply (user, user, assistant, assistant); a reply whose question fell outside the window
    is left out. The same order as `session_messages` gives."""
    by_id = {r.id: r for r in rows}
    ordered: list[tuple[int, int, Any]] = []
    for r in rows:
        if r.answers_id is None:
            ordered.append((r.seq, 0, r))
        elif (question := by_id.get(r.answers_id)) is not None:
            ordered.append((question.seq, r.seq, r))
    ordered.sort(key=lambda item: (item[0], item[1]))
    return [row for _key, _part, row in ordered]


class MessageStore:
    """Each public method is one transaction (`db.write`) or one read (`db.read`); the SQL
    itself is in the synchronous `_…` functions, identical for SQLite and PostgreSQL."""

    def __init__(self, db: Database, claims: ClaimStore) -> None:
        self._db = db
        self._claims = claims
        # Hot-path statements are built once and executed with parameters: rebuilding them
        # per message showed up in the benchmark profile.
        # On SQLite they run straight on the driver (storage/prepared.py).
        dialect = db.dialect
        self._claim_stmt = Prepared(
            dialect_insert(dialect, processed_ids).on_conflict_do_nothing(), dialect
        )
        touch = dialect_insert(dialect, sessions)
        self._touch_stmt = Prepared(
            touch.on_conflict_do_update(
                index_elements=["key"], set_={"updated_at": touch.excluded.updated_at}
            ).returning(sessions.c.generation, sessions.c.version),
            dialect,
        )
        # A write that changes the session's history bumps its version (history_cache.py).
        self._touch_bump_stmt = Prepared(
            touch.on_conflict_do_update(
                index_elements=["key"],
                set_={"updated_at": touch.excluded.updated_at, "version": sessions.c.version + 1},
            ).returning(sessions.c.generation, sessions.c.version),
            dialect,
        )
        self._bump_by_message_stmt = (
            sessions.update()
            .where(
                sessions.c.key
                == sa.select(messages.c.session_key)
                .where(messages.c.id == sa.bindparam("mid"))
                .scalar_subquery()
            )
            .values(version=sessions.c.version + 1)
        )
        self.history_cache = HistoryCache()
        self._insert_seq_stmt = Prepared(messages.insert().returning(messages.c.seq), dialect)
        self._claim_until = db_now_plus(dialect, claims.lease_s)
        self._claimed_insert_stmt = Prepared(
            messages.insert().values(claim_until=self._claim_until).returning(messages.c.seq),
            dialect,
        )
        # The reply's fence: a message is answered once, whoever else tried.
        answer = (
            messages.update()
            .where(messages.c.id == sa.bindparam("mid"), messages.c.status == Status.PENDING)
            .values(status=sa.bindparam("new_status"), claimed_by=None, claim_until=None)
            .returning(messages.c.generation)  # the history cache's check (a reset between)
        )
        self._answer_stmt = Prepared(answer, dialect)
        self._answer_context_stmt = Prepared(
            answer.values(context_json=sa.bindparam("new_context")), dialect
        )
        self._outbox_insert_stmt = outbox.insert()
        self._status_stmt = (
            messages.update()
            .where(messages.c.id == sa.bindparam("mid"))
            .values(status=sa.bindparam("new_status"))
        )
        self._seen_stmt = Prepared(
            sa.select(processed_ids.c.platform_id).where(
                processed_ids.c.channel == sa.bindparam("channel"),
                processed_ids.c.platform_id == sa.bindparam("pid"),
            ),
            dialect,
        )
        generation = (
            sa.select(sessions.c.generation)
            .where(sessions.c.key == sa.bindparam("key"))
            .scalar_subquery()
        )
        self._history_stmt = (
            sa.select(messages)
            .where(
                messages.c.session_key == sa.bindparam("key"),
                messages.c.generation == generation,
                messages.c.status.in_(sorted(HISTORY_STATUSES)),
            )
            .order_by(messages.c.seq.desc())
            .limit(sa.bindparam("limit"))
        )
        self._session_version_stmt = sa.select(sessions.c.generation, sessions.c.version).where(
            sessions.c.key == sa.bindparam("key")
        )

    # -- duplicates -------------------------------------------------------------------------

    async def seen(self, channel: ChannelType, platform_id: str) -> bool:
        return await self._db.read(self._seen, channel, platform_id)

    def _seen(self, conn: sa.Connection, channel: ChannelType, platform_id: str) -> bool:
        params = {"channel": channel.value, "pid": platform_id}
        return bool(self._seen_stmt.rows(conn, params))

    async def mark_processed(self, channel: ChannelType, platform_id: str) -> bool:
        """Remember a platform id without storing a message (a refusal). False if seen before."""
        return await self._db.write(self._claim, channel, platform_id)

    def _claim(self, conn: sa.Connection, channel: ChannelType, platform_id: str) -> bool:
        params = {"channel": channel.value, "platform_id": platform_id, "created_at": time.time()}
        return bool(self._claim_stmt.rowcount(conn, params))

    def _touch_session(
        self, conn: sa.Connection, msg: Message, *, bump: bool = False
    ) -> tuple[int, int]:
        """Create or touch the session; its (generation, history version) after the write."""
        now = time.time()
        params = {
            "key": msg.session,
            "channel": msg.channel_type.value,
            "channel_id": msg.channel_id,
            "generation": 0,
            "version": 0,
            "created_at": now,
            "updated_at": now,
        }
        stmt = self._touch_bump_stmt if bump else self._touch_stmt
        generation, version = stmt.one(conn, params)
        return int(generation), int(version)

    # -- the pipeline's two writes ----------------------------------------------------------

    async def accept(
        self,
        msg: Message,
        platform_id: str | None,
        context: dict[str, Any],
        status: str = Status.PENDING,
        claim: Claim | None = None,
    ) -> Accepted:
        """Store an inbound message (and claim its platform id) in one transaction.

        With `claim`, the message is claimed for that replica and, if it is the session's
        oldest pending one and the session is free, its turn is taken too: the common case
        costs no second transaction. Not stored: a re-delivery or a replica race.
        """
        return await self._db.write(self._accept, msg, platform_id, context, status, claim)

    def _accept(
        self,
        conn: sa.Connection,
        msg: Message,
        platform_id: str | None,
        context: dict[str, Any],
        status: str,
        claim: Claim | None,
    ) -> Accepted:
        if platform_id is not None and not self._claim(conn, msg.channel_type, platform_id):
            return Accepted(stored=False)
        generation, version = self._touch_session(conn, msg, bump=status in HISTORY_STATUSES)
        values = _message_values(msg, generation, status)
        values["context_json"] = json.dumps(context)
        if claim is None:
            seq = int(self._insert_seq_stmt.scalar(conn, values))
            return Accepted(stored=True, seq=seq)
        values["claimed_by"] = claim.owner
        del values["claim_until"]
        seq = int(self._claimed_insert_stmt.scalar(conn, values))
        has_turn = (
            status == Status.PENDING
            and self._claims.take_turn_in(conn, msg.session, claim, seq) is not None
        )
        # The session row is locked since the touch: the version is still the one read there.
        return Accepted(
            stored=True, seq=seq, has_turn=has_turn, version=version if has_turn else None
        )

    async def store_reply(
        self,
        reply: Message,
        response: AgentResponse | None,
        outbox_rows: list[dict[str, Any]],
        *,
        status: str = Status.REPLY,
        answers: Message | None = None,
        answers_status: str = Status.ANSWERED,
        turn: Claim | None = None,
        context: dict[str, Any] | None = None,
        answered_context: dict[str, Any] | None = None,
        answers_seq: int = 0,
    ) -> bool:
        """Store the reply, settle what it answers, queue its delivery and end the session's
        turn, atomically. False, and nothing written: the message was answered already or
        the turn was taken over (this replica's claim lapsed) — a second answer never lands.
        `context`: what the reply row keeps about its request (storage/reply_usage.py).
        `answered_context`: replaces the answered message's recovery context (an API client's
        whole conversation, images included, is not worth keeping once it is answered).
        `answers_seq`: the answered message's seq, so the history cache can take it in."""
        values_extra = {
            "answers_id": answers.id if answers else None,
            "response_json": response.model_dump_json() if response else None,
            "context_json": json.dumps(context) if context else "{}",
        }
        try:
            written = await self._db.write(
                self._store_reply,
                reply,
                values_extra,
                status,
                outbox_rows,
                answers,
                answers_status,
                turn,
                answered_context,
                answers_seq,
            )
        except StaleClaim:
            self.history_cache.drop(reply.session)
            return False
        generation, version, rows = written
        if rows is None:
            self.history_cache.drop(reply.session)
        else:
            self.history_cache.extend(reply.session, version - 1, version, generation, rows)
        return True

    def _store_reply(
        self,
        conn: sa.Connection,
        reply: Message,
        values_extra: dict[str, Any],
        status: str,
        outbox_rows: list[dict[str, Any]],
        answers: Message | None,
        answers_status: str,
        turn: Claim | None,
        answered_context: dict[str, Any] | None = None,
        answers_seq: int = 0,
    ) -> tuple[int, int, list[HistoryRow] | None]:
        """Returns the session's generation and new history version, and the history rows
        written (None: they cannot be told without a read; the cache entry is dropped)."""
        # Rows are locked in the heartbeat's order (session, then messages): the other order
        # deadlocks on PostgreSQL against a heartbeat renewing this same turn.
        if turn is not None:
            self._claims.release_turn_in(conn, reply.session, turn)
        generation, version = self._touch_session(conn, reply, bump=True)
        question_generation = None
        if answers is not None:
            params = {"mid": answers.id, "new_status": answers_status}
            stmt = self._answer_stmt
            if answered_context is not None:  # the same UPDATE replaces the recovery context
                params["new_context"] = json.dumps(answered_context)
                stmt = self._answer_context_stmt
            question_generation = stmt.scalar(conn, params)
            if question_generation is None:
                raise StaleClaim(answers.id)
        values = _message_values(reply, generation, status)
        values.update(values_extra)
        reply_seq = int(self._insert_seq_stmt.scalar(conn, values))
        if outbox_rows:
            conn.execute(self._outbox_insert_stmt, outbox_rows)
        written: list[HistoryRow] = []
        # A question accepted before a reset is of the old generation: not in the history.
        if (
            answers is not None
            and answers_status in HISTORY_STATUSES
            and question_generation == generation
        ):
            question = _message_values(answers, generation, answers_status)
            if answers_seq <= 0 or has_nul(question.values()):
                return generation, version, None
            written.append(_history_row(question, answers_seq))
        if status in HISTORY_STATUSES:
            if has_nul(values.values()):  # stored without its NULs (nul_guard.py)
                return generation, version, None
            written.append(_history_row(values, reply_seq))
        return generation, version, written

    async def set_status(self, message_id: str, status: str) -> None:
        await self._db.write(self._set_status, message_id, status)

    def _set_status(self, conn: sa.Connection, message_id: str, status: str) -> None:
        # The session first (the heartbeat's lock order); its history may change.
        conn.execute(self._bump_by_message_stmt, {"mid": message_id})
        conn.execute(self._status_stmt, {"mid": message_id, "new_status": status})

    # -- reading ----------------------------------------------------------------------------

    async def history(
        self, key: SessionKey, limit: int, version: int | None = None
    ) -> list[Message]:
        """The newest `limit` conversation messages of the session's current generation, oldest
        first. Slash commands and their answers are not conversation and are left out.

        `version`: the session's history version as the transaction that took this turn read
        it; with it, the history comes from this process's cache when that is at the same
        version (no read), else it is read and cached."""
        if version is None:
            return await self._db.read(self._history, key, limit)
        rows = self.history_cache.get(key, version, limit)
        if rows is None:
            generation, now, read = await self._db.read(self._history_rows, key, limit)
            if now == version:
                self.history_cache.put(key, version, generation, limit, read)
            rows = read
        return [r.message for r in exchanges_in_order(rows)]

    def _history(self, conn: sa.Connection, key: SessionKey, limit: int) -> list[Message]:
        rows = conn.execute(self._history_stmt, {"key": key, "limit": limit}).all()
        return [message_from_row(r) for r in exchanges_in_order(rows)]

    def _history_rows(
        self, conn: sa.Connection, key: SessionKey, limit: int
    ) -> tuple[int, int, list[HistoryRow]]:
        """(generation, version, the newest `limit` history rows newest first), one read."""
        found = conn.execute(self._session_version_stmt, {"key": key}).first()
        generation, version = (int(found[0]), int(found[1])) if found else (0, -1)
        rows = conn.execute(self._history_stmt, {"key": key, "limit": limit}).all()
        return (
            generation,
            version,
            [HistoryRow(r.seq, r.id, r.answers_id, message_from_row(r)) for r in rows],
        )

    async def session_messages(
        self, key: SessionKey, limit: int, before: str | None = None
    ) -> list[Message] | None:
        """A session's current messages (None: no such session). `before` is a message id."""
        return await self._db.read(self._session_messages, key, limit, before)

    def _session_messages(
        self, conn: sa.Connection, key: SessionKey, limit: int, before: str | None
    ) -> list[Message] | None:
        generation = conn.execute(
            sa.select(sessions.c.generation).where(sessions.c.key == key)
        ).scalar()
        if generation is None:
            return None
        # Exchange order: a reply sorts right after the message it answers.
        question = messages.alias("question")
        place = sa.func.coalesce(question.c.seq, messages.c.seq)
        stmt = (
            sa.select(messages)
            .select_from(messages.outerjoin(question, question.c.id == messages.c.answers_id))
            .where(messages.c.session_key == key, messages.c.generation == generation)
        )
        if before:
            anchor = conn.execute(
                sa.select(place, messages.c.seq)
                .select_from(messages.outerjoin(question, question.c.id == messages.c.answers_id))
                .where(messages.c.id == before)
            ).first()
            if anchor is not None:
                stmt = stmt.where(sa.tuple_(place, messages.c.seq) < sa.tuple_(*anchor))
        rows = conn.execute(stmt.order_by(place.desc(), messages.c.seq.desc()).limit(limit)).all()
        return [message_from_row(r) for r in reversed(rows)]

    async def list_sessions(self, limit: int) -> list[SessionInfo]:
        return await self._db.read(self._list_sessions, limit)

    def _list_sessions(self, conn: sa.Connection, limit: int) -> list[SessionInfo]:
        count = (
            sa.select(sa.func.count())
            .where(
                messages.c.session_key == sessions.c.key,
                messages.c.generation == sessions.c.generation,
            )
            .scalar_subquery()
        )
        stmt = (
            sa.select(sessions, count.label("message_count"))
            .order_by(sessions.c.updated_at.desc())
            .limit(limit)
        )
        return [
            SessionInfo(
                key=SessionKey(r.key),
                channel=r.channel,
                channel_id=r.channel_id,
                created_at=_ts(r.created_at),
                updated_at=_ts(r.updated_at),
                message_count=int(r.message_count),
            )
            for r in conn.execute(stmt).all()
        ]

    async def session_exists(self, key: SessionKey) -> bool:
        return await self._db.read(self._session_exists, key)

    def _session_exists(self, conn: sa.Connection, key: SessionKey) -> bool:
        stmt = sa.select(sessions.c.key).where(sessions.c.key == key)
        return conn.execute(stmt).first() is not None

    async def reset_session(self, key: SessionKey) -> bool:
        """Start the session afresh; old messages stay on record. False if there is none."""
        return await self._db.write(self._reset_session, key)

    def _reset_session(self, conn: sa.Connection, key: SessionKey) -> bool:
        result = conn.execute(
            sessions.update()
            .where(sessions.c.key == key)
            .values(
                generation=sessions.c.generation + 1,
                version=sessions.c.version + 1,
                updated_at=time.time(),
            )
        )
        return bool(result.rowcount)

    async def pending(self) -> list[PendingMessage]:
        return await self._db.read(self._pending)

    def _pending(self, conn: sa.Connection) -> list[PendingMessage]:
        stmt = (
            sa.select(messages)
            .where(messages.c.status == Status.PENDING, messages.c.role == Role.USER.value)
            .order_by(messages.c.seq)
        )
        return [
            PendingMessage(message_from_row(r), json.loads(r.context_json))
            for r in conn.execute(stmt).all()
        ]

    async def counts(self) -> dict[str, int]:
        return await self._db.read(self._counts)

    def _counts(self, conn: sa.Connection) -> dict[str, int]:
        def count(stmt: Any) -> int:
            return int(conn.execute(stmt).scalar() or 0)

        return {
            "messages": count(sa.select(sa.func.count()).select_from(messages)),
            "sessions": count(sa.select(sa.func.count()).select_from(sessions)),
            "pending": count(sa.select(sa.func.count()).where(messages.c.status == Status.PENDING)),
        }

"""Table definitions (SQLAlchemy Core). Times are epoch seconds (double) for portable sorting."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.Double, nullable=False),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("key", sa.String(512), primary_key=True),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("channel_id", sa.String(255), nullable=False),
    sa.Column("generation", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    # v4: the session's turn lease (SPEC §9). One turn at a time across replicas: the holder
    # is a replica (`lease_owner`) and one of its turns (`lease_token`); it lapses at
    # `lease_until` (database clock) unless the holder's heartbeat renews it.
    sa.Column("lease_owner", sa.String(128), nullable=True),
    sa.Column("lease_token", sa.String(64), nullable=True),
    sa.Column("lease_until", sa.Double, nullable=True),
    # v6: bumped by every write that changes the session's history (a reply stored, a status
    # settled, a reset), so a replica knows whether its cached history is still the truth
    # (storage/history_cache.py).
    sa.Column("version", sa.BigInteger, nullable=False, server_default="0"),
    sa.Index("ix_sessions_updated", "updated_at"),
    sa.Index("ix_sessions_lease_owner", "lease_owner"),
)

# One row per user message and per reply. `status` of a user message: pending (accepted, not
# yet answered), answered, failed, expired (too old to answer after a restart), command.
messages = sa.Table(
    "messages",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("id", sa.String(64), nullable=False, unique=True),
    sa.Column("session_key", sa.String(512), sa.ForeignKey("sessions.key"), nullable=False),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("channel_type", sa.String(32), nullable=False),
    sa.Column("channel_id", sa.String(255), nullable=False),
    sa.Column("sender", sa.String(255), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("timestamp", sa.Double, nullable=False),
    sa.Column("metadata_json", sa.Text, nullable=False, server_default="{}"),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("context_json", sa.Text, nullable=False, server_default="{}"),
    sa.Column("answers_id", sa.String(64), nullable=True),
    sa.Column("response_json", sa.Text, nullable=True),
    # v4: which replica is answering a pending message, until when (database clock). The
    # recovery sweep takes pending messages whose claim has lapsed: their replica died.
    sa.Column("claimed_by", sa.String(128), nullable=True),
    sa.Column("claim_until", sa.Double, nullable=True),
    sa.Index("ix_messages_session", "session_key", "generation", "seq"),
    sa.Index("ix_messages_status", "status"),
    sa.Index("ix_messages_session_status", "session_key", "status", "seq"),
    sa.Index("ix_messages_answers", "answers_id"),
)

# The duplicate check's memory: (channel, platform message id) seen once.
processed_ids = sa.Table(
    "processed_ids",
    metadata,
    sa.Column("channel", sa.String(32), primary_key=True),
    sa.Column("platform_id", sa.String(255), primary_key=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Index("ix_processed_created", "created_at"),  # v4: pruning by age
)

# Durable delivery: one row per platform-sized part, delivered in `seq` order per chat.
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("message_id", sa.String(64), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("channel_id", sa.String(255), nullable=False),
    sa.Column("thread_id", sa.String(255), nullable=True),
    sa.Column("reply_to", sa.String(255), nullable=True),
    sa.Column("part", sa.Integer, nullable=False),
    sa.Column("parts", sa.Integer, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.Double, nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("sent_at", sa.Double, nullable=True),
    # v2: the platform message a streamed draft already shows; part 0 edits it in place.
    sa.Column("edit_message_id", sa.String(255), nullable=True),
    # v3: the request id of the message this answers, so delivery log lines carry it too.
    sa.Column("request_id", sa.String(64), nullable=True),
    # v4: the replica delivering this part, until when (database clock): claimed before the
    # send, marked sent or rescheduled only by its claimant.
    sa.Column("claimed_by", sa.String(128), nullable=True),
    sa.Column("claim_until", sa.Double, nullable=True),
    sa.Index("ix_outbox_due", "status", "next_attempt_at"),
    sa.Index("ix_outbox_chat", "channel", "channel_id", "status", "seq"),
)

allowed_senders = sa.Table(
    "allowed_senders",
    metadata,
    sa.Column("channel", sa.String(32), primary_key=True),
    sa.Column("sender", sa.String(255), primary_key=True),
    sa.Column("added_at", sa.Double, nullable=False),
    sa.Column("via", sa.String(32), nullable=False),
)

pairing_codes = sa.Table(
    "pairing_codes",
    metadata,
    sa.Column("code", sa.String(16), primary_key=True),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("sender", sa.String(255), nullable=False),
    sa.Column("chat_id", sa.String(255), nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
    sa.Column("last_sent_at", sa.Double, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Index("ix_pairing_sender", "channel", "sender"),
    # v4: at most one pending code per sender, whichever replica issues it.
    sa.Index(
        "ux_pairing_pending",
        "channel",
        "sender",
        unique=True,
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    ),
)

# v4, replacing v1's `idempotency`: an API `Idempotency-Key` names the message it was first
# sent with, inserted before the model is called; the answer is read from `messages`, so a
# repeat gets it whichever replica (or recovery) answered.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("scope", sa.String(32), primary_key=True),  # the route: "chat", "openai"
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("message_id", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Index("ix_idempotency_created", "created_at"),
)

# v4: leases on things only one replica may do at a time, e.g. receive a platform's updates
# ("channel:telegram:<bot>"). Held by `owner` until `until` (database clock), renewed by it.
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("owner", sa.String(128), nullable=False),
    sa.Column("until", sa.Double, nullable=False),
    sa.Column("acquired_at", sa.Double, nullable=False),
)

# v5: gateway tokens made by `open-clanker token rotate`, kept as SHA-256 hashes (never the
# token). Every replica sharing the database accepts them; `expires_at` NULL: no expiry yet.
gateway_tokens = sa.Table(
    "gateway_tokens",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("origin", sa.String(16), nullable=False),  # rotated | generated
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=True),
)

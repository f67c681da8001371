"""Storage: SQLAlchemy Core over SQLite (default) or PostgreSQL, with versioned migrations."""

from open_clanker.storage.access import AllowedSender, PairingCode
from open_clanker.storage.messages import PendingMessage, SessionInfo, Status
from open_clanker.storage.outbox import OutboxItem, OutboxStatus, outbox_rows
from open_clanker.storage.store import Store

__all__ = [
    "AllowedSender",
    "OutboxItem",
    "OutboxStatus",
    "PairingCode",
    "PendingMessage",
    "SessionInfo",
    "Status",
    "Store",
    "outbox_rows",
]

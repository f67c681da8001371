"""Who may talk (SPEC §4.4): a pure decision, then the pairing desk that hands out codes."""

from __future__ import annotations

import enum
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from open_clanker.core.types import ChannelType
from open_clanker.storage.access import AccessStore, PairingCode

# No look-alikes: no 0/O, 1/I/L.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8
CODE_TTL_S = 3600.0
MAX_PENDING_PER_CHANNEL = 3
RESEND_AFTER_S = 600.0

# Channels governed by the gateway's bearer token rather than by who the sender is.
TOKEN_CHANNELS = frozenset({ChannelType.API, ChannelType.WEBCHAT, ChannelType.CLI})


class Access(enum.Enum):
    ALLOW = "allow"
    IGNORE = "ignore"
    PAIR = "pair"


@dataclass(frozen=True, slots=True)
class AccessFacts:
    channel: ChannelType
    is_direct: bool
    addressed: bool
    sender_allowed: bool  # sender in the allow list or paired
    chat_allowed: bool  # chat (a thread: its parent) in the allow list or allowed_chats


def decide_access(policy: str, facts: AccessFacts) -> Access:
    """SPEC §4.4. A group is answered when the bot is addressed there and the group itself is
    allowed (any group under `open`): who the sender is does not open a group, so an
    allowed or paired person cannot bring the bot into a chat its owner never allowed."""
    if facts.channel in TOKEN_CHANNELS:
        return Access.ALLOW
    if not facts.is_direct:
        if facts.addressed and (policy == "open" or facts.chat_allowed):
            return Access.ALLOW
        return Access.IGNORE
    if policy == "open" or facts.sender_allowed or facts.chat_allowed:
        return Access.ALLOW
    if policy == "pairing":
        return Access.PAIR
    return Access.IGNORE


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(code: str) -> str:
    return code.strip().upper()


def pairing_text(code: str) -> str:
    return (
        f"Hi! I don't know you yet. Your pairing code is {code}. "
        "Ask the owner of this assistant to approve it (it expires in 1 hour)."
    )


class StaticAllowList:
    """`[access].allow` entries plus each channel's `allowed_chats`, as `<channel>:<id>`."""

    def __init__(self, entries: Iterable[str]) -> None:
        self._entries = {e.strip() for e in entries if e.strip()}

    def __contains__(self, item: str) -> bool:
        return item in self._entries


class PairingDesk:
    """Hands out pairing codes within the limits: one per sender, 3 pending per channel."""

    def __init__(self, store: AccessStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def code_for(self, channel: ChannelType, sender: str, chat_id: str) -> str | None:
        """The code to send this stranger now, or None (already told recently, or full)."""
        now = self._clock()
        wanted = PairingCode("", channel.value, sender, chat_id, now, now + CODE_TTL_S, now)
        return await self._store.issue_code(
            wanted,
            max_pending=MAX_PENDING_PER_CHANNEL,
            resend_after_s=RESEND_AFTER_S,
            new_code=new_code,
        )

    async def approve(self, code: str) -> PairingCode | None:
        return await self._store.approve(normalize_code(code), self._clock())

"""The rotated tokens one replica accepts (hashes and expiries), checked in constant time.

Kept apart from `rotation.py` so `tokens.py` (imported by the CLI) stays free of storage.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterable
from typing import Protocol

Clock = Callable[[], float]


class _Stored(Protocol):
    @property
    def token_hash(self) -> str: ...

    @property
    def expires_at(self) -> float | None: ...


def token_hash(token: str) -> str:
    # The tokens are 256 random bits: a plain hash is as strong as a slow one would be.
    return hashlib.sha256(token.encode()).hexdigest()


class RotatedTokens:
    """The stored tokens one replica accepts, as (hash, expiry) pairs."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._entries: tuple[tuple[bytes, float | None], ...] = ()

    def replace(self, stored: Iterable[_Stored]) -> None:
        self._entries = tuple((bytes.fromhex(s.token_hash), s.expires_at) for s in stored)

    def check(self, presented: str) -> bool:
        """Constant-time against every entry, expired ones included."""
        digest = hashlib.sha256(presented.encode()).digest()
        now = self._clock()
        ok = False
        for value, expires_at in self._entries:
            match = hmac.compare_digest(digest, value)
            ok |= match and (expires_at is None or now < expires_at)
        return ok

    def __len__(self) -> int:
        return len(self._entries)

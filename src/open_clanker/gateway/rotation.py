"""Token rotation (`open-clanker token rotate`): a new gateway token, accepted at once, while
the older ones stay valid for a grace period.

Rotated tokens live in the database as SHA-256 hashes, so every replica sharing it accepts
them: the replica that rotates loads them at once and tells the others through the bus
(`tokens` notice); each also reloads every `REFRESH_S` in case a notice was lost. Expiry is
checked against the clock at every request, so an old token stops working on time without
any reload. Configured tokens (`auth_tokens`, `OPENCLAW_GATEWAY_TOKEN`) are not touched: they
go when they leave the config (and a reload).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
from sqlalchemy.exc import SQLAlchemyError

from open_clanker.core.logging import REDACTOR
from open_clanker.core.tasks import cancel_and_wait
from open_clanker.gateway.token_ring import RotatedTokens, token_hash
from open_clanker.gateway.tokens import Tokens
from open_clanker.pipeline.bus import EventBus
from open_clanker.storage.store import Store
from open_clanker.storage.tokens import StoredToken, TokenStore

log = structlog.get_logger("open_clanker.gateway")

REFRESH_S = 10.0
NOTICE = "tokens"
MAX_GRACE_S = 365 * 86400.0

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Rotated:
    token: str
    id: str
    created_at: float
    others_expire_at: float
    token_file_updated: bool


class TokenRotation:
    def __init__(
        self, store: TokenStore, ring: RotatedTokens, bus: EventBus, clock: Clock = time.time
    ) -> None:
        self._store = store
        self.ring = ring
        self._bus = bus
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        bus.on_notice(self._on_notice)

    def _on_notice(self, kind: str, _key: str) -> None:
        if kind == NOTICE:
            self._wake.set()

    async def refresh(self) -> None:
        stored = await self._store.all()
        known = len(self.ring)
        self.ring.replace(stored)
        if len(stored) != known:
            log.info("tokens_loaded", count=len(stored))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="token-refresh")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), REFRESH_S)
            self._wake.clear()
            try:
                await self.refresh()
            except (SQLAlchemyError, OSError) as exc:  # keep the tokens we know; try again
                log.warning("token_refresh_failed", error=type(exc).__name__)

    async def list(self) -> list[StoredToken]:
        return await self._store.all()

    async def rotate(
        self, grace_s: float, file_tokens: tuple[str, ...], token_file: Path | None
    ) -> Rotated:
        """A new token; every other stored one (and `file_tokens`, the generated token in
        use) expires after `grace_s`. With `token_file`, the new token replaces the one in
        it, so the CLI on this machine keeps working after the grace period."""
        async with self._lock:
            now = self._clock()
            token = secrets.token_urlsafe(32)
            REDACTOR.add([token])
            new = StoredToken(_new_id(), token_hash(token), "rotated", now, None)
            retired = [
                StoredToken(_new_id(), token_hash(t), "generated", now, None) for t in file_tokens
            ]
            expire_at = now + grace_s
            await self._store.rotate(new, expire_at, retired)
            await self.refresh()
            if token_file is not None:
                write_token_file(token_file, token)
            await self._bus.notify(NOTICE, new.id)
            log.info(
                "token_rotated",
                id=new.id,
                grace_s=grace_s,
                token_file_updated=token_file is not None,
            )
            return Rotated(token, new.id, now, expire_at, token_file is not None)


async def start_rotation(store: Store, tokens: Tokens, bus: EventBus) -> TokenRotation:
    """Load the stored tokens into `tokens` (so they are accepted from the first request)
    and keep them fresh."""
    rotation = TokenRotation(TokenStore(store.db), tokens.rotated, bus)
    await rotation.refresh()
    rotation.start()
    return rotation


def _new_id() -> str:
    return "tok_" + secrets.token_hex(6)


def write_token_file(path: Path, token: str) -> None:
    """Replace the token file atomically, mode 0600 from its first byte."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(token + "\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise

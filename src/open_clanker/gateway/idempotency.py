"""`Idempotency-Key` for the chat routes: the first request with a key runs; a repeat gets its
answer, read from storage, and never causes a second model call (SPEC §5, §9).

The key is bound to the request's message id before the model is called (insert-first). A
repeat with the same body waits, bounded, for that message to be settled — by the first
request, or by the recovery sweep if its replica died — then gets the same answer; still
pending at the bound: 409 `idempotency_in_progress`. A different body: 422. If the first
attempt failed (the provider was down) or expired, or its process died before storing the
message (`UNSTORED_AFTER_S`), the repeat runs afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from open_clanker.core.errors import IdempotencyInProgressError, IdempotencyKeyReusedError
from open_clanker.core.types import Inbound
from open_clanker.pipeline.context import Ending, Turn
from open_clanker.storage.idempotency import IdempotencyStore, StoredAnswer
from open_clanker.storage.messages import Status

FIRST_POLL_S = 0.05
MAX_POLL_S = 1.0
RERUN = frozenset({Status.FAILED, Status.EXPIRED})
# A key whose message is still not stored this long after it was bound: the first attempt's
# process died between binding and storing (milliseconds apart when alive). A repeat takes over.
UNSTORED_AFTER_S = 30.0


def request_hash(fields: dict[str, Any]) -> str:
    """The request as the client meant it: same fields, same hash (key order aside)."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Outcome:
    """Either this request ran the turn, or an earlier one with the key answered it."""

    turn: Turn | None = None
    stored: StoredAnswer | None = None


async def once(
    store: IdempotencyStore,
    scope: str,
    key: str,
    fields: dict[str, Any],
    inbound: Inbound,
    run: Callable[[], Awaitable[Turn]],
    wait_s: float,
) -> Outcome:
    """Run `run()` unless this key already stands for a request; then wait for its answer."""
    digest = request_hash(fields)
    deadline = time.monotonic() + wait_s
    poll = FIRST_POLL_S
    mine = inbound.message.id
    while True:
        prior = await store.claim(scope, key, digest, mine)
        if prior is None:
            return Outcome(turn=await _run_bound(store, scope, key, mine, run))
        if prior.request_hash != digest:
            raise IdempotencyKeyReusedError(
                "This Idempotency-Key was already used for a different request; "
                "use a new key for a new request."
            )
        answer = await store.answer(prior.message_id)
        died_unstored = answer.message is None and prior.age_s > UNSTORED_AFTER_S
        if died_unstored or (answer.message is not None and answer.status in RERUN):
            if await store.rebind(scope, key, prior.message_id, mine):
                return Outcome(turn=await _run_bound(store, scope, key, mine, run))
            continue  # another repeat took over first: wait for its answer
        if answer.message is not None and answer.status != Status.PENDING:
            return Outcome(stored=answer)
        if time.monotonic() >= deadline:
            raise IdempotencyInProgressError(
                "A request with this Idempotency-Key is still being answered; "
                "retry in a moment to get its answer."
            )
        await asyncio.sleep(poll)
        poll = min(poll * 2, MAX_POLL_S)


async def _run_bound(
    store: IdempotencyStore,
    scope: str,
    key: str,
    message_id: str,
    run: Callable[[], Awaitable[Turn]],
) -> Turn:
    try:
        turn = await run()
    except BaseException:
        # If nothing was stored, let a retry with this key run again; if the message was
        # stored, the key keeps pointing at it (recovery answers it, the repeat reads that).
        with contextlib.suppress(Exception):
            await asyncio.shield(_release_if_unstored(store, scope, key, message_id))
        raise
    if turn.ending in (Ending.REFUSED, Ending.IGNORED, Ending.PAIRING):
        # Refused before storage (too long, too fast): a retry later should run.
        await store.release(scope, key, message_id)
    return turn


async def _release_if_unstored(
    store: IdempotencyStore, scope: str, key: str, message_id: str
) -> None:
    if (await store.answer(message_id)).message is None:
        await store.release(scope, key, message_id)

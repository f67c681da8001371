"""Play a `Schedule` against real gateway replicas: chats, Telegram updates, kill -9, restarts.

Replicas share one fresh PostgreSQL database and one Redis namespace (tests/replicas_kit.py);
each talks to the doubles through its own port (tests/replica_traced.py). A chat's client
behaves like a careful one: on a lost connection or a 503 it retries with the same
Idempotency-Key on another ready replica, until it has an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.doubles.telegram_double import message, update, user
from tests.replica_schedule import Chat, Kill, Push, Schedule
from tests.replica_traced import OnCall, TracedEchoModel, TracedTelegram
from tests.replicas_kit import TOKEN, ReplicaProcess, fresh_database, replica_config

WEBHOOK_SECRET = "replica-test-webhook-secret"
WEBHOOK_PATH = "/telegram/webhook"
CLIENT_BOUND_S = 120.0  # a chat's client gives up after this (the audit then reports it)
REQUEST_TIMEOUT_S = 80.0  # beyond the gateway's own idempotency wait (timeout_s + 5)
RETRYABLE = {"idempotency_in_progress", "not_ready"}


@dataclass
class ChatOutcome:
    chat: Chat
    status: int | None = None  # the last answer's status; None: no answer at all
    body: dict[str, Any] | None = None
    attempts: list[str] = field(default_factory=list)


@dataclass
class Fleet:
    replicas: list[ReplicaProcess]
    storage_url: str
    ready: list[bool]
    kills: list[tuple[int, float]] = field(default_factory=list)  # (replica, monotonic)
    skipped_kills: int = 0
    stops: int = 0  # graceful ones (SIGTERM)
    crashes: list[str] = field(default_factory=list)  # a replica that exited on its own
    _restarts: set[asyncio.Task[None]] = field(default_factory=set)

    def pick(self, prefer: int) -> int | None:
        n = len(self.replicas)
        for i in range(n):
            candidate = (prefer + i) % n
            if self.ready[candidate]:
                return candidate
        return None

    def running(self, index: int) -> bool:
        proc = self.replicas[index].proc
        return proc is not None and proc.poll() is None

    def kill_on_call(self, kills: list[Kill]) -> OnCall:
        """A double's hook: the `nth` call of a kind kills its caller, there and then."""
        seen: dict[str, int] = {}
        waiting = {(k.on, k.nth): k for k in kills if k.on != "time"}

        def on_call(kind: str, replica: int) -> None:
            seen[kind] = seen.get(kind, 0) + 1
            k = waiting.pop((kind, seen[kind]), None)
            if k is not None and replica >= 0:
                self.kill(Kill(0, replica, k.restart_after))

        return on_call

    def kill(self, k: Kill) -> None:
        """The scheduled replica, or the next one running: it may be serving, starting (kill
        -9 during start-up) or draining. Every replica may be down at once for a moment
        (clients and Telegram wait), but never for good."""
        n = len(self.replicas)
        target = next((t for i in range(n) if self.running(t := (k.replica + i) % n)), None)
        others = [i for i in range(n) if i != target and self.running(i)]
        if target is None or not (others or self._restarts or k.restart_after is not None):
            self.skipped_kills += 1
            return
        self.ready[target] = False
        stopped: asyncio.Future[int] | None = None
        if k.graceful:
            # SIGTERM: it drains and hands its claims over. Not a kill: nothing it did may be
            # done twice, so it explains no repeat in the audit.
            stopped = asyncio.ensure_future(asyncio.to_thread(self.replicas[target].stop))
            self.stops += 1
        else:
            self.replicas[target].kill()
            self.kills.append((target, time.monotonic()))
        if k.restart_after is not None:
            task = asyncio.create_task(self._restart(target, k.restart_after, stopped))
            self._restarts.add(task)
            task.add_done_callback(self._restarts.discard)

    async def _restart(
        self, index: int, after: float, stopped: asyncio.Future[int] | None = None
    ) -> None:
        replica = self.replicas[index]
        if stopped is not None:
            code = await stopped  # its drain first (a kill -9 may also end it meanwhile)
            # -SIGTERM: it was still starting, before the gateway takes over SIGTERM (then
            # nothing is accepted yet, and the default action is right).
            if code not in (0, -signal.SIGKILL, -signal.SIGTERM):
                self.crashes.append(f"{replica.name} exited {code} on SIGTERM")
        await asyncio.sleep(after)
        if self.running(index):
            return  # another kill's restart brought it back already
        replica.start()
        try:
            await replica.wait_ready(60)
        except AssertionError as exc:
            assert replica.proc is not None
            code = replica.proc.poll()
            if code is None:
                raise
            if code not in (-signal.SIGKILL, -signal.SIGTERM):  # not ours: a crash
                self.crashes.append(f"{replica.name} exited {code} while starting: {exc}")
            return  # killed again while starting: that kill schedules its own restart
        self.ready[index] = True

    async def restarts_done(self) -> None:
        while self._restarts:
            await asyncio.gather(*list(self._restarts))


def webhook_settings() -> str:
    """Telegram in webhook mode: the same public URL for every replica (the load balancer's;
    Telegram never calls it here, the test posts to each replica's path itself)."""
    return (
        'mode = "webhook"\n'
        f'webhook_url = "https://lb.invalid{WEBHOOK_PATH}"\n'
        f'webhook_secret = "{WEBHOOK_SECRET}"\n'
    )


@contextlib.asynccontextmanager
async def fleet(
    tmp_path: Path,
    count: int,
    model: TracedEchoModel,
    telegram: TracedTelegram,
    mode: str = "polling",
) -> AsyncIterator[Fleet]:
    extra = webhook_settings() if mode == "webhook" else ""
    async with fresh_database() as storage_url:
        namespace = f"t{secrets.token_hex(4)}"
        replicas = [
            ReplicaProcess(
                name=chr(ord("A") + i),
                dir=tmp_path / f"replica-{i}",
                config=replica_config(
                    storage_url,
                    namespace,
                    model.urls[i],
                    telegram_url=telegram.urls[i],
                    extra=extra,
                ),
                extra_env={"TEST_MODEL_KEY": "sk-test"},
            )
            for i in range(count)
        ]
        try:
            for replica in replicas:
                replica.start()
            await asyncio.gather(*(r.wait_ready(60) for r in replicas))
            yield Fleet(replicas, storage_url, [True] * count)
        finally:
            # In threads and together: each stop waits for its process, and the doubles
            # (on this loop) must keep answering while the replicas drain.
            await asyncio.gather(
                *(asyncio.to_thread(r.stop) for r in replicas if r.proc is not None)
            )


async def _chat(fleet: Fleet, http: aiohttp.ClientSession, chat: Chat) -> ChatOutcome:
    outcome = ChatOutcome(chat)
    prefer = chat.replica
    deadline = time.monotonic() + CLIENT_BOUND_S
    headers = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": chat.key}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    while time.monotonic() < deadline:
        index = fleet.pick(prefer)
        if index is None:
            await asyncio.sleep(0.2)
            continue
        replica = fleet.replicas[index]
        try:
            async with http.post(
                replica.base_url + "/api/v1/chat",
                json={"text": chat.text, "session": chat.session},
                headers=headers,
                timeout=timeout,
            ) as r:
                outcome.status, outcome.body = r.status, await r.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            outcome.attempts.append(f"{replica.name}: {type(exc).__name__}")
            prefer = index + 1
            await asyncio.sleep(0.2)
            continue
        outcome.attempts.append(f"{replica.name}: {outcome.status}")
        code = (outcome.body or {}).get("error", {}).get("code")
        if outcome.status == 200 or code not in RETRYABLE:
            return outcome
        prefer = index + 1
        await asyncio.sleep(0.5)
    return outcome


def _update(push: Push, update_id: int) -> dict[str, Any]:
    sender = user(push.chat_id, f"user{push.chat_id}")
    return update(message(push.text, chat_id=push.chat_id, sender=sender), update_id=update_id)


async def _post_webhook(
    fleet: Fleet, http: aiohttp.ClientSession, body: dict[str, Any], prefer: int
) -> None:
    """Telegram's side of webhook mode: POST the update until some replica answers 200."""
    deadline = time.monotonic() + CLIENT_BOUND_S
    headers = {"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}
    while time.monotonic() < deadline:
        index = fleet.pick(prefer)
        if index is not None:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.post(
                    fleet.replicas[index].base_url + WEBHOOK_PATH,
                    json=body,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=30),
                ) as r:
                    if r.status == 200:
                        return
            prefer = index + 1
        await asyncio.sleep(0.3)
    # Never delivered: the audit reports the update as not stored.


async def play(
    schedule: Schedule,
    fleet: Fleet,
    http: aiohttp.ClientSession,
    telegram: TracedTelegram,
    model: TracedEchoModel,
) -> list[ChatOutcome]:
    """Every event at its time; returns once every chat has its final answer."""
    start = time.monotonic()
    model.on_call = telegram.on_call = fleet.kill_on_call(schedule.kills)

    async def at(offset: float) -> None:
        await asyncio.sleep(max(0.0, start + offset - time.monotonic()))

    async def chat(c: Chat) -> list[ChatOutcome]:
        await at(c.at)
        if not c.twin:
            return [await _chat(fleet, http, c)]
        twin = dataclasses.replace(c, replica=c.replica + 1)
        return list(await asyncio.gather(_chat(fleet, http, c), _chat(fleet, http, twin)))

    update_ids = {id(p): 1000 + i for i, p in enumerate(schedule.pushes)}

    async def push(p: Push) -> None:
        await at(p.at)
        telegram.push(_update(p, update_ids[id(p)]))

    async def webhook_chat(pushes: list[Push]) -> None:
        # Telegram posts a chat's updates one after another, each until it is answered 200.
        for n, p in enumerate(pushes):
            await at(p.at)
            body = _update(p, update_ids[id(p)])
            if p.twice:
                await asyncio.gather(
                    _post_webhook(fleet, http, body, n), _post_webhook(fleet, http, body, n + 1)
                )
            else:
                await _post_webhook(fleet, http, body, n)

    async def kill(k: Kill) -> None:
        await at(k.at)
        fleet.kill(k)

    timed = [k for k in schedule.kills if k.on == "time"]
    if schedule.mode == "webhook":
        by_chat: dict[int, list[Push]] = {}
        for p in schedule.pushes:
            by_chat.setdefault(p.chat_id, []).append(p)
        deliveries = [webhook_chat(pushes) for pushes in by_chat.values()]
    else:
        deliveries = [push(p) for p in schedule.pushes]
    events = [*deliveries, *(kill(k) for k in timed)]
    outcomes, *_ = await asyncio.gather(asyncio.gather(*(chat(c) for c in schedule.chats)), *events)
    await fleet.restarts_done()
    return [o for pair in outcomes for o in pair]

"""A seeded schedule of what happens to a cluster: chats over HTTP, Telegram updates, kill -9s.

`draw(seed)` is pure: the same seed gives the same schedule (times, sessions, texts, which
replica is killed and when it comes back). The run adapts it to what is alive at the moment
(a kill never takes the last ready replica), so the interleaving varies from run to run; the
invariants checked afterwards must hold for every interleaving.

Every text is unique and names its session, so the echo model's "answer to: <text>" shows
which message a reply answers; `[slow N]` sets the model's delay for that message.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field

LONG_PARAGRAPH = 1800  # three of these make an answer of two Telegram parts


@dataclass(frozen=True, slots=True)
class Chat:
    """`POST /api/v1/chat` with its own Idempotency-Key, retried elsewhere if its replica dies."""

    at: float
    session: str
    text: str
    replica: int
    key: str
    twin: bool = False  # sent twice at once, to two replicas, with the same key


@dataclass(frozen=True, slots=True)
class Push:
    """A Telegram update queued at the double (whichever replica polls will fetch it)."""

    at: float
    chat_id: int
    text: str
    twice: bool = False  # webhook mode: delivered twice at once, to two replicas


@dataclass(frozen=True, slots=True)
class Kill:
    """kill -9 of a replica; it starts again `restart_after` seconds later (None: stays down).

    `on` = "time": at `at`. "send" / "model": the replica making the `nth` sendMessage / model
    call of the run, the moment that call reaches the double (a send that landed but was never
    recorded; a turn cut off mid-call). Such a kill lands where a timed one rarely does."""

    at: float
    replica: int
    restart_after: float | None
    on: str = "time"
    nth: int = 0
    graceful: bool = False  # SIGTERM instead: a drain, its claims handed over


@dataclass(frozen=True, slots=True)
class Schedule:
    seed: int
    replicas: int
    window_s: float
    mode: str = "polling"  # Telegram: "polling" (one receiver) or "webhook" (any replica)
    chats: list[Chat] = field(default_factory=list)
    pushes: list[Push] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)

    def describe(self) -> str:
        """The schedule in one line, for a failure message (the seed replays it)."""
        kills = ", ".join(
            ("term " if k.graceful else "")
            + (f"{chr(65 + k.replica)}@{k.at:.1f}s" if k.on == "time" else f"{k.on}#{k.nth}")
            + (f"+{k.restart_after:.1f}" if k.restart_after else "")
            for k in self.kills
        )
        twins = sum(c.twin for c in self.chats) + sum(p.twice for p in self.pushes)
        return (
            f"seed {self.seed} ({self.mode}): {len(self.chats)} chats, {len(self.pushes)} "
            f"Telegram updates, {twins} sent twice at once, kills {kills or 'none'}"
        )


def _delay(rng: random.Random) -> str:
    # Mostly quick turns, some long enough that a kill is likely to land inside one.
    seconds = rng.choice([0.05, 0.1, 0.2, 0.3, 0.5]) if rng.random() < 0.85 else 2.0
    return f"[slow {seconds}]"


def draw(
    seed: int,
    *,
    replicas: int = 3,
    window_s: float = 14.0,
    sessions: int = 5,
    chat_messages: int = 36,
    telegram_chats: int = 4,
    telegram_messages: int = 16,
    kills: int = 2,
    mode: str = "polling",
) -> Schedule:
    rng = random.Random(seed)
    chats = []
    for i in range(chat_messages):
        session = f"r{seed}-s{rng.randrange(sessions)}"
        chats.append(
            Chat(
                at=round(rng.uniform(0, window_s), 3),
                session=session,
                text=f"{session}-m{i} {_delay(rng)}",
                replica=rng.randrange(replicas),
                key=f"r{seed}-k{i}",
            )
        )
    pushes = []
    for i in range(telegram_messages):
        chat_id = 7000 + rng.randrange(telegram_chats)
        text = f"c{chat_id}-t{i} {_delay(rng)}"
        if rng.random() < 0.2:  # a long one: its answer goes out in two parts, in order
            text += "".join(f"\n\nc{chat_id}-t{i}-p{j} " + "x" * LONG_PARAGRAPH for j in range(3))
        pushes.append(Push(at=round(rng.uniform(0, window_s), 3), chat_id=chat_id, text=text))
    kill_list = [
        Kill(at=0, replica=-1, restart_after=round(rng.uniform(0.5, 4.0), 3), on=on, nth=nth)
        for on, nth in (("send", rng.randint(2, 8)), ("model", rng.randint(5, 25)))
    ]
    for n in range(kills):
        # The last kill may leave its replica down for good: the others carry on alone.
        stays_down = n == kills - 1 and rng.random() < 0.5
        kill_list.append(
            Kill(
                at=round(rng.uniform(1.0, window_s - 1.0), 3),
                replica=rng.randrange(replicas),
                restart_after=None if stays_down else round(rng.uniform(0.5, 5.0), 3),
            )
        )
    # One rolling restart: SIGTERM, then a start.
    kill_list.append(
        Kill(
            at=round(rng.uniform(1.0, window_s - 1.0), 3),
            replica=rng.randrange(replicas),
            restart_after=round(rng.uniform(0.5, 3.0), 3),
            graceful=True,
        )
    )
    # Repeats at the same moment on two replicas: a client retrying too early with its key, and
    # (webhook mode) Telegram re-sending an update whose first delivery is still in flight.
    chats = [dataclasses.replace(c, twin=rng.random() < 0.15) for c in chats]
    if mode == "webhook":
        pushes = [dataclasses.replace(p, twice=rng.random() < 0.25) for p in pushes]
    return Schedule(
        seed=seed,
        replicas=replicas,
        window_s=window_s,
        mode=mode,
        chats=sorted(chats, key=lambda c: c.at),
        pushes=sorted(pushes, key=lambda p: p.at),
        kills=sorted(kill_list, key=lambda k: k.at),
    )

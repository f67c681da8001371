"""SQLAlchemy Core against the stdlib sqlite3 driver for the same per-message transactions.

Run: `.venv/bin/python -m bench.dbapi_compare [--messages N] [--rounds R]`.

What one chat message costs the storage layer on SQLite, both ways, in one process:

* **SQLAlchemy**: the gateway's own code, `MessageStore._accept`, `._history` and
  `._store_reply` (storage/messages.py) on the engine `Database` builds, each in its own
  `engine.begin()` / `engine.connect()` as `Database.write` / `.read` run them (minus the hop to
  the SQLite thread, which a DB-API version would keep too).
* **DB-API**: the same statements, written out as the SQL SQLAlchemy sends (captured with a
  `before_cursor_execute` listener), executed on one `sqlite3` connection with the same pragmas,
  the same parameter dicts built from a `Message` (through the same NUL guard,
  storage/nul_guard.py), the same `RETURNING`s, and history rows turned
  into `Message` objects the same way (`model_construct`, no re-validation).

Each side has its own database file with the gateway's schema (`Store.open`), 50 sessions filled
to the 40-message history budget first; then rounds alternate between the two sides (so both meet
the shared machine at the same moments), each round N messages: accept, history, reply. CPU time
per message (`time.process_time`) and wall time, and the import cost of each driver stack
(fresh interpreters: RSS and time to import and run a first statement).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SESSIONS = 50
HISTORY = 40

ACCEPT_TOUCH = (
    'INSERT INTO sessions ("key", channel, channel_id, generation, created_at, updated_at) '
    "VALUES (:key, :channel, :channel_id, :generation, :created_at, :updated_at) "
    'ON CONFLICT ("key") DO UPDATE SET updated_at = excluded.updated_at RETURNING generation'
)
_COLS = (
    "id, session_key, generation, channel_type, channel_id, sender, role, text, timestamp, "
    "metadata_json, status, context_json, answers_id, response_json, claimed_by, claim_until"
)
_VALS = ", ".join(":" + c.strip() for c in _COLS.split(","))
INSERT_SEQ = f"INSERT INTO messages ({_COLS}) VALUES ({_VALS}) RETURNING seq"
INSERT = f"INSERT INTO messages ({_COLS}) VALUES ({_VALS})"
ANSWER = (
    "UPDATE messages SET status=:new_status, claimed_by=NULL, claim_until=NULL "
    "WHERE messages.id = :mid AND messages.status = 'pending'"
)
HISTORY_SQL = (
    "SELECT seq, id, session_key, generation, channel_type, channel_id, sender, role, text, "
    "timestamp, metadata_json, status, context_json, answers_id, response_json, claimed_by, "
    "claim_until FROM messages WHERE session_key = :key AND generation = "
    '(SELECT generation FROM sessions WHERE "key" = :key) '
    "AND status IN ('answered', 'failed', 'reply') ORDER BY seq DESC LIMIT :limit"
)


class DbApiMessages:
    """The three hot-path functions of `MessageStore` on a bare sqlite3 connection."""

    def __init__(self, path: str) -> None:
        from open_clanker.core.types import ChannelType, MessageMetadata, Role, SessionKey

        self._types = (ChannelType, MessageMetadata, Role, SessionKey)
        self._default_meta = MessageMetadata()
        self._default_meta_json = self._default_meta.model_dump_json()
        from open_clanker.storage.nul_guard import clean  # the same NUL guard on every bind

        self._clean = clean
        self.conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=10000",
                       "foreign_keys=ON"):  # fmt: skip
            self.conn.execute(f"PRAGMA {pragma}")

    def _x(self, sql: str, params: dict[str, Any]) -> sqlite3.Cursor:
        return self.conn.execute(sql, self._clean(params))

    def _touch(self, msg: Any) -> int:
        now = time.time()
        row = self._x(
            ACCEPT_TOUCH,
            {"key": msg.session, "channel": msg.channel_type.value,
             "channel_id": msg.channel_id, "generation": 0, "created_at": now, "updated_at": now},
        ).fetchone()  # fmt: skip
        return int(row[0])

    def _values(self, msg: Any, generation: int, status: str) -> dict[str, Any]:
        return {
            "context_json": "{}", "answers_id": None, "response_json": None, "claimed_by": None,
            "claim_until": None, "id": msg.id, "session_key": msg.session,
            "generation": generation, "channel_type": msg.channel_type.value,
            "channel_id": msg.channel_id, "sender": msg.sender, "role": msg.role.value,
            "text": msg.text, "timestamp": msg.timestamp.timestamp(),
            "metadata_json": self._default_meta_json if msg.metadata == self._default_meta
            else msg.metadata.model_dump_json(),
            "status": status,
        }  # fmt: skip

    def accept(self, msg: Any, context: dict[str, Any]) -> int:
        with self.conn:  # one transaction: commits on return
            values = self._values(msg, self._touch(msg), "pending")
            values["context_json"] = json.dumps(context)
            return int(self._x(INSERT_SEQ, values).fetchone()[0])

    def store_reply(self, reply: Any, answers: Any) -> None:
        with self.conn:
            generation = self._touch(reply)
            cur = self._x(ANSWER, {"mid": answers.id, "new_status": "answered"})
            if not cur.rowcount:
                raise RuntimeError("stale")
            values = self._values(reply, generation, "reply")
            values.update(answers_id=answers.id, response_json=None, context_json="{}")
            self._x(INSERT, values)

    def history(self, key: str, limit: int) -> list[Any]:
        from open_clanker.core.types import Message

        channel_type, metadata, role, session_key = self._types
        rows = self._x(HISTORY_SQL, {"key": key, "limit": limit}).fetchall()
        self.conn.rollback()  # a read, as Database.read: nothing to commit
        by_id = {r[1]: r for r in rows}
        ordered = []
        for r in rows:  # exchanges_in_order on tuples: seq 0, id 1, answers_id 13
            if r[13] is None:
                ordered.append((r[0], 0, r))
            elif (q := by_id.get(r[13])) is not None:
                ordered.append((q[0], r[0], r))
        ordered.sort(key=lambda item: (item[0], item[1]))
        out = []
        for _a, _b, r in ordered:
            meta = (
                self._default_meta
                if r[10] == self._default_meta_json
                else metadata.model_validate_json(r[10])
            )
            out.append(
                Message.model_construct(
                    id=r[1],
                    channel_type=channel_type(r[4]),
                    channel_id=r[5],
                    sender=r[6],
                    role=role(r[7]),
                    text=r[8],
                    timestamp=datetime.fromtimestamp(r[9], UTC),
                    session=session_key(r[2]),
                    metadata=meta,
                )
            )
        return out


def make_schema(path: Path) -> None:
    from open_clanker.storage.store import Store

    async def run() -> None:
        store = await Store.open(f"sqlite:///{path}")
        await store.close()

    asyncio.run(run())


def sqlalchemy_side(
    path: Path,
) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
    from open_clanker.storage.claims import ClaimStore
    from open_clanker.storage.database import Database
    from open_clanker.storage.messages import MessageStore, Status

    db = Database(f"sqlite:///{path}")
    store = MessageStore(db, ClaimStore(db, 30.0))
    engine = db._sync  # the engine Database.write/read use on the SQLite thread
    assert engine is not None

    def accept(msg: Any, context: dict[str, Any]) -> int:
        with engine.begin() as conn:
            return store._accept(conn, msg, None, context, Status.PENDING, None).seq or 0

    def store_reply(reply: Any, answers: Any) -> None:
        extra = {"answers_id": answers.id, "response_json": None, "context_json": "{}"}
        with engine.begin() as conn:
            store._store_reply(conn, reply, extra, Status.REPLY, [], answers, Status.ANSWERED, None)

    def history(key: str, limit: int) -> list[Any]:
        with engine.connect() as conn:
            return store._history(conn, key, limit)  # type: ignore[arg-type]

    return accept, store_reply, history


def messages_for(i: int) -> tuple[Any, Any]:
    from open_clanker.core.types import ChannelType, Message, Role, SessionKey

    session = SessionKey(f"api:bench-{i % SESSIONS}")
    msg = Message(channel_type=ChannelType.API, channel_id="bench", sender="bench",
                  text=f"bench message {i}", session=session)  # fmt: skip
    reply = Message(channel_type=ChannelType.API, channel_id="bench", sender="assistant",
                    role=Role.ASSISTANT, text="A fixed reply of forty-three characters.",
                    session=session)  # fmt: skip
    return msg, reply


def run_round(side: Any, start: int, n: int) -> dict[str, float]:
    """n messages: accept, history (40), reply. CPU µs per message for each step."""
    accept, store_reply, history = side
    pairs = [messages_for(start + i) for i in range(n)]
    t = {"accept": 0.0, "history": 0.0, "reply": 0.0}
    wall0 = time.perf_counter()
    for msg, reply in pairs:
        c0 = time.process_time()
        accept(msg, {"client": "bench"})
        c1 = time.process_time()
        history(msg.session, HISTORY)
        c2 = time.process_time()
        store_reply(reply, msg)
        c3 = time.process_time()
        t["accept"] += c1 - c0
        t["history"] += c2 - c1
        t["reply"] += c3 - c2
    wall = time.perf_counter() - wall0
    out = {k: 1e6 * v / n for k, v in t.items()}
    out["two_tx"] = out["accept"] + out["reply"]
    out["all"] = out["two_tx"] + out["history"]
    out["wall_us"] = 1e6 * wall / n
    return out


IMPORT_PROBE = r"""
import sys, time
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
base, t0 = rss(), time.perf_counter()
if sys.argv[1] == "sqlalchemy":
    import sqlalchemy as sa
    from sqlalchemy.pool import StaticPool
    engine = sa.create_engine("sqlite+pysqlite:///" + sys.argv[2], poolclass=StaticPool)
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT count(*) FROM messages")).scalar()
else:
    import sqlite3
    conn = sqlite3.connect(sys.argv[2])
    with conn:
        conn.execute("SELECT count(*) FROM messages").fetchone()
print(rss() - base, round(1000 * (time.perf_counter() - t0), 1), len(sys.modules))
"""


def import_cost(kind: str, path: Path, runs: int = 5) -> dict[str, float]:
    kib, ms, mods = [], [], 0
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", IMPORT_PROBE, kind, str(path)],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        kib.append(int(out[0]))
        ms.append(float(out[1]))
        mods = int(out[2])
    return {"rss_mib": statistics.median(kib) / 1024, "ms": statistics.median(ms), "modules": mods}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--messages", type=int, default=500, help="messages per round")
    p.add_argument("--rounds", type=int, default=6, help="rounds per side, alternating")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="clanker-dbapi-"))
    sa_path, raw_path = tmp / "sqlalchemy.db", tmp / "dbapi.db"
    make_schema(sa_path)
    make_schema(raw_path)
    raw = DbApiMessages(str(raw_path))
    sides = {"sqlalchemy": sqlalchemy_side(sa_path), "dbapi": (raw.accept, raw.store_reply,
                                                                raw.history)}  # fmt: skip
    # Same answers both ways, checked before timing anything.
    for name, side in sides.items():
        run_round(side, 0, SESSIONS * HISTORY // 2)  # fill every session's history budget
        got = side[2](f"api:bench-{1}", HISTORY)
        assert len(got) == HISTORY, (name, len(got))
    a = [(m.role, m.text) for m in sides["sqlalchemy"][2]("api:bench-7", HISTORY)]
    b = [(m.role, m.text) for m in sides["dbapi"][2]("api:bench-7", HISTORY)]
    assert a == b, "the two implementations read different histories"
    results: dict[str, list[dict[str, float]]] = {k: [] for k in sides}
    start = SESSIONS * HISTORY
    for rnd in range(args.rounds):
        for name in ("sqlalchemy", "dbapi") if rnd % 2 == 0 else ("dbapi", "sqlalchemy"):
            results[name].append(run_round(sides[name], start, args.messages))
            start += args.messages
    imports = {k: import_cost(k, sa_path) for k in ("sqlalchemy", "dbapi")}
    print(f"{args.rounds} rounds of {args.messages} messages per side, alternating; CPU µs per "
          "message, median (range) over the rounds\n")  # fmt: skip
    print("| step | SQLAlchemy Core | stdlib sqlite3 | difference |\n| --- | --- | --- | --- |")
    for key, label in (("accept", "accept (1 transaction)"), ("reply", "reply (1 transaction)"),
                       ("two_tx", "**the two transactions**"), ("history", "history read (40 rows)"),
                       ("all", "all three"), ("wall_us", "wall time, all three")):  # fmt: skip
        s = [r[key] for r in results["sqlalchemy"]]
        d = [r[key] for r in results["dbapi"]]
        ms, md = statistics.median(s), statistics.median(d)
        print(f"| {label} | {ms:.0f} µs ({min(s):.0f}–{max(s):.0f}) | {md:.0f} µs "
              f"({min(d):.0f}–{max(d):.0f}) | {ms - md:+.0f} µs ({100 * (md / ms - 1):+.0f} %) |")  # fmt: skip
    print("\n| import and first statement | RSS | time | modules |\n| --- | --- | --- | --- |")
    for k, v in imports.items():
        print(f"| {k} | {v['rss_mib']:.1f} MiB | {v['ms']:.0f} ms | {v['modules']} |")


if __name__ == "__main__":
    main()

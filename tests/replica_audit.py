"""The invariants of SPEC §9, checked after a randomized run from what was stored and recorded.

Each check is a pure function of the evidence (stored rows, the doubles' records, the kills)
and returns a list of problems, so a failure names every broken promise at once. What a kill
-9 may legitimately cause is allowed only when a kill explains it:

- a second model call for a message: the first caller was killed (or logged that its turn was
  fenced off, `reply_dropped_stale`) before the next call;
- a second send of an outbox part: its first sender was killed before the next send (it sent,
  then died before recording the send), or logged `delivery_claim_lost`.

Everything else must hold exactly: every accepted message stored once and answered once by a
reply that answers it, turns of a session in arrival order, every model call shown exactly its
session's earlier exchanges, every part delivered, in order per chat.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.doubles.echo_model import answer_to
from tests.replica_run import ChatOutcome
from tests.replica_schedule import Schedule
from tests.replica_traced import ModelCall, SendRecord

Row = dict[str, Any]


@dataclass
class Evidence:
    schedule: Schedule
    outcomes: list[ChatOutcome]
    messages: list[Row]  # every row of `messages`, by seq
    outbox: list[Row]  # every row of `outbox`, by seq
    model_calls: list[ModelCall]
    sends: list[SendRecord]
    kills: list[tuple[int, float]]  # (replica, monotonic time)
    # Per replica: message ids whose reply it dropped as stale, outbox seqs it lost the claim of.
    stale: dict[int, set[str]] = field(default_factory=dict)
    claim_lost: dict[int, set[int]] = field(default_factory=dict)
    conflicts: int = 0  # Telegram 409s: two replicas polling at once

    def killed_between(self, replica: int, after: float, before: float) -> bool:
        return any(r == replica and after <= t <= before for r, t in self.kills)


async def read_stored(storage_url: str) -> tuple[list[Row], list[Row]]:
    import asyncpg

    conn = await asyncpg.connect(storage_url)
    try:
        messages = await conn.fetch(
            "SELECT seq, id, session_key, role, text, status, answers_id FROM messages ORDER BY seq"
        )
        outbox = await conn.fetch(
            "SELECT seq, message_id, channel_id, part, parts, text, status, edit_message_id "
            "FROM outbox ORDER BY seq"
        )
    finally:
        await conn.close()
    return [dict(r) for r in messages], [dict(r) for r in outbox]


async def settled(storage_url: str, user_messages: int, timeout: float) -> bool:
    """Wait until every expected message is stored, none is pending and nothing waits in the
    outbox; False if that does not happen in `timeout` (the audit then says what is missing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        messages, outbox = await read_stored(storage_url)
        users = [m for m in messages if m["role"] == "user"]
        if (
            len(users) >= user_messages
            and all(m["status"] != "pending" for m in users)
            and all(o["status"] != "pending" for o in outbox)
        ):
            return True
        await asyncio.sleep(0.5)
    return False


def _users_by_text(evidence: Evidence) -> dict[str, list[Row]]:
    found: dict[str, list[Row]] = defaultdict(list)
    for m in evidence.messages:
        if m["role"] == "user":
            found[m["text"]].append(m)
    return found


def _replies_to(evidence: Evidence) -> dict[str, list[Row]]:
    found: dict[str, list[Row]] = defaultdict(list)
    for m in evidence.messages:
        if m["answers_id"] is not None:
            found[m["answers_id"]].append(m)
    return found


def stored_once(evidence: Evidence) -> list[str]:
    """Every message the clients sent is stored exactly once (a retry with its key, a
    re-fetched Telegram update, a second poller: never a second row), and nothing else is."""
    expected = [c.text for c in evidence.schedule.chats] + [
        p.text for p in evidence.schedule.pushes
    ]
    users = _users_by_text(evidence)
    problems = [
        f"stored {len(users.get(text, []))} times: {text[:60]!r}"
        for text in expected
        if len(users.get(text, [])) != 1
    ]
    problems += [f"stored but never sent: {text[:60]!r}" for text in set(users) - set(expected)]
    return problems


def answered_once(evidence: Evidence) -> list[str]:
    """Every stored message is answered, once, by a reply that answers that very message."""
    replies = _replies_to(evidence)
    problems = []
    for m in evidence.messages:
        if m["role"] != "user":
            continue
        mine = replies.get(m["id"], [])
        if m["status"] != "answered":
            problems.append(f"{m['status']}, not answered: {m['text'][:60]!r}")
        if len(mine) != 1:
            problems.append(f"{len(mine)} replies to {m['text'][:60]!r}")
        problems += [
            f"cross-answer: {r['text'][:60]!r} answers {m['text'][:60]!r}"
            for r in mine
            if r["text"] != answer_to(m["text"])
        ]
    return problems


def turns_in_order(evidence: Evidence) -> list[str]:
    """A session's turns ran in arrival order: its replies were stored in the order of the
    messages they answer (so its history alternates user, assistant with each reply after
    its own question). Telegram chats also arrive in the order the updates were sent."""
    replies = _replies_to(evidence)
    by_session: dict[str, list[Row]] = defaultdict(list)
    for m in evidence.messages:
        if m["role"] == "user":
            by_session[m["session_key"]].append(m)
    problems = []
    for key, users in by_session.items():
        reply_seqs = [replies[u["id"]][0]["seq"] for u in users if replies.get(u["id"])]
        if reply_seqs != sorted(reply_seqs):
            problems.append(f"{key}: turns out of order")
        # No reply lands before its question, and no two questions' turns overlapped: reply
        # n comes before question n+1's reply (checked above) and after question n.
        for u in users:
            for r in replies.get(u["id"], []):
                if r["seq"] < u["seq"]:
                    problems.append(f"{key}: a reply stored before its question")
    pushed: dict[int, list[str]] = defaultdict(list)
    for p in evidence.schedule.pushes:
        pushed[p.chat_id].append(p.text)
    users_by_text = _users_by_text(evidence)
    for chat_id, texts in pushed.items():
        stored = sorted(
            (rows[0]["seq"], text) for text in texts if (rows := users_by_text.get(text))
        )
        if [text for _seq, text in stored] != [t for t in texts if t in users_by_text]:
            problems.append(f"Telegram chat {chat_id}: stored out of arrival order")
    return problems


def exchanges(evidence: Evidence, session_key: str) -> list[Row]:
    """A session's rows in exchange order: each reply right after the message it answers."""
    rows = [m for m in evidence.messages if m["session_key"] == session_key]
    seq_of = {m["id"]: m["seq"] for m in rows}
    place = [
        (
            (m["seq"], 0)
            if m["answers_id"] is None
            else (seq_of.get(m["answers_id"], -1), m["seq"]),
            m,
        )
        for m in rows
    ]
    return [m for _place, m in sorted(place, key=lambda p: p[0])]


def model_saw_its_history(evidence: Evidence) -> list[str]:
    """Every model call was shown its session's earlier exchanges, exactly, then its message."""
    users = _users_by_text(evidence)
    problems = []
    cache: dict[str, list[Row]] = {}
    for call in evidence.model_calls:
        text = call.messages[-1].get("content") if call.messages else None
        rows = users.get(text) if isinstance(text, str) else None
        if not rows:
            problems.append(f"a model call for no stored message: {str(text)[:60]!r}")
            continue
        key = rows[0]["session_key"]
        history = cache.setdefault(key, exchanges(evidence, key))
        before = [(m["role"], m["text"]) for m in history[: history.index(rows[0])]]
        sent = [(m.get("role"), m.get("content")) for m in call.messages[:-1]]
        if sent != before:
            problems.append(
                f"{key}: the call for {text[:40]!r} saw {len(sent)} messages, not its "
                f"{len(before)} earlier ones"
            )
    return problems


def model_called_once(evidence: Evidence) -> list[str]:
    """One model call per message, unless its caller died (or was fenced off) mid-turn."""
    users = _users_by_text(evidence)
    calls: dict[str, list[ModelCall]] = defaultdict(list)
    for call in evidence.model_calls:
        if call.messages and isinstance(text := call.messages[-1].get("content"), str):
            calls[text].append(call)
    problems = []
    for text, rows in users.items():
        mine = sorted(calls.get(text, []), key=lambda c: c.at)
        if not mine:
            problems.append(f"never sent to the model: {text[:60]!r}")
        for call, after in itertools.pairwise(mine):
            dropped = rows[0]["id"] in evidence.stale.get(call.replica, set())
            if not (dropped or evidence.killed_between(call.replica, call.at, after.at)):
                problems.append(
                    f"model called again for {text[:60]!r} though replica "
                    f"{chr(65 + call.replica)} was alive and holding it"
                )
    return problems


DRAFT_CURSOR = " …"  # pipeline/drafts.py: a streamed draft ends with it, a final part never


def _deliveries(evidence: Evidence, row: Row) -> list[SendRecord]:
    """The records that delivered this part: a send of its text or, for a part that turns a
    streamed draft into the reply, the edit of that draft to its text."""
    chat_id, text, draft = int(row["channel_id"]), row["text"], row["edit_message_id"]
    return sorted(
        (
            s
            for s in evidence.sends
            if s.chat_id == chat_id
            and s.raw == text
            and (not s.edit or (draft is not None and s.message_id == int(draft)))
        ),
        key=lambda s: s.at,
    )


def parts_delivered_once(evidence: Evidence) -> list[str]:
    """Every outbox part was delivered, in order per chat, and delivered again only after its
    first sender died (or lost its claim) before it could record the delivery. Drafts are
    cosmetic and go out during the turn: one left unfinished must have lost its replica."""
    problems = []
    finals: list[tuple[int, float, str]] = []  # (chat, when, text) of every delivery
    for row in evidence.outbox:
        if row["status"] != "sent":
            problems.append(f"outbox part {row['seq']} is {row['status']}")
        mine = _deliveries(evidence, row)
        if not mine:
            problems.append(f"outbox part {row['seq']} never reached Telegram")
        for sent, again in itertools.pairwise(mine):
            lost = row["seq"] in evidence.claim_lost.get(sent.replica, set())
            if not (lost or evidence.killed_between(sent.replica, sent.at, again.at)):
                problems.append(
                    f"outbox part {row['seq']} delivered twice by live replicas "
                    f"({chr(65 + sent.replica)}, then {chr(65 + again.replica)})"
                )
        finals += [(s.chat_id, s.at, s.raw) for s in mine]
    queued_texts = {(int(r["channel_id"]), r["text"]) for r in evidence.outbox}
    finished_drafts = {
        (int(r["channel_id"]), int(r["edit_message_id"]))
        for r in evidence.outbox
        if r["edit_message_id"] is not None
    }
    last_kill = {r: t for r, t in sorted(evidence.kills, key=lambda k: k[1])}
    for s in evidence.sends:
        if (s.chat_id, s.raw) in queued_texts:
            continue
        if not s.raw.endswith(DRAFT_CURSOR):
            problems.append(f"sent to chat {s.chat_id} but never queued: {s.raw[:60]!r}")
        elif (
            not s.edit
            and (s.chat_id, s.message_id) not in finished_drafts
            and last_kill.get(s.replica, -1.0) < s.at
        ):
            problems.append(f"a draft left unfinished by a live replica: {s.raw[:60]!r}")
    for chat_id in {int(r["channel_id"]) for r in evidence.outbox}:
        queued = [r["text"] for r in evidence.outbox if int(r["channel_id"]) == chat_id]
        delivered = _collapse(text for c, _at, text in sorted(finals) if c == chat_id)
        if delivered != queued:
            problems.append(f"Telegram chat {chat_id}: parts delivered out of order")
    return problems


def _collapse(texts: Iterable[str]) -> list[str]:
    """Repeats in a row are one delivery sent again (checked by `parts_delivered_once`)."""
    out: list[str] = []
    for text in texts:
        if not out or out[-1] != text:
            out.append(text)
    return out


def clients_got_their_answer(evidence: Evidence) -> list[str]:
    """Every HTTP client (retrying with its key) got 200 with the answer to its own message,
    and the message id it was given is the one stored row for its text."""
    users = _users_by_text(evidence)
    problems = []
    for o in evidence.outcomes:
        text = o.chat.text
        if o.status != 200 or o.body is None:
            problems.append(f"{text[:40]!r}: no answer ({'; '.join(o.attempts[-4:])})")
            continue
        if o.body["reply"]["content"] != answer_to(text):
            problems.append(f"{text[:40]!r} got {o.body['reply']['content'][:60]!r}")
        rows = users.get(text, [])
        if rows and o.body["message"]["id"] != rows[0]["id"]:
            problems.append(f"{text[:40]!r}: answered for another message id")
    return problems


def one_poller(evidence: Evidence) -> list[str]:
    """At most one getUpdates at a time, but for a killed poller's abandoned long poll."""
    if evidence.conflicts > len(evidence.kills):
        return [f"{evidence.conflicts} Telegram conflicts with {len(evidence.kills)} kills"]
    return []


CHECKS = (
    stored_once,
    answered_once,
    turns_in_order,
    model_saw_its_history,
    model_called_once,
    parts_delivered_once,
    clients_got_their_answer,
    one_poller,
)


def audit(evidence: Evidence) -> list[str]:
    return [f"{check.__name__}: {p}" for check in CHECKS for p in check(evidence)]


def observations(evidence: Evidence) -> dict[str, int]:
    """What the run exercised (printed, never asserted): kills, retries, repeats."""
    users = _users_by_text(evidence)
    calls = sum(1 for c in evidence.model_calls if c.messages)
    deliveries = sum(len(_deliveries(evidence, r)) for r in evidence.outbox)
    return {
        "kills": len(evidence.kills),
        "chats_retried": sum(1 for o in evidence.outcomes if len(o.attempts) > 1),
        "messages": len(users),
        "model_calls_beyond_one": calls - len(users),
        "parts": len(evidence.outbox),
        "deliveries_beyond_one": deliveries - len(evidence.outbox),
        "drafts_before_an_earlier_reply": _drafts_before_earlier_replies(evidence),
        "unfinished_drafts": sum(
            1
            for s in evidence.sends
            if not s.edit
            and s.raw.endswith(DRAFT_CURSOR)
            and all(
                r["edit_message_id"] is None or int(r["edit_message_id"]) != s.message_id
                for r in evidence.outbox
            )
        ),
    }


def _drafts_before_earlier_replies(evidence: Evidence) -> int:
    """Drafts that appeared in a chat before an earlier reply's part was delivered there: the
    parts are delivered in order, but a draft is a message of its own, shown where it was
    sent (after a kill, an earlier reply can wait `lease_s` for its sender's claim to lapse)."""
    count = 0
    first: dict[int, float] = {}
    for row in evidence.outbox:
        mine = _deliveries(evidence, row)
        if mine:
            first[row["seq"]] = mine[0].at
    for row in evidence.outbox:
        if row["edit_message_id"] is None:
            continue
        draft = next(
            (
                s
                for s in evidence.sends
                if not s.edit
                and s.chat_id == int(row["channel_id"])
                and s.message_id == int(row["edit_message_id"])
            ),
            None,
        )
        if draft is not None and any(
            first.get(earlier["seq"], 0.0) > draft.at
            for earlier in evidence.outbox
            if earlier["channel_id"] == row["channel_id"] and earlier["seq"] < row["seq"]
        ):
            count += 1
    return count

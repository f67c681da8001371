"""A session's recent history, kept in this process between its turns, so a turn costs no
history read (ARCHITECTURE.md, "Storage").

Safe across replicas because of two facts. Every write that changes a session's history
(a reply stored, a message's status settled, a reset) bumps `sessions.version` in the same
transaction; and a turn learns the version in the transaction that takes the session's turn
(the accept, or the gate's take). While the turn is held nothing else writes the session's
history, so a cached entry at exactly that version is what the database holds. After this
process stores a reply, the entry is extended with what it just wrote, without a re-read,
but only when the reply's own bump moved the version by exactly one: any write in between,
here or on another replica, drops the entry and the next turn reads from the database.

An entry holds every history row of the session's current generation with `seq` at or above
its lowest (or all of them, `complete`), at most `limit` rows: so its newest `limit` rows are
the database's newest `limit` rows, and the same ordering (`exchanges_in_order`) gives the
same history.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from itertools import pairwise

from open_clanker.core.types import Message

MAX_SESSIONS = 512
MAX_CHARS = 4_000_000  # the texts of every cached message together: bounds the memory held


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """What `exchanges_in_order` needs of a stored row, and the message it turns into."""

    seq: int
    id: str
    answers_id: str | None
    message: Message


@dataclass(slots=True)
class Entry:
    version: int
    generation: int
    limit: int
    complete: bool  # the database held fewer than `limit` rows: these are all of them
    rows: list[HistoryRow] = field(default_factory=list)  # by seq, oldest first
    chars: int = 0


def _by_seq(row: HistoryRow) -> int:
    return row.seq


class HistoryCache:
    def __init__(self, max_sessions: int = MAX_SESSIONS, max_chars: int = MAX_CHARS) -> None:
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._max_sessions = max_sessions
        self._max_chars = max_chars
        self._chars = 0

    def get(self, key: str, version: int, limit: int) -> list[HistoryRow] | None:
        """The newest `limit` rows (by seq, newest first), if the entry is at `version` and
        holds at least that many (or all there are)."""
        entry = self._entries.get(key)
        if entry is None or entry.version != version or limit > entry.limit:
            return None
        self._entries.move_to_end(key)
        return entry.rows[::-1][:limit]

    def put(
        self, key: str, version: int, generation: int, limit: int, newest_first: list[HistoryRow]
    ) -> None:
        """What a read of the newest `limit` rows found at `version`."""
        self.drop(key)
        rows = newest_first[::-1]
        entry = Entry(version, generation, limit, len(rows) < limit, rows)
        entry.chars = sum(len(r.message.text) for r in rows)
        self._entries[key] = entry
        self._chars += entry.chars
        self._evict()

    def extend(
        self, key: str, old_version: int, version: int, generation: int, rows: list[HistoryRow]
    ) -> None:
        """This process's write moved the session from `old_version` to `version` and added
        `rows` to its history: extend the entry, or drop it if it was not at `old_version`."""
        entry = self._entries.get(key)
        if entry is None:
            return
        if entry.version != old_version or entry.generation != generation:
            self.drop(key)
            return
        entry.version = version
        # A row older than the entry's lowest (a message queued behind many turns) is
        # trimmed again below: the entry held `limit` newer rows already.
        in_order = not entry.rows or not rows or rows[0].seq > entry.rows[-1].seq
        for row in rows:
            entry.rows.append(row)
            entry.chars += len(row.message.text)
            self._chars += len(row.message.text)
        # The common case appends newer rows: no sort (the sort was ~3 % of the gateway's
        # samples in the sequential benchmark).
        if not in_order or any(a.seq > b.seq for a, b in pairwise(rows)):
            entry.rows.sort(key=_by_seq)
        while len(entry.rows) > entry.limit:
            gone = entry.rows.pop(0)
            entry.chars -= len(gone.message.text)
            self._chars -= len(gone.message.text)
            entry.complete = False
        self._evict()

    def drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._chars -= entry.chars

    def __len__(self) -> int:
        return len(self._entries)

    def _evict(self) -> None:
        while self._entries and (
            len(self._entries) > self._max_sessions or self._chars > self._max_chars
        ):
            _key, entry = self._entries.popitem(last=False)
            self._chars -= entry.chars

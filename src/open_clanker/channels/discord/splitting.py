"""Cut a Markdown reply into messages Discord accepts (pure).

Discord counts the raw content, markup included, against its 2,000-character limit. Cuts fall
on paragraphs, then lines, then words, and only as a last resort inside a word (never inside
a character). A code block cut in two is closed at the end of one part and reopened, with its
language, at the start of the next: every part renders as valid Markdown on its own.
"""

from __future__ import annotations

import bisect
import itertools
import re
from dataclasses import dataclass

DISCORD_LIMIT = 2000
_CLOSE = "```"
_CLOSE_COST = len(_CLOSE) + 1  # "\n```" after the last line of a part
_FENCE = re.compile(r"^\s*```")
_FENCE_AT = re.compile(r"\s*```")  # the same test, at a position inside a line
_MAX_OPENER = 40  # a longer "```lang" line is reopened as a bare fence
_OPENER = re.compile(r"```[\w+#.-]*")  # what a reopened fence may carry: a language

# How good a cut before a piece is.
_CHAR, _WORD, _CODE_LINE, _LINE, _PARAGRAPH = range(5)


@dataclass(slots=True)
class _Piece:
    text: str
    sep: str  # what joins it to the previous piece within a part: "\n", " " or ""
    blank: bool = False  # an empty line outside code (a paragraph break)
    fence: str | None = None  # the block's opening line when the piece is inside a code block
    opens: bool = False  # the piece is its block's opening fence line
    closes: bool = False  # the piece is its block's closing fence line


def split_for_discord(text: str, limit: int = DISCORD_LIMIT) -> list[str]:
    """The reply as messages of at most `limit` characters each, in order."""
    if not text.strip():
        return []
    if len(text) <= limit:
        return [text]
    pieces = _pieces(text, limit)
    return [_join(pieces[a:b]) for a, b in _pack(pieces, limit)]


def _pieces(text: str, limit: int) -> list[_Piece]:
    out: list[_Piece] = []
    fence: str | None = None
    for line in text.split("\n"):
        if "```" in line and _FENCE.match(line):
            if fence is None:
                opener = line.strip()
                # Reopened in every part: only a language name, and short enough to leave room.
                short = len(opener) <= min(_MAX_OPENER, limit // 4)
                fence = opener if short and _OPENER.fullmatch(opener) else _CLOSE
                out.extend(_fence_line(line, limit, fence, opens=True))
            else:
                out.extend(_fence_line(line, limit, fence, opens=False))
                fence = None
            continue
        budget = _budget(limit, fence)
        if len(line) <= budget:
            out.append(_Piece(line, "\n", blank=fence is None and not line.strip(), fence=fence))
        else:
            out.extend(_long_line(line, budget, fence))
    return out


def _budget(limit: int, fence: str | None) -> int:
    """Room for a line: its separator, and closing and reopening its block around it."""
    return limit - 1 - (len(fence) + 1 + _CLOSE_COST if fence else 0)


def _fence_line(line: str, limit: int, fence: str, *, opens: bool) -> list[_Piece]:
    """A block's opening or closing line. An opening line leaves room for its part's closing
    fence, a closing one for its part's reopening; what a very long one holds beyond that
    follows it, inside the block (opening) or after it (closing)."""
    room = limit - 1 - (_CLOSE_COST if opens else len(fence) + 1)
    pieces = [_Piece(line[:room], "\n", fence=fence, opens=opens, closes=not opens)]
    rest = line[room:]
    if rest:
        inside = fence if opens else None
        pieces += _long_line(rest, _budget(limit, inside), inside, first_sep="")
    return pieces


def _long_line(line: str, budget: int, fence: str | None, first_sep: str = "\n") -> list[_Piece]:
    """A line too long for one message: cut after spaces where possible, else anywhere, but
    never where the next piece would begin like a fence (a part's line start would open a
    block)."""
    pieces: list[_Piece] = []
    start = 0
    gap = False  # whitespace was dropped since the last piece
    while start < len(line):
        end = min(start + budget, len(line))
        if end < len(line):
            end = _cut(line, start, end)
        chunk = line[start:end]
        if not chunk.strip():
            # Only whitespace (a run of spaces at a cut): a part of it alone would be a
            # message that shows nothing. Dropped; one space stands for it.
            gap, start = True, end
            continue
        if not pieces:
            sep = first_sep
        elif gap:
            sep = " "
        else:
            sep = " " if line[start - 1] == " " else ""
            if sep:
                pieces[-1].text = pieces[-1].text[:-1]  # the space becomes the separator
        pieces.append(_Piece(chunk, sep, fence=fence))
        gap, start = False, end
    return pieces


def _cut(line: str, start: int, end: int) -> int:
    """Where a chunk of `line[start:end]` ends: after its last space whose next word does not
    begin like a fence, else at `end` unless the rest begins like one there, else at the
    latest point before `end` where it does not (else at `end` after all)."""
    space = line.rfind(" ", start + 1, end)
    while space > start:
        if not _FENCE_AT.match(line, space + 1):
            return space + 1
        space = line.rfind(" ", start + 1, space)
    if not _FENCE_AT.match(line, end):
        return end
    for cut in range(end - 1, start, -1):
        if not line[cut].isspace() and not _FENCE_AT.match(line, cut):
            return cut
    return end


def _pack(pieces: list[_Piece], limit: int) -> list[tuple[int, int]]:
    """Greedy parts: as much as fits, cut at the best boundary in the part's second half.

    `reach[k]` is the length of pieces 0..k-1, each with the separator before it, so pieces
    a..b-1 are `reach[b] - reach[a] - len(sep of a)` long (a part drops its first separator):
    the part's end is found by bisection and its cut by one pass over its own ranks."""
    n = len(pieces)
    reach = [0, *itertools.accumulate(len(p.text) + len(p.sep) for p in pieces)]
    ranks = _ranks(pieces)
    spans: list[tuple[int, int]] = []
    start = 0
    while start < n:
        while start < n and pieces[start].blank:
            start += 1
        if start >= n:
            break
        base = reach[start] + len(pieces[start].sep) - _reopen_cost(pieces[start])
        # Every cut up to `sure` fits even if the block must be closed after it; the few
        # beyond it, up to `end`, fit only where nothing needs closing.
        end = bisect.bisect_right(reach, base + limit) - 1
        sure = bisect.bisect_right(reach, base + limit - _CLOSE_COST) - 1
        fits = [e for e in range(max(sure, start) + 1, end + 1) if not _close_cost(pieces[e - 1])]
        last = fits[-1] if fits else sure
        if last >= n:
            spans.append((start, n))
            break
        if last <= start:
            spans.append((start, start + 1))  # cannot happen: every piece fits a message
            start += 1
            continue
        cut = _best_cut(pieces, reach, ranks, base, start, sure, fits, limit)
        spans.append((start, cut))
        start = cut
    return [(a, _trim_end(pieces, a, b)) for a, b in spans if _trim_end(pieces, a, b) > a]


def _best_cut(
    pieces: list[_Piece],
    reach: list[int],
    ranks: list[int],
    base: int,
    start: int,
    sure: int,
    fits: list[int],
    limit: int,
) -> int:
    """The latest of the best-ranked cuts that leave the part at least half full (the last
    cut that fits counts in any case). Cuts from `sure` down are checked by one slice; only
    the few whose length depends on a closing fence are looked at one by one."""
    half = limit // 2

    def total(e: int) -> int:
        return reach[e] - base + _close_cost(pieces[e - 1])

    last = fits[-1] if fits else sure
    low = max(bisect.bisect_left(reach, base + half), start + 1)  # from here on, all are
    maybe = max(bisect.bisect_left(reach, base + half - _CLOSE_COST), start + 1)
    cuts = [e for e in range(maybe, min(low, sure + 1)) if total(e) >= half]
    ranked = [ranks[e] for e in cuts]
    if low <= sure:
        cuts.extend(range(low, sure + 1))
        ranked.extend(ranks[low : sure + 1])
    tail = [e for e in fits if total(e) >= half or e == last]
    cuts.extend(tail)
    ranked.extend(ranks[e] for e in tail)
    if not cuts or cuts[-1] != last:
        cuts.append(last)
        ranked.append(ranks[last])
    best = max(ranked)
    return cuts[len(ranked) - 1 - ranked[::-1].index(best)]


def _reopen_cost(first: _Piece) -> int:
    return len(first.fence) + 1 if first.fence is not None and not first.opens else 0


def _close_cost(last: _Piece) -> int:
    return _CLOSE_COST if last.fence is not None and not last.closes else 0


def _ranks(pieces: list[_Piece]) -> list[int]:
    """How good a cut before each piece is (index n: the end, the best)."""
    ranks = [_PARAGRAPH] * (len(pieces) + 1)
    for cut in range(1, len(pieces)):
        here, before = pieces[cut], pieces[cut - 1]
        if here.sep == "" or before.opens:
            rank = _CHAR  # mid-word, or a block's opening fence left alone at a part's end
        elif here.sep == " ":
            rank = _WORD
        elif here.blank or before.blank:
            rank = _PARAGRAPH
        elif here.fence is not None and not here.opens:
            rank = _CODE_LINE  # inside a block: it must be closed and reopened
        else:
            rank = _LINE
        ranks[cut] = rank
    return ranks


def _trim_end(pieces: list[_Piece], start: int, end: int) -> int:
    while end > start and pieces[end - 1].blank:
        end -= 1
    return end


def _join(pieces: list[_Piece]) -> str:
    text = pieces[0].text
    for piece in pieces[1:]:
        text += piece.sep + piece.text
    first, last = pieces[0], pieces[-1]
    if first.fence is not None and not first.opens:
        text = f"{first.fence}\n{text}"
    if last.fence is not None and not last.closes:
        text = f"{text}\n{_CLOSE}"
    return text

"""Cut a Markdown reply into messages Discord accepts (pure).

Discord counts the raw content, markup included, against its 2,000-character limit. Cuts fall
on paragraphs, then lines, then words, and only as a last resort inside a word (never inside
a character). A code block cut in two is closed at the end of one part and reopened, with its
language, at the start of the next: every part renders as valid Markdown on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DISCORD_LIMIT = 2000
_CLOSE = "```"
_FENCE = re.compile(r"^\s*```")
_MAX_OPENER = 40  # a longer "```lang" line is reopened as a bare fence

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
        if _FENCE.match(line):
            if fence is None:
                opener = line.strip()
                fence = opener if len(opener) <= _MAX_OPENER else _CLOSE
                out.append(_Piece(line, "\n", fence=fence, opens=True))
            else:
                out.append(_Piece(line, "\n", fence=fence, closes=True))
                fence = None
            continue
        # Room for the separator, and for closing and reopening the block around this piece.
        budget = limit - 1 - (len(fence) + 1 + len(_CLOSE) + 1 if fence else 0)
        if len(line) <= budget:
            out.append(_Piece(line, "\n", blank=fence is None and not line.strip(), fence=fence))
        else:
            out.extend(_long_line(line, budget, fence))
    return out


def _long_line(line: str, budget: int, fence: str | None) -> list[_Piece]:
    """A line too long for one message: cut after spaces where possible, else anywhere."""
    pieces: list[_Piece] = []
    start = 0
    while start < len(line):
        end = min(start + budget, len(line))
        if end < len(line):
            space = line.rfind(" ", start + 1, end)
            if space > start:
                end = space + 1
        chunk = line[start:end]
        if pieces:
            sep = " " if line[start - 1] == " " else ""
            if sep:
                pieces[-1].text = pieces[-1].text[:-1]  # the space becomes the separator
        else:
            sep = "\n"
        pieces.append(_Piece(chunk, sep, fence=fence))
        start = end
    return pieces


def _pack(pieces: list[_Piece], limit: int) -> list[tuple[int, int]]:
    """Greedy parts: as much as fits, cut at the best boundary in the part's second half."""
    spans: list[tuple[int, int]] = []
    start, n = 0, len(pieces)
    while start < n:
        while start < n and pieces[start].blank:
            start += 1
        if start >= n:
            break
        head = _reopen_cost(pieces[start])
        used = 0
        fits: list[tuple[int, int]] = []  # (cut, the part's length if cut there)
        end = start
        while end < n:
            used += len(pieces[end].text) + (len(pieces[end].sep) if end > start else 0)
            if used + head > limit:
                break
            end += 1
            total = used + head + _close_cost(pieces[end - 1])
            if total <= limit:
                fits.append((end, total))
        if end >= n and fits and fits[-1][0] == n:
            spans.append((start, n))
            break
        cut = _best_cut(pieces, fits, limit) if fits else start + 1
        spans.append((start, cut))
        start = cut
    return [(a, _trim_end(pieces, a, b)) for a, b in spans if _trim_end(pieces, a, b) > a]


def _reopen_cost(first: _Piece) -> int:
    return len(first.fence) + 1 if first.fence is not None and not first.opens else 0


def _close_cost(last: _Piece) -> int:
    return len(_CLOSE) + 1 if last.fence is not None and not last.closes else 0


def _best_cut(pieces: list[_Piece], fits: list[tuple[int, int]], limit: int) -> int:
    best, best_rank = fits[-1][0], -1
    for cut, total in fits:
        if total < limit // 2 and cut != fits[-1][0]:
            continue
        rank = _rank(pieces, cut)
        if rank >= best_rank:
            best, best_rank = cut, rank
    return best


def _rank(pieces: list[_Piece], cut: int) -> int:
    if cut >= len(pieces):
        return _PARAGRAPH
    here, before = pieces[cut], pieces[cut - 1]
    if here.sep == "" or before.opens:
        return _CHAR  # mid-word, or a block's opening fence left alone at a part's end
    if here.sep == " ":
        return _WORD
    if here.blank or before.blank:
        return _PARAGRAPH
    if here.fence is not None and not here.opens:
        return _CODE_LINE  # inside a block: it must be closed and reopened
    return _LINE


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

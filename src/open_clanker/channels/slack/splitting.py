"""Cut a reply into Slack messages of at most 4,000 characters of mrkdwn (pure).

Splitting works on the rendered mrkdwn (`to_mrkdwn`), so the limit holds for what is sent,
entities included. Cuts fall on paragraphs, then lines, then words, and only as a last resort
inside a word; never inside a `<url|text>` link or an `&amp;` entity. A code block cut in two
is closed at the end of one part and reopened at the start of the next.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from open_clanker.channels.slack.formatting import FENCE, to_mrkdwn

SLACK_LIMIT = 4000
_TOKEN = re.compile(r"<[^<>\n]*>|&(?:amp|lt|gt);")
_WRAP = len(FENCE) + 1  # "```\n" before a reopened part, "\n```" after a closed one

# How good a cut before a piece is.
_CHAR, _WORD, _CODE_LINE, _LINE, _PARAGRAPH = range(5)


@dataclass(slots=True)
class _Piece:
    text: str
    sep: str  # what joins it to the previous piece within a part: "\n", " " or ""
    code: bool = False  # inside a code block (fences included)
    opens: bool = False
    closes: bool = False
    blank: bool = False  # an empty line outside code: a paragraph break


def split_for_slack(markdown: str, limit: int = SLACK_LIMIT) -> list[str]:
    """The reply as Slack mrkdwn messages of at most `limit` characters each, in order."""
    return split_mrkdwn(to_mrkdwn(markdown), limit)


def split_mrkdwn(text: str, limit: int = SLACK_LIMIT) -> list[str]:
    if not text.strip():
        return []
    if len(text) <= limit:
        return [text]
    pieces = _pieces(text, limit)
    return [_join(pieces[a:b]) for a, b in _pack(pieces, limit)]


def _pieces(text: str, limit: int) -> list[_Piece]:
    out: list[_Piece] = []
    code = False
    for line in text.split("\n"):
        if line == FENCE:
            out.append(_Piece(line, "\n", code=True, opens=not code, closes=code))
            code = not code
            continue
        budget = limit - 1 - (2 * _WRAP if code else 0)
        if len(line) <= budget:
            out.append(_Piece(line, "\n", code=code, blank=not code and not line.strip()))
        else:
            out.extend(_long_line(line, budget, code))
    return out


def _tokens(line: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in _TOKEN.finditer(line)]


def _safe(pos: int, tokens: list[tuple[int, int]]) -> bool:
    """A cut before `pos` leaves every link and entity whole."""
    return not any(a < pos < b for a, b in tokens)


def _long_line(line: str, budget: int, code: bool) -> list[_Piece]:
    """A line too long for one message: cut at spaces outside links and entities, else anywhere
    outside them (a token longer than the budget is cut like a word)."""
    tokens = _tokens(line)
    pieces: list[_Piece] = []
    start, sep = 0, "\n"
    while start < len(line):
        end = min(start + budget, len(line))
        next_sep = ""
        if end < len(line):
            space = next(
                (i for i in range(end, start, -1) if line[i] == " " and _safe(i, tokens)), None
            )
            if space is not None:
                end, next_sep = space, " "  # the space becomes the separator
            else:
                end = next((i for i in range(end, start, -1) if _safe(i, tokens)), end)
        pieces.append(_Piece(line[start:end], sep, code=code))
        start, sep = end + len(next_sep), next_sep
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
        head = _WRAP if _reopens(pieces[start]) else 0
        used = 0
        fits: list[tuple[int, int]] = []  # (cut, the part's length if cut there)
        end = start
        while end < n:
            used += len(pieces[end].text) + (len(pieces[end].sep) if end > start else 0)
            if used + head > limit:
                break
            end += 1
            total = used + head + (_WRAP if _left_open(pieces[end - 1]) else 0)
            if total <= limit:
                fits.append((end, total))
        if end >= n and fits and fits[-1][0] == n:
            spans.append((start, n))
            break
        cut = _best_cut(pieces, fits, limit) if fits else start + 1
        spans.append((start, cut))
        start = cut
    trimmed = [(a, _trim_end(pieces, a, b)) for a, b in spans]
    return [(a, b) for a, b in trimmed if b > a]


def _reopens(first: _Piece) -> bool:
    return first.code and not first.opens


def _left_open(last: _Piece) -> bool:
    return last.code and not last.closes


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
    if here.code and not here.opens:
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
    if _reopens(pieces[0]):
        text = f"{FENCE}\n{text}"
    if _left_open(pieces[-1]):
        text = f"{text}\n{FENCE}"
    return text

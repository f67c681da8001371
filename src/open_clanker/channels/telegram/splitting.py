"""Cut a Markdown reply into parts Telegram accepts (pure, linear in the reply's length).

Each part, rendered to HTML, shows at most `limit` UTF-16 code units (Telegram's 4096 is counted
after entity parsing). Cuts fall on paragraphs, then lines, then words, and only as a last resort
inside a word (never inside a character). A code block cut in two is closed and reopened; inline
markup cut in two is closed and reopened with the same markers.

Every line is parsed once. Inline markup never spans lines, so a part made of whole lines shows
exactly what those lines showed; only a part holding words of a line too long for one message
is written anew, and that part is rendered once more to check it (plain text if it differs).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import re
from dataclasses import dataclass

from open_clanker.channels.telegram.formatting import (
    Atom,
    Span,
    escape_markdown,
    fence_lang,
    is_plain,
    line_atoms,
    utf16_len,
    visible_line,
)

TELEGRAM_LIMIT = 4096

# How good a cut before a piece is.
_CHAR, _WORD, _LINE, _PARAGRAPH = 0, 1, 2, 3

_FENCE_AT = re.compile(r" {0,3}```")  # fence_lang's test, at a position inside a line
_NON_SPACE = re.compile(r"\S+")
# A long line's words are grouped into pieces of about this share of a message: cuts inside
# it land between words, at most this far from the fullest possible part.
_SEGMENT_SHARE = 32


class _LongLine:
    """A text line too long for one message: its visible runs, and Markdown for any slice.

    `starts[k]` is where atom k begins in `shown`. `extent` is where each span begins and
    ends in `shown`, so a slice knows whether it cuts through markup."""

    __slots__ = ("atoms", "escaped", "extent", "shown", "starts")

    def __init__(self, atoms: list[Atom]) -> None:
        self.atoms = atoms
        self.starts = [0, *itertools.accumulate(len(a.text) for a in atoms)]
        self.shown = "".join(a.text for a in atoms)
        self.escaped = _escaped(atoms)
        self.extent: dict[Span, tuple[int, int]] = {}
        for atom, begin, end in zip(atoms, self.starts, self.starts[1:], strict=False):
            for span in atom.stack:
                self.extent[span] = (self.extent.get(span, (begin, end))[0], end)

    def markdown(self, a: int, b: int, *, markup: bool) -> str:
        """Markdown showing `shown[a:b]`, with its markup when `markup`, else as plain text."""
        if not markup:
            return escape_markdown(self.shown[a:b])
        first = bisect.bisect_right(self.starts, a) - 1
        last = bisect.bisect_left(self.starts, b)
        atoms = self.atoms[first:last]
        texts = self.escaped[first:last]
        # The slice's ends may fall inside an atom: those two are cut and escaped anew.
        for k in {0, len(atoms) - 1}:
            begin = self.starts[first + k]
            if begin < a or begin + len(atoms[k].text) > b:
                atom = atoms[k]
                atoms[k] = Atom(atom.text[max(a - begin, 0) : b - begin], atom.stack)
                texts[k] = _escaped([atoms[k]])[0]
        return _markdown(atoms, texts)

    def cuts_markup(self, a: int, b: int) -> bool:
        """Whether a span runs past either end of the slice (it is closed and reopened)."""
        first = self.atoms[bisect.bisect_right(self.starts, a) - 1]
        last = self.atoms[bisect.bisect_left(self.starts, b) - 1]
        return any(self.extent[s][0] < a for s in first.stack) or any(
            self.extent[s][1] > b for s in last.stack
        )


@dataclass(slots=True)
class _Piece:
    md: str  # Markdown of this piece ("" for a slice of a long line: written at the join)
    cost: int  # visible UTF-16 units
    sep: str  # what joins it to the previous piece within a part: "\n", spaces or ""
    blank: bool = False  # an empty text line (a paragraph break)
    fence: str | None = None  # the opening fence line when the piece is inside a code block
    opens: bool = False  # the piece carries its block's opening fence
    closes: bool = False  # the piece carries its block's closing fence
    line: _LongLine | None = None  # the long line this piece is `shown[a:b]` of
    a: int = 0
    b: int = 0


def split_for_telegram(text: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """The reply as parts of at most `limit` visible UTF-16 units each, in order."""
    if not text.strip():
        return []
    pieces, total = _pieces(text, limit)
    if total <= limit:
        return [text]
    return [_join(pieces, a, b) for a, b in _pack(pieces, limit)]


def _pieces(text: str, limit: int) -> tuple[list[_Piece], int]:
    """The pieces, and what the whole text shows (UTF-16 units, as one message would)."""
    # Leave room for the separators a piece may be joined with.
    budget = max(limit - 2, 16)
    out: list[_Piece] = []
    shown_total = rows = 0
    lines = iter(text.split("\n"))
    line: str | None = next(lines)
    while line is not None:
        lang = fence_lang(line) if "```" in line else None
        if lang is None:
            # The common case, a plain line, costs a few string methods and one piece.
            atoms = None if is_plain(line) else line_atoms(line)
            shown = line if atoms is None else "".join(a.text for a in atoms)
            cost = len(shown) if shown.isascii() else utf16_len(shown)
            shown_total += cost
            rows += 1
            if cost <= budget:
                out.append(_Piece(line, cost, "\n", not line or line.isspace()))
            else:
                out.extend(_slices(_LongLine(atoms or [Atom(line, ())]), budget))
            line = next(lines, None)
            continue
        opener = line.strip()
        body: list[str] = []
        line = next(lines, None)
        while line is not None and fence_lang(line) is None:
            body.append(line)
            line = next(lines, None)
        closed = line is not None
        if closed:
            line = next(lines, None)
        code = _code_pieces(opener, body, closed, budget)
        shown_total += sum(p.cost for p in code) + max(len(body) - 1, 0)
        rows += 1
        out.extend(code)
    return out, shown_total + rows - 1


def _code_pieces(opener: str, body: list[str], closed: bool, budget: int) -> list[_Piece]:
    pieces: list[_Piece] = []
    for line in body or [""]:
        cost = utf16_len(line)
        if cost <= budget:
            pieces.append(_Piece(line, cost, "\n", fence=opener))
            continue
        for n, chunk in enumerate(_chunks(line, budget - 4)):
            sep = "\n" if n == 0 else ""
            pieces.append(_Piece(chunk, utf16_len(chunk), sep, fence=opener))
    pieces[0].md = f"{opener}\n{pieces[0].md}"
    pieces[0].opens = True
    if closed:
        pieces[-1].md = f"{pieces[-1].md}\n```"
        pieces[-1].closes = True
    return pieces


def _prefix_within(text: str, units: int) -> str:
    """The longest start of `text` that is at most `units` UTF-16 units (whole characters)."""
    head = text[:units]  # every character is at least one unit
    over = utf16_len(head) - units
    while over > 0:
        # Each character dropped frees one or two units.
        head = head[: len(head) - (over + 1) // 2]
        over = utf16_len(head) - units
    return head


def _chunks(line: str, budget: int) -> list[str]:
    """A long code line in chunks, cut after spaces where possible (nothing is dropped)."""
    chunks: list[str] = []
    start = 0
    while start < len(line):
        end = start + max(len(_prefix_within(line[start : start + budget], budget)), 1)
        if end < len(line):
            space = line.rfind(" ", start + 1, end)
            if space > start:
                end = space + 1
        # A chunk starts a line of its part: it must not begin like a fence. Move the cut
        # back, or else forward past the backticks (at most 4 characters: the reserve).
        if end < len(line) and _FENCE_AT.match(line, end):
            back = end
            while back > start + 1 and _FENCE_AT.match(line, back):
                back -= 1
            end = back if not _FENCE_AT.match(line, back) else end
            while end < len(line) and _FENCE_AT.match(line, end):
                end += 1
        chunks.append(line[start:end])
        start = end
    return chunks


def _slices(line: _LongLine, budget: int) -> list[_Piece]:
    """A long line as pieces of whole words, a few per piece, each joined to the one before by
    the whitespace between them; a word longer than a message is cut inside, never inside a
    character. Whitespace before the first word and after the last stays with them when it
    fits, else it is left out, as at a cut (a part must show something)."""
    pieces: list[_Piece] = []
    shown = line.shown
    gap_from = -1  # where the whitespace before the next piece starts (-1: the line's start)
    for found in _segments(max(budget // _SEGMENT_SHARE, 1)).finditer(shown):
        a = found.start()
        cost = utf16_len(found.group())
        chunks = [found.group()] if cost <= budget else _text_chunks(found.group(), budget)
        for chunk in chunks:
            sep = "\n" if gap_from < 0 else shown[gap_from:a]
            end = a + len(chunk)
            size = cost if len(chunks) == 1 else utf16_len(chunk)
            pieces.append(_Piece("", size, sep, line=line, a=a, b=end))
            a = gap_from = end
    if pieces:
        first, last = pieces[0], pieces[-1]
        lead, tail = utf16_len(shown[: first.a]), utf16_len(shown[last.b :])
        if first.cost + lead <= budget:
            first.a, first.cost = 0, first.cost + lead
        if last.cost + tail <= budget:
            last.b, last.cost = len(shown), last.cost + tail
    return pieces


@functools.cache
def _segments(chars: int) -> re.Pattern[str]:
    """Runs of whole words of at most about `chars` characters (longest first), or one word."""
    return re.compile(rf"\S(?:.{{0,{max(chars - 2, 0)}}}\S)?(?!\S)|\S+")


def _text_chunks(text: str, budget: int) -> list[str]:
    chunks = []
    while text:
        head = _prefix_within(text, budget) or text[0]
        chunks.append(head)
        text = text[len(head) :]
    return chunks


def _escaped(atoms: list[Atom]) -> list[str]:
    """Each atom's text as Markdown that shows it literally (code shows as it is)."""
    texts = [a.text for a in atoms]
    joined = "\0".join(texts)
    if joined.count("\0") == len(texts) - 1:  # one pass over the line, not one per atom
        escaped = escape_markdown(joined).split("\0")
    else:  # the text holds the separator itself
        escaped = [escape_markdown(t) for t in texts]
    return [
        t if a.stack and a.stack[-1].tag == "code" else e
        for a, t, e in zip(atoms, texts, escaped, strict=True)
    ]


def _markdown(atoms: list[Atom], texts: list[str]) -> str:
    """Atoms written back as Markdown that parses to the same atoms: `texts` are the atoms'
    escaped texts, and spans are opened and closed around them."""
    out: list[str] = []
    current: tuple[Span, ...] = ()
    for atom, text in zip(atoms, texts, strict=True):
        stack = atom.stack
        if stack is not current and stack != current:
            common = 0
            while (
                common < len(stack) and common < len(current) and stack[common] is current[common]
            ):
                common += 1
            out.extend(s.close for s in reversed(current[common:]))
            out.extend(s.open for s in stack[common:])
            current = stack
        out.append(text)
    out.extend(s.close for s in reversed(current))
    return "".join(out)


def _pack(pieces: list[_Piece], limit: int) -> list[tuple[int, int]]:
    """Greedy parts: as much as fits, cut at the best boundary in the part's second half.

    `reach[k]` is what pieces 0..k-1 show, each with the separator before it, so pieces
    a..b-1 show `reach[b] - reach[a] - gap(a)` units (a part drops its first separator): the
    part's end is found by bisection and its cut by one pass over its own ranks."""
    n = len(pieces)
    gaps = [1 if p.sep == "\n" else utf16_len(p.sep) for p in pieces]
    reach = [0, *itertools.accumulate(p.cost + g for p, g in zip(pieces, gaps, strict=True))]
    ranks = _ranks(pieces)
    spans: list[tuple[int, int]] = []
    start = 0
    while start < n:
        while start < n and pieces[start].blank:
            start += 1
        if start >= n:
            break
        base = reach[start] + gaps[start]
        end = max(bisect.bisect_right(reach, base + limit) - 1, start + 1)
        if end >= n:
            spans.append((start, n))
            break
        # Cuts that leave the part at least half full, and the cut at the end in any case.
        lo = min(max(bisect.bisect_left(reach, base + limit // 2), start + 1), end)
        window = ranks[lo : end + 1]
        cut = end - window[::-1].index(max(window))  # the latest of the best
        spans.append((start, cut))
        start = cut
    return [(a, _trim_end(pieces, a, b)) for a, b in spans if _trim_end(pieces, a, b) > a]


def _ranks(pieces: list[_Piece]) -> list[int]:
    """How good a cut before each piece is (index n: the end, the best)."""
    ranks = [_CHAR] * (len(pieces) + 1)
    ranks[-1] = _PARAGRAPH
    for cut in range(1, len(pieces)):
        here, before = pieces[cut], pieces[cut - 1]
        if here.blank or before.blank:
            ranks[cut] = _PARAGRAPH
        elif here.sep == "\n":
            ranks[cut] = _LINE
        elif here.sep:
            ranks[cut] = _WORD
    return ranks


def _trim_end(pieces: list[_Piece], start: int, end: int) -> int:
    while end > start and pieces[end - 1].blank:
        end -= 1
    return end


def _join(pieces: list[_Piece], start: int, end: int) -> str:
    out: list[str] = []
    k = start
    while k < end:
        if k > start:
            out.append(pieces[k].sep)
        line = pieces[k].line
        if line is None:
            out.append(pieces[k].md)
            k += 1
            continue
        m = k + 1
        while m < end and pieces[m].line is line:
            m += 1
        out.append(_long_line_markdown(line, pieces[k].a, pieces[m - 1].b))
        k = m
    text = "".join(out)
    first, last = pieces[start], pieces[end - 1]
    if first.fence is not None and not first.opens:
        text = f"{first.fence}\n{text}"
    if last.fence is not None and not last.closes:
        text = f"{text}\n```"
    return text


def _long_line_markdown(line: _LongLine, a: int, b: int) -> str:
    """The part's slice of a long line. Whole spans read back as they were written; a span
    cut by the slice is closed and reopened, and its markers written next to others can pair
    up differently (`***x***`): that slice is checked, and sent as plain text if it changed."""
    md = line.markdown(a, b, markup=True)
    if line.cuts_markup(a, b) and visible_line(md) != line.shown[a:b]:
        return line.markdown(a, b, markup=False)
    return md

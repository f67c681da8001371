"""Cut a Markdown reply into parts Telegram accepts (pure).

Each part, rendered to HTML, shows at most `limit` UTF-16 code units (Telegram's 4096 is counted
after entity parsing). Cuts fall on paragraphs, then lines, then words, and only as a last resort
inside a word (never inside a character). A code block cut in two is closed and reopened; inline
markup cut in two is closed and reopened with the same markers.
"""

from __future__ import annotations

from dataclasses import dataclass

from open_clanker.channels.telegram.formatting import (
    Atom,
    Span,
    escape_markdown,
    fence_lang,
    line_atoms,
    render,
    utf16_len,
)

TELEGRAM_LIMIT = 4096

# How good a cut before a piece is.
_CHAR, _WORD, _LINE, _PARAGRAPH = 0, 1, 2, 3


@dataclass(slots=True)
class _Piece:
    md: str  # Markdown of this piece
    cost: int  # visible UTF-16 units
    sep: str  # what joins it to the previous piece within a part: "\n", " " or ""
    blank: bool = False  # an empty text line (a paragraph break)
    fence: str | None = None  # the opening fence line when the piece is inside a code block
    opens: bool = False  # the piece carries its block's opening fence
    closes: bool = False  # the piece carries its block's closing fence


def split_for_telegram(text: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """The reply as parts of at most `limit` visible UTF-16 units each, in order."""
    if not text.strip():
        return []
    if utf16_len(render(text).visible) <= limit:
        return [text]
    pieces = _pieces(text, limit)
    parts = [_join(pieces[a:b]) for a, b in _pack(pieces, limit)]
    if any(utf16_len(render(p).visible) > limit for p in parts):
        # Cannot happen by construction; if it ever does, plain text still gets through.
        return _plain_parts(render(text).visible, limit)
    return parts


def _plain_parts(visible: str, limit: int) -> list[str]:
    chunks = _chunks(visible, limit - 4)
    return [escape_markdown(c) for c in chunks if c.strip()]


def _pieces(text: str, limit: int) -> list[_Piece]:
    # Leave room for the separators a piece may be joined with.
    budget = max(limit - 2, 16)
    lines = text.split("\n")
    out: list[_Piece] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        lang = fence_lang(line)
        if lang is None:
            atoms = line_atoms(line)
            cost = utf16_len("".join(a.text for a in atoms))
            if cost <= budget:
                out.append(_Piece(line, cost, "\n", blank=not line.strip()))
            else:
                out.extend(_word_pieces(atoms, budget))
            i += 1
            continue
        opener = line.strip()
        body: list[str] = []
        i += 1
        while i < len(lines) and fence_lang(lines[i]) is None:
            body.append(lines[i])
            i += 1
        closed = i < len(lines)
        if closed:
            i += 1
        out.extend(_code_pieces(opener, body, closed, budget))
    return out


def _code_pieces(opener: str, body: list[str], closed: bool, budget: int) -> list[_Piece]:
    pieces: list[_Piece] = []
    for line in body or [""]:
        if utf16_len(line) <= budget:
            pieces.append(_Piece(line, utf16_len(line), "\n", fence=opener))
            continue
        for n, chunk in enumerate(_chunks(line, budget - 4)):
            pieces.append(_Piece(chunk, utf16_len(chunk), "\n" if n == 0 else "", fence=opener))
    pieces[0].md = f"{opener}\n{pieces[0].md}"
    pieces[0].opens = True
    if closed:
        pieces[-1].md = f"{pieces[-1].md}\n```"
        pieces[-1].closes = True
    return pieces


def _chunks(line: str, budget: int) -> list[str]:
    """A long code line in chunks, cut after spaces where possible (nothing is dropped)."""
    chunks: list[str] = []
    start = 0
    while start < len(line):
        end = start
        used = 0
        last_space = -1
        while end < len(line) and used + utf16_len(line[end]) <= budget:
            used += utf16_len(line[end])
            if line[end] == " ":
                last_space = end
            end += 1
        if end < len(line) and last_space > start:
            end = last_space + 1
        # A chunk starts a line of its part: it must not begin like a fence. Move the cut
        # back, or else forward past the backticks (at most 4 characters: the reserve).
        if end < len(line) and fence_lang(line[end:]) is not None:
            back = end
            while back > start + 1 and fence_lang(line[back:]) is not None:
                back -= 1
            end = back if fence_lang(line[back:]) is None else end
            while end < len(line) and fence_lang(line[end:]) is not None:
                end += 1
        chunks.append(line[start:end])
        start = end
    return chunks


def _word_pieces(atoms: list[Atom], budget: int) -> list[_Piece]:
    """A line too long for one message, as words, each written out with its markup whole.

    A word longer than a message is cut into chunks shown as plain text: glued-together
    chunks could otherwise pair up markers differently.
    """
    pieces: list[_Piece] = []
    word: list[Atom] = []
    sep = "\n"

    def flush() -> None:
        nonlocal sep
        if not word:
            return
        chunks = _atom_chunks(word, budget)
        for n, chunk in enumerate(chunks):
            md = _markdown(chunk, markup=len(chunks) == 1)
            if render(md).visible != "".join(a.text for a in chunk):
                md = _markdown(chunk, markup=False)  # markers that would pair up differently
            pieces.append(_Piece(md, _cost(chunk), sep if n == 0 else ""))
        word.clear()
        sep = " "

    for atom in atoms:
        if atom.text.isspace():
            flush()
        else:
            word.append(atom)
    flush()
    return pieces


def _atom_chunks(atoms: list[Atom], budget: int) -> list[list[Atom]]:
    chunks: list[list[Atom]] = [[]]
    used = 0
    for atom in atoms:
        cost = utf16_len(atom.text)
        if used + cost > budget and chunks[-1]:
            chunks.append([])
            used = 0
        chunks[-1].append(atom)
        used += cost
    return chunks


def _cost(atoms: list[Atom]) -> int:
    return utf16_len("".join(a.text for a in atoms))


def _markdown(atoms: list[Atom], *, markup: bool) -> str:
    """Atoms written back as Markdown that parses to the same atoms: every literal character
    that could be markup is escaped, and spans are opened and closed around the run."""
    out: list[str] = []
    current: tuple[Span, ...] = ()
    for atom in atoms:
        stack = atom.stack if markup else ()
        if stack != current:
            common = 0
            while (
                common < len(stack) and common < len(current) and stack[common] is current[common]
            ):
                common += 1
            out.extend(s.close for s in reversed(current[common:]))
            out.extend(s.open for s in stack[common:])
            current = stack
        in_code = bool(current) and current[-1].tag == "code"
        out.append(atom.text if in_code else escape_markdown(atom.text))
    out.extend(s.close for s in reversed(current))
    return "".join(out)


def _pack(pieces: list[_Piece], limit: int) -> list[tuple[int, int]]:
    """Greedy parts: as much as fits, cut at the best boundary in the part's second half."""
    spans: list[tuple[int, int]] = []
    start = 0
    n = len(pieces)
    while start < n:
        while start < n and pieces[start].blank:
            start += 1
        if start >= n:
            break
        used = 0
        end = start
        filled: list[int] = []  # visible units used before the cut at index end
        while end < n:
            add = pieces[end].cost + (1 if end > start else 0)
            if used + add > limit:
                break
            used += add
            end += 1
            filled.append(used)
        if end >= n:
            spans.append((start, n))
            break
        end = max(end, start + 1)
        cut = _best_cut(pieces, start, end, filled, limit)
        spans.append((start, cut))
        start = cut
    return [(a, _trim_end(pieces, a, b)) for a, b in spans if _trim_end(pieces, a, b) > a]


def _best_cut(pieces: list[_Piece], start: int, end: int, filled: list[int], limit: int) -> int:
    best, best_rank = end, -1
    for cut in range(start + 1, end + 1):
        if filled[cut - start - 1] < limit // 2 and cut != end:
            continue
        rank = _rank(pieces, cut)
        if rank >= best_rank:
            best, best_rank = cut, rank
    return best


def _rank(pieces: list[_Piece], cut: int) -> int:
    if cut >= len(pieces):
        return _PARAGRAPH
    here, before = pieces[cut], pieces[cut - 1]
    if here.blank or before.blank:
        return _PARAGRAPH
    if here.sep == "\n":
        return _LINE
    return _WORD if here.sep == " " else _CHAR


def _trim_end(pieces: list[_Piece], start: int, end: int) -> int:
    while end > start and pieces[end - 1].blank:
        end -= 1
    return end


def _join(pieces: list[_Piece]) -> str:
    text = pieces[0].md
    for piece in pieces[1:]:
        text += piece.sep + piece.md
    first, last = pieces[0], pieces[-1]
    if first.fence is not None and not first.opens:
        text = f"{first.fence}\n{text}"
    if last.fence is not None and not last.closes:
        text = f"{text}\n```"
    return text

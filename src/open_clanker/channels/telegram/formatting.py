"""Model Markdown -> Telegram HTML (pure). Everything the model wrote is escaped; only our tags pass.

The dialect is chat Markdown, read line by line: fenced code blocks, `# headings` (bold),
`- bullets`, and inline `**bold**`, `__bold__`, `*italic*`, `_italic_`, `~~strike~~`,
`` `code` ``, `[text](https://…)` and backslash escapes. Inline markup never spans lines, which
keeps every line independent and lets the splitter cut between lines without breaking a tag.
Anything that does not pair up is shown literally.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

_ESCAPABLE = frozenset("\\`*_~[]()#+-.!>|{}")
_ESCAPE = str.maketrans({c: "\\" + c for c in _ESCAPABLE})
_FENCE = re.compile(r"^ {0,3}```\s*([A-Za-z0-9_+#.-]*)")
_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(?=\S)")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(?=\S)")
_LINK = re.compile(r"\[([^\[\]\n]+)\]\(((?:https?://|tg://|mailto:)[^\s()<>\"]+)\)")
# Where inline markup may start; everything between two of these is plain text.
_SPECIAL = re.compile(r"[\\`\[*_~]")
_SPECIAL_BUT_MARKERS = re.compile(r"[\\`\[]")  # once a line's closer searches are spent
_MAX_DEPTH = 6
_MARKERS = (("**", "b"), ("__", "b"), ("~~", "s"), ("*", "i"), ("_", "i"))
# The markers that can open at a character, in the order they are tried.
_MARKERS_AT = {c: tuple(m for m in _MARKERS if m[0][0] == c) for c in "*_~"}
# What a closer search must look at: escapes, code spans, and the marker (for a single marker
# its double first, which belongs to a nested span). Searched unbounded, then held to `hi`,
# as the character-by-character scan this replaces read the line.
_ESC_CLASS = "".join("\\" + c for c in sorted(_ESCAPABLE))
_CANDIDATES = {
    marker: re.compile(
        "|".join(
            [rf"\\[{_ESC_CLASS}]", "`"]
            + ([re.escape(marker * 2)] if len(marker) == 1 else [])
            + [re.escape(marker)]
        )
    )
    for marker, _tag in _MARKERS
}
# Places closer searches may visit: one per two characters of a line, beyond a fixed allowance. A line
# of unpaired markers ("*a *a *a …") would otherwise cost its length squared; past the
# allowance, the line's remaining emphasis markers show literally. Ordinary text uses a
# small fraction: a search visits only escapes, backticks and its own marker.
_SCAN_CHARS_PER_VISIT = 2
_SCAN_BASE = 1024


@dataclass(frozen=True, eq=False)
class Span:
    """One inline construct; `open`/`close` are the Markdown markers that recreate it."""

    tag: str  # b, i, s, code, a
    open: str
    close: str
    href: str = ""


@dataclass(frozen=True, slots=True)
class Atom:
    """A run of visible text of one line, and the spans that enclose all of it."""

    text: str
    stack: tuple[Span, ...]


@dataclass(frozen=True, slots=True)
class Rendered:
    html: str
    visible: str


def utf16_len(text: str) -> int:
    """Telegram counts message length in UTF-16 code units."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def escape_markdown(text: str) -> str:
    """Text that shows literally, whatever markup characters it holds."""
    return text.translate(_ESCAPE)


def fence_lang(line: str) -> str | None:
    """The language of a fence line (`""` when none), or None when the line is no fence."""
    if "```" not in line:
        return None
    match = _FENCE.match(line)
    return None if match is None else match.group(1)


def is_plain(line: str) -> bool:
    """A text line shown exactly as written: no inline markup, heading or bullet."""
    if _SPECIAL.search(line) is not None:
        return False
    head = line[:1]
    return not ((head in "#-+" or head.isspace()) and (_HEADING.match(line) or _BULLET.match(line)))


def visible_line(line: str) -> str:
    """What Telegram shows for one text line (not inside a code block)."""
    if is_plain(line):
        return line
    return "".join(a.text for a in line_atoms(line))


class _Line:
    """One line being parsed: its text, the runs so far, what closer searches may still read.

    Text of the same spans is gathered in `pending` and joined once, so a line of many small
    pieces costs its length, not its length squared."""

    __slots__ = ("out", "pending", "pending_stack", "scan_left", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.out: list[Atom] = []
        self.pending: list[str] = []
        self.pending_stack: tuple[Span, ...] = ()
        self.scan_left = _SCAN_BASE + len(text) // _SCAN_CHARS_PER_VISIT

    def emit(self, text: str, stack: tuple[Span, ...]) -> None:
        if self.pending and stack != self.pending_stack:
            self.flush()
        self.pending.append(text)
        self.pending_stack = stack

    def flush(self) -> list[Atom]:
        if self.pending:
            self.out.append(Atom("".join(self.pending), self.pending_stack))
            self.pending = []
        return self.out


def line_atoms(line: str) -> list[Atom]:
    """The visible runs of one text line (not inside a code block)."""
    state = _Line(line)
    heading = _HEADING.match(line)
    if heading:
        span = Span("b", "**", "**")
        _inline(state, heading.end(), len(line.rstrip()), (span,), 1)
        return state.flush()
    bullet = _BULLET.match(line)
    start = 0
    if bullet:
        indent = bullet.group(1)
        if indent:
            state.emit(indent, ())
        state.emit("• ", ())
        start = bullet.end()
    _inline(state, start, len(line), (), 0)
    return state.flush()


def _inline(state: _Line, lo: int, hi: int, stack: tuple[Span, ...], depth: int) -> None:
    line = state.text
    i = lo
    while i < hi:
        special = (_SPECIAL if state.scan_left > 0 else _SPECIAL_BUT_MARKERS).search(line, i, hi)
        k = hi if special is None else special.start()
        if k > i:
            state.emit(line[i:k], stack)
            i = k
            if i >= hi:
                break
        c = line[i]
        if c == "\\" and i + 1 < hi and line[i + 1] in _ESCAPABLE:
            state.emit(line[i + 1], stack)
            i += 2
            continue
        if depth < _MAX_DEPTH:
            end = _span_at(state, i, hi, stack, depth)
            if end is not None:
                i = end
                continue
        state.emit(c, stack)
        i += 1


def _span_at(state: _Line, i: int, hi: int, stack: tuple[Span, ...], depth: int) -> int | None:
    """Parse a construct opening at `i`; returns where it ends, or None if there is none."""
    line = state.text
    c = line[i]
    if c == "`":
        tick = line.find("`", i + 1, hi)
        if tick <= i + 1:
            return None
        state.emit(line[i + 1 : tick], (*stack, Span("code", "`", "`")))
        return tick + 1
    if c == "[":
        match = _LINK.match(line, i, hi)
        if match is None:
            return None
        url = match.group(2)
        span = Span("a", "[", f"]({url})", url)
        _inline(state, match.start(1), match.end(1), (*stack, span), depth + 1)
        return match.end()
    for marker, tag in _MARKERS_AT.get(c, ()):
        if line.startswith(marker, i):
            j = _closer(state, marker, i, hi)
            if j is None:
                return None if len(marker) == 1 else _span_at_single(state, i, hi, stack, depth)
            span = Span(tag, marker, marker)
            _inline(state, i + len(marker), j, (*stack, span), depth + 1)
            return j + len(marker)
    return None


def _span_at_single(
    state: _Line, i: int, hi: int, stack: tuple[Span, ...], depth: int
) -> int | None:
    # "**x*" or "__x_": no double closer, so try the single marker it starts with.
    marker = state.text[i]
    if marker not in "*_":
        return None
    j = _closer(state, marker, i, hi)
    if j is None:
        return None
    span = Span("i", marker, marker)
    _inline(state, i + 1, j, (*stack, span), depth + 1)
    return j + 1


def _closer(state: _Line, marker: str, i: int, hi: int) -> int | None:
    """Where the marker opened at `i` closes on this line, or None."""
    line = state.text
    n = len(marker)
    first = i + n
    if first >= hi or line[first].isspace():
        return None
    if marker in ("_", "__") and i > 0 and line[i - 1].isalnum():
        return None  # snake_case words are not emphasis
    if n == 1 and line[first] == marker:
        return None
    if state.scan_left <= 0:
        return None
    found, visits = _find_closer(line, marker, first, hi, state.scan_left)
    state.scan_left -= visits
    return found


def _find_closer(
    line: str, marker: str, first: int, hi: int, allowed: int
) -> tuple[int | None, int]:
    """The closer (or None), and how many places the search visited (at most `allowed`)."""
    n = len(marker)
    search = _CANDIDATES[marker].search
    j = first
    visits = 0
    while True:
        match = search(line, j)
        visits += 1
        if match is None or match.start() >= hi or visits > allowed:
            return None, visits
        j = match.start()
        found = match.group()
        if found[0] == "\\":
            j += 2 if j + 1 < hi else 1  # an escaped character is never a marker
            continue
        if found == "`":
            close = line.find("`", j + 1, hi)
            j = close + 1 if close > j + 1 else j + 1
            continue
        if len(found) > n:
            j += 2  # a double marker inside a single one belongs to a nested span
            continue
        if j > first and j + n <= hi:
            after = line[j + n] if j + n < hi else ""
            ok = not line[j - 1].isspace()
            if marker in ("_", "__") and after.isalnum():
                ok = False
            if ok:
                return j, visits
        j += 1


def _open_tag(span: Span) -> str:
    if span.tag == "a":
        return f'<a href="{html.escape(span.href, quote=True)}">'
    return f"<{span.tag}>"


def atoms_html(atoms: list[Atom]) -> str:
    parts: list[str] = []
    current: tuple[Span, ...] = ()
    for atom in atoms:
        stack = atom.stack
        if stack != current:
            common = 0
            while (
                common < len(stack) and common < len(current) and stack[common] is current[common]
            ):
                common += 1
            parts.extend(f"</{s.tag}>" for s in reversed(current[common:]))
            parts.extend(_open_tag(s) for s in stack[common:])
            current = stack
        parts.append(html.escape(atom.text, quote=False))
    parts.extend(f"</{s.tag}>" for s in reversed(current))
    return "".join(parts)


def render(markdown: str) -> Rendered:
    """Telegram HTML for the Markdown, and the text Telegram will show (for length checks)."""
    html_rows: list[str] = []
    visible_rows: list[str] = []
    lines = markdown.split("\n")
    i = 0
    while i < len(lines):
        lang = fence_lang(lines[i])
        if lang is None:
            line = lines[i]
            if is_plain(line):
                html_rows.append(html.escape(line, quote=False))
                visible_rows.append(line)
            else:
                atoms = line_atoms(line)
                html_rows.append(atoms_html(atoms))
                visible_rows.append("".join(a.text for a in atoms))
            i += 1
            continue
        body: list[str] = []
        i += 1
        while i < len(lines) and fence_lang(lines[i]) is None:
            body.append(lines[i])
            i += 1
        if i < len(lines) and lines[i].strip().startswith("```"):
            i += 1  # the closing fence
        code = "\n".join(body)
        visible_rows.append(code)
        if not code:
            html_rows.append("")
        elif lang:
            cls = html.escape(lang, quote=True)
            html_rows.append(
                f'<pre><code class="language-{cls}">{html.escape(code, quote=False)}</code></pre>'
            )
        else:
            html_rows.append(f"<pre>{html.escape(code, quote=False)}</pre>")
    return Rendered("\n".join(html_rows), "\n".join(visible_rows))


def to_html(markdown: str) -> str:
    return render(markdown).html

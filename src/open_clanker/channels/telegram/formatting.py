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
_FENCE = re.compile(r"^ {0,3}```\s*([A-Za-z0-9_+#.-]*)")
_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(?=\S)")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(?=\S)")
_LINK = re.compile(r"\[([^\[\]\n]+)\]\(((?:https?://|tg://|mailto:)[^\s()<>\"]+)\)")
_MAX_DEPTH = 6


@dataclass(frozen=True, eq=False)
class Span:
    """One inline construct; `open`/`close` are the Markdown markers that recreate it."""

    tag: str  # b, i, s, code, a
    open: str
    close: str
    href: str = ""


@dataclass(frozen=True, slots=True)
class Atom:
    """One visible unit of a line: what it shows, where it came from, which spans enclose it."""

    text: str
    start: int
    end: int
    stack: tuple[Span, ...]


@dataclass(frozen=True, slots=True)
class Rendered:
    html: str
    visible: str


def utf16_len(text: str) -> int:
    """Telegram counts message length in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def escape_markdown(text: str) -> str:
    """Text that shows literally, whatever markup characters it holds."""
    return "".join(f"\\{c}" if c in _ESCAPABLE else c for c in text)


def fence_lang(line: str) -> str | None:
    """The language of a fence line (`""` when none), or None when the line is no fence."""
    match = _FENCE.match(line)
    return None if match is None else match.group(1)


def line_atoms(line: str) -> list[Atom]:
    """The visible atoms of one text line (not inside a code block)."""
    out: list[Atom] = []
    heading = _HEADING.match(line)
    if heading:
        span = Span("b", "**", "**")
        _inline(line, heading.end(), len(line.rstrip()), (span,), out, 1)
        return out
    bullet = _BULLET.match(line)
    start = 0
    if bullet:
        indent = bullet.group(1)
        out.extend(Atom(c, i, i + 1, ()) for i, c in enumerate(indent))
        out.append(Atom("• ", len(indent), bullet.end(), ()))
        start = bullet.end()
    _inline(line, start, len(line), (), out, 0)
    return out


def _inline(
    line: str, lo: int, hi: int, stack: tuple[Span, ...], out: list[Atom], depth: int
) -> None:
    i = lo
    while i < hi:
        c = line[i]
        if c == "\\" and i + 1 < hi and line[i + 1] in _ESCAPABLE:
            out.append(Atom(line[i + 1], i, i + 2, stack))
            i += 2
            continue
        if depth < _MAX_DEPTH:
            end = _span_at(line, i, hi, stack, out, depth)
            if end is not None:
                i = end
                continue
        out.append(Atom(c, i, i + 1, stack))
        i += 1


def _span_at(
    line: str, i: int, hi: int, stack: tuple[Span, ...], out: list[Atom], depth: int
) -> int | None:
    """Parse a construct opening at `i`; returns where it ends, or None if there is none."""
    c = line[i]
    if c == "`":
        tick = line.find("`", i + 1, hi)
        if tick <= i + 1:
            return None
        span = Span("code", "`", "`")
        out.extend(Atom(line[k], k, k + 1, (*stack, span)) for k in range(i + 1, tick))
        return tick + 1
    if c == "[":
        match = _LINK.match(line, i, hi)
        if match is None:
            return None
        url = match.group(2)
        span = Span("a", "[", f"]({url})", url)
        _inline(line, match.start(1), match.end(1), (*stack, span), out, depth + 1)
        return match.end()
    for marker, tag in (("**", "b"), ("__", "b"), ("~~", "s"), ("*", "i"), ("_", "i")):
        if line.startswith(marker, i):
            j = _closer(line, marker, i, hi)
            if j is None:
                return None if len(marker) == 1 else _span_at_single(line, i, hi, stack, out, depth)
            span = Span(tag, marker, marker)
            _inline(line, i + len(marker), j, (*stack, span), out, depth + 1)
            return j + len(marker)
    return None


def _span_at_single(
    line: str, i: int, hi: int, stack: tuple[Span, ...], out: list[Atom], depth: int
) -> int | None:
    # "**x*" or "__x_": no double closer, so try the single marker it starts with.
    marker = line[i]
    if marker not in "*_":
        return None
    j = _closer(line, marker, i, hi)
    if j is None:
        return None
    span = Span("i", marker, marker)
    _inline(line, i + 1, j, (*stack, span), out, depth + 1)
    return j + 1


def _closer(line: str, marker: str, i: int, hi: int) -> int | None:
    """Where the marker opened at `i` closes on this line, or None."""
    n = len(marker)
    first = i + n
    if first >= hi or line[first].isspace():
        return None
    if marker in ("_", "__") and i > 0 and line[i - 1].isalnum():
        return None  # snake_case words are not emphasis
    if n == 1 and first < hi and line[first] == marker:
        return None
    j = first
    while j < hi:
        if line[j] == "\\" and j + 1 < hi and line[j + 1] in _ESCAPABLE:
            j += 2  # an escaped character is never a marker
            continue
        if j > first and line.startswith(marker, j) and j + n <= hi:
            if n == 1 and line.startswith(marker * 2, j):
                j += 2  # a double marker inside a single one belongs to a nested span
                continue
            after = line[j + n] if j + n < hi else ""
            ok = not line[j - 1].isspace()
            if marker in ("_", "__") and after.isalnum():
                ok = False
            if ok:
                return j
        if line[j] == "`":
            close = line.find("`", j + 1, hi)
            if close > j + 1:
                j = close + 1
                continue
        j += 1
    return None


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
            atoms = line_atoms(lines[i])
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

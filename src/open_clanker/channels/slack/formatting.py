"""Model Markdown -> Slack mrkdwn (pure). Everything the model wrote is escaped; only our markup passes.

The Markdown is read by the same line reader as Telegram's (`channels/telegram/formatting.py`,
plain `re`, no Telegram library): fenced code, headings, bullets, `**bold**`, `*italic*`,
`~~strike~~`, `` `code` ``, `[text](url)`. Slack's own markup is `*bold*`, `_italic_`,
`~strike~`, `` `code` ``, ``` fences (no language: Slack would show it as code) and
`<url|text>`. `&`, `<` and `>` are escaped everywhere, so no text can become `<!channel>`,
`<!here>`, `<!everyone>` or a `<@user>` mention: nothing the model writes pings anyone.
"""

from __future__ import annotations

from open_clanker.channels.telegram.formatting import Atom, Span, fence_lang, line_atoms

FENCE = "```"
_MARKERS = {"b": "*", "i": "_", "s": "~", "code": "`"}


def escape(text: str) -> str:
    """Slack's three control characters as entities (also inside code, where Slack decodes them)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _href(url: str) -> str:
    # `|` would end the URL inside `<url|text>`.
    return escape(url).replace("|", "%7C")


def _open(span: Span) -> str:
    return f"<{_href(span.href)}|" if span.tag == "a" else _MARKERS[span.tag]


def _close(span: Span) -> str:
    return ">" if span.tag == "a" else _MARKERS[span.tag]


def _effective(stack: tuple[Span, ...]) -> tuple[Span, ...]:
    """Slack shows a link's label as plain text: markup inside a link is dropped."""
    for i, span in enumerate(stack):
        if span.tag == "a":
            return stack[: i + 1]
    return stack


def atoms_mrkdwn(atoms: list[Atom]) -> str:
    parts: list[str] = []
    current: tuple[Span, ...] = ()
    for atom in atoms:
        stack = _effective(atom.stack)
        if stack != current:
            common = 0
            while (
                common < len(stack) and common < len(current) and stack[common] is current[common]
            ):
                common += 1
            parts.extend(_close(s) for s in reversed(current[common:]))
            parts.extend(_open(s) for s in stack[common:])
            current = stack
        parts.append(escape(atom.text))
    parts.extend(_close(s) for s in reversed(current))
    return "".join(parts)


def to_mrkdwn(markdown: str) -> str:
    """The Markdown as Slack mrkdwn; lines stay lines, so a splitter can cut between them."""
    rows: list[str] = []
    lines = markdown.split("\n")
    i = 0
    while i < len(lines):
        if fence_lang(lines[i]) is None:
            rows.append(atoms_mrkdwn(line_atoms(lines[i])))
            i += 1
            continue
        body: list[str] = []
        i += 1
        while i < len(lines) and fence_lang(lines[i]) is None:
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence (or the end of an unclosed block)
        if any(line.strip() for line in body):
            rows.extend([FENCE, *(escape(line) for line in body), FENCE])
    return "\n".join(rows)

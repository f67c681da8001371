"""Both splitters, as properties: every part fits, and the parts rejoin to the original.

"Rejoin": with every run of whitespace written as one space, the original is the parts in
order with at most a space between them (a cut drops the whitespace it falls on, and a line
cut inside a word has none). Telegram: what the parts show against what the reply shows;
Discord sends the text itself: its parts, less the fences a split adds to close and reopen a
code block, hold the text's characters in order (whitespace aside).
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from open_clanker.channels.discord.splitting import split_for_discord
from open_clanker.channels.telegram.formatting import render, utf16_len
from open_clanker.channels.telegram.splitting import split_for_telegram
from tests.doubles.telegram_double import visible_text

FENCE_LINE = re.compile(r"^\s*```.*$\n?", re.MULTILINE)
# A fence and its language name (a longer "```word" is content a split may carry on).
FENCE_WORD = re.compile(r"^\s*```(?:[\w+#.-]{1,16}(?![\w+#.-]))?", re.MULTILINE)


def squash(text: str) -> str:
    """The text without whitespace and without fence markers (with their language)."""
    return "".join(FENCE_WORD.sub("", text).split())


def one_space(text: str) -> str:
    return " ".join(text.split())


def rejoins(parts: list[str], original: str) -> bool:
    """`original` is `parts` in order with at most a space between them (whitespace runs
    written as one space)."""
    whole = one_space(original)
    pos = 0
    for part in map(one_space, parts):
        if whole.startswith(" ", pos):
            pos += 1
        if not whole.startswith(part, pos):
            return False
        pos += len(part)
    return pos == len(whole)


def telegram_parts(text: str, limit: int) -> list[str]:
    parts = split_for_telegram(text, limit)
    shown = []
    for part in parts:
        rendered = render(part)
        assert visible_text(rendered.html, "HTML") == rendered.visible  # Telegram accepts it
        assert utf16_len(rendered.visible) <= limit, part
        assert part.strip(), parts
        shown.append(rendered.visible)
    assert rejoins(shown, render(text).visible), (text, parts)
    return parts


def discord_parts(text: str, limit: int) -> list[str]:
    parts = split_for_discord(text, limit)
    assert all(len(p) <= limit and p.strip() for p in parts), parts
    assert squash("\n".join(parts)) == squash(text), (text, parts)
    if len(FENCE_LINE.findall(text)) % 2 == 0:
        assert all(len(FENCE_LINE.findall(p)) % 2 == 0 for p in parts), parts
    return parts


_TOKENS = [
    *"abc xyz",
    "\n",
    "\n\n",
    "**",
    "*",
    "_",
    "`",
    "~~",
    "***",
    "```",
    "```py\n",
    "# ",
    "- ",
    "[a](https://e.org)",
    "<",
    "&",
    "\\",
    "é",
    "😀",
    "  ",
    "\t",
]
_WORDS = st.sampled_from(["word ", "**bold words** ", "_it_ ", "`co de` ", "x" * 40, "😀 "])
# Lines longer than a message, with markup that a cut may fall inside.
_LONG_LINE = st.lists(_WORDS, min_size=5, max_size=80).map("".join)
_TEXT = st.lists(st.one_of(st.sampled_from(_TOKENS), _LONG_LINE), max_size=60).map("".join)
_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(_TEXT, st.integers(min_value=20, max_value=400))
def test_telegram_parts_fit_and_rejoin(text: str, limit: int) -> None:
    telegram_parts(text, limit)


@_SETTINGS
@given(_TEXT, st.integers(min_value=30, max_value=400))
def test_discord_parts_fit_and_rejoin(text: str, limit: int) -> None:
    discord_parts(text, limit)


def test_a_long_line_of_markup_keeps_its_markup_in_every_part() -> None:
    text = " ".join(f"**bold{i}** _it{i}_ `code{i}`" for i in range(3000))
    parts = telegram_parts(text, 4096)
    assert len(parts) > 1
    for part in parts:
        html = render(part).html
        assert html.count("<b>") == html.count("</b>") > 100
        assert "**" not in render(part).visible


def test_a_span_cut_in_two_is_closed_and_reopened() -> None:
    text = "**" + " ".join(["bold"] * 3000) + "**"
    parts = telegram_parts(text, 4096)
    assert len(parts) == 4
    assert all(render(p).html.startswith("<b>") and render(p).html.endswith("</b>") for p in parts)


def test_whitespace_inside_a_long_line_is_kept_between_cuts() -> None:
    text = "a\tb  c " * 2000
    parts = telegram_parts(text, 4096)
    assert all("\t" in p and "  " in p for p in parts)


# Inputs at the edges of the algorithms: one huge word, nothing but markers, many lines.
_EDGES = {
    "one word": "x" * 100_000,
    "wide characters": "😀" * 50_000,
    "unpaired stars": "*a " * 33_000,
    "unpaired underscores": "_a " * 33_000,
    "code spans": "`a " * 33_000,
    "brackets": "[a " * 33_000,
    "short lines": "a\n" * 50_000,
    "empty blocks": "```\n" * 25_000,
    "a huge code line": "```\n" + "y " * 50_000 + "\n```",
}


def test_edge_inputs_split_into_parts_that_fit_and_rejoin() -> None:
    for name, text in _EDGES.items():
        assert telegram_parts(text, 4096), name
        assert discord_parts(text, 2000), name

"""Markdown -> Telegram HTML, and cutting replies to Telegram's 4096 visible UTF-16 units."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from open_clanker.channels.telegram.formatting import render, to_html, utf16_len
from open_clanker.channels.telegram.splitting import TELEGRAM_LIMIT, split_for_telegram
from tests.doubles.telegram_double import visible_text


@pytest.mark.parametrize(
    ("md", "html"),
    [
        ("plain", "plain"),
        ("**bold** and __bold__", "<b>bold</b> and <b>bold</b>"),
        ("*it* and _it_", "<i>it</i> and <i>it</i>"),
        ("~~gone~~", "<s>gone</s>"),
        ("`a<b>&c`", "<code>a&lt;b&gt;&amp;c</code>"),
        ("**bold _both_**", "<b>bold <i>both</i></b>"),
        ("snake_case_name and 2 * 3 * 4", "snake_case_name and 2 * 3 * 4"),
        ("**unclosed", "**unclosed"),
        (r"\*not italic\*", "*not italic*"),
        ("# Title", "<b>Title</b>"),
        ("- item\n* other", "• item\n• other"),
        ("[site](https://x.org/?a=1&b=2)", '<a href="https://x.org/?a=1&amp;b=2">site</a>'),
        ("[bad](javascript:alert(1))", "[bad](javascript:alert(1))"),
        ('<b onclick="x">hi</b>', '&lt;b onclick="x"&gt;hi&lt;/b&gt;'),
        ("```python\nif a < b:\n    pass\n```", '<pre><code class="language-python">if a &lt; b:\n    pass</code></pre>'),
        ("```\ncode\n```\nafter", "<pre>code</pre>\nafter"),
        ("```\nunclosed <code>", "<pre>unclosed &lt;code&gt;</pre>"),
        ("`**not bold**`", "<code>**not bold**</code>"),
    ],
)  # fmt: skip
def test_to_html(md: str, html: str) -> None:
    assert to_html(md) == html


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


@given(
    st.lists(st.sampled_from([*'<>/"=&;ab `*_[]()#:', "javascript:", "https://x", "\n"])).map(
        "".join
    )
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_model_text_cannot_inject_tags(hostile: str) -> None:
    html = to_html(hostile + '</code></pre><a href="javascript:x">x</a><i>')
    visible_text(html, "HTML")  # well formed, known tags only
    parser = _Tags()
    parser.feed(html)
    for tag, attrs in parser.tags:
        assert tag in {"b", "i", "s", "code", "pre", "a"}
        for name, value in attrs:
            assert (tag, name) in {("a", "href"), ("code", "class")}
            if name == "href":
                assert (value or "").startswith(("https://", "http://", "tg://", "mailto:"))


def test_visible_text_matches_what_telegram_shows() -> None:
    md = "# Head\n**b** `c` [l](https://x.org) & <tag>\n```\nx < 1\n```"
    rendered = render(md)
    assert visible_text(rendered.html, "HTML") == rendered.visible


def test_short_text_is_one_unchanged_part() -> None:
    assert split_for_telegram("**hi**\n\nthere") == ["**hi**\n\nthere"]
    assert split_for_telegram("   \n ") == []


def _visible(part: str) -> str:
    shown = visible_text(render(part).html, "HTML")
    assert shown == render(part).visible
    return shown


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _check(text: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    parts = split_for_telegram(text, limit)
    for part in parts:
        assert utf16_len(_visible(part)) <= limit, part
    # Nothing lost, nothing reordered (cuts may drop the whitespace they cut at).
    assert _squash("".join(_visible(p) for p in parts)) == _squash(render(text).visible)
    return parts


def test_nine_thousand_chars_are_three_parts_cut_at_paragraphs() -> None:
    paragraph = "A sentence with **bold** words and `code`. " * 10
    text = "\n\n".join(f"{i} {paragraph}".strip() for i in range(21))
    assert 9000 <= len(text) <= 9500
    parts = _check(text)
    assert len(parts) == 3
    for part in parts:
        assert part.startswith(tuple("0123456789"))  # each part starts a paragraph
        assert part.endswith("`code`.")


def test_lines_are_used_when_there_are_no_paragraphs() -> None:
    text = "\n".join(f"line {i} " + "x" * 60 for i in range(200))
    parts = _check(text)
    assert len(parts) > 1
    assert all(p.startswith("line ") for p in parts)


def test_code_block_cut_is_closed_and_reopened() -> None:
    code = "\n".join(f"print({i}) # <{i}>" for i in range(600))
    text = f"Intro\n\n```python\n{code}\n```\n\nOutro"
    parts = _check(text)
    assert len(parts) >= 3
    for part in parts[1:-1]:
        assert part.startswith("```python\n")
    for part in parts[:-1]:
        if "```python" in part:
            assert part.endswith("```")
            assert "<pre><code" in to_html(part) and to_html(part).count("</pre>") == 1


def test_one_huge_line_is_cut_at_words_with_formatting_kept() -> None:
    text = "start " + " ".join(
        f"**w{i}** _i{i}_ `c{i}` [l{i}](https://x.org/{i})" for i in range(900)
    )
    parts = _check(text)
    assert len(parts) > 1
    for part in parts:
        assert "**" not in render(part).visible and "`" not in render(part).visible


def test_bold_span_across_a_forced_cut_is_reopened() -> None:
    text = "**" + " ".join(["bold"] * 2000) + "**"
    parts = _check(text)
    assert len(parts) == 3
    for part in parts:
        assert part.startswith("**") and part.endswith("**")
        assert to_html(part).startswith("<b>")


def test_a_word_longer_than_the_limit_is_cut_inside_but_not_inside_a_character() -> None:
    text = "😀" * 5000  # 10,000 UTF-16 units
    parts = _check(text)
    assert [utf16_len(p) <= TELEGRAM_LIMIT for p in parts] == [True] * len(parts)
    assert "".join(parts) == text


def test_long_code_line_keeps_every_character() -> None:
    line = "x = [" + ", ".join(str(i) for i in range(3000)) + "]"
    text = f"```\n{line}\n```"
    parts = _check(text)
    assert len(parts) > 1
    assert "".join(render(p).visible for p in parts) == line


_alphabet = st.sampled_from(
    [*"abc xyz", "\n", "\n\n", "**", "*", "_", "`", "~~", "```", "```py\n", "# ", "- ",
     "[a](https://e.org)", "<", ">", "&", "\\", "é", "😀", "  "]
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_alphabet, max_size=400), st.integers(min_value=20, max_value=120))
def test_split_properties(tokens: list[str], limit: int) -> None:
    text = "".join(tokens)
    # A small limit exercises every cut kind with short inputs.
    _check(text, limit)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_any_text_renders_to_html_telegram_accepts(text: str) -> None:
    rendered = render(text)
    assert visible_text(rendered.html, "HTML") == rendered.visible

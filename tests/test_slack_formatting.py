"""Markdown -> Slack mrkdwn, and replies cut at 4,000 characters (pure functions, table tests)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from open_clanker.channels.slack.formatting import to_mrkdwn
from open_clanker.channels.slack.splitting import SLACK_LIMIT, split_for_slack, split_mrkdwn

PING = re.compile(r"<!(channel|here|everyone)|<@[UW]")


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("plain words", "plain words"),
        ("**bold** and __also bold__", "*bold* and *also bold*"),
        ("*italic* and _italic_", "_italic_ and _italic_"),
        ("~~gone~~", "~gone~"),
        ("`a < b && c > d`", "`a &lt; b &amp;&amp; c &gt; d`"),
        ("[the docs](https://example.com/?a=1&b=2)", "<https://example.com/?a=1&amp;b=2|the docs>"),
        ("[**bold** label](https://x.org)", "<https://x.org|bold label>"),
        ("# A heading", "*A heading*"),
        ("- one\n- two", "• one\n• two"),
        ("fish & chips <3 > 2", "fish &amp; chips &lt;3 &gt; 2"),
        ("```python\nif a < b:\n    pass\n```", "```\nif a &lt; b:\n    pass\n```"),
        ("```\n```", ""),
        ("snake_case_name stays", "snake_case_name stays"),
        ("**bold _and italic_**", "*bold _and italic_*"),
        (r"\*not italic\*", "*not italic*"),
        ("unclosed **bold", "unclosed **bold"),
    ],
)
def test_markdown_becomes_mrkdwn(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    "text",
    [
        "<!channel> everyone look",
        "<!here|here> and <!everyone>",
        "hey <@U0ALICE001> and <@W0BOB00001|bob>",
        "[click](https://x.org|<!channel>)",
        "`<!here>` in code",
        "```\n<!channel>\n```",
        "<!subteam^S123|@team>",
    ],
)
def test_nothing_the_model_writes_pings_anyone(text: str) -> None:
    assert not PING.search(to_mrkdwn(text))


@given(st.text(alphabet=st.sampled_from("<>!@&|*_`~[]()#-channelhere \nU01"), max_size=80))
@settings(max_examples=300, deadline=None)
def test_no_ping_survives_any_text(text: str) -> None:
    assert not PING.search(to_mrkdwn(text))


def words(text: str) -> list[str]:
    return [w for w in text.split() if w != "```"]


def balanced(part: str) -> bool:
    return sum(line == "```" for line in part.split("\n")) % 2 == 0


def test_short_and_empty_replies() -> None:
    assert split_for_slack("hello **world**") == ["hello *world*"]
    assert split_for_slack("  \n ") == []


def test_nine_thousand_characters_with_code_are_three_closed_parts() -> None:
    prose = "\n\n".join(f"Paragraph {i}: " + "plain words in a sentence. " * 20 for i in range(8))
    code = "\n".join(f"    value_{i} = compute({i}) * 2  # step {i}" for i in range(100))
    text = f"{prose}\n\n```python\n{code}\n```\n\nThat is all."
    assert 8000 <= len(text) <= 9500
    parts = split_for_slack(text)
    assert len(parts) == 3
    assert all(len(p) <= SLACK_LIMIT for p in parts)
    assert all(balanced(p) for p in parts)
    assert words("\n".join(parts)) == words(to_mrkdwn(text))
    with_code = [p for p in parts if "value_" in p]
    assert len(with_code) == 2
    assert with_code[1].startswith("```\n") and with_code[0].endswith("\n```")
    steps = [int(n) for p in with_code for n in re.findall(r"# step (\d+)", p)]
    assert steps == list(range(100))


@pytest.mark.parametrize(
    ("text", "first_ends_with"),
    [
        # a paragraph break in the second half wins over a later line break
        ("a" * 2500 + "\n\n" + "b" * 1000 + "\n" + "c" * 1000, "a"),
        # no paragraph: the last line break that fits
        ("a" * 2500 + "\n" + "b" * 1000 + "\n" + "c" * 1000, "b"),
        # one long line: the last space that fits
        (("word " * 1000).strip(), "word"),
    ],
)
def test_cuts_prefer_paragraphs_then_lines_then_words(text: str, first_ends_with: str) -> None:
    parts = split_mrkdwn(text)
    assert len(parts) == 2
    assert parts[0].endswith(first_ends_with)
    assert all(len(p) <= SLACK_LIMIT for p in parts)
    assert words(" ".join(parts)) == words(text)


def test_links_and_entities_are_never_cut() -> None:
    link = "<https://example.com/a/very/long/path|a label with many words in it>"
    line = " ".join([link] * 120)  # ~8,000 characters, the only spaces are inside links
    entities = "&amp;" * 2000
    for text in (line, entities):
        parts = split_mrkdwn(text)
        assert "".join(p.replace(" ", "") for p in parts) == text.replace(" ", "")
        for part in parts:
            assert len(part) <= SLACK_LIMIT
            assert part.count("<") == part.count(">")
            assert not re.search(r"&(?!amp;)", part)


def test_a_word_longer_than_a_message_is_cut_anyway() -> None:
    text = "x" * 9000
    parts = split_mrkdwn(text)
    assert "".join(parts) == text
    assert all(len(p) <= SLACK_LIMIT for p in parts)


@given(st.text(alphabet=st.sampled_from("ab &<>\n*`"), min_size=1, max_size=12_000))
@settings(max_examples=40, deadline=None)
def test_every_part_fits_and_nothing_is_lost(text: str) -> None:
    parts = split_for_slack(text)
    assert all(len(p) <= SLACK_LIMIT for p in parts)
    assert all(balanced(p) for p in parts)
    assert words("\n".join(parts)) == words(to_mrkdwn(text))

"""Discord replies cut at 2,000 characters: boundaries, code blocks, nothing lost."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from open_clanker.channels.discord.splitting import DISCORD_LIMIT, split_for_discord

FENCE = re.compile(r"^\s*```", re.MULTILINE)


def words(text: str) -> list[str]:
    """The text's words, fences left out (a split adds a closing and a reopening fence)."""
    return [w for w in text.split() if not w.startswith("```")]


def balanced(part: str) -> bool:
    return len(FENCE.findall(part)) % 2 == 0


def five_thousand_with_code() -> str:
    intro = "Here is the plan in detail. " * 30
    code = "\n".join(f"    total += compute(item_{i})  # step {i} of the loop" for i in range(50))
    outro = "That is all there is to it, really. " * 42
    return f"{intro.strip()}\n\n```python\ndef run():\n{code}\n```\n\n{outro.strip()}"


def test_short_reply_is_one_message() -> None:
    assert split_for_discord("hello **world**") == ["hello **world**"]
    assert split_for_discord("   \n ") == []


def test_5000_characters_with_a_code_block_are_three_valid_messages() -> None:
    text = five_thousand_with_code()
    assert 4900 <= len(text) <= 5100
    parts = split_for_discord(text)
    assert len(parts) == 3
    assert all(len(p) <= DISCORD_LIMIT for p in parts)
    assert all(balanced(p) for p in parts)
    assert words("\n".join(parts)) == words(text)
    # The block cut in two is reopened with its language.
    reopened = [p for p in parts[1:] if p.startswith("```python\n")]
    assert reopened, parts


def test_cuts_prefer_paragraphs_then_lines_then_words() -> None:
    para = "word " * 300  # 1,500 characters
    parts = split_for_discord(f"{para.strip()}\n\n{para.strip()}")
    assert parts == [para.strip(), para.strip()]
    lines = "\n".join(["a line of text that is fairly long, really"] * 80)
    parts = split_for_discord(lines)
    assert all(not p.startswith("\n") and not p.endswith("\n") for p in parts)
    assert "\n".join(parts) == lines
    long_words = " ".join(["supercalifragilistic"] * 200)
    parts = split_for_discord(long_words)
    assert all(not p.startswith(" ") and len(p) <= DISCORD_LIMIT for p in parts)
    assert " ".join(parts) == long_words


def test_a_word_longer_than_a_message_is_cut_without_losing_a_character() -> None:
    blob = "x" * 4500
    parts = split_for_discord(blob)
    assert len(parts) == 3
    assert all(len(p) <= DISCORD_LIMIT for p in parts)
    assert "".join(parts) == blob


def test_spaces_before_a_word_longer_than_a_message_are_no_message_of_their_own() -> None:
    # Found by the property test: the two leading spaces were cut off as a part " ".
    parts = split_for_discord("  " + "x" * 40 + "word word word word ", 30)
    assert all(p.strip() for p in parts), parts
    assert "".join("".join(parts).split()) == "x" * 40 + "wordwordwordword"
    tail = split_for_discord("word" + " " * 70 + "end", 30)
    assert all(p.strip() for p in tail), tail


def test_a_huge_code_line_stays_inside_fences() -> None:
    text = "```\n" + "y" * 4100 + "\n```"
    parts = split_for_discord(text)
    assert all(len(p) <= DISCORD_LIMIT and balanced(p) for p in parts)
    assert "".join(p.replace("```", "").replace("\n", "") for p in parts) == "y" * 4100


def test_an_unclosed_block_is_closed_in_every_part() -> None:
    text = "```js\n" + "\n".join(f"let v{i} = {i};" for i in range(400))
    parts = split_for_discord(text)
    assert len(parts) >= 2
    assert all(len(p) <= DISCORD_LIMIT and balanced(p) for p in parts)


_line = st.one_of(
    st.text(alphabet="abc de.,!é😀", min_size=0, max_size=120),
    st.just(""),
    st.sampled_from(["```", "```python", "```js"]),
    st.text(alphabet="xyz", min_size=1500, max_size=2600),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_line, min_size=1, max_size=60))
def test_every_part_fits_and_nothing_is_lost(lines: list[str]) -> None:
    text = "\n".join(lines)
    parts = split_for_discord(text)
    assert all(len(p) <= DISCORD_LIMIT for p in parts)
    assert all(p.strip() for p in parts)
    assert words("\n".join(parts)) == words(text) or "".join(words("\n".join(parts))) == "".join(
        words(text)
    )
    if len(FENCE.findall(text)) % 2 == 0 and len(text) > DISCORD_LIMIT:
        assert all(balanced(p) for p in parts)

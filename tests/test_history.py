"""The bounded context (SPEC §8): what `fit_history` sends, as tables."""

from __future__ import annotations

import pytest

from open_clanker.core.errors import ContextOverflow
from open_clanker.core.types import (
    Attachment,
    ChannelType,
    Message,
    MessageMetadata,
    Role,
    SessionKey,
)
from open_clanker.pipeline.history import (
    IMAGE_TOKENS,
    MESSAGE_TOKENS,
    Measured,
    alternate,
    correction,
    estimate_message,
    estimate_request,
    fit_history,
    overflow_target,
)

U, A = Role.USER, Role.ASSISTANT
IMAGE = Attachment(id="p1", url="https://x.test/cat.png", mime_type="image/png")


def msg(role: Role, text: str, *attachments: Attachment, mid: str = "") -> Message:
    return Message(
        id=mid or f"{role.value}-{text[:12]}-{len(text)}",
        channel_type=ChannelType.API,
        channel_id="s",
        sender="user" if role is U else "assistant",
        role=role,
        text=text,
        session=SessionKey("api:s"),
        metadata=MessageMetadata(attachments=attachments),
    )


def talk(*spec: tuple[Role, int]) -> list[Message]:
    """Messages of the given roles and lengths, each text naming its place ("m0", "m1", ...)."""
    return [msg(role, f"m{i}".ljust(size, "x"), mid=f"m{i}") for i, (role, size) in enumerate(spec)]


def ids(messages: list[Message]) -> list[str]:
    return [m.id for m in messages]


def roles(messages: list[Message]) -> list[Role]:
    return [m.role for m in messages]


# Each 396-character message is 99 + 4 = 103 estimated tokens.
TEN = talk(*[(U if i % 2 == 0 else A, 396) for i in range(9)])  # u a u a u a u a u


@pytest.mark.parametrize(
    ("messages", "system", "max_messages", "max_tokens", "measured", "sent"),
    [
        # Everything fits: everything is sent.
        (TEN, "", 40, 10_000, None, [f"m{i}" for i in range(9)]),
        # The token budget: 5 × 103 = 515 fits in 520; the oldest are dropped first.
        (TEN, "", 40, 520, None, ["m4", "m5", "m6", "m7", "m8"]),
        # 4 fit, but they would start with the assistant: the first turn is a user turn.
        (TEN, "", 40, 420, None, ["m6", "m7", "m8"]),
        # The system prompt counts: 400 characters are 104 tokens, so one message fewer.
        (TEN, "s" * 400, 40, 520, None, ["m6", "m7", "m8"]),
        # The message budget alone.
        (TEN, "", 3, 10_000, None, ["m6", "m7", "m8"]),
        (TEN, "", 4, 10_000, None, ["m6", "m7", "m8"]),
        # The newest message is sent even when it alone is over the budget.
        (TEN, "", 40, 50, None, ["m8"]),
        (TEN, "s" * 4000, 40, 520, None, ["m8"]),
        # The provider counted twice our estimate last time: the budget holds half as much.
        (TEN, "", 40, 1040, Measured(prompt_tokens=2000, sent_tokens=1000), ["m4", "m5", "m6", "m7", "m8"]),
        # A measurement of a tiny request says little: no correction.
        (TEN, "", 40, 520, Measured(prompt_tokens=400, sent_tokens=100), ["m4", "m5", "m6", "m7", "m8"]),
    ],
)  # fmt: skip
def test_fit_history(
    messages: list[Message],
    system: str,
    max_messages: int,
    max_tokens: int,
    measured: Measured | None,
    sent: list[str],
) -> None:
    context = fit_history(messages, system, max_messages, max_tokens, measured)
    assert ids(context.messages) == sent
    assert context.messages[-1] is messages[-1]  # never without the newest message
    assert context.messages[0].role is U
    if len(sent) > 1:
        assert context.tokens <= max_tokens
    assert context.estimate == estimate_request(system, context.messages)


def test_images_count_at_a_fixed_cost() -> None:
    photo = msg(U, "what is this?", IMAGE, mid="photo")
    assert estimate_message(photo) == MESSAGE_TOKENS + 4 + IMAGE_TOKENS
    messages = [photo, msg(A, "a cat", mid="cat"), msg(U, "and now?", mid="now")]
    assert ids(fit_history(messages, "", 40, IMAGE_TOKENS + 100).messages) == [
        "photo",
        "cat",
        "now",
    ]
    # Without room for the image its turn goes, and the assistant turn after it too.
    assert ids(fit_history(messages, "", 40, IMAGE_TOKENS - 100).messages) == ["now"]


@pytest.mark.parametrize(
    ("given", "expected_roles", "expected_texts"),
    [
        # Already alternating: unchanged.
        ([(U, "a"), (A, "b"), (U, "c")], [U, A, U], ["a", "b", "c"]),
        # A history that starts with the assistant: that turn goes.
        ([(A, "b"), (U, "c")], [U], ["c"]),
        # A question that was never answered, then a new one: one user turn, in order.
        ([(U, "a"), (A, "b"), (U, "lost"), (U, "again")], [U, A, U], ["a", "b", "lost\n\nagain"]),
        # Empty turns are left out (the newest is kept whatever it holds).
        ([(U, "a"), (A, " "), (U, "c")], [U], ["a\n\nc"]),
        ([(U, "a"), (A, "b"), (U, "")], [U, A, U], ["a", "b", ""]),
    ],
)
def test_alternate(
    given: list[tuple[Role, str]], expected_roles: list[Role], expected_texts: list[str]
) -> None:
    messages = [msg(role, text, mid=f"m{i}") for i, (role, text) in enumerate(given)]
    out = alternate(messages)
    assert roles(out) == expected_roles
    assert [m.text for m in out] == expected_texts
    assert out[-1].id == messages[-1].id  # merged into the newest: it stays the newest


def test_a_merged_turn_keeps_both_attachments() -> None:
    first = msg(U, "look", IMAGE, mid="a")
    second = msg(U, "and this", Attachment(id="d", url="https://x.test/d.pdf"), mid="b")
    (merged,) = alternate([first, second])
    assert [a.id for a in merged.metadata.attachments] == ["p1", "d"]


@pytest.mark.parametrize(
    ("measured", "ratio"),
    [
        (None, 1.0),
        (Measured(prompt_tokens=1500, sent_tokens=1000), 1.5),
        (Measured(prompt_tokens=100, sent_tokens=1000), 0.25),  # bounded below
        (Measured(prompt_tokens=90_000, sent_tokens=1000), 4.0),  # and above
        (Measured(prompt_tokens=0, sent_tokens=1000), 1.0),
        (Measured(prompt_tokens=500, sent_tokens=100), 1.0),  # too small to say
    ],
)
def test_correction(measured: Measured | None, ratio: float) -> None:
    assert correction(measured) == ratio


@pytest.mark.parametrize(
    ("sent", "overflow", "target"),
    [
        # The vendor named its count and limit: scale what was sent to fit, with a margin.
        (10_000, ContextOverflow(prompt_tokens=20_000, limit=8_000), 3_600),
        (10_000, ContextOverflow(prompt_tokens=10_500, limit=10_000), 8_571),
        # No numbers (a 413, a terse message): half of what was sent.
        (10_000, ContextOverflow(), 5_000),
        (10_000, ContextOverflow(prompt_tokens=None, limit=8_000), 5_000),
    ],
)
def test_overflow_target(sent: int, overflow: ContextOverflow, target: int) -> None:
    assert overflow_target(sent, overflow) == target

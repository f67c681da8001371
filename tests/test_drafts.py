"""Streamed drafts: throttled, reset-aware, and never able to fail a reply."""

from __future__ import annotations

from open_clanker.core.errors import ChannelError
from open_clanker.pipeline.drafts import CURSOR, DraftSink


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class DraftChannel:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.fail = fail

    async def draft(
        self, chat_id: str, thread_id: str | None, reply_to: str | None, text: str,
        message_id: str | None,
    ) -> str:  # fmt: skip
        if self.fail:
            raise ChannelError("429", "telegram", retry_after=3)
        self.calls.append((text, message_id))
        return message_id or "m1"


async def test_throttled_and_edited_in_place() -> None:
    clock, channel = FakeClock(), DraftChannel()
    sink = DraftSink(channel, "1", None, None, interval_s=1.0, clock=clock)
    await sink.delta("Hello")
    assert channel.calls == []  # too soon
    clock.now = 1.0
    await sink.delta(" world")
    clock.now = 1.5
    await sink.delta(" again")  # within the interval: buffered
    clock.now = 2.1
    await sink.delta("!")
    assert channel.calls == [("Hello world" + CURSOR, None), ("Hello world again!" + CURSOR, "m1")]
    assert sink.message_id == "m1"


async def test_reset_starts_the_text_over() -> None:
    clock, channel = FakeClock(), DraftChannel()
    sink = DraftSink(channel, "1", None, None, interval_s=1.0, clock=clock)
    await sink.delta("first try")
    await sink.reset()
    clock.now = 1.0
    await sink.delta("second")
    assert channel.calls == [("second" + CURSOR, None)]


async def test_a_failing_draft_stops_drafting_quietly() -> None:
    clock, channel = FakeClock(), DraftChannel(fail=True)
    sink = DraftSink(channel, "1", None, None, interval_s=1.0, clock=clock)
    clock.now = 1.0
    await sink.delta("text")  # raises inside, swallowed: the reply still goes through the outbox
    channel.fail = False
    clock.now = 3.0
    await sink.delta(" more")
    assert channel.calls == []
    assert sink.message_id is None

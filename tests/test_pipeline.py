"""The nine steps through the real pipeline, store and outbox, with a recording channel."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from open_clanker.config.model import Config
from open_clanker.core.errors import ChannelError, ProviderError
from open_clanker.core.types import Attachment, MessageMetadata, Role
from open_clanker.pipeline import Ending
from open_clanker.pipeline.access import CODE_ALPHABET, PairingDesk
from open_clanker.pipeline.stages import PROVIDER_FAILED_TEXT
from open_clanker.storage.schema import messages
from tests.pipeline_kit import Kit, make_kit, tg_inbound, wait_for

OPEN = Config.model_validate({"access": {"dm_policy": "open"}})


@pytest.fixture
async def kit(tmp_path: Path) -> AsyncIterator[Kit]:
    k = await make_kit(tmp_path, OPEN)
    yield k
    await k.store.close()


async def test_answer_is_stored_then_delivered(kit: Kit) -> None:
    async with kit.bus.subscribe() as events:
        turn = await kit.pipeline.handle(tg_inbound("hello"))
        assert turn.ending is Ending.ANSWERED
        assert kit.channel.sent == []  # stored in the outbox first
        await kit.deliver()
        assert kit.channel.texts() == ["reply to: hello"]
        published = [events.get_nowait(), events.get_nowait()]
    assert [m.role for m in published] == [Role.USER, Role.ASSISTANT]
    assert await kit.store.outbox.count("sent") == 1


async def test_history_goes_to_the_model_with_roles(kit: Kit) -> None:
    for i, text in enumerate(["one", "two", "three"]):
        await kit.pipeline.handle(tg_inbound(text, message_id=i))
    turns = kit.provider.requests[-1].turns
    assert [(t.role, t.text) for t in turns] == [
        (Role.USER, "one"),
        (Role.ASSISTANT, "reply to: one"),
        (Role.USER, "two"),
        (Role.ASSISTANT, "reply to: two"),
        (Role.USER, "three"),
    ]


async def test_history_is_trimmed_to_budget(tmp_path: Path) -> None:
    config = Config.model_validate(
        {"access": {"dm_policy": "open"}, "agent": {"history_messages": 3}}
    )
    k = await make_kit(tmp_path, config)
    for i in range(4):
        await k.pipeline.handle(tg_inbound(f"m{i}", message_id=i))
    assert len(k.provider.requests[-1].turns) == 3
    assert k.provider.requests[-1].turns[-1].text == "m3"
    await k.store.close()


async def test_redelivery_is_answered_once(kit: Kit) -> None:
    first = await kit.pipeline.handle(tg_inbound("hi", message_id=7))
    again = await kit.pipeline.handle(tg_inbound("hi", message_id=7))
    assert (first.ending, again.ending) == (Ending.ANSWERED, Ending.DUPLICATE)
    other_chat = await kit.pipeline.handle(tg_inbound("hi", chat="200", message_id=7))
    assert other_chat.ending is Ending.ANSWERED  # ids are unique per chat only
    assert len(kit.provider.requests) == 2


async def test_provider_failure_gets_short_reply_and_is_recorded(kit: Kit) -> None:
    kit.provider.failures.append(ProviderError("boom", "scripted", retryable=False))
    turn = await kit.pipeline.handle(tg_inbound("hi"))
    assert turn.ending is Ending.FAILED
    await kit.deliver()
    assert kit.channel.texts() == [PROVIDER_FAILED_TEXT]

    def status_of(conn: sa.Connection) -> object:
        stmt = sa.select(messages.c.status).where(messages.c.id == turn.message.id)
        return conn.execute(stmt).scalar()

    assert await kit.store.db.read(status_of) == "failed"


async def test_outbox_retries_a_429_and_loses_nothing(kit: Kit) -> None:
    kit.channel.failures.append(ChannelError("429", "telegram", retry_after=0.5))
    await kit.pipeline.handle(tg_inbound("hi"))
    next_due = await kit.worker.deliver_due()
    assert kit.channel.sent == [] and next_due is not None and next_due > time.time()
    kit.worker.start()  # the worker sleeps until the retry is due, then delivers
    try:
        await wait_for(lambda: bool(kit.channel.sent))
    finally:
        await kit.worker.stop()
    assert kit.channel.texts() == ["reply to: hi"]


async def test_long_reply_split_in_order(tmp_path: Path) -> None:
    k = await make_kit(tmp_path, OPEN)
    k.channel.limit = 10
    await k.pipeline.handle(tg_inbound("x" * 25))
    for _ in range(5):
        await k.deliver()
    assert "".join(k.channel.texts()) == "reply to: " + "x" * 25
    assert [i.part for i in k.channel.sent] == list(range(len(k.channel.sent)))
    await k.store.close()


async def test_unreachable_channel_does_not_stop_the_worker(kit: Kit) -> None:
    kit.channel.failures.append(ChannelError("blocked", "telegram", retryable=False))
    await kit.pipeline.handle(tg_inbound("hi"))
    await kit.pipeline.handle(tg_inbound("again", message_id=2))
    await kit.deliver()
    assert kit.channel.texts() == ["reply to: again"]
    assert await kit.store.outbox.count("dead") == 1


async def test_too_long_and_rate_limit_notices(tmp_path: Path) -> None:
    config = Config.model_validate(
        {
            "access": {"dm_policy": "open"},
            "server": {"max_message_chars": 5},
            "limits": {"messages_per_minute": 1},
        }
    )
    k = await make_kit(tmp_path, config)
    long = await k.pipeline.handle(tg_inbound("toolong", message_id=1))
    assert long.ending is Ending.REFUSED and long.error is not None
    assert long.error.code == "message_too_long"
    assert (await k.pipeline.handle(tg_inbound("ok", message_id=2))).ending is Ending.ANSWERED
    limited = [await k.pipeline.handle(tg_inbound("x", message_id=i)) for i in (3, 4, 5)]
    assert {t.ending for t in limited} == {Ending.REFUSED}
    await k.deliver()
    texts = k.channel.texts()
    assert sum("faster than I can answer" in t for t in texts) == 1  # once per window
    assert sum("limit is 5" in t for t in texts) == 1
    await k.store.close()


async def test_group_needs_mention(kit: Kit) -> None:
    quiet = await kit.pipeline.handle(
        tg_inbound("hi all", chat="-5", direct=False, addressed=False)
    )
    assert quiet.ending is Ending.IGNORED
    asked = await kit.pipeline.handle(
        tg_inbound("@clanker_bot hi", chat="-5", message_id=2, direct=False, addressed=True)
    )
    assert asked.ending is Ending.ANSWERED
    await kit.deliver()
    assert kit.channel.sent[0].reply_to == "2"  # replies quote the user in groups


async def test_pairing_flow(tmp_path: Path) -> None:
    k = await make_kit(tmp_path)  # default dm_policy = pairing
    first = await k.pipeline.handle(tg_inbound("hello", sender="9", chat="9", message_id=1))
    assert first.ending is Ending.PAIRING and first.notice
    code = first.notice.split("code is ")[1][:8]
    assert len(code) == 8 and set(code) <= set(CODE_ALPHABET)
    second = await k.pipeline.handle(tg_inbound("hello?", sender="9", chat="9", message_id=2))
    assert second.ending is Ending.PAIRING and second.notice is None  # not again within 10 min
    assert k.provider.requests == []
    approved = await PairingDesk(k.store.access).approve(code.lower())  # case-insensitive
    assert approved is not None
    third = await k.pipeline.handle(tg_inbound("now?", sender="9", chat="9", message_id=3))
    assert third.ending is Ending.ANSWERED
    await k.deliver()
    assert k.channel.texts("9")[-1] == "reply to: now?"
    await k.store.close()


async def test_at_most_three_pending_codes_per_channel(tmp_path: Path) -> None:
    k = await make_kit(tmp_path)
    notices = []
    for sender in ("1", "2", "3", "4"):
        turn = await k.pipeline.handle(tg_inbound("hi", sender=sender, chat=sender))
        notices.append(turn.notice)
    assert all(notices[:3]) and notices[3] is None
    await k.store.close()


async def test_allowlist_policy_ignores_strangers(tmp_path: Path) -> None:
    config = Config.model_validate({"access": {"dm_policy": "allowlist", "allow": ["telegram:1"]}})
    k = await make_kit(tmp_path, config)
    assert (
        await k.pipeline.handle(tg_inbound("hi", sender="1", chat="1"))
    ).ending is Ending.ANSWERED
    stranger = await k.pipeline.handle(tg_inbound("hi", sender="2", chat="2"))
    assert stranger.ending is Ending.IGNORED and stranger.notice is None
    await k.store.close()


async def test_restart_answers_pending_and_expires_old(tmp_path: Path) -> None:
    k = await make_kit(tmp_path, OPEN)
    fresh = tg_inbound("answer me", message_id=1)
    old = tg_inbound("too old", chat="300", message_id=1)
    old = type(old)(
        message=old.message.model_copy(
            update={
                "timestamp": old.message.timestamp.fromtimestamp(
                    time.time() - 7200, tz=old.message.timestamp.tzinfo
                )
            }
        ),
        platform_id=old.platform_id,
    )
    # Accepted, then the process died before the model answered.
    await k.store.messages.accept(
        fresh.message, fresh.platform_id, {"platform_id": fresh.platform_id}
    )
    await k.store.messages.accept(old.message, old.platform_id, {})
    await k.store.close()

    k2 = await make_kit(tmp_path, OPEN)
    resumed, expired = await k2.recover()
    assert (resumed, expired) == (1, 1)
    await k2.deliver()
    assert k2.channel.texts() == ["reply to: answer me"]
    assert await k2.store.messages.pending() == []
    # A re-delivery of the recovered message after the restart is still a duplicate.
    again = await k2.pipeline.handle(tg_inbound("answer me", message_id=1))
    assert again.ending is Ending.DUPLICATE
    await k2.store.close()


async def test_images_of_the_newest_message_are_fetched_for_the_model(kit: Kit) -> None:
    photo = Attachment(id="f1", url="platform-file:f1", mime_type="image/png", size_bytes=10)
    missing = Attachment(id="f2", url="platform-file:missing", mime_type="image/jpeg")
    doc = Attachment(id="f3", url="platform-file:f3", mime_type="application/pdf", name="a.pdf")
    inbound = tg_inbound("look")
    msg = inbound.message.model_copy(
        update={"metadata": MessageMetadata(attachments=(photo, missing, doc))}
    )
    await kit.pipeline.handle(type(inbound)(message=msg, platform_id="100:50"))
    sent = kit.provider.requests[-1].turns[-1].attachments
    assert sent[0].url.startswith("data:image/png;base64,")
    assert sent[1].url == "platform-file:missing"  # left as a reference: described, not shown
    assert sent[2].url == "platform-file:f3"  # not an image: never downloaded
    stored = await kit.store.messages.history(msg.session, 5)
    assert stored[0].metadata.attachments[0].url == "platform-file:f1"  # bytes are never stored

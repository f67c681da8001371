"""SPEC §9 with real gateway processes on one PostgreSQL database and one Redis.

Each test starts two or three `open-clanker gateway` processes on a fresh database, with a
slow model double that answers "answer to: <message>" (so a cross-answer shows) and, where a
platform is involved, the Telegram double. Kill -9 is a real SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.doubles.echo_model import EchoModel, answer_to
from tests.doubles.telegram_double import TelegramDouble, message, update
from tests.replicas_kit import (
    FAILOVER_S,
    alternates,
    cluster,
    eventually,
    needs_services,
)

pytestmark = [needs_services, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
async def model() -> AsyncIterator[EchoModel]:
    m = EchoModel(delay_s=0.2)
    await m.start()
    yield m
    await m.stop()


@pytest.fixture
async def telegram() -> AsyncIterator[TelegramDouble]:
    d = TelegramDouble()
    await d.start()
    yield d
    await d.stop()


async def test_one_session_on_two_replicas_answers_each_message_in_order(
    tmp_path: Path, model: EchoModel
) -> None:
    async with cluster(tmp_path, 2, model.base_url) as c:
        a, b = c.replicas
        for round_ in range(4):
            texts = [f"r{round_}-{who}{i}" for who in "AB" for i in range(2)]
            answers = await asyncio.gather(
                *(c.chat(a if t[3] == "A" else b, t, "shared") for t in texts)
            )
            for text, (status, body) in zip(texts, answers, strict=True):
                assert status == 200, body
                assert body["reply"]["content"] == answer_to(text)  # its own message
        history = await c.history(b, "shared")
        assert len(history) == 32 and alternates(history)
        for question, reply in zip(history[::2], history[1::2], strict=True):
            assert reply["text"] == answer_to(question["text"])
        # Every model call saw alternating turns ending with its own message, and every
        # exchange that came before it.
        for n, sent in enumerate(sorted(model.requests, key=len)):
            assert [m["role"] for m in sent] == ["user", "assistant"] * n + ["user"]


async def test_outbox_parts_go_out_once_and_in_order(
    tmp_path: Path, model: EchoModel, telegram: TelegramDouble
) -> None:
    async with cluster(tmp_path, 2, model.base_url, telegram_url=telegram.base_url) as c:
        a, b = c.replicas
        long = "\n\n".join(f"paragraph {i} " + "x" * 3000 for i in range(3))  # 3 parts

        async def send(replica: Any, chat: int) -> None:
            async with c.http.post(
                replica.base_url + "/api/v1/message",
                json={"channel": "telegram", "channel_id": str(chat), "text": long},
                headers=c.auth,
            ) as r:
                assert r.status == 202, await r.text()

        await asyncio.gather(*(send(a if n % 2 else b, 1000 + n) for n in range(20)))
        # Platform messages too, to both replicas' pipeline (only one polls).
        for n in range(10):
            telegram.push(update(message(f"question {n}", chat_id=2000 + n)))
        await eventually(
            lambda: len(telegram.sent) >= 20 * 3 + 10, 60, "every part and answer delivered"
        )
        await asyncio.sleep(2 * 3)  # a duplicate send would show up by now
        for n in range(20):
            parts = [s.text for s in telegram.sent if s.chat_id == 1000 + n]
            assert len(parts) == 3 and [p.split(" ")[1] for p in parts] == ["0", "1", "2"]
        for n in range(10):
            answers = [s for s in telegram.sent if s.chat_id == 2000 + n]
            assert len(answers) == 1, answers
        assert telegram.conflicts == 0  # one poller at a time


async def test_kill_9_mid_turn_is_answered_once_by_the_survivor(
    tmp_path: Path, model: EchoModel
) -> None:
    async with cluster(tmp_path, 2, model.base_url) as c:
        a, b = c.replicas
        text = "a long think [slow 4]"
        pending = asyncio.create_task(c.chat(a, text, "crash"))
        await eventually(lambda: model.asked(text), 10, "A called the model")
        a.kill()
        with pytest.raises(aiohttp.ClientError):
            await pending  # A's client lost its connection

        async def answered() -> list[dict[str, Any]] | None:
            history = await c.history(b, "crash")
            return history if len(history) == 2 else None

        history = await eventually(answered, FAILOVER_S + 4, "B answered A's message")
        assert [m["text"] for m in history] == [text, answer_to(text)]
        assert len(model.asked(text)) == 2  # A's call, then B's
        assert b.events("pending_resumed")
        await asyncio.sleep(3)
        assert len(await c.history(b, "crash")) == 2  # once


async def test_a_starting_replica_leaves_a_live_turn_alone(
    tmp_path: Path, model: EchoModel
) -> None:
    async with cluster(tmp_path, 3, model.base_url, start=False) as c:
        a, b, late = c.replicas
        for r in (a, b):
            r.start()
        await asyncio.gather(a.wait_ready(), b.wait_ready())
        text = "slow but alive [slow 6]"
        answer = asyncio.create_task(c.chat(a, text, "live"))
        await eventually(lambda: model.asked(text), 10, "A called the model")
        late.start()  # a rolling deploy or a scale-up, mid-turn
        await late.wait_ready()
        status, body = await answer
        assert status == 200 and body["reply"]["content"] == answer_to(text)
        await asyncio.sleep(6)  # several sweeps of the new replica
        assert len(model.asked(text)) == 1
        assert len(await c.history(late, "live")) == 2
        assert not late.events("pending_resumed")


async def test_one_telegram_poller_and_failover_after_kill_9(
    tmp_path: Path, model: EchoModel, telegram: TelegramDouble
) -> None:
    async with cluster(tmp_path, 2, model.base_url, telegram_url=telegram.base_url) as c:

        async def receiver() -> str | None:
            ready = await c.get(c.replicas[0], "/ready")
            holder: str | None = ready["channels"]["telegram"]["receiver"]
            return holder

        holder = await eventually(receiver, 15, "a replica holds the Telegram lease")
        statuses = [await c.get(r, "/api/v1/status") for r in c.replicas]
        ids = [s["replica"] for s in statuses]
        assert holder in ids
        for s in statuses:
            assert s["channels"]["telegram"]["receiver"] == holder  # both name the holder
        telegram.push(update(message("before", chat_id=77)))
        await eventually(lambda: len(telegram.sent) == 1, 20, "answered")
        polling = c.replicas[ids.index(holder)]
        standby = c.replicas[1 - ids.index(holder)]
        assert telegram.conflicts == 0  # one poller at a time while both live
        polling.kill()
        telegram.push(update(message("after the kill", chat_id=77)))
        await eventually(
            lambda: len(telegram.sent) == 2, FAILOVER_S + 5, "the standby took over polling"
        )
        assert [s.text for s in telegram.sent] == [
            answer_to("before"),
            answer_to("after the kill"),
        ]
        # (The killed replica's last long poll may still be open at the double when the new
        # holder polls; that one abandoned poll is the only conflict there can be.)
        assert telegram.conflicts <= 1
        standby_id = (await c.get(standby, "/api/v1/status"))["replica"]
        assert (await c.get(standby, "/ready"))["channels"]["telegram"]["receiver"] == standby_id


async def test_a_concurrent_idempotent_repeat_runs_the_model_once(
    tmp_path: Path, model: EchoModel
) -> None:
    async with cluster(tmp_path, 2, model.base_url) as c:
        a, b = c.replicas
        text = "charge my card once [slow 2]"
        key = {"Idempotency-Key": "order-42"}
        first, second = await asyncio.gather(
            c.chat(a, text, "pay", **key), c.chat(b, text, "pay", **key)
        )
        assert first[0] == second[0] == 200, (first, second)
        assert first[1]["reply"]["id"] == second[1]["reply"]["id"]
        assert first[1]["message"]["id"] == second[1]["message"]["id"]
        assert len(model.asked(text)) == 1
        status, reused = await c.chat(a, "something else", "pay", **key)
        assert status == 422 and reused["error"]["code"] == "idempotency_key_reused"
        assert len(await c.history(a, "pay")) == 2


async def test_a_subscriber_on_one_replica_sees_the_other_replicas_turn_once(
    tmp_path: Path, model: EchoModel
) -> None:
    async with cluster(tmp_path, 2, model.base_url) as c:
        a, b = c.replicas
        async with c.http.ws_connect(b.base_url + "/ws", headers=c.auth) as ws:
            await ws.send_json({"type": "subscribe"})
            await asyncio.sleep(0.5)
            status, _ = await c.chat(a, "seen from afar", "events")
            assert status == 200
            events = []
            while True:  # every frame until two quiet seconds
                try:
                    received = await ws.receive(timeout=2)
                except TimeoutError:
                    break
                frame = json.loads(received.data)
                if frame["type"] == "event":
                    events.append(frame["message"])
            assert [(e["role"], e["text"]) for e in events] == [
                ("user", "seen from afar"),
                ("assistant", answer_to("seen from afar")),
            ]


async def test_cluster_is_a_cluster(tmp_path: Path, model: EchoModel) -> None:
    """The harness itself: replicas share the database and name themselves apart."""
    async with cluster(tmp_path, 2, model.base_url) as c:
        a, b = c.replicas
        status, _ = await c.chat(a, "written at A", "shared-store")
        assert status == 200
        assert len(await c.history(b, "shared-store")) == 2
        ids = {(await c.get(r, "/api/v1/status"))["replica"] for r in c.replicas}
        assert len(ids) == 2


async def test_stop_on_one_replica_ends_the_answer_running_on_another(
    tmp_path: Path, model: EchoModel
) -> None:
    async with cluster(tmp_path, 2, model.base_url) as c:
        a, b = c.replicas
        text = "write me a novel [slow 20]"
        answer = asyncio.create_task(c.chat(a, text, "novel"))
        await eventually(lambda: model.asked(text), 10, "A called the model")
        async with c.http.post(b.base_url + "/api/v1/sessions/novel/stop", headers=c.auth) as r:
            assert r.status == 200
            assert await r.json() == {"session": "api:novel", "stopped": True}
        status, body = await asyncio.wait_for(answer, 10)  # long before the model's 20 s
        assert status == 200 and body["reply"]["finish_reason"] == "stopped"
        history = await c.history(b, "novel")
        assert [m["role"] for m in history] == ["user", "assistant"]
        async with c.http.post(b.base_url + "/api/v1/sessions/novel/stop", headers=c.auth) as r:
            assert (await r.json())["stopped"] is False  # nothing runs now

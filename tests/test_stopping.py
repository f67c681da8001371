"""`/stop` parts on their own: the command parser, and the registry of running model calls."""

from __future__ import annotations

import asyncio

import pytest

from open_clanker.core.errors import ProviderError
from open_clanker.core.types import AgentResponse
from open_clanker.pipeline.commands import Command, parse_command
from open_clanker.pipeline.context import ReplySink
from open_clanker.pipeline.stopping import STOPPED, Stopper


@pytest.mark.parametrize(
    ("text", "bot", "command"),
    [
        ("/stop", None, Command.STOP),
        ("  /STOP  ", None, Command.STOP),
        ("/stop now please", None, Command.STOP),
        ("/stop@clanker_bot", "clanker_bot", Command.STOP),
        ("/stop@OtherBot", "clanker_bot", None),
        ("stop", None, None),
        ("/stopping", None, None),
        ("/new", None, Command.NEW),
        ("/reset", None, Command.NEW),
        ("/", None, None),
        ("/unknown", None, None),
    ],
)
def test_parse_command(text: str, bot: str | None, command: Command | None) -> None:
    assert parse_command(text, bot) is command


class ListSink:
    def __init__(self) -> None:
        self.events: list[str] = []

    async def delta(self, text: str) -> None:
        self.events.append(text)

    async def reset(self) -> None:
        self.events.append("<reset>")


def stopped(text: str) -> AgentResponse:
    return AgentResponse(content=text, model="m", provider="p", finish_reason=STOPPED)


class SlowModel:
    """Streams the given pieces, then waits until released; records whether it was cancelled."""

    def __init__(self, *pieces: str) -> None:
        self.pieces = pieces
        self.streamed = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = False

    async def __call__(self, sink: ReplySink | None) -> AgentResponse:
        try:
            for piece in self.pieces:
                if sink is not None:
                    await sink.delta(piece)
            self.streamed.set()
            await self.release.wait()
            if sink is not None:
                await sink.delta(" and the rest")
            return AgentResponse(
                content="".join(self.pieces) + " and the rest", model="m", provider="p"
            )
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_stop_keeps_the_streamed_text_and_sends_nothing_more() -> None:
    stopper, sink, model = Stopper(), ListSink(), SlowModel("Hello", ", world")
    run = asyncio.create_task(stopper.run("s", model, sink, stopped))
    await model.streamed.wait()
    assert stopper.running("s")
    assert stopper.stop("s") is True
    response = await run
    assert response.content == "Hello, world"
    assert response.finish_reason == STOPPED
    assert model.cancelled
    assert sink.events == ["Hello", ", world"]
    assert not stopper.running("s")
    assert stopper.stop("s") is False  # nothing left to stop


async def test_a_reset_clears_the_kept_text() -> None:
    stopper, sink = Stopper(), ListSink()
    streamed = asyncio.Event()

    async def retried(out: ReplySink | None) -> AgentResponse:
        assert out is not None
        await out.delta("first try")
        await out.reset()
        await out.delta("second")
        streamed.set()
        await asyncio.Event().wait()
        raise AssertionError("not reached")

    run = asyncio.create_task(stopper.run("s", retried, sink, stopped))
    await streamed.wait()
    stopper.stop("s")
    assert (await run).content == "second"
    assert sink.events == ["first try", "<reset>", "second"]


async def test_stop_without_a_stream_keeps_nothing() -> None:
    stopper, model = Stopper(), SlowModel("ignored")
    run = asyncio.create_task(stopper.run("s", model, None, stopped))
    await model.streamed.wait()
    assert stopper.stop("s")
    assert (await run).content == ""


async def test_stop_names_one_session_only() -> None:
    stopper = Stopper()
    a, b = SlowModel("a"), SlowModel("b")
    run_a = asyncio.create_task(stopper.run("a", a, ListSink(), stopped))
    run_b = asyncio.create_task(stopper.run("b", b, ListSink(), stopped))
    await asyncio.gather(a.streamed.wait(), b.streamed.wait())
    assert stopper.stop("nobody") is False
    assert stopper.stop("a") is True
    assert (await run_a).finish_reason == STOPPED
    assert not run_b.done()
    b.release.set()
    assert (await run_b).finish_reason == "stop"


async def test_an_answer_that_finished_is_not_stopped() -> None:
    stopper, model = Stopper(), SlowModel("done")
    model.release.set()
    response = await stopper.run("s", model, ListSink(), stopped)
    assert response.finish_reason == "stop"
    assert stopper.stop("s") is False


async def test_errors_pass_through_when_not_stopped() -> None:
    stopper = Stopper()

    async def failing(_sink: ReplySink | None) -> AgentResponse:
        raise ProviderError("down", "p")

    with pytest.raises(ProviderError):
        await stopper.run("s", failing, None, stopped)
    assert not stopper.running("s")


async def test_cancelling_the_turn_cancels_the_model_call() -> None:
    stopper, model = Stopper(), SlowModel("x")
    run = asyncio.create_task(stopper.run("s", model, ListSink(), stopped))
    await model.streamed.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert model.cancelled
    assert not stopper.running("s")

"""The message pipeline every channel shares: dedupe → access → limits → store → session →
model → store → deliver → publish."""

from open_clanker.pipeline.assemble import build_pipeline
from open_clanker.pipeline.bus import EventBus, MemoryBus
from open_clanker.pipeline.context import Ending, ReplySink, Turn
from open_clanker.pipeline.outbox_worker import OutboxWorker
from open_clanker.pipeline.pipeline import Pipeline

__all__ = [
    "Ending",
    "EventBus",
    "MemoryBus",
    "OutboxWorker",
    "Pipeline",
    "ReplySink",
    "Turn",
    "build_pipeline",
]

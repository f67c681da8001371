"""The cyclic garbage collector during the gateway's start, and the heap the start leaves.

A start imports ~950 modules and builds the app: hundreds of thousands of long-lived objects
(classes, functions, pydantic and FastAPI schemas), almost none of them garbage. The collector
cannot know that: while they are made it runs full (generation 2) collections over all of them
again and again, ~0.15–0.2 s of a start on this machine kind (docs/benchmarks.md, "Levers:
start-up and idle memory"). And after the start, every full collection under load walks them
once more.

So the gateway pauses the collector while it starts, collects once when the app is built, then
moves every surviving object into the permanent generation (`gc.freeze`), which later
collections skip, and turns the collector back on. Objects made after that are collected as
always; reference counting frees everything else as it always does.
"""

from __future__ import annotations

import gc


def pause_collector() -> None:
    """At the very start of `gateway`, before its heavy imports."""
    gc.disable()


def settle_heap() -> None:
    """Once the app is built, before serving: collect the start's garbage, freeze the rest."""
    gc.collect()
    gc.freeze()
    gc.enable()

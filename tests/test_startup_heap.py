"""The collector is paused while the gateway starts and the heap the start leaves is frozen."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from open_clanker.core.startup_heap import pause_collector, settle_heap


@pytest.fixture
def restored_collector() -> Iterator[None]:
    yield
    gc.unfreeze()
    gc.enable()


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


@pytest.mark.usefixtures("restored_collector")
def test_start_garbage_is_collected_and_the_rest_frozen() -> None:
    pause_collector()
    assert not gc.isenabled()
    garbage = _Node()
    gone = weakref.ref(garbage)
    kept = _Node()
    del garbage
    settle_heap()
    assert gc.isenabled()
    assert gone() is None  # the start's cyclic garbage is not frozen with the heap
    assert gc.get_freeze_count() > 0
    assert kept.me is kept


@pytest.mark.usefixtures("restored_collector")
def test_objects_made_after_the_start_are_collected() -> None:
    pause_collector()
    settle_heap()
    later = _Node()
    gone = weakref.ref(later)
    del later
    gc.collect()
    assert gone() is None

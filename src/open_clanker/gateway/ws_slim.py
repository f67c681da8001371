"""Lighter stand-ins for the two asyncio primitives uvicorn's WebSocket protocol holds per
connection, for as long as the socket is open.

An `asyncio.Queue` is three deques and an `Event` (a fourth deque); each deque allocates a
64-slot block up front, so the queue costs ~3 KiB and the `writable` event ~0.7 KiB on every
idle socket: a tenth of what one held (docs/benchmarks.md, "Levers: WebSockets"). uvicorn uses
only `put_nowait`, `get` and `empty` of the queue and `set`, `clear` and `wait` of the event
(uvicorn 0.55, `websockets_sansio_impl.py`); these implement exactly those, with the same
semantics, on plain lists that stay empty until something waits.
"""

from __future__ import annotations

import asyncio
from typing import Any


class Inbox:
    """A FIFO with asyncio.Queue's `put_nowait`, `get` and `empty` (unbounded, like uvicorn's)."""

    __slots__ = ("_getters", "_items")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._getters: list[asyncio.Future[None]] = []

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        self._wake_next()

    async def get(self) -> Any:
        while not self._items:
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()
                if getter in self._getters:
                    self._getters.remove(getter)
                # Woken and then cancelled: the item it was woken for goes to the next getter.
                if self._items:
                    self._wake_next()
                raise
        return self._items.pop(0)

    def empty(self) -> bool:
        return not self._items

    def _wake_next(self) -> None:
        while self._getters:
            getter = self._getters.pop(0)
            if not getter.done():
                getter.set_result(None)
                return


class Flag:
    """asyncio.Event's `set`, `clear`, `wait` and `is_set`."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] = []

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        return True

"""Telegram and Discord on loopback for the benchmark (the test doubles in tests/doubles).

Run: `python -m bench.channel_doubles`. Prints one JSON line with both base URLs and tokens,
then `{"connected": true}` once the gateway has identified on Discord's WebSocket and polled
Telegram's getUpdates (both channels up), and runs until stdin closes or SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

from tests.doubles.discord_double import DiscordDouble
from tests.doubles.telegram_double import TelegramDouble


async def main() -> None:
    tg = TelegramDouble()
    await tg.start()
    dc = DiscordDouble()
    await dc.start()
    print(
        json.dumps(
            {
                "telegram_url": tg.base_url,
                "telegram_token": tg.token,
                "discord_url": dc.api_base_url,
                "discord_token": dc.token,
            }
        ),
        flush=True,
    )
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.readline() or done.set())

    async def both_up() -> None:
        try:
            await dc.wait_identified(timeout=60)
            async with asyncio.timeout(60):
                while not any(c.method == "getUpdates" for c in tg.calls):
                    await asyncio.sleep(0.05)
        except TimeoutError:
            print(json.dumps({"connected": False}), flush=True)
            return
        print(json.dumps({"connected": True}), flush=True)

    waiter = asyncio.create_task(both_up())
    await done.wait()
    waiter.cancel()
    await tg.stop()
    await dc.stop()


if __name__ == "__main__":
    asyncio.run(main())

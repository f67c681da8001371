"""What-if launcher: the real gateway CLI with a few fixes patched in at start, to measure their
gain before they land in src/. Diagnosis only; `make bench` does not use it.

Run exactly like `open-clanker`: `.venv/bin/python -m bench.whatif_gateway gateway --port P`,
with any of these environment flags set to 1:
  WHATIF_NODELAY  set TCP_NODELAY on the listening socket (Linux copies it to accepted ones)
  WHATIF_UVLOOP   run the gateway's asyncio.run() on uvloop
  WHATIF_POOL1    SQLite engine with one pooled connection (no writer contention)
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any


def _patch() -> None:
    if os.environ.get("WHATIF_NODELAY"):
        import open_clanker.gateway.server as srv

        orig_bind = srv.bind_socket

        def bind_socket(host: str, port: int) -> socket.socket:
            sock = orig_bind(host, port)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock

        srv.bind_socket = bind_socket
    if os.environ.get("WHATIF_UVLOOP"):
        import uvloop

        uvloop.install()
    if os.environ.get("WHATIF_POOL1"):
        import sqlalchemy as sa
        from sqlalchemy.ext.asyncio import create_async_engine

        import open_clanker.storage.engine as eng
        import open_clanker.storage.store as st

        orig_make = eng.make_engine

        def make_engine(url: str) -> Any:
            full = eng.async_url(url)
            if not full.startswith("sqlite"):
                return orig_make(url)
            engine = create_async_engine(
                full, connect_args={"timeout": 30}, pool_size=1, max_overflow=0
            )
            sa.event.listen(engine.sync_engine, "connect", eng._sqlite_pragmas)
            return engine

        eng.make_engine = make_engine
        st.make_engine = make_engine  # type: ignore[attr-defined]


if __name__ == "__main__":
    _patch()
    from open_clanker.cli.main import run

    sys.argv[0] = "open-clanker"
    run()

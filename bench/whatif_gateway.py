"""What-if launcher: the real gateway CLI with a few fixes patched in at start, to measure their
gain before they land in src/. Diagnosis only; `make bench` does not use it.

Run exactly like `open-clanker`: `.venv/bin/python -m bench.whatif_gateway gateway --port P`,
with any of these environment flags set to 1:
  WHATIF_UVLOOP   install uvloop's policy (the CLI already runs on uvloop: a no-op since then)
  WHATIF_GC_YOUNG the collector's youngest generation collected every 20,000 allocations, not 700
  WHATIF_NO_CHECKPOINT  the SQLite writer never checkpoints in its commits (the checkpointer
                        thread still does: storage/checkpointer.py); before that thread
                        existed this meant no checkpoint at all
The first what-ifs measured here (TCP_NODELAY, one SQLite writer, uvloop) have landed in src/;
add the next candidate fix as a new flag.
"""

from __future__ import annotations

import os
import sys


def _patch() -> None:
    if os.environ.get("WHATIF_UVLOOP"):
        import uvloop

        uvloop.install()
    if os.environ.get("WHATIF_GC_YOUNG"):
        import gc

        gc.set_threshold(20_000, 10, 10)
    if os.environ.get("WHATIF_NO_CHECKPOINT"):
        from typing import Any

        from open_clanker.storage import database

        pragmas = database._sqlite_pragmas

        def no_checkpoint(dbapi_conn: Any, record: Any) -> None:
            pragmas(dbapi_conn, record)
            dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")

        database._sqlite_pragmas = no_checkpoint


if __name__ == "__main__":
    _patch()
    from open_clanker.cli.main import run

    sys.argv[0] = "open-clanker"
    run()

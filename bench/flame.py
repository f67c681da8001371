"""A py-spy flame graph (SVG) of the gateway during the sequential JSON run of `make bench`.

Run: `make flame` (= `.venv/bin/python -m bench.flame docs/flame-after.svg`). Starts the model
double and a gateway as `make bench` does (web chat on, SQLite in a fresh data dir), sends 200
warm-up messages, then records the gateway process with `py-spy record` (100 samples/s, every
thread's on-CPU stack, `--nonblocking` so the gateway is never paused) while `bench/load.py`
sends sequential `POST /api/v1/chat` requests over the 50 sessions. Needs py-spy in the venv
(`.venv/bin/pip install py-spy`) and ptrace on the gateway (root, or ptrace_scope 0).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from bench import run_all


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path, help="the SVG to write, e.g. docs/flame-after.svg")
    p.add_argument("--seconds", type=int, default=20)
    args = p.parse_args()
    exe = run_all.pyspy()
    if exe is None:
        sys.exit("py-spy is not installed: .venv/bin/pip install py-spy")
    out = args.out.resolve()
    with run_all.model_double() as double, run_all.gateway(double, "warning") as (base, pid):
        run_all.load(base, 200, 1, False, 0, 30.0)  # warm-up: sessions and caches
        spy = subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--duration", str(args.seconds), "--rate", "100",
             "--nonblocking", "--format", "flamegraph", "-o", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        r = run_all.load(base, 1_000_000, 1, False, 0, args.seconds + 2, offset=200)
        _, err = spy.communicate(timeout=60)
        if spy.returncode != 0:
            sys.exit(f"py-spy failed: {err.strip()[-500:]}")
    run_all.log(f"{out}: {r['ok']} sequential messages at {r['rps']} msg/s, p50 {r['p50_ms']} ms")


if __name__ == "__main__":
    main()

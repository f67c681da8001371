"""Two source trees' gateways, alternating, beside the floor: did a change cost speed?

Run: `.venv/bin/python -m bench.ab_trees BEFORE_DIR AFTER_DIR [--rounds 4]`, each DIR a checkout
with its own `.venv` (`git worktree add /tmp/before 884c57a && cd /tmp/before && python3 -m
venv .venv && .venv/bin/pip install -e .`). One model double and one floor serve the whole run.
Each round starts a fresh gateway from each tree in turn (the order flips every round, so neither
always runs first on the shared machine) and measures it as `make bench` does on the
single-process SQLite path: JSON sequential, JSON 50 in flight, SSE sequential, with the
server's CPU per message; the floor runs once per round too. Prints medians and ranges over the
rounds and AFTER against BEFORE; the verdict is "no regression beyond 5 %" on the medians of
msg/s and CPU per message.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from bench import run_all

RUNS = (("json_seq", 1, False, 2000), ("json_c50", 50, False, 3000), ("sse_seq", 1, True, 1500))
CAP_S = 12.0
LIMIT = 0.05
# Settings the older tree does not know (its config refuses unknown keys); the default (256
# connections per address) is plenty for 50 in flight.
OLD_KEYS: dict[str, str | None] = {"OPENCLAW_SERVER__MAX_CONNECTIONS_PER_ADDRESS": None}


def measure(base: str, pid: int, offset: int) -> dict[str, dict[str, Any]]:
    out = {}
    for name, conc, stream, n in RUNS:
        warm = 200 if conc == 1 else 100
        cpu0 = run_all.cpu_s(pid)
        r = run_all.load(base, n, conc, stream, warm, CAP_S, offset=offset)
        r["cpu_ms"] = 1000 * (run_all.cpu_s(pid) - cpu0) / (warm + r["sent"])
        offset += warm + r["sent"]
        out[name] = r
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--rounds", type=int, default=4)
    args = p.parse_args()
    trees = {"before": args.before, "after": args.after}
    res: dict[str, list[dict[str, dict[str, Any]]]] = {"before": [], "after": [], "floor": []}
    with run_all.model_double() as double:
        for rnd in range(args.rounds):
            order = ("before", "after") if rnd % 2 == 0 else ("after", "before")
            with run_all.floor_app(double) as (fbase, fpid):
                res["floor"].append(measure(fbase, fpid, 0))
            for name in order:
                cli = str(trees[name].resolve() / ".venv" / "bin" / "open-clanker")
                with run_all.gateway(double, "warning", extra_env=OLD_KEYS, cli=cli) as (
                    gbase,
                    gpid,
                ):
                    res[name].append(measure(gbase, gpid, 0))
                run_all.log(f"round {rnd + 1} {name}: " + ", ".join(
                    f"{k} {v['rps']:.0f} msg/s p50 {v['p50_ms']:.2f} CPU {v['cpu_ms']:.2f}"
                    for k, v in res[name][-1].items()))  # fmt: skip
    print(f"{args.rounds} rounds; median (range) over the rounds\n")
    print("| run | measure | floor | before | after | after vs before |")
    print("| --- | --- | --- | --- | --- | --- |")
    worst = 0.0
    for name, *_ in RUNS:
        for key, label, higher_better in (("rps", "msg/s", True), ("p50_ms", "p50 ms", False),
                                          ("p99_ms", "p99 ms", False), ("cpu_ms", "CPU ms/msg", False)):  # fmt: skip
            vals = {k: [r[name][key] for r in v] for k, v in res.items()}
            med = {k: statistics.median(v) for k, v in vals.items()}
            change = med["after"] / med["before"] - 1
            if key in ("rps", "cpu_ms"):  # the verdict's measures
                worst = max(worst, -change if higher_better else change)

            cells = {k: f"{med[k]:.2f} ({min(vals[k]):.2f}–{max(vals[k]):.2f})" for k in vals}
            print(f"| {name} | {label} | {cells['floor']} | {cells['before']} | {cells['after']} "
                  f"| {100 * change:+.1f} % |")  # fmt: skip
    verdict = "pass" if worst <= LIMIT else "MISS"
    print(
        f"\nWorst regression on msg/s or CPU per message: {100 * worst:+.1f} % "
        f"(limit {100 * LIMIT:.0f} %): {verdict}"
    )


if __name__ == "__main__":
    main()

"""A/B of source trees in one run: the floor and the gateway built from several git revisions,
measured in interleaved rounds on the same machine at the same time.

Run: `.venv/bin/python -m bench.ab_revisions [--rounds 2] [--seconds 8] [--api chat] REF [REF ...]`
where REF is a git revision (`HEAD~1`, a branch, a commit) or `WORKTREE` (the files as they
are now). Each revision's `src/` is exported to a temporary directory and its gateway started
with that directory first on `PYTHONPATH` (the venv's editable install is only a path entry,
so the exported tree wins). Every process is started once; each round measures, for every
target in turn, JSON sequential and JSON with 50 in flight (`bench/load.py`), and the server's
CPU per message. The table shows each measurement's median over the rounds and its spread
(min–max), and the ratio to the floor's median. Sessions fill to the history budget in the
warm-up (400 messages per gateway), so every turn loads a full history.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.run_all import (
    PY,
    ROOT,
    cpu_s,
    floor_app,
    free_port,
    gateway_env,
    load,
    log,
    model_double,
    raise_nofile,
    stop,
    wait_http,
)

RUN_CLI = "import sys; sys.argv[0] = 'open-clanker'; from open_clanker.cli.main import run; run()"


def export_tree(ref: str, into: Path) -> Path:
    """`src/` of `ref` (or of the worktree as it is) under `into`; returns the src path."""
    into.mkdir(parents=True)
    if ref == "WORKTREE":
        shutil.copytree(ROOT / "src", into / "src", ignore=shutil.ignore_patterns("__pycache__"))
    else:
        archive = subprocess.run(
            ["git", "archive", ref, "src"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


@contextlib.contextmanager
def tree_gateway(src: Path, double_url: str, level: str) -> Iterator[tuple[str, int]]:
    data_dir = tempfile.mkdtemp(prefix="clanker-ab-")
    port = free_port()
    env = gateway_env(data_dir, double_url, level)
    env["PYTHONPATH"] = str(src)
    proc = subprocess.Popen(
        [PY, "-c", RUN_CLI, "gateway", "--port", str(port)],
        cwd=data_dir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(Path(data_dir) / "gateway.stderr", "ab"),  # noqa: SIM115 - the child's
        preexec_fn=raise_nofile,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/health", 30)
        yield base, proc.pid
    finally:
        stop(proc)
        shutil.rmtree(data_dir, ignore_errors=True)


RUNS = (("json_seq", 1, 3000), ("json_c50", 50, 6000))


def measure(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="clanker-ab-src-"))
    results: dict[str, Any] = {"refs": args.refs, "rounds": args.rounds, "api": args.api}
    cells: dict[str, dict[str, list[dict[str, Any]]]] = {}
    try:
        srcs = [export_tree(ref, work / f"t{n}") for n, ref in enumerate(args.refs)]
        with contextlib.ExitStack() as stack:
            double = stack.enter_context(model_double())
            targets: list[tuple[str, str, int]] = [
                ("floor", *stack.enter_context(floor_app(double)))
            ]
            for n, (ref, src) in enumerate(zip(args.refs, srcs, strict=True)):
                base, pid = stack.enter_context(tree_gateway(src, double, args.level))
                targets.append((f"{n + 1}:{ref}", base, pid))
            offsets = {name: 0 for name, _b, _p in targets}
            for name, base, _pid in targets[1:]:  # every session filled to the history budget
                offsets[name] += load(base, 400, 50, False, 0, 30.0, api=args.api)["sent"]
            for rnd in range(args.rounds):
                for run_name, conc, count in RUNS:
                    for name, base, pid in targets:
                        cpu0 = cpu_s(pid)
                        warm = 100
                        r = load(
                            base, count, conc, False, warm, args.seconds, offsets[name], args.api
                        )
                        r["cpu_ms_per_msg"] = round(
                            1000 * (cpu_s(pid) - cpu0) / max(1, warm + r["sent"]), 3
                        )
                        offsets[name] += warm + r["sent"]
                        cells.setdefault(name, {}).setdefault(run_name, []).append(r)
                        log(
                            f"round {rnd + 1} {name} {run_name}: {r['rps']} msg/s "
                            f"p50 {r['p50_ms']} p99 {r['p99_ms']} cpu {r['cpu_ms_per_msg']} "
                            f"errors {r['errors']}"
                        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["cells"] = cells
    return results


def _spread(values: list[float], fmt: str) -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return format(med, fmt)
    return f"{format(med, fmt)} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def report(results: dict[str, Any]) -> str:
    cells = results["cells"]
    floor = cells["floor"]
    lines = [
        f"rounds: {results['rounds']}, api: {results['api']}; median (min–max) over rounds",
        "",
        "| target | seq msg/s | seq / floor | seq p50 / p99 ms | seq CPU ms/msg "
        "| 50 in flight msg/s | c50 / floor | c50 CPU ms/msg |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    f_seq = statistics.median(r["rps"] for r in floor["json_seq"])
    f_c50 = statistics.median(r["rps"] for r in floor["json_c50"])
    for name, runs in cells.items():
        seq, c50 = runs["json_seq"], runs["json_c50"]
        s_rps = [r["rps"] for r in seq]
        c_rps = [r["rps"] for r in c50]
        lines.append(
            f"| {name} | {_spread(s_rps, '.0f')} | {statistics.median(s_rps) / f_seq:.2f} "
            f"| {statistics.median(r['p50_ms'] for r in seq):.2f} / "
            f"{statistics.median(r['p99_ms'] for r in seq):.2f} "
            f"| {_spread([r['cpu_ms_per_msg'] for r in seq], '.2f')} "
            f"| {_spread(c_rps, '.0f')} | {statistics.median(c_rps) / f_c50:.2f} "
            f"| {_spread([r['cpu_ms_per_msg'] for r in c50], '.2f')} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("refs", nargs="+", help="git revisions, or WORKTREE")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seconds", type=float, default=8.0, help="time cap of each measurement")
    p.add_argument("--api", choices=("chat", "openai"), default="chat")
    p.add_argument("--level", default="warning", help="the gateways' log level")
    p.add_argument("--out", default="", help="write the raw results here (JSON)")
    args = p.parse_args()
    raise_nofile()
    results = measure(args)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    print(report(results))
    sys.stdout.flush()


if __name__ == "__main__":
    main()

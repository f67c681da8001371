"""What a gateway start imports: `python -X importtime` of a real `gateway` up to `/health` 200.

Run: `.venv/bin/python -m bench.import_graph [--channels] [--top N]`. Prints the idle RSS, the
number of modules and, per top-level package, its modules and its self import time (the sum of
`self` over its modules, so nothing is counted twice), largest first. A what-it-costs list for
the "import only what the configuration uses" lever; the web chat is on, no channels (or
Telegram and Discord against the loopback doubles with `--channels`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench import run_all

NAMES: list[str] = []  # every module imported, in order


def parse(stderr: str) -> tuple[Counter[str], Counter[str]]:
    self_us: Counter[str] = Counter()
    count: Counter[str] = Counter()
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "| imported package" in line:
            continue
        own, _cum, name = line[len("import time:") :].split("|")
        NAMES.append(name.strip())
        top = name.strip().split(".")[0]
        self_us[top] += int(own)
        count[top] += 1
    return self_us, count


def measure(channels: bool) -> dict[str, object]:
    data_dir = tempfile.mkdtemp(prefix="clanker-imports-")
    port = run_all.free_port()
    env = run_all.gateway_env(data_dir, "http://127.0.0.1:9/v1", "warning")
    doubles = None
    if channels:
        doubles = subprocess.Popen(
            [run_all.PY, "-m", "bench.channel_doubles"],
            cwd=run_all.ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert doubles.stdout is not None
        urls = json.loads(doubles.stdout.readline())
        env.update(
            OPENCLAW_TELEGRAM_BOT_TOKEN=urls["telegram_token"],
            OPENCLAW_CHANNELS__TELEGRAM__API_BASE_URL=urls["telegram_url"],
            OPENCLAW_DISCORD_BOT_TOKEN=urls["discord_token"],
            OPENCLAW_CHANNELS__DISCORD__API_BASE_URL=urls["discord_url"],
        )
    err = Path(data_dir) / "stderr"
    with err.open("w") as fh:
        proc = subprocess.Popen(
            [run_all.PY, "-X", "importtime", run_all.CLI, "gateway", "--port", str(port)],
            cwd=data_dir,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=fh,
        )
        try:
            run_all.wait_http(f"http://127.0.0.1:{port}/health", 60)
            if doubles is not None:
                assert doubles.stdout is not None
                doubles.stdout.readline()  # both channels connected
            time.sleep(1.0)
            rss = run_all.rss_kib(proc.pid)
        finally:
            run_all.stop(proc)
            if doubles is not None:
                run_all.stop(doubles)
    self_us, count = parse(err.read_text())
    return {"rss_kib": rss, "modules": sum(count.values()), "self_us": self_us, "count": count}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--channels", action="store_true")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--list", default="", help="also list the modules under this prefix")
    args = p.parse_args()
    r = measure(args.channels)
    self_us: Counter[str] = r["self_us"]  # type: ignore[assignment]
    count: Counter[str] = r["count"]  # type: ignore[assignment]
    print(
        f"idle RSS {int(r['rss_kib']) / 1024:.1f} MiB (under -X importtime), {r['modules']} modules"
    )
    print("| package | modules | self import ms |\n| --- | --- | --- |")
    for name, us in self_us.most_common(args.top):
        print(f"| {name} | {count[name]} | {us / 1000:.1f} |")
    if args.list:
        print(" ".join(n for n in NAMES if n.startswith(args.list)))


if __name__ == "__main__":
    main()

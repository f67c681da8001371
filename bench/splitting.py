"""Splitting: event-loop time to cut one long reply for Telegram and for Discord.

Run: `.venv/bin/python -m bench.splitting [--runs N] [--json]` (not part of `make bench`).

The outbox rows of a reply are made on the event loop (`Pipeline` → `channel.split`), so the
time one call takes is time no other message is served. Three replies, each split whole:
- 4k: a 4,000-character answer of paragraphs, lists, inline markup and a code block;
- 44k one line: a 44,000-character line of words with markup and no newline (the worst case
  for a splitter that searches each line for a cut);
- 100k: 100,000 characters of the 4k answer's mix, code blocks included.
Each figure is the median of `--runs` calls (default 7) after one warm-up call, in ms of this
process's CPU time (`time.process_time`): on a shared machine, wall time also counts the
moments another process had the core.
`--edges` adds inputs at the edges of the algorithms (one huge word, nothing but markers,
50,000 one-character lines), each about 100,000 characters.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from open_clanker.channels.discord.splitting import split_for_discord
from open_clanker.channels.telegram.splitting import split_for_telegram

TARGET_MS = 20.0  # a 100,000-character reply (issue 12)

_PARAGRAPH = (
    "The **gateway** keeps each conversation's history and calls the model with `history` "
    "trimmed to the budget; see [the docs](https://example.org/docs) for _details_. "
)
_LIST = "- first point with **bold**\n- second point with `code`\n  - a nested point\n"
_CODE = "```python\n" + "\n".join(f"total += compute(item_{i})  # step {i}" for i in range(12))
_CODE += "\n```\n"


def mixed(chars: int) -> str:
    """Paragraphs, lists and code blocks, cut to `chars` characters at a line end."""
    block = "\n\n".join([_PARAGRAPH * 3, _LIST, _CODE, _PARAGRAPH * 2]) + "\n\n"
    text = block * (chars // len(block) + 1)
    return text[:chars]


def one_line(chars: int) -> str:
    words = "**bold** plain _it_ `code` word [link](https://example.org/x) "
    return (words * (chars // len(words) + 1))[:chars]


INPUTS: dict[str, Callable[[], str]] = {
    "4k": lambda: mixed(4_000),
    "44k one line": lambda: one_line(44_000),
    "100k": lambda: mixed(100_000),
}

EDGES: dict[str, Callable[[], str]] = {
    "one word": lambda: "x" * 100_000,
    "emoji": lambda: "\N{GRINNING FACE}" * 50_000,
    "unpaired *": lambda: "*a " * 33_000,
    "code spans": lambda: "`a " * 33_000,
    "short lines": lambda: "a\n" * 50_000,
    "empty blocks": lambda: "```\n" * 25_000,
}

SPLITTERS: dict[str, Callable[[str], list[str]]] = {
    "telegram": split_for_telegram,
    "discord": split_for_discord,
}


def measure(split: Callable[[str], list[str]], text: str, runs: int) -> tuple[float, int]:
    parts = split(text)  # warm-up (regex caches, allocator)
    times = []
    for _ in range(runs):
        started = time.process_time()
        split(text)
        times.append((time.process_time() - started) * 1000)
    return statistics.median(times), len(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--edges", action="store_true")
    args = parser.parse_args()
    results = []
    inputs = {**INPUTS, **(EDGES if args.edges else {})}
    for input_name, make in inputs.items():
        text = make()
        for splitter_name, split in SPLITTERS.items():
            ms, parts = measure(split, text, args.runs)
            results.append(
                {
                    "splitter": splitter_name,
                    "input": input_name,
                    "chars": len(text),
                    "parts": parts,
                    "ms": round(ms, 2),
                }
            )
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'splitter':<10} {'input':<14} {'chars':>8} {'parts':>6} {'ms':>9}")
    for r in results:
        print(f"{r['splitter']:<10} {r['input']:<14} {r['chars']:>8} {r['parts']:>6} {r['ms']:>9}")
    worst = max(r["ms"] for r in results if r["input"] == "100k")
    verdict = "meets" if worst < TARGET_MS else "misses"
    print(f"100k worst: {worst} ms, {verdict} the {TARGET_MS:.0f} ms target")


if __name__ == "__main__":
    main()

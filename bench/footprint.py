"""Footprint: the disk size and package count of a fresh install, and the size of our source.

Run: `.venv/bin/python -m bench.footprint [--source DIR] [--json]` (`make bench` runs it too).

Each install goes into a new virtual environment made with `--without-pip`, through this
interpreter's pip (`pip --python`), so the environment's site-packages holds exactly what
`pip install <source>[extras]` brought, bytecode included as pip compiles it:
- size: disk usage of that site-packages, as `du -s` counts it (allocated blocks), in MiB;
- packages: the installed distributions, open-clanker itself included (pip, setuptools and
  wheel would be excluded, but a `--without-pip` environment has none).
`--source` measures another checkout (e.g. a `git worktree` of an older commit).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
INSTALLER = frozenset({"pip", "setuptools", "wheel"})

# Targets (from the issue), and what nanobot measured for the same install.
T_SIZE_MIB = 120.0
T_PACKAGES = 45

# label -> extras installed with the package
INSTALLS = {
    "gateway, every channel": "",
    "with [postgres,redis] (the Docker image)": "postgres,redis",
}

_LIST_DISTS = (
    "import importlib.metadata as m, json; "
    "print(json.dumps(sorted({d.metadata['Name'] for d in m.distributions()}, key=str.lower)))"
)


def disk_usage(path: Path) -> int:
    """Bytes allocated on disk under `path`, as `du -s` counts them (hard links once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for entry in [path, *path.rglob("*")]:
        st = entry.lstat()
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        total += st.st_blocks * 512
    return total


def measure_install(source: Path, extras: str) -> dict[str, Any]:
    target = f"{source}[{extras}]" if extras else str(source)
    with tempfile.TemporaryDirectory(prefix="clanker-footprint-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        python = venv / "bin" / "python"
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", target],
            check=True,
        )
        install_s = time.perf_counter() - started
        out = subprocess.run(
            [str(python), "-c", _LIST_DISTS], capture_output=True, text=True, check=True
        )
        names = [n for n in json.loads(out.stdout) if n.lower() not in INSTALLER]
        (site,) = venv.glob("lib/python*/site-packages")
        size = disk_usage(site)
    return {
        "extras": extras,
        "size_mib": round(size / MIB, 1),
        "packages": len(names),
        "names": names,
        "install_s": round(install_s, 1),
    }


def source_lines(source: Path) -> dict[str, int]:
    package = source / "src" / "open_clanker"
    py = [p for p in package.rglob("*.py") if "__pycache__" not in p.parts]
    static = [p for p in (package / "gateway" / "static").glob("*") if p.is_file()]
    return {
        "py_files": len(py),
        "py_lines": sum(len(p.read_text(encoding="utf-8").splitlines()) for p in py),
        "static_files": len(static),
        "static_lines": sum(len(p.read_bytes().splitlines()) for p in static),
    }


def measure(source: Path = ROOT) -> dict[str, Any]:
    installs = {}
    for label, extras in INSTALLS.items():
        what = f"{source}[{extras}]" if extras else str(source)
        print(f"[footprint] pip install {what}", file=sys.stderr, flush=True)
        installs[label] = measure_install(source, extras)
    return {
        "python": sys.version.split()[0],
        "installs": installs,
        "source": source_lines(source),
    }


def markdown(res: dict[str, Any]) -> str:
    rows = ["| install | size on disk | packages | target |", "| --- | --- | --- | --- |"]
    for label, r in res["installs"].items():
        target = ""
        if not r["extras"]:
            size_ok = "pass" if r["size_mib"] <= T_SIZE_MIB else "MISS"
            count_ok = "pass" if r["packages"] <= T_PACKAGES else "MISS"
            target = (
                f"≤ {T_SIZE_MIB:.0f} MB: {size_ok}; ≤ {T_PACKAGES} packages: {count_ok} "
                "(nanobot: 390 MB, 89)"
            )
        rows.append(f"| {label} | {r['size_mib']:.1f} MiB | {r['packages']} | {target} |")
    src = res["source"]
    rows.append(
        f"| source: `src/open_clanker` | {src['py_lines']:,} lines of Python in "
        f"{src['py_files']} files, + {src['static_lines']:,} lines of web chat page "
        f"in {src['static_files']} files | | |"
    )
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--source", type=Path, default=ROOT, help="the checkout to install")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args()
    res = measure(args.source.resolve())
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(markdown(res))
    for label, r in res["installs"].items():
        print(f"\n{label} ({r['install_s']} s): {', '.join(r['names'])}")


if __name__ == "__main__":
    main()

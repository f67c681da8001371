"""Slack's Events API through the whole gateway: signed requests to /slack/events, answered in
the thread, retries answered once, forgeries and replays refused; and the config checks."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from open_clanker.config.model import Config
from tests.doubles.slack_double import BOT_USER_ID, SlackDouble
from tests.harness import RunningGateway, running_gateway, settled
from tests.proc import clean_env, cli

pytestmark = pytest.mark.usefixtures("data_dir")

GENERAL = "C0GENERAL1"
ALICE = "U0ALICE001"
PUBLIC = "bot.example.com"


def events_config(double: SlackDouble) -> Config:
    return Config.model_validate(
        {
            "server": {"allowed_hosts": []},
            "access": {"dm_policy": "allowlist", "allow": [f"slack:{ALICE}"]},
            "agent": {"provider": "echo"},
            "channels": {
                "webchat": {"enabled": False},
                "slack": {
                    "mode": "events",
                    "bot_token": double.bot_token,
                    "signing_secret": double.signing_secret,
                    "api_base_url": double.api_base_url,
                    "allowed_channels": [GENERAL],
                },
            },
        }
    )


@pytest.fixture
async def double() -> AsyncIterator[SlackDouble]:
    async with SlackDouble() as d:
        d.add_channel(GENERAL)
        yield d


@pytest.fixture
async def gw(double: SlackDouble) -> AsyncIterator[RunningGateway]:
    async with running_gateway(events_config(double)) as gateway:
        yield gateway


def url(gw: RunningGateway) -> str:
    return f"{gw.base_url}/slack/events"


async def test_url_verification_is_answered_on_the_public_name(
    double: SlackDouble, gw: RunningGateway
) -> None:
    body = {
        "token": "x",
        "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmd",
        "type": "url_verification",
    }
    (delivery,) = await double.deliver_http(url(gw), body, host=PUBLIC)
    assert delivery.status == 200
    assert json.loads(delivery.body) == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmd"}
    async with aiohttp.ClientSession() as http:
        headers = {**gw.auth, "Host": PUBLIC}
        async with http.get(f"{gw.base_url}/api/v1/status", headers=headers) as r:
            assert r.status == 403  # only the events path is open to the public name


async def test_a_signed_event_is_answered_in_its_thread_and_a_retry_once(
    double: SlackDouble, gw: RunningGateway
) -> None:
    event = double.message(GENERAL, f"<@{BOT_USER_ID}> over http", user=ALICE)
    body = double.callback(event)
    deliveries = await double.deliver_http(url(gw), body, host=PUBLIC)
    assert [d.status for d in deliveries] == [200]
    await double.wait_for(lambda: len(double.posted) >= 1)
    # Slack did not see our 200 (a timeout on its side) and retries the same event.
    again = await double.deliver_http(url(gw), body, retry_num=1, host=PUBLIC)
    assert [d.status for d in again] == [200]
    await settled(gw)
    (answer,) = double.posted
    assert answer.thread_ts == event["ts"]
    assert answer.text.endswith("You said: over http")


async def test_a_request_refused_while_not_ready_is_answered_on_slacks_retry(
    double: SlackDouble, gw: RunningGateway
) -> None:
    slack = gw.runtime.channels.get("slack")
    assert slack is not None
    await slack.stop_receiving()  # e.g. draining: Slack must try again later
    body = double.callback(double.message("D0ALICE001", "are you there?", user=ALICE))
    refused = await double.deliver_http(url(gw), body, retries=False)
    assert [d.status for d in refused] == [503]
    await slack.start_receiving()  # type: ignore[attr-defined]
    retried = await double.deliver_http(url(gw), body, retry_num=1)
    assert [d.status for d in retried] == [200]
    await double.wait_for(lambda: len(double.posted) >= 1)
    await settled(gw)
    assert [p.text.rsplit(": ", 1)[-1] for p in double.posted] == ["are you there?"]


@pytest.mark.parametrize(
    "forgery",
    [
        {"secret": "someone-elses-signing-secret"},
        {"timestamp": int(time.time()) - 6 * 60},  # a captured request replayed later
    ],
)
async def test_forged_and_replayed_requests_are_refused(
    double: SlackDouble, gw: RunningGateway, forgery: dict[str, object]
) -> None:
    body = double.callback(double.message("D0ALICE001", "let me in", user=ALICE))
    deliveries = await double.deliver_http(url(gw), body, retries=False, **forgery)  # type: ignore[arg-type]
    assert [d.status for d in deliveries] == [401]
    async with aiohttp.ClientSession() as http:
        async with http.post(url(gw), data=b"{}") as r:  # no signature at all
            assert r.status == 401
    await asyncio.sleep(0.05)
    await settled(gw)
    assert double.posted == []
    assert await gw.runtime.store.messages.counts() == {"messages": 0, "sessions": 0, "pending": 0}


async def test_ready_in_events_mode(double: SlackDouble, gw: RunningGateway) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gw.base_url}/ready") as r:
            ready = await r.json()
    assert ready["channels"]["slack"]["state"] == "connected"
    assert "apps.connections.open" not in [c.method for c in double.calls]


@pytest.mark.parametrize(
    ("toml", "env", "problem"),
    [
        (
            '[channels.slack]\nmode = "events"\n',
            {"OPENCLAW_SLACK_BOT_TOKEN": "xoxb-1-2-abc"},
            'channels.slack.signing_secret: required when mode = "events"',
        ),
        (
            "[channels.slack]\n",
            {"OPENCLAW_SLACK_BOT_TOKEN": "xoxb-1-2-abc"},
            'channels.slack.app_token: required when mode = "socket"',
        ),
        ("", {"OPENCLAW_SLACK_BOT_TOKEN": "xoxb-1-2-abc"}, "channels.slack.app_token"),
        (
            "[channels.slack]\n",
            {"OPENCLAW_SLACK_APP_TOKEN": "xapp-1-2-abc"},
            "channels.slack.bot_token: required",
        ),
    ],
)
def test_config_validate_names_the_missing_key(
    tmp_path: Path, toml: str, env: dict[str, str], problem: str
) -> None:
    (tmp_path / "config.toml").write_text(toml)
    result = cli(["config-validate"], clean_env(tmp_path / "data", **env), tmp_path)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert len(lines) == 1 and problem in lines[0], result.stderr
    assert "xoxb-1-2-abc" not in result.stderr and "xapp-1-2-abc" not in result.stderr


def test_the_app_token_alone_does_not_enable_the_channel(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "data", OPENCLAW_SLACK_APP_TOKEN="xapp-1-2-abc")
    result = cli(["config-validate"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    env["OPENCLAW_SLACK_BOT_TOKEN"] = "xoxb-1-2-abc"
    assert cli(["config-validate"], env, tmp_path).returncode == 0  # both: socket mode, valid


def test_the_app_manifest_asks_for_what_the_channel_uses() -> None:
    import yaml

    root = Path(__file__).resolve().parent.parent
    manifest = yaml.safe_load((root / "deploy" / "slack-app-manifest.yml").read_text())
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    events = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    # Every message event needs its history scope; replies need chat:write.
    needs = {
        "message.channels": "channels:history",
        "message.groups": "groups:history",
        "message.im": "im:history",
        "message.mpim": "mpim:history",
    }
    assert events == set(needs)
    assert set(needs.values()) | {"chat:write", "files:read"} == scopes
    assert manifest["settings"]["socket_mode_enabled"] is True  # the default mode
    assert manifest["features"]["app_home"]["messages_tab_enabled"] is True  # DMs


def test_slack_sdk_is_imported_only_when_the_channel_is_enabled(tmp_path: Path) -> None:
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from open_clanker.config.loader import load_config\n"
        "from open_clanker.channels.registry import build_channels\n"
        "channels = build_channels(load_config().config)\n"
        "print(sorted(c.value for c in channels), 'slack_sdk' in sys.modules)\n"
    )
    env = clean_env(tmp_path / "data")
    off = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    env["OPENCLAW_SLACK_BOT_TOKEN"] = "xoxb-1-2-abc"
    env["OPENCLAW_SLACK_APP_TOKEN"] = "xapp-1-2-abc"
    on = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert off.stdout.strip() == "[] False", off.stderr
    assert on.stdout.strip() == "['slack'] True", on.stderr

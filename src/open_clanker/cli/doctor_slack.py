"""`open-clanker doctor`'s Slack lines: the bot token by `auth.test`, and in Socket Mode the
app-level token by `apps.connections.open` (the URL it returns is never used; it expires)."""

from __future__ import annotations

import asyncio

import aiohttp

from open_clanker.channels.slack.config import SlackConfig
from open_clanker.cli.doctor import NETWORK_TIMEOUT_S, Check, fail, ok


async def check_slack(sl: SlackConfig, http: aiohttp.ClientSession) -> list[Check]:
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

    from open_clanker.channels.slack.errors import TRANSPORT_ERRORS, describe, error_code, fix_for

    base = sl.api_base_url.rstrip("/")
    fix_url = "check [channels.slack].api_base_url and the network"

    def client(token: str) -> AsyncWebClient:
        return AsyncWebClient(
            token=token, base_url=base + "/", session=http, retry_handlers=[], timeout=5
        )

    async def call(name: str, token: str, method: str) -> Check:
        try:
            async with asyncio.timeout(NETWORK_TIMEOUT_S):
                if method == "auth.test":
                    me = await client(token).auth_test()
                    return ok(name, f"bot {me.get('user')} in {me.get('team')} accepted the token")
                await client("").apps_connections_open(app_token=token)
                return ok(name, "the app-level token opens Socket Mode connections")
        except SlackApiError as exc:
            code = error_code(exc)
            return fail(
                name, fix_for(code, "bot") if method == "auth.test" else fix_for(code, "app")
            )
        except TimeoutError:
            return fail(name, f"no answer from {base} within {NETWORK_TIMEOUT_S:.0f} s", fix_url)
        except TRANSPORT_ERRORS as exc:
            return fail(name, f"cannot reach {base} ({describe(exc)})", fix_url)

    checks = [await call("slack", sl.bot_token.get_secret_value(), "auth.test")]
    if sl.mode == "socket":
        checks.append(
            await call("slack app token", sl.app_token.get_secret_value(), "apps.connections.open")
        )
    return checks

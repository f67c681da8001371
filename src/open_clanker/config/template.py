"""The commented default config that `config-generate` writes. It never contains a secret."""

from __future__ import annotations

TEMPLATE = """\
# Open Clanker configuration. Every key is optional: what is shown is the default.
# Any key can be overridden from the environment as OPENCLAW_<SECTION>__<KEY>,
# e.g. OPENCLAW_SERVER__PORT=8080. Secrets belong in the environment, not in this file:
#   OPENCLAW_ANTHROPIC_API_KEY / ANTHROPIC_API_KEY, OPENCLAW_OPENAI_API_KEY / OPENAI_API_KEY,
#   OPENCLAW_TELEGRAM_BOT_TOKEN, OPENCLAW_DISCORD_BOT_TOKEN, OPENCLAW_GATEWAY_TOKEN,
#   OPENCLAW_SLACK_BOT_TOKEN, OPENCLAW_SLACK_APP_TOKEN, OPENCLAW_SLACK_SIGNING_SECRET.

[server]
host = "127.0.0.1"          # binding anything but loopback requires a token (OPENCLAW_GATEWAY_TOKEN)
port = 18789
# auth_tokens = []          # bearer tokens; none: one is generated into the data dir
allowed_hosts = []          # Host names accepted besides loopback ones (set when behind a proxy)
trusted_proxies = []        # addresses whose X-Forwarded-For is believed
cors_origins = []
max_message_chars = 16000   # longer user text is refused with a clear message
max_ws_connections = 10000  # beyond this a new WebSocket is refused
max_connections_per_address = 256  # open connections from one client address (proxies not counted)
openai_api = true           # POST /v1/chat/completions and GET /v1/models; false: 404
compression = true          # gzip for JSON and the page when the client accepts it (never streams)
# [server.tls]
# cert_path = "/path/to/cert.pem"
# key_path = "/path/to/key.pem"

[storage]
# url = "postgresql://user@host/db"   # default: SQLite in the data dir
                                      # (OPENCLAW_DATA_DIR, else ~/.local/share/open-clanker)

[bus]
url = "memory://"           # or redis://host:6379/0 for several replicas
namespace = "open-clanker"  # prefix of Redis keys and channels: one per deployment sharing a Redis

[agent]
provider = "auto"           # auto | anthropic | openai | echo
model = ""                  # provider default when empty
api_key_env = ""            # name of the env var holding the key; provider default when empty
base_url = ""               # e.g. "http://127.0.0.1:11434/v1" for Ollama (OpenAI-compatible)
system_prompt = "You are a helpful AI assistant."
max_tokens = 1024
timeout_s = 120
max_retries = 2             # retries after the first attempt, per provider
history_messages = 40       # most recent messages sent as context
history_tokens = 24000      # and at most this many (estimated) tokens of history; oldest dropped first
stream = true
# [[agent.fallbacks]]       # tried in order when the provider above keeps failing
# provider = "openai"
# model = "gpt-4o-mini"
# api_key_env = "OPENAI_API_KEY"
# base_url = ""

[access]
dm_policy = "pairing"       # pairing | allowlist | open
allow = []                  # "<channel>:<sender or chat id>", e.g. "telegram:123456"

[limits]
messages_per_minute = 20    # per sender
recovery_max_age_s = 3600   # pending messages older than this are not answered after a restart
lease_s = 30                # a replica's claim on a session, message, outbox part or channel lasts
                            # this long without renewal; a dead replica's work moves on after it

[channels.webchat]
enabled = true              # the page at GET / and the /ws endpoint

# [channels.telegram]       # present = enabled; the token comes from OPENCLAW_TELEGRAM_BOT_TOKEN
# allowed_chats = []
# api_base_url = "https://api.telegram.org"
# mode = "polling"          # polling | webhook
# webhook_url = ""

# [channels.discord]        # present = enabled; the token comes from OPENCLAW_DISCORD_BOT_TOKEN
# guild_id = ""
# allowed_channels = []
# require_mention = true
# api_base_url = "https://discord.com/api/v10"

# [channels.slack]          # present = enabled; OPENCLAW_SLACK_BOT_TOKEN (xoxb-…) enables it
# mode = "socket"           # socket: Socket Mode, no public URL, needs OPENCLAW_SLACK_APP_TOKEN (xapp-…)
                            # events: Slack posts to /slack/events, needs OPENCLAW_SLACK_SIGNING_SECRET
# allowed_channels = []     # channel ids (C…); DMs follow [access]
# require_mention = true    # in channels: only when @mentioned, or in a thread the bot answered in
# api_base_url = "https://slack.com/api"

[logging]
level = "info"              # debug | info | warning | error (OPENCLAW_LOG overrides)
format = "pretty"           # pretty | json
file = ""                   # optional path: JSON lines, rotated at 10 MB, 5 old files kept
"""

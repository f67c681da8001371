"""Prometheus metrics: messages in/out by channel, reply latency, tokens, errors, WebSockets.

A registry per runtime (not the process-global one), so tests can run several gateways.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from open_clanker.pipeline.context import Ending, Turn

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class GatewayMetrics:
    def __init__(self, open_websockets: Callable[[], int] = lambda: 0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.messages_in = Counter(
            "clanker_messages_in", "Accepted user messages", ["channel"], registry=self.registry
        )
        self.messages_out = Counter(
            "clanker_messages_out", "Replies produced", ["channel"], registry=self.registry
        )
        self.reply_latency = Histogram(
            "clanker_reply_latency_seconds",
            "Time from accepting a message to its stored reply (provider call included)",
            ["provider"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "clanker_provider_tokens",
            "Tokens reported by providers",
            ["provider", "kind"],
            registry=self.registry,
        )
        self.errors = Counter(
            "clanker_errors", "Refusals and failures by kind", ["kind"], registry=self.registry
        )
        self.websockets = Gauge(
            "clanker_websocket_connections", "Open WebSocket connections", registry=self.registry
        )
        self.websockets.set_function(open_websockets)

    def observe(self, turn: Turn, seconds: float) -> None:
        channel = turn.message.channel_type.value
        ending = turn.ending
        if ending in (Ending.ANSWERED, Ending.COMMAND, Ending.FAILED):
            self.messages_in.labels(channel).inc()
            self.messages_out.labels(channel).inc()
        if ending is Ending.ANSWERED and turn.response is not None:
            provider = turn.response.provider
            self.reply_latency.labels(provider).observe(seconds)
            usage = turn.response.usage
            self.tokens.labels(provider, "prompt").inc(usage.prompt_tokens)
            self.tokens.labels(provider, "completion").inc(usage.completion_tokens)
        elif ending is Ending.FAILED:
            self.errors.labels("provider_error").inc()
        elif ending is Ending.REFUSED and turn.error is not None:
            self.errors.labels(turn.error.code).inc()
        elif ending is Ending.DUPLICATE:
            self.errors.labels("duplicate").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

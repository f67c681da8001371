"""Prometheus metrics (SPEC §5 `/metrics`): messages, model latency and tokens, deliveries,
channels, HTTP requests, plus the standard process and Python collectors.

A registry per runtime (not the process-global one), so tests can run several gateways.
Names follow Prometheus conventions: base units (`_seconds`), counters end in `_total`.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from open_clanker import __version__
from open_clanker.agent.chain import ProviderChain
from open_clanker.pipeline.context import Ending, Turn
from open_clanker.pipeline.outbox_worker import OutboxWorker

# `_created` series double every counter's lines and no dashboard reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120)
CHANNEL_STATES = ("starting", "connected", "degraded", "stopped")

ChannelHealthSource = Callable[[], Mapping[str, Mapping[str, object]]]


class SupportsObserve(Protocol):
    observe: Callable[[Turn, float], None]


class _ChannelCollector(Collector):
    """Each channel's state (one series per state, 1 for the current one), read at scrape."""

    def __init__(self, health: ChannelHealthSource) -> None:
        self._health = health

    def collect(self) -> Iterable[Metric]:
        state = GaugeMetricFamily(
            "clanker_channel_state",
            "Channel state: 1 for the state the channel is in, 0 for the others",
            labels=["channel", "state"],
        )
        for channel, info in self._health().items():
            for name in CHANNEL_STATES:
                state.add_metric([channel, name], 1.0 if info.get("state") == name else 0.0)
        yield state


class GatewayMetrics:
    def __init__(
        self,
        open_websockets: Callable[[], int] = lambda: 0,
        channel_health: ChannelHealthSource = dict,
    ) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        Info("clanker_build", "The running build", registry=r).info(
            {"version": __version__, "python_version": platform.python_version()}
        )
        self.messages_in = Counter(
            "clanker_messages_in", "Accepted user messages", ["channel"], registry=r
        )
        self.messages_out = Counter(
            "clanker_messages_out", "Replies produced", ["channel"], registry=r
        )
        self.reply_latency = Histogram(
            "clanker_reply_latency_seconds",
            "Time from a message's turn starting to its stored reply (provider call included)",
            ["provider", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.first_token = Histogram(
            "clanker_provider_time_to_first_token_seconds",
            "Time from sending a streamed request to its first text (per attempt)",
            ["provider", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "clanker_provider_tokens",
            "Tokens reported by providers: input (prompt) and output (completion)",
            ["provider", "model", "direction"],
            registry=r,
        )
        self.errors = Counter(
            "clanker_errors", "Refusals and failures by kind", ["kind"], registry=r
        )
        self.deliveries = Counter(
            "clanker_deliveries",
            "Outbox parts delivered (sent) or given up on (failed)",
            ["channel", "outcome"],
            registry=r,
        )
        self.delivery_retries = Counter(
            "clanker_delivery_retries", "Outbox deliveries to be retried", ["channel"], registry=r
        )
        self.outbox_depth = Gauge(
            "clanker_outbox_depth", "Reply parts waiting in the outbox", ["channel"], registry=r
        )
        self.websockets = Gauge(
            "clanker_websocket_connections", "Open WebSocket connections", registry=r
        )
        self.websockets.set_function(open_websockets)
        self.http_requests = Counter(
            "clanker_http_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "clanker_http_request_duration_seconds",
            "HTTP request duration until the last byte of the response (streams included)",
            ["route", "method", "status"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self._channel_health = channel_health
        r.register(_ChannelCollector(lambda: self._channel_health()))

    def attach(
        self,
        pipeline: SupportsObserve,
        chain: ProviderChain,
        outbox: OutboxWorker,
        channel_health: ChannelHealthSource,
    ) -> None:
        """Connect the hooks (at start; a reload attaches its new chain again)."""
        pipeline.observe = self.observe
        chain.observe_first_token = self.first_token_after
        outbox.observe_delivery = self.delivery
        self._channel_health = channel_health

    def observe(self, turn: Turn, seconds: float) -> None:
        """The pipeline's hook: once per message, when its turn (or its refusal) ends."""
        channel = turn.message.channel_type.value
        ending = turn.ending
        if ending in (Ending.ANSWERED, Ending.COMMAND, Ending.FAILED):
            self.messages_in.labels(channel).inc()
            self.messages_out.labels(channel).inc()
        if ending is Ending.ANSWERED and turn.response is not None:
            response = turn.response
            self.reply_latency.labels(response.provider, response.model).observe(seconds)
            usage = response.usage
            self.tokens.labels(response.provider, response.model, "input").inc(usage.prompt_tokens)
            self.tokens.labels(response.provider, response.model, "output").inc(
                usage.completion_tokens
            )
        elif ending is Ending.FAILED:
            self.errors.labels("provider_error").inc()
        elif ending is Ending.REFUSED and turn.error is not None:
            self.errors.labels(turn.error.code).inc()
        elif ending is Ending.DUPLICATE:
            self.errors.labels("duplicate").inc()

    def first_token_after(self, provider: str, model: str, seconds: float) -> None:
        """The provider chain's hook: a streamed attempt's first text arrived."""
        self.first_token.labels(provider, model).observe(seconds)

    def delivery(self, channel: str, outcome: str) -> None:
        """The outbox worker's hook: `sent`, `retry` or `failed`."""
        if outcome == "retry":
            self.delivery_retries.labels(channel).inc()
        else:
            self.deliveries.labels(channel, outcome).inc()

    def http_request(self, route: str, method: str, status: int, seconds: float) -> None:
        labels = (route, method, str(status))
        self.http_requests.labels(*labels).inc()
        self.http_duration.labels(*labels).observe(seconds)

    def set_outbox_depth(self, channels: Iterable[str], pending: Mapping[str, int]) -> None:
        """Every running channel gets a value (0 included), so an emptied outbox shows 0."""
        for channel in {*channels, *pending}:
            self.outbox_depth.labels(channel).set(pending.get(channel, 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)

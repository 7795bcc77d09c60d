"""Prometheus metrics of one engine process, served at `GET /metrics`.

Each app owns its registry (made in `create_app`, never at import), so that several apps in
one process — the tests — count apart. Labels stay low-cardinality: a route is its template
(`/api/signals/{signal_id}`), never its path; no user, signal or order ids.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Request latencies from sub-millisecond to the 3 s TradingView waits for an answer.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0, 10.0)
# Assistant answers take seconds with a model.
_ANSWER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_duration = Histogram(
            "jadetrade_http_request_duration_seconds",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.webhook_duration = Histogram(
            "jadetrade_webhook_duration_seconds",
            "TradingView webhook requests by status, from first byte to answer",
            ["status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.chat_tokens = Counter(
            "jadetrade_chat_tokens",
            "Tokens of completed assistant answers, as the model provider reported them",
            ["mode", "kind"],
            registry=r,
        )
        self.chat_answers = Histogram(
            "jadetrade_chat_answer_duration_seconds",
            "Assistant answers from the start of the stream to its end, by mode and outcome",
            ["mode", "outcome"],
            buckets=_ANSWER_BUCKETS,
            registry=r,
        )
        self.websocket_connections = Gauge(
            "jadetrade_websocket_connections",
            "Open WebSocket connections on this API process",
            registry=r,
        )
        self.queue_length = Gauge(
            "jadetrade_signal_queue_length",
            "Entries in the signal stream (read or not; trimmed to a maximum length)",
            registry=r,
        )
        self.queue_pending = Gauge(
            "jadetrade_signal_queue_pending",
            "Signals delivered to a worker and not yet acknowledged",
            registry=r,
        )
        self.queue_lag = Gauge(
            "jadetrade_signal_queue_lag",
            "Signals in the stream not yet delivered to any worker (consumer group lag)",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

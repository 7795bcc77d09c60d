"""Prometheus metrics of one engine process, served at `GET /metrics`.

Each app owns its registry (made in `create_app`, never at import), so that several apps in
one process — the tests — count apart. Labels stay low-cardinality: a route is its template
(`/api/signals/{signal_id}`), never its path; no user, signal or order ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from app.logging.logger import active_shipper, get_logger

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

log = get_logger("metrics")
# No `*_created` series: one more sample per counter that no dashboard reads.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Request latencies from sub-millisecond to the 3 s TradingView waits for an answer.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0, 10.0)
# Assistant answers take seconds with a model.
_ANSWER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# Alert to order: the webhook's answer, the queue hop, sizing and risk, the exchange's answer.
_EXECUTION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _LogShipping(Collector):
    """Lines the Loki handler delivered and dropped, read from it at scrape time."""

    def collect(self) -> Iterator[Metric]:
        shipped = CounterMetricFamily(
            "jadetrade_log_lines_shipped", "Log lines delivered to Loki by the direct push"
        )
        dropped = CounterMetricFamily(
            "jadetrade_log_lines_dropped",
            "Log lines not delivered to Loki: buffer_full (Loki slow or down), push_failed",
            labels=["reason"],
        )
        shipper = active_shipper()
        sent, lost = shipper.counts() if shipper is not None else (0, {})
        shipped.add_metric([], sent)
        for reason in ("buffer_full", "push_failed"):
            dropped.add_metric([reason], lost.get(reason, 0))
        yield shipped
        yield dropped


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

        # ------------------------------------------------------------ execution (workers)
        self.alert_to_order = Histogram(
            "jadetrade_alert_to_order_seconds",
            "From the webhook's receipt of an alert to the exchange's answer to its first order",
            ["exchange"],
            buckets=_EXECUTION_BUCKETS,
            registry=r,
        )
        self.execution_duration = Histogram(
            "jadetrade_signal_execution_duration_seconds",
            "One signal's execution by a worker (sizing, risk checks, orders), by outcome",
            ["status"],
            buckets=_EXECUTION_BUCKETS,
            registry=r,
        )
        self.signals_finished = Counter(
            "jadetrade_signals_finished",
            "Signals whose execution ended: executed, rejected, skipped or failed",
            ["status"],
            registry=r,
        )
        self.dead_letters = Counter(
            "jadetrade_signals_dead_lettered",
            "Signals given up after their last delivery (marked failed)",
            registry=r,
        )
        self.in_flight = Gauge(
            "jadetrade_executions_in_flight",
            "Signals being executed by this process right now",
            registry=r,
        )
        self.orders = Counter(
            "jadetrade_orders",
            "Orders placed, by exchange and the status the exchange answered with",
            ["exchange", "status"],
            registry=r,
        )
        self.exchange_errors = Counter(
            "jadetrade_exchange_errors",
            "Failed exchange requests, by exchange and error class (rate_limited, "
            "outcome_unknown, exchange_unreachable, …)",
            ["exchange", "error_class"],
            registry=r,
        )
        self.risk_rejections = Counter(
            "jadetrade_risk_rejections",
            "Entries refused by a risk check (or by position sizing), by the check that failed",
            ["check"],
            registry=r,
        )
        # ------------------------------------------------------------ logs
        self.frontend_log_lines = Counter(
            "jadetrade_frontend_log_lines",
            "Browser log lines received on POST /api/logs, by level",
            ["level"],
            registry=r,
        )
        r.register(_LogShipping())
        ProcessCollector(registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def serve_metrics(metrics: Metrics, host: str, port: int) -> WSGIServer | None:
    """Serve `metrics` at http://host:port/metrics from a background thread (a worker process,
    which has no HTTP server of its own); `shutdown()` the returned server to stop it.

    A port already taken is logged as an error and the worker trades on unobserved: better
    than refusing to execute signals over a scrape endpoint."""
    try:
        server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as exc:
        log.error("metrics_unavailable", host=host, port=port, error=str(exc))
        return None
    log.info("metrics_serving", host=host, port=server.server_port)
    return server

"""Prometheus metrics and a health check for the live flow, on one small HTTP server.

Nothing is counted twice: a custom collector reads the flow's own counters (RunStats, the
rules engine's counters, the signal writers, the feeds) when Prometheus scrapes. `/healthz`
answers 200 when Redis answers, PostgreSQL answers (if the flow writes signals) and the
flow's heartbeat as it is now is healthy by the one definition every reader uses
(``flows.app.health``: not waiting for a server, every feed connection connected and heard
from within `stale_after_s`); else 503 with the reasons.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from flows.app.health import FEED_SILENT_AFTER_S, FlowHeartbeat
from flows.domain.clock import SYSTEM_CLOCK, Clock
from flows.domain.deadletter import REASONS
from flows.domain.stats import RunStats


@dataclass
class FlowView:
    """What the collector reads; every part optional (a flow without rules has none)."""

    stats: RunStats
    feeds: Callable[[], list[dict[str, Any]]] = lambda: []
    rules: Callable[[], dict[str, float]] = lambda: {}
    checks: dict[str, Callable[[], bool]] = field(default_factory=dict)  # name -> reachable?
    clock: Clock = SYSTEM_CLOCK


class FlowCollector(Collector):
    def __init__(self, view: FlowView) -> None:
        self.view = view

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        s = self.view.stats

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(f"klineflow_{name}", doc, value=value)

        yield counter("trades_in", "trades taken from the feed or files", s.trades_read)
        yield counter("trades_backfilled", "trades fetched over REST to fill gaps",
                      s.trades_backfilled)  # fmt: skip
        yield counter("duplicate_trades", "trades seen before (dropped)", s.duplicates)
        yield counter("feed_reconnects", "feed connections lost and made again",
                      s.feed_reconnects)  # fmt: skip
        yield counter("gaps", "trade ranges that could not be fetched", s.gaps)
        yield counter("foreign_batches", "trade batches received from another cluster process "
                      "(0 when symbols are partitioned as planned)", s.foreign_batches)  # fmt: skip
        dead = CounterMetricFamily("klineflow_dead_letters", "rejected input by reason",
                                   labels=["reason"])  # fmt: skip
        for reason in REASONS:
            dead.add_metric([reason], s.dead_letters[reason])
        yield dead
        yield counter("klines_amended", "closed klines closed again because a trade came after "
                      "a watermark had closed them", s.klines_amended)  # fmt: skip
        yield counter("resumes", "symbols resumed from the stores at a start", s.resumes)
        yield counter("backfills", "catch-ups of a symbol over REST (reconnects, skipped ids)",
                      s.backfills)  # fmt: skip
        yield counter("backfill_retries", "REST or store calls of a catch-up tried again "
                      "(rate limits, bans, failures)", s.backfill_retries)  # fmt: skip
        yield counter("store_repairs", "times Redis was found to have lost acknowledged "
                      "writes (the recent klines were written again)", s.store_repairs)  # fmt: skip
        waits = CounterMetricFamily("klineflow_store_waits", "times the flow paused to wait "
                                    "for a server", labels=["server"])  # fmt: skip
        waiting = GaugeMetricFamily("klineflow_waiting_for", "1 while the flow waits for this "
                                    "server", labels=["server"])  # fmt: skip
        rules_now = self.view.rules()
        away = set(s.waiting_for)
        if rules_now.get("waiting"):
            away.add("postgresql")
        for server in ("redis", "postgresql"):
            waits.add_metric([server], s.store_waits[server])
            waiting.add_metric([server], 1.0 if server in away else 0.0)
        yield waits
        yield waiting
        klines = CounterMetricFamily("klineflow_klines_written", "closed klines written",
                                     labels=["interval"])  # fmt: skip
        for interval, n in sorted(s.klines_closed.items()):
            klines.add_metric([interval], n)
        yield klines
        yield counter("open_kline_writes", "open (forming) kline writes", s.open_kline_writes)
        lags = sorted(s.lag_ms)
        lag = GaugeMetricFamily(
            "klineflow_lag_seconds",
            "trade time -> its kline written to Redis, over the recent writes",
            labels=["quantile"],
        )
        if lags:
            for q in (0.5, 0.99):
                lag.add_metric([str(q)], lags[int(q * (len(lags) - 1))] / 1000)
        yield lag
        rules = self.view.rules()
        yield counter("rule_evaluations", "trader rules evaluated", rules.get("evaluations", 0))
        yield counter("rule_evaluation_seconds", "time spent evaluating rules and indicators",
                      rules.get("evaluation_seconds", 0.0))  # fmt: skip
        yield counter("rule_failures", "traders switched off for a symbol (an error, or over "
                      "budget)", rules.get("rule_failures", 0))  # fmt: skip
        yield counter("rules_over_budget", "traders switched off for a symbol for their "
                      "evaluation time", rules.get("rules_over_budget", 0))  # fmt: skip
        yield counter("signals", "new signal rows written", rules.get("signals_new", 0))
        yield counter("signal_repeats", "repeats counted on earlier signals",
                      rules.get("signals_repeat", 0))  # fmt: skip
        yield GaugeMetricFamily(
            "klineflow_signal_latency_p99_seconds",
            "kline close handed to the engines -> signal committed, p99 of the recent ones",
            value=rules.get("latency_p99_s", 0.0),
        )
        yield GaugeMetricFamily("klineflow_signals_pending", "signals waiting for PostgreSQL",
                                value=rules.get("pending", 0))  # fmt: skip
        yield counter("rule_catch_up_klines", "stored klines decided again at a start "
                      "(after the progress committed with the signals)",
                      rules.get("caught_up", 0))  # fmt: skip
        yield GaugeMetricFamily("klineflow_symbols_backfilling", "symbols being caught up over "
                                "REST now", value=sum(f.get("backfilling", 0)
                                                      for f in self.view.feeds()))  # fmt: skip
        state = GaugeMetricFamily("klineflow_feed_connected", "1 when the feed is connected",
                                  labels=["connection"])  # fmt: skip
        age = GaugeMetricFamily(
            "klineflow_feed_last_message_age_seconds",
            "seconds since the feed's last message",
            labels=["connection"],
        )
        buffered = GaugeMetricFamily(
            "klineflow_feed_buffered_frames",
            "frames received and not yet taken by the flow",
            labels=["connection"],
        )
        for f in self.view.feeds():
            buffered.add_metric([str(f["connection"])], f.get("buffered_frames", 0))
            state.add_metric([str(f["connection"])], 1.0 if f["state"] == "connected" else 0.0)
            if f["last_message_age_s"] is not None:
                age.add_metric([str(f["connection"])], f["last_message_age_s"])
        yield state
        yield age
        yield buffered


def health(view: FlowView, stale_after_s: float = FEED_SILENT_AFTER_S) -> tuple[bool, list[str]]:
    """The flow's heartbeat now, judged as `klineflow status` and the dashboard judge it,
    with the signals held for PostgreSQL and the servers that do not answer."""
    now_ms = view.clock.now_ms()
    beat = FlowHeartbeat.of_run(view.stats, view.feeds(), now_ms, now_ms)
    problems = list(beat.health(now_ms, feed_silent_after_s=stale_after_s).reasons)
    if view.rules().get("waiting") and "postgresql" not in beat.waiting_for:
        problems.append("waiting for postgresql (signals held)")
    for name, check in view.checks.items():
        try:
            ok = check()
        except Exception:  # a check that raises is a server that does not answer
            ok = False
        if not ok:
            problems.append(f"{name} unreachable")
    return not problems, problems


class MetricsServer:
    """`/metrics` (Prometheus text format) and `/healthz` (JSON) on host:port."""

    def __init__(self, view: FlowView, host: str = "127.0.0.1", port: int = 9108) -> None:
        registry = CollectorRegistry()
        registry.register(FlowCollector(view))
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/metrics"):
                    body, code, kind = generate_latest(registry), 200, "text/plain; version=0.0.4"
                elif self.path.startswith("/healthz"):
                    ok, problems = health(view, outer.stale_after_s)
                    body = json.dumps({"healthy": ok, "problems": problems}).encode()
                    code, kind = (200 if ok else 503), "application/json"
                else:
                    body, code, kind = b"not found", 404, "text/plain"
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes every few seconds are not news

        self.stale_after_s = FEED_SILENT_AFTER_S
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       name="klineflow-metrics")  # fmt: skip

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

"""Prometheus collectors of one server (own CollectorRegistry, so two apps in one process never mix)."""

from __future__ import annotations

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ServerMetrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("recsys_requests", "HTTP requests by endpoint, run and status code.",
                                ["endpoint", "run", "status"], registry=self.registry)
        self.latency = Histogram("recsys_request_seconds", "Request latency by endpoint and run (seconds).",
                                 ["endpoint", "run"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.cache_hits = Counter("recsys_cache_hits", "Recommendation lists answered from the LRU cache.",
                                  ["run"], registry=self.registry)
        self.cache_misses = Counter("recsys_cache_misses", "Recommendation lists computed (not in the cache).",
                                    ["run"], registry=self.registry)
        self.load_seconds = Gauge("recsys_model_load_seconds", "Seconds the last successful load of a run took.",
                                  ["run"], registry=self.registry)
        self.loads = Counter("recsys_model_loads", "Run loads (start-up and reloads) by result.",
                             ["run", "result"], registry=self.registry)

    def on_load(self, run: str, seconds: float, ok: bool) -> None:
        self.loads.labels(run, "ok" if ok else "failed").inc()
        if ok:
            self.load_seconds.labels(run).set(seconds)

    def observe(self, endpoint: str, run: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, run, str(status)).inc()
        self.latency.labels(endpoint, run).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

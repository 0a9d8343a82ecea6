"""Prometheus metrics of the scoring service (prometheus_client, one registry per app so tests stay isolated).

    metrics = ServingMetrics()
    metrics.observe_score(result, seconds); metrics.set_model(scorer); metrics.render() -> (bytes, content type)
"""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from models.serving.scorer import Scorer, ScoreResult

# score() time lives in the 0.2-20 ms range; the tail buckets catch a slow swap or a busy box
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


class ServingMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("serving_requests", "HTTP requests by endpoint and status code",
                                ["endpoint", "code"], registry=r)
        self.score_seconds = Histogram("serving_score_seconds", "Model scoring time per /score request "
                                       "(feature gather + forward)", buckets=LATENCY_BUCKETS, registry=r)
        self.candidates = Counter("serving_candidates", "Candidate items scored", registry=r)
        self.unknown_users = Counter("serving_unknown_users", "Requests whose user has no row in the users "
                                     "table (cold start: default features)", registry=r)
        self.unknown_items = Counter("serving_unknown_items", "Candidates with no row in the items table "
                                     "(cold start: default features)", registry=r)
        self.defaults = Counter("serving_default_feature_rows", "Keys that took a table's default row/vector",
                                ["table"], registry=r)
        self.swaps = Counter("serving_model_swaps", "Models swapped in (the first load counts)", registry=r)
        self.load_failures = Counter("serving_model_load_failures", "Champion loads that failed (the old "
                                     "model kept serving)", registry=r)
        self.load_seconds = Gauge("serving_model_load_seconds", "Time to load + compile the current model",
                                  registry=r)
        self.model_info = Gauge("serving_model_info", "The model being served (value 1)",
                                ["model_path", "run_id", "backbone", "variant"], registry=r)
        self.feature_info = Gauge("serving_feature_table_info", "Feature-table versions being served (value 1)",
                                  ["table", "version"], registry=r)

    def observe_score(self, result: ScoreResult, seconds: float) -> None:
        self.score_seconds.observe(seconds)
        self.candidates.inc(len(result.probabilities))
        if not result.user_known:
            self.unknown_users.inc()
        if result.unknown_items:
            self.unknown_items.inc(result.unknown_items)
        for table, n in result.defaults.items():
            if n:
                self.defaults.labels(table).inc(n)

    def set_model(self, scorer: Scorer) -> None:
        self.model_info.clear()
        self.feature_info.clear()
        i = scorer.info
        self.model_info.labels(scorer.model_version, str(i.get("run_id")), str(i.get("backbone")),
                               str(i.get("variant"))).set(1)
        for table, version in scorer.feature_versions.items():
            self.feature_info.labels(table, version).set(1)
        self.load_seconds.set(float(i.get("load_seconds") or 0.0))
        self.swaps.inc()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

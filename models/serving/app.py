"""The HTTP scoring service (FastAPI): JSON in/out, Prometheus metrics, hot swap on promotion.

    POST /score          {"user_id": 42, "item_ids": [1, 2, 3], "context": {...}?}
                         -> {"scores": [...], "model": {...}, "feature_tables": {...}, "cold_start": {...}}
    GET  /healthz        200 + versions when a model is loaded, 503 otherwise
    GET  /metrics        Prometheus text format
    POST /admin/reload   check the champion pointer now (the service also polls it every poll_seconds)

Bad requests get 422 with a one-line `error` naming the field; 503 while no champion is loaded.
Start it with `python -m models.serving --workdir var/ml100k --port 8000` (models/serving/__main__.py).
"""
from __future__ import annotations

import json
import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr

from models.serving.hot_swap import ScorerHolder
from models.serving.metrics import ServingMetrics
from models.serving.settings import ServingSettings  # noqa: F401 - create_app's argument, importable from here

log = logging.getLogger(__name__)


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # ints or strings, as the source data spells its ids (the scorer checks them against the model's id types)
    user_id: StrictInt | StrictStr
    item_ids: list[StrictInt | StrictStr]
    context: dict | None = None


def _json(payload: dict, status: int = 200) -> Response:
    # plain json.dumps: FastAPI's jsonable_encoder walk costs more than scoring 100 items
    return Response(json.dumps(payload, separators=(",", ":")), status_code=status, media_type="application/json")


def _error_line(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err.get("loc", ()))
        got = f" (got {err['input']!r:.60})" if "input" in err and err.get("type") != "missing" else ""
        parts.append(f"{where}: {err.get('msg')}{got}")
    more = len(exc.errors()) - 3
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def create_app(settings: ServingSettings, holder: ScorerHolder | None = None) -> FastAPI:
    metrics = ServingMetrics()
    holder = holder or ScorerHolder(settings.workdir, settings.name, settings.threads,
                                    feature_store=settings.feature_store)
    holder.on_swap = metrics.set_model
    holder.on_failure = lambda exc: metrics.load_failures.inc()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if holder.current is None:
            result = holder.reload()
            log.info("startup: %s", result)
        else:
            metrics.set_model(holder.current)
        holder.start_polling(settings.poll_seconds)
        yield
        holder.stop()

    app = FastAPI(title="CTR scoring (no LLM on the request path)", lifespan=lifespan)
    app.state.holder, app.state.metrics, app.state.settings = holder, metrics, settings

    def unavailable(endpoint: str) -> Response:
        metrics.requests.labels(endpoint, "503").inc()
        return _json({"error": f"no model loaded: {holder.last_error or 'no champion promoted yet'}"}, 503)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        metrics.requests.labels(request.url.path, "422").inc()
        return _json({"error": _error_line(exc)}, 422)

    @app.post("/score")
    async def score(req: ScoreRequest) -> Response:
        # async + inline: scoring takes ~1 ms of CPU; a thread-pool hop would cost as much and add GIL churn
        scorer = holder.current  # taken once: this request finishes on this model even if a swap lands now
        if scorer is None:
            return unavailable("/score")
        if len(req.item_ids) > settings.max_candidates:
            metrics.requests.labels("/score", "422").inc()
            return _json({"error": f"item_ids: {len(req.item_ids)} candidates, max_candidates is "
                                   f"{settings.max_candidates}"}, 422)
        if not req.item_ids:
            metrics.requests.labels("/score", "422").inc()
            return _json({"error": "item_ids: empty list, expected 1 to "
                                   f"{settings.max_candidates} candidate ids"}, 422)
        started = time.perf_counter()
        try:
            result = scorer.score_detailed(req.user_id, req.item_ids, req.context)
        except ValueError as exc:  # bad context values, out-of-range ids: the caller's problem
            metrics.requests.labels("/score", "422").inc()
            return _json({"error": str(exc)}, 422)
        metrics.observe_score(result, time.perf_counter() - started)
        metrics.requests.labels("/score", "200").inc()
        return _json({"scores": result.probabilities.tolist(), **scorer.describe(),
                      "cold_start": {"user": not result.user_known, "unknown_items": result.unknown_items}})

    @app.get("/healthz")
    async def healthz() -> Response:
        scorer = holder.current
        if scorer is None:
            return unavailable("/healthz")
        metrics.requests.labels("/healthz", "200").inc()
        return _json({"status": "ok", **scorer.describe(), "last_reload_error": holder.last_error})

    @app.get("/metrics")
    async def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.post("/admin/reload")
    def reload(force: bool = False) -> Response:  # sync: runs in the thread pool, the event loop keeps serving
        result = holder.reload(force=force)
        metrics.requests.labels("/admin/reload", "200").inc()
        return _json(result)

    return app


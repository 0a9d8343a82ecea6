"""The openai backend against named fake OpenAI-compatible servers (FakeOpenAIServer: real HTTP on 127.0.0.1,
scripted answers): load spread, endpoint health, retries with backoff, timeouts, bounded concurrency, refusals,
structured outputs. The real vLLM server fleet is tested in test_openai_vllm_server.py."""
from __future__ import annotations

import asyncio
import json
import threading
import time

import pandas as pd
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from augment.llm import generate as gen
from augment.llm.openai_fleet import FleetError, OpenAIFleet
from configs import GenerationConfig
from ops.local_services import free_port

MODEL = "fake-model"


class FakeOpenAIServer:
    """A fake OpenAI-compatible server (named fake) in a thread: /v1/models and /v1/chat/completions, answering
    "fake answer to <content>"; `fail_first` requests get a 503, `delay_s` slows every answer, a user message
    containing TOO_LONG gets vLLM's 400 for an over-long prompt. It records every request body and the peak
    number of requests it held at once."""

    def __init__(self, model: str = MODEL, fail_first: int = 0, delay_s: float = 0.0):
        self.model, self.fail_first, self.delay_s = model, fail_first, delay_s
        self.bodies: list[dict] = []
        self.inflight = self.peak = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        app = FastAPI()

        @app.get("/v1/models")
        async def models():
            return {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "fake"}]}

        @app.post("/v1/chat/completions")
        async def chat(request: Request):
            body = await request.json()
            self.bodies.append(body)
            if len(self.bodies) <= self.fail_first:
                return JSONResponse({"error": {"message": "overloaded", "type": "server_error"}}, status_code=503)
            content = body["messages"][-1]["content"]
            if "TOO_LONG" in content:
                return JSONResponse({"error": {"message": "This model's maximum context length is 64 tokens.",
                                               "type": "BadRequestError"}}, status_code=400)
            self.inflight += 1
            self.peak = max(self.peak, self.inflight)
            try:
                await asyncio.sleep(self.delay_s)
            finally:
                self.inflight -= 1
            text = (json.dumps({"category": "Drama", "tags": ["fake"]}) if "response_format" in body
                    else f"fake answer to {content}, long enough to pass validation.")
            return {"id": "x", "object": "chat.completion", "created": 0, "model": self.model,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 7, "completion_tokens": 11, "total_tokens": 18}}

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "FakeOpenAIServer":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "fake server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


def _cfg(urls: list[str], **openai) -> GenerationConfig:
    return GenerationConfig(shards=1, backend="openai",
                            openai={"endpoints": urls, "served_model": MODEL, "backoff_s": 0.01,
                                    "unhealthy_s": 0.2, **openai})


def _prompts(contents: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"item_id": range(1, len(contents) + 1),
                         "messages": [json.dumps([{"role": "user", "content": c}]) for c in contents],
                         "template_name": "t", "template_version": "1",
                         "prompt_hash": [f"h{i}" for i in range(len(contents))]})


def _texts(prompts, cfg, cache) -> pd.DataFrame:
    return gen.collect_texts(prompts, "item", cfg, cache, "m", pd.Series(pd.Timestamp(0, tz="UTC"),
                                                                          index=prompts.index)).set_index("item_id")


@pytest.mark.timeout(120)
def test_requests_spread_over_healthy_endpoints_and_skip_a_dead_one(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with FakeOpenAIServer(delay_s=0.05) as a, FakeOpenAIServer(delay_s=0.05) as b:
        cfg = _cfg([a.url, dead, b.url], max_concurrency=3)
        prompts = _prompts([f"movie {i}" for i in range(30)])
        stats = gen.generate_shard(prompts, "item", 0, cfg, tmp_path, "m", batch_size=7)
    assert stats.generated == 30 and stats.backend == "openai" and stats.flags == {"ok": 30}
    assert len(a.bodies) + len(b.bodies) == 30 and min(len(a.bodies), len(b.bodies)) >= 10  # both used
    assert max(a.peak, b.peak) <= 3  # max_concurrency per endpoint
    ends = stats.where["endpoints"]
    assert ends[dead]["healthy"] is False and ends[dead]["requests"] == 0 and "Connect" in ends[dead]["last_error"]
    assert stats.output_tokens == 30 * 11 and stats.engine["output_tokens"] == 30 * 11
    texts = _texts(prompts, cfg, tmp_path)
    assert texts.loc[3, "text"].startswith("fake answer to movie 2")
    # what went over the wire: the run's sampling, the served model, vLLM's repetition_penalty extension
    body = a.bodies[0]
    assert body["model"] == MODEL and body["temperature"] == 0.0 and body["seed"] == 0
    assert body["max_tokens"] == 96 and body["repetition_penalty"] == 1.1 and "response_format" not in body


@pytest.mark.timeout(60)
def test_transient_failures_are_retried_with_backoff_then_give_up(tmp_path):
    with FakeOpenAIServer(fail_first=3) as a:
        stats = gen.generate_shard(_prompts(["a film"]), "item", 0, _cfg([a.url], max_retries=4), tmp_path, "m")
        assert stats.generated == 1 and len(a.bodies) == 4 and stats.where["endpoints"][a.url]["failures"] >= 3
    with FakeOpenAIServer(fail_first=10) as a:
        with pytest.raises(FleetError, match=r"request failed 3 times, last on http://127\.0\.0\.1:\d+/v1: "
                                             r"InternalServerError"):
            gen.generate_shard(_prompts(["a film"]), "item", 0, _cfg([a.url], max_retries=2), tmp_path / "b", "m")
    assert gen.cache_rows(tmp_path / "b") == 0  # nothing half-committed


@pytest.mark.timeout(60)
def test_a_slow_endpoint_times_out(tmp_path):
    with FakeOpenAIServer(delay_s=3.0) as a:
        with pytest.raises(FleetError, match="APITimeoutError"):
            gen.generate_shard(_prompts(["a film"]), "item", 0, _cfg([a.url], timeout_s=0.3, max_retries=1),
                               tmp_path, "m")


@pytest.mark.timeout(60)
def test_fleet_serving_another_model_is_refused_at_start(tmp_path):
    with FakeOpenAIServer(model="other-model") as a:
        fleet = OpenAIFleet(_cfg([a.url]))
        with pytest.raises(FleetError, match=r"expected model 'fake-model' but http://127\.0\.0\.1:\d+/v1 serves "
                                             r"\['other-model'\]"):
            fleet.start()
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(FleetError, match="no endpoint is reachable"):
        OpenAIFleet(_cfg([dead])).start()


@pytest.mark.timeout(60)
def test_prompt_too_long_is_flagged_and_schema_goes_as_response_format(tmp_path):
    schema = {"type": "object", "properties": {"category": {"type": "string", "maxLength": 24},
                                               "tags": {"type": "array", "items": {"type": "string"}}},
              "required": ["category", "tags"]}
    with FakeOpenAIServer() as a:
        cfg = _cfg([a.url])
        prompts = _prompts(["a short one", "TOO_LONG " * 5])
        stats = gen.generate_shard(prompts, "item_tags", 0, cfg, tmp_path, "m", json_schema=schema)
        assert stats.flags == {"ok": 1, "prompt_too_long": 1} and len(a.bodies) == 2  # refused once, not retried
        sent = a.bodies[0]["response_format"]
        assert sent["type"] == "json_schema" and sent["json_schema"]["schema"] == schema


def test_config_needs_endpoints_and_urls():
    with pytest.raises(ValueError, match="needs generation.openai.endpoints"):
        GenerationConfig(backend="openai")
    with pytest.raises(ValueError, match="is not an http"):
        GenerationConfig(backend="openai", openai={"endpoints": ["localhost:8000"]})
    with pytest.raises(ValueError, match="extra"):
        GenerationConfig(backend="openai", openai={"endpoints": ["http://x/v1"], "api_key": "sk-secret"})


def test_http_client_does_not_log_a_line_per_request():
    import logging

    import augment.llm.openai_fleet  # noqa: F401  (the import sets the levels)

    assert all(not logging.getLogger(n).isEnabledFor(logging.INFO) for n in ("httpx", "httpx2"))

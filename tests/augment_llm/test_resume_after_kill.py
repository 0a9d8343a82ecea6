"""Resumability for real: `python -m augment generate` is SIGKILLed mid-shard (its whole process group, like a
crash), then the same command is re-run; every prompt ends with exactly one output, and only the batch in flight
was lost. The fast test drives the real CLI with a slow fake LLM (named FakeSlowLLM); the slow one uses real vLLM."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from augment import stages
from augment.llm.generate import cache_rows, read_cache
from augment.llm.marked_processes import MarkedProcesses
from configs import REPO_ROOT, load_config

FAKE_RUNNER = '''
import os, sys, threading, time
from augment.llm import backends as chat_backend
from augment.llm.backend import ChatResult

# With FAKE_STALL_AFTER_POLLS=n the fake answers n polls, then never answers again (it waits for the SIGKILL): the
# kill lands mid-shard by construction, not because a sleep made generation slower than the test's reaction.
STALL_AFTER = int(os.environ.get("FAKE_STALL_AFTER_POLLS", "0"))


class FakeSlowBackend:  # a deterministic stand-in for the LLM: 2 answers per poll
    name = "fake-slow"

    def __init__(self, cfg):
        self.queued = []
        self.answered = 0  # polls that returned answers

    def start(self): pass
    def capacity(self): return 4
    def prompt_tokens(self, conversations): return [20] * len(conversations)
    def submit(self, requests): self.queued += list(requests)
    def counters(self): return {}
    def describe(self): return {}
    def close(self): pass

    def poll(self):
        if STALL_AFTER and self.answered >= STALL_AFTER and self.queued:
            threading.Event().wait()  # blocks until the test kills the process group
        time.sleep(0.01)  # a little latency, so the stage's loop does not spin
        done, self.queued = self.queued[:2], self.queued[2:]
        self.answered += bool(done)
        return [ChatResult("FakeSlowLLM text: a long enough description of " + r.conversation[-1]["content"][-40:]
                           + ".", 20, 9, "stop", key=r.key) for r in done]


chat_backend.open_backend = FakeSlowBackend
from augment.__main__ import main
sys.exit(main(sys.argv[1:]))
'''


def _prepare(tmp_path: Path, make_tiny_config, **overrides) -> tuple[Path, object, dict]:
    cfg_path = make_tiny_config(tmp_path, **{"generation.batch_size": 2, "generation.shards": 1, **overrides})
    cfg = load_config(cfg_path)
    v = stages.ingest(cfg)
    v |= stages.split(cfg, v)
    v |= stages.prompts(cfg, v)
    return cfg_path, cfg, v


def _kill_mid_shard(cmd: list[str], cache: Path, min_parts: int, timeout: float, env: dict | None = None) -> int:
    # The SIGKILLed engine leaves its /dev/shm queues behind (CI's /dev/shm kept a pair of vLLM segments and a loky
    # semaphore per run): the process tree carries a mark, and its segments are removed after the kill.
    mark = f"llmfa-kill-test-{cache}"
    watch = MarkedProcesses(mark, interval_s=0.05)
    watch.start()
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env=os.environ | {"LLMFA_TEST_PROCESS_TREE": mark} | (env or {}))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            parts = len(list(cache.glob("part-*.parquet"))) if cache.is_dir() else 0
            if parts >= min_parts:
                break
            assert proc.poll() is None, "generation finished or died before it could be killed"
            time.sleep(0.05)
        else:
            raise AssertionError("no batch committed before the timeout")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        watch.stop_and_reap(grace_s=5)
    return len(list(cache.glob("part-*.parquet")))


def _check_resume(cmd: list[str], cfg, v: dict, parts_at_kill: int) -> None:
    cache = stages.generation_cache(cfg)
    n_prompts = len(stages.store_for(cfg).read_pandas("item_prompts", v["item_prompts"]))
    assert 0 < cache_rows(cache) < n_prompts  # killed mid-shard
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    # vLLM prints its own lines around the CLI's JSON: read the stage's stats file instead.
    stats = json.loads((stages.stats_dir(cfg) / "generate-item-000.json").read_text())
    assert cache_rows(cache) == n_prompts  # exactly one output per prompt: nothing generated twice
    assert read_cache(cache)["prompt_hash"].nunique() == n_prompts
    # Every committed row is reused: only rows in flight or not yet committed at the kill were generated again.
    assert stats["skipped"] >= 2 * parts_at_kill
    assert stats["generated"] + stats["skipped"] == n_prompts
    assert stages.publish_texts(cfg, "item", v)["item_knowledge_text"]  # and the table publishes


@pytest.mark.slow  # ~14 s (two CLI processes that import the generation stack): over the fast tier's 10 s per test (tests/conftest.py)
def test_kill_9_mid_shard_then_rerun_fake_llm(tmp_path, make_tiny_config):
    cfg_path, cfg, v = _prepare(tmp_path, make_tiny_config)
    runner = tmp_path / "fake_runner.py"
    runner.write_text(FAKE_RUNNER)
    cmd = [sys.executable, str(runner), "generate", "--config", str(cfg_path), "--kind", "item",
           "--input", f"item_prompts={v['item_prompts']}"]
    # the fake stops answering after 3 polls (3 committed batches of 2): the kill finds the shard unfinished
    parts = _kill_mid_shard(cmd, stages.generation_cache(cfg), min_parts=3, timeout=120,
                            env={"FAKE_STALL_AFTER_POLLS": "3"})
    _check_resume(cmd, cfg, v, parts)


@pytest.mark.vllm
@pytest.mark.timeout(900)
def test_kill_9_mid_shard_then_rerun_real_vllm(tmp_path, make_tiny_config):
    # Two requests in flight, not the default 2 x max_num_seqs: with all 20 prompts submitted at once they finish
    # in the same engine step and their 10 commits land within one poll of the cache (CI saw 20 of 20 rows before
    # the kill). Two at a time puts one generation round between commits, so the kill lands mid-shard.
    cfg_path, cfg, v = _prepare(tmp_path, make_tiny_config, **{"generation.inflight": 2})
    cmd = [sys.executable, "-m", "augment", "generate", "--config", str(cfg_path), "--kind", "item",
           "--input", f"item_prompts={v['item_prompts']}"]
    parts = _kill_mid_shard(cmd, stages.generation_cache(cfg), min_parts=2, timeout=400)
    _check_resume(cmd, cfg, v, parts)

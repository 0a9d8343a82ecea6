"""`generation.backend: openai` against a real fleet: two vLLM OpenAI servers (`python -m augment serve-llm`, vLLM
CPU, one core each) that the test starts on 127.0.0.1 and stops. The stage spreads one shard over both, and in
float32 (generation.deterministic) the texts equal what the in-process engine writes for the same prompts and
seed, so both backends share one generation cache and publish the same table version."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from augment import stages
from augment.llm import generate as gen
from configs import REPO_ROOT, load_config
from ops.local_services import free_port

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(1200)]


class ServeLLM:
    """One `python -m augment serve-llm` replica in its own session, killed with its whole tree at the end."""

    def __init__(self, config: Path, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "augment", "serve-llm", "--config", str(config),
                                      "--port", str(self.port)], cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                                     stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"serve-llm exited: {self.log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(2)
        raise AssertionError(f"serve-llm on {self.port} not ready after {timeout} s: {self.log.read_text()[-3000:]}")

    def requests_served(self) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            lines = r.read().decode().splitlines()
        return sum(float(x.rsplit(" ", 1)[1]) for x in lines if x.startswith("vllm:request_success_total"))

    def stop(self) -> list[int]:
        try:
            tree = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        os.killpg(self.proc.pid, signal.SIGTERM)
        _, alive = psutil.wait_procs(tree, timeout=30)
        for p in alive:
            p.kill()
        _, alive = psutil.wait_procs(alive, timeout=10)
        return [p.pid for p in alive]


def test_two_vllm_servers_serve_one_shard_with_the_in_process_texts(tmp_path, make_tiny_config):
    from augment.llm import engine as llm_engine
    llm_engine.shutdown_engines()  # an engine cached by an earlier test holds a core
    cfg_path = make_tiny_config(tmp_path, **{"generation.deterministic": True, "generation.shards": 1,
                                             "generation.engine.max_num_seqs": 8})
    cfg = load_config(cfg_path)
    v = stages.ingest(cfg)
    v |= stages.split(cfg, v)
    v |= stages.prompts(cfg, v)
    servers = [ServeLLM(cfg_path, tmp_path / f"serve-{k}.log") for k in range(2)]
    try:
        for s in servers:
            s.wait_ready(600)
        fleet = load_config(cfg_path, {"generation.backend": "openai",
                                       "generation.openai.endpoints": [s.url for s in servers],
                                       "generation.openai.max_concurrency": 4})
        shard = stages.generate(fleet, "item", v)[0]
        served = [s.requests_served() for s in servers]
    finally:
        leftovers = [pid for s in servers for pid in s.stop()]
    assert not leftovers, f"server processes left running: {leftovers}"
    n = len(stages.store_for(cfg).read_pandas("item_prompts", v["item_prompts"]))
    assert shard["generated"] == n and shard["backend"] == "openai"
    assert all(x > 0 for x in served) and sum(served) >= n, served  # both replicas worked
    ends = shard["where"]["endpoints"]
    assert all(e["requests"] > 0 and e["healthy"] for e in ends.values()), ends
    # The fleet registered the in-process identity, so it fills the same cache keys...
    cache = stages.generation_cache(cfg)
    fleet_cache = cache.rename(tmp_path / "fleet_cache")
    read = gen.read_cache(fleet_cache).set_index("gen_key")
    assert set(read["model"]) == {llm_engine.model_id(cfg.generation.engine)}
    # ...with the same texts the in-process engine writes (float32, greedy, same seed), here into a fresh cache.
    local = stages.generate(cfg, "item", v)[0]
    llm_engine.shutdown_engines()
    assert local["generated"] == n and local["backend"] == "vllm"
    mine = gen.read_cache(cache).set_index("gen_key")
    assert sorted(mine.index) == sorted(read.index)
    same = mine.loc[read.index, "raw_text"] == read["raw_text"]
    assert same.all(), json.dumps({"differ": int((~same).sum()), "of": len(same),
                                   "first": [mine.loc[read.index[~same][0], "raw_text"],
                                             read.loc[~same, "raw_text"].iloc[0]]})
    assert (mine.loc[read.index, "output_tokens"] == read["output_tokens"]).all()

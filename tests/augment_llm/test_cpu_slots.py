"""CPU core claims for vLLM engines: disjoint across processes, waiting when full, released when a holder dies."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from augment.llm import cpu_slots

HOLD = """
import sys, time
from augment.llm.cpu_slots import claim
slot = claim(int(sys.argv[1]), cpus=[0, 1, 2, 3])
print(slot.bind, flush=True)
time.sleep(600)
"""


@pytest.fixture
def lock_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMFA_CPU_SLOTS_DIR", str(tmp_path))
    return tmp_path


def _holder(threads: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(threads)], stdout=subprocess.PIPE, text=True,
                            env=os.environ.copy())
    return proc, proc.stdout.readline().strip()


@pytest.mark.timeout(60)
def test_processes_get_disjoint_cores_then_wait_then_reuse_a_dead_holders_cores(lock_dir):
    first, a = _holder(2)
    second, b = _holder(1)
    try:
        assert a == "0,1" and b == "2"
        with pytest.raises(TimeoutError, match="fewer than 2 free core"):
            cpu_slots.claim(2, cpus=[0, 1, 2, 3], timeout=0.5, poll_seconds=0.1)
        mine = cpu_slots.claim(1, cpus=[0, 1, 2, 3], timeout=1)
        assert mine.bind == "3"
        first.send_signal(signal.SIGKILL)  # a crashed shard: the kernel drops its locks
        first.wait()
        started = time.monotonic()
        again = cpu_slots.claim(2, cpus=[0, 1, 2, 3], timeout=5, poll_seconds=0.1)
        assert again.bind == "0,1" and time.monotonic() - started < 5
        again.release()
        mine.release()
    finally:
        for proc in (first, second):
            proc.kill()
            proc.wait()


@pytest.mark.timeout(30)
def test_more_threads_than_cores_takes_them_all(lock_dir):
    slot = cpu_slots.claim(8, cpus=[0, 1])
    assert slot.cores == (0, 1)
    slot.release()
    assert cpu_slots.claim(2, cpus=[0, 1], timeout=1).bind == "0,1"


@pytest.mark.timeout(60)
def test_engine_claims_its_own_cores_unless_the_user_chose_them(lock_dir, monkeypatch):
    from augment.llm import engine as llm_engine
    monkeypatch.setattr(llm_engine, "_has_gpu", lambda: False)
    monkeypatch.setattr(llm_engine, "_SLOT", None)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "3")  # the user's own choice wins
    assert llm_engine.claim_cores(1) == "3" and llm_engine.engine_cores() is None

    holder, held = _holder(1)  # e.g. the parent process's cached engine
    try:
        # Inherited from that ancestor's claim: not a choice, so this process must take other cores.
        monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", held)
        monkeypatch.setenv("LLMFA_CLAIMED_CPU_BIND", held)
        mine = llm_engine.claim_cores(1)
        assert mine != held and llm_engine.engine_cores() == mine
        assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == mine
        llm_engine.shutdown_engines()
        assert llm_engine.engine_cores() is None and "LLMFA_CLAIMED_CPU_BIND" not in os.environ
    finally:
        holder.kill()
        holder.wait()

"""augment/llm/marked_processes.py with real child processes that leak a /dev/shm segment the way a killed vLLM engine
core does (created, never unlinked, Python's resource tracker told to forget it)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from augment.llm.marked_processes import MarkedProcesses

LEAKER = """
import os, sys, time
from multiprocessing import resource_tracker, shared_memory
shm = shared_memory.SharedMemory(create=True, size=4096)
resource_tracker.unregister(shm._name, "shared_memory")  # like a SIGKILLed creator: nobody unlinks it
print(shm.name, flush=True)
time.sleep(float(sys.argv[1]))
os._exit(0)
"""


def _leak(lives_s: float, mark: str | None) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ) | ({"LLMFA_TEST_MARK": mark} if mark else {})
    proc = subprocess.Popen([sys.executable, "-c", LEAKER, str(lives_s)], env=env, stdout=subprocess.PIPE, text=True)
    return proc, "/dev/shm/" + proc.stdout.readline().strip()


def test_a_short_lived_marked_process_is_seen_and_its_segment_removed(tmp_path):
    mark = str(tmp_path / "session")
    watch = MarkedProcesses(mark, interval_s=0.05)
    watch.start()
    ours, our_shm = _leak(0.6, mark)
    theirs, their_shm = _leak(0.6, None)
    try:
        assert ours.wait(10) == 0 and theirs.wait(10) == 0  # both gone before anyone reaps
        assert os.path.exists(our_shm) and os.path.exists(their_shm)
        watch.stop_and_reap(grace_s=1)
        assert not os.path.exists(our_shm)
        assert os.path.exists(their_shm), "a segment no marked process used was removed"
    finally:
        for path in (our_shm, their_shm):
            if os.path.exists(path):
                os.unlink(path)


def test_a_marked_process_still_alive_at_reap_is_killed(tmp_path):
    mark = str(tmp_path / "session")
    watch = MarkedProcesses(mark, interval_s=0.05)
    watch.start()
    proc, shm = _leak(300, mark)
    try:
        deadline = time.monotonic() + 5
        while shm not in watch.shm and time.monotonic() < deadline:
            time.sleep(0.05)
        t0 = time.monotonic()
        watch.stop_and_reap(grace_s=0.5)
        proc.wait(5)  # it was to sleep 300 s (its status went to psutil's wait, so Popen reads 0)
        assert time.monotonic() - t0 < 5
        assert not os.path.exists(shm)
    finally:
        if proc.poll() is None:
            proc.kill()
        if os.path.exists(shm):
            os.unlink(shm)

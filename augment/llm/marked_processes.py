"""Find, stop and clean up after a process tree that outlives its parent: every process whose command line or
environment names a `mark` (a private Ray's session directory), and the /dev/shm segments they mapped or held
open.

Why a watcher thread: a killed Ray actor's vLLM engine core is SIGKILLed or orphaned, so its shared-memory queues
are never unlinked, and by the time anyone looks the process (and with it the record of what it mapped) is gone.
Sampling only at chosen moments misses a wave's engines that start and die between two of them, so a daemon thread
samples every `interval_s` while the tree runs. Only segments a marked process was seen to map or hold open are
removed, never another process's: two shards on one machine each run their own.

    watch = MarkedProcesses("/tmp/llmfa-ray-abc"); watch.start()
    ...  # run Ray
    watch.stop_and_reap()  # after ray.shutdown()
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time

import psutil

log = logging.getLogger(__name__)

SHM_DIR = "/dev/shm/"


def shm_in_use(pid: int) -> set[str]:
    """/dev/shm paths process `pid` maps or has open. /proc/PID/maps, not psutil's smaps-based memory_maps, which
    costs far more per sample on a vLLM process."""
    found: set[str] = set()
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
            for line in f:
                at = line.find(SHM_DIR)
                if at >= 0:
                    found.add(line[at:].rstrip("\n").removesuffix(" (deleted)"))
    except OSError:
        pass
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith(SHM_DIR):
                found.add(target.removesuffix(" (deleted)"))
    except OSError:
        pass
    return found


class MarkedProcesses:
    """The processes that name `mark`, and the /dev/shm segments they used (see the module docstring)."""

    def __init__(self, mark: str, interval_s: float = 0.2):
        self.mark, self.interval_s = mark, interval_s
        self.pids: dict[int, float] = {}  # pid -> create time (a reused pid is not ours)
        self.not_ours: set[tuple[int, float]] = set()
        self.shm: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="marked-processes", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def _names_mark(self, proc: psutil.Process) -> bool:
        return any(self.mark in a for a in proc.cmdline()) or any(self.mark in v for v in proc.environ().values())

    def sample(self, everywhere: bool = False) -> None:
        """Record marked processes and what they map. While the tree runs its processes are this process's
        descendants; an orphan (re-parented away) is found only by looking `everywhere`."""
        try:
            candidates = psutil.process_iter() if everywhere else psutil.Process().children(recursive=True)
        except psutil.Error:
            return
        for proc in candidates:
            try:
                key = (proc.pid, proc.create_time())
                if key in self.not_ours:
                    continue
                if proc.pid not in self.pids:
                    if not self._names_mark(proc):
                        if time.time() - key[1] > 2:  # a younger one may not have exec'd its command yet
                            self.not_ours.add(key)
                        continue
                    with self._lock:
                        self.pids[proc.pid] = key[1]
                used = shm_in_use(proc.pid)
                with self._lock:
                    self.shm |= used
            except psutil.Error:
                continue

    def alive(self) -> list[psutil.Process]:
        alive = []
        with self._lock:
            pids = dict(self.pids)
        for pid, created in pids.items():
            try:
                proc = psutil.Process(pid)
                if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.Error:
                continue
        return alive

    def stop_and_reap(self, grace_s: float = 20) -> None:
        """Give the marked processes `grace_s` to exit by themselves (a shutdown signalled them), SIGKILL the rest,
        then unlink every segment they used that still exists."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        deadline = time.monotonic() + grace_s
        while True:
            self.sample(everywhere=True)
            left = self.alive()
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        for proc in left:
            try:
                log.warning("killing leftover process %d (%s)", proc.pid, " ".join(proc.cmdline()[:3]))
                proc.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        psutil.wait_procs(left, timeout=10)
        for path in sorted(self.shm):
            if os.path.exists(path):
                log.info("removing shared memory %s left by the run", path)
                try:
                    os.unlink(path)
                except OSError as err:
                    log.warning("cannot remove %s: %s", path, err)
        self.pids.clear()
        self.shm.clear()
        self.not_ours.clear()

"""Disjoint CPU cores for every vLLM CPU engine on this machine, so engines side by side never share a core.

vLLM's CPU backend pins its OpenMP threads to cores (`VLLM_CPU_OMP_THREADS_BIND`). Left on `auto`, every engine on
the box picks the same core, so two generation shards run by two Airflow tasks (an `llm` pool with two slots)
would pin to one core and halve each other while the other core idles. Instead each engine process claims
`threads` cores with an exclusive `flock` on `<lock dir>/core-<id>.lock` per core and keeps them for its lifetime.
The kernel drops the locks when the process dies, so a killed shard never leaks its cores; when too few cores are
free the next engine waits, so engines queue instead of fighting, whatever the pool size.

    from augment.llm.cpu_slots import claim
    slot = claim(threads=1)          # blocks until a core is free; slot.bind == "0" (or "1", "2,3", ...)
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = slot.bind

The lock directory is machine-wide (`$LLMFA_CPU_SLOTS_DIR`, default `<tmp>/llmfa-cpu-slots`) so that engines of
different workdirs, tests and DAG runs all see each other.
"""
from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from configs import environment as env

log = logging.getLogger(__name__)


@dataclass
class Slot:
    cores: tuple[int, ...]
    _locks: list[IO] = field(default_factory=list, repr=False)

    @property
    def bind(self) -> str:
        """The core list in `VLLM_CPU_OMP_THREADS_BIND` syntax."""
        return ",".join(str(c) for c in self.cores)

    def release(self) -> None:
        for handle in self._locks:
            handle.close()  # closing the descriptor drops its flock
        self._locks = []


def lock_dir() -> Path:
    return Path(env.CPU_SLOTS_DIR.get() or Path(tempfile.gettempdir()) / "llmfa-cpu-slots")


def _try_core(directory: Path, core: int) -> IO | None:
    handle = open(directory / f"core-{core}.lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def claim(threads: int, *, poll_seconds: float = 1.0, timeout: float | None = None,
          cpus: list[int] | None = None) -> Slot:
    """Lock `threads` free cores of those this process may use (one lock file per core), waiting while too few
    are free. Asking for more cores than the machine has gets all of them."""
    cpus = sorted(os.sched_getaffinity(0)) if cpus is None else sorted(cpus)
    threads = max(1, min(threads, len(cpus)))
    directory = lock_dir()
    directory.mkdir(parents=True, exist_ok=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    waited = False
    while True:
        taken: list[tuple[int, IO]] = []
        for core in cpus:
            handle = _try_core(directory, core)
            if handle is not None:
                taken.append((core, handle))
                if len(taken) == threads:
                    slot = Slot(tuple(c for c, _ in taken), [h for _, h in taken])
                    log.info("engine cores %s (of %d; locks in %s)", slot.bind, len(cpus), directory)
                    return slot
        for _, handle in taken:  # all or nothing: a partial claim would block others while we wait
            handle.close()
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {threads} free core(s) in {directory} after {timeout} s")
        if not waited:
            log.info("fewer than %d of %d cores free for a vLLM engine (locks in %s): waiting", threads, len(cpus),
                     directory)
            waited = True
        time.sleep(poll_seconds)

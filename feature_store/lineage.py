"""Lineage helpers shared by the augment and models stages: a content digest of the code that produced a table, and per-stage run statistics.

The code digest hashes the producing package's source files (not `git describe`), so an unrelated commit does
not create new feature-table versions while a change to the code that makes them does.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import resource
import threading
import time
from functools import lru_cache
from pathlib import Path

from feature_store.store import atomic_write_text
from typing import Iterator

_ROOT = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=8)
def source_digest(*packages: str) -> str:
    h = hashlib.sha256()
    for package in packages:
        for path in sorted((_ROOT / package).rglob("*")):
            if path.suffix in {".py", ".txt", ".jinja", ".json"} and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(_ROOT)).encode())
                h.update(path.read_bytes())
    return h.hexdigest()[:12]


def peak_rss_mb() -> float:
    """Peak resident memory of this process and of its largest finished child."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024.0


def tree_rss_mb() -> float:
    """Resident memory of this process plus all live descendants (vLLM's engine core and workers are children)."""
    import psutil

    me = psutil.Process()
    total = 0
    for proc in [me, *me.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total / (1024.0 * 1024.0)


class _TreeSampler(threading.Thread):
    """Samples the process tree's RSS while a stage runs: ru_maxrss cannot see children that are still alive."""

    def __init__(self, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.interval, self.peak = interval, 0.0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, tree_rss_mb())
            self._stop_event.wait(self.interval)

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return max(self.peak, tree_rss_mb())


@contextlib.contextmanager
def stage_timer(stats_dir: Path, stage: str) -> Iterator[dict]:
    """Time a stage and write stats/<stage>.json when it succeeds; the body may add fields to the yielded dict."""
    record: dict = {"stage": stage}
    sampler = _TreeSampler()
    sampler.start()
    started = time.perf_counter()
    try:
        yield record
    finally:
        tree_peak = sampler.stop()
    record["seconds"] = round(time.perf_counter() - started, 3)
    record["peak_rss_mb"] = round(max(peak_rss_mb(), tree_peak), 1)
    record["peak_tree_rss_mb"] = round(tree_peak, 1)
    stats_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stats_dir / f"{stage}.json", json.dumps(record, indent=1, sort_keys=True, default=str))


def read_stats(stats_dir: Path) -> dict[str, dict]:
    if not stats_dir.is_dir():
        return {}
    return {p.stem: json.loads(p.read_text()) for p in sorted(stats_dir.glob("*.json"))}

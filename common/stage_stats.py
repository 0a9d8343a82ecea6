"""Per-stage run statistics: wall time and peak memory of a stage (its vLLM children included), written to
<workdir>/stats/<stage>.json when the stage succeeds and folded into the retrain report.

    with stage_timer(stats_dir, "split") as rec:
        rec["rows"] = ...
"""
from __future__ import annotations

import contextlib
import json
import resource
import threading
import time
from pathlib import Path
from typing import Iterator

from common.files import atomic_write_text


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
